//! The outbox as the tests run it: what a test's table wrote is read back from DynamoDB Local's
//! stream (the real stream images, from `TRIM_HORIZON`) and relayed through the outbox
//! function's own `relay_batch`, as Lambda's event source mapping would deliver it. Events and
//! follow-up messages come only from here: the requests send nothing after their commit.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::EventRecord;
use loyalty_core::events::catalog::Change;
use loyalty_core::events::MemoryQueue;
use loyalty_core::ports::Store;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_local::stream::TableStream;
use tokio::sync::Mutex;

/// A test table's stream, relayed from where the last relay stopped.
pub struct StreamRelay {
    stream: Mutex<TableStream>,
}

impl StreamRelay {
    /// The stream of `store`'s table, from its first record.
    pub async fn of(store: &DynamoStore) -> Self {
        let endpoint = std::env::var(crate::ENDPOINT_ENV).expect("LOYALTY_TEST_DYNAMODB is set");
        let streams = loyalty_local::stream::client(&endpoint, "us-east-1");
        let stream = TableStream::open(store.client(), streams, store.table())
            .await
            .expect("the test table has a stream: make it with `streaming_store`");
        Self {
            stream: Mutex::new(stream),
        }
    }

    /// Relays every record written since the last call through `app`'s queues; answers how
    /// many events went out. A record the outbox cannot relay fails the test.
    pub async fn relay<S: Store>(&self, app: &App<S>) -> usize {
        let records = self
            .stream
            .lock()
            .await
            .read()
            .await
            .expect("DynamoDB Local's stream reads");
        if records.is_empty() {
            return 0;
        }
        let event: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(serde_json::json!({ "Records": records }))
                .expect("stream records parse as a DynamoDB event");
        let report = outbox::relay_batch(app, &event).await;
        assert_eq!(
            report.failed_at, None,
            "the outbox failed a stream record: {report:?}"
        );
        report.events
    }
}

impl StreamRelay {
    /// Relays every record written since the last call, as the event source mapping does: a
    /// batch that fails at a record is delivered again from that record, up to `attempts` times.
    pub async fn relay_retrying<S: Store>(
        &self,
        app: &App<S>,
        attempts: u32,
    ) -> Result<usize, String> {
        let mut records = self
            .stream
            .lock()
            .await
            .read()
            .await
            .map_err(|e| e.to_string())?;
        let mut events = 0;
        let mut failures = 0;
        while !records.is_empty() {
            let event: aws_lambda_events::event::dynamodb::Event =
                serde_json::from_value(serde_json::json!({ "Records": records }))
                    .map_err(|e| format!("stream records do not parse: {e}"))?;
            let report = outbox::relay_batch(app, &event).await;
            events += report.events;
            let Some(failed) = report.failed_at else {
                return Ok(events);
            };
            failures += 1;
            if failures >= attempts {
                return Err(format!(
                    "the outbox failed record {failed} {failures} times"
                ));
            }
            let from = records
                .iter()
                .position(|r| r["dynamodb"]["SequenceNumber"].as_str() == Some(failed.as_str()))
                .ok_or_else(|| format!("the outbox named an unknown record {failed}"))?;
            records.drain(..from);
        }
        Ok(events)
    }
}

/// A queue the outbox fills from a test table's stream (events, referral messages, first
/// campaign dispatch steps): reading it relays the stream first.
pub struct RelayedQueue {
    sent: Arc<MemoryQueue>,
    relay: StreamRelay,
}

impl RelayedQueue {
    pub async fn of(store: &DynamoStore) -> Self {
        Self {
            sent: Arc::new(MemoryQueue::default()),
            relay: StreamRelay::of(store).await,
        }
    }

    /// The queue to wire into the app (`with_events`, `with_referral_queue`, …).
    pub fn queue(&self) -> Arc<MemoryQueue> {
        Arc::clone(&self.sent)
    }

    /// Relays what the stream holds since the last read, then answers everything sent so far.
    pub async fn sent<S: Store>(&self, app: &App<S>) -> Vec<String> {
        self.relay.relay(app).await;
        self.sent.sent()
    }

    /// Relays what the stream holds since the last read, then takes what was sent.
    pub async fn take<S: Store>(&self, app: &App<S>) -> Vec<String> {
        self.relay.relay(app).await;
        self.sent.take()
    }
}

/// A test table's stream as the simulator's change feed: each record read from DynamoDB
/// Local's stream becomes the change its images describe, as the outbox function reads it.
pub struct StreamFeed {
    stream: Mutex<TableStream>,
}

impl StreamFeed {
    pub async fn of(store: &DynamoStore) -> Self {
        Self {
            stream: StreamRelay::of(store).await.stream,
        }
    }
}

#[async_trait::async_trait]
impl loyalty_sim::world::ChangeFeed for StreamFeed {
    async fn changes(&self) -> Result<Vec<Change>, String> {
        let records = self
            .stream
            .lock()
            .await
            .read()
            .await
            .map_err(|e| e.to_string())?;
        let mut changes = Vec::new();
        for record in records {
            let record: EventRecord = serde_json::from_value(record)
                .map_err(|e| format!("a stream record does not parse: {e}"))?;
            let change = loyalty_dynamo::stream::change_of(
                &record.change.new_image,
                &record.change.old_image,
            )
            .map_err(|e| e.to_string())?;
            changes.extend(change);
        }
        Ok(changes)
    }
}
