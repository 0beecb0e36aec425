//! The Stripe adapter of the payment-provider port: one off-session, confirmed PaymentIntent per
//! attempt, form-encoded, with an `Idempotency-Key` header and the attempt's charge id and number
//! in its metadata so that the attempt can be found again after a crash. Locally and in tests it
//! speaks to `localstripe`, which ignores idempotency keys and has no search API; there the
//! look-up falls back to listing PaymentIntents.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use loyalty_core::subscriptions::payments::{
    ChargeRequest, Payment, PaymentError, PaymentOutcome, PaymentProvider,
};
use serde_json::Value;

pub const API_BASE_ENV: &str = "STRIPE_API_BASE";
pub const SECRET_KEY_ENV: &str = "STRIPE_SECRET_KEY";
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// PaymentIntents listed per page when searching is not available.
const LIST_PAGE: usize = 100;
/// Pages listed at most before a look-up gives up (and the attempt stays pending).
const MAX_LIST_PAGES: usize = 50;

pub struct StripePayments {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    secret: String,
}

impl std::fmt::Debug for StripePayments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripePayments")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn encode(pairs: &[(&str, String)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        form.append_pair(name, value);
    }
    form.finish()
}

impl StripePayments {
    pub fn new(base: impl Into<String>, secret: impl Into<String>) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            base: base.into().trim_end_matches('/').to_owned(),
            secret: secret.into(),
        })
    }

    /// `STRIPE_API_BASE` (default the real API) and `STRIPE_SECRET_KEY`.
    /// The provider a function should use: Stripe when a secret key is configured; otherwise
    /// none, with a warning (the app then answers `payment_provider_unavailable`), so a
    /// deployment without payments still runs everything else.
    pub fn optional_from_env() -> Option<Arc<dyn PaymentProvider>> {
        match Self::from_env() {
            Ok(payments) => Some(Arc::new(payments)),
            Err(error) => {
                tracing::warn!(%error, "no payment provider; subscriptions cannot be charged");
                None
            }
        }
    }

    pub fn from_env() -> Result<Self, String> {
        let base = std::env::var(API_BASE_ENV).unwrap_or_else(|_| DEFAULT_API_BASE.to_owned());
        let secret = std::env::var(SECRET_KEY_ENV)
            .ok()
            .filter(|key| !key.trim().is_empty())
            .ok_or_else(|| format!("{SECRET_KEY_ENV} is not set"))?;
        Self::new(base, secret)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, Value), PaymentError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.secret),
            );
        if form.is_some() {
            request = request.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|e| PaymentError(format!("request: {e}")))?;
        let response = tokio_timeout(self.client.request(request)).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| PaymentError(format!("reading the response: {e}")))?
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, json))
    }

    fn payment_of(intent: &Value) -> Result<Option<Payment>, PaymentError> {
        let id = intent["id"].as_str().unwrap_or_default().to_owned();
        let outcome = match intent["status"].as_str() {
            Some("succeeded") => PaymentOutcome::Succeeded,
            Some("requires_payment_method") | Some("canceled") => PaymentOutcome::Declined {
                code: intent["last_payment_error"]["decline_code"]
                    .as_str()
                    .or(intent["last_payment_error"]["code"].as_str())
                    .unwrap_or("payment_failed")
                    .to_owned(),
            },
            Some("requires_action") => PaymentOutcome::Declined {
                code: "authentication_required".into(),
            },
            // processing, requires_capture, requires_confirmation: not settled yet.
            other => {
                return Err(PaymentError(format!(
                    "PaymentIntent {id} is {}",
                    other.unwrap_or("unknown")
                )))
            }
        };
        Ok(Some(Payment { id, outcome }))
    }

    fn matches(intent: &Value, charge_id: &str, attempt: u32) -> bool {
        intent["metadata"]["charge_id"].as_str() == Some(charge_id)
            && intent["metadata"]["attempt"].as_str() == Some(attempt.to_string().as_str())
    }

    async fn list_find(
        &self,
        charge_id: &str,
        attempt: u32,
    ) -> Result<Option<Payment>, PaymentError> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut query = vec![("limit", LIST_PAGE.to_string())];
            if let Some(after) = &after {
                query.push(("starting_after", after.clone()));
            }
            let (status, page) = self
                .call(
                    Method::GET,
                    &format!("/v1/payment_intents?{}", encode(&query)),
                    None,
                    None,
                )
                .await?;
            if !status.is_success() {
                return Err(PaymentError(format!(
                    "listing PaymentIntents: {status} {page}"
                )));
            }
            let data = page["data"].as_array().cloned().unwrap_or_default();
            if let Some(intent) = data.iter().find(|i| Self::matches(i, charge_id, attempt)) {
                return Self::payment_of(intent);
            }
            if page["has_more"].as_bool() != Some(true) {
                return Ok(None);
            }
            after = data
                .last()
                .and_then(|i| i["id"].as_str())
                .map(str::to_owned);
            if after.is_none() {
                return Ok(None);
            }
        }
        Err(PaymentError(
            "too many PaymentIntents to list; look-up abandoned".into(),
        ))
    }
}

