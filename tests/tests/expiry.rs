//! Points expiry on DynamoDB Local: spending takes the soonest-expiring lots first, a lot expires
//! the day after its last (a month end, 29 February), inactivity moves the date, the daily job
//! writes one `expire` entry per lot however often it runs and whoever races it, and each
//! warning is written once per lot and threshold.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use loyalty_core::clock::{Clock, ManualClock};
use loyalty_core::events::catalog::{derive, Change};
use loyalty_core::expiry::{LotWarning, LOT_WARNING_KIND};
use loyalty_core::ids::MemberId;
use loyalty_core::ledger::{EntryType, LedgerEntry, Source};
use loyalty_core::ports::{RecordStore, Store};
use loyalty_core::service::{AppConfig, Outcome};
use loyalty_core::{App, ErrorCode};
use loyalty_tests::*;
use serde_json::{json, Value};

fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s)
        .single()
        .expect("instant")
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("day")
}

/// An app on a fresh table whose clock starts at `start`, running the default program with
/// `expiry` as its policy and no welcome bonus (so the lots are what the tests earn).
async fn expiry_app(expiry: Value, start: DateTime<Utc>) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(start));
    let test = test_app_with(clock.clone(), AppConfig::default()).await;
    publish_default_program_with(&test.app, |document| {
        document["expiry"] = expiry;
        document["welcome_bonus"] = json!(0);
    })
    .await;
    (test, clock)
}

async fn earn<S: Store>(app: &App<S>, member: &MemberId, minor: i64) {
    accrue(
        app,
        member,
        &unique("earn"),
        purchase(&unique("order"), minor),
    )
    .await
    .expect("earned");
}

async fn redeem_coffee<S: Store>(app: &App<S>, member: &MemberId) -> Result<Value, ErrorCode> {
    match app
        .redeem(
            member,
            key(&unique("rdm")),
            &json!({ "reward_id": "free-coffee" }),
        )
        .await
    {
        Ok(Outcome::Created(receipt)) => Ok(receipt),
        Ok(other) => panic!("a fresh key writes: {other:?}"),
        Err(error) => Err(error.code),
    }
}

/// The member's lots as (month, points, expires_on).
async fn lots<S: Store>(app: &App<S>, member: &MemberId) -> Vec<(String, i64, NaiveDate)> {
    member_state(app, member)
        .await
        .expiry
        .lots
        .into_iter()
        .map(|(month, lot)| (month, lot.points, lot.expires_on))
        .collect()
}

async fn expire_entries<S: Store>(app: &App<S>, member: &MemberId) -> Vec<LedgerEntry> {
    audited_ledger(app, member)
        .await
        .into_iter()
        .filter(|e| e.entry_type == EntryType::Expire)
        .collect()
}

#[tokio::test]
async fn redemptions_spend_the_soonest_expiring_lots_first_until_they_are_gone() {
    let (TestApp { app, .. }, clock) = expiry_app(
        json!({ "mode": "fixed", "months": 12 }),
        at(2026, 1, 10, 9, 0, 0),
    )
    .await;
    let member = enrol(&app, &unique("lots")).await;
    earn(&app, &member, 20_000).await; // 200 points in January
    clock.set(at(2026, 2, 10, 9, 0, 0));
    earn(&app, &member, 20_000).await; // 200 points in February
    assert_eq!(
        lots(&app, &member).await,
        vec![
            ("2026-01".into(), 200, day(2027, 1, 31)),
            ("2026-02".into(), 200, day(2027, 2, 28)),
        ]
    );

    clock.set(at(2026, 3, 1, 9, 0, 0));
    redeem_coffee(&app, &member).await.expect("first coffee");
    assert_eq!(
        lots(&app, &member).await,
        vec![
            ("2026-01".into(), 50, day(2027, 1, 31)),
            ("2026-02".into(), 200, day(2027, 2, 28)),
        ]
    );
    redeem_coffee(&app, &member).await.expect("second coffee");
    assert_eq!(
        lots(&app, &member).await,
        vec![("2026-02".into(), 100, day(2027, 2, 28))]
    );
    // The second redemption names what it took from each lot, for a reversal to put back.
    let ledger = audited_ledger(&app, &member).await;
    let second = ledger
        .iter()
        .filter(|e| e.entry_type == EntryType::Redeem)
        .max_by_key(|e| e.seq)
        .expect("a redemption");
    let taken: Vec<(&str, i64)> = second
        .lots
        .iter()
        .map(|t| (t.lot.as_str(), t.points))
        .collect();
    assert_eq!(taken, vec![("2026-01", 50), ("2026-02", 100)]);
    assert_eq!(
        redeem_coffee(&app, &member).await,
        Err(ErrorCode::InsufficientPoints)
    );

    let state = member_state(&app, &member).await;
    assert_eq!(state.expiry.total(), state.balance.available);
    let view = state.view(
        &app.program().await.expect("program").document.tiers,
        clock.now(),
    );
    assert_eq!(
        serde_json::to_value(&view.expiring).expect("json"),
        json!([{ "points": 100, "on": "2027-02-28" }])
    );
}

