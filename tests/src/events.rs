//! API Gateway HTTP API (payload 2.0) events for handler tests, derived from the example events
//! that ship in the `aws_lambda_events` crate, so the shape is AWS's and not ours. A request
//! carries a verified caller in `requestContext.authorizer.jwt` (AWS's JWT authorizer example)
//! unless it is made [`ApiRequest::anonymous`] (AWS's no-authorizer example).

use std::path::PathBuf;
use std::sync::OnceLock;

use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};

const NO_AUTHORIZER: &str = "example-apigw-v2-request-no-authorizer.json";
const JWT_AUTHORIZER: &str = "example-apigw-v2-request-jwt-authorizer.json";

pub const MEMBER: &str = "loyalty/member";
pub const POS: &str = "loyalty/pos";
pub const SUPPORT: &str = "loyalty/support";
pub const ADMIN: &str = "loyalty/admin";
pub const REPORTS: &str = "loyalty/reports";

/// The caller a request has unless a test names another: a back office holding the staff
/// scopes, so every route except a member's self-service is open to it.
pub const DEFAULT_SUBJECT: &str = "test-back-office";
pub const DEFAULT_SCOPES: [&str; 3] = [POS, SUPPORT, ADMIN];

/// An example event from the `aws_lambda_events` sources (located by `build.rs`).
fn fixture(name: &'static str) -> &'static Value {
    static NO_AUTH: OnceLock<Value> = OnceLock::new();
    static JWT: OnceLock<Value> = OnceLock::new();
    let cell = if name == JWT_AUTHORIZER {
        &JWT
    } else {
        &NO_AUTH
    };
    cell.get_or_init(|| {
        let path = PathBuf::from(env!("AWS_LAMBDA_EVENTS_FIXTURES")).join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).expect("fixture is JSON")
    })
}

/// A token's claims as API Gateway's JWT authorizer passes them: every value a string.
#[derive(Debug, Clone)]
pub struct TestCaller {
    pub subject: String,
    pub scopes: Vec<String>,
    pub claims: Map<String, Value>,
}

impl TestCaller {
    pub fn new(subject: &str, scopes: &[&str]) -> Self {
        Self {
            subject: subject.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            claims: Map::new(),
        }
    }

    fn authorizer(&self) -> Value {
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(self.subject));
        claims.insert("iss".into(), json!("https://issuer.example.com"));
        claims.insert("aud".into(), json!("loyalty-tests"));
        claims.insert("iat".into(), json!("1764400000"));
        claims.insert("exp".into(), json!("4102444800"));
        claims.insert("scope".into(), json!(self.scopes.join(" ")));
        claims.extend(self.claims.clone());
        json!({ "jwt": { "claims": claims, "scopes": self.scopes } })
    }
}

/// The route template API Gateway would report for `path`, with its path parameters.
fn route_of(path: &str) -> (String, Map<String, Value>) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut params = Map::new();
    let templated: Vec<String> = segments
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            if i == 2 && segments.get(1) == Some(&"members") {
                params.insert("member_id".into(), json!(segment));
                "{member_id}".to_owned()
            } else {
                (*segment).to_owned()
            }
        })
        .collect();
    (format!("/{}", templated.join("/")), params)
}

pub struct ApiRequest {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<String>,
    caller: Option<TestCaller>,
}

impl ApiRequest {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            caller: Some(TestCaller::new(DEFAULT_SUBJECT, &DEFAULT_SCOPES)),
        }
    }

    /// No authorizer context at all, as API Gateway sends a public route (or a route someone
    /// wired without its authorizer).
    pub fn anonymous(mut self) -> Self {
        self.caller = None;
        self
    }

    /// A token with subject `subject` and these scopes.
    pub fn caller(mut self, subject: &str, scopes: &[&str]) -> Self {
        self.caller = Some(TestCaller::new(subject, scopes));
        self
    }

    /// A member app's token for `member_id` (its `sub`, the default member id claim).
    pub fn as_member(self, member_id: &str) -> Self {
        self.caller(member_id, &[MEMBER])
    }

    /// An extra claim on the caller's token (e.g. a custom member id claim).
    pub fn claim(mut self, name: &str, value: &str) -> Self {
        let caller = self
            .caller
            .get_or_insert_with(|| TestCaller::new(DEFAULT_SUBJECT, &DEFAULT_SCOPES));
        caller.claims.insert(name.to_owned(), json!(value));
        self
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: &str, body: Value) -> Self {
        Self::new("POST", path).raw_body(&body.to_string())
    }

    pub fn raw_body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn key(self, key: &str) -> Self {
        self.header("Idempotency-Key", key)
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// The event as Lambda would deliver it, parsed the way `lambda_http` parses it on Lambda.
    pub fn event(&self) -> Value {
        let mut event = match &self.caller {
            Some(caller) => {
                let mut event = fixture(JWT_AUTHORIZER).clone();
                event["requestContext"]["authorizer"] = caller.authorizer();
                event
            }
            None => fixture(NO_AUTHORIZER).clone(),
        };
        let (route_path, params) = route_of(&self.path);
        let route_key = format!("{} {route_path}", self.method);
        let raw_query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut headers = Map::new();
        headers.insert("content-type".into(), json!("application/json"));
        headers.insert("host".into(), json!("loyalty.example.com"));
        for (name, value) in &self.headers {
            headers.insert(name.clone(), json!(value));
        }
        event["routeKey"] = json!(route_key);
        event["rawPath"] = json!(self.path);
        event["rawQueryString"] = json!(raw_query.join("&"));
        event["headers"] = Value::Object(headers);
        event["queryStringParameters"] = if self.query.is_empty() {
            Value::Null
        } else {
            Value::Object(
                self.query
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            )
        };
        event["pathParameters"] = if params.is_empty() {
            Value::Null
        } else {
            Value::Object(params)
        };
        event["requestContext"]["routeKey"] = json!(route_key);
        event["requestContext"]["http"]["method"] = json!(self.method);
        event["requestContext"]["http"]["path"] = json!(self.path);
        event["body"] = self.body.as_ref().map_or(Value::Null, |b| json!(b));
        event["isBase64Encoded"] = json!(false);
        event["cookies"] = Value::Null;
        event
    }

    pub fn request(&self) -> Request {
        lambda_http::request::from_str(&self.event().to_string())
            .expect("lambda_http accepts the event")
    }
}

pub fn json_of(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON body"),
        Body::Binary(bytes) => serde_json::from_slice(bytes).expect("JSON body"),
        _ => Value::Null,
    }
}

pub fn error_code(response: &Response<Body>) -> String {
    json_of(response)["error"]["code"]
        .as_str()
        .unwrap_or("<no error code>")
        .to_owned()
}
