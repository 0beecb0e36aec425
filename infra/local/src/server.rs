//! The local stand-in for API Gateway: matches a request against the template's HTTP API
//! routes, invokes the function's handler in-process with a v2 event, and answers the way API
//! Gateway does when nothing matches or the function fails.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use loyalty_core::ports::Store;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_http::Function;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::LocalError;
use crate::gateway::{to_apigw_v2_request, BODY_LIMIT};
use crate::template::{HttpRoute, Template};

/// How long in-flight requests may run after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Every HTTP API route of a template, served by one shared [`App`].
pub struct LocalApi<S: Store = DynamoStore> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    routes: Vec<(HttpRoute, Function)>,
    app: Arc<App<S>>,
}

impl<S: Store> Clone for LocalApi<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store + Send + Sync> LocalApi<S> {
    /// Fails if a function in the template names a binary this workspace does not build, so a
    /// renamed crate shows up here rather than as 404s.
    pub fn new(template: &Template, app: Arc<App<S>>) -> Result<Self, LocalError> {
        let mut routes = Vec::new();
        // Functions reached only by queues or schedules are the process runner's business.
        for function in template
            .functions
            .iter()
            .filter(|f| !f.http_routes.is_empty())
        {
            let handler = Function::from_binary(&function.binary).ok_or_else(|| {
                LocalError::UnknownFunction {
                    logical_id: function.logical_id.clone(),
                    binary: function.binary.clone(),
                }
            })?;
            routes.extend(
                function
                    .http_routes
                    .iter()
                    .map(|route| (route.clone(), handler)),
            );
        }
        Ok(Self {
            inner: Arc::new(Inner { routes, app }),
        })
    }

    pub fn routes(&self) -> impl Iterator<Item = &HttpRoute> {
        self.inner.routes.iter().map(|(route, _)| route)
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
                    let api = self.clone();
                    let mut stopped = stopped.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let api = api.clone();
                            async move { Ok::<_, std::convert::Infallible>(api.serve_http(request).await) }
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
                    eprintln!(
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
        let Some((route, function, params)) = self.resolve(method, raw_path) else {
            eprintln!("[gateway] {method} {path_and_query} -> 404 (no route)");
            return gateway_error(StatusCode::NOT_FOUND, "Not Found");
        };
        let request =
            match to_apigw_v2_request(route, params, method, raw_path, raw_query, headers, body) {
                Ok(request) => request,
                Err(error) => {
                    eprintln!(
                        "[{}] {method} {path_and_query} -> 500: {error}",
                        route.function
                    );
                    return gateway_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                    );
                }
            };
        let request_id = match request.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
            _ => None,
        };
        // A separate task, so a panicking handler becomes a 500 like a crashed Lambda invocation
        // instead of taking the connection down.
        let app = Arc::clone(&self.inner.app);
        let invocation =
            tokio::spawn(async move { loyalty_http::handle(&app, function, request).await }).await;
        let mut response = match invocation {
            Ok(response) => into_http(response),
            Err(error) => {
                eprintln!("[{}] handler failed: {error}", route.function);
                gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        };
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            response.headers_mut().insert("apigw-requestid", id);
        }
        eprintln!(
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
    ) -> Option<(
        &HttpRoute,
        Function,
        std::collections::HashMap<String, String>,
    )> {
        self.inner
            .routes
            .iter()
            .filter_map(|(route, function)| {
                route
                    .matches(method, path)
                    .map(|params| (route, *function, params))
            })
            .max_by_key(|(route, _, _)| route.specificity())
    }
}

fn into_http(response: lambda_http::Response<Body>) -> Response<Vec<u8>> {
    response.map(|body| match body {
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        other => other.as_ref().to_vec(),
    })
}

