//! Wiring only: config, the table and both campaign queues are set up once per environment.

use aws_config::BehaviorVersion;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    loyalty_http::init_tracing();
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let app = loyalty_dynamo::app_from_env(&aws)?;
    let dispatch = loyalty_sqs::queue_from_env(&aws, "CAMPAIGN_DISPATCH_QUEUE_URL")?;
    let grants = loyalty_sqs::queue_from_env(&aws, "CAMPAIGN_GRANT_QUEUE_URL")?;
    let (app, dispatch, grants) = (&app, &dispatch, &grants);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        campaign_dispatch::handle(app, dispatch, grants, event.payload).await
    }))
    .await
}
