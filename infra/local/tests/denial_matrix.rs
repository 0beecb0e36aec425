//! Every route of infra/template.yaml × every kind of caller, through the local API Gateway with
//! the handlers in-process against DynamoDB Local. The rows come from the template model, so a
//! route added later is covered without editing this test: a route's expected answers follow
//! from its `AuthorizationScopes` alone.
//!
//! Denials must answer exactly as API Gateway does (401 `{"message":"Unauthorized"}` for a
//! missing or invalid token, 403 `{"message":"Forbidden"}` without a route scope) or as the
//! function does when a member token names another member (403 `{"error":{"code":"forbidden"}}`),
//! and must write nothing: the table's items are counted before and after each denial. Allowed
//! calls may answer anything but 401 or 403 (a 404 for a made-up promotion is still "allowed").
//!
//! Needs `LOYALTY_TEST_DYNAMODB` (set by `make test`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aws_sdk_dynamodb::types::Select;
use chrono::Utc;
use http::{HeaderMap, HeaderValue};
use loyalty_core::clock::SystemClock;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_local::jwt::SigningKey;
use loyalty_local::runner::dynamodb_client;
use loyalty_local::template::{HttpRoute, RouteAuth, Template};
use loyalty_local::LocalApi;
use serde_json::{json, Value};

const MEMBER_SCOPE: &str = "loyalty/member";
const ALL_SCOPES: [&str; 5] = [
    "loyalty/member",
    "loyalty/pos",
    "loyalty/support",
    "loyalty/admin",
    "loyalty/reports",
];

/// The callers every route is tried with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    Expired,
    WrongIssuer,
    WrongAudience,
    BadSignature,
    NoRouteScope,
    AnotherMembersToken,
    OwnMemberToken,
    Pos,
    Support,
    Admin,
    Reports,
}

const CALLERS: [Caller; 12] = [
    Caller::NoToken,
    Caller::Expired,
    Caller::WrongIssuer,
    Caller::WrongAudience,
    Caller::BadSignature,
    Caller::NoRouteScope,
    Caller::AnotherMembersToken,
    Caller::OwnMemberToken,
    Caller::Pos,
    Caller::Support,
    Caller::Admin,
    Caller::Reports,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    /// API Gateway: 401 `{"message":"Unauthorized"}`.
    Unauthorized,
    /// API Gateway: 403 `{"message":"Forbidden"}`.
    Forbidden,
    /// The function: 403 `{"error":{"code":"forbidden"}}`.
    NotYourMember,
    /// The function: another member's reward code is 404 `redemption_not_found`, as if it did
    /// not exist.
    HiddenFromOthers,
    /// Anything but 401 and 403.
    Allowed,
}

impl Caller {
    /// The scope a valid token of this caller carries.
    fn scope(self) -> Option<&'static str> {
        match self {
            Caller::AnotherMembersToken | Caller::OwnMemberToken => Some(MEMBER_SCOPE),
            Caller::Pos => Some("loyalty/pos"),
            Caller::Support => Some("loyalty/support"),
            Caller::Admin => Some("loyalty/admin"),
            Caller::Reports => Some("loyalty/reports"),
            _ => None,
        }
    }

    /// What API Gateway and the function make of this caller on `route`.
    fn expected_on(self, route: &HttpRoute) -> Expected {
        let scopes = match &route.auth {
            RouteAuth::Open => return Expected::Allowed,
            RouteAuth::Iam => return Expected::Forbidden,
            RouteAuth::Jwt { scopes, .. } => scopes,
        };
        let granted = |scope: &str| scopes.is_empty() || scopes.iter().any(|s| s == scope);
        match self {
            Caller::NoToken
            | Caller::Expired
            | Caller::WrongIssuer
            | Caller::WrongAudience
            | Caller::BadSignature => Expected::Unauthorized,
            Caller::NoRouteScope if scopes.is_empty() => Expected::Allowed,
            Caller::NoRouteScope => Expected::Forbidden,
            caller => {
                let scope = caller.scope().expect("a scoped caller");
                if !granted(scope) {
                    Expected::Forbidden
                } else if caller == Caller::AnotherMembersToken && route.path.contains("{code}") {
                    Expected::HiddenFromOthers
                } else if caller == Caller::AnotherMembersToken {
                    // A route that grants member tokens acts on a member: only on the token's own.
                    Expected::NotYourMember
                } else {
                    Expected::Allowed
                }
            }
        }
    }
}

struct Matrix {
    api: LocalApi,
    key: Arc<SigningKey>,
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Enrolled; every `{member_id}` in a path names her.
    owner: String,
    /// Enrolled too; the "another member" token is his.
    other: String,
    /// A reward code the owner redeemed; every `{code}` in a path names it.
    code: String,
}

