//! Reward codes at the till on DynamoDB Local: a code is looked up by the till, customer service
//! and its own member; used once; canceled with its points, stock unit and per-member count
//! given back exactly once; a `use` and a `cancel` of one code racing have one winner; a hold
//! reserves points until the till confirms it or it lapses; an unused code expires under the
//! program's policy, once.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use loyalty_core::clock::{ManualClock, SystemClock};
use loyalty_core::events::MemoryQueue;
use loyalty_core::ids::{MemberId, RewardId};
use loyalty_core::ledger::EntryType;
use loyalty_core::ports::{ProgramStore, Store};
use loyalty_core::redemptions::{Lapse, RedemptionStatus, RedemptionView};
use loyalty_core::service::{AppConfig, CodeBatchReport};
use loyalty_core::{App, ErrorCode};
use loyalty_dynamo::DynamoStore;
use loyalty_tests::*;
use serde_json::{json, Value};

/// Racing writers retry until their answer is definite; the tests want answers, not give-ups.
fn patient() -> AppConfig {
    AppConfig {
        max_attempts: 500,
        ..AppConfig::default()
    }
}

/// Publishes the default program with `codes` set to `codes`.
async fn set_codes<S: Store>(app: &App<S>, codes: Value) {
    publish_default_program_with(app, |document| {
        document["codes"] = codes;
    })
    .await;
}

/// A member with the welcome bonus (100) and `minor / 100` points from one purchase.
async fn funded<S: Store>(app: &App<S>, minor: i64) -> MemberId {
    let member = enrol(app, &unique("m")).await;
    accrue(
        app,
        &member,
        &unique("fund"),
        purchase(&unique("order"), minor),
    )
    .await
    .expect("funded");
    member
}

/// Redeems `reward` (held when `hold`) and answers the receipt.
async fn redeem<S: Store>(app: &App<S>, member: &MemberId, reward: &str, hold: bool) -> Value {
    let outcome = app
        .redeem(
            member,
            key(&unique("redeem")),
            &json!({ "reward_id": reward, "hold": hold }),
        )
        .await
        .expect("redeemed");
    body(&outcome).clone()
}

fn code_of(receipt: &Value) -> String {
    receipt["code"].as_str().expect("a code").to_owned()
}

async fn stock_used(store: &DynamoStore, reward: &str) -> u32 {
    let reward = RewardId::parse(reward).expect("reward id");
    store
        .stock_used(std::slice::from_ref(&reward))
        .await
        .expect("stock read")
        .get(&reward)
        .copied()
        .unwrap_or(0)
}

/// The member's ledger adds up to its available balance, entry by entry.
async fn assert_ledger_exact<S: Store>(app: &App<S>, member: &MemberId) {
    let ledger = audited_ledger(app, member).await;
    let state = member_state(app, member).await;
    assert_eq!(
        ledger.iter().map(|e| e.points).sum::<i64>(),
        state.balance.available
    );
}

#[tokio::test]
async fn a_code_is_shown_to_the_till_and_its_member_and_is_not_found_for_another_member() {
    let TestApp { app, .. } = test_app().await;
    let member = funded(&app, 50_000).await;
    let other = enrol(&app, &unique("other")).await;
    let receipt = redeem(&app, &member, "free-coffee", false).await;
    let code = code_of(&receipt);
    assert_eq!(receipt["status"], "issued");

    let at_till = app.redemption_view(&code, None).await.expect("found");
    assert_eq!(at_till.status, RedemptionStatus::Issued);
    assert_eq!(at_till.points, 150);
    assert_eq!(at_till.member_id, member);
    assert_eq!(at_till.redemption_id, receipt["redemption_id"]);
    // Typed at the till in lower case: the same code.
    let typed = app
        .redemption_view(&code.to_lowercase(), Some(&member))
        .await
        .expect("its own member sees it");
    assert_eq!(typed, at_till);
    let json = serde_json::to_value(&at_till).expect("json");
    for field in [
        "code",
        "redemption_id",
        "member_id",
        "reward_id",
        "points",
        "status",
        "expires_at",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }

    let hidden = app
        .redemption_view(&code, Some(&other))
        .await
        .expect_err("another member's code");
    assert_eq!(hidden.code, ErrorCode::RedemptionNotFound);
    let canceled_by_other = app
        .cancel_code(&code, Some(&other))
        .await
        .expect_err("another member cannot cancel it");
    assert_eq!(canceled_by_other.code, ErrorCode::RedemptionNotFound);
    let unknown = app
        .redemption_view("ZZZZ-ZZZZ-ZZZZ", None)
        .await
        .expect_err("no such code");
    assert_eq!(unknown.code, ErrorCode::RedemptionNotFound);
    // The code says nothing about the member or the redemption.
    assert!(!code.contains(member.as_str()));
    assert!(!receipt["redemption_id"]
        .as_str()
        .expect("id")
        .contains(&code));
}

