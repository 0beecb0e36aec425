//! Points flowing back, on DynamoDB Local: returns take back exactly what an order earned, under
//! each return policy and racing a redemption; adjustments record who made them and why.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::ledger::{EntryType, Source};
use loyalty_core::service::{AppConfig, Outcome};
use loyalty_core::{App, ErrorCode, Points};
use loyalty_dynamo::DynamoStore;
use loyalty_tests::*;
use serde_json::{json, Value};

/// A day outside every default season, so no promotion line depends on the test's date.
async fn movement_app(return_policy: &str) -> Arc<App<DynamoStore>> {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap(),
    ));
    let TestApp { app, .. } = test_app_with(clock, AppConfig::default()).await;
    publish_default_program_with(&app, |document| {
        document["return_policy"] = json!(return_policy);
    })
    .await;
    app
}

fn usd(minor: i64) -> Value {
    json!({ "minor": minor, "currency": "USD" })
}

/// An order of `minor` with a coffee line, so it earns on two rules (base and category).
fn coffee_order(order: &str, minor: i64) -> Value {
    json!({
        "kind": "purchase", "order_id": order, "amount": usd(minor),
        "items": [
            { "sku": "BEANS", "category": "coffee", "amount": usd(minor / 2), "quantity": 1 },
            { "sku": "MUG", "category": "home", "amount": usd(minor - minor / 2), "quantity": 1 }
        ]
    })
}

async fn give_back<S: loyalty_core::ports::Store>(
    app: &App<S>,
    member: &loyalty_core::ids::MemberId,
    idempotency_key: &str,
    body: Value,
) -> Result<Outcome, loyalty_core::ApiError> {
    app.return_order(member, key(idempotency_key), &body).await
}

fn points(outcome: &Outcome) -> Points {
    body(outcome)["points"].as_i64().expect("points")
}

#[tokio::test]
async fn partial_and_repeated_returns_take_back_exactly_what_the_order_earned() {
    let app = movement_app("cap_at_balance").await;
    let member = enrol(&app, &unique("m")).await;
    let earned = points(
        &accrue(&app, &member, "buy", coffee_order("o-split", 10_001))
            .await
            .expect("accrued"),
    );
    assert!(earned > 100, "the coffee line earns extra: {earned}");

    let mut taken = 0;
    for (i, minor) in [3_333, 3_333, 1].into_iter().enumerate() {
        let outcome = give_back(
            &app,
            &member,
            &format!("r{i}"),
            json!({ "order_id": "o-split", "return_id": format!("rma-{i}"), "amount": usd(minor) }),
        )
        .await
        .expect("returned");
        assert!(points(&outcome) <= 0);
        taken += points(&outcome);
    }
    // The rest of the order: no amount, no items.
    let rest = give_back(
        &app,
        &member,
        "r-rest",
        json!({ "order_id": "o-split", "return_id": "rma-rest" }),
    )
    .await
    .expect("returned the rest");
    taken += points(&rest);
    assert_eq!(
        taken, -earned,
        "the returns together take back exactly what it earned"
    );

    let more = give_back(
        &app,
        &member,
        "r-more",
        json!({ "order_id": "o-split", "return_id": "rma-more", "amount": usd(1) }),
    )
    .await
    .expect_err("nothing is left to return");
    assert_eq!(more.code, ErrorCode::ReturnExceedsOrder);

    let state = member_state(&app, &member).await;
    assert_eq!(
        state.balance.available, 100,
        "only the welcome bonus is left"
    );
    assert!(
        state.qualifying.values().all(|spend| *spend == 0) || state.qualifying.is_empty(),
        "the order's qualifying spend is taken back: {:?}",
        state.qualifying
    );
    let ledger = audited_ledger(&app, &member).await;
    let reversals = ledger
        .iter()
        .filter(|e| e.entry_type == EntryType::Reverse)
        .count();
    assert_eq!(reversals, 4);
}

#[tokio::test]
async fn a_return_is_refused_for_an_unknown_order_and_answered_once_per_return_id() {
    let app = movement_app("cap_at_balance").await;
    let member = enrol(&app, &unique("m")).await;
    accrue(&app, &member, "buy", purchase("o-dup", 5_000))
        .await
        .expect("accrued");

    let unknown = give_back(
        &app,
        &member,
        "r-unknown",
        json!({ "order_id": "o-never", "return_id": "rma-1" }),
    )
    .await
    .expect_err("no such order");
    assert_eq!(unknown.code, ErrorCode::OrderNotFound);

    let half = json!({ "order_id": "o-dup", "return_id": "rma-1", "amount": usd(2_500) });
    let first = give_back(&app, &member, "r-1", half.clone())
        .await
        .expect("returned");
    let again = give_back(&app, &member, "r-1", half.clone())
        .await
        .expect("replayed");
    assert_eq!(again, Outcome::Replayed(body(&first).clone()));
    let other_key = give_back(&app, &member, "r-2", half)
        .await
        .expect_err("the return id is taken");
    assert_eq!(other_key.code, ErrorCode::DuplicateReturn);
    assert_eq!(member_state(&app, &member).await.balance.available, 125);
}

