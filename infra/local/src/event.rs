//! HTTP request → API Gateway HTTP API (payload 2.0) event → `lambda_http::Request`. Going
//! through the event JSON, rather than building the request directly, means the handler sees
//! exactly what `lambda_http` makes of a real invocation: the same URI, extensions and decoding.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use base64::Engine as _;
use chrono::Utc;
use http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::error::LocalError;
use crate::template::HttpRoute;

const SOURCE_IP: &str = "127.0.0.1";
const DEFAULT_HOST: &str = "localhost";

/// The v2 event for one request, as API Gateway would send it to the function behind `route`.
/// `raw_path` and `raw_query` are as the client sent them (still percent-encoded); `authorizer`
/// is `requestContext.authorizer` when a JWT authorizer let the request through
/// ([`crate::jwt::authorizer_context`]).
#[allow(clippy::too_many_arguments)]
pub fn apigw_v2_event(
    route: &HttpRoute,
    params: HashMap<String, String>,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    authorizer: Option<Value>,
) -> Value {
    let mut joined: Map<String, Value> = Map::new();
    let mut cookies: Vec<String> = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name == http::header::COOKIE {
            // API Gateway moves cookies out of the headers into their own list.
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        joined.insert(name.as_str().to_owned(), Value::String(values.join(",")));
    }

    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_plain_host(h))
        .unwrap_or(DEFAULT_HOST)
        .to_owned();
    let domain_name = strip_port(&host).to_owned();
    let domain_prefix = domain_name.split('.').next().unwrap_or_default().to_owned();
    // API Gateway sets these itself; a client-supplied scheme must not reach the handler (and
    // `lambda_http` builds the request URI from the host and scheme).
    joined.insert("host".to_owned(), Value::String(host));
    joined.insert("x-forwarded-proto".to_owned(), json!("http"));
    let forwarded_for = match joined.get("x-forwarded-for").and_then(Value::as_str) {
        Some(previous) if !previous.is_empty() => format!("{previous}, {SOURCE_IP}"),
        _ => SOURCE_IP.to_owned(),
    };
    joined.insert("x-forwarded-for".to_owned(), Value::String(forwarded_for));
    let user_agent = joined
        .get("user-agent")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    let mut query: Map<String, Value> = Map::new();
    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(name.as_ref()) {
            Some(Value::String(previous)) => {
                previous.push(',');
                previous.push_str(&value);
            }
            _ => {
                query.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
    }

    let now = Utc::now();
    let method = method.to_ascii_uppercase();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.route_key(),
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": joined,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": SOURCE_IP,
                "userAgent": user_agent,
            },
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": route.route_key(),
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    // API Gateway leaves out what the request does not have rather than sending empty values.
    let Value::Object(fields) = &mut event else {
        unreachable!("json! of an object literal is an object")
    };
    if !cookies.is_empty() {
        fields.insert("cookies".to_owned(), json!(cookies));
    }
    if !query.is_empty() {
        fields.insert("queryStringParameters".to_owned(), Value::Object(query));
    }
    if !params.is_empty() {
        fields.insert("pathParameters".to_owned(), json!(params));
    }
    if let (Some(authorizer), Some(Value::Object(context))) =
        (authorizer, fields.get_mut("requestContext"))
    {
        context.insert("authorizer".to_owned(), authorizer);
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => {
                fields.insert("body".to_owned(), json!(text));
            }
            Err(_) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                fields.insert("body".to_owned(), json!(encoded));
                fields.insert("isBase64Encoded".to_owned(), json!(true));
            }
        }
    }
    event
}

/// The request `lambda_http` makes of `event`, as a function receives it.
pub fn to_lambda_request(event: &Value) -> Result<lambda_http::Request, LocalError> {
    let json = serde_json::to_string(event).map_err(|e| LocalError::Event(e.to_string()))?;
    // `lambda_http` unwraps its URI parse; an odd path must fail this request, not the server.
    std::panic::catch_unwind(AssertUnwindSafe(|| lambda_http::request::from_str(&json)))
        .map_err(|_| {
            LocalError::Event(format!(
                "lambda_http could not turn the event into a request: {json}"
            ))
        })?
        .map_err(|e| LocalError::Event(e.to_string()))
}

