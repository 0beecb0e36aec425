//! Wiring only: the table and the events queue are set up once per execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("referral-worker").await;
    let app = wiring.app()?.with_events(wiring.events());
    wiring.announce();
    let app = &app;
    loyalty_runtime::serve(|event| referral_worker::handle(app, event)).await
}
