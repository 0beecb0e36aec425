//! The `outbox` Lambda function. Wiring only: the table and the queues it relays to (events,
//! referrals, campaign dispatch, webhook deliveries) are set up once per execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("outbox").await;
    let app = wiring
        .app()?
        .with_events(wiring.events())
        .with_referral_queue(wiring.queue("REFERRAL_QUEUE_URL")?)
        .with_campaign_dispatch(wiring.queue("CAMPAIGN_DISPATCH_QUEUE_URL")?)
        .with_webhook_deliveries(wiring.queue("WEBHOOK_DELIVERY_QUEUE_URL")?);
    wiring.announce();
    let app = &app;
    loyalty_runtime::serve(|event| outbox::handle(app, event)).await
}
