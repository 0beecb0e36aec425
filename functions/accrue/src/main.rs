//! The `accrue` Lambda function. Wiring only: everything is built once per execution
//! environment, then every request goes to the shared generic handler.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("accrue").await;
    // A referee's first qualifying purchase is announced on the referral queue.
    let app = wiring
        .app()?
        .with_events(wiring.events())
        .with_referral_queue(wiring.queue("REFERRAL_QUEUE_URL")?);
    wiring.announce();
    loyalty_http::run(app, loyalty_http::dispatch::Accrue).await
}