async fn tokio_timeout<F: std::future::Future<Output = Result<T, E>>, T, E: std::fmt::Display>(
    call: F,
) -> Result<T, PaymentError> {
    match tokio::time::timeout(std::time::Duration::from_secs(20), call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(PaymentError(format!("calling Stripe: {e}"))),
        Err(_) => Err(PaymentError("Stripe did not answer in time".into())),
    }
}

#[async_trait]
impl PaymentProvider for StripePayments {
    async fn charge(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        let form = encode(&[
            ("amount", request.amount.minor.to_string()),
            (
                "currency",
                request.amount.currency.as_str().to_ascii_lowercase(),
            ),
            ("payment_method", request.payment_method.clone()),
            ("payment_method_types[]", "card".to_owned()),
            ("confirm", "true".to_owned()),
            ("off_session", "true".to_owned()),
            ("metadata[charge_id]", request.charge_id.clone()),
            ("metadata[attempt]", request.attempt.to_string()),
            ("metadata[member_id]", request.member_id.clone()),
        ]);
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/payment_intents",
                Some(form),
                Some(&request.idempotency_key),
            )
            .await?;
        if status.is_success() {
            return Self::payment_of(&body)?
                .ok_or_else(|| PaymentError("empty PaymentIntent".into()));
        }
        if status == StatusCode::PAYMENT_REQUIRED {
            let error = &body["error"];
            let code = error["decline_code"]
                .as_str()
                .or(error["code"].as_str())
                .unwrap_or("card_declined")
                .to_owned();
            let id = error["payment_intent"]["id"]
                .as_str()
                .or(error["charge"].as_str())
                .unwrap_or_default()
                .to_owned();
            return Ok(Payment {
                id,
                outcome: PaymentOutcome::Declined { code },
            });
        }
        if status == StatusCode::BAD_REQUEST && body["error"]["type"] == "card_error" {
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or("card_error")
                .to_owned();
            return Ok(Payment {
                id: String::new(),
                outcome: PaymentOutcome::Declined { code },
            });
        }
        // A payment method the provider does not know or will not charge (the one field the
        // client chose) is the customer's to fix, like a decline, not an outage. A request refused
        // over any other parameter is ours, and stays an error.
        let error = &body["error"];
        if matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND)
            && error["type"] == "invalid_request_error"
            && error["param"]
                .as_str()
                .is_none_or(|p| p == "payment_method")
        {
            let code = error["code"]
                .as_str()
                .unwrap_or("invalid_payment_method")
                .to_owned();
            return Ok(Payment {
                id: String::new(),
                outcome: PaymentOutcome::Declined { code },
            });
        }
        Err(PaymentError(format!(
            "creating a PaymentIntent: {status} {}",
            error["message"]
        )))
    }

    async fn find(&self, charge_id: &str, attempt: u32) -> Result<Option<Payment>, PaymentError> {
        let query =
            format!("metadata['charge_id']:'{charge_id}' AND metadata['attempt']:'{attempt}'");
        let (status, page) = self
            .call(
                Method::GET,
                &format!("/v1/payment_intents/search?{}", encode(&[("query", query)])),
                None,
                None,
            )
            .await?;
        if status.is_success() {
            let data = page["data"].as_array().cloned().unwrap_or_default();
            return match data.iter().find(|i| Self::matches(i, charge_id, attempt)) {
                Some(intent) => Self::payment_of(intent),
                // Search is eventually consistent on Stripe: an empty answer falls through to a
                // listing, which is not.
                None => self.list_find(charge_id, attempt).await,
            };
        }
        // localstripe has no search endpoint.
        self.list_find(charge_id, attempt).await
    }
}
