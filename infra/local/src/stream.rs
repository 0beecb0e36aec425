//! A table's stream in DynamoDB Local, read as Lambda's event source mapping reads it: every
//! shard from `TRIM_HORIZON`, parents before children, each shard's records in order. Each
//! record comes out as the JSON record a `DynamoDB` event carries (`eventID`, `eventName`,
//! `dynamodb.Keys/NewImage/OldImage/SequenceNumber`, …), so what reads it — the runner's
//! mapping, or a test relaying through the outbox — sees the real stream images.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::LocalError;

/// Records asked for per `GetRecords` call (the API's maximum).
const RECORDS_PER_CALL: i32 = 1000;

/// A streams client for the DynamoDB Local at `endpoint` (it serves the Streams API too).
pub fn client(endpoint: &str, region: &str) -> Client {
    let config = aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .build();
    Client::from_conf(config)
}

/// Where reading one shard has got to.
#[derive(Debug)]
struct ShardCursor {
    shard_id: String,
    /// The iterator for the next `GetRecords`; `None` once a closed shard is read to its end.
    iterator: Option<String>,
    /// The last record read, to ask for a fresh iterator after it when one expires.
    last_sequence: Option<String>,
}

/// One table's stream, read from its beginning.
#[derive(Debug)]
pub struct TableStream {
    client: Client,
    stream_arn: String,
    region: String,
    shards: Vec<ShardCursor>,
    /// Records read by a call that then failed, returned by the next one.
    unreturned: Vec<(String, Vec<Value>)>,
}

impl TableStream {
    /// The stream of `table` (it must have one: see `StreamSpecification` in the template).
    pub async fn open(
        dynamodb: &aws_sdk_dynamodb::Client,
        streams: Client,
        table: &str,
    ) -> Result<Self, LocalError> {
        let described = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| dynamo(format!("describing {table}"), &e))?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| LocalError::Dynamo(format!("table {table} has no stream")))?
            .to_owned();
        let region = streams
            .config()
            .region()
            .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
        Ok(Self {
            client: streams,
            stream_arn,
            region,
            shards: Vec::new(),
            unreturned: Vec::new(),
        })
    }

    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// Every record written since the last read (all of them on the first), in shard order,
    /// as `DynamoDB` event records.
    pub async fn read(&mut self) -> Result<Vec<Value>, LocalError> {
        let shards = self.read_by_shard().await?;
        Ok(shards
            .into_iter()
            .flat_map(|(_, records)| records)
            .collect())
    }

    /// Like [`TableStream::read`], each shard's new records under its shard id (shards with
    /// nothing new left out), parents first.
    pub async fn read_by_shard(&mut self) -> Result<Vec<(String, Vec<Value>)>, LocalError> {
        self.discover_shards().await?;
        // Records read before an error were already passed by their cursors: they are kept
        // for the next read rather than lost.
        let mut shards = std::mem::take(&mut self.unreturned);
        for index in 0..self.shards.len() {
            let mut records = Vec::new();
            let read = self.read_shard(index, &mut records).await;
            if !records.is_empty() {
                let id = &self.shards[index].shard_id;
                match shards.iter_mut().find(|(shard, _)| shard == id) {
                    Some((_, earlier)) => earlier.extend(records),
                    None => shards.push((id.clone(), records)),
                }
            }
            if let Err(error) = read {
                self.unreturned = shards;
                return Err(error);
            }
        }
        Ok(shards)
    }

    /// Adds the shards not seen yet, each from its first record (`DescribeStream` lists
    /// parents before their children).
    async fn discover_shards(&mut self) -> Result<(), LocalError> {
        let mut start = None;
        loop {
            let page = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|e| dynamo("DescribeStream".into(), &e))?;
            let Some(description) = page.stream_description() else {
                return Ok(());
            };
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                if self.shards.iter().any(|s| s.shard_id == id) {
                    continue;
                }
                let iterator = self.iterator(id, None).await?;
                self.shards.push(ShardCursor {
                    shard_id: id.to_owned(),
                    iterator,
                    last_sequence: None,
                });
            }
            // DynamoDB Local names the last shard again on the final page: a page with no new
            // shard id ends the listing too.
            let next = description.last_evaluated_shard_id().map(str::to_owned);
            if next.is_none() || next == start || description.shards().is_empty() {
                return Ok(());
            }
            start = next;
        }
    }

    /// An iterator at the shard's start, or just after `after`.
    async fn iterator(
        &self,
        shard_id: &str,
        after: Option<&str>,
    ) -> Result<Option<String>, LocalError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard_id);
        let request = match after {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let answer = request
            .send()
            .await
            .map_err(|e| dynamo(format!("GetShardIterator {shard_id}"), &e))?;
        Ok(answer.shard_iterator().map(str::to_owned))
    }

    /// Reads shard `index` until it has nothing more for now (or is closed and done).
    async fn read_shard(&mut self, index: usize, out: &mut Vec<Value>) -> Result<(), LocalError> {
        let mut renewed = false;
        while let Some(iterator) = self.shards[index].iterator.clone() {
            let answer = match self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(RECORDS_PER_CALL)
                .send()
                .await
            {
                Ok(answer) => answer,
                // Iterators expire (15 minutes on AWS), and DynamoDB Local answers an iterator
                // taken on a shard that was still empty as trimmed: take a fresh one after the
                // last record read (or from the shard's start).
                Err(error)
                    if !renewed
                        && error.as_service_error().is_some_and(|e| {
                            e.is_expired_iterator_exception()
                                || e.is_trimmed_data_access_exception()
                        }) =>
                {
                    renewed = true;
                    let cursor = &self.shards[index];
                    let fresh = self
                        .iterator(&cursor.shard_id, cursor.last_sequence.as_deref())
                        .await?;
                    self.shards[index].iterator = fresh;
                    continue;
                }
                Err(error) => return Err(dynamo("GetRecords".into(), &error)),
            };
            let cursor = &mut self.shards[index];
            cursor.iterator = answer.next_shard_iterator().map(str::to_owned);
            if answer.records().is_empty() {
                return Ok(());
            }
            for record in answer.records() {
                if let Some(sequence) = record.dynamodb().and_then(|d| d.sequence_number()) {
                    cursor.last_sequence = Some(sequence.to_owned());
                }
                out.push(event_record(record, &self.stream_arn, &self.region));
            }
        }
        Ok(())
    }
}

