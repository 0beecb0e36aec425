//! API Gateway HTTP API (payload 2.0) events for handler tests, derived from the example event
//! that ships in the `aws_lambda_events` crate, so the shape is AWS's and not ours.

use std::path::PathBuf;
use std::sync::OnceLock;

use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};

const FIXTURE: &str = "example-apigw-v2-request-no-authorizer.json";

/// The example event from the `aws_lambda_events` sources (located by `build.rs`).
fn fixture() -> &'static Value {
    static FIXTURE_JSON: OnceLock<Value> = OnceLock::new();
    FIXTURE_JSON.get_or_init(|| {
        let path = PathBuf::from(env!("AWS_LAMBDA_EVENTS_FIXTURES")).join(FIXTURE);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).expect("fixture is JSON")
    })
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
}

impl ApiRequest {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
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
        let mut event = fixture().clone();
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