fn gateway_error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    let mut response = Response::new(
        serde_json::json!({ "message": message })
            .to_string()
            .into_bytes(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn too_large(method: &str, path_and_query: &str) -> Response<Vec<u8>> {
    eprintln!("[gateway] {method} {path_and_query} -> 413 (body over {BODY_LIMIT} bytes)");
    gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
}

#[cfg(test)]
mod tests {
    use super::*;
    use loyalty_core::clock::SystemClock;
    use loyalty_core::memory::MemoryStore;
    use loyalty_core::service::AppConfig;
    use serde_json::Value;

    const REAL_TEMPLATE: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"));

    fn api() -> LocalApi<MemoryStore> {
        let template = Template::parse(REAL_TEMPLATE).expect("template");
        let app = App::new(
            MemoryStore::new(),
            Arc::new(SystemClock),
            AppConfig::default(),
        );
        LocalApi::new(&template, Arc::new(app)).expect("api")
    }

    fn json(response: &Response<Vec<u8>>) -> Value {
        serde_json::from_slice(response.body()).expect("JSON body")
    }

    fn json_headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[tokio::test]
    async fn routes_through_the_template_to_the_handlers() {
        let api = api();
        let headers = json_headers(&[]);
        let created = api
            .call("POST", "/v1/members", &headers, br#"{"member_id":"alice"}"#)
            .await;
        assert_eq!(created.status(), 201, "{}", json(&created));
        assert!(created.headers().contains_key("apigw-requestid"));
        let member = api.call("GET", "/v1/members/alice", &headers, b"").await;
        assert_eq!(member.status(), 200);
        assert_eq!(json(&member)["member_id"], "alice");

        let keyed = json_headers(&[("idempotency-key", "k1")]);
        let body =
            br#"{"kind":"purchase","order_id":"o1","amount":{"minor":2599,"currency":"USD"}}"#;
        let first = api
            .call("POST", "/v1/members/alice/accruals", &keyed, body)
            .await;
        assert_eq!(first.status(), 201, "{}", json(&first));
        let again = api
            .call("POST", "/v1/members/alice/accruals", &keyed, body)
            .await;
        assert_eq!(again.status(), 201);
        assert_eq!(
            again
                .headers()
                .get("idempotent-replayed")
                .map(HeaderValue::as_bytes),
            Some(&b"true"[..])
        );

        let unknown_query = api
            .call(
                "GET",
                "/v1/members/alice/ledger?limit=2&bogus=1",
                &headers,
                b"",
            )
            .await;
        assert_eq!(unknown_query.status(), 400);
        let ledger = api
            .call("GET", "/v1/members/alice/ledger?limit=2", &headers, b"")
            .await;
        assert_eq!(ledger.status(), 200);
    }

    #[tokio::test]
    async fn gateway_answers_for_unknown_routes_and_huge_bodies() {
        let api = api();
        let headers = HeaderMap::new();
        for (method, path) in [
            ("GET", "/nope"),
            ("DELETE", "/v1/members/alice"),
            ("GET", "/v1/members/"),
        ] {
            let response = api.call(method, path, &headers, b"").await;
            assert_eq!(response.status(), 404, "{method} {path}");
            assert_eq!(json(&response), serde_json::json!({"message": "Not Found"}));
        }
        let huge = vec![b' '; BODY_LIMIT + 1];
        let response = api.call("POST", "/v1/members", &headers, &huge).await;
        assert_eq!(response.status(), 413);
        assert_eq!(
            json(&response),
            serde_json::json!({"message": "Request Entity Too Large"})
        );
    }

    #[test]
    fn unknown_binaries_are_refused() {
        let mut template = Template::parse(REAL_TEMPLATE).expect("template");
        template.functions[0].binary = "nope".to_owned();
        let app = App::new(
            MemoryStore::new(),
            Arc::new(SystemClock),
            AppConfig::default(),
        );
        let error = LocalApi::new(&template, Arc::new(app))
            .err()
            .expect("refused");
        assert!(
            matches!(error, LocalError::UnknownFunction { ref binary, .. } if binary == "nope")
        );
    }
}
