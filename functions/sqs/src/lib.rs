//! The SQS adapter: a [`MessageQueue`] that sends with `SendMessageBatch`, ten at a time, and
//! treats any entry SQS did not accept as a failure of the whole send, so callers retry rather
//! than lose messages.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use loyalty_core::ports::{MessageQueue, StoreError};

/// SQS accepts at most ten entries per batch.
const BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl MessageQueue for SqsQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), StoreError> {
        for chunk in bodies.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError(format!("SendMessageBatch entry: {e}")))?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    StoreError(format!(
                        "SendMessageBatch: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    ))
                })?;
            if let Some(failed) = output.failed.first() {
                return Err(StoreError(format!(
                    "SendMessageBatch rejected {} of {} messages: {} {}",
                    output.failed.len(),
                    chunk.len(),
                    failed.code,
                    failed.message.as_deref().unwrap_or("")
                )));
            }
        }
        Ok(())
    }

    async fn send_delayed(
        &self,
        body: String,
        delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        // Whole seconds, rounded up (a message due in 0.4 s must not come back at once and
        // wait again), capped at SQS's 900.
        let seconds = (delay.as_secs() + u64::from(delay.subsec_nanos() > 0)).min(900) as i32;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(seconds)
            .send()
            .await
            .map_err(|e| {
                StoreError(format!(
                    "SendMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }
}

/// The queue whose URL is in environment variable `name`; built once per execution environment.
pub fn queue_from_env(aws: &aws_config::SdkConfig, name: &str) -> Result<SqsQueue, String> {
    let url = std::env::var(name).map_err(|_| format!("{name} is not set"))?;
    Ok(SqsQueue::new(Client::new(aws), url))
}

/// The queue in `name` when the deployment declares one.
pub fn optional_queue(aws: &aws_config::SdkConfig, name: &str) -> Option<Arc<dyn MessageQueue>> {
    queue_from_env(aws, name)
        .ok()
        .map(|q| Arc::new(q) as Arc<dyn MessageQueue>)
}

/// Where outgoing events go: the queue in `EVENTS_QUEUE_URL`, or the log when there is none.
pub fn events_from_env(aws: &aws_config::SdkConfig) -> Arc<dyn MessageQueue> {
    match queue_from_env(aws, "EVENTS_QUEUE_URL") {
        Ok(queue) => Arc::new(queue),
        Err(_) => Arc::new(loyalty_core::events::LogQueue),
    }
}
