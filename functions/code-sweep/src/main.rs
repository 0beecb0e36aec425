//! Wiring only: the table and the sweep queue are set up once per execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("code-sweep").await;
    let app = wiring.app()?;
    let sweep = wiring.queue("CODE_SWEEP_QUEUE_URL")?;
    wiring.announce();
    let (app, sweep) = (&app, &*sweep);
    loyalty_runtime::serve(|event| code_sweep::handle(app, sweep, event)).await
}
