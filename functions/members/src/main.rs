//! The `members` Lambda function. Wiring only: the SDK client and config are built once per
//! execution environment, then every request goes to the shared generic handler.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    loyalty_http::init_tracing();
    let app = loyalty_dynamo::app_from_env().await?;
    loyalty_http::run(app, loyalty_http::Function::Members).await
}
