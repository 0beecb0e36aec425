//! The local API Gateway, one for both ways of running the functions: it accepts connections,
//! enforces the payload limit, matches the template's routes, authorizes each request as the
//! route's JWT authorizer would, builds the v2 event and answers the way API Gateway does when
//! nothing matches, the caller is refused or the function fails. An [`Invoker`] runs the
//! function: its handler in-process ([`crate::in_process`]) or its real binary behind the
//! emulated Lambda Runtime API ([`crate::runner`]).
//!
//! The runner's development issuer lives here too, on paths the template never has:
//! `POST /_local/tokens` mints a token and `GET /_local/jwks.json` publishes the key; and
//! `GET /_local/openapi.yaml` serves the API's description (docs/openapi.yaml).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::LocalError;
use crate::event::apigw_v2_event;
use crate::jwt::{self, Issuer, SigningKey, Verifier};
use crate::template::{HttpRoute, JwtAuthorizer, RouteAuth, Template, LOCAL_ISSUER};
use crate::wiring::Resolver;

/// API Gateway's payload limit for HTTP APIs.
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;
/// How long in-flight requests may run after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOKENS_PATH: &str = "/_local/tokens";
pub const JWKS_PATH: &str = "/_local/jwks.json";
pub const OPENAPI_PATH: &str = "/_local/openapi.yaml";
/// The API description, as built into the runner: the routes it serves are the template's, and
/// tests/tests/openapi.rs keeps the two in step.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../../docs/openapi.yaml");
const LOCAL_PREFIX: &str = "/_local/";

/// Runs the function behind a route.
pub trait Invoker: Send + Sync + 'static {
    /// The function's answer to `event`, or API Gateway's answer when the invocation fails.
    fn invoke(
        &self,
        route: &HttpRoute,
        event: Value,
    ) -> impl Future<Output = Response<Vec<u8>>> + Send;

    /// Answers a runner-only path under `/_local/` that the gateway itself does not serve.
    fn local(
        &self,
        _method: &str,
        _path: &str,
    ) -> impl Future<Output = Option<Response<Vec<u8>>>> + Send {
        async { None }
    }
}

/// The template's HTTP API over one [`Invoker`]; cheap to clone.
pub struct Gateway<I> {
    inner: Arc<Inner<I>>,
}

impl<I> Clone for Gateway<I> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<I> {
    routes: Vec<(HttpRoute, Guard)>,
    invoker: I,
    key: Arc<SigningKey>,
    /// What `/_local/tokens` writes into `iss` and `aud`: the first JWT authorizer's.
    issuer: String,
    audience: String,
}

/// A route's authorization, resolved against the parameters.
enum Guard {
    Open,
    /// SigV4 cannot be checked locally, so these routes are closed.
    Iam,
    Jwt {
        verifier: Arc<Verifier>,
        header: HeaderName,
        scopes: Vec<String>,
    },
}

/// Why a request did not reach its function.
enum Denied {
    Unauthorized(String),
    Forbidden(String),
}

