//! Wiring only: the table and the events queue are set up once per execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("promotions-scheduler").await;
    let app = wiring.app()?.with_events(wiring.events());
    wiring.announce();
    let app = &app;
    loyalty_runtime::serve(|event| promotions_scheduler::handle(app, event)).await
}
