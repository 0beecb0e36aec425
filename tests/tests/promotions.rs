//! Promotions on DynamoDB Local: half-open windows at the purchase's own time, the single-best
//! stacking rule, seasons opened and closed once, and no extra read per accrual.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::events::MemoryQueue;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_http::{handle, Function};
use loyalty_tests::events::{json_of, ApiRequest};
use loyalty_tests::stream_relay::StreamRelay;
use loyalty_tests::*;
use serde_json::{json, Value};

struct PromoApp {
    app: Arc<App<DynamoStore>>,
    store: DynamoStore,
    clock: Arc<ManualClock>,
    events: Arc<MemoryQueue>,
    /// The table's stream, relayed to `events` (openings and closings are announced from it).
    outbox: StreamRelay,
}

async fn promo_app(now: DateTime<Utc>) -> PromoApp {
    let clock = Arc::new(ManualClock::new(now));
    let events = Arc::new(MemoryQueue::default());
    let store = streaming_store().await;
    let outbox = StreamRelay::of(&store).await;
    let app =
        App::new(store.clone(), clock.clone(), AppConfig::default()).with_events(events.clone());
    PromoApp {
        app: Arc::new(app),
        store,
        clock,
        events,
        outbox,
    }
}

fn utc(m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, min, s)
        .single()
        .expect("date")
}

async fn create(app: &App<DynamoStore>, body: Value) -> Value {
    let response = handle(
        app,
        Function::Rewards,
        ApiRequest::post("/v1/admin/promotions", body).request(),
    )
    .await;
    assert_eq!(response.status(), 201, "{}", json_of(&response));
    json_of(&response)
}

fn order_at(order: &str, minor: i64, at: DateTime<Utc>) -> Value {
    json!({ "kind": "purchase", "order_id": order, "amount": { "minor": minor, "currency": "USD" }, "occurred_at": at })
}

