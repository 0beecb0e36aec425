//! Pending points on DynamoDB Local: a purchase inside its program's return window earns points
//! that show in `balance.pending` and cannot be spent; the daily points run releases each day's
//! lot exactly once, however often it fires and whoever races it; a return inside the window
//! takes back the pending points first; tiers count the activity at once or on release, as the
//! program says.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::ids::MemberId;
use loyalty_core::ledger::{EntryType, PendingMove, Source};
use loyalty_core::ports::Store;
use loyalty_core::service::{AppConfig, Outcome};
use loyalty_core::{App, ErrorCode};
use loyalty_tests::*;
use serde_json::{json, Value};

fn at(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0)
        .single()
        .expect("instant")
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).expect("day")
}

/// An app on a fresh table whose clock starts at `start`, running the default program with a
/// 14-day return window, `pending_tier_activity` as given and no welcome bonus.
async fn pending_app(tier_activity: &str, start: DateTime<Utc>) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(start));
    let test = test_app_with(clock.clone(), AppConfig::default()).await;
    publish_default_program_with(&test.app, |document| {
        document["earning"]["pending_days"] = json!(14);
        document["earning"]["pending_tier_activity"] = json!(tier_activity);
        document["welcome_bonus"] = json!(0);
    })
    .await;
    (test, clock)
}

async fn buy<S: Store>(app: &App<S>, member: &MemberId, order: &str, minor: i64) -> Value {
    match accrue(app, member, &unique("buy"), purchase(order, minor))
        .await
        .expect("accrued")
    {
        Outcome::Created(receipt) => receipt,
        other => panic!("a fresh key writes: {other:?}"),
    }
}

async fn give_back<S: Store>(app: &App<S>, member: &MemberId, body: Value) -> Value {
    match app
        .return_order(member, key(&unique("ret")), &body)
        .await
        .expect("returned")
    {
        Outcome::Created(receipt) => receipt,
        other => panic!("a fresh key writes: {other:?}"),
    }
}

fn usd(minor: i64) -> Value {
    json!({ "minor": minor, "currency": "USD" })
}

async fn balances<S: Store>(app: &App<S>, member: &MemberId) -> (i64, i64) {
    let state = member_state(app, member).await;
    assert_eq!(state.pending_lots.total(), state.balance.pending);
    (state.balance.available, state.balance.pending)
}

#[tokio::test]
async fn a_purchase_inside_its_return_window_earns_pending_points_that_cannot_be_spent() {
    let (TestApp { app, .. }, _clock) = pending_app("at_earn", at(3, 2, 10)).await;
    let member = enrol(&app, &unique("pend")).await;
    let receipt = buy(&app, &member, &unique("order"), 30_000).await;
    assert_eq!(receipt["points"], 300);
    assert_eq!(receipt["pending_until"], "2026-03-16");
    assert_eq!(receipt["balance"]["pending"], 300);
    assert_eq!(receipt["balance"]["available"], 0);
    assert_eq!(receipt["balance"]["lifetime_earned"], 300);

    let refused = app
        .redeem(
            &member,
            key(&unique("rdm")),
            &json!({ "reward_id": "free-coffee" }),
        )
        .await
        .expect_err("pending points are not spendable");
    assert_eq!(refused.code, ErrorCode::InsufficientPoints);

    let ledger = audited_ledger(&app, &member).await;
    let earned = ledger.last().expect("the earn entry");
    assert_eq!((earned.points, earned.balance_after), (300, 0));
    assert_eq!(
        earned.pending,
        Some(PendingMove {
            points: 300,
            release_on: day(3, 16)
        })
    );
    // Not dated for expiry until released.
    assert!(member_state(&app, &member).await.expiry.lots.is_empty());
}

#[tokio::test]
async fn each_days_pending_points_are_released_once_however_often_and_however_many_run() {
    let (TestApp { app, store }, clock) = pending_app("at_earn", at(3, 2, 10)).await;
    let member = enrol(&app, &unique("rel")).await;
    buy(&app, &member, &unique("order"), 30_000).await; // 300, released 03-16
    clock.set(at(3, 5, 10));
    buy(&app, &member, &unique("order"), 12_000).await; // 120, released 03-19
    assert_eq!(balances(&app, &member).await, (0, 420));

    // The day before: nothing is due.
    clock.set(at(3, 15, 4));
    assert_eq!(app.run_expiry().await.expect("run").released_lots, 0);

    // The first lot's day: the schedule fires three times.
    clock.set(at(3, 16, 4));
    let mut released = 0;
    for _ in 0..3 {
        released += app.run_expiry().await.expect("run").released_lots;
    }
    assert_eq!(released, 1);
    assert_eq!(balances(&app, &member).await, (300, 120));

    // The second lot's day: two workers at once, then a third run.
    clock.set(at(3, 19, 4));
    let other = Arc::new(App::new(store.clone(), clock.clone(), AppConfig::default()));
    let (first, second) = tokio::join!(app.run_expiry(), other.run_expiry());
    let (first, second) = (first.expect("first worker"), second.expect("second worker"));
    assert_eq!(first.released_lots + second.released_lots, 1);
    assert_eq!(first.released_points + second.released_points, 120);
    assert_eq!(app.run_expiry().await.expect("third run").released_lots, 0);

    assert_eq!(balances(&app, &member).await, (420, 0));
    let releases: Vec<_> = audited_ledger(&app, &member)
        .await
        .into_iter()
        .filter(|e| e.entry_type == EntryType::Release)
        .map(|e| (e.entry_id, e.points, e.pending.map(|p| p.points)))
        .collect();
    assert_eq!(
        releases,
        vec![
            ("release:2026-03-16".to_owned(), 0, Some(-300)),
            ("release:2026-03-19".to_owned(), 0, Some(-120)),
        ]
    );
    // Released points are dated for expiry from the month they were released in.
    let state = member_state(&app, &member).await;
    assert_eq!(state.expiry.total(), 420);
    assert!(state.expiry.lots.contains_key("2026-03"));
    // Spendable now.
    app.redeem(
        &member,
        key(&unique("rdm")),
        &json!({ "reward_id": "free-coffee" }),
    )
    .await
    .expect("released points are spendable");
}