impl Matrix {
    async fn start() -> Matrix {
        let endpoint = std::env::var("LOYALTY_TEST_DYNAMODB").unwrap_or_else(|_| {
            panic!(
                "this test needs DynamoDB Local: run `make test`, or start \
                 `infra/scripts/dynamodb-local.sh start 8000` and set LOYALTY_TEST_DYNAMODB=http://127.0.0.1:8000"
            )
        });
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = Template::load(&root.join("template.yaml")).expect("template");
        let client = dynamodb_client(&endpoint).await;
        let run = ulid::Ulid::new().to_string().to_lowercase();
        let table = format!("matrix-{run}");
        loyalty_local::tables::create_table(&client, &template.tables[0], &table)
            .await
            .expect("table");
        let app = Arc::new(App::new(
            DynamoStore::new(client.clone(), table.as_str()),
            Arc::new(SystemClock),
            AppConfig::default(),
        ));
        let program = std::fs::read(root.join("program.default.json")).expect("program");
        app.replace_program("matrix-setup", &program)
            .await
            .expect("program published");
        let key = Arc::new(SigningKey::generate().expect("key"));
        let api = LocalApi::in_process(&template, app, Arc::clone(&key)).expect("gateway");
        let matrix = Matrix {
            api,
            key,
            client,
            table,
            owner: format!("owner-{run}"),
            other: format!("other-{run}"),
            code: String::new(),
        };
        let mut matrix = matrix;
        for member in [&matrix.owner, &matrix.other] {
            let token = matrix.token(Caller::Pos, "setup");
            let response = matrix
                .api
                .call(
                    "POST",
                    "/v1/members",
                    &headers(Some(&token)),
                    json!({ "member_id": member }).to_string().as_bytes(),
                )
                .await;
            assert_eq!(response.status(), 201, "enrolling {member}");
        }
        matrix.code = matrix.owners_code().await;
        matrix
    }

    /// Funds the owner and redeems a free coffee for her: the code the `{code}` routes name.
    async fn owners_code(&self) -> String {
        let token = self.token(Caller::Pos, "setup");
        let owner = &self.owner;
        let funded = self
            .api
            .call(
                "POST",
                &format!("/v1/members/{owner}/accruals"),
                &headers(Some(&token)),
                json!({ "kind": "purchase", "order_id": format!("order-{owner}"),
                        "amount": { "minor": 10_000, "currency": "USD" } })
                .to_string()
                .as_bytes(),
            )
            .await;
        assert_eq!(funded.status(), 201, "funding {owner}");
        let redeemed = self
            .api
            .call(
                "POST",
                &format!("/v1/members/{owner}/redemptions"),
                &headers(Some(&token)),
                json!({ "reward_id": "free-coffee" }).to_string().as_bytes(),
            )
            .await;
        assert_eq!(redeemed.status(), 201, "redeeming for {owner}");
        let receipt: Value = serde_json::from_slice(redeemed.body()).expect("receipt");
        receipt["code"].as_str().expect("a code").to_owned()
    }

    /// A token for `caller`, naming `member` when it is the member's own.
    fn token(&self, caller: Caller, member: &str) -> String {
        let issuer = self.api.issuer();
        let now = Utc::now().timestamp();
        let mut claims = json!({
            "iss": issuer.issuer, "aud": issuer.audience, "sub": member,
            "iat": now - 5, "nbf": now - 5, "exp": now + 300,
            // Every scope: an invalid token must be refused for its flaw alone.
            "scope": ALL_SCOPES.join(" "),
        });
        match caller {
            Caller::Expired => {
                claims["iat"] = json!(now - 600);
                claims["nbf"] = json!(now - 600);
                claims["exp"] = json!(now - 60);
            }
            Caller::WrongIssuer => claims["iss"] = json!("https://issuer.example.com"),
            Caller::WrongAudience => claims["aud"] = json!("another-api"),
            Caller::BadSignature => {
                let impostor = SigningKey::generate().expect("key");
                let header =
                    json!({"alg": "RS256", "typ": "JWT", "kid": self.key.public_jwk().kid});
                return impostor.sign_with_header(&header, &claims);
            }
            Caller::NoRouteScope => claims["scope"] = json!("openid profile"),
            Caller::AnotherMembersToken => {
                claims["sub"] = json!(self.other);
                claims["scope"] = json!(MEMBER_SCOPE);
            }
            Caller::NoToken => {}
            other => claims["scope"] = json!(other.scope().expect("scoped")),
        }
        self.key.sign(&claims)
    }

    /// Items in the table, read consistently.
    async fn items(&self) -> i64 {
        let mut count = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            count += i64::from(page.count);
            start = page.last_evaluated_key;
            if start.is_none() {
                return count;
            }
        }
    }
}

fn headers(token: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let key = ulid::Ulid::new().to_string();
    headers.insert(
        "idempotency-key",
        HeaderValue::from_str(&key).expect("header"),
    );
    if let Some(token) = token {
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
    }
    headers
}

