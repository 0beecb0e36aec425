//! Wiring only: the table, the billing queue and the payment provider are set up once per
//! execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("subscription-billing").await;
    let mut app = wiring.app()?.with_events(wiring.events());
    if let Some(payments) = wiring.payments().await? {
        app = app.with_payments(payments);
    }
    let billing = wiring.queue("SUBSCRIPTION_BILLING_QUEUE_URL")?;
    wiring.announce();
    let (app, billing) = (&app, &*billing);
    loyalty_runtime::serve(|event| subscription_billing::handle(app, billing, event)).await
}
