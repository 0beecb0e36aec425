//! Transfers on DynamoDB Local: one transaction moves points between two members or nothing
//! moves; every refusal has its own code and writes nothing; members sending to each other at
//! once never deadlock, never overdraw, and the points add up.

use std::sync::Arc;

use loyalty_core::clock::SystemClock;
use loyalty_core::ids::MemberId;
use loyalty_core::ledger::{EntryType, Source, TransferDirection};
use loyalty_core::member::MemberStatus;
use loyalty_core::ports::{Commit, MemberStore, Store};
use loyalty_core::service::{AppConfig, Outcome};
use loyalty_core::{App, ErrorCode};
use loyalty_dynamo::DynamoStore;
use loyalty_tests::flaky::{Fault, Flaky};
use loyalty_tests::*;
use serde_json::{json, Value};

/// Publishes the default program with `transfers` fields overridden.
async fn set_transfers<S: Store>(app: &App<S>, overrides: Value) {
    publish_default_program_with(app, |document| {
        for (field, value) in overrides.as_object().expect("object") {
            document["transfers"][field] = value.clone();
        }
    })
    .await;
}

/// A member with the welcome bonus and `minor / 100` points from one purchase.
async fn funded<S: Store>(app: &App<S>, prefix: &str, minor: i64) -> MemberId {
    let member = enrol(app, &unique(prefix)).await;
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

fn gift(to: &MemberId, points: i64) -> Value {
    json!({ "to_member_id": to, "points": points })
}

async fn balance<S: Store>(app: &App<S>, id: &MemberId) -> i64 {
    member_state(app, id).await.balance.available
}

#[tokio::test]
async fn a_transfer_debits_and_credits_in_one_write_and_a_retry_replays_it() {
    let TestApp { app, store } = test_app().await;
    let alice = funded(&app, "alice", 50_000).await; // 100 + 500
    let bob = enrol(&app, &unique("bob")).await; // 100

    let body = json!({ "to_member_id": bob, "points": 250, "note": "Coffee is on me" });
    let Outcome::Created(receipt) = app
        .transfer(&alice, key("gift-1"), &body)
        .await
        .expect("sent")
    else {
        panic!("the first call writes")
    };
    assert_eq!(receipt["points"], 250);
    assert_eq!(receipt["balance"]["available"], 350);
    let transfer_id = receipt["transfer_id"].as_str().expect("id").to_owned();
    assert!(transfer_id.starts_with("trf_"));

    let sent = audited_ledger(&app, &alice).await;
    let received = audited_ledger(&app, &bob).await;
    let out = sent.iter().max_by_key(|e| e.seq).expect("an entry");
    let incoming = received.iter().max_by_key(|e| e.seq).expect("an entry");
    assert_eq!(
        (out.entry_type, out.points, out.balance_after),
        (EntryType::Transfer, -250, 350)
    );
    assert_eq!(
        (incoming.entry_type, incoming.points, incoming.balance_after),
        (EntryType::Transfer, 250, 350)
    );
    assert_eq!(out.entry_id, format!("transfer:{transfer_id}:out"));
    assert_eq!(incoming.entry_id, format!("transfer:{transfer_id}:in"));
    assert!(matches!(
        &incoming.source,
        Source::Transfer { direction: TransferDirection::In, counterparty, note, .. }
            if counterparty == &alice && note.as_deref() == Some("Coffee is on me")
    ));
    // A gift is not earnings: lifetime figures stay what the members earned and spent.
    let bob_after = member_state(&app, &bob).await;
    assert_eq!(
        (
            bob_after.balance.available,
            bob_after.balance.lifetime_earned
        ),
        (350, 100)
    );

    let items = item_count(&store).await;
    let again = app
        .transfer(&alice, key("gift-1"), &body)
        .await
        .expect("replayed");
    assert_eq!(again, Outcome::Replayed(receipt));
    let other = app
        .transfer(&alice, key("gift-1"), &gift(&bob, 10))
        .await
        .expect_err("another body under the key");
    assert_eq!(other.code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(item_count(&store).await, items, "a replay writes nothing");
    assert_eq!(
        (balance(&app, &alice).await, balance(&app, &bob).await),
        (350, 350)
    );
}

#[tokio::test]
async fn every_refusal_has_its_own_code_and_writes_nothing() {
    let TestApp { app, store } = test_app().await;
    set_transfers(
        &app,
        json!({ "min_points": 10, "max_points": 300, "daily_transfers": 2, "daily_points": 400 }),
    )
    .await;
    let alice = funded(&app, "alice", 100_000).await; // 1100
    let bob = enrol(&app, &unique("bob")).await;
    let poor = enrol(&app, &unique("poor")).await; // 100
    let closed = enrol(&app, &unique("closed")).await;
    let mut deactivated = member_state(&app, &closed).await;
    let version = deactivated.version;
    deactivated.status = MemberStatus::Deactivated;
    deactivated.version += 1;
    app.store()
        .commit(Commit {
            member: deactivated,
            expected_version: Some(version),
            entry: None,
            idempotency: None,
            claim_referral_code: false,
            stock: None,
            tier_change: None,
        })
        .await
        .expect("deactivated");
    // Two transfers use up Alice's count for the day; a third is over it.
    for (i, points) in [150, 200].into_iter().enumerate() {
        app.transfer(&alice, key(&format!("ok-{i}")), &gift(&bob, points))
            .await
            .expect("within the limits");
    }
    let unknown = member_id(&unique("nobody"));
    let cases: Vec<(&str, MemberId, Value, ErrorCode)> = vec![
        (
            "to oneself",
            poor.clone(),
            gift(&poor, 50),
            ErrorCode::TransferToSelf,
        ),
        (
            "unknown receiver",
            poor.clone(),
            gift(&unknown, 50),
            ErrorCode::ReceiverNotFound,
        ),
        (
            "deactivated receiver",
            poor.clone(),
            gift(&closed, 50),
            ErrorCode::ReceiverInactive,
        ),
        (
            "below the minimum",
            poor.clone(),
            gift(&bob, 9),
            ErrorCode::TransferBelowMinimum,
        ),
        (
            "above the maximum",
            poor.clone(),
            gift(&bob, 301),
            ErrorCode::TransferAboveMaximum,
        ),
        (
            "third of the day",
            alice.clone(),
            gift(&bob, 10),
            ErrorCode::TransferDailyCountExceeded,
        ),
        (
            "short balance",
            poor.clone(),
            gift(&bob, 101),
            ErrorCode::InsufficientPoints,
        ),
        (
            "zero points",
            poor.clone(),
            gift(&bob, 0),
            ErrorCode::ValidationError,
        ),
    ];
    let items = item_count(&store).await;
    for (name, sender, body, code) in cases {
        let error = app
            .transfer(&sender, key(&unique("k")), &body)
            .await
            .expect_err(name);
        assert_eq!(error.code, code, "{name}: {error}");
        let expected_status = if code == ErrorCode::InsufficientPoints {
            409
        } else if code == ErrorCode::ValidationError {
            400
        } else {
            422
        };
        assert_eq!(error.status(), expected_status, "{name}");
    }
    assert_eq!(
        item_count(&store).await,
        items,
        "no refusal writes anything"
    );

    // Alice has sent 350 points in two transfers today; the next limits are the tier and the
    // day's points.
    set_transfers(
        &app,
        json!({ "max_points": 300, "daily_transfers": 5, "daily_points": 400, "sender_tiers": ["gold"] }),
    )
    .await;
    let error = app
        .transfer(&alice, key("tier"), &gift(&bob, 10))
        .await
        .expect_err("bronze may not send");
    assert_eq!(error.code, ErrorCode::TransferTierNotAllowed);
    set_transfers(
        &app,
        json!({ "max_points": 300, "daily_transfers": 5, "daily_points": 400 }),
    )
    .await;
    let error = app
        .transfer(&alice, key("points"), &gift(&bob, 51))
        .await
        .expect_err("350 + 51 > 400");
    assert_eq!(error.code, ErrorCode::TransferDailyPointsExceeded);
    app.transfer(&alice, key("points-ok"), &gift(&bob, 50))
        .await
        .expect("350 + 50 = 400");
    set_transfers(&app, json!({ "enabled": false })).await;
    let error = app
        .transfer(&alice, key("off"), &gift(&bob, 10))
        .await
        .expect_err("transfers off");
    assert_eq!(error.code, ErrorCode::TransfersDisabled);
    assert_eq!(balance(&app, &alice).await, 1100 - 400);
    assert_eq!(balance(&app, &bob).await, 100 + 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_both_ways_at_once_never_deadlock_overdraw_or_lose_points() {
    let config = AppConfig {
        max_attempts: 500,
        ..AppConfig::default()
    };
    let TestApp { app, .. } = test_app_with(Arc::new(SystemClock), config).await;
    set_transfers(
        &app,
        json!({ "daily_transfers": 100, "daily_points": 100000 }),
    )
    .await;
    let alice = funded(&app, "alice", 50_000).await; // 600
    let bob = funded(&app, "bob", 30_000).await; // 400

    // 15 each way of 40 points: Bob cannot afford all of his from his own balance, so some of
    // his wait for Alice's to land or are refused, and none may overdraw.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let app = Arc::clone(&app);
            let (from, to) = if i % 2 == 0 {
                (alice.clone(), bob.clone())
            } else {
                (bob.clone(), alice.clone())
            };
            tokio::spawn(async move {
                let outcome = app
                    .transfer(&from, key(&format!("t-{i}")), &gift(&to, 40))
                    .await;
                (from, outcome)
            })
        })
        .collect();
    let (mut by_alice, mut by_bob) = (0_i64, 0_i64);
    for task in tasks {
        let (from, outcome) = task.await.expect("task finished");
        match outcome {
            Ok(Outcome::Created(_)) if from == alice => by_alice += 1,
            Ok(Outcome::Created(_)) => by_bob += 1,
            Ok(other) => panic!("unexpected outcome {other:?}"),
            Err(error) => assert_eq!(error.code, ErrorCode::InsufficientPoints, "{error}"),
        }
    }
    let a = member_state(&app, &alice).await;
    let b = member_state(&app, &bob).await;
    assert!(a.balance.available >= 0 && b.balance.available >= 0);
    assert_eq!(
        a.balance.available + b.balance.available,
        1_000,
        "points are conserved"
    );
    assert_eq!(a.balance.available, 600 - 40 * by_alice + 40 * by_bob);
    for member in [&alice, &bob] {
        let transfers = audited_ledger(&app, member)
            .await
            .into_iter()
            .filter(|e| e.entry_type == EntryType::Transfer)
            .count() as i64;
        assert_eq!(
            transfers,
            by_alice + by_bob,
            "one entry per side of every transfer"
        );
    }
}

#[tokio::test]
async fn an_injected_conflict_is_retried_and_a_lost_reply_replays_to_one_effect() {
    for fault in [Fault::Conflict, Fault::LostResponse] {
        let store: DynamoStore = dynamo_store().await;
        let plain = App::new(store.clone(), Arc::new(SystemClock), AppConfig::default());
        let alice = funded(&plain, "alice", 20_000).await; // 300
        let bob = enrol(&plain, &unique("bob")).await;
        let flaky = App::new(
            Flaky::new(store, fault, 2),
            Arc::new(SystemClock),
            AppConfig::default(),
        );
        let outcome = flaky
            .transfer(&alice, key("gift"), &gift(&bob, 120))
            .await
            .expect("settled");
        assert!(
            matches!(outcome, Outcome::Created(_) | Outcome::Replayed(_)),
            "{fault:?}"
        );
        assert_eq!(balance(&plain, &alice).await, 180, "{fault:?}");
        assert_eq!(balance(&plain, &bob).await, 220, "{fault:?}");
        assert_eq!(audited_ledger(&plain, &bob).await.len(), 2, "{fault:?}");
    }
}

#[tokio::test]
async fn a_days_transfer_counter_carries_a_ttl_two_days_after_its_day() {
    use chrono::TimeZone;
    let noon = chrono::Utc
        .with_ymd_and_hms(2026, 6, 30, 12, 0, 0)
        .single()
        .expect("instant");
    let clock = Arc::new(loyalty_core::clock::ManualClock::new(noon));
    let TestApp { app, store } = test_app_with(clock, AppConfig::default()).await;
    let alice = funded(&app, "ttl-alice", 50_000).await;
    let bob = enrol(&app, &unique("ttl-bob")).await;
    app.transfer(&alice, key("gift-ttl"), &gift(&bob, 20))
        .await
        .expect("sent");
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!(
                "REC#transfer_day#{alice}:2026-06-30"
            )),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("REC".into()),
        )
        .send()
        .await
        .expect("read")
        .item
        .expect("the counter");
    let expected = chrono::Utc
        .with_ymd_and_hms(2026, 7, 2, 0, 0, 0)
        .single()
        .expect("instant")
        .timestamp();
    assert_eq!(
        item.get("expires_at").and_then(|v| v.as_n().ok()),
        Some(&expected.to_string())
    );
}
