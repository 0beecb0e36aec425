//! `local-probe`: a small Lambda function for the local runner's tests, run through the same
//! Runtime API as the real functions. It records what it was given in DynamoDB (`TABLE_NAME`):
//!
//! - SQS: every record adds 1 to `ATTEMPT#<body>`; its effect is a conditional put of
//!   `EFFECT#<body>` (so a message delivered twice has one effect). Body `poison` always fails
//!   (reported in `batchItemFailures`), `flaky…` fails on its first delivery after its effect,
//!   and `crash` exits the process in the middle of the batch.
//! - Table stream (`CHANGE#<name>` items): every record adds 1 to `SEEN#<name>`; `poison…`
//!   always fails and `flaky…` fails its first delivery, reported as a batch item failure
//!   (the records after it are left for the redelivery).
//! - Schedules: every invocation adds 1 to `FIRES#<resource>`; its effect is one
//!   `PERIOD#<resource>#<day of the event time>` item, put only if absent.
//! - HTTP API (payload 2.0): answers 200 with the `requestContext.authorizer` it was given, so
//!   tests see what the gateway passes a function.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

struct Probe {
    client: Client,
    table: String,
}

impl Probe {
    async fn count(&self, pk: String) -> Result<(), Error> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .update_expression("ADD n :one")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .send()
            .await?;
        Ok(())
    }

    /// Puts `pk` unless it exists; `Ok(false)` when it already did.
    async fn once(&self, pk: String) -> Result<bool, Error> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(pk))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn sqs(&self, event: SqsEvent) -> Result<Value, Error> {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let body = record.body.clone().unwrap_or_default();
            self.count(format!("ATTEMPT#{body}")).await?;
            if body == "crash" {
                eprintln!("probe: crashing on purpose");
                std::process::exit(3);
            }
            if body == "poison" {
                response.add_failure(id);
                continue;
            }
            let fresh = self.once(format!("EFFECT#{body}")).await?;
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .map(String::as_str);
            println!(
                "probe: {body} effect {}",
                if fresh { "applied" } else { "already applied" }
            );
            if body.starts_with("flaky") && receives == Some("1") {
                response.add_failure(id);
            }
        }
        Ok(serde_json::to_value(response)?)
    }

    async fn stream(&self, event: Value) -> Result<Value, Error> {
        for record in event["Records"].as_array().into_iter().flatten() {
            let key = record["dynamodb"]["Keys"]["pk"]["S"]
                .as_str()
                .unwrap_or_default();
            let name = key.strip_prefix("CHANGE#").unwrap_or(key);
            self.count(format!("SEEN#{name}")).await?;
            let fails = name.starts_with("poison")
                || (name.starts_with("flaky") && self.once(format!("FLAKED#{name}")).await?);
            if fails {
                let sequence = &record["dynamodb"]["SequenceNumber"];
                return Ok(serde_json::json!({
                    "batchItemFailures": [{ "itemIdentifier": sequence }]
                }));
            }
        }
        Ok(serde_json::json!({ "batchItemFailures": [] }))
    }

    async fn schedule(&self, event: EventBridgeEvent) -> Result<Value, Error> {
        let resource = event
            .resources
            .and_then(|r| r.into_iter().next())
            .unwrap_or_default();
        let day = event
            .time
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        self.count(format!("FIRES#{resource}")).await?;
        let fresh = self.once(format!("PERIOD#{resource}#{day}")).await?;
        Ok(serde_json::json!({ "period": day, "applied": fresh }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let probe = &Probe {
        client: Client::new(&config),
        table,
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if let Some(context) = event.payload.get("requestContext") {
            let body = serde_json::json!({ "authorizer": context.get("authorizer") });
            Ok(serde_json::json!({
                "statusCode": 200,
                "headers": { "content-type": "application/json" },
                "body": body.to_string(),
            }))
        } else if event.payload["Records"][0]["eventSource"] == "aws:dynamodb" {
            probe.stream(event.payload).await
        } else if event.payload.get("Records").is_some() {
            probe.sqs(serde_json::from_value(event.payload)?).await
        } else {
            probe.schedule(serde_json::from_value(event.payload)?).await
        }
    }))
    .await
}
