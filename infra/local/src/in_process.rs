//! The in-process [`Invoker`]: each route's handler called directly, on one shared [`App`], with
//! the request `lambda_http` makes of the gateway's event. Used by `loyalty-local serve` and the
//! tests; the runner uses the real binaries instead.

use std::collections::HashMap;
use std::sync::Arc;

use http::{Response, StatusCode};
use lambda_http::Body;
use loyalty_core::ports::Store;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_http::{Function, DEFAULT_MEMBER_ID_CLAIM, MEMBER_ID_CLAIM_ENV};
use serde_json::Value;

use crate::error::LocalError;
use crate::event::to_lambda_request;
use crate::gateway::{gateway_error, Gateway, Invoker};
use crate::jwt::SigningKey;
use crate::template::{HttpRoute, Template};
use crate::wiring::Resolver;

/// The template's HTTP API with its handlers in-process.
pub type LocalApi<S = DynamoStore> = Gateway<InProcess<S>>;

/// Calls the handler of the function behind each route.
pub struct InProcess<S: Store> {
    app: Arc<App<S>>,
    /// logical id → (handler, the claim naming a member token's member)
    functions: HashMap<String, (Function, String)>,
}

impl<S: Store + Send + Sync> InProcess<S> {
    /// Fails if a function in the template names a binary this workspace does not build, so a
    /// renamed crate shows up here rather than as 404s.
    pub fn new(template: &Template, app: Arc<App<S>>) -> Result<Self, LocalError> {
        let resolver = Resolver {
            parameters: template.parameters.clone(),
            ..Resolver::default()
        };
        let mut functions = HashMap::new();
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
            // What the deployed function reads from its environment (`MemberIdClaim`), taken
            // from the template here, since one process serves every function.
            let claim = match function
                .environment
                .iter()
                .find(|(name, _)| name == MEMBER_ID_CLAIM_ENV)
            {
                Some((_, value)) => resolver.resolve(value).map_err(|e| {
                    LocalError::Template(format!(
                        "{}: {MEMBER_ID_CLAIM_ENV}: {e}",
                        function.logical_id
                    ))
                })?,
                None => DEFAULT_MEMBER_ID_CLAIM.to_owned(),
            };
            functions.insert(function.logical_id.clone(), (handler, claim));
        }
        Ok(Self { app, functions })
    }
}

impl<S: Store + Send + Sync> Gateway<InProcess<S>> {
    /// The gateway over `template`'s handlers in-process, its authorizers trusting `key`.
    pub fn in_process(
        template: &Template,
        app: Arc<App<S>>,
        key: Arc<SigningKey>,
    ) -> Result<Self, LocalError> {
        Gateway::new(template, key, InProcess::new(template, app)?)
    }
}

