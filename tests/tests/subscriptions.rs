//! Paid membership on DynamoDB Local, with an in-memory payment provider that (like localstripe)
//! ignores idempotency keys: the first payment at start, benefits (multiplier, monthly bonus,
//! tier floor), billing anchored to the day of month, at most one charge per period through
//! repeated runs and crashes, dunning to lapse and recovery, cancel at period end, plan change,
//! and a few thousand subscriptions due on one day.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::events::MemoryQueue;
use loyalty_core::ids::MemberId;
use loyalty_core::service::{AppConfig, BillingResult, Outcome, PENDING_LEASE};
use loyalty_core::subscriptions::payments::MemoryPayments;
use loyalty_core::subscriptions::{AttemptStatus, SubscriptionStatus};
use loyalty_core::{App, ErrorCode};
use loyalty_dynamo::DynamoStore;
use loyalty_http::{handle, Function};
use loyalty_tests::events::{json_of, ApiRequest};
use loyalty_tests::stream_relay::RelayedQueue;
use loyalty_tests::*;
use serde_json::{json, Value};

struct SubApp {
    app: Arc<App<DynamoStore>>,
    clock: Arc<ManualClock>,
    /// Filled by the outbox from the table's stream; none for the bulk test, which reads no
    /// events (DynamoDB Local's per-write stream cost grows with the records it holds).
    events: Option<RelayedQueue>,
    payments: Arc<MemoryPayments>,
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn sub_app(start: DateTime<Utc>) -> SubApp {
    let store = streaming_store().await;
    let events = RelayedQueue::of(&store).await;
    sub_app_on(store, start, Some(events))
}

/// A subscription app on a table without a stream, for thousands of writes whose events no
/// one reads.
async fn bulk_sub_app(start: DateTime<Utc>) -> SubApp {
    sub_app_on(dynamo_store().await, start, None)
}

fn sub_app_on(store: DynamoStore, start: DateTime<Utc>, events: Option<RelayedQueue>) -> SubApp {
    let clock = Arc::new(ManualClock::new(start));
    let payments = Arc::new(MemoryPayments::default());
    let mut app =
        App::new(store, clock.clone(), AppConfig::default()).with_payments(payments.clone());
    if let Some(events) = &events {
        app = app.with_events(events.queue());
    }
    SubApp {
        app: Arc::new(app),
        clock,
        events,
        payments,
    }
}

fn start_body(plan: &str, method: &str) -> Value {
    json!({ "plan_id": plan, "payment_method": method })
}

async fn subscribe(s: &SubApp, member: &MemberId, plan: &str, method: &str) -> Value {
    let outcome = s
        .app
        .start_subscription(member, key(&unique("sub")), &start_body(plan, method))
        .await
        .expect("subscribed");
    body(&outcome).clone()
}

/// One daily run: plan, then process every fan-out message.
async fn billing_run(app: &App<DynamoStore>) -> Vec<BillingResult> {
    let queue = MemoryQueue::default();
    app.plan_subscription_billing(&queue)
        .await
        .expect("planned");
    let mut results = Vec::new();
    for body in queue.take() {
        results.extend(
            app.bill_subscription_batch(&body)
                .await
                .expect("batch billed"),
        );
    }
    results
}

/// The `subscription.*` events the outbox has announced from the table's stream.
async fn event_types(s: &SubApp) -> Vec<String> {
    s.events
        .as_ref()
        .expect("this test's app relays its table's stream")
        .sent(&s.app)
        .await
        .iter()
        .map(|b| {
            serde_json::from_str::<Value>(b).expect("json")["type"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .filter(|t| t.starts_with("subscription."))
        .collect()
}

#[tokio::test]
async fn starting_takes_the_first_payment_grants_the_benefits_and_replays() {
    let s = sub_app(at(2027, 1, 31)).await;
    let member = enrol(&s.app, &unique("m")).await;
    let first = s
        .app
        .start_subscription(&member, key("start-1"), &start_body("plus", "pm_card_visa"))
        .await
        .expect("started");
    let view = body(&first).clone();
    assert!(matches!(first, Outcome::Created(_)));
    assert_eq!(view["status"], "active");
    assert_eq!(view["plan_id"], "plus");
    assert_eq!(view["current_period"]["period"], 1);
    assert_eq!(view["next_billing_date"], "2027-02-28");
    assert_eq!(s.payments.payments().len(), 1);

    let state = member_state(&s.app, &member).await;
    assert_eq!(state.tier, "gold", "the plan's tier floor applies at once");
    assert_eq!(
        state.balance.available,
        100 + 250,
        "welcome bonus + the plan's monthly bonus"
    );

    // Same key and body: the original answer, and no second charge.
    let again = s
        .app
        .start_subscription(&member, key("start-1"), &start_body("plus", "pm_card_visa"))
        .await
        .expect("replayed");
    assert!(matches!(again, Outcome::Replayed(_)));
    assert_eq!(body(&again), &view);
    assert_eq!(s.payments.payments().len(), 1);
    let reused = s
        .app
        .start_subscription(
            &member,
            key("start-1"),
            &start_body("basic", "pm_card_visa"),
        )
        .await
        .expect_err("422");
    assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
    let twice = s
        .app
        .start_subscription(&member, key("start-2"), &start_body("plus", "pm_card_visa"))
        .await
        .expect_err("409");
    assert_eq!(twice.code, ErrorCode::SubscriptionConflict);
    let missing = s
        .app
        .start_subscription(&member, None, &start_body("plus", "pm_card_visa"))
        .await
        .expect_err("400");
    assert_eq!(missing.code, ErrorCode::MissingIdempotencyKey);

    // Double points on spend, next to the tier multiplier.
    let earned = accrue(&s.app, &member, "a1", purchase("o-1", 10_000))
        .await
        .expect("accrued");
    let lines = body(&earned)["breakdown"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|l| l["rule"] == "plan_multiplier:plus" && l["points"] == 100),
        "{lines:?}"
    );
    assert_eq!(event_types(&s).await, vec!["subscription.started"]);

    // A declined first payment starts nothing.
    let other = enrol(&s.app, &unique("m")).await;
    s.payments.decline("pm_bad");
    let refused = s
        .app
        .start_subscription(&other, key("s"), &start_body("plus", "pm_bad"))
        .await
        .expect_err("402");
    assert_eq!(refused.code, ErrorCode::PaymentDeclined);
    assert_eq!(refused.status(), 402);
    assert_eq!(member_state(&s.app, &other).await.tier, "bronze");
    let view = s.app.subscription_view(&other).await.expect("view");
    assert_eq!(view.status, SubscriptionStatus::Incomplete);
    // With another card and key it starts.
    subscribe(&s, &other, "plus", "pm_card_visa").await;
    assert_eq!(
        s.app.subscription_view(&other).await.expect("view").status,
        SubscriptionStatus::Active
    );
}

#[tokio::test]
async fn month_end_anchoring_over_a_year_and_a_second_run_on_one_day_charges_nothing() {
    let s = sub_app(at(2027, 1, 31)).await;
    let member = enrol(&s.app, &unique("m")).await;
    let view = subscribe(&s, &member, "plus", "pm_card_visa").await;
    let sub_id = view["subscription_id"].as_str().expect("id").to_owned();
    let expected = [
        day(2027, 2, 28),
        day(2027, 3, 31),
        day(2027, 4, 30),
        day(2027, 5, 31),
        day(2027, 6, 30),
        day(2027, 7, 31),
        day(2027, 8, 31),
        day(2027, 9, 30),
        day(2027, 10, 31),
        day(2027, 11, 30),
        day(2027, 12, 31),
        day(2028, 1, 31),
    ];
    for (i, billing_day) in expected.iter().enumerate() {
        let current = s.app.subscription_view(&member).await.expect("view");
        assert_eq!(current.next_billing_date, Some(*billing_day));
        // The day before, nothing is due.
        s.clock.set(
            (*billing_day - Duration::days(1))
                .and_hms_opt(10, 0, 0)
                .unwrap()
                .and_utc(),
        );
        assert!(billing_run(&s.app).await.is_empty());
        s.clock
            .set(billing_day.and_hms_opt(3, 0, 0).unwrap().and_utc());
        assert_eq!(billing_run(&s.app).await, vec![BillingResult::Renewed]);
        assert!(
            billing_run(&s.app).await.is_empty(),
            "a second run on the same day finds nothing due"
        );
        // Even billing the subscription directly again charges nothing.
        assert_eq!(
            s.app.bill_subscription(&member).await.expect("billed"),
            BillingResult::NotDue
        );
        assert_eq!(s.payments.payments().len(), i + 2);
    }
    let ledger = audited_ledger(&s.app, &member).await;
    let bonuses: Vec<&str> = ledger
        .iter()
        .map(|e| e.entry_id.as_str())
        .filter(|id| id.starts_with("subscription:"))
        .collect();
    assert_eq!(bonuses.len(), 13, "one monthly bonus per paid period");
    assert_eq!(bonuses[12], format!("subscription:{sub_id}:13"));
    assert_eq!(
        event_types(&s)
            .await
            .iter()
            .filter(|t| *t == "subscription.renewed")
            .count(),
        12
    );
}

#[tokio::test]
async fn a_crash_between_the_provider_charge_and_the_record_charges_once() {
    let s = sub_app(at(2027, 3, 15)).await;
    let member = enrol(&s.app, &unique("m")).await;
    let view = subscribe(&s, &member, "plus", "pm_card_visa").await;
    let sub_id = view["subscription_id"].as_str().expect("id").to_owned();
    s.clock.set(at(2027, 4, 15));
    s.payments.crash_after_charge(1);
    let crashed = s
        .app
        .bill_subscription(&member)
        .await
        .expect_err("the answer was lost");
    assert_eq!(crashed.code, ErrorCode::PaymentProviderUnavailable);
    let charge = s
        .app
        .subscription_charge(&sub_id, 2)
        .await
        .expect("read")
        .expect("pending charge written first");
    assert_eq!(charge.attempts.len(), 1);
    assert_eq!(charge.attempts[0].status, AttemptStatus::Pending);
    assert_eq!(
        s.payments.succeeded_for(&charge.charge_id),
        1,
        "the provider did charge"
    );

    // A retry while the attempt may still be in flight neither charges nor waits forever.
    let busy = s
        .app
        .bill_subscription(&member)
        .await
        .expect_err("in flight");
    assert_eq!(busy.code, ErrorCode::ConcurrentModification);
    // After the lease, the retry finds the payment by its metadata instead of charging again.
    s.clock.advance(PENDING_LEASE + Duration::seconds(1));
    assert_eq!(
        s.app.bill_subscription(&member).await.expect("billed"),
        BillingResult::Renewed
    );
    assert_eq!(s.payments.succeeded_for(&charge.charge_id), 1);
    assert_eq!(s.payments.payments().len(), 2, "start + one renewal");
    let charge = s
        .app
        .subscription_charge(&sub_id, 2)
        .await
        .expect("read")
        .expect("charge");
    assert_eq!(charge.attempts[0].status, AttemptStatus::Succeeded);
    assert_eq!(
        s.app
            .subscription_view(&member)
            .await
            .expect("view")
            .current_period
            .expect("period")
            .period,
        2
    );
    assert!(billing_run(&s.app).await.is_empty());
}

#[tokio::test]
async fn declines_go_to_dunning_after_one_three_and_seven_days_then_lapse() {
    let s = sub_app(at(2027, 5, 10)).await;
    let member = enrol(&s.app, &unique("m")).await;
    let view = subscribe(&s, &member, "plus", "pm_flaky").await;
    let sub_id = view["subscription_id"].as_str().expect("id").to_owned();
    s.payments.decline("pm_flaky");

    s.clock.set(at(2027, 6, 10));
    assert_eq!(billing_run(&s.app).await, vec![BillingResult::PastDue]);
    let past_due = s.app.subscription_view(&member).await.expect("view");
    assert_eq!(past_due.status, SubscriptionStatus::PastDue);
    assert_eq!(past_due.next_billing_date, Some(day(2027, 6, 11)));
    assert_eq!(
        member_state(&s.app, &member).await.tier,
        "gold",
        "benefits carry through dunning"
    );

    for (retry_day, next) in [(11, Some(day(2027, 6, 13))), (13, Some(day(2027, 6, 17)))] {
        s.clock.set(at(2027, 6, retry_day - 1));
        assert!(
            billing_run(&s.app).await.is_empty(),
            "not before the retry day"
        );
        s.clock.set(at(2027, 6, retry_day));
        assert_eq!(billing_run(&s.app).await, vec![BillingResult::PastDue]);
        assert_eq!(
            s.app
                .subscription_view(&member)
                .await
                .expect("view")
                .next_billing_date,
            next
        );
    }
    s.clock.set(at(2027, 6, 17));
    assert_eq!(billing_run(&s.app).await, vec![BillingResult::Lapsed]);
    let lapsed = s.app.subscription_view(&member).await.expect("view");
    assert_eq!(lapsed.status, SubscriptionStatus::Lapsed);
    assert_eq!(lapsed.next_billing_date, None);
    let state = member_state(&s.app, &member).await;
    assert!(state.plan.is_none());
    assert!(
        state.tier_state.plan_floor.is_none(),
        "the plan's tier floor is removed"
    );
    assert_eq!(
        state.tier_state.review_on,
        Some(day(2027, 6, 17)),
        "tier evaluation picks the member up"
    );
    let charge = s
        .app
        .subscription_charge(&sub_id, 2)
        .await
        .expect("read")
        .expect("charge");
    assert_eq!(charge.attempts.len(), 4, "every attempt is recorded");
    assert!(charge
        .attempts
        .iter()
        .all(|a| a.status == AttemptStatus::Declined));
    assert!(billing_run(&s.app).await.is_empty());
    s.clock.set(at(2027, 6, 18));
    assert!(
        billing_run(&s.app).await.is_empty(),
        "a lapsed subscription is never billed again"
    );
    assert_eq!(
        event_types(&s).await,
        vec![
            "subscription.started",
            "subscription.past_due",
            "subscription.past_due",
            "subscription.past_due",
            "subscription.lapsed"
        ]
    );
    // After the lapse the member may subscribe again.
    s.payments.accept("pm_flaky");
    subscribe(&s, &member, "basic", "pm_flaky").await;
}

#[tokio::test]
async fn a_later_success_recovers_a_past_due_subscription() {
    let s = sub_app(at(2027, 1, 31)).await;
    let member = enrol(&s.app, &unique("m")).await;
    let view = subscribe(&s, &member, "plus", "pm_card").await;
    let sub_id = view["subscription_id"].as_str().expect("id").to_owned();
    s.payments.decline("pm_card");
    s.clock.set(at(2027, 2, 28));
    assert_eq!(billing_run(&s.app).await, vec![BillingResult::PastDue]);
    s.clock.set(at(2027, 3, 1));
    assert_eq!(billing_run(&s.app).await, vec![BillingResult::PastDue]);
    s.payments.accept("pm_card");
    s.clock.set(at(2027, 3, 3));
    assert_eq!(billing_run(&s.app).await, vec![BillingResult::Recovered]);
    let recovered = s.app.subscription_view(&member).await.expect("view");
    assert_eq!(recovered.status, SubscriptionStatus::Active);
    assert_eq!(recovered.current_period.as_ref().map(|p| p.period), Some(2));
    assert_eq!(
        recovered.next_billing_date,
        Some(day(2027, 3, 31)),
        "billing stays on the anchor day"
    );
    assert!(recovered.dunning.is_none());
    let charge = s
        .app
        .subscription_charge(&sub_id, 2)
        .await
        .expect("read")
        .expect("charge");
    let statuses: Vec<AttemptStatus> = charge.attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        vec![
            AttemptStatus::Declined,
            AttemptStatus::Declined,
            AttemptStatus::Succeeded
        ]
    );
    assert_eq!(s.payments.succeeded_for(&charge.charge_id), 1);
    let bonuses = audited_ledger(&s.app, &member)
        .await
        .iter()
        .filter(|e| e.entry_id.starts_with("subscription:"))
        .count();
    assert_eq!(bonuses, 2, "the recovered period's bonus is granted once");
    s.clock.set(at(2027, 3, 31));
    assert_eq!(billing_run(&s.app).await, vec![BillingResult::Renewed]);
}

#[tokio::test]
async fn cancel_keeps_benefits_to_the_end_of_the_paid_period() {
    let s = sub_app(at(2027, 8, 20)).await;
    let member = enrol(&s.app, &unique("m")).await;
    subscribe(&s, &member, "plus", "pm_card_visa").await;
    s.clock.set(at(2027, 9, 1));
    let canceled = s.app.cancel_subscription(&member).await.expect("canceled");
    assert_eq!(canceled.status, SubscriptionStatus::Active);
    assert!(canceled.cancel_at_period_end);
    assert_eq!(canceled.next_billing_date, None);
    assert_eq!(
        s.app.cancel_subscription(&member).await.expect("again"),
        canceled,
        "cancelling twice changes nothing"
    );
    let earned = accrue(&s.app, &member, "a1", purchase("o-1", 10_000))
        .await
        .expect("accrued");
    assert!(body(&earned)["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rule"] == "plan_multiplier:plus"));

    s.clock.set(at(2027, 9, 20));
    assert_eq!(billing_run(&s.app).await, vec![BillingResult::Canceled]);
    assert_eq!(s.payments.payments().len(), 1, "no renewal charge");
    let ended = s.app.subscription_view(&member).await.expect("view");
    assert_eq!(ended.status, SubscriptionStatus::Canceled);
    let state = member_state(&s.app, &member).await;
    assert!(state.plan.is_none() && state.tier_state.plan_floor.is_none());
    let later = accrue(&s.app, &member, "a2", purchase("o-2", 10_000))
        .await
        .expect("accrued");
    assert!(!body(&later)["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rule"] == "plan_multiplier:plus"));
    assert!(billing_run(&s.app).await.is_empty());
    assert_eq!(
        event_types(&s).await,
        vec!["subscription.started", "subscription.canceled"]
    );
}

