//! The Stripe adapter of the payment-provider port, following Stripe's saved-card flow: a
//! Customer per member (created with an idempotency key), the first PaymentIntent confirmed on
//! session with `setup_future_usage=off_session` so the card is kept, renewals confirmed
//! `off_session` with the customer and the saved card. Every POST carries an `Idempotency-Key`;
//! every PaymentIntent carries the attempt's charge id and number in its metadata so an attempt
//! can be found again after a crash, by listing the customer's PaymentIntents.
//!
//! Errors are sorted by what a retry can do (Stripe's error types): card errors are declines;
//! rate limits, 5xx and timeouts are retried here with backoff within a time budget and then
//! reported as [`PaymentError`] (the attempt stays pending and is looked up later); invalid
//! requests and authentication errors are [`PaymentOutcome::Rejected`]: final.
//!
//! Locally and in tests it also speaks to `localstripe`, which refuses `setup_future_usage` and
//! the `customer` filter of the PaymentIntent list; [`Dialect::Localstripe`] leaves those out.

pub mod config;
pub mod secrets;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use loyalty_core::subscriptions::payments::{
    CardSaved, ChargeRequest, CustomerRequest, Payment, PaymentError, PaymentOutcome,
    PaymentProvider, Presence,
};
use loyalty_core::subscriptions::provider_event::{
    attempt_of, verify_and_read, EventError, PaymentChange, ProviderEvent, StripeEventBody,
};
use serde_json::Value;

pub use config::{Dialect, StripeConfig};
pub use loyalty_core::subscriptions::signature::{sign, verify, SIGNATURE_HEADER};

/// PaymentIntents listed per page in a look-up.
const LIST_PAGE: usize = 100;
/// Pages of one customer's PaymentIntents listed at most (300 payments: 25 years of monthly
/// periods with retries).
const MAX_LIST_PAGES: usize = 3;
/// localstripe cannot filter by customer and lists every test's PaymentIntents.
const MAX_LOCALSTRIPE_LIST_PAGES: usize = 50;

pub struct StripePayments {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    config: StripeConfig,
}

impl std::fmt::Debug for StripePayments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripePayments")
            .field("base", &self.config.base)
            .field("dialect", &self.config.dialect)
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

/// One answer from Stripe.
struct Answer {
    status: StatusCode,
    body: Value,
}

/// What a failed try says about trying again.
enum Failure {
    /// Worth another try (a timeout, a connection error, 429, 5xx).
    Transient(String),
}

