use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use chrono::{DateTime, NaiveDate, Utc};
use loyalty_core::ids::MemberId;
use loyalty_core::ports::{StoreError, TierStore};
use loyalty_core::tiers::TierChange;

use crate::capacity::Units;
use crate::items::{self, s};
use crate::{keys, DynamoStore};

fn query_error(e: impl std::fmt::Debug + std::fmt::Display) -> StoreError {
    StoreError(format!("Query: {e}"))
}

/// Review-index pages continue from DynamoDB's `LastEvaluatedKey`, carried as JSON text.
fn encode_cursor(key: HashMap<String, AttributeValue>) -> Option<String> {
    let plain: HashMap<String, String> = key
        .into_iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k, s.clone())))
        .collect();
    serde_json::to_string(&plain).ok()
}

fn decode_cursor(cursor: &str) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let plain: HashMap<String, String> =
        serde_json::from_str(cursor).map_err(|_| StoreError("bad review cursor".into()))?;
    Ok(plain
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

#[async_trait]
impl TierStore for DynamoStore {
    async fn tier_history(
        &self,
        id: &MemberId,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<TierChange>, StoreError> {
        let high = match before {
            Some(before) => keys::tier_sk(before),
            // Just past every "TIER#<time>" key.
            None => format!("{}~", keys::TIER_PREFIX),
        };
        let output = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", s(keys::member_pk(id)))
            .expression_attribute_values(":low", s(keys::TIER_PREFIX))
            .expression_attribute_values(":high", s(high.clone()))
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| query_error(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        self.meter.record(Units::Read, output.consumed_capacity());
        // BETWEEN is inclusive; the cursor's own change was on the previous page.
        let items = output.items.unwrap_or_default().into_iter().filter(|item| {
            item.get(keys::SK)
                .and_then(|v| v.as_s().ok())
                .is_some_and(|sk| *sk != high)
        });
        items.take(limit as usize).map(items::from_item).collect()
    }

    async fn members_due(
        &self,
        day: NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        self.members_page(DueIndex::DUE, keys::review_gsi2pk(day, shard), cursor)
            .await
    }

    async fn members_expiry_due(
        &self,
        day: NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        self.members_page(DueIndex::EXPIRY, keys::expiry_gsi4pk(day, shard), cursor)
            .await
    }
}

/// A sparse keys-only index and its key attributes.
struct DueIndex {
    name: &'static str,
    pk: &'static str,
    sk: &'static str,
}

impl DueIndex {
    const DUE: Self = Self {
        name: keys::GSI2,
        pk: keys::GSI2_PK,
        sk: keys::GSI2_SK,
    };
    const EXPIRY: Self = Self {
        name: keys::GSI4,
        pk: keys::GSI4_PK,
        sk: keys::GSI4_SK,
    };
}

impl DynamoStore {
    /// One page of a GSI2 partition: the `gsi2sk` values and the cursor of the next page.
    pub(crate) async fn index_page(
        &self,
        gsi2pk: String,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.page_of(DueIndex::DUE, gsi2pk, cursor).await
    }

    /// One page of partition `pk` of a due index whose sort keys are member ids.
    async fn members_page(
        &self,
        index: DueIndex,
        pk: String,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        let (ids, next) = self.page_of(index, pk, cursor).await?;
        let members = ids
            .iter()
            .map(|id| MemberId::parse(id).map_err(|e| StoreError(e.message)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((members, next))
    }

    /// One page of partition `pk` of `index`: its sort-key values and the next page's cursor.
    async fn page_of(
        &self,
        index: DueIndex,
        pk: String,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let output = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(index.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", index.pk)
            .expression_attribute_values(":pk", s(pk))
            .set_exclusive_start_key(cursor.as_deref().map(decode_cursor).transpose()?)
            .limit(500)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| query_error(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        self.meter.record(Units::Read, output.consumed_capacity());
        let ids = output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item.get(index.sk).and_then(|v| v.as_s().ok()).cloned())
            .collect();
        Ok((ids, output.last_evaluated_key.and_then(encode_cursor)))
    }
}
