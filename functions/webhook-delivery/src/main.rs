//! The `webhook-delivery` Lambda function. Wiring only: the table, the delivery queue (retries
//! are delayed messages on it), the webhook DLQ and the HTTP client are set up once per
//! execution environment.

use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("webhook-delivery").await;
    let policy = wiring.webhook_policy();
    let sender = webhook_delivery::HttpSender::new(
        policy,
        loyalty_core::webhooks::delivery::DELIVERY_TIMEOUT,
    )?;
    let app = wiring
        .app()?
        .with_webhook_policy(policy)
        .with_webhook_sender(Arc::new(sender))
        .with_webhook_deliveries(wiring.queue("WEBHOOK_DELIVERY_QUEUE_URL")?)
        .with_webhook_dlq(wiring.queue("WEBHOOK_DLQ_URL")?);
    wiring.announce();
    let app = &app;
    loyalty_runtime::serve(|event| webhook_delivery::handle(app, event)).await
}
