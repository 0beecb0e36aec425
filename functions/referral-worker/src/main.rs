//! Wiring only: config and the table are set up once per execution environment.

use aws_config::BehaviorVersion;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    loyalty_http::init_tracing();
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let app = loyalty_dynamo::app_from_env(&aws)?.with_events(loyalty_sqs::events_from_env(&aws));
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        referral_worker::handle(app, event.payload).await
    }))
    .await
}