#[tokio::test]
async fn a_plan_change_takes_effect_at_the_next_period() {
    let s = sub_app(at(2027, 2, 5)).await;
    let member = enrol(&s.app, &unique("m")).await;
    subscribe(&s, &member, "plus", "pm_card_visa").await;
    let changed = s
        .app
        .change_subscription_plan(&member, &json!({ "plan_id": "basic" }))
        .await
        .expect("changed");
    assert_eq!(changed.plan_id, "plus");
    assert_eq!(changed.next_plan_id.as_deref(), Some("basic"));
    let unknown = s
        .app
        .change_subscription_plan(&member, &json!({ "plan_id": "gold-club" }))
        .await
        .expect_err("400");
    assert_eq!(unknown.code, ErrorCode::ValidationError);
    // Still Plus until the period ends.
    let earned = accrue(&s.app, &member, "a1", purchase("o-1", 10_000))
        .await
        .expect("accrued");
    assert!(body(&earned)["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rule"] == "plan_multiplier:plus"));

    s.clock.set(at(2027, 3, 5));
    assert_eq!(billing_run(&s.app).await, vec![BillingResult::Renewed]);
    let view = s.app.subscription_view(&member).await.expect("view");
    assert_eq!(view.plan_id, "basic");
    assert_eq!(view.next_plan_id, None);
    let payments = s.payments.payments();
    assert_eq!(
        payments.last().map(|(r, _)| r.amount.minor),
        Some(499),
        "billed at the new plan's price"
    );
    let earned = accrue(&s.app, &member, "a2", purchase("o-2", 10_000))
        .await
        .expect("accrued");
    let lines = body(&earned)["breakdown"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|l| l["rule"] == "plan_multiplier:basic" && l["points"] == 25),
        "{lines:?}"
    );
    let state = member_state(&s.app, &member).await;
    assert!(
        state.tier_state.plan_floor.is_none(),
        "Basic has no tier floor"
    );
}

