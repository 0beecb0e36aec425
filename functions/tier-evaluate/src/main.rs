//! Wiring only: the table and the review queue are set up once per execution environment.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), loyalty_runtime::Error> {
    let mut wiring = loyalty_runtime::Wiring::start("tier-evaluate").await;
    let app = wiring.app()?.with_events(wiring.events());
    let reviews = wiring.queue("TIER_REVIEW_QUEUE_URL")?;
    wiring.announce();
    let (app, reviews) = (&app, &*reviews);
    loyalty_runtime::serve(|event| tier_evaluate::handle(app, reviews, event)).await
}
