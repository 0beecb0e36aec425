//! The handlers are generic over the store: here they run with no AWS at all, on the in-memory
//! store, fed events built from `aws_lambda_events`' own API Gateway v2 types, carrying the
//! claims a JWT authorizer verified.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription,
    ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext,
};
use aws_lambda_events::http::{HeaderMap, HeaderValue, Method};
use lambda_http::Body;
use loyalty_core::clock::SystemClock;
use loyalty_core::memory::MemoryStore;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_http::{handle, Function, REPLAYED_HEADER};
use serde_json::{json, Value};

/// A till's token: subject `till-1`, scope `loyalty/pos`, as API Gateway passes it.
fn till() -> ApiGatewayRequestAuthorizer {
    let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
    jwt.claims = HashMap::from([
        ("sub".to_owned(), "till-1".to_owned()),
        ("scope".to_owned(), "loyalty/pos".to_owned()),
    ]);
    jwt.scopes = Some(vec!["loyalty/pos".to_owned()]);
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    authorizer.jwt = Some(jwt);
    authorizer
}

fn event(
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> lambda_http::Request {
    event_as(method, path, key, body, Some(till()))
}

fn event_as(
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
    authorizer: Option<ApiGatewayRequestAuthorizer>,
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
    context.authorizer = authorizer;
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
async fn a_request_without_a_verified_caller_is_refused_before_the_store() {
    let app = App::new(
        MemoryStore::new(),
        Arc::new(SystemClock),
        AppConfig::default(),
    );
    let refused = handle(
        &app,
        Function::Members,
        event_as(
            Method::POST,
            "/v1/members",
            None,
            Some(json!({ "member_id": "ada" })),
            None,
        ),
    )
    .await;
    assert_eq!(refused.status(), 401);
    assert_eq!(json_of(&refused)["error"]["code"], "unauthorized");
    assert_eq!(app.store().commits(), 0, "a refused request writes nothing");
}
