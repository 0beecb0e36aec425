//! Wiring only: the table is set up once per execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("points-expiry").await;
    let app = wiring.app()?;
    wiring.announce();
    let app = &app;
    loyalty_runtime::serve(|event| points_expiry::handle(app, event)).await
}
