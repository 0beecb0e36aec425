//! The template's queues in a local SQS endpoint (moto), and Lambda's event source mapping:
//! one poller per `SQS` event that gathers a batch, invokes the function with the same event
//! JSON Lambda builds, and deletes what succeeded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::error::LocalError;
use crate::runtime::FunctionHandle;
use crate::template::{QueueSpec, SqsEvent};
use crate::wiring::{queue_arn, REGION};

pub async fn client(endpoint: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "local",
        ))
        .load()
        .await;
    Client::new(&config)
}

fn sqs_error(what: &str, error: impl std::fmt::Display) -> LocalError {
    LocalError::Template(format!("SQS {what}: {error}"))
}

/// Creates the queues (dead-letter queues first) and returns logical id → (name, URL).
pub async fn create_queues(
    client: &Client,
    queues: &[QueueSpec],
    prefix: &str,
) -> Result<HashMap<String, (String, String)>, LocalError> {
    let mut created: HashMap<String, (String, String)> = HashMap::new();
    let mut remaining: Vec<&QueueSpec> = queues.iter().collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        let mut next = Vec::new();
        for queue in remaining {
            if let Some((dlq, _)) = &queue.redrive {
                if !created.contains_key(dlq) {
                    if queues.iter().all(|q| &q.logical_id != dlq) {
                        return Err(sqs_error(
                            &queue.logical_id,
                            format!("dead-letter queue {dlq} is not in the template"),
                        ));
                    }
                    next.push(queue);
                    continue;
                }
            }
            let name = queue.local_name(prefix);
            let mut attributes = HashMap::new();
            let mut set = |key: QueueAttributeName, value: Option<String>| {
                if let Some(value) = value {
                    attributes.insert(key, value);
                }
            };
            set(
                QueueAttributeName::VisibilityTimeout,
                queue.visibility_timeout.map(|v| v.to_string()),
            );
            set(
                QueueAttributeName::MessageRetentionPeriod,
                queue.message_retention_period.map(|v| v.to_string()),
            );
            set(
                QueueAttributeName::DelaySeconds,
                queue.delay_seconds.map(|v| v.to_string()),
            );
            if queue.fifo {
                set(QueueAttributeName::FifoQueue, Some("true".to_owned()));
                set(
                    QueueAttributeName::ContentBasedDeduplication,
                    Some(queue.content_based_deduplication.to_string()),
                );
            }
            if let Some((dlq, max)) = &queue.redrive {
                let (dlq_name, _) = &created[dlq];
                set(
                    QueueAttributeName::RedrivePolicy,
                    Some(
                        json!({"deadLetterTargetArn": queue_arn(dlq_name), "maxReceiveCount": max})
                            .to_string(),
                    ),
                );
            }
            let url = client
                .create_queue()
                .queue_name(&name)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(|e| {
                    sqs_error(
                        &format!("creating {name}"),
                        aws_sdk_sqs::error::DisplayErrorContext(e),
                    )
                })?
                .queue_url
                .ok_or_else(|| sqs_error(&name, "no queue URL returned"))?;
            created.insert(queue.logical_id.clone(), (name, url));
        }
        if next.len() == before {
            return Err(sqs_error("redrive", "dead-letter queues form a cycle"));
        }
        remaining = next;
    }
    Ok(created)
}