impl<I: Invoker> Gateway<I> {
    /// Every HTTP API route of `template`, authorized with the template's JWT authorizers, which
    /// trust `key` (the runner is their issuer).
    pub fn new(template: &Template, key: Arc<SigningKey>, invoker: I) -> Result<Self, LocalError> {
        let resolver = Resolver {
            parameters: template.parameters.clone(),
            ..Resolver::default()
        };
        let mut verifiers: Vec<(&JwtAuthorizer, Arc<Verifier>)> = Vec::new();
        for authorizer in template.jwt_authorizers() {
            let what = |field: &str| format!("authorizer {}: {field}", authorizer.name);
            let issuer = resolver
                .resolve(&authorizer.issuer)
                .map_err(|e| LocalError::Template(format!("{}: {e}", what("issuer"))))?;
            let audiences = authorizer
                .audience
                .iter()
                .map(|a| resolver.resolve(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| LocalError::Template(format!("{}: {e}", what("audience"))))?;
            let verifier = Verifier {
                issuer,
                audiences,
                keys: vec![key.public_jwk().clone()],
            };
            verifiers.push((authorizer, Arc::new(verifier)));
        }
        let verifier_of = |authorizer: &JwtAuthorizer| {
            verifiers
                .iter()
                .find(|(known, _)| *known == authorizer)
                .map(|(_, verifier)| Arc::clone(verifier))
                .expect("every route's authorizer is among the template's JWT authorizers")
        };
        let mut routes = Vec::new();
        for route in template.http_routes() {
            let guard = match &route.auth {
                RouteAuth::Open => Guard::Open,
                RouteAuth::Iam => Guard::Iam,
                RouteAuth::Jwt { authorizer, scopes } => Guard::Jwt {
                    verifier: verifier_of(authorizer),
                    header: HeaderName::from_bytes(authorizer.identity_header.as_bytes()).map_err(
                        |_| {
                            LocalError::Template(format!(
                                "authorizer {}: '{}' is not a header name",
                                authorizer.name, authorizer.identity_header
                            ))
                        },
                    )?,
                    scopes: scopes.clone(),
                },
            };
            routes.push((route, guard));
        }
        let (issuer, audience) = match verifiers.first().map(|(_, verifier)| verifier) {
            Some(verifier) => (verifier.issuer.clone(), verifier.audiences[0].clone()),
            None => (LOCAL_ISSUER.to_owned(), LOCAL_ISSUER.to_owned()),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                routes,
                invoker,
                key,
                issuer,
                audience,
            }),
        })
    }

    pub fn routes(&self) -> impl Iterator<Item = &HttpRoute> {
        self.inner.routes.iter().map(|(route, _)| route)
    }

    pub fn invoker(&self) -> &I {
        &self.inner.invoker
    }

    /// The development issuer: what `POST /_local/tokens` mints with.
    pub fn issuer(&self) -> Issuer<'_> {
        Issuer {
            key: &self.inner.key,
            issuer: &self.inner.issuer,
            audience: &self.inner.audience,
        }
    }

    /// Accepts connections on `listener` until `shutdown` completes, then stops accepting and
    /// gives in-flight requests [`DRAIN_TIMEOUT`] to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), LocalError> {
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            // Usually out of file descriptors; back off instead of spinning.
                            eprintln!("accept failed: {error}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let gateway = self.clone();
                    let mut stopped = stopped.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let gateway = gateway.clone();
                            async move { Ok::<_, std::convert::Infallible>(gateway.serve_http(request).await) }
                        });
                        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                        tokio::pin!(connection);
                        tokio::select! {
                            _ = connection.as_mut() => {}
                            _ = stopped.changed() => {
                                connection.as_mut().graceful_shutdown();
                                let _ = connection.await;
                            }
                        }
                    });
                }
                // Reap finished connections so the set does not grow for the server's lifetime.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            eprintln!(
                "{} connection(s) still busy after {DRAIN_TIMEOUT:?}; closing them",
                connections.len()
            );
            connections.shutdown().await;
        }
        Ok(())
    }

    async fn serve_http(&self, request: http::Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let response = if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
            too_large(parts.method.as_str(), &path_and_query)
        } else {
            match Limited::new(body, BODY_LIMIT).collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    self.call(
                        parts.method.as_str(),
                        &path_and_query,
                        &parts.headers,
                        &bytes,
                    )
                    .await
                }
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    too_large(parts.method.as_str(), &path_and_query)
                }
                Err(error) => {
                    println!(
                        "[gateway] {} {path_and_query}: reading the body failed: {error}",
                        parts.method
                    );
                    gateway_error(StatusCode::BAD_REQUEST, "Bad Request")
                }
            }
        };
        response.map(|body| Full::new(Bytes::from(body)))
    }

    /// One request through the same path the server takes, without a socket.
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        let started = Instant::now();
        let (raw_path, raw_query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        if body.len() > BODY_LIMIT {
            return too_large(method, path_and_query);
        }
        if raw_path.starts_with(LOCAL_PREFIX) {
            return self.local(method, raw_path, body).await;
        }
        let Some((route, guard, params)) = self.resolve(method, raw_path) else {
            println!("[gateway] {method} {path_and_query} -> 404 (no route)");
            return gateway_error(StatusCode::NOT_FOUND, "Not Found");
        };
        let authorizer = match authorize(guard, headers) {
            Ok(authorizer) => authorizer,
            Err(Denied::Unauthorized(why)) => {
                println!("[gateway] {method} {path_and_query} -> 401 ({why})");
                return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
            Err(Denied::Forbidden(why)) => {
                println!("[gateway] {method} {path_and_query} -> 403 ({why})");
                return gateway_error(StatusCode::FORBIDDEN, "Forbidden");
            }
        };
        let event = apigw_v2_event(
            route, params, method, raw_path, raw_query, headers, body, authorizer,
        );
        let request_id = event["requestContext"]["requestId"]
            .as_str()
            .and_then(|id| HeaderValue::from_str(id).ok());
        let mut response = self.inner.invoker.invoke(route, event).await;
        if let Some(id) = request_id {
            response.headers_mut().insert("apigw-requestid", id);
        }
        println!(
            "[{}] {method} {path_and_query} -> {} ({:.1} ms)",
            route.function,
            response.status().as_u16(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        response
    }

    /// The most specific route matching, as API Gateway chooses among overlapping routes.
    fn resolve(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(&HttpRoute, &Guard, HashMap<String, String>)> {
        self.inner
            .routes
            .iter()
            .filter_map(|(route, guard)| route.matches(method, path).map(|p| (route, guard, p)))
            .max_by_key(|(route, _, _)| route.specificity())
    }

    async fn local(&self, method: &str, path: &str, body: &[u8]) -> Response<Vec<u8>> {
        let response = match (method, path) {
            ("POST", TOKENS_PATH) => match self.issuer().mint(body, Utc::now().timestamp()) {
                Ok(token) => json_response(StatusCode::OK, &token),
                Err(message) => json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": {"code": "invalid_token_request", "message": message}}),
                ),
            },
            ("GET", JWKS_PATH) => json_response(StatusCode::OK, &self.inner.key.jwks()),
            ("GET", OPENAPI_PATH) => {
                let mut response = Response::new(OPENAPI_DOCUMENT.as_bytes().to_vec());
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/yaml"),
                );
                response
            }
            (_, TOKENS_PATH | JWKS_PATH | OPENAPI_PATH) => {
                gateway_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
            }
            _ => match self.inner.invoker.local(method, path).await {
                Some(response) => response,
                None => gateway_error(StatusCode::NOT_FOUND, "Not Found"),
            },
        };
        println!("[local] {method} {path} -> {}", response.status().as_u16());
        response
    }
}

/// API Gateway's decision for `guard`: `Ok` with `requestContext.authorizer` when a JWT let the
/// request through (none for open routes).
fn authorize(guard: &Guard, headers: &HeaderMap) -> Result<Option<Value>, Denied> {
    let (verifier, header, scopes) = match guard {
        Guard::Open => return Ok(None),
        Guard::Iam => {
            return Err(Denied::Forbidden(
                "AWS_IAM routes cannot be called locally".to_owned(),
            ))
        }
        Guard::Jwt {
            verifier,
            header,
            scopes,
        } => (verifier, header, scopes),
    };
    let token = headers
        .get(header)
        .and_then(|value| value.to_str().ok())
        .and_then(jwt::bearer_token)
        .ok_or_else(|| Denied::Unauthorized(jwt::Rejection::Missing.to_string()))?;
    let claims = verifier
        .verify(token, Utc::now().timestamp())
        .map_err(|rejection| Denied::Unauthorized(rejection.to_string()))?;
    let granted = jwt::token_scopes(&claims);
    if !scopes.is_empty() && !scopes.iter().any(|scope| granted.contains(scope)) {
        return Err(Denied::Forbidden(format!(
            "token scopes {granted:?}, route needs one of {scopes:?}"
        )));
    }
    Ok(Some(jwt::authorizer_context(&claims)))
}

/// A JSON response with `body`.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Vec<u8>> {
    let mut response = Response::new(body.to_string().into_bytes());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// API Gateway's own answers: `{"message": "..."}`.
pub fn gateway_error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    json_response(status, &json!({ "message": message }))
}