impl<S: Store + Send + Sync> Invoker for InProcess<S> {
    async fn invoke(&self, route: &HttpRoute, event: Value) -> Response<Vec<u8>> {
        let request = match to_lambda_request(&event) {
            Ok(request) => request,
            Err(error) => {
                println!("[{}] cannot build the request: {error}", route.function);
                return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        let (function, claim) = self.functions[&route.function].clone();
        // A separate task, so a panicking handler becomes a 500 like a crashed Lambda invocation
        // instead of taking the connection down.
        let app = Arc::clone(&self.app);
        let invocation = tokio::spawn(async move {
            loyalty_http::handle_with_claim(&app, function, &claim, request).await
        })
        .await;
        match invocation {
            Ok(response) => into_http(response),
            Err(error) => {
                println!("[{}] handler failed: {error}", route.function);
                gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}

fn into_http(response: lambda_http::Response<Body>) -> Response<Vec<u8>> {
    response.map(|body| match body {
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        other => other.as_ref().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::BODY_LIMIT;
    use http::{HeaderMap, HeaderValue};
    use loyalty_core::clock::SystemClock;
    use loyalty_core::memory::MemoryStore;
    use loyalty_core::service::AppConfig;
    use std::sync::OnceLock;

    const REAL_TEMPLATE: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"));

    fn key() -> Arc<SigningKey> {
        static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
        Arc::clone(KEY.get_or_init(|| Arc::new(SigningKey::generate().expect("key"))))
    }

    fn app() -> Arc<App<MemoryStore>> {
        Arc::new(App::new(
            MemoryStore::new(),
            Arc::new(SystemClock),
            AppConfig::default(),
        ))
    }

    fn api() -> LocalApi<MemoryStore> {
        let template = Template::parse(REAL_TEMPLATE).expect("template");
        LocalApi::in_process(&template, app(), key()).expect("api")
    }

    fn json(response: &Response<Vec<u8>>) -> Value {
        serde_json::from_slice(response.body()).expect("JSON body")
    }

    /// JSON headers with a POS token minted by the gateway's own issuer.
    fn pos_headers(
        api: &LocalApi<MemoryStore>,
        pairs: &[(&'static str, &'static str)],
    ) -> HeaderMap {
        let minted = api
            .issuer()
            .mint(
                br#"{"sub":"till-1","scopes":["loyalty/pos"]}"#,
                chrono::Utc::now().timestamp(),
            )
            .expect("token");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!(
                "Bearer {}",
                minted["access_token"].as_str().expect("token")
            ))
            .expect("header"),
        );
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[tokio::test]
    async fn routes_through_the_template_to_the_handlers() {
        let api = api();
        let headers = pos_headers(&api, &[]);
        let created = api
            .call("POST", "/v1/members", &headers, br#"{"member_id":"alice"}"#)
            .await;
        assert_eq!(created.status(), 201, "{}", json(&created));
        assert!(created.headers().contains_key("apigw-requestid"));
        let member = api.call("GET", "/v1/members/alice", &headers, b"").await;
        assert_eq!(member.status(), 200);
        assert_eq!(json(&member)["member_id"], "alice");

        let keyed = pos_headers(&api, &[("idempotency-key", "k1")]);
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
        // The public routes need no token at all.
        let program = api.call("GET", "/v1/program", &HeaderMap::new(), b"").await;
        assert_ne!(program.status(), 401);
    }

    #[tokio::test]
    async fn gateway_answers_for_unknown_routes_and_huge_bodies() {
        let api = api();
        let headers = HeaderMap::new();
        for (method, path) in [
            ("GET", "/nope"),
            ("DELETE", "/v1/members/alice"),
            ("GET", "/v1/members/"),
            ("GET", "/_local/nope"),
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

    #[tokio::test]
    async fn member_tokens_are_read_through_the_stacks_member_id_claim() {
        let mut template = Template::parse(REAL_TEMPLATE).expect("template");
        template
            .parameters
            .insert("MemberIdClaim".to_owned(), "custom:member_id".to_owned());
        let api = LocalApi::in_process(&template, app(), key()).expect("api");
        let enrolled = api
            .call(
                "POST",
                "/v1/members",
                &pos_headers(&api, &[]),
                br#"{"member_id":"alice"}"#,
            )
            .await;
        assert_eq!(enrolled.status(), 201, "{}", json(&enrolled));
        let member_app = |member: &str| {
            let request = serde_json::json!({
                "sub": "app-user-7", "scopes": ["loyalty/member"], "claims": {"custom:member_id": member},
            });
            let minted = api
                .issuer()
                .mint(
                    request.to_string().as_bytes(),
                    chrono::Utc::now().timestamp(),
                )
                .expect("token");
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!(
                    "Bearer {}",
                    minted["access_token"].as_str().expect("token")
                ))
                .expect("header"),
            );
            headers
        };
        let own = api
            .call("GET", "/v1/members/alice", &member_app("alice"), b"")
            .await;
        assert_eq!(own.status(), 200, "{}", json(&own));
        let other = api
            .call("GET", "/v1/members/alice", &member_app("bob"), b"")
            .await;
        assert_eq!(other.status(), 403);
        assert_eq!(json(&other)["error"]["code"], "forbidden");
    }

    #[test]
    fn unknown_binaries_are_refused() {
        let mut template = Template::parse(REAL_TEMPLATE).expect("template");
        template.functions[0].binary = "nope".to_owned();
        let error = InProcess::new(&template, app()).err().expect("refused");
        assert!(
            matches!(error, LocalError::UnknownFunction { ref binary, .. } if binary == "nope")
        );
    }
}