#[tokio::test]
async fn a_code_is_used_once_and_a_used_code_cannot_be_canceled() {
    let TestApp { app, .. } = test_app().await;
    let member = funded(&app, 50_000).await;
    let code = code_of(&redeem(&app, &member, "free-coffee", false).await);
    let before = member_state(&app, &member).await.balance;

    let used = app.use_code(&code).await.expect("used");
    assert_eq!(used.status, RedemptionStatus::Used);
    let again = app.use_code(&code).await.expect_err("used twice");
    assert_eq!(again.code, ErrorCode::CodeAlreadyUsed);
    let cancel = app.cancel_code(&code, None).await.expect_err("cancel");
    assert_eq!(cancel.code, ErrorCode::CodeAlreadyUsed);
    assert_eq!(member_state(&app, &member).await.balance, before);
    assert_ledger_exact(&app, &member).await;
}

#[tokio::test]
async fn a_cancel_gives_back_points_stock_and_the_per_member_count_once() {
    let TestApp { app, store } = test_app().await;
    let member = funded(&app, 150_000).await; // 1600
    let receipt = redeem(&app, &member, "tote-bag", false).await; // 1200, stock, 1 per member
    let code = code_of(&receipt);
    assert_eq!(member_state(&app, &member).await.balance.available, 400);
    assert_eq!(stock_used(&store, "tote-bag").await, 1);

    let canceled = app
        .cancel_code(&code, Some(&member))
        .await
        .expect("canceled");
    assert_eq!(canceled.status, RedemptionStatus::Canceled);
    let again = app
        .cancel_code(&code, None)
        .await
        .expect("cancelling again");
    assert_eq!(again.status, RedemptionStatus::Canceled);
    let state = member_state(&app, &member).await;
    assert_eq!(state.balance.available, 1600);
    assert_eq!(state.balance.lifetime_redeemed, 0);
    assert_eq!(state.reward_counts.get("tote-bag").copied(), Some(0));
    assert_eq!(stock_used(&store, "tote-bag").await, 0);
    let ledger = audited_ledger(&app, &member).await;
    let reversals: Vec<_> = ledger
        .iter()
        .filter(|e| e.entry_type == EntryType::Reverse)
        .collect();
    assert_eq!(reversals.len(), 1);
    assert_eq!(
        reversals[0].entry_id,
        format!(
            "redemption_cancel:{}",
            receipt["redemption_id"].as_str().expect("id")
        )
    );
    assert_eq!(reversals[0].points, 1200);
    let unusable = app.use_code(&code).await.expect_err("canceled code");
    assert_eq!(unusable.code, ErrorCode::CodeNotUsable);
    // The per-member limit of one counts the canceled one no more.
    redeem(&app, &member, "tote-bag", false).await;
    assert_ledger_exact(&app, &member).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_uses_racing_fifty_cancels_of_one_code_have_exactly_one_winner() {
    let TestApp { app, store } = test_app_with(Arc::new(SystemClock), patient()).await;
    let member = funded(&app, 150_000).await; // 1600
    let code = code_of(&redeem(&app, &member, "tote-bag", false).await);

    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let app = Arc::clone(&app);
            let code = code.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    ("use", app.use_code(&code).await)
                } else {
                    ("cancel", app.cancel_code(&code, None).await)
                }
            })
        })
        .collect();
    let mut answers: Vec<(&str, Result<RedemptionView, ErrorCode>)> = Vec::new();
    for task in tasks {
        let (what, result) = task.await.expect("task finished");
        answers.push((what, result.map_err(|e| e.code)));
    }
    let final_state = app.redemption_view(&code, None).await.expect("found");
    let uses_won = answers
        .iter()
        .filter(|(what, r)| *what == "use" && r.is_ok())
        .count();
    let cancels_ok = answers
        .iter()
        .filter(|(what, r)| *what == "cancel" && r.is_ok())
        .count();
    let state = member_state(&app, &member).await;
    match final_state.status {
        RedemptionStatus::Used => {
            assert_eq!((uses_won, cancels_ok), (1, 0), "{answers:?}");
            assert!(answers
                .iter()
                .filter(|(_, r)| r.is_err())
                .all(|(_, r)| *r == Err(ErrorCode::CodeAlreadyUsed)));
            assert_eq!(state.balance.available, 400);
            assert_eq!(stock_used(&store, "tote-bag").await, 1);
        }
        RedemptionStatus::Canceled => {
            // Every cancel answers the same 200; every use is refused.
            assert_eq!((uses_won, cancels_ok), (0, 50), "{answers:?}");
            assert!(answers
                .iter()
                .filter(|(what, _)| *what == "use")
                .all(|(_, r)| *r == Err(ErrorCode::CodeNotUsable)));
            assert_eq!(state.balance.available, 1600);
            assert_eq!(stock_used(&store, "tote-bag").await, 0);
        }
        other => panic!("the race ended {other:?}"),
    }
    let reversals = audited_ledger(&app, &member)
        .await
        .iter()
        .filter(|e| e.entry_type == EntryType::Reverse)
        .count();
    assert_eq!(
        reversals,
        usize::from(final_state.status == RedemptionStatus::Canceled)
    );
    assert_ledger_exact(&app, &member).await;
}