impl StripePayments {
    pub fn new(config: StripeConfig) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            config,
        })
    }

    /// One try: the request with the try's timeout.
    async fn try_once(
        &self,
        method: &Method,
        path: &str,
        form: Option<&str>,
        idempotency_key: Option<&str>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.config.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.config.secret_key),
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
            .body(Full::new(Bytes::from(form.unwrap_or_default().to_owned())))
            .map_err(|e| Failure::Transient(format!("request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Failure::Transient(format!("calling Stripe: {e}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Transient(format!("reading the response: {e}")))?
                .to_bytes();
            Ok(Answer {
                status,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            })
        };
        let answer = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Failure::Transient("Stripe did not answer in time".into()))??;
        if answer.status == StatusCode::TOO_MANY_REQUESTS || answer.status.is_server_error() {
            return Err(Failure::Transient(format!(
                "Stripe answered {} {}",
                answer.status, answer.body["error"]["message"]
            )));
        }
        Ok(answer)
    }

    /// The request, retried with backoff on transient failures while the call's time budget
    /// lasts. A POST is retried only with an idempotency key, so a retry cannot charge twice.
    async fn call(
        &self,
        method: Method,
        path: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, PaymentError> {
        let started = Instant::now();
        let budget = self.config.call_budget;
        let repeatable = method == Method::GET || idempotency_key.is_some();
        let mut backoff = self.config.first_backoff;
        loop {
            let left = budget.saturating_sub(started.elapsed());
            let timeout = self.config.try_timeout.min(left);
            let Failure::Transient(reason) = match self
                .try_once(&method, path, form.as_deref(), idempotency_key, timeout)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            let left = budget.saturating_sub(started.elapsed());
            if !repeatable || left <= backoff + self.config.min_try {
                tracing::warn!(%reason, path, "Stripe call failed; no time left to retry");
                return Err(PaymentError(reason));
            }
            tracing::info!(%reason, path, ?backoff, "Stripe call failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    fn payment_of(
        &self,
        intent: &Value,
        presence: Option<Presence>,
    ) -> Result<Payment, PaymentError> {
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
            // Off session nobody can authenticate: Stripe answers that as a decline already,
            // and anything else that asks for action is one too.
            Some("requires_action") if presence == Some(Presence::OffSession) => {
                PaymentOutcome::Declined {
                    code: "authentication_required".into(),
                }
            }
            Some("requires_action") => PaymentOutcome::RequiresAction {
                client_secret: intent["client_secret"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            },
            // processing, requires_capture, requires_confirmation: not settled yet.
            other => {
                return Err(PaymentError(format!(
                    "PaymentIntent {id} is {}",
                    other.unwrap_or("unknown")
                )))
            }
        };
        Ok(Payment { id, outcome })
    }

    fn matches(intent: &Value, charge_id: &str, attempt: u32) -> bool {
        intent["metadata"]["charge_id"].as_str() == Some(charge_id)
            && intent["metadata"]["attempt"].as_str() == Some(attempt.to_string().as_str())
    }

    /// The form of a PaymentIntent for one attempt, in Stripe's saved-card shape.
    pub fn intent_form(&self, request: &ChargeRequest) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("amount", request.amount.minor.to_string()),
            (
                "currency",
                request.amount.currency.as_str().to_ascii_lowercase(),
            ),
            ("customer", request.customer.clone()),
            ("payment_method", request.payment_method.clone()),
            ("payment_method_types[]", "card".to_owned()),
            ("confirm", "true".to_owned()),
            ("metadata[charge_id]", request.charge_id.clone()),
            ("metadata[attempt]", request.attempt.to_string()),
            ("metadata[member_id]", request.member_id.clone()),
        ];
        match request.presence {
            Presence::OnSession => {
                if self.config.dialect == Dialect::Stripe {
                    form.push(("setup_future_usage", "off_session".to_owned()));
                }
            }
            Presence::OffSession => form.push(("off_session", "true".to_owned())),
        }
        form
    }

    /// An error answer, sorted: a decline the customer can fix, or a request Stripe refuses.
    fn refusal(status: StatusCode, body: &Value) -> Result<Payment, PaymentError> {
        let error = &body["error"];
        let error_type = error["type"].as_str().unwrap_or_default();
        let code = error["decline_code"]
            .as_str()
            .or(error["code"].as_str())
            .map(str::to_owned);
        let id = error["payment_intent"]["id"]
            .as_str()
            .or(error["charge"].as_str())
            .unwrap_or_default()
            .to_owned();
        if status == StatusCode::PAYMENT_REQUIRED || error_type == "card_error" {
            return Ok(Payment {
                id,
                outcome: PaymentOutcome::Declined {
                    code: code.unwrap_or_else(|| "card_declined".into()),
                },
            });
        }
        // A payment method Stripe does not know or will not use (the one field the member
        // chose) is the member's to fix, like a decline. A request refused over anything else
        // is ours, and final.
        if matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND)
            && error_type == "invalid_request_error"
            && error["param"]
                .as_str()
                .is_none_or(|p| p == "payment_method")
        {
            return Ok(Payment {
                id,
                outcome: PaymentOutcome::Declined {
                    code: code.unwrap_or_else(|| "invalid_payment_method".into()),
                },
            });
        }
        if status.is_client_error() {
            return Ok(Payment {
                id,
                outcome: PaymentOutcome::Rejected {
                    error_type: if error_type.is_empty() {
                        format!("http_{}", status.as_u16())
                    } else {
                        error_type.to_owned()
                    },
                    code: code.unwrap_or_else(|| "request_refused".into()),
                },
            });
        }
        Err(PaymentError(format!(
            "unexpected answer {status} {}",
            error["message"]
        )))
    }

    async fn list_find(
        &self,
        customer: &str,
        charge_id: &str,
        attempt: u32,
    ) -> Result<Option<Payment>, PaymentError> {
        let mut after: Option<String> = None;
        let pages = match self.config.dialect {
            Dialect::Stripe => MAX_LIST_PAGES,
            Dialect::Localstripe => MAX_LOCALSTRIPE_LIST_PAGES,
        };
        for _ in 0..pages {
            let mut query = vec![("limit", LIST_PAGE.to_string())];
            if self.config.dialect == Dialect::Stripe {
                query.push(("customer", customer.to_owned()));
            }
            if let Some(after) = &after {
                query.push(("starting_after", after.clone()));
            }
            let page = self
                .call(
                    Method::GET,
                    &format!("/v1/payment_intents?{}", encode(&query)),
                    None,
                    None,
                )
                .await?;
            if !page.status.is_success() {
                return Err(PaymentError(format!(
                    "listing PaymentIntents: {} {}",
                    page.status, page.body
                )));
            }
            let data = page.body["data"].as_array().cloned().unwrap_or_default();
            if let Some(intent) = data.iter().find(|i| Self::matches(i, charge_id, attempt)) {
                let presence = if intent["metadata"]["presence"] == "on_session" {
                    Presence::OnSession
                } else {
                    Presence::OffSession
                };
                return self.payment_of(intent, Some(presence)).map(Some);
            }
            if page.body["has_more"].as_bool() != Some(true) {
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

#[async_trait]
impl PaymentProvider for StripePayments {
    async fn create_customer(&self, request: &CustomerRequest) -> Result<String, PaymentError> {
        let form = encode(&[("metadata[member_id]", request.member_id.clone())]);
        let answer = self
            .call(
                Method::POST,
                "/v1/customers",
                Some(form),
                Some(&request.idempotency_key),
            )
            .await?;
        match answer.body["id"].as_str() {
            Some(id) if answer.status.is_success() => Ok(id.to_owned()),
            _ => {
                tracing::error!(
                    alarm = "payment_request_rejected",
                    status = %answer.status,
                    error = %answer.body["error"],
                    "Stripe refused to create a customer"
                );
                Err(PaymentError(format!(
                    "creating a customer: {} {}",
                    answer.status, answer.body["error"]["message"]
                )))
            }
        }
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        let mut form = self.intent_form(request);
        // Whether the member was there, for a look-up to read back (localstripe keeps no
        // `setup_future_usage`).
        form.push((
            "metadata[presence]",
            match request.presence {
                Presence::OnSession => "on_session",
                Presence::OffSession => "off_session",
            }
            .to_owned(),
        ));
        let answer = self
            .call(
                Method::POST,
                "/v1/payment_intents",
                Some(encode(&form)),
                Some(&request.idempotency_key),
            )
            .await?;
        if answer.status.is_success() {
            return self.payment_of(&answer.body, Some(request.presence));
        }
        Self::refusal(answer.status, &answer.body)
    }

    async fn find(
        &self,
        customer: &str,
        charge_id: &str,
        attempt: u32,
    ) -> Result<Option<Payment>, PaymentError> {
        self.list_find(customer, charge_id, attempt).await
    }

    async fn save_card(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<CardSaved, PaymentError> {
        let path = format!(
            "/v1/payment_methods/{}/attach",
            form_urlencoded::byte_serialize(payment_method.as_bytes()).collect::<String>()
        );
        let key = format!("loyalty:attach:{customer}:{payment_method}");
        let answer = self
            .call(
                Method::POST,
                &path,
                Some(encode(&[("customer", customer.to_owned())])),
                Some(&key),
            )
            .await?;
        if answer.status.is_success() {
            return Ok(CardSaved::Saved);
        }
        match Self::refusal(answer.status, &answer.body)?.outcome {
            PaymentOutcome::Declined { code } => Ok(CardSaved::Refused { code }),
            other => Err(PaymentError(format!("saving a card: {other:?}"))),
        }
    }

    async fn read_event(
        &self,
        signature: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<ProviderEvent, EventError> {
        let secret = self.config.webhook_secret.as_deref().ok_or_else(|| {
            EventError::Provider(PaymentError(
                "no webhook signing secret is configured".into(),
            ))
        })?;
        let (event_id, event_type, body) = verify_and_read(secret, signature, body, now_unix)?;
        let change = match body {
            StripeEventBody::Ready(change) => change,
            StripeEventBody::TakenBack {
                payment_intent,
                reference,
                reason,
            } => {
                // A charge's metadata is not its PaymentIntent's: ask for the intent.
                let path = format!(
                    "/v1/payment_intents/{}",
                    form_urlencoded::byte_serialize(payment_intent.as_bytes()).collect::<String>()
                );
                let answer = self.call(Method::GET, &path, None, None).await?;
                if answer.status == StatusCode::NOT_FOUND {
                    PaymentChange::Unrelated
                } else if !answer.status.is_success() {
                    return Err(PaymentError(format!(
                        "reading PaymentIntent {payment_intent}: {}",
                        answer.status
                    ))
                    .into());
                } else {
                    attempt_of(&answer.body).map_or(PaymentChange::Unrelated, |attempt| {
                        PaymentChange::TakenBack {
                            charge_id: attempt.charge_id,
                            reference,
                            reason,
                        }
                    })
                }
            }
        };
        Ok(ProviderEvent {
            event_id,
            event_type,
            change,
        })
    }
}