#[tokio::test]
async fn a_lot_expires_the_day_after_its_month_end_including_29_february_once_however_often_the_job_runs(
) {
    let (TestApp { app, .. }, clock) = expiry_app(
        json!({ "mode": "fixed", "months": 1, "warn_days": [] }),
        at(2026, 1, 15, 12, 0, 0),
    )
    .await;
    let january = enrol(&app, &unique("jan")).await;
    earn(&app, &january, 12_300).await; // expires 2026-02-28
    clock.set(at(2028, 1, 20, 12, 0, 0));
    let leap = enrol(&app, &unique("leap")).await;
    earn(&app, &leap, 4_500).await; // expires 2028-02-29

    // 2026-02-28, last second: still spendable.
    clock.set(at(2026, 2, 28, 23, 59, 59));
    app.run_expiry().await.expect("run");
    assert!(expire_entries(&app, &january).await.is_empty());
    clock.set(at(2026, 3, 1, 0, 0, 0));
    for _ in 0..3 {
        app.run_expiry().await.expect("run");
    }
    let expired = expire_entries(&app, &january).await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].entry_id, "expire:2026-01:2026-02-28");
    assert_eq!((expired[0].points, expired[0].balance_after), (-123, 0));
    let state = member_state(&app, &january).await;
    assert_eq!((state.balance.available, state.balance.expired), (0, 123));
    assert!(state.expiry.is_empty(), "{:?}", state.expiry);

    clock.set(at(2028, 2, 29, 23, 59, 59));
    app.run_expiry().await.expect("run");
    assert!(expire_entries(&app, &leap).await.is_empty());
    clock.set(at(2028, 3, 1, 3, 30, 0));
    for _ in 0..3 {
        app.run_expiry().await.expect("run");
    }
    let expired = expire_entries(&app, &leap).await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].entry_id, "expire:2028-01:2028-02-29");
    assert!(matches!(
        &expired[0].source,
        Source::Expiry { lot, expires_on } if lot == "2028-01" && *expires_on == day(2028, 2, 29)
    ));
    assert_eq!(member_state(&app, &leap).await.balance.expired, 45);
}

#[tokio::test]
async fn two_workers_racing_the_job_write_one_entry_per_lot() {
    let (TestApp { app, store }, clock) = expiry_app(
        json!({ "mode": "fixed", "months": 1, "warn_days": [] }),
        at(2026, 1, 5, 12, 0, 0),
    )
    .await;
    let member = enrol(&app, &unique("race")).await;
    earn(&app, &member, 10_000).await; // 100, expires 2026-02-28
    clock.set(at(2026, 2, 5, 12, 0, 0));
    earn(&app, &member, 7_000).await; // 70, expires 2026-03-31

    let other = Arc::new(App::new(store.clone(), clock.clone(), AppConfig::default()));
    // Each lot's day: both workers at once, then a third run.
    for (when, lot) in [(at(2026, 3, 1, 4, 0, 0), 1), (at(2026, 4, 1, 4, 0, 0), 2)] {
        clock.set(when);
        let (first, second) = tokio::join!(app.run_expiry(), other.run_expiry());
        let (first, second) = (first.expect("first worker"), second.expect("second worker"));
        assert_eq!(first.expired_lots + second.expired_lots, 1, "lot {lot}");
        let third = app.run_expiry().await.expect("a third run");
        assert_eq!(third.expired_lots, 0);
    }

    let expired = expire_entries(&app, &member).await;
    let ids: Vec<&str> = expired.iter().map(|e| e.entry_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["expire:2026-01:2026-02-28", "expire:2026-02:2026-03-31"]
    );
    let state = member_state(&app, &member).await;
    assert_eq!((state.balance.available, state.balance.expired), (0, 170));
    let summed: i64 = expired.iter().map(|e| -e.points).sum();
    assert_eq!(summed, state.balance.expired);
}

#[tokio::test]
async fn inactivity_expires_the_whole_balance_after_months_without_a_qualifying_activity() {
    let (TestApp { app, .. }, clock) = expiry_app(
        json!({ "mode": "inactivity", "months": 3, "warn_days": [] }),
        at(2026, 1, 10, 12, 0, 0),
    )
    .await;
    let member = enrol(&app, &unique("idle")).await;
    earn(&app, &member, 10_000).await;
    assert_eq!(
        lots(&app, &member).await,
        vec![("2026-01".into(), 100, day(2026, 4, 10))]
    );
    // A purchase on 1 March moves the whole balance's date to 1 June.
    clock.set(at(2026, 3, 1, 12, 0, 0));
    earn(&app, &member, 5_000).await;
    assert_eq!(
        lots(&app, &member).await,
        vec![("2026-01".into(), 150, day(2026, 6, 1))]
    );
    clock.set(at(2026, 4, 15, 4, 0, 0));
    app.run_expiry().await.expect("run");
    assert!(expire_entries(&app, &member).await.is_empty());

    clock.set(at(2026, 6, 2, 4, 0, 0));
    app.run_expiry().await.expect("run");
    let expired = expire_entries(&app, &member).await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].points, -150);
    let state = member_state(&app, &member).await;
    assert_eq!((state.balance.available, state.balance.expired), (0, 150));
}

