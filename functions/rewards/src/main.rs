//! The `rewards` Lambda function. Wiring only: everything is built once per execution
//! environment, then every request goes to the shared generic handler.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("rewards").await;
    // A new campaign's first dispatch step goes to the dispatch queue.
    let app = wiring
        .app()?
        .with_events(wiring.events())
        .with_campaign_dispatch(wiring.queue("CAMPAIGN_DISPATCH_QUEUE_URL")?);
    wiring.announce();
    loyalty_http::run(app, loyalty_http::Function::Rewards).await
}
