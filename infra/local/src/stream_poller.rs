//! Lambda's event source mapping for a table's stream: polls the stream in DynamoDB Local,
//! drops the records the template's `FilterCriteria` do not match, batches each shard's records
//! (`BatchSize`, `MaximumBatchingWindowInSeconds`) and invokes the function with `{"Records":
//! [...]}`. Its answer is handled as Lambda handles it: a `batchItemFailures` entry resumes the
//! shard from that record, an invocation error retries the batch (split in two first when
//! `BisectBatchOnFunctionError` is on), and a batch still failing after `MaximumRetryAttempts`
//! is described to the on-failure destination and skipped. A shard's records go in order.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::runtime::FunctionHandle;
use crate::stream::TableStream;
use crate::template::StreamEvent;

/// How often the stream is read, like Lambda's pollers (four times a second per shard).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What a mapping invokes: the function process, or a fake in tests.
pub trait StreamTarget: Send + Sync {
    fn name(&self) -> &str;
    /// The function's response, or why the invocation failed.
    fn invoke(&self, payload: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
}

impl StreamTarget for FunctionHandle {
    fn name(&self) -> &str {
        self.logical_id()
    }

    async fn invoke(&self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        FunctionHandle::invoke(self, payload)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Where records that exhausted their retries go: the SQS on-failure queue, or a fake.
pub trait FailureDestination: Send + Sync {
    fn send(&self, message: Value) -> impl Future<Output = Result<(), String>> + Send;
}

/// The on-failure destination as an SQS queue.
pub struct QueueDestination {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl FailureDestination for QueueDestination {
    async fn send(&self, message: Value) -> Result<(), String> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
    }
}

/// The batching and retry settings of one `DynamoDB` event.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub batch_size: usize,
    pub batching_window: Duration,
    pub bisect_on_error: bool,
    /// `None`: retry until the record leaves the stream (Lambda's `-1`), i.e. for ever here.
    pub maximum_retry_attempts: Option<u64>,
    pub report_batch_item_failures: bool,
    /// Parsed `FilterCriteria` patterns; a record passes when any matches (or none is given).
    pub filters: Vec<Value>,
    /// The pause before a retry, doubled per attempt up to 2 s.
    pub retry_backoff: Duration,
}

impl Mapping {
    pub fn from_event(event: &StreamEvent) -> Result<Self, String> {
        let filters = event
            .filter_patterns
            .iter()
            .map(|p| serde_json::from_str(p).map_err(|e| format!("filter pattern {p}: {e}")))
            .collect::<Result<Vec<Value>, String>>()?;
        Ok(Self {
            batch_size: event.batch_size.max(1),
            batching_window: Duration::from_secs(event.batching_window_seconds),
            bisect_on_error: event.bisect_on_error,
            maximum_retry_attempts: event.maximum_retry_attempts,
            report_batch_item_failures: event.report_batch_item_failures,
            filters,
            retry_backoff: Duration::from_millis(200),
        })
    }

    pub fn passes(&self, record: &Value) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|p| matches_pattern(p, record))
    }
}

/// An EventBridge-style filter pattern over a record: every key of the pattern must match; a
/// leaf is a list of alternatives (exact values, `prefix`, `anything-but`, `exists`, `numeric`
/// equality).
pub fn matches_pattern(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields.iter().all(|(key, sub)| match sub {
            Value::Object(_) => value.get(key).is_some_and(|v| matches_pattern(sub, v)),
            Value::Array(alternatives) => alternatives
                .iter()
                .any(|alternative| matches_leaf(alternative, value.get(key))),
            _ => false,
        }),
        _ => false,
    }
}

