//! What queue- and schedule-triggered functions share: telling the event kinds apart, and
//! processing an SQS batch so that each failed record — and only it — is reported back
//! (`ReportBatchItemFailures`) and redelivered.

use std::future::Future;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::Value;
use tracing::Instrument;

/// The events a worker function is invoked with.
#[derive(Debug)]
pub enum Invocation {
    Sqs(SqsEvent),
    Scheduled(Box<EventBridgeEvent<Value>>),
}

impl Invocation {
    pub fn parse(event: Value) -> Result<Self, String> {
        if event.get("Records").is_some() {
            return serde_json::from_value(event)
                .map(Invocation::Sqs)
                .map_err(|e| format!("SQS event: {e}"));
        }
        if event.get("detail-type").is_some() {
            return serde_json::from_value(event)
                .map(|e| Invocation::Scheduled(Box::new(e)))
                .map_err(|e| format!("scheduled event: {e}"));
        }
        Err("neither an SQS nor a scheduled event".to_owned())
    }
}

/// Runs `handle` on every record of the batch, one after another, and reports the ids of the
/// records it failed. A record without a message id cannot be reported, so it fails the whole
/// batch (returned as `Err`), which SQS redelivers in full.
pub async fn process_batch<F, Fut>(
    event: SqsEvent,
    mut handle: F,
) -> Result<SqsBatchResponse, String>
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let Some(id) = record.message_id.clone() else {
            return Err("an SQS record has no messageId".to_owned());
        };
        let span = tracing::info_span!("sqs_record", message_id = %id);
        if let Err(error) = handle(record).instrument(span).await {
            tracing::warn!(message_id = %id, %error, "record failed; SQS will redeliver it");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sqs(bodies: &[&str]) -> Value {
        let records: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| json!({ "messageId": format!("m{i}"), "body": body, "eventSource": "aws:sqs" }))
            .collect();
        json!({ "Records": records })
    }

    #[tokio::test]
    async fn only_failed_records_are_reported() {
        let Ok(Invocation::Sqs(event)) = Invocation::parse(sqs(&["ok", "poison", "ok"])) else {
            panic!("an SQS event");
        };
        let response = process_batch(event, |m| async move {
            match m.body.as_deref() {
                Some("poison") => Err("cannot handle".to_owned()),
                _ => Ok(()),
            }
        })
        .await
        .expect("batch");
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, vec!["m1".to_owned()]);
    }

    #[test]
    fn scheduled_events_are_recognised() {
        let event = json!({
            "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-22T02:15:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/nightly"], "detail": {}
        });
        assert!(matches!(
            Invocation::parse(event),
            Ok(Invocation::Scheduled(_))
        ));
        assert!(Invocation::parse(json!({ "hello": 1 })).is_err());
    }
}