/// A host header that is only a host name or address and an optional port.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        && host.parse::<http::uri::Authority>().is_ok()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use lambda_http::request::RequestContext;
    use lambda_http::{Body, RequestExt};

    fn accrue_route() -> HttpRoute {
        HttpRoute {
            function: "AccrueFunction".to_owned(),
            binary: "accrue".to_owned(),
            method: "POST".to_owned(),
            path: "/v1/members/{member_id}/accruals".to_owned(),
            auth: crate::template::RouteAuth::Open,
        }
    }

    fn to_apigw_v2_request(
        route: &HttpRoute,
        params: HashMap<String, String>,
        method: &str,
        raw_path: &str,
        raw_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<lambda_http::Request, LocalError> {
        to_lambda_request(&apigw_v2_event(
            route, params, method, raw_path, raw_query, headers, body, None,
        ))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn request_carries_query_headers_params_and_text_body() {
        let route = accrue_route();
        let path = "/v1/members/m%201/accruals";
        let params = route.matches("POST", path).expect("route matches");
        let headers = headers(&[
            ("host", "127.0.0.1:3000"),
            ("Idempotency-Key", "k1"),
            ("accept", "application/json"),
            ("accept", "text/plain"),
            ("cookie", "a=1; b=2"),
            ("x-forwarded-proto", "bogus scheme"),
        ]);
        let query = "dry_run=true&tag=a%20b&tag=c+d&empty";
        let body = br#"{"kind":"purchase"}"#;

        let event = apigw_v2_event(
            &route,
            params.clone(),
            "post",
            path,
            query,
            &headers,
            body,
            None,
        );
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "POST /v1/members/{member_id}/accruals");
        assert_eq!(event["headers"]["accept"], "application/json,text/plain");
        assert_eq!(event["headers"]["idempotency-key"], "k1");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(
            event["queryStringParameters"],
            json!({"dry_run": "true", "tag": "a b,c d", "empty": ""})
        );
        assert_eq!(event["pathParameters"], json!({"member_id": "m 1"}));
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["requestContext"]["domainName"], "127.0.0.1");
        assert_eq!(event["requestContext"]["stage"], "$default");
        assert_eq!(event["isBase64Encoded"], false);

        let request = to_apigw_v2_request(&route, params, "POST", path, query, &headers, body)
            .expect("request");
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:3000/v1/members/m%201/accruals?dry_run=true&tag=a%20b&tag=c+d&empty"
        );
        assert_eq!(request.uri().path(), path);
        let query = request.query_string_parameters();
        assert_eq!(query.first("dry_run"), Some("true"));
        assert_eq!(query.all("tag"), Some(vec!["a b", "c d"]));
        assert_eq!(request.path_parameters().first("member_id"), Some("m 1"));
        assert_eq!(
            request
                .headers()
                .get("idempotency-key")
                .map(HeaderValue::as_bytes),
            Some(&b"k1"[..])
        );
        assert_eq!(
            request.headers().get("cookie").map(HeaderValue::as_bytes),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(
            request.body(),
            &Body::Text(r#"{"kind":"purchase"}"#.to_owned())
        );
        match request.request_context() {
            RequestContext::ApiGatewayV2(context) => {
                assert_eq!(
                    context.route_key.as_deref(),
                    Some("POST /v1/members/{member_id}/accruals")
                );
                assert_eq!(context.request_id.as_ref().map(String::len), Some(26));
            }
            other => panic!("not an HTTP API request: {other:?}"),
        }
    }

    #[test]
    fn binary_body_is_base64_and_empty_body_is_absent() {
        let route = accrue_route();
        let params = HashMap::from([("member_id".to_owned(), "m1".to_owned())]);
        let bytes = [0xff, 0x00, 0xfe];
        let event = apigw_v2_event(
            &route,
            params.clone(),
            "POST",
            "/v1/members/m1/accruals",
            "",
            &HeaderMap::new(),
            &bytes,
            None,
        );
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], "/wD+");
        assert!(event.get("queryStringParameters").is_none());
        let request = to_apigw_v2_request(
            &route,
            params.clone(),
            "POST",
            "/v1/members/m1/accruals",
            "",
            &HeaderMap::new(),
            &bytes,
        )
        .expect("request");
        assert_eq!(request.body(), &Body::Binary(bytes.to_vec()));
        assert_eq!(
            request.uri().to_string(),
            "http://localhost/v1/members/m1/accruals"
        );

        let empty = apigw_v2_event(
            &route,
            params,
            "POST",
            "/v1/members/m1/accruals",
            "",
            &HeaderMap::new(),
            b"",
            None,
        );
        assert!(empty.get("body").is_none());
        assert!(empty["requestContext"].get("authorizer").is_none());
    }

    #[test]
    fn a_jwt_caller_reaches_the_handler_in_the_request_context() {
        let route = accrue_route();
        let params = HashMap::from([("member_id".to_owned(), "m1".to_owned())]);
        let authorizer = json!({"jwt": {"claims": {"sub": "pos-1", "exp": "1900000000"}, "scopes": ["loyalty/pos"]}});
        let event = apigw_v2_event(
            &route,
            params,
            "POST",
            "/v1/members/m1/accruals",
            "",
            &HeaderMap::new(),
            b"",
            Some(authorizer.clone()),
        );
        assert_eq!(event["requestContext"]["authorizer"], authorizer);
        let request = to_lambda_request(&event).expect("request");
        match request.request_context() {
            RequestContext::ApiGatewayV2(context) => {
                let jwt = context
                    .authorizer
                    .and_then(|a| a.jwt)
                    .expect("jwt authorizer");
                assert_eq!(jwt.claims.get("sub").map(String::as_str), Some("pos-1"));
                assert_eq!(jwt.scopes, Some(vec!["loyalty/pos".to_owned()]));
            }
            other => panic!("not an HTTP API request: {other:?}"),
        }
    }

    #[test]
    fn odd_host_headers_fall_back_to_localhost() {
        let route = accrue_route();
        let weird = headers(&[("host", "a b/c")]);
        let request = to_apigw_v2_request(
            &route,
            HashMap::new(),
            "POST",
            "/v1/members/m1/accruals",
            "",
            &weird,
            b"",
        )
        .expect("request");
        assert_eq!(request.uri().host(), Some("localhost"));
        assert_eq!(strip_port("[::1]:3000"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
