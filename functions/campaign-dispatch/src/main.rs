//! Wiring only: the table and both campaign queues are set up once per execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("campaign-dispatch").await;
    let app = wiring.app()?;
    let dispatch = wiring.queue("CAMPAIGN_DISPATCH_QUEUE_URL")?;
    let grants = wiring.queue("CAMPAIGN_GRANT_QUEUE_URL")?;
    wiring.announce();
    let (app, dispatch, grants) = (&app, &*dispatch, &*grants);
    loyalty_runtime::serve(|event| campaign_dispatch::handle(app, dispatch, grants, event)).await
}
