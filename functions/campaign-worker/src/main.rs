//! Wiring only: the table is set up once per execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("campaign-worker").await;
    let app = wiring.app()?;
    // Must match the grant queue's maxReceiveCount in the template.
    let max_receives = wiring.number("CAMPAIGN_MAX_RECEIVES", 5)?;
    wiring.announce();
    let app = &app;
    loyalty_runtime::serve(|event| campaign_worker::handle(app, max_receives, event)).await
}
