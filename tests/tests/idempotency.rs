//! Exactly-once under retries, replays, parallel duplicates, conflicts and lost responses.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use loyalty_core::clock::{ManualClock, SystemClock};
use loyalty_core::service::{AppConfig, Outcome};
use loyalty_core::{App, ErrorCode};
use loyalty_tests::flaky::{Fault, Flaky};
use loyalty_tests::*;

#[tokio::test]
async fn a_sequential_replay_returns_the_first_response_and_moves_nothing() {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap(),
    ));
    let TestApp { app, .. } = test_app_with(clock.clone(), AppConfig::default()).await;
    let member = enrol(&app, &unique("m")).await;

    let first = accrue(&app, &member, "k-1", purchase("o-1", 4_599))
        .await
        .expect("accrued");
    let Outcome::Created(first_body) = first else {
        panic!("first call must create")
    };
    assert_eq!(first_body["points"], 45);

    // A month later the same request (keys reordered) is still recognised.
    clock.advance(Duration::days(31));
    let body = serde_json::json!({ "amount": { "currency": "USD", "minor": 4_599 }, "order_id": "o-1", "kind": "purchase" });
    let again = accrue(&app, &member, "k-1", body).await.expect("replayed");
    assert_eq!(again, Outcome::Replayed(first_body));

    let state = member_state(&app, &member).await;
    assert_eq!(state.balance.available, 145);
    assert_eq!(audited_ledger(&app, &member).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_duplicates_have_one_effect() {
    let TestApp { app, .. } = test_app().await;
    let member = enrol(&app, &unique("m")).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = Arc::clone(&app);
            let member = member.clone();
            tokio::spawn(async move {
                accrue(&app, &member, "same-key", purchase("o-par", 10_000)).await
            })
        })
        .collect();
    let mut created = 0;
    let mut bodies = Vec::new();
    for task in tasks {
        let outcome = task
            .await
            .expect("joined")
            .expect("every duplicate gets the answer");
        if matches!(outcome, Outcome::Created(_)) {
            created += 1;
        }
        bodies.push(body(&outcome).clone());
    }
    assert_eq!(created, 1);
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every caller sees the same response"
    );
    assert_eq!(member_state(&app, &member).await.balance.available, 200);
    assert_eq!(audited_ledger(&app, &member).await.len(), 2);
}