fn promotion_lines(outcome: &loyalty_core::service::Outcome) -> Vec<Value> {
    body(outcome)["breakdown"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter(|l| {
                    l["rule"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("promotion:"))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_window_is_half_open_and_judged_at_the_purchase_time() {
    // Created and joined before the weekend; the purchases are reported a week later (inside the
    // program's lateness window).
    let PromoApp { app, clock, .. } = promo_app(utc(11, 10, 12, 0, 0)).await;
    let promo = create(&app, json!({ "name": "Weekend double", "multiplier": 2, "starts_at": utc(11, 14, 0, 0, 0), "ends_at": utc(11, 16, 0, 0, 0) })).await;
    let member = enrol(&app, &unique("m")).await;
    clock.set(utc(11, 22, 12, 0, 0));
    let cases = [
        (utc(11, 13, 23, 59, 59), false),
        (utc(11, 14, 0, 0, 0), true),
        (utc(11, 15, 23, 59, 59), true),
        (utc(11, 16, 0, 0, 0), false),
    ];
    for (i, (at, applies)) in cases.into_iter().enumerate() {
        // Processed a week later: the purchase's own time decides.
        let outcome = accrue(
            &app,
            &member,
            &format!("k{i}"),
            order_at(&format!("o{i}"), 10_000, at),
        )
        .await
        .expect("accrued");
        let lines = promotion_lines(&outcome);
        assert_eq!(lines.len(), usize::from(applies), "{at}");
        if applies {
            assert_eq!(
                lines[0]["rule"],
                format!(
                    "promotion:{}",
                    promo["promotion_id"].as_str().unwrap_or_default()
                )
            );
            assert_eq!(body(&outcome)["points"], 200);
        } else {
            assert_eq!(body(&outcome)["points"], 100);
        }
    }
}

#[tokio::test]
async fn the_best_single_promotion_applies_and_cancel_stops_it() {
    let PromoApp { app, .. } = promo_app(utc(11, 22, 12, 0, 0)).await;
    let window = json!({ "starts_at": utc(11, 1, 0, 0, 0), "ends_at": utc(12, 1, 0, 0, 0) });
    let with = |extra: Value| {
        let mut body = window.clone();
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().cloned().unwrap_or_default());
        body
    };
    create(&app, with(json!({ "name": "Double", "multiplier": 2 }))).await;
    let triple = create(
        &app,
        with(json!({ "name": "Triple coffee", "multiplier": 3, "categories": ["coffee"] })),
    )
    .await;
    create(&app, with(json!({ "name": "Flat 40", "bonus_points": 40 }))).await;
    let member = enrol(&app, &unique("m")).await;
    let items = |coffee: i64| json!([{ "sku": "LATTE", "category": "coffee", "amount": { "minor": coffee, "currency": "USD" }, "quantity": 1 }]);

    // 100.00 with 10.00 of coffee: double adds 100, triple-coffee 20, flat 40 → double.
    let order = json!({ "kind": "purchase", "order_id": "o1", "amount": { "minor": 10_000, "currency": "USD" }, "items": items(1_000) });
    let outcome = accrue(&app, &member, "k1", order).await.expect("accrued");
    let lines = promotion_lines(&outcome);
    assert_eq!(lines.len(), 1, "one promotion, never a stack");
    assert!(lines[0]["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("Double")));
    // Coffee base 10 doubled by its category multiplier (20) + base 90 = 110; double adds 110.
    assert_eq!(body(&outcome)["points"], 220);

    // 20.00 all coffee earns 40 (coffee earns double): the double adds 40, triple-coffee adds
    // 2 × its 20 base points = 40, the flat bonus 40. A tie goes to the first created.
    let order = json!({ "kind": "purchase", "order_id": "o2", "amount": { "minor": 2_000, "currency": "USD" }, "items": items(2_000) });
    let outcome = accrue(&app, &member, "k2", order).await.expect("accrued");
    assert_eq!(promotion_lines(&outcome).len(), 1);
    assert_eq!(promotion_lines(&outcome)[0]["points"], 40);

    let id = triple["promotion_id"].as_str().unwrap_or_default();
    let canceled = handle(
        &app,
        Function::Rewards,
        ApiRequest::new("POST", &format!("/v1/admin/promotions/{id}/cancel")).request(),
    )
    .await;
    assert_eq!(canceled.status(), 200);
    assert_eq!(json_of(&canceled)["status"], "canceled");
    let listed = json_of(
        &handle(
            &app,
            Function::Rewards,
            ApiRequest::get("/v1/admin/promotions").request(),
        )
        .await,
    );
    assert_eq!(listed["promotions"].as_array().map(Vec::len), Some(3));
    let unknown = handle(
        &app,
        Function::Rewards,
        ApiRequest::new("POST", "/v1/admin/promotions/nope/cancel").request(),
    )
    .await;
    assert_eq!(unknown.status(), 404);
    for bad in [
        json!({ "name": "x", "multiplier": 11 }),
        json!({ "name": "x", "multiplier": 2, "bonus_points": 5 }),
        json!({ "name": "x" }),
    ] {
        let response = handle(
            &app,
            Function::Rewards,
            ApiRequest::post("/v1/admin/promotions", with(bad.clone())).request(),
        )
        .await;
        assert_eq!(response.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn a_season_opens_once_and_closes_once() {
    let PromoApp {
        app,
        clock,
        events,
        outbox,
        ..
    } = promo_app(utc(11, 26, 23, 0, 0)).await;
    assert_eq!(
        app.run_seasons().await.expect("ran").opened,
        0,
        "not yet Black Friday"
    );
    clock.set(utc(11, 27, 0, 0, 0));
    assert_eq!(app.run_seasons().await.expect("ran").opened, 1);
    assert_eq!(
        app.run_seasons().await.expect("ran").opened,
        0,
        "the same boundary twice: one promotion"
    );
    let listed = json_of(
        &handle(
            &app,
            Function::Rewards,
            ApiRequest::get("/v1/admin/promotions").request(),
        )
        .await,
    );
    let promotions = listed["promotions"].as_array().cloned().unwrap_or_default();
    assert_eq!(promotions.len(), 1);
    assert_eq!(promotions[0]["promotion_id"], "season-black-friday-2026");
    assert_eq!(promotions[0]["live"], true);

    let member = enrol(&app, &unique("m")).await;
    let outcome = accrue(&app, &member, "bf", purchase("bf-1", 5_000))
        .await
        .expect("accrued");
    assert_eq!(
        body(&outcome)["points"],
        100,
        "double points on Black Friday"
    );

    clock.set(utc(12, 1, 0, 30, 0));
    assert_eq!(app.run_seasons().await.expect("ran").closed, 1);
    assert_eq!(app.run_seasons().await.expect("ran").closed, 0);
    assert!(
        events.sent().is_empty(),
        "season runs send nothing: the stream announces"
    );
    outbox.relay(&app).await;
    let kinds: Vec<String> = events
        .sent()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .filter(|t| t.starts_with("promotion."))
        .collect();
    assert_eq!(kinds, vec!["promotion.opened", "promotion.closed"]);
    let later = accrue(&app, &member, "after", purchase("after-1", 5_000))
        .await
        .expect("accrued");
    assert_eq!(body(&later)["points"], 50);
}

#[tokio::test]
async fn promotions_cost_no_extra_read_per_accrual() {
    let PromoApp { app, store, .. } = promo_app(utc(11, 22, 12, 0, 0)).await;
    create(&app, json!({ "name": "Double", "multiplier": 2, "starts_at": utc(11, 1, 0, 0, 0), "ends_at": utc(12, 1, 0, 0, 0) })).await;
    let member = enrol(&app, &unique("m")).await;
    accrue(&app, &member, "warm", purchase("warm", 1_000))
        .await
        .expect("warm-up fills the caches");
    let before = store.meter().snapshot();
    for i in 0..5 {
        let outcome = accrue(
            &app,
            &member,
            &format!("k{i}"),
            purchase(&format!("o{i}"), 1_000),
        )
        .await
        .expect("accrued");
        assert_eq!(promotion_lines(&outcome).len(), 1);
    }
    let spent = store.meter().snapshot() - before;
    assert_eq!(
        spent.round_trips, 10,
        "two round trips per accrual, promotions included: {spent:?}"
    );
}