/// Earns 500 on one order, spends 500 of the 600, then returns the whole order.
async fn return_after_spending(
    policy: &str,
) -> (
    Arc<App<DynamoStore>>,
    loyalty_core::ids::MemberId,
    Result<Outcome, loyalty_core::ApiError>,
) {
    let app = movement_app(policy).await;
    let member = enrol(&app, &unique("m")).await;
    accrue(&app, &member, "buy", purchase("o-spent", 50_000))
        .await
        .expect("accrued");
    app.redeem(&member, key("spend"), &json!({ "reward_id": "five-off" }))
        .await
        .expect("redeemed");
    let returned = give_back(
        &app,
        &member,
        "r-all",
        json!({ "order_id": "o-spent", "return_id": "rma-all" }),
    )
    .await;
    (app, member, returned)
}

#[tokio::test]
async fn a_return_after_the_points_were_spent_follows_the_return_policy() {
    let (app, member, returned) = return_after_spending("allow_negative").await;
    assert_eq!(points(&returned.expect("allowed")), -500);
    assert_eq!(member_state(&app, &member).await.balance.available, -400);
    let blocked = app
        .redeem(
            &member,
            key("again"),
            &json!({ "reward_id": "free-coffee" }),
        )
        .await
        .expect_err("a negative balance blocks redemptions");
    assert_eq!(blocked.code, ErrorCode::InsufficientPoints);
    audited_ledger(&app, &member).await;

    let (app, member, returned) = return_after_spending("cap_at_balance").await;
    let outcome = returned.expect("capped");
    assert_eq!(points(&outcome), -100);
    let lines: Points = body(&outcome)["breakdown"]
        .as_array()
        .expect("breakdown")
        .iter()
        .map(|l| l["points"].as_i64().expect("points"))
        .sum();
    assert_eq!(lines, -100, "the breakdown explains what was forgiven");
    assert_eq!(member_state(&app, &member).await.balance.available, 0);
    audited_ledger(&app, &member).await;

    let (app, member, returned) = return_after_spending("reject").await;
    assert_eq!(
        returned.expect_err("rejected").code,
        ErrorCode::InsufficientPoints
    );
    assert_eq!(member_state(&app, &member).await.balance.available, 100);
    assert_eq!(audited_ledger(&app, &member).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_return_racing_a_redemption_never_overdraws_under_cap_at_balance() {
    let app = movement_app("cap_at_balance").await;
    let member = enrol(&app, &unique("m")).await;
    accrue(&app, &member, "buy", purchase("o-race", 50_000))
        .await
        .expect("accrued");
    let returning = {
        let (app, member) = (Arc::clone(&app), member.clone());
        tokio::spawn(async move {
            give_back(
                &app,
                &member,
                "r-race",
                json!({ "order_id": "o-race", "return_id": "rma-race" }),
            )
            .await
        })
    };
    let redeeming = {
        let (app, member) = (Arc::clone(&app), member.clone());
        tokio::spawn(async move {
            app.redeem(&member, key("spend"), &json!({ "reward_id": "five-off" }))
                .await
        })
    };
    let returned = returning
        .await
        .expect("joined")
        .expect("a return is never refused under cap");
    let redeemed = redeeming.await.expect("joined");
    let state = member_state(&app, &member).await;
    assert!(state.balance.available >= 0);
    let spent = if redeemed.is_ok() { 500 } else { 0 };
    assert_eq!(
        state.balance.available,
        600 - spent + points(&returned),
        "the ledger adds up whichever won"
    );
    audited_ledger(&app, &member).await;
}

#[tokio::test]
async fn adjustments_record_the_actor_and_the_reason() {
    let app = movement_app("reject").await;
    let member = enrol(&app, &unique("m")).await;
    let given = app
        .adjust(
            "agent-7",
            &member,
            key("goodwill"),
            &json!({ "points": 250, "reason": "Late delivery", "note": "Ticket 4411" }),
        )
        .await
        .expect("adjusted");
    assert_eq!(body(&given)["actor"], "agent-7");
    assert_eq!(body(&given)["balance"]["available"], 350);

    let ledger = audited_ledger(&app, &member).await;
    let entry = ledger
        .iter()
        .find(|e| e.entry_type == EntryType::Adjust)
        .expect("an adjust entry");
    assert_eq!(entry.reason, "Late delivery");
    assert_eq!(entry.points, 250);
    assert_eq!(entry.balance_after, 350);
    let Source::Adjustment { actor, note, .. } = &entry.source else {
        panic!("an adjustment source: {:?}", entry.source)
    };
    assert_eq!(actor, "agent-7");
    assert_eq!(note.as_deref(), Some("Ticket 4411"));

    let no_reason = app
        .adjust("agent-7", &member, key("bare"), &json!({ "points": 5 }))
        .await
        .expect_err("a reason is required");
    assert_eq!(no_reason.status(), 400);
    let blank = app
        .adjust(
            "agent-7",
            &member,
            key("blank"),
            &json!({ "points": 5, "reason": "  " }),
        )
        .await
        .expect_err("a blank reason is no reason");
    assert_eq!(blank.status(), 400);
    let too_much = app
        .adjust(
            "agent-7",
            &member,
            key("take"),
            &json!({ "points": -351, "reason": "Correction" }),
        )
        .await
        .expect_err("reject refuses an overdraft");
    assert_eq!(too_much.code, ErrorCode::InsufficientPoints);
    let taken = app
        .adjust(
            "agent-7",
            &member,
            key("take-ok"),
            &json!({ "points": -350, "reason": "Correction" }),
        )
        .await
        .expect("adjusted");
    assert_eq!(body(&taken)["balance"]["available"], 0);
    assert_eq!(audited_ledger(&app, &member).await.len(), 3);
}

#[tokio::test]
async fn a_return_of_items_takes_back_their_share_of_the_order() {
    let app = movement_app("cap_at_balance").await;
    let member = enrol(&app, &unique("m")).await;
    let earned = accrue(&app, &member, "buy", coffee_order("o-items", 10_000))
        .await
        .expect("accrued");
    assert_eq!(points(&earned), 150, "100 base and 50 for the coffee line");
    let returned = give_back(
        &app,
        &member,
        "r-beans",
        json!({
            "order_id": "o-items", "return_id": "rma-beans",
            "items": [{ "sku": "BEANS", "category": "coffee", "amount": usd(5_000), "quantity": 1 }]
        }),
    )
    .await
    .expect("returned");
    assert_eq!(
        points(&returned),
        -75,
        "half the order's money, half of every line"
    );
    let both = give_back(
        &app,
        &member,
        "r-both",
        json!({ "order_id": "o-items", "return_id": "rma-both", "amount": usd(5_000), "items": [] }),
    )
    .await
    .expect_err("amount or items, not both");
    assert_eq!(both.status(), 400);
    assert_eq!(member_state(&app, &member).await.balance.available, 175);
}

#[tokio::test]
async fn a_fully_returned_order_claws_back_the_referral_it_qualified_under_claw_back() {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap(),
    ));
    let queue = Arc::new(loyalty_core::events::MemoryQueue::default());
    let store = streaming_store().await;
    let outbox = loyalty_tests::stream_relay::StreamRelay::of(&store).await;
    let app = App::new(store, clock, AppConfig::default()).with_referral_queue(queue.clone());
    publish_default_program_with(&app, |document| {
        document["referrals"]["on_full_return"] = json!("claw_back");
    })
    .await;

    let enrol_body = |body: Value| {
        loyalty_core::service::parse_body::<loyalty_core::commands::EnrolRequest>(&body)
            .expect("enrolment")
    };
    let referrer = app
        .enrol(enrol_body(
            json!({ "member_id": unique("ref"), "email": format!("{}@example.org", unique("r")) }),
        ))
        .await
        .expect("referrer")
        .member_id;
    let code = member_state(&app, &referrer).await.referral_code;
    let referee = app
        .enrol(enrol_body(json!({
            "member_id": unique("friend"), "email": format!("{}@example.org", unique("f")),
            "referral_code": code.as_str()
        })))
        .await
        .expect("referee")
        .member_id;
    accrue(&app, &referee, "buy", purchase("o-ref", 5_000))
        .await
        .expect("accrued");
    // The outbox hands the first qualifying purchase to the referral worker.
    outbox.relay(&app).await;
    for message in queue.take() {
        app.handle_referral_message(&message)
            .await
            .expect("referral decided");
    }
    assert_eq!(member_state(&app, &referrer).await.balance.available, 600);
    assert_eq!(member_state(&app, &referee).await.balance.available, 400);

    let half = give_back(
        &app,
        &referee,
        "r-half",
        json!({ "order_id": "o-ref", "return_id": "rma-half", "amount": usd(2_500) }),
    )
    .await
    .expect("half returned");
    assert_eq!(points(&half), -25, "a partial return keeps the referral");
    let rest = give_back(
        &app,
        &referee,
        "r-rest",
        json!({ "order_id": "o-ref", "return_id": "rma-rest" }),
    )
    .await
    .expect("rest returned");
    assert_eq!(points(&rest), -25 - 250, "the rest and the referee's bonus");
    assert_eq!(member_state(&app, &referee).await.balance.available, 100);
    assert_eq!(member_state(&app, &referrer).await.balance.available, 100);
    let referrer_ledger = audited_ledger(&app, &referrer).await;
    assert_eq!(
        referrer_ledger.last().map(|e| e.entry_type),
        Some(EntryType::Reverse)
    );
    audited_ledger(&app, &referee).await;
}