#[tokio::test]
async fn the_http_routes_start_show_and_cancel() {
    let s = sub_app(at(2027, 4, 1)).await;
    let id = unique("m");
    enrol(&s.app, &id).await;
    let path = format!("/v1/members/{id}/subscription");
    let missing = handle(&s.app, Function::Members, ApiRequest::get(&path).request()).await;
    assert_eq!(missing.status(), 404);
    let started = handle(
        &s.app,
        Function::Members,
        ApiRequest::post(&path, start_body("plus", "pm_card_visa"))
            .key("k1")
            .request(),
    )
    .await;
    assert_eq!(started.status(), 201, "{}", json_of(&started));
    let shown = handle(&s.app, Function::Members, ApiRequest::get(&path).request()).await;
    assert_eq!(json_of(&shown)["status"], "active");
    assert_eq!(json_of(&shown)["next_billing_date"], "2027-05-01");
    let patched = handle(
        &s.app,
        Function::Members,
        ApiRequest::new("PATCH", &path)
            .raw_body(r#"{"plan_id":"basic"}"#)
            .request(),
    )
    .await;
    assert_eq!(
        json_of(&patched)["next_plan_id"],
        "basic",
        "{}",
        json_of(&patched)
    );
    let deleted = handle(
        &s.app,
        Function::Members,
        ApiRequest::new("DELETE", &path).request(),
    )
    .await;
    assert_eq!(deleted.status(), 200);
    assert_eq!(json_of(&deleted)["cancel_at_period_end"], true);
    let unknown_field = handle(
        &s.app,
        Function::Members,
        ApiRequest::post(
            &path,
            json!({ "plan_id": "plus", "payment_method": "pm", "price": 1 }),
        )
        .key("k2")
        .request(),
    )
    .await;
    assert_eq!(unknown_field.status(), 400);
}

#[tokio::test]
async fn a_few_thousand_subscriptions_due_on_one_day_are_billed_once_each() {
    const COUNT: usize = 2_000;
    let s = bulk_sub_app(at(2027, 10, 31)).await;
    let mut tasks = tokio::task::JoinSet::new();
    let ids: Vec<String> = (0..COUNT).map(|_| unique("m")).collect();
    for chunk in ids.chunks(COUNT / 50) {
        let app = Arc::clone(&s.app);
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            for id in chunk {
                let member = enrol(&app, &id).await;
                app.start_subscription(&member, key("start"), &start_body("plus", "pm_card_visa"))
                    .await
                    .expect("started");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    // Someone else's day is not billed: one more subscription anchored the day after.
    s.clock.set(at(2027, 11, 1));
    let later = enrol(&s.app, &unique("m")).await;
    subscribe(&s, &later, "plus", "pm_card_visa").await;
    assert_eq!(s.payments.payments().len(), COUNT + 1);

    s.clock.set(at(2027, 11, 30));
    let queue = MemoryQueue::default();
    let scheduled = json!({
        "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2027-11-30T03:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {}
    });
    let plan = subscription_billing::handle(&s.app, &queue, scheduled.clone())
        .await
        .expect("planned");
    assert_eq!(plan["subscriptions"], COUNT, "31 Oct is billed on 30 Nov");
    let bodies = queue.take();
    assert_eq!(plan["messages"], bodies.len());
    let mut workers = tokio::task::JoinSet::new();
    for chunk in bodies.chunks(bodies.len().div_ceil(8)) {
        let app = Arc::clone(&s.app);
        let records: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| json!({ "messageId": format!("m{i}"), "body": b, "eventSource": "aws:sqs" }))
            .collect();
        workers.spawn(async move {
            let queue = MemoryQueue::default();
            subscription_billing::handle(&app, &queue, json!({ "Records": records }))
                .await
                .expect("handled")
        });
    }
    while let Some(response) = workers.join_next().await {
        let response = response.expect("worker");
        assert_eq!(
            response["batchItemFailures"].as_array().map(Vec::len),
            Some(0),
            "{response}"
        );
    }
    assert_eq!(s.payments.payments().len(), 2 * COUNT + 1);
    // A second run the same day finds nothing left to bill.
    let again = subscription_billing::handle(&s.app, &queue, scheduled)
        .await
        .expect("planned");
    assert_eq!(again["subscriptions"], 0);
    let sample = member_id(&ids[COUNT / 2]);
    assert_eq!(
        s.app
            .subscription_view(&sample)
            .await
            .expect("view")
            .next_billing_date,
        Some(day(2027, 12, 31))
    );
}

// ---- The Stripe adapter against localstripe (started by the test command). ----

use async_trait::async_trait;
use loyalty_core::money::{Currency, Money};
use loyalty_core::subscriptions::payments::{
    CardSaved, ChargeRequest, CustomerRequest, Payment, PaymentError, PaymentOutcome,
    PaymentProvider, Presence,
};
use loyalty_core::subscriptions::provider_event::{EventError, ProviderEvent};
use loyalty_payments::{Dialect, StripeConfig, StripePayments};

const STRIPE_ENV: &str = "LOYALTY_TEST_STRIPE";

fn stripe() -> StripePayments {
    let base = std::env::var(STRIPE_ENV).unwrap_or_else(|_| {
        panic!("{STRIPE_ENV} is not set; run `make test`, or `bash infra/scripts/localstripe.sh start 8420` and export {STRIPE_ENV}=http://127.0.0.1:8420")
    });
    let config = StripeConfig::new(base, "sk_test_loyalty")
        .expect("config")
        .with_dialect(Dialect::Localstripe);
    StripePayments::new(config).expect("client")
}

async fn customer(stripe: &StripePayments) -> String {
    stripe
        .create_customer(&CustomerRequest {
            idempotency_key: unique("customer"),
            member_id: "m-1".into(),
        })
        .await
        .expect("customer")
}

/// The provider customer stored on the member's subscription.
async fn customer_of(app: &App<DynamoStore>, member: &MemberId) -> String {
    use loyalty_core::ports::RecordStore;
    let record = app
        .store()
        .record("subscription", member.as_str())
        .await
        .expect("read")
        .expect("subscription");
    record.body["customer"]
        .as_str()
        .expect("a customer is stored")
        .to_owned()
}

fn request(customer: &str, charge_id: &str, method: &str) -> ChargeRequest {
    ChargeRequest {
        customer: customer.to_owned(),
        presence: Presence::OffSession,
        idempotency_key: format!("loyalty:{charge_id}:1"),
        charge_id: charge_id.to_owned(),
        attempt: 1,
        amount: Money {
            minor: 999,
            currency: Currency::parse("USD").expect("usd"),
        },
        payment_method: method.to_owned(),
        member_id: "m-1".into(),
        description: "Plus period 1".into(),
    }
}

#[tokio::test]
async fn the_stripe_adapter_charges_declines_and_finds_a_payment_by_its_metadata() {
    let stripe = stripe();
    let cus = customer(&stripe).await;
    let ok_id = unique("charge");
    let paid = stripe
        .charge(&request(&cus, &ok_id, "pm_card_visa"))
        .await
        .expect("charged");
    assert_eq!(paid.outcome, PaymentOutcome::Succeeded);
    assert!(paid.id.starts_with("pi_"), "{paid:?}");
    assert_eq!(
        stripe.find(&cus, &ok_id, 1).await.expect("found"),
        Some(paid.clone())
    );
    assert_eq!(stripe.find(&cus, &ok_id, 2).await.expect("looked up"), None);

    // 4000000000000341: attaches, then every charge is declined.
    let bad_id = unique("charge");
    let refused = stripe
        .charge(&request(&cus, &bad_id, "pm_card_chargeCustomerFail"))
        .await
        .expect("answered");
    assert_eq!(
        refused.outcome,
        PaymentOutcome::Declined {
            code: "card_declined".into()
        }
    );
    let found = stripe
        .find(&cus, &bad_id, 1)
        .await
        .expect("looked up")
        .expect("the declined intent is kept");
    assert!(matches!(found.outcome, PaymentOutcome::Declined { .. }));

    // localstripe ignores Idempotency-Key: the same key twice makes two PaymentIntents. This is
    // why at-most-once cannot rest on the key alone.
    let again = stripe
        .charge(&request(&cus, &ok_id, "pm_card_visa"))
        .await
        .expect("charged");
    assert_ne!(again.id, paid.id);
}

#[tokio::test]
async fn on_localstripe_a_payment_method_the_provider_does_not_know_is_a_decline_not_an_outage() {
    let stripe = stripe();
    let cus = customer(&stripe).await;
    for method in ["2", "pm_no_such_method"] {
        let refused = stripe
            .charge(&request(&cus, &unique("charge"), method))
            .await
            .unwrap_or_else(|e| panic!("{method}: answered as an outage: {e}"));
        assert!(
            matches!(refused.outcome, PaymentOutcome::Declined { .. }),
            "{method}: {refused:?}"
        );
    }
}

/// Passes calls to the real adapter, but loses the answer of the first charge, as a crash
/// between the provider call and the write of its result would.
struct LosesFirstAnswer {
    inner: StripePayments,
    lost: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl PaymentProvider for LosesFirstAnswer {
    async fn create_customer(&self, request: &CustomerRequest) -> Result<String, PaymentError> {
        self.inner.create_customer(request).await
    }

    async fn save_card(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<CardSaved, PaymentError> {
        self.inner.save_card(customer, payment_method).await
    }

    async fn read_event(
        &self,
        signature: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<ProviderEvent, EventError> {
        self.inner.read_event(signature, body, now_unix).await
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        let payment = self.inner.charge(request).await?;
        if !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(PaymentError("connection reset".into()));
        }
        Ok(payment)
    }

    async fn find(
        &self,
        customer: &str,
        charge_id: &str,
        attempt: u32,
    ) -> Result<Option<Payment>, PaymentError> {
        self.inner.find(customer, charge_id, attempt).await
    }
}

#[tokio::test]
async fn on_localstripe_a_lost_answer_is_found_again_and_the_period_is_charged_once() {
    let clock = Arc::new(ManualClock::new(at(2027, 1, 31)));
    let payments = Arc::new(LosesFirstAnswer {
        inner: stripe(),
        lost: std::sync::atomic::AtomicBool::new(true),
    });
    let app = App::new(dynamo_store().await, clock.clone(), AppConfig::default())
        .with_payments(payments.clone());
    let member = enrol(&app, &unique("m")).await;
    let started = app
        .start_subscription(&member, key("k"), &start_body("plus", "pm_card_visa"))
        .await
        .expect("started");
    let sub_id = body(&started)["subscription_id"]
        .as_str()
        .expect("id")
        .to_owned();

    clock.set(at(2027, 2, 28));
    payments
        .lost
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let lost = app
        .bill_subscription(&member)
        .await
        .expect_err("answer lost");
    assert_eq!(lost.code, ErrorCode::PaymentProviderUnavailable);
    clock.advance(PENDING_LEASE + Duration::seconds(1));
    assert_eq!(
        app.bill_subscription(&member).await.expect("billed"),
        BillingResult::Renewed
    );
    let charge = app
        .subscription_charge(&sub_id, 2)
        .await
        .expect("read")
        .expect("charge");
    let intent = charge.attempts[0]
        .payment_intent
        .clone()
        .expect("intent recorded");
    assert_eq!(
        payments
            .inner
            .find(&customer_of(&app, &member).await, &charge.charge_id, 1)
            .await
            .expect("found")
            .map(|p| p.id),
        Some(intent)
    );

    // Declines on localstripe go to dunning like any other.
    let other = enrol(&app, &unique("m")).await;
    let refused = app
        .start_subscription(
            &other,
            key("k"),
            &start_body("plus", "pm_card_chargeCustomerFail"),
        )
        .await
        .expect_err("402");
    assert_eq!(refused.code, ErrorCode::PaymentDeclined);
}

/// A form POST to localstripe, as an app's Stripe.js would make it.
fn localstripe_post(path: &str, form: &[(&str, &str)]) -> Value {
    let base = std::env::var(STRIPE_ENV).expect("LOYALTY_TEST_STRIPE");
    let mut command = std::process::Command::new("curl");
    command.args(["-s", "-u", "sk_test_loyalty:", &format!("{base}{path}")]);
    for (name, value) in form {
        command.args(["--data-urlencode", &format!("{name}={value}")]);
    }
    let output = command.output().expect("curl runs");
    serde_json::from_slice(&output.stdout).expect("localstripe answers JSON")
}

#[tokio::test]
async fn on_localstripe_a_3d_secure_card_starts_incomplete_and_activates_once_authenticated() {
    let app = App::new(
        dynamo_store().await,
        Arc::new(ManualClock::new(at(2027, 2, 1))),
        AppConfig::default(),
    )
    .with_payments(Arc::new(stripe()));
    // 4000002500003155 asks for 3-D Secure on every on-session payment.
    let card = localstripe_post(
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", "4000002500003155"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2035"),
            ("card[cvc]", "123"),
        ],
    );
    let method = card["id"].as_str().expect("a payment method").to_owned();
    let member = enrol(&app, &unique("m")).await;
    let first = app
        .start_subscription(&member, key("k"), &start_body("plus", &method))
        .await
        .expect("incomplete");
    assert_eq!(body(&first)["status"], "incomplete", "{:?}", body(&first));
    let secret = body(&first)["client_secret"]
        .as_str()
        .expect("client secret")
        .to_owned();
    let intent = secret
        .split("_secret_")
        .next()
        .expect("intent id")
        .to_owned();
    let authenticated = localstripe_post(
        &format!("/v1/payment_intents/{intent}/_authenticate"),
        &[("client_secret", &secret), ("success", "true")],
    );
    assert_ne!(
        authenticated["status"], "requires_action",
        "{authenticated}"
    );

    // The app repeats its request once Stripe.js reports success; a charge still processing
    // answers 503 and is asked again.
    let mut active = None;
    for _ in 0..20 {
        match app
            .start_subscription(&member, key("k"), &start_body("plus", &method))
            .await
        {
            Ok(outcome) => {
                active = Some(body(&outcome).clone());
                break;
            }
            Err(e) if e.code == ErrorCode::PaymentProviderUnavailable => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let active = active.expect("activated");
    assert_eq!(active["status"], "active");
    assert_eq!(member_state(&app, &member).await.balance.available, 350);
}