/// A stream record as Lambda puts it in a `DynamoDB` event.
pub fn event_record(record: &Record, stream_arn: &str, region: &str) -> Value {
    let mut change = Map::new();
    if let Some(stream) = record.dynamodb() {
        if let Some(at) = stream.approximate_creation_date_time() {
            change.insert(
                "ApproximateCreationDateTime".into(),
                json!(at.as_secs_f64().floor()),
            );
        }
        for (name, image) in [
            ("Keys", stream.keys()),
            ("NewImage", stream.new_image()),
            ("OldImage", stream.old_image()),
        ] {
            if let Some(image) = image {
                change.insert(name.into(), item(image));
            }
        }
        change.insert("SequenceNumber".into(), json!(stream.sequence_number()));
        change.insert("SizeBytes".into(), json!(stream.size_bytes().unwrap_or(0)));
        if let Some(view) = stream.stream_view_type() {
            change.insert("StreamViewType".into(), json!(view.as_str()));
        }
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str()),
        "eventVersion": record.event_version(),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    })
}

/// An item in DynamoDB's JSON form (`{"S": "…"}`, `{"N": "…"}`, …), as stream events carry it.
fn item(image: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        image
            .iter()
            .map(|(name, value)| (name.clone(), attribute(value)))
            .collect(),
    )
}

fn attribute(value: &AttributeValue) -> Value {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b.as_ref()) }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => {
            json!({ "BS": v.iter().map(|b| b64(b.as_ref())).collect::<Vec<_>>() })
        }
        AttributeValue::M(m) => json!({ "M": item(m) }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(attribute).collect::<Vec<_>>() }),
        AttributeValue::Null(n) => json!({ "NULL": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        // A type newer than this SDK: kept visible rather than dropped.
        other => json!({ "UNKNOWN": format!("{other:?}") }),
    }
}

fn dynamo<E: std::error::Error + 'static>(what: String, error: &E) -> LocalError {
    LocalError::Dynamo(format!("{what}: {}", DisplayErrorContext(error)))
}