/// A concrete path for `route`: `{member_id}` is `member`, `{code}` is `code`, other parameters
/// made up.
fn concrete_path(route: &HttpRoute, member: &str, code: &str) -> String {
    route
        .path
        .split('/')
        .map(|segment| match segment {
            "{member_id}" => member.to_owned(),
            "{code}" => code.to_owned(),
            s if s.starts_with('{') => format!("made-up-{}", ulid::Ulid::new()),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A valid body where one is easy to write, so allowed calls really run; `{}` otherwise.
fn body_for(route: &HttpRoute, member: &str) -> Value {
    let unique = ulid::Ulid::new().to_string().to_lowercase();
    match route.route_key().as_str() {
        "POST /v1/members" => {
            json!({ "member_id": member, "email": format!("{member}@example.com") })
        }
        "POST /v1/members/{member_id}/accruals" => json!({
            "kind": "purchase", "order_id": format!("order-{unique}"),
            "amount": { "minor": 1250, "currency": "USD" },
        }),
        "POST /v1/members/{member_id}/redemptions" => json!({ "reward_id": "free-coffee" }),
        "POST /v1/members/{member_id}/transfers" => {
            json!({ "to_member_id": format!("receiver-{unique}"), "points": 10 })
        }
        "POST /v1/members/{member_id}/subscription" => {
            json!({ "plan_id": "plus", "payment_method": "pm_card_visa" })
        }
        "PATCH /v1/members/{member_id}/subscription" => json!({ "plan_id": "plus" }),
        "PUT /v1/admin/members/{member_id}/tier" => {
            json!({ "tier": "gold", "reason": "denial matrix" })
        }
        "POST /v1/admin/promotions" => json!({
            "name": format!("Matrix {unique}"), "multiplier": 2, "categories": [format!("cat_{unique}")],
            "starts_at": "2000-01-01T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z",
        }),
        "POST /v1/admin/campaigns" => json!({
            "name": format!("Matrix {unique}"), "points": 1,
            "audience": { "member_ids": [member] }, "reason": "denial matrix",
        }),
        "POST /v1/admin/webhooks" => json!({
            "url": format!("https://hooks.example.com/{unique}"), "event_types": ["points.*"],
        }),
        _ => json!({}),
    }
}

fn verdict(status: u16, body: &Value) -> Result<Expected, String> {
    match (status, body) {
        (401, body) if *body == json!({"message": "Unauthorized"}) => Ok(Expected::Unauthorized),
        (403, body) if *body == json!({"message": "Forbidden"}) => Ok(Expected::Forbidden),
        (403, body) if body["error"]["code"] == "forbidden" => Ok(Expected::NotYourMember),
        (404, body) if body["error"]["code"] == "redemption_not_found" => {
            Ok(Expected::HiddenFromOthers)
        }
        (401 | 403, body) => Err(format!("{status} with an unexpected body {body}")),
        _ => Ok(Expected::Allowed),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_every_caller_it_should_and_writes_nothing_when_it_does() {
    let matrix = Matrix::start().await;
    let routes: Vec<HttpRoute> = matrix.api.routes().cloned().collect();
    assert!(
        routes.len() >= 20,
        "the template's routes: {}",
        routes.len()
    );
    let mut failures = Vec::new();
    let mut tally: HashMap<&'static str, usize> = HashMap::new();
    for route in &routes {
        for caller in CALLERS {
            // The route's member: the owner's path (or code), or for enrolment a member not yet
            // enrolled.
            let member = if route.path.contains("{member_id}") || route.path.contains("{code}") {
                matrix.owner.clone()
            } else {
                format!("new-{}", ulid::Ulid::new().to_string().to_lowercase())
            };
            let token = (caller != Caller::NoToken).then(|| matrix.token(caller, &member));
            let path = concrete_path(route, &member, &matrix.code);
            let body = body_for(route, &member);
            let expected = caller.expected_on(route);
            let before = matrix.items().await;
            let response = matrix
                .api
                .call(
                    &route.method,
                    &path,
                    &headers(token.as_deref()),
                    body.to_string().as_bytes(),
                )
                .await;
            let status = response.status().as_u16();
            let answer: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
            let row = format!("{} as {caller:?}", route.route_key());
            match verdict(status, &answer) {
                Ok(actual) if actual == expected => {}
                Ok(actual) => failures.push(format!(
                    "{row}: expected {expected:?}, got {actual:?} ({status} {answer})"
                )),
                Err(problem) => failures.push(format!("{row}: {problem}")),
            }
            if expected != Expected::Allowed {
                let written = matrix.items().await - before;
                if written != 0 {
                    failures.push(format!("{row}: denied, yet {written} item(s) written"));
                }
            }
            *tally.entry(label(expected)).or_default() += 1;
        }
    }
    println!(
        "{} routes × {} callers: {tally:?}",
        routes.len(),
        CALLERS.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows wrong:\n{}",
        failures.len(),
        routes.len() * CALLERS.len(),
        failures.join("\n")
    );
    // The matrix exercised every kind of answer.
    for kind in ["unauthorized", "forbidden", "not your member", "allowed"] {
        assert!(tally.get(kind).is_some_and(|n| *n > 0), "no {kind} row");
    }
}

fn label(expected: Expected) -> &'static str {
    match expected {
        Expected::Unauthorized => "unauthorized",
        Expected::Forbidden => "forbidden",
        Expected::NotYourMember => "not your member",
        Expected::HiddenFromOthers => "hidden from others",
        Expected::Allowed => "allowed",
    }
}
