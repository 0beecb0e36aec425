//! The `redeem` Lambda function. Wiring only: everything is built once per execution
//! environment, then every request goes to the shared generic handler.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("redeem").await;
    let app = wiring.app()?.with_events(wiring.events());
    wiring.announce();
    loyalty_http::run(app, loyalty_http::dispatch::Redeem).await
}
