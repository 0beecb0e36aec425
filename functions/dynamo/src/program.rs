use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, ReturnConsumedCapacity, TransactWriteItem};
use loyalty_core::ids::RewardId;
use loyalty_core::ports::{ProgramStore, PublishError, StoreError};
use loyalty_core::program::ActiveProgram;

use crate::capacity::Units;
use crate::items::{self, key, n};
use crate::{keys, DynamoStore};

impl DynamoStore {
    fn program_put(
        &self,
        item: items::Item,
        condition: &str,
        previous: Option<u64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        if let Some(previous) = previous {
            put = put.expression_attribute_values(":previous", n(previous));
        }
        let put = put
            .build()
            .map_err(|e| StoreError(format!("build put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl ProgramStore for DynamoStore {
    async fn active_program(&self) -> Result<Option<ActiveProgram>, StoreError> {
        self.get_item(key(keys::PROGRAM_PK.to_owned(), keys::PROGRAM_ACTIVE_SK))
            .await?
            .map(|item| items::program(&item))
            .transpose()
    }

    /// Writes the version's history item and moves the active pointer in one transaction; the
    /// pointer only moves from the version before, so two publishers cannot both win.
    async fn publish_program(&self, program: &ActiveProgram) -> Result<(), PublishError> {
        let history = items::program_item(program, keys::program_version_sk(program.version))?;
        let active = items::program_item(program, keys::PROGRAM_ACTIVE_SK.to_owned())?;
        let pointer = match program.version {
            1 => self.program_put(active, "attribute_not_exists(pk)", None)?,
            version => self.program_put(active, "version = :previous", Some(version - 1))?,
        };
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(self.program_put(history, "attribute_not_exists(pk)", None)?)
            .transact_items(pointer);
        // The version stamps move with the pointer (see `keys::stamp_pk`); the pointer's
        // condition already makes publishes sequential, so they need none of their own.
        for shard in 0..keys::STAMP_SHARDS {
            let mut stamp = key(keys::stamp_pk(shard), keys::STAMP_SK);
            stamp.insert("version".to_owned(), n(program.version));
            let put = Put::builder()
                .table_name(&*self.table)
                .set_item(Some(stamp))
                .build()
                .map_err(|e| StoreError(format!("build put: {e}")))?;
            request = request.transact_items(TransactWriteItem::builder().put(put).build());
        }
        let result = request
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(output) => {
                self.meter.record(Units::Write, output.consumed_capacity());
                Ok(())
            }
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                ) =>
            {
                Err(PublishError::VersionTaken(program.version))
            }
            Err(e) => Err(StoreError(format!(
                "TransactWriteItems: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            ))
            .into()),
        }
    }

    async fn stock_used(&self, rewards: &[RewardId]) -> Result<HashMap<RewardId, u32>, StoreError> {
        let mut used = HashMap::new();
        for chunk in rewards.chunks(100) {
            let keys = chunk
                .iter()
                .map(|r| key(keys::stock_pk(r), keys::STOCK_SK))
                .collect();
            for item in self.get_items(keys).await? {
                let pk = item
                    .get(keys::PK)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                if let Some(reward) = chunk.iter().find(|r| keys::stock_pk(r) == pk) {
                    used.insert(reward.clone(), items::stock_used(&item));
                }
            }
        }
        Ok(used)
    }
}
