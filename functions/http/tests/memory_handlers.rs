//! The handlers are generic over the store: here they run with no AWS at all, on the in-memory
//! store, fed events built from `aws_lambda_events`' own API Gateway v2 types.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext};
use aws_lambda_events::http::{HeaderMap, HeaderValue, Method};
use lambda_http::Body;
use loyalty_core::clock::SystemClock;
use loyalty_core::memory::MemoryStore;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_http::{handle, Function, REPLAYED_HEADER};
use serde_json::{json, Value};

fn event(
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> lambda_http::Request {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(key) = key {
        headers.insert(
            "idempotency-key",
            HeaderValue::from_str(key).expect("header"),
        );
    }
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.http.method = method.clone();
    context.http.path = Some(path.to_owned());
    let mut request = ApiGatewayV2httpRequest::default();
    request.version = Some("2.0".into());
    request.route_key = Some(format!("{method} {path}"));
    request.raw_path = Some(path.to_owned());
    request.headers = headers;
    request.path_parameters = HashMap::new();
    request.request_context = context;
    request.body = body.map(|b| b.to_string());
    let json = serde_json::to_string(&request).expect("event serialises");
    lambda_http::request::from_str(&json).expect("lambda_http parses the event")
}

fn json_of(response: &lambda_http::Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("json"),
        _ => Value::Null,
    }
}

#[tokio::test]
async fn enrol_accrue_and_replay_without_aws() {
    let app = Arc::new(App::new(
        MemoryStore::new(),
        Arc::new(SystemClock),
        AppConfig::default(),
    ));

    let enrolled = handle(
        &app,
        Function::Members,
        event(
            Method::POST,
            "/v1/members",
            None,
            Some(json!({ "member_id": "ada" })),
        ),
    )
    .await;
    assert_eq!(enrolled.status(), 201);
    assert_eq!(json_of(&enrolled)["balance"]["available"], 100);

    let order = json!({ "kind": "purchase", "order_id": "o-1", "amount": { "minor": 1_999, "currency": "USD" } });
    let first = handle(
        &app,
        Function::Accrue,
        event(
            Method::POST,
            "/v1/members/ada/accruals",
            Some("k1"),
            Some(order.clone()),
        ),
    )
    .await;
    assert_eq!(first.status(), 201);
    assert_eq!(json_of(&first)["points"], 19);
    let commits = app.store().commits();

    let again = handle(
        &app,
        Function::Accrue,
        event(
            Method::POST,
            "/v1/members/ada/accruals",
            Some("k1"),
            Some(order),
        ),
    )
    .await;
    assert_eq!(again.status(), 201);
    assert!(again.headers().contains_key(REPLAYED_HEADER));
    assert_eq!(json_of(&again), json_of(&first));
    assert_eq!(app.store().commits(), commits, "a replay writes nothing");

    let read = handle(
        &app,
        Function::Members,
        event(Method::GET, "/v1/members/ada", None, None),
    )
    .await;
    assert_eq!(json_of(&read)["balance"]["available"], 119);
}

#[tokio::test]
async fn keyed_creates_answer_their_first_response_again_with_the_replay_header() {
    let app = Arc::new(App::new(
        MemoryStore::new(),
        Arc::new(SystemClock),
        AppConfig::default(),
    ));
    let promotion = json!({
        "name": "Bonus", "bonus_points": 10,
        "starts_at": "2000-01-01T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z",
    });
    let reward =
        json!({ "reward_id": "mug", "name": "Mug", "kind": "merchandise", "points_cost": 100 });
    for (function, path, body) in [
        (
            Function::Members,
            "/v1/members",
            json!({ "email": "ada@example.com" }),
        ),
        (Function::Rewards, "/v1/admin/promotions", promotion),
        (Function::Rewards, "/v1/admin/rewards", reward),
    ] {
        let send = |body: Value| {
            handle(
                &app,
                function,
                event(Method::POST, path, Some("create-1"), Some(body)),
            )
        };
        let first = send(body.clone()).await;
        assert_eq!(first.status(), 201, "{path}: {}", json_of(&first));
        assert!(!first.headers().contains_key(REPLAYED_HEADER), "{path}");
        let commits = app.store().commits();
        let again = send(body.clone()).await;
        assert_eq!(again.status(), 201, "{path}");
        assert_eq!(
            again
                .headers()
                .get(REPLAYED_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("true"),
            "{path}"
        );
        assert_eq!(json_of(&again), json_of(&first), "{path}");
        assert_eq!(
            app.store().commits(),
            commits,
            "{path}: a replay writes nothing"
        );
        let mut other = body.clone();
        other["name"] = json!("Something else");
        let reused = send(other).await;
        assert_eq!(reused.status(), 422, "{path}");
        assert_eq!(json_of(&reused)["error"]["code"], "idempotency_key_reused");
    }
}
