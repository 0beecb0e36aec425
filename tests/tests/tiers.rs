//! Tiers on DynamoDB Local: instant upgrades and the next accrual's multiplier, redemptions that
//! leave the tier alone, grace and one-step downgrades, manual floors, same-day idempotence, and
//! a nightly run over thousands of members that touches only those due.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::events::MemoryQueue;
use loyalty_core::service::AppConfig;
use loyalty_core::tiers::TierChange;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_http::{handle, Function};
use loyalty_tests::events::{json_of, ApiRequest};
use loyalty_tests::stream_relay::RelayedQueue;
use loyalty_tests::*;
use serde_json::json;

struct TierApp {
    app: Arc<App<DynamoStore>>,
    clock: Arc<ManualClock>,
    /// Filled by the outbox from the table's stream.
    events: RelayedQueue,
}

async fn tier_app() -> TierApp {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2025, 1, 10, 9, 0, 0).unwrap(),
    ));
    let store = streaming_store().await;
    let events = RelayedQueue::of(&store).await;
    let app = App::new(store, clock.clone(), AppConfig::default()).with_events(events.queue());
    TierApp {
        app: Arc::new(app),
        clock,
        events,
    }
}

async fn tier_events(queue: &RelayedQueue, app: &App<DynamoStore>) -> Vec<(String, String)> {
    queue
        .sent(app)
        .await
        .iter()
        .map(|body| serde_json::from_str::<serde_json::Value>(body).expect("json"))
        .filter(|e| e["type"] == "tier.changed")
        .map(|e| {
            (
                e["data"]["from_tier"].as_str().unwrap_or("").to_owned(),
                e["data"]["to_tier"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn history(app: &App<DynamoStore>, id: &loyalty_core::ids::MemberId) -> Vec<TierChange> {
    app.tier_history(id, None, None)
        .await
        .expect("history")
        .changes
}

#[tokio::test]
async fn crossing_a_threshold_upgrades_in_the_accrual_and_the_next_one_earns_more() {
    let TierApp { app, events, .. } = tier_app().await;
    let member = enrol(&app, &unique("m")).await;
    let first = accrue(&app, &member, "k1", purchase("o-1", 60_000))
        .await
        .expect("accrued");
    assert_eq!(body(&first)["tier"], "silver");
    assert_eq!(
        body(&first)["points"],
        600,
        "the crossing accrual earns at the old multiplier"
    );
    assert_eq!(member_state(&app, &member).await.tier, "silver");

    let second = accrue(&app, &member, "k2", purchase("o-2", 10_000))
        .await
        .expect("accrued");
    let breakdown = body(&second)["breakdown"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        breakdown
            .iter()
            .any(|l| l["rule"] == "tier_multiplier:silver" && l["points"] == 10),
        "{breakdown:?}"
    );
    assert_eq!(body(&second)["points"], 110);

    let changes = history(&app, &member).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].from_tier.as_str(), changes[0].to_tier.as_str()),
        ("bronze", "silver")
    );
    assert_eq!(
        tier_events(&events, &app).await,
        vec![("bronze".to_owned(), "silver".to_owned())]
    );

    // Spending points never costs the tier.
    app.redeem(&member, key("r1"), &json!({ "reward_id": "five-off" }))
        .await
        .expect("redeemed");
    let after = member_state(&app, &member).await;
    assert_eq!(after.tier, "silver");
    assert_eq!(after.balance.available, 810 - 500);
}

#[tokio::test]
async fn downgrade_after_grace_one_step_at_a_time_and_same_day_twice_is_a_no_op() {
    let TierApp { app, clock, events } = tier_app().await;
    let member = enrol(&app, &unique("m")).await;
    accrue(&app, &member, "k", purchase("o", 500_000))
        .await
        .expect("accrued");
    assert_eq!(member_state(&app, &member).await.tier, "platinum");

    // 365 days later the purchase still counts; on day 366 it has rolled off and grace starts.
    clock.advance(Duration::days(365));
    assert!(!app.evaluate_tier(&member).await.expect("evaluated").changed);
    assert_eq!(
        member_state(&app, &member).await.tier_state.below_since,
        None
    );
    clock.advance(Duration::days(1));
    let start = app.evaluate_tier(&member).await.expect("evaluated");
    assert_eq!((start.tier.as_str(), start.changed), ("platinum", false));
    let review = member_state(&app, &member).await.tier_state.review_on;
    assert_eq!(
        review,
        Some((clock_now(&clock) + Duration::days(90)).date_naive()),
        "platinum has 90 days of grace"
    );

    clock.advance(Duration::days(89));
    assert_eq!(
        app.evaluate_tier(&member).await.expect("evaluated").tier,
        "platinum"
    );
    clock.advance(Duration::days(1));
    let down = app.evaluate_tier(&member).await.expect("evaluated");
    assert_eq!(
        (down.tier.as_str(), down.changed),
        ("gold", true),
        "one step only"
    );

    let before = member_state(&app, &member).await;
    let again = app.evaluate_tier(&member).await.expect("evaluated");
    assert!(!again.changed);
    assert_eq!(
        member_state(&app, &member).await,
        before,
        "a second evaluation the same day writes nothing"
    );

    clock.advance(Duration::days(60));
    assert_eq!(
        app.evaluate_tier(&member).await.expect("evaluated").tier,
        "silver"
    );
    assert_eq!(
        tier_events(&events, &app).await,
        vec![
            ("bronze".into(), "platinum".into()),
            ("platinum".into(), "gold".into()),
            ("gold".into(), "silver".into())
        ]
    );
    assert_eq!(history(&app, &member).await.len(), 3);
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<Utc> {
    use loyalty_core::clock::Clock;
    clock.now()
}

#[tokio::test]
async fn a_manual_tier_is_a_floor_until_it_expires() {
    let TierApp { app, clock, .. } = tier_app().await;
    let m = unique("m");
    let member = enrol(&app, &m).await;
    let until = clock_now(&clock) + Duration::days(10);
    let grant = ApiRequest::new("PUT", &format!("/v1/admin/members/{m}/tier")).raw_body(
        &json!({ "tier": "gold", "reason": "service recovery #4411", "until": until }).to_string(),
    );
    let response = handle(&app, Function::Members, grant.request()).await;
    assert_eq!(response.status(), 200, "{}", json_of(&response));
    assert_eq!(json_of(&response)["tier"], "gold");

    clock.advance(Duration::days(5));
    assert_eq!(
        app.evaluate_tier(&member).await.expect("evaluated").tier,
        "gold"
    );
    // The floor ends; gold's 60 days of grace start; then one step down.
    clock.advance(Duration::days(6));
    let lapsed = app.evaluate_tier(&member).await.expect("evaluated");
    assert_eq!((lapsed.tier.as_str(), lapsed.changed), ("gold", false));
    clock.advance(Duration::days(60));
    assert_eq!(
        app.evaluate_tier(&member).await.expect("evaluated").tier,
        "silver"
    );

    let read = json_of(
        &handle(
            &app,
            Function::Members,
            ApiRequest::get(&format!("/v1/members/{m}")).request(),
        )
        .await,
    );
    for field in [
        "qualifying",
        "window_start",
        "window_end",
        "next_tier",
        "remaining_to_next",
        "secured_until",
    ] {
        assert!(
            read["tier_progress"].get(field).is_some(),
            "tier_progress lacks {field}: {read}"
        );
    }
    assert_eq!(read["tier_progress"]["next_tier"], "gold");
    assert_eq!(read["tier_progress"]["remaining_to_next"], 150_000);

    let page = json_of(
        &handle(
            &app,
            Function::Members,
            ApiRequest::get(&format!("/v1/members/{m}/tier-history")).request(),
        )
        .await,
    );
    let changes = page["changes"].as_array().cloned().unwrap_or_default();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["to_tier"], "silver");
    assert!(changes[1]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("service recovery")));

    let bad = ApiRequest::new("PUT", &format!("/v1/admin/members/{m}/tier")).raw_body(
        &json!({ "tier": "diamond", "reason": "x", "until": until + Duration::days(400) })
            .to_string(),
    );
    assert_eq!(
        handle(&app, Function::Members, bad.request())
            .await
            .status(),
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_nightly_run_touches_only_the_members_that_are_due() {
    let TierApp { app, clock, .. } = tier_app().await;
    let prefix = unique("crowd");
    let ids: Vec<String> = (0..2_000).map(|i| format!("{prefix}-{i:04}")).collect();
    let tasks: Vec<_> = ids
        .chunks(125)
        .map(|chunk| {
            let app = Arc::clone(&app);
            let chunk = chunk.to_vec();
            tokio::spawn(async move {
                for (i, id) in chunk.iter().enumerate() {
                    let member = enrol(&app, id).await;
                    // Every tenth member reaches silver today.
                    if i % 10 == 0 {
                        // An order earns once per program: each member's has its own id.
                        accrue(&app, &member, "k", purchase(&format!("o-{id}"), 60_000))
                            .await
                            .expect("accrued");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("seeded");
    }
    let silver = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| (i % 125) % 10 == 0)
        .count();

    // A year and a day later the silver members' spend has rolled off: they, and only they, are due.
    clock.advance(Duration::days(366));
    let reviews = MemoryQueue::default();
    let plan = app.plan_tier_reviews(&reviews).await.expect("planned");
    assert_eq!(plan.members, silver);
    let messages = reviews.take();
    assert_eq!(messages.len(), plan.messages);

    // The worker function handles the fan-out as SQS would deliver it, with one poison message.
    let mut records: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, body)| json!({ "messageId": format!("msg-{i}"), "body": body, "eventSource": "aws:sqs" }))
        .collect();
    records.push(json!({ "messageId": "poison", "body": "{not json", "eventSource": "aws:sqs" }));
    let response = tier_evaluate::handle(&app, &reviews, json!({ "Records": records }))
        .await
        .expect("batch handled");
    assert_eq!(
        response["batchItemFailures"],
        json!([{ "itemIdentifier": "poison" }])
    );

    let today = clock_now(&clock).date_naive();
    let mut evaluated = 0;
    for id in &ids {
        let state = member_state(&app, &member_id(id)).await;
        if state.tier_state.last_evaluated_on == Some(today) {
            evaluated += 1;
            assert_eq!(state.tier, "silver", "grace has only started");
            assert!(state.tier_state.below_since.is_some());
        } else {
            assert_eq!(state.tier_state.last_evaluated_on, None);
        }
    }
    assert_eq!(evaluated, silver);

    // Their next review is after grace; running the night again finds nobody.
    let again = app.plan_tier_reviews(&reviews).await.expect("planned");
    assert_eq!(again.members, 0);
}