#[tokio::test]
async fn warnings_are_written_once_per_lot_and_threshold_and_announce_points_expiring() {
    let (TestApp { app, .. }, clock) = expiry_app(
        json!({ "mode": "fixed", "months": 1, "warn_days": [30, 7] }),
        at(2026, 1, 15, 12, 0, 0),
    )
    .await;
    let member = enrol(&app, &unique("warn")).await;
    earn(&app, &member, 8_800).await; // 88, expires 2026-02-28
    let warnings = || async {
        app.store()
            .records_of(LOT_WARNING_KIND, member.as_str(), 10)
            .await
            .expect("listed")
    };

    clock.set(at(2026, 1, 28, 4, 0, 0));
    app.run_expiry().await.expect("run");
    assert!(warnings().await.is_empty(), "31 days before: nothing yet");
    clock.set(at(2026, 1, 29, 4, 0, 0));
    app.run_expiry().await.expect("run");
    app.run_expiry().await.expect("run again");
    let first = warnings().await;
    assert_eq!(first.len(), 1);
    let thirty: LotWarning = first[0].parse().expect("a warning");
    assert_eq!(
        (thirty.days_before, thirty.points, thirty.expires_on),
        (30, 88, day(2026, 2, 28))
    );

    clock.set(at(2026, 2, 21, 4, 0, 0));
    app.run_expiry().await.expect("run");
    app.run_expiry().await.expect("run again");
    let both = warnings().await;
    assert_eq!(both.len(), 2);
    let derived = derive(&Change::Record {
        before: None,
        after: both
            .iter()
            .find(|r| r.id.ends_with(":7"))
            .expect("the 7-day warning")
            .clone(),
    })
    .expect("derived");
    assert_eq!(derived.events.len(), 1);
    assert_eq!(derived.events[0].event_type, "points.expiring");
    assert_eq!(derived.events[0].data["points"], 88);
    assert_eq!(derived.events[0].data["expires_on"], "2026-02-28");
    assert_eq!(
        member_state(&app, &member).await.expiry.due,
        Some(day(2026, 3, 1))
    );
}

#[tokio::test]
async fn a_reversal_puts_points_back_into_the_lot_they_were_spent_from() {
    let (TestApp { app, .. }, clock) = expiry_app(
        json!({ "mode": "fixed", "months": 6 }),
        at(2026, 5, 10, 9, 0, 0),
    )
    .await;
    let member = enrol(&app, &unique("restore")).await;
    earn(&app, &member, 20_000).await;
    clock.set(at(2026, 6, 10, 9, 0, 0));
    earn(&app, &member, 10_000).await;
    let before = member_state(&app, &member).await;
    redeem_coffee(&app, &member).await.expect("coffee");
    let after = member_state(&app, &member).await;
    let redemption = audited_ledger(&app, &member)
        .await
        .into_iter()
        .find(|e| e.entry_type == EntryType::Redeem)
        .expect("the redemption");
    // The entry read back from the table is what a reversal works from.
    let program = app.program().await.expect("program");
    let restored = after
        .with_restored(
            EntryType::Reverse,
            150,
            &redemption.lots,
            &program.document.expiry.dating(clock.now()),
        )
        .expect("restored");
    assert_eq!(restored.expiry.lots, before.expiry.lots);
    assert_eq!(restored.balance.available, before.balance.available);
}

#[tokio::test]
async fn points_that_repay_a_negative_balance_are_not_dated_to_expire() {
    let (TestApp { app, .. }, _clock) = expiry_app(
        json!({ "mode": "fixed", "months": 12 }),
        at(2026, 5, 10, 9, 0, 0),
    )
    .await;
    let mut program =
        serde_json::to_value(&app.program().await.expect("program").document).expect("json");
    program["return_policy"] = json!("allow_negative");
    app.replace_program("test-admin", program.to_string().as_bytes())
        .await
        .expect("published");
    let member = enrol(&app, &unique("owes")).await;
    earn(&app, &member, 10_000).await;
    app.adjust(
        "test-support",
        &member,
        key(&unique("adj")),
        &json!({ "points": -150, "reason": "chargeback" }),
    )
    .await
    .expect("adjusted");
    let owing = member_state(&app, &member).await;
    assert_eq!((owing.balance.available, owing.expiry.total()), (-50, 0));
    earn(&app, &member, 10_000).await;
    let repaid = member_state(&app, &member).await;
    assert_eq!((repaid.balance.available, repaid.expiry.total()), (50, 50));
}
