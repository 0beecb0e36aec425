//! The `rewards` Lambda function. Wiring only: everything is built once per execution
//! environment, then every request goes to the shared generic handler.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("rewards").await;
    // A new campaign's first dispatch step goes to the dispatch queue.
    // A webhook's URL is checked against this deployment's policy; a retry goes to the
    // delivery queue.
    let policy = wiring.webhook_policy();
    let app = wiring
        .app()?
        .with_events(wiring.events())
        .with_campaign_dispatch(wiring.queue("CAMPAIGN_DISPATCH_QUEUE_URL")?)
        .with_webhook_policy(policy)
        .with_webhook_deliveries(wiring.queue("WEBHOOK_DELIVERY_QUEUE_URL")?);
    wiring.announce();
    loyalty_http::run(app, loyalty_http::dispatch::Rewards).await
}
