//! Wiring only: config, the table and the queues are set up once per execution environment.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    loyalty_http::init_tracing();
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let app = loyalty_dynamo::app_from_env(&aws)?
        .with_events(Arc::new(loyalty_sqs::queue_from_env(
            &aws,
            "EVENTS_QUEUE_URL",
        )?))
        .with_referral_queue(Arc::new(loyalty_sqs::queue_from_env(
            &aws,
            "REFERRAL_QUEUE_URL",
        )?))
        .with_campaign_dispatch(Arc::new(loyalty_sqs::queue_from_env(
            &aws,
            "CAMPAIGN_DISPATCH_QUEUE_URL",
        )?));
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        outbox::handle(app, event.payload).await
    }))
    .await
}