fn matches_leaf(rule: &Value, value: Option<&Value>) -> bool {
    let Value::Object(rule) = rule else {
        // An exact value; a pattern never matches a missing field with a value.
        return value.is_some_and(|v| equal_leaf(rule, v));
    };
    rule.iter()
        .all(|(operator, operand)| match operator.as_str() {
            "exists" => operand.as_bool() == Some(value.is_some()),
            "prefix" => match (operand.as_str(), value.and_then(Value::as_str)) {
                (Some(prefix), Some(text)) => text.starts_with(prefix),
                _ => false,
            },
            "anything-but" => value.is_some_and(|v| match operand {
                Value::Array(excluded) => !excluded.iter().any(|e| equal_leaf(e, v)),
                Value::Object(inner) => {
                    match (inner.get("prefix").and_then(Value::as_str), v.as_str()) {
                        (Some(prefix), Some(text)) => !text.starts_with(prefix),
                        _ => false,
                    }
                }
                single => !equal_leaf(single, v),
            }),
            "numeric" => match (
                operand.as_array().map(Vec::as_slice),
                value.and_then(number),
            ) {
                (Some([op, bound]), Some(n)) if op == "=" => number(bound) == Some(n),
                _ => false,
            },
            _ => false,
        })
}

fn equal_leaf(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        // Stream images carry numbers as strings (`{"N": "5"}`).
        (Value::Number(_), _) => number(expected).is_some() && number(expected) == number(actual),
        _ => expected == actual,
    }
}