#[tokio::test]
async fn a_hold_reserves_points_that_cannot_be_spent_twice_and_use_confirms_it() {
    let TestApp { app, .. } = test_app().await;
    let member = funded(&app, 50_000).await; // 600
    let receipt = redeem(&app, &member, "five-off", true).await; // 500 held
    assert_eq!(receipt["status"], "held");
    assert!(receipt["hold_until"].is_string());
    let view = app.member_view(&member).await.expect("member");
    let balance = serde_json::to_value(view).expect("json")["balance"].clone();
    assert_eq!(balance["reserved"], 500);
    assert_eq!(balance["available"], 100);
    // The reserved points are not there to spend again.
    let refused = app
        .redeem(
            &member,
            key(&unique("again")),
            &json!({ "reward_id": "free-shipping" }),
        )
        .await
        .expect_err("only 100 available");
    assert_eq!(refused.code, ErrorCode::InsufficientPoints);

    let code = code_of(&receipt);
    assert_eq!(
        app.redemption_view(&code, None)
            .await
            .expect("found")
            .status,
        RedemptionStatus::Held
    );
    let used = app.use_code(&code).await.expect("confirmed");
    assert_eq!(used.status, RedemptionStatus::Used);
    let state = member_state(&app, &member).await;
    assert_eq!(state.balance.reserved, 0);
    assert_eq!(state.balance.available, 100);
    assert_eq!(state.balance.lifetime_redeemed, 500);
    assert_ledger_exact(&app, &member).await;
}

