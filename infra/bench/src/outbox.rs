//! Events per second through the outbox: a fresh table's stream, after a known number of
//! enrolments and accruals, read as Lambda's event source mapping reads it (DynamoDB Local's
//! streams API) and relayed by the outbox function's own `relay_batch` in batches of the
//! template's size. The stream read and the relay are timed apart: on AWS the read is the event
//! source mapping's work, the relay is the function's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loyalty_core::events::MemoryQueue;
use serde_json::json;

use crate::ops::Bench;

/// Records per invocation, as the template's `BatchSize` for the outbox.
const BATCH: usize = 100;

pub struct OutboxRun {
    pub members: usize,
    pub records: usize,
    pub batches: usize,
    pub events: usize,
    pub read: Duration,
    pub relay: Duration,
}

impl OutboxRun {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.relay.as_secs_f64().max(1e-9)
    }

    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.relay.as_secs_f64().max(1e-9)
    }
}

/// Enrols and funds `members` members on a table of their own, then relays its whole stream.
pub async fn measure(endpoint: &str, members: usize) -> Result<OutboxRun, String> {
    let bench = Bench::streaming(endpoint).await;
    for i in 0..members {
        bench
            .member_with_balance(&format!("outbox-{i}"), 2_500)
            .await;
    }
    let streams = loyalty_local::stream::client(endpoint, "us-east-1");
    let mut stream =
        loyalty_local::stream::TableStream::open(bench.store.client(), streams, &bench.table)
            .await
            .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let records = stream.read().await.map_err(|e| e.to_string())?;
    let read = started.elapsed();

    let events = Arc::new(MemoryQueue::default());
    let app = loyalty_core::App::new(
        bench.store.clone(),
        Arc::new(loyalty_core::clock::SystemClock),
        loyalty_core::service::AppConfig::default(),
    )
    .with_events(events.clone());
    let mut run = OutboxRun {
        members,
        records: records.len(),
        batches: 0,
        events: 0,
        read,
        relay: Duration::ZERO,
    };
    let started = Instant::now();
    for batch in records.chunks(BATCH) {
        let event: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(json!({ "Records": batch })).map_err(|e| e.to_string())?;
        let report = outbox::relay_batch(&app, &event).await;
        if let Some(sequence) = report.failed_at {
            return Err(format!("the outbox failed record {sequence}"));
        }
        run.batches += 1;
        run.events += report.events;
    }
    run.relay = started.elapsed();
    let sent = events.take().len();
    if sent != run.events {
        return Err(format!(
            "{} events relayed, {sent} on the queue",
            run.events
        ));
    }
    Ok(run)
}