#[tokio::test]
async fn same_key_different_body_is_refused() {
    let TestApp { app, .. } = test_app().await;
    let member = enrol(&app, &unique("m")).await;
    accrue(&app, &member, "k", purchase("o-1", 1_000))
        .await
        .expect("accrued");
    let error = accrue(&app, &member, "k", purchase("o-1", 2_000))
        .await
        .expect_err("reused");
    assert_eq!(error.code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(error.code.http_status(), 422);
    assert_eq!(member_state(&app, &member).await.balance.available, 110);
}

#[tokio::test]
async fn an_order_earns_once_whatever_key_it_comes_with() {
    let TestApp { app, .. } = test_app().await;
    let member = enrol(&app, &unique("m")).await;
    accrue(&app, &member, "k-a", purchase("o-dup", 5_000))
        .await
        .expect("accrued");
    let error = accrue(&app, &member, "k-b", purchase("o-dup", 5_000))
        .await
        .expect_err("duplicate");
    assert_eq!(error.code, ErrorCode::DuplicateOrder);
    let state = member_state(&app, &member).await;
    assert_eq!(state.balance.available, 150);
    assert_eq!(state.last_seq, 2);
}

#[tokio::test]
async fn an_action_reference_earns_once_and_caps_hold() {
    let TestApp { app, .. } = test_app().await;
    let member = enrol(&app, &unique("m")).await;
    let share = |reference: &str| serde_json::json!({ "kind": "action", "action": "social_share", "reference": reference });
    for i in 0..3 {
        accrue(
            &app,
            &member,
            &format!("share-{i}"),
            share(&format!("post-{i}")),
        )
        .await
        .expect("within cap");
    }
    let duplicate = accrue(&app, &member, "share-dup", share("post-0"))
        .await
        .expect_err("duplicate");
    // Checked against the cap first: the fourth share today is over it either way.
    assert_eq!(duplicate.code, ErrorCode::ActionLimitReached);
    let capped = accrue(&app, &member, "share-3", share("post-3"))
        .await
        .expect_err("capped");
    assert_eq!(capped.code, ErrorCode::ActionLimitReached);
    let review = accrue(
        &app,
        &member,
        "review-1",
        serde_json::json!({ "kind": "action", "action": "review", "reference": "r-1" }),
    )
    .await
    .expect("review");
    let again = accrue(
        &app,
        &member,
        "review-2",
        serde_json::json!({ "kind": "action", "action": "review", "reference": "r-1" }),
    )
    .await
    .expect_err("same review");
    assert_eq!(again.code, ErrorCode::DuplicateAction);
    assert_eq!(body(&review)["points"], 50);
    assert_eq!(
        member_state(&app, &member).await.balance.available,
        100 + 30 + 50
    );
}

#[tokio::test]
async fn injected_conflicts_are_retried_to_exactly_one_effect() {
    let store = dynamo_store().await;
    let app = App::new(
        Flaky::new(store, Fault::Conflict, 3),
        Arc::new(SystemClock),
        AppConfig::default(),
    );
    let member = enrol(&app, &unique("m")).await;
    let outcome = accrue(&app, &member, "k", purchase("o-1", 2_500))
        .await
        .expect("retried through");
    assert!(matches!(outcome, Outcome::Created(_)));
    assert_eq!(member_state(&app, &member).await.balance.available, 125);
    assert_eq!(audited_ledger(&app, &member).await.len(), 2);
}

#[tokio::test]
async fn persistent_conflicts_are_answered_cleanly_and_write_nothing() {
    let store = dynamo_store().await;
    let app = App::new(store.clone(), Arc::new(SystemClock), AppConfig::default());
    let member = enrol(&app, &unique("m")).await;
    let config = AppConfig {
        max_attempts: 4,
        ..AppConfig::default()
    };
    let flaky = App::new(
        Flaky::new(store, Fault::Conflict, u32::MAX),
        Arc::new(SystemClock),
        config,
    );
    let error = accrue(&flaky, &member, "k", purchase("o-1", 2_500))
        .await
        .expect_err("gave up");
    assert_eq!(error.code, ErrorCode::ConcurrentModification);
    assert_eq!(error.code.http_status(), 409);
    let state = member_state(&app, &member).await;
    assert_eq!((state.balance.available, state.last_seq), (100, 1));
}

#[tokio::test]
async fn a_lost_response_is_recovered_by_the_replay_path() {
    let store = dynamo_store().await;
    let app = App::new(store.clone(), Arc::new(SystemClock), AppConfig::default());
    let member = enrol(&app, &unique("m")).await;
    let lossy = App::new(
        Flaky::new(store, Fault::LostResponse, 1),
        Arc::new(SystemClock),
        AppConfig::default(),
    );
    // The first commit lands but its answer is lost; the retry finds its own record.
    let outcome = accrue(&lossy, &member, "k", purchase("o-1", 2_500))
        .await
        .expect("recovered");
    assert!(matches!(outcome, Outcome::Replayed(_)));
    assert_eq!(body(&outcome)["points"], 25);
    assert_eq!(member_state(&app, &member).await.balance.available, 125);
    assert_eq!(audited_ledger(&app, &member).await.len(), 2);
}

#[tokio::test]
async fn redemption_replays_even_after_the_balance_is_spent() {
    let TestApp { app, .. } = test_app().await;
    let member = enrol(&app, &unique("m")).await;
    accrue(&app, &member, "fund", purchase("o-1", 10_000))
        .await
        .expect("funded"); // 200 points
    let request = serde_json::json!({ "reward_id": "free-coffee" });
    let first = app
        .redeem(&member, key("r-1"), &request)
        .await
        .expect("redeemed");
    let Outcome::Created(first_body) = first else {
        panic!("created")
    };
    // 50 points left: a new redemption fails, but the retry of the first still replays.
    let error = app
        .redeem(&member, key("r-2"), &request)
        .await
        .expect_err("insufficient");
    assert_eq!(error.code, ErrorCode::InsufficientPoints);
    let replay = app
        .redeem(&member, key("r-1"), &request)
        .await
        .expect("replayed");
    assert_eq!(replay, Outcome::Replayed(first_body.clone()));
    assert_eq!(first_body["balance"]["available"], 50);
    assert_eq!(member_state(&app, &member).await.balance.available, 50);
}