/// One Lambda-style SQS record.
pub fn record(message: &Message, queue_name: &str) -> Value {
    let attributes: Map<String, Value> = message
        .attributes()
        .map(|attrs| {
            attrs
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                .collect()
        })
        .unwrap_or_default();
    let message_attributes: Map<String, Value> = message
        .message_attributes()
        .map(|attrs| {
            attrs
                .iter()
                .map(|(name, value)| {
                    let b64 = |bytes: &aws_sdk_sqs::primitives::Blob| {
                        Value::String(
                            base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()),
                        )
                    };
                    let mut v = json!({
                        "stringListValues": value.string_list_values(),
                        "binaryListValues": value.binary_list_values().iter().map(b64).collect::<Vec<_>>(),
                        "dataType": value.data_type(),
                    });
                    if let Some(s) = value.string_value() {
                        v["stringValue"] = json!(s);
                    }
                    if let Some(b) = value.binary_value() {
                        v["binaryValue"] = b64(b);
                    }
                    (name.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut record = json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body().unwrap_or_default(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn(queue_name),
        "awsRegion": REGION,
    });
    if let Some(md5) = message.md5_of_message_attributes() {
        record["md5OfMessageAttributes"] = json!(md5);
    }
    record
}

/// Which message ids of a batch the function's response says failed. `None` means the whole
/// batch failed (an unparseable response or an unknown item id, as Lambda treats them).
pub fn failed_ids(response: &[u8], ids: &[String], report_failures: bool) -> Option<Vec<String>> {
    if !report_failures {
        return Some(Vec::new());
    }
    let parsed: Value = match serde_json::from_slice(response) {
        Ok(value) => value,
        // An empty or null response means every record succeeded.
        Err(_) if response.iter().all(u8::is_ascii_whitespace) => return Some(Vec::new()),
        Err(_) => return None,
    };
    let Some(failures) = parsed.get("batchItemFailures") else {
        return Some(Vec::new());
    };
    let mut failed = Vec::new();
    for failure in failures.as_array()? {
        let id = failure.get("itemIdentifier")?.as_str()?;
        if !ids.iter().any(|known| known == id) {
            return None;
        }
        failed.push(id.to_owned());
    }
    Some(failed)
}

pub struct Poller {
    pub client: Client,
    pub function: FunctionHandle,
    pub event: SqsEvent,
    pub queue_name: String,
    pub queue_url: String,
}

impl Poller {
    async fn receive(&self, max: usize, wait: i32) -> Result<Vec<Message>, String> {
        self.client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
    }

    /// Receives and invokes until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let id = self.function.logical_id().to_owned();
        let batch_size = self.event.batch_size.max(1);
        let window = Duration::from_secs(self.event.batching_window_seconds);
        while !*shutdown.borrow() {
            let first = tokio::select! {
                r = self.receive(batch_size, 1) => r,
                _ = shutdown.changed() => break,
            };
            let mut batch = match first {
                Ok(batch) => batch,
                Err(error) => {
                    eprintln!("[{id}] receiving from {} failed: {error}", self.queue_name);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                        _ = shutdown.changed() => break,
                    }
                }
            };
            if batch.is_empty() {
                continue;
            }
            // Gather up to BatchSize within the batching window (at least one more round of
            // up-to-10 receives when the batch is bigger than one call can return).
            let gathering = Instant::now();
            while batch.len() < batch_size {
                let left = window.saturating_sub(gathering.elapsed());
                let wait = if left.is_zero() {
                    0
                } else {
                    left.as_secs().clamp(1, 20) as i32
                };
                match self.receive(batch_size - batch.len(), wait).await {
                    Ok(more) if !more.is_empty() => batch.extend(more),
                    _ => {
                        if left.is_zero() {
                            break;
                        }
                    }
                }
                if gathering.elapsed() >= window {
                    break;
                }
            }
            self.invoke(batch).await;
        }
    }

    async fn invoke(&self, batch: Vec<Message>) {
        let id = self.function.logical_id();
        let started = Instant::now();
        let records: Vec<Value> = batch.iter().map(|m| record(m, &self.queue_name)).collect();
        let event = json!({ "Records": records });
        let ids: Vec<String> = batch
            .iter()
            .map(|m| m.message_id().unwrap_or_default().to_owned())
            .collect();
        let result = self.function.invoke(event.to_string().into_bytes()).await;
        let ms = started.elapsed().as_millis();
        let failed = match &result {
            Ok(body) => match failed_ids(body, &ids, self.event.report_batch_item_failures) {
                Some(failed) => {
                    if failed.is_empty() {
                        println!("[{id}] invoke sqs {} records -> ok {ms} ms", ids.len());
                    } else {
                        println!(
                            "[{id}] invoke sqs {} records -> {} failed {ms} ms",
                            ids.len(),
                            failed.len()
                        );
                    }
                    failed
                }
                None => {
                    println!(
                        "[{id}] invoke sqs {} records -> invalid batch response, all failed {ms} ms: {}",
                        ids.len(),
                        String::from_utf8_lossy(body)
                    );
                    ids.clone()
                }
            },
            Err(error) => {
                println!(
                    "[{id}] invoke sqs {} records -> error, all failed {ms} ms: {error}",
                    ids.len()
                );
                ids.clone()
            }
        };
        let done: Vec<&Message> = batch
            .iter()
            .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
            .collect();
        for chunk in done.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                        .build()
                        .ok()
                })
                .collect();
            if let Err(error) = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                eprintln!(
                    "[{id}] deleting processed messages failed: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(error)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_failures() {
        let ids = vec!["a".to_owned(), "b".to_owned()];
        let r = |s: &str| failed_ids(s.as_bytes(), &ids, true);
        assert_eq!(r(r#"{"batchItemFailures":[]}"#), Some(vec![]));
        assert_eq!(
            r(r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#),
            Some(vec!["b".into()])
        );
        assert_eq!(
            r(r#"{"batchItemFailures":[{"itemIdentifier":"zz"}]}"#),
            None
        );
        assert_eq!(r(r#"{"batchItemFailures":[{}]}"#), None);
        assert_eq!(r("null"), Some(vec![]));
        assert_eq!(r(""), Some(vec![]));
        assert_eq!(r("not json"), None);
        assert_eq!(failed_ids(b"garbage", &ids, false), Some(vec![]));
    }
}