fn number(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => n.as_i64().map(i128::from),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn sequence_number(record: &Value) -> &str {
    record["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap_or_default()
}

/// How one invocation went.
#[derive(Debug, PartialEq)]
enum Answer {
    Done,
    /// Records from this index on are to be retried.
    FailedFrom(usize),
    Error(String),
}

/// Reads a `StreamsEventResponse`: the first failed record (the lowest sequence number named).
/// An unknown or missing identifier fails the whole batch, as on Lambda.
fn answer(response: &[u8], batch: &[Value], report_failures: bool) -> Answer {
    if !report_failures {
        return Answer::Done;
    }
    let parsed: Value = match serde_json::from_slice(response) {
        Ok(value) => value,
        Err(_) if response.iter().all(u8::is_ascii_whitespace) => return Answer::Done,
        Err(e) => return Answer::Error(format!("invalid batch response: {e}")),
    };
    let Some(failures) = parsed.get("batchItemFailures").filter(|f| !f.is_null()) else {
        return Answer::Done;
    };
    let Some(failures) = failures.as_array() else {
        return Answer::Error("batchItemFailures is not a list".into());
    };
    let mut first: Option<usize> = None;
    for failure in failures {
        let id = failure.get("itemIdentifier").and_then(Value::as_str);
        let Some(index) = id.and_then(|id| batch.iter().position(|r| sequence_number(r) == id))
        else {
            return Answer::FailedFrom(0);
        };
        first = Some(first.map_or(index, |f: usize| f.min(index)));
    }
    first.map_or(Answer::Done, Answer::FailedFrom)
}

/// Delivers one shard's batch, retrying and bisecting as Lambda does; every record is either
/// handled or described to `destination` when this returns.
pub async fn deliver<T: StreamTarget, D: FailureDestination>(
    target: &T,
    destination: Option<&D>,
    mapping: &Mapping,
    shard_id: &str,
    stream_arn: &str,
    records: Vec<Value>,
) {
    // (records, attempts so far); the front is always the oldest part of the shard.
    let mut pending: Vec<(Vec<Value>, u64)> = vec![(records, 0)];
    while !pending.is_empty() {
        let (batch, attempts) = pending.remove(0);
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let payload = json!({ "Records": batch }).to_string().into_bytes();
        let outcome = match target.invoke(payload).await {
            Ok(body) => answer(&body, &batch, mapping.report_batch_item_failures),
            Err(error) => Answer::Error(error),
        };
        let ms = started.elapsed().as_millis();
        let name = target.name();
        let (rest, function_error) = match outcome {
            Answer::Done => {
                println!(
                    "[{name}] invoke stream {} records -> ok {ms} ms",
                    batch.len()
                );
                continue;
            }
            Answer::FailedFrom(index) => {
                println!(
                    "[{name}] invoke stream {} records -> failed from {} {ms} ms",
                    batch.len(),
                    sequence_number(&batch[index])
                );
                (batch[index..].to_vec(), false)
            }
            Answer::Error(error) => {
                println!(
                    "[{name}] invoke stream {} records -> error {ms} ms: {error}",
                    batch.len()
                );
                (batch, true)
            }
        };
        // A function error splits the batch first; splitting does not use up a retry.
        if function_error && mapping.bisect_on_error && rest.len() > 1 {
            let second = rest[rest.len() / 2..].to_vec();
            let first = rest[..rest.len() / 2].to_vec();
            pending.insert(0, (second, attempts));
            pending.insert(0, (first, attempts));
            continue;
        }
        let attempts = attempts + 1;
        if mapping
            .maximum_retry_attempts
            .is_some_and(|max| attempts > max)
        {
            let message = failure_message(name, shard_id, stream_arn, &rest, attempts);
            eprintln!(
                "[{name}] stream records {}..{} of shard {shard_id} exhausted their retries",
                sequence_number(&rest[0]),
                sequence_number(&rest[rest.len() - 1])
            );
            if let Some(destination) = destination {
                if let Err(e) = destination.send(message).await {
                    eprintln!("[{name}] sending to the on-failure destination failed: {e}");
                }
            }
            continue;
        }
        let doubling = 1u32 << attempts.min(4);
        let pause = (mapping.retry_backoff * doubling).min(Duration::from_secs(2));
        tokio::time::sleep(pause).await;
        pending.insert(0, (rest, attempts));
    }
}

/// What Lambda's on-failure destination receives for a stream batch: the shard and sequence
/// range to re-read, plus (locally, as nothing expires) the records themselves.
pub fn failure_message(
    function: &str,
    shard_id: &str,
    stream_arn: &str,
    records: &[Value],
    invokes: u64,
) -> Value {
    let arrival = |r: &Value| {
        r["dynamodb"]["ApproximateCreationDateTime"]
            .as_f64()
            .and_then(|s| chrono::DateTime::from_timestamp(s as i64, 0))
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    };
    json!({
        "requestContext": {
            "requestId": ulid::Ulid::new().to_string(),
            "functionArn": crate::wiring::function_arn(function),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invokes,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records.first().map(sequence_number),
            "endSequenceNumber": records.last().map(sequence_number),
            "approximateArrivalOfFirstRecord": records.first().and_then(arrival),
            "approximateArrivalOfLastRecord": records.last().and_then(arrival),
            "batchSize": records.len(),
            "streamArn": stream_arn,
        },
        "Records": records,
    })
}

/// One `DynamoDB` event source mapping, polling until shutdown.
pub struct StreamPoller<T, D> {
    pub stream: TableStream,
    pub target: T,
    pub destination: Option<D>,
    pub mapping: Mapping,
}

impl<T: StreamTarget, D: FailureDestination> StreamPoller<T, D> {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        // shard id → (records waiting for a batch, when the oldest arrived)
        let mut waiting: BTreeMap<String, (Vec<Value>, Instant)> = BTreeMap::new();
        while !*shutdown.borrow() {
            match self.stream.read_by_shard().await {
                Ok(shards) => {
                    for (shard, records) in shards {
                        let passing: Vec<Value> = records
                            .into_iter()
                            .filter(|r| self.mapping.passes(r))
                            .collect();
                        if passing.is_empty() {
                            continue;
                        }
                        waiting
                            .entry(shard)
                            .or_insert_with(|| (Vec::new(), Instant::now()))
                            .0
                            .extend(passing);
                    }
                }
                Err(error) => eprintln!(
                    "[{}] reading the stream failed: {error}",
                    self.target.name()
                ),
            }
            self.flush(&mut waiting).await;
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    /// Invokes every shard whose batch is full or whose batching window has passed.
    async fn flush(&self, waiting: &mut BTreeMap<String, (Vec<Value>, Instant)>) {
        let shards: Vec<String> = waiting.keys().cloned().collect();
        for shard in shards {
            let Some((records, since)) = waiting.get_mut(&shard) else {
                continue;
            };
            while records.len() >= self.mapping.batch_size
                || (!records.is_empty() && since.elapsed() >= self.mapping.batching_window)
            {
                let take = records.len().min(self.mapping.batch_size);
                let batch: Vec<Value> = records.drain(..take).collect();
                deliver(
                    &self.target,
                    self.destination.as_ref(),
                    &self.mapping,
                    &shard,
                    self.stream.stream_arn(),
                    batch,
                )
                .await;
                *since = Instant::now();
            }
            if records.is_empty() {
                waiting.remove(&shard);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn record(sequence: u32, sk: &str) -> Value {
        json!({
            "eventID": format!("e{sequence}"),
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": {"pk": {"S": "M#1"}, "sk": {"S": sk}},
                "SequenceNumber": sequence.to_string(),
            },
        })
    }

    fn records(count: u32) -> Vec<Value> {
        (1..=count)
            .map(|n| record(n, &format!("LEDGER#{n}")))
            .collect()
    }

    /// Answers each invocation with `respond(sequence numbers of the batch)`.
    struct FakeFunction<F> {
        respond: F,
        batches: Mutex<Vec<Vec<String>>>,
    }

    impl<F> FakeFunction<F> {
        fn new(respond: F) -> Self {
            Self {
                respond,
                batches: Mutex::new(Vec::new()),
            }
        }

        fn batches(&self) -> Vec<Vec<String>> {
            self.batches.lock().expect("lock").clone()
        }
    }

    impl<F> StreamTarget for FakeFunction<F>
    where
        F: Fn(&[String], usize) -> Result<Value, String> + Send + Sync,
    {
        fn name(&self) -> &str {
            "FakeFunction"
        }

        async fn invoke(&self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
            let event: Value = serde_json::from_slice(&payload).expect("event JSON");
            let sequences: Vec<String> = event["Records"]
                .as_array()
                .expect("Records")
                .iter()
                .map(|r| sequence_number(r).to_owned())
                .collect();
            let call = {
                let mut batches = self.batches.lock().expect("lock");
                batches.push(sequences.clone());
                batches.len()
            };
            (self.respond)(&sequences, call).map(|v| v.to_string().into_bytes())
        }
    }

    #[derive(Default)]
    struct FakeQueue {
        messages: Mutex<Vec<Value>>,
    }

    impl FailureDestination for FakeQueue {
        async fn send(&self, message: Value) -> Result<(), String> {
            self.messages.lock().expect("lock").push(message);
            Ok(())
        }
    }

    fn mapping(bisect: bool, retries: Option<u64>) -> Mapping {
        Mapping {
            batch_size: 100,
            batching_window: Duration::ZERO,
            bisect_on_error: bisect,
            maximum_retry_attempts: retries,
            report_batch_item_failures: true,
            filters: Vec::new(),
            retry_backoff: Duration::ZERO,
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_reported_item_failure_resumes_the_shard_from_that_record() {
        let function = FakeFunction::new(|_: &[String], call| {
            Ok(if call == 1 {
                json!({"batchItemFailures": [{"itemIdentifier": "4"}, {"itemIdentifier": "3"}]})
            } else {
                json!({"batchItemFailures": []})
            })
        });
        let queue = FakeQueue::default();
        deliver(
            &function,
            Some(&queue),
            &mapping(true, Some(3)),
            "shard-1",
            "arn",
            records(5),
        )
        .await;
        assert_eq!(
            function.batches(),
            vec![
                strings(&["1", "2", "3", "4", "5"]),
                strings(&["3", "4", "5"])
            ]
        );
        assert!(queue.messages.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_batch_failing_past_its_retries_is_described_to_the_on_failure_queue() {
        let function = FakeFunction::new(|_: &[String], _| Err("Unhandled: boom".to_owned()));
        let queue = FakeQueue::default();
        deliver(
            &function,
            Some(&queue),
            &mapping(false, Some(2)),
            "shard-7",
            "arn:stream",
            records(3),
        )
        .await;
        assert_eq!(function.batches().len(), 3, "the first try and two retries");
        let messages = queue.messages.lock().expect("lock").clone();
        assert_eq!(messages.len(), 1);
        let info = &messages[0]["DDBStreamBatchInfo"];
        assert_eq!(info["shardId"], "shard-7");
        assert_eq!(info["startSequenceNumber"], "1");
        assert_eq!(info["endSequenceNumber"], "3");
        assert_eq!(info["batchSize"], 3);
        assert_eq!(info["streamArn"], "arn:stream");
        assert_eq!(
            messages[0]["requestContext"]["condition"],
            "RetryAttemptsExhausted"
        );
        assert_eq!(messages[0]["Records"].as_array().map(Vec::len), Some(3));
    }

    #[tokio::test]
    async fn bisecting_isolates_the_failing_record_and_delivers_the_rest_in_order() {
        let function = FakeFunction::new(|batch: &[String], _| {
            if batch.iter().any(|s| s == "2") {
                Err("Unhandled: poison".to_owned())
            } else {
                Ok(json!({}))
            }
        });
        let queue = FakeQueue::default();
        deliver(
            &function,
            Some(&queue),
            &mapping(true, Some(1)),
            "shard-1",
            "arn",
            records(4),
        )
        .await;
        let delivered: Vec<String> = function
            .batches()
            .into_iter()
            .filter(|b| !b.contains(&"2".to_owned()))
            .flatten()
            .collect();
        assert_eq!(delivered, strings(&["1", "3", "4"]));
        let messages = queue.messages.lock().expect("lock").clone();
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0]["DDBStreamBatchInfo"]["startSequenceNumber"],
            "2"
        );
        assert_eq!(messages[0]["DDBStreamBatchInfo"]["endSequenceNumber"], "2");
    }

    #[tokio::test]
    async fn an_answer_naming_an_unknown_record_retries_the_whole_batch() {
        let function = FakeFunction::new(|_: &[String], call| {
            Ok(if call == 1 {
                json!({"batchItemFailures": [{"itemIdentifier": "999"}]})
            } else {
                json!(null)
            })
        });
        deliver::<_, FakeQueue>(
            &function,
            None,
            &mapping(false, None),
            "s",
            "arn",
            records(2),
        )
        .await;
        assert_eq!(
            function.batches(),
            vec![strings(&["1", "2"]), strings(&["1", "2"])]
        );
    }

    #[test]
    fn the_templates_filters_pass_profiles_ledger_entries_tiers_and_records_only() {
        let template = crate::template::Template::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../template.yaml"
        )))
        .expect("template parses");
        let event = template
            .functions
            .iter()
            .flat_map(|f| &f.stream_events)
            .next()
            .expect("a stream event");
        let mapping = Mapping::from_event(event).expect("filters parse");
        for sk in ["PROFILE", "LEDGER#01J", "TIER#gold", "REC"] {
            assert!(mapping.passes(&record(1, sk)), "{sk} passes");
        }
        for sk in ["PROFILEX", "IDEM#abc", "RECORD", "BALANCE"] {
            assert!(!mapping.passes(&record(1, sk)), "{sk} is dropped");
        }
    }

    #[test]
    fn filter_operators_match_as_lambda_documents() {
        let image =
            json!({"dynamodb": {"NewImage": {"kind": {"S": "earn"}, "points": {"N": "5"}}}});
        let passes = |pattern: Value| matches_pattern(&pattern, &image);
        assert!(passes(
            json!({"dynamodb": {"NewImage": {"kind": {"S": ["earn", "burn"]}}}})
        ));
        assert!(!passes(
            json!({"dynamodb": {"NewImage": {"kind": {"S": ["burn"]}}}})
        ));
        assert!(passes(
            json!({"dynamodb": {"NewImage": {"kind": {"S": [{"anything-but": ["burn"]}]}}}})
        ));
        assert!(!passes(
            json!({"dynamodb": {"NewImage": {"kind": {"S": [{"anything-but": "earn"}]}}}})
        ));
        assert!(passes(
            json!({"dynamodb": {"NewImage": {"kind": [{"exists": true}]}}})
        ));
        assert!(passes(
            json!({"dynamodb": {"NewImage": {"tier": [{"exists": false}]}}})
        ));
        assert!(!passes(
            json!({"dynamodb": {"NewImage": {"tier": [{"exists": true}]}}})
        ));
        assert!(passes(
            json!({"dynamodb": {"NewImage": {"points": {"N": [{"numeric": ["=", 5]}]}}}})
        ));
        assert!(!passes(
            json!({"dynamodb": {"OldImage": {"kind": {"S": ["earn"]}}}})
        ));
    }
}