#[tokio::test]
async fn a_return_inside_the_window_takes_back_the_pending_points_first() {
    let (TestApp { app, .. }, clock) = pending_app("at_earn", at(3, 2, 10)).await;
    let member = enrol(&app, &unique("retp")).await;
    // 50 spendable points from an action, then a 400-point order inside its window.
    accrue(
        &app,
        &member,
        &unique("review"),
        json!({ "kind": "action", "action": "review", "reference": unique("rv") }),
    )
    .await
    .expect("reviewed");
    let order = unique("order");
    buy(&app, &member, &order, 40_000).await;
    assert_eq!(balances(&app, &member).await, (50, 400));

    clock.set(at(3, 6, 10));
    let half = give_back(
        &app,
        &member,
        json!({ "order_id": order, "return_id": "r-1", "amount": usd(20_000) }),
    )
    .await;
    assert_eq!(half["points"], -200);
    assert_eq!(balances(&app, &member).await, (50, 200));
    let rest = give_back(
        &app,
        &member,
        json!({ "order_id": order, "return_id": "r-2" }),
    )
    .await;
    assert_eq!(rest["points"], -200);
    assert_eq!(balances(&app, &member).await, (50, 0));

    // Nothing is left to release on the order's day.
    clock.set(at(3, 16, 4));
    assert_eq!(app.run_expiry().await.expect("run").released_lots, 0);
    let ledger = audited_ledger(&app, &member).await;
    assert!(ledger.iter().all(|e| e.entry_type != EntryType::Release));
    let reversed: Vec<_> = ledger
        .iter()
        .filter(|e| matches!(e.source, Source::Return { .. }))
        .map(|e| (e.points, e.balance_after, e.pending.map(|p| p.points)))
        .collect();
    assert_eq!(
        reversed,
        vec![(-200, 50, Some(-200)), (-200, 50, Some(-200))]
    );
}

#[tokio::test]
async fn a_return_after_the_release_takes_back_available_points_under_the_return_policy() {
    let (TestApp { app, .. }, clock) = pending_app("at_earn", at(3, 2, 10)).await;
    let member = enrol(&app, &unique("late")).await;
    let order = unique("order");
    buy(&app, &member, &order, 40_000).await;
    clock.set(at(3, 16, 4));
    assert_eq!(app.run_expiry().await.expect("run").released_lots, 1);
    clock.set(at(3, 20, 10));
    let back = give_back(
        &app,
        &member,
        json!({ "order_id": order, "return_id": "r-1" }),
    )
    .await;
    assert_eq!(back["points"], -400);
    assert_eq!(balances(&app, &member).await, (0, 0));
    let last = audited_ledger(&app, &member).await.pop().expect("entry");
    assert_eq!((last.balance_after, last.pending), (0, None));
}

#[tokio::test]
async fn tiers_count_pending_activity_at_once_by_default() {
    let (TestApp { app, .. }, _clock) = pending_app("at_earn", at(3, 2, 10)).await;
    let member = enrol(&app, &unique("tier")).await;
    let receipt = buy(&app, &member, &unique("order"), 60_000).await;
    assert_eq!(receipt["tier"], "silver");
}

#[tokio::test]
async fn tiers_count_pending_activity_on_release_when_the_program_says_so() {
    let (TestApp { app, .. }, clock) = pending_app("on_release", at(3, 2, 10)).await;
    let kept = enrol(&app, &unique("kept")).await;
    let returned = enrol(&app, &unique("back")).await;
    let receipt = buy(&app, &kept, &unique("order"), 60_000).await;
    assert_eq!(receipt["tier"], "bronze");
    let order = unique("order");
    buy(&app, &returned, &order, 60_000).await;
    clock.set(at(3, 6, 10));
    give_back(
        &app,
        &returned,
        json!({ "order_id": order, "return_id": "r-1" }),
    )
    .await;

    clock.set(at(3, 16, 4));
    let run = app.run_expiry().await.expect("run");
    assert_eq!(run.released_lots, 1);
    assert_eq!(member_state(&app, &kept).await.tier, "silver");
    // An order returned inside its window never counted.
    let state = member_state(&app, &returned).await;
    assert_eq!(state.tier, "bronze");
    assert!(state.qualifying.is_empty());
}

#[tokio::test]
async fn a_purchase_reported_after_its_window_has_passed_is_available_at_once() {
    let (TestApp { app, .. }, clock) = pending_app("on_release", at(3, 1, 9)).await;
    let member = enrol(&app, &unique("late")).await;
    clock.set(at(3, 20, 10));
    let late = json!({
        "kind": "purchase",
        "order_id": unique("order"),
        "amount": usd(30_000),
        "occurred_at": "2026-03-02T12:00:00Z",
    });
    let receipt = match accrue(&app, &member, &unique("late"), late)
        .await
        .expect("accrued")
    {
        Outcome::Created(receipt) => receipt,
        other => panic!("a fresh key writes: {other:?}"),
    };
    assert_eq!(receipt["points"], 300);
    assert!(receipt.get("pending_until").is_none());
    assert_eq!(balances(&app, &member).await, (300, 0));
    // Its activity counts at once: there is no release left to count it.
    assert_eq!(receipt["tier"], "bronze");
    assert!(!member_state(&app, &member).await.qualifying.is_empty());
}
