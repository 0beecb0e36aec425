//! Domain records (referrals, subscriptions, campaigns, ...) as items: the body is JSON text,
//! the version is the write condition, and two sparse indexes list them by owner and by due day.
//! A body with a numeric `expires_at` (epoch seconds) puts it on the item as the table's TTL
//! attribute: records only useful for a while (a day's transfer counter, an expiry warning) go
//! away by themselves.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, ReturnConsumedCapacity, TransactWriteItem};
use chrono::NaiveDate;
use loyalty_core::ports::{shard_of, Expect, Record, RecordStore, RecordWrite, StoreError};

use crate::capacity::Units;
use crate::items::{key, n, s, Item};
use crate::{keys, DynamoStore};

fn record_item(record: &Record) -> Item {
    let mut item = key(keys::record_pk(&record.kind, &record.id), keys::RECORD_SK);
    item.insert("kind".into(), s(record.kind.as_str()));
    item.insert("id".into(), s(record.id.as_str()));
    item.insert("version".into(), n(record.version));
    item.insert("body".into(), s(record.body.to_string()));
    if let Some(owner) = &record.owner {
        item.insert("owner".into(), s(owner.as_str()));
        item.insert(
            keys::GSI1_PK.into(),
            s(keys::owner_gsi1pk(&record.kind, owner)),
        );
        item.insert(keys::GSI1_SK.into(), s(record.id.as_str()));
    }
    if let Some(expires_at) = record.body.get("expires_at").and_then(|v| v.as_i64()) {
        item.insert(keys::TTL.into(), n(expires_at));
    }
    if let Some(day) = record.due {
        item.insert("due".into(), s(day.to_string()));
        item.insert(
            keys::GSI2_PK.into(),
            s(keys::due_gsi2pk(&record.kind, day, shard_of(&record.id))),
        );
        item.insert(keys::GSI2_SK.into(), s(record.id.as_str()));
    }
    item
}

fn record_of(item: &Item) -> Result<Record, StoreError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let missing = |name: &str| StoreError(format!("record item lacks '{name}'"));
    Ok(Record {
        kind: text("kind").ok_or_else(|| missing("kind"))?,
        id: text("id").ok_or_else(|| missing("id"))?,
        owner: text("owner"),
        version: item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| missing("version"))?,
        due: text("due").and_then(|d| d.parse().ok()),
        body: serde_json::from_str(&text("body").ok_or_else(|| missing("body"))?)
            .map_err(|e| StoreError(format!("record body: {e}")))?,
    })
}

impl DynamoStore {
    pub(crate) fn record_write(
        &self,
        write: &RecordWrite,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(record_item(&write.record)));
        put = match write.expect {
            Expect::Absent => put.condition_expression("attribute_not_exists(pk)"),
            Expect::Version(version) => put
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(version)),
        };
        let put = put
            .build()
            .map_err(|e| StoreError(format!("build put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl RecordStore for DynamoStore {
    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.get_item(key(keys::record_pk(kind, id), keys::RECORD_SK))
            .await?
            .map(|item| record_of(&item))
            .transpose()
    }

    async fn records_of(
        &self,
        kind: &str,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(keys::GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", keys::GSI1_PK)
            .expression_attribute_values(":pk", s(keys::owner_gsi1pk(kind, owner)))
            .scan_index_forward(false)
            .limit(limit.min(100) as i32)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| {
                StoreError(format!(
                    "Query: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                ))
            })?;
        self.meter.record(Units::Read, output.consumed_capacity());
        let keys: Vec<Item> = output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.get(keys::GSI1_SK).and_then(|v| v.as_s().ok()))
            .map(|id| key(keys::record_pk(kind, id), keys::RECORD_SK))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut records = self
            .get_items(keys)
            .await?
            .iter()
            .map(record_of)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(records)
    }

    async fn records_due(
        &self,
        kind: &str,
        day: NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.index_page(keys::due_gsi2pk(kind, day, shard), cursor)
            .await
    }
}
