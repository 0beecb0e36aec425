//! Wiring only: config, the table, the billing queue and the payment provider are set up once per
//! execution environment.

use aws_config::BehaviorVersion;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    loyalty_http::init_tracing();
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let mut app =
        loyalty_dynamo::app_from_env(&aws)?.with_events(loyalty_sqs::events_from_env(&aws));
    if let Some(payments) = loyalty_payments::StripePayments::optional_from_env() {
        app = app.with_payments(payments);
    }
    let billing = loyalty_sqs::queue_from_env(&aws, "SUBSCRIPTION_BILLING_QUEUE_URL")?;
    let (app, billing) = (&app, &billing);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        subscription_billing::handle(app, billing, event.payload).await
    }))
    .await
}