#[tokio::test]
async fn an_unconfirmed_hold_is_released_once_however_often_the_sweep_runs() {
    let start = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let TestApp { app, .. } = test_app_with(clock.clone(), patient()).await;
    set_codes(&app, json!({ "hold_minutes": 10 })).await;
    let member = funded(&app, 50_000).await; // 600
    let code = code_of(&redeem(&app, &member, "five-off", true).await);

    let queue = MemoryQueue::default();
    // Before the hold's time the sweep finds it (it is due today) and leaves it alone.
    app.plan_code_sweep(&queue).await.expect("planned");
    let mut report = CodeBatchReport::default();
    for body in queue.take() {
        report = app.settle_code_batch(&body).await.expect("settled");
    }
    assert_eq!(report.untouched, 1);
    assert_eq!(member_state(&app, &member).await.balance.reserved, 500);

    clock.advance(Duration::minutes(10));
    let mut released = 0;
    for _ in 0..3 {
        let planned = app.plan_code_sweep(&queue).await.expect("planned");
        assert!(planned.codes <= 1);
        for body in queue.take() {
            released += app
                .settle_code_batch(&body)
                .await
                .expect("settled")
                .released;
        }
    }
    assert_eq!(released, 1);
    let state = member_state(&app, &member).await;
    assert_eq!(state.balance.available, 600);
    assert_eq!(state.balance.reserved, 0);
    let view = app.redemption_view(&code, None).await.expect("found");
    assert_eq!(view.status, RedemptionStatus::Expired);
    let late = app.use_code(&code).await.expect_err("released");
    assert_eq!(late.code, ErrorCode::CodeNotUsable);
    assert_ledger_exact(&app, &member).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_lapsing_while_the_till_uses_it_ends_one_way_only() {
    let start = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap();
    let till_clock = Arc::new(ManualClock::new(start));
    let TestApp { app: till, store } = test_app_with(till_clock.clone(), patient()).await;
    set_codes(&till, json!({ "hold_minutes": 10 })).await;
    // The sweep runs a moment after the hold's time; the till a moment before it.
    let sweep = Arc::new(App::new(
        store.clone(),
        Arc::new(ManualClock::new(start + Duration::minutes(10))),
        patient(),
    ));
    till_clock.set(start);
    let mut used_codes = 0;
    for _ in 0..5 {
        let member = funded(&till, 150_000).await; // 1600
        let code = code_of(&redeem(&till, &member, "tote-bag", true).await);
        till_clock.set(start + Duration::minutes(10) - Duration::seconds(1));
        let use_task = {
            let till = Arc::clone(&till);
            let code = code.clone();
            tokio::spawn(async move { till.use_code(&code).await })
        };
        let sweep_task = {
            let sweep = Arc::clone(&sweep);
            let code = code.clone();
            tokio::spawn(async move { sweep.settle_code(&code).await })
        };
        let used = use_task.await.expect("use finished");
        let released = sweep_task
            .await
            .expect("sweep finished")
            .expect("sweep ran");
        let state = member_state(&till, &member).await;
        let view = sweep.redemption_view(&code, None).await.expect("found");
        assert_eq!(state.balance.reserved, 0);
        match (used, released) {
            (Ok(_), None) => {
                used_codes += 1;
                assert_eq!(view.status, RedemptionStatus::Used);
                assert_eq!(state.balance.available, 400);
            }
            (Err(error), Some(Lapse::ReleaseHold)) => {
                assert_eq!(error.code, ErrorCode::CodeNotUsable);
                assert_eq!(view.status, RedemptionStatus::Expired);
                assert_eq!(state.balance.available, 1600);
            }
            other => panic!("both or neither won: {other:?}"),
        }
        assert_ledger_exact(&till, &member).await;
        till_clock.set(start);
    }
    // Every unit the released holds took is back; the used ones keep theirs.
    assert_eq!(stock_used(&store, "tote-bag").await, used_codes);
}

#[tokio::test]
async fn an_expired_unused_code_is_refunded_or_forfeited_by_policy_once() {
    for (policy, refunded) in [("refund", true), ("forfeit", false)] {
        let start = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let TestApp { app, store } = test_app_with(clock.clone(), patient()).await;
        set_codes(&app, json!({ "expired_codes": policy })).await;
        let member = funded(&app, 150_000).await; // 1600
        let code = code_of(&redeem(&app, &member, "tote-bag", false).await); // 30 days
        clock.advance(Duration::days(30));
        assert_eq!(
            app.redemption_view(&code, None)
                .await
                .expect("found")
                .status,
            RedemptionStatus::Expired,
            "an expired code reads expired before the sweep settles it"
        );
        let refused = app.use_code(&code).await.expect_err("expired");
        assert_eq!(refused.code, ErrorCode::CodeNotUsable);
        let cancel = app.cancel_code(&code, None).await.expect_err("expired");
        assert_eq!(cancel.code, ErrorCode::CodeNotUsable);

        assert_eq!(
            app.settle_code(&code).await.expect("settled"),
            Some(Lapse::ExpireCode)
        );
        assert_eq!(app.settle_code(&code).await.expect("settled"), None);
        let state = member_state(&app, &member).await;
        let expected = if refunded { 1600 } else { 400 };
        assert_eq!(state.balance.available, expected, "{policy}");
        assert_eq!(
            stock_used(&store, "tote-bag").await,
            if refunded { 0 } else { 1 },
            "{policy}"
        );
        assert_ledger_exact(&app, &member).await;
    }
}

#[tokio::test]
async fn use_and_cancel_are_announced_from_the_committed_record_once_each() {
    let events = Arc::new(MemoryQueue::default());
    let app = App::new(
        loyalty_core::memory::MemoryStore::with_change_feed(),
        Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap(),
        )),
        AppConfig::default(),
    )
    .with_events(events.clone());
    let member = funded(&app, 50_000).await;
    let used = code_of(&redeem(&app, &member, "free-coffee", false).await);
    let canceled = code_of(&redeem(&app, &member, "free-coffee", false).await);
    app.use_code(&used).await.expect("used");
    app.cancel_code(&canceled, None).await.expect("canceled");
    // Refused and repeated calls commit nothing, so they announce nothing.
    app.use_code(&used).await.expect_err("used twice");
    app.cancel_code(&canceled, None)
        .await
        .expect("canceled again");
    app.relay_all(app.store().take_changes())
        .await
        .expect("relayed");
    let sent: Vec<Value> = events
        .sent()
        .iter()
        .map(|body| serde_json::from_str(body).expect("an event is JSON"))
        .collect();
    let of_type =
        |kind: &str| -> Vec<&Value> { sent.iter().filter(|e| e["type"] == kind).collect() };
    let used_events = of_type("redemption.used");
    assert_eq!(used_events.len(), 1, "{sent:?}");
    assert_eq!(used_events[0]["data"]["code"], used.as_str());
    assert_eq!(used_events[0]["member_id"], member.as_str());
    let canceled_events = of_type("redemption.canceled");
    assert_eq!(canceled_events.len(), 1, "{sent:?}");
    assert_eq!(canceled_events[0]["data"]["code"], canceled.as_str());
    let reversed = of_type("points.reversed");
    assert_eq!(reversed.len(), 1, "{sent:?}");
    assert_eq!(reversed[0]["data"]["points"], 150);
}
