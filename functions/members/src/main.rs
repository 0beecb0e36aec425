//! The `members` Lambda function. Wiring only: everything is built once per execution
//! environment, then every request goes to the shared generic handler.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("members").await;
    let mut app = wiring.app()?.with_events(wiring.events());
    // Subscriptions take their first payment here; without a provider they answer 503.
    if let Some(payments) = wiring.payments().await? {
        app = app.with_payments(payments);
    }
    wiring.announce();
    loyalty_http::run(app, loyalty_http::dispatch::Members).await
}