fn too_large(method: &str, path_and_query: &str) -> Response<Vec<u8>> {
    println!("[gateway] {method} {path_and_query} -> 413 (body over {BODY_LIMIT} bytes)");
    gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Answers with the event it was given, so tests see what a function would receive.
    struct Echo;

    impl Invoker for Echo {
        async fn invoke(&self, _route: &HttpRoute, event: Value) -> Response<Vec<u8>> {
            json_response(StatusCode::OK, &event)
        }
    }

    const TEMPLATE: &str = r#"
Parameters:
  JwtIssuer: { Type: String }
  JwtAudience: { Type: String }
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration: { issuer: !Ref JwtIssuer, audience: [!Ref JwtAudience] }
  Fn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: members } }
    Properties:
      Events:
        Scoped: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: "/scoped/{id}", Method: GET, Auth: { AuthorizationScopes: [s/read, s/admin] } } }
        AnyToken: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /any, Method: GET } }
        Public: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /public, Method: GET, Auth: { Authorizer: NONE } } }
        Iam: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /iam, Method: GET, Auth: { Authorizer: AWS_IAM } } }
"#;

    fn key() -> Arc<SigningKey> {
        static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
        Arc::clone(KEY.get_or_init(|| Arc::new(SigningKey::generate().expect("key"))))
    }

    fn gateway() -> Gateway<Echo> {
        let template = Template::parse(TEMPLATE).expect("template");
        Gateway::new(&template, key(), Echo).expect("gateway")
    }

    fn body(response: &Response<Vec<u8>>) -> Value {
        serde_json::from_slice(response.body()).expect("JSON body")
    }

    async fn mint(gateway: &Gateway<Echo>, scopes: &[&str]) -> String {
        let request = json!({"sub": "caller-1", "scopes": scopes, "claims": {"tenant": "t1"}});
        let response = gateway
            .call(
                "POST",
                TOKENS_PATH,
                &HeaderMap::new(),
                request.to_string().as_bytes(),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", body(&response));
        body(&response)["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        headers
    }

    #[tokio::test]
    async fn a_token_with_a_route_scope_reaches_the_function_with_its_claims_and_scopes() {
        let gateway = gateway();
        let token = mint(&gateway, &["s/admin", "other"]).await;
        let response = gateway
            .call("GET", "/scoped/42", &bearer(&token), b"")
            .await;
        assert_eq!(response.status(), 200);
        let event = body(&response);
        let jwt = &event["requestContext"]["authorizer"]["jwt"];
        assert_eq!(jwt["claims"]["sub"], "caller-1");
        assert_eq!(jwt["claims"]["tenant"], "t1");
        assert_eq!(jwt["claims"]["iss"], LOCAL_ISSUER);
        assert_eq!(jwt["claims"]["aud"], LOCAL_ISSUER);
        assert!(jwt["claims"]["exp"].is_string());
        assert_eq!(jwt["scopes"], json!(["s/admin", "other"]));
        assert_eq!(event["pathParameters"]["id"], "42");
        // A route without scopes takes any valid token; a bare token (no "Bearer") works too.
        let mut bare = HeaderMap::new();
        bare.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&mint(&gateway, &[]).await).expect("header"),
        );
        assert_eq!(gateway.call("GET", "/any", &bare, b"").await.status(), 200);
    }

    #[tokio::test]
    async fn missing_or_invalid_tokens_get_401_and_missing_scopes_get_403() {
        let gateway = gateway();
        let unauthorized = json!({"message": "Unauthorized"});
        let forbidden = json!({"message": "Forbidden"});
        let none = gateway
            .call("GET", "/scoped/1", &HeaderMap::new(), b"")
            .await;
        assert_eq!(
            (none.status().as_u16(), body(&none)),
            (401, unauthorized.clone())
        );
        let junk = gateway.call("GET", "/any", &bearer("not.a.jwt"), b"").await;
        assert_eq!(
            (junk.status().as_u16(), body(&junk)),
            (401, unauthorized.clone())
        );
        let now = Utc::now().timestamp();
        let expired = key().sign(&json!({
            "iss": LOCAL_ISSUER, "aud": LOCAL_ISSUER, "sub": "x", "iat": now - 120, "exp": now - 60, "scope": "s/read",
        }));
        let response = gateway
            .call("GET", "/scoped/1", &bearer(&expired), b"")
            .await;
        assert_eq!(response.status(), 401);

        let wrong_scope = mint(&gateway, &["s/write"]).await;
        let response = gateway
            .call("GET", "/scoped/1", &bearer(&wrong_scope), b"")
            .await;
        assert_eq!(
            (response.status().as_u16(), body(&response)),
            (403, forbidden.clone())
        );
        let iam = gateway
            .call("GET", "/iam", &bearer(&wrong_scope), b"")
            .await;
        assert_eq!((iam.status().as_u16(), body(&iam)), (403, forbidden));
    }

    #[tokio::test]
    async fn public_routes_ignore_tokens_and_pass_no_authorizer() {
        let gateway = gateway();
        for headers in [HeaderMap::new(), bearer("garbage")] {
            let response = gateway.call("GET", "/public", &headers, b"").await;
            assert_eq!(response.status(), 200);
            assert!(body(&response)["requestContext"]
                .get("authorizer")
                .is_none());
        }
    }

    #[tokio::test]
    async fn the_issuer_publishes_its_jwks_and_refuses_bad_token_requests() {
        let gateway = gateway();
        let jwks = gateway.call("GET", JWKS_PATH, &HeaderMap::new(), b"").await;
        assert_eq!(jwks.status(), 200);
        assert_eq!(body(&jwks)["keys"][0]["kid"], key().public_jwk().kid);
        let refused = gateway
            .call("POST", TOKENS_PATH, &HeaderMap::new(), br#"{"sub":"x"}"#)
            .await;
        assert_eq!(refused.status(), 400);
        assert_eq!(body(&refused)["error"]["code"], "invalid_token_request");
        let wrong_method = gateway
            .call("GET", TOKENS_PATH, &HeaderMap::new(), b"")
            .await;
        assert_eq!(wrong_method.status(), 405);
    }

    #[tokio::test]
    async fn the_runner_serves_the_api_description_as_yaml() {
        let gateway = gateway();
        let response = gateway
            .call("GET", OPENAPI_PATH, &HeaderMap::new(), b"")
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/yaml"
        );
        let document: serde_yaml::Value =
            serde_yaml::from_slice(response.body()).expect("the description is YAML");
        assert_eq!(document["openapi"].as_str(), Some("3.1.0"));
        assert!(document["paths"]["/v1/members/{member_id}/accruals"]["post"].is_mapping());
        let wrong_method = gateway
            .call("POST", OPENAPI_PATH, &HeaderMap::new(), b"")
            .await;
        assert_eq!(wrong_method.status(), 405);
    }

    #[test]
    fn an_unresolvable_issuer_stops_the_gateway_from_starting() {
        let template =
            Template::parse(&TEMPLATE.replace("!Ref JwtIssuer", "!Ref Missing")).expect("template");
        assert!(
            matches!(Gateway::new(&template, key(), Echo), Err(LocalError::Template(m)) if m.contains("Missing"))
        );
    }
}
