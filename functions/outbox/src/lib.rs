//! The outbox: the table's stream is the only place events and follow-up messages come from.
//! Each stream record is turned into the change it describes (the DynamoDB adapter reads the
//! images) and relayed by the core (events to the outbound queue, referral and campaign
//! messages to theirs). Records of one shard arrive in order; the first that cannot be relayed
//! is reported as the batch's failure, so Lambda retries from it (and bisects the batch) and,
//! once the retries are spent, sends it to the on-failure destination. Nothing after it is
//! relayed in this invocation: per-member order is kept.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use loyalty_core::ports::Store;
use loyalty_core::App;
use serde_json::Value;

/// What a batch did: relayed records, and the sequence number it stopped at, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub relayed: usize,
    pub events: usize,
    pub failed_at: Option<String>,
}

impl BatchReport {
    pub fn response(&self) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        if let Some(sequence) = &self.failed_at {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence.clone());
            response.batch_item_failures.push(failure);
        }
        response
    }
}

/// Relays one stream record; `Err` names why it has to be delivered again.
pub async fn relay_record<S: Store>(app: &App<S>, record: &EventRecord) -> Result<usize, String> {
    let change =
        loyalty_dynamo::stream::change_of(&record.change.new_image, &record.change.old_image)
            .map_err(|e| e.to_string())?;
    let Some(change) = change else {
        return Ok(0);
    };
    let relayed = app.relay_change(&change).await.map_err(|e| e.to_string())?;
    Ok(relayed.events)
}

/// Relays a batch in order, stopping at the first record that fails.
pub async fn relay_batch<S: Store>(app: &App<S>, event: &Event) -> BatchReport {
    let mut report = BatchReport::default();
    for record in &event.records {
        match relay_record(app, record).await {
            Ok(events) => {
                report.relayed += 1;
                report.events += events;
            }
            Err(error) => {
                let sequence = record.change.sequence_number.clone().unwrap_or_default();
                tracing::error!(%error, sequence, event_id = %record.event_id, "stream record not relayed; the batch is retried from it");
                report.failed_at = Some(sequence);
                break;
            }
        }
    }
    report
}

/// The Lambda handler: a DynamoDB stream event in, the partial batch failure response out.
pub async fn handle<S: Store>(app: &App<S>, event: Value) -> Result<Value, String> {
    let event: Event =
        serde_json::from_value(event).map_err(|e| format!("not a DynamoDB stream event: {e}"))?;
    let report = relay_batch(app, &event).await;
    tracing::info!(
        records = event.records.len(),
        relayed = report.relayed,
        events = report.events,
        failed = report.failed_at.is_some(),
        "stream batch relayed"
    );
    serde_json::to_value(report.response()).map_err(|e| e.to_string())
}
