//! Walking campaign audiences through indexes: members by tier (GSI3, one partition per shard)
//! and members by enrolment day (GSI1, one partition per day). The cursor names the partition
//! and DynamoDB's `LastEvaluatedKey` within it.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use chrono::Days;
use loyalty_core::campaigns::AudienceQuery;
use loyalty_core::ids::MemberId;
use loyalty_core::ports::{AudienceStore, StoreError, REVIEW_SHARDS};
use serde::{Deserialize, Serialize};

use crate::capacity::Units;
use crate::items::s;
use crate::{keys, DynamoStore};

/// Index partitions one page reads at most. An audience spanning many empty partitions (an
/// enrolment range of decades is one partition per day) is walked over many dispatcher steps, each
/// well inside the function's timeout, instead of one step that never finishes.
const PARTITIONS_PER_PAGE: u64 = 64;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    part: u64,
    #[serde(default)]
    key: Option<HashMap<String, String>>,
}

struct Partition {
    index: &'static str,
    pk_attr: &'static str,
    sk_attr: &'static str,
    pk: String,
}

/// The index partitions an audience spans, in walking order; `None` past the last.
fn partition(audience: &AudienceQuery, part: u64) -> Option<Partition> {
    match audience {
        AudienceQuery::Tier(tier) => (part < u64::from(REVIEW_SHARDS)).then(|| Partition {
            index: keys::GSI3,
            pk_attr: keys::GSI3_PK,
            sk_attr: keys::GSI3_SK,
            pk: keys::tier_gsi3pk(tier, part as u32),
        }),
        AudienceQuery::EnrolledBetween(from, to) => {
            let day = from.checked_add_days(Days::new(part))?;
            (day <= *to).then(|| Partition {
                index: keys::GSI1,
                pk_attr: keys::GSI1_PK,
                sk_attr: keys::GSI1_SK,
                pk: keys::enrolled_gsi1pk(&day.format("%Y-%m-%d").to_string()),
            })
        }
    }
}

#[async_trait]
impl AudienceStore for DynamoStore {
    async fn audience_page(
        &self,
        audience: &AudienceQuery,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        let mut cursor: Cursor = match cursor {
            Some(text) => {
                serde_json::from_str(&text).map_err(|_| StoreError("bad audience cursor".into()))?
            }
            None => Cursor::default(),
        };
        let mut members = Vec::new();
        let first_part = cursor.part;
        while members.len() < limit && cursor.part - first_part < PARTITIONS_PER_PAGE {
            let Some(partition) = partition(audience, cursor.part) else {
                return Ok((members, None));
            };
            let start = cursor.key.take().map(|k| {
                k.into_iter()
                    .map(|(n, v)| (n, AttributeValue::S(v)))
                    .collect()
            });
            let output = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name(partition.index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", partition.pk_attr)
                .expression_attribute_values(":pk", s(partition.pk))
                .set_exclusive_start_key(start)
                .limit((limit - members.len()) as i32)
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
            for item in output.items.unwrap_or_default() {
                if let Some(id) = item.get(partition.sk_attr).and_then(|v| v.as_s().ok()) {
                    members.push(MemberId::parse(id).map_err(|e| StoreError(e.message))?);
                }
            }
            match output.last_evaluated_key {
                Some(key) => {
                    cursor.key = Some(
                        key.into_iter()
                            .filter_map(|(n, v)| v.as_s().ok().map(|s| (n, s.clone())))
                            .collect(),
                    );
                }
                None => cursor.part += 1,
            }
        }
        let more = cursor.key.is_some() || partition(audience, cursor.part).is_some();
        let next = if more {
            Some(serde_json::to_string(&cursor).map_err(|e| StoreError(e.to_string()))?)
        } else {
            None
        };
        Ok((members, next))
    }
}
