use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use loyalty_core::ids::MemberId;
use loyalty_core::ledger::LedgerEntry;
use loyalty_core::ports::{LedgerStore, StoreError};

use crate::capacity::Units;
use crate::items::{self, s};
use crate::{keys, DynamoStore};

#[async_trait]
impl LedgerStore for DynamoStore {
    /// One `Query` on the member's partition, walking the ledger sort keys downwards from
    /// `before_seq`: the cost is the page, never the history.
    async fn entries_before(
        &self,
        id: &MemberId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        if before_seq <= 1 {
            return Ok(Vec::new());
        }
        let output = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", s(keys::member_pk(id)))
            .expression_attribute_values(":low", s(keys::ledger_sk(0)))
            .expression_attribute_values(":high", s(keys::ledger_sk(before_seq - 1)))
            .scan_index_forward(false)
            .limit(limit as i32)
            .consistent_read(true)
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
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(items::from_item)
            .collect()
    }

    /// Two reads by key: the entry-id guard names the entry's sequence number, which is its
    /// sort key. Neither read grows with the member's history.
    async fn entry(
        &self,
        id: &MemberId,
        entry_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let member_pk = keys::member_pk(id);
        let guard = self
            .get_item(items::key(
                member_pk.clone(),
                keys::entry_guard_sk(entry_id),
            ))
            .await?;
        let Some(seq) = guard
            .as_ref()
            .and_then(|item| item.get("seq"))
            .and_then(|seq| seq.as_n().ok())
            .and_then(|seq| seq.parse::<u64>().ok())
        else {
            return Ok(None);
        };
        self.get_item(items::key(member_pk, keys::ledger_sk(seq)))
            .await?
            .map(items::from_item)
            .transpose()
    }
}
