//! Webhook delivery: each message of the delivery queue is one event for one webhook. The core
//! signs and records the attempt and schedules the next one ([`App::deliver_webhook`]); this
//! crate is the HTTP client it posts with and the SQS handler.
//!
//! The client refuses, at connect time, every address the URL policy refuses: a name is
//! resolved here, each address it resolves to is checked, and only checked addresses are
//! connected to (so a name cannot pass the check and then resolve elsewhere). Redirects are not
//! followed: a 3xx is a failed attempt like any non-2xx.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use loyalty_core::ports::Store;
use loyalty_core::service::DeliveryStep;
use loyalty_core::webhooks::address::{parse_url, UrlPolicy};
use loyalty_core::webhooks::delivery::DeliveryMessage;
use loyalty_core::webhooks::{Answer, Outgoing, WebhookSender, SIGNATURE_HEADER};
use loyalty_core::App;
use loyalty_worker::{process_batch, Invocation};
use serde_json::Value;

/// Resolves names and keeps only addresses the policy allows; a name with any refused address
/// is refused whole (a mix is how rebinding attacks hide).
#[derive(Debug, Clone, Copy)]
struct CheckedResolver {
    policy: UrlPolicy,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if addresses.is_empty() {
                return Err(std::io::Error::other(format!("{name} has no address")));
            }
            if let Some(refused) = addresses.iter().find(|a| !policy.allows(a.ip())) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{name} resolves to {}, which webhooks may not reach",
                        refused.ip()
                    ),
                ));
            }
            Ok(addresses.into_iter())
        })
    }
}

/// Posts deliveries over HTTPS (or, under the local policy, HTTP to loopback).
pub struct HttpSender {
    client: Client<HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>,
    policy: UrlPolicy,
    timeout: Duration,
}

impl HttpSender {
    /// A client that gives a receiver `timeout` to answer (connection included).
    pub fn new(policy: UrlPolicy, timeout: Duration) -> Result<Self, String> {
        let mut http = HttpConnector::new_with_resolver(CheckedResolver { policy });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            policy,
            timeout,
        })
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn post(&self, outgoing: Outgoing<'_>) -> Answer {
        // The URL is checked again: the policy of this function is what counts, and a literal
        // address never reaches the resolver.
        let url = match parse_url(outgoing.url, self.policy) {
            Ok(url) => url,
            Err(error) => return Answer::Failed(error.message),
        };
        let request = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "loyalty-webhooks/1")
            .header(SIGNATURE_HEADER, outgoing.signature)
            .header("Loyalty-Event-Id", outgoing.event_id)
            .body(Full::new(Bytes::copy_from_slice(outgoing.body)));
        let request = match request {
            Ok(request) => request,
            Err(error) => return Answer::Failed(format!("request: {error}")),
        };
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Answer::Failed(format!("no answer within {} s", self.timeout.as_secs_f32())),
            Ok(Err(error)) => Answer::Failed(describe(&error)),
            Ok(Ok(response)) => Answer::Status(response.status().as_u16()),
        }
    }
}

/// The error and its causes (the connector's refusal is a cause of the client's error).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One delivery message: `Err` reports it for redelivery.
pub async fn deliver<S: Store>(app: &App<S>, body: &str) -> Result<DeliveryStep, String> {
    let message: DeliveryMessage =
        serde_json::from_str(body).map_err(|e| format!("not a delivery message: {e}"))?;
    app.deliver_webhook(&message)
        .await
        .map_err(|e| e.to_string())
}

/// The Lambda handler: an SQS batch in, its partial batch failures out.
pub async fn handle<S: Store>(app: &App<S>, event: Value) -> Result<Value, String> {
    let Invocation::Sqs(event) = Invocation::parse(event)? else {
        return Err("webhook-delivery is triggered by its queue only".to_owned());
    };
    let response = process_batch(event, |message| async move {
        let body = message.body.unwrap_or_default();
        let step = deliver(app, &body).await?;
        tracing::info!(?step, "webhook delivery message handled");
        Ok(())
    })
    .await?;
    serde_json::to_value(response).map_err(|e| e.to_string())
}
