//! The edge rules on the in-memory store, which must answer as the DynamoDB adapter does: an order
//! earns once per program, `occurred_at` is bounded by the lateness window and by enrolment, and
//! keyed enrolments replay.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::commands::EnrolRequest;
use loyalty_core::ids::{IdempotencyKey, MemberId};
use loyalty_core::memory::MemoryStore;
use loyalty_core::service::{AppConfig, Outcome};
use loyalty_core::{App, ErrorCode};
use serde_json::{json, Value};

fn at(raw: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(raw)
        .expect("instant")
        .with_timezone(&Utc)
}

fn app() -> App<MemoryStore> {
    App::new(
        MemoryStore::new(),
        Arc::new(ManualClock::new(at("2026-11-20T12:00:00Z"))),
        AppConfig::default(),
    )
}

fn key(raw: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(raw).expect("key"))
}

async fn enrol(app: &App<MemoryStore>, id: &str) -> MemberId {
    let request = EnrolRequest {
        member_id: Some(MemberId::parse(id).expect("id")),
        email: None,
        name: None,
        referral_code: None,
    };
    app.enrol(request).await.expect("enrolled").member_id
}

fn order(id: &str, at: Option<&str>) -> Value {
    let mut body = json!({ "kind": "purchase", "order_id": id, "amount": { "minor": 1000, "currency": "USD" } });
    if let Some(at) = at {
        body["occurred_at"] = json!(at);
    }
    body
}

#[tokio::test]
async fn an_order_earns_once_per_program_whichever_member_sends_it() {
    let app = app();
    let (a, b) = (enrol(&app, "a").await, enrol(&app, "b").await);
    app.accrue(&a, key("k1"), &order("o-1", None), false)
        .await
        .expect("first member earns");
    let commits = app.store().commits();
    let error = app
        .accrue(&b, key("k2"), &order("o-1", None), false)
        .await
        .expect_err("second member refused");
    assert_eq!(error.code, ErrorCode::DuplicateOrder);
    assert_eq!(error.status(), 409);
    assert!(
        !error.details.to_string().contains("\"a\""),
        "the details name no member: {}",
        error.details
    );
    assert_eq!(app.store().commits(), commits, "nothing written");
    let replay = app
        .accrue(&a, key("k1"), &order("o-1", None), false)
        .await
        .expect("replay");
    assert!(matches!(replay, Outcome::Replayed(_)));
}

#[tokio::test]
async fn occurred_at_outside_the_window_or_before_enrolment_is_refused() {
    let app = app();
    let a = enrol(&app, "a").await;
    for (when, refused) in [
        ("2026-10-20T12:00:00Z", true),
        ("2026-11-20T11:50:00Z", true),
        ("2026-11-20T11:56:00Z", false),
    ] {
        let result = app
            .accrue(&a, key(when), &order(when, Some(when)), false)
            .await;
        match result {
            Err(error) if refused => {
                assert_eq!(error.code, ErrorCode::OccurredAtOutOfRange, "{when}");
                assert_eq!(error.status(), 422);
            }
            Ok(_) if !refused => {}
            other => panic!("{when}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_keyed_enrolment_without_an_id_replays_instead_of_creating_a_second_member() {
    let app = app();
    let request = || EnrolRequest {
        member_id: None,
        email: Some("ada@example.com".into()),
        name: None,
        referral_code: None,
    };
    let first = app
        .enrol_with_key(request(), key("signup-1"))
        .await
        .expect("created");
    let again = app
        .enrol_with_key(request(), key("signup-1"))
        .await
        .expect("replayed");
    let (Outcome::Created(first), Outcome::Replayed(again)) = (first, again) else {
        panic!("expected created then replayed");
    };
    assert_eq!(first, again);
    let commits = app.store().commits();
    let mut other = request();
    other.email = Some("bob@example.com".into());
    let reused = app
        .enrol_with_key(other, key("signup-1"))
        .await
        .expect_err("other body");
    assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(app.store().commits(), commits);
}
