//! The `rewards` Lambda function. Wiring only: config and SDK clients are built once per
//! execution environment, then every request goes to the shared generic handler.

use aws_config::BehaviorVersion;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    loyalty_http::init_tracing();
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let mut app =
        loyalty_dynamo::app_from_env(&aws)?.with_events(loyalty_sqs::events_from_env(&aws));
    if let Some(dispatch) = loyalty_sqs::optional_queue(&aws, "CAMPAIGN_DISPATCH_QUEUE_URL") {
        app = app.with_campaign_dispatch(dispatch);
    }
    loyalty_http::run(app, loyalty_http::Function::Rewards).await
}
