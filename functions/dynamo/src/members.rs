use async_trait::async_trait;
use aws_sdk_dynamodb::types::{KeysAndAttributes, ReturnConsumedCapacity};
use loyalty_core::idempotency::{IdempotencyRecord, IdempotencyScope};
use loyalty_core::ids::{MemberId, ReferralCode};
use loyalty_core::member::Member;
use loyalty_core::ports::{
    shard_of, Commit, CommitError, MemberStore, RecordWrite, Snapshot, StoreError,
};

use crate::capacity::Units;
use crate::items::{self, key, Item};
use crate::{keys, DynamoStore};

fn sdk_error(operation: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{operation}: {error}"))
}

impl DynamoStore {
    pub(crate) async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        self.meter.record(Units::Read, output.consumed_capacity());
        Ok(output.item)
    }

    /// Strongly consistent reads of up to 100 keys in one `BatchGetItem`, following
    /// `UnprocessedKeys` until every key is answered.
    pub(crate) async fn get_items(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| sdk_error("BatchGetItem", e))?,
        );
        while let Some(request) = pending.take() {
            let output = self
                .client
                .batch_get_item()
                .request_items(&*self.table, request)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        "BatchGetItem",
                        aws_sdk_dynamodb::error::DisplayErrorContext(e),
                    )
                })?;
            self.meter.record(Units::Read, output.consumed_capacity());
            if let Some(mut responses) = output.responses {
                found.extend(responses.remove(&*self.table).unwrap_or_default());
            }
            pending = output
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(&*self.table))
                .filter(|rest| !rest.keys().is_empty());
        }
        Ok(found)
    }
}

fn sk_of(item: &Item) -> Option<&str> {
    item.get(keys::SK)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

#[async_trait]
impl MemberStore for DynamoStore {
    async fn member(&self, id: &MemberId) -> Result<Option<Member>, StoreError> {
        self.get_item(key(keys::member_pk(id), keys::PROFILE))
            .await?
            .map(items::from_item)
            .transpose()
    }

    async fn snapshot(
        &self,
        id: &MemberId,
        scope: Option<&IdempotencyScope>,
    ) -> Result<Snapshot, StoreError> {
        let pk = keys::member_pk(id);
        let idempotency_sk = scope.map(keys::scope_sk);
        let stamp_pk = keys::stamp_pk(shard_of(id.as_str()) % keys::STAMP_SHARDS);
        let mut wanted = vec![
            key(pk.clone(), keys::PROFILE),
            key(stamp_pk.clone(), keys::STAMP_SK),
        ];
        if let Some(sk) = &idempotency_sk {
            wanted.push(key(pk, sk.clone()));
        }
        let found = self.get_items(wanted).await?;
        let mut snapshot = Snapshot::default();
        for item in found {
            let pk_of = item.get(keys::PK).and_then(|v| v.as_s().ok());
            if pk_of == Some(&stamp_pk) {
                snapshot.program_version = item
                    .get("version")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok());
                continue;
            }
            match sk_of(&item) {
                Some(keys::PROFILE) => snapshot.member = Some(items::from_item(item)?),
                Some(sk) if Some(sk) == idempotency_sk.as_deref() => {
                    snapshot.replay = Some(items::idempotency_record(&item)?)
                }
                _ => {}
            }
        }
        Ok(snapshot)
    }

    /// One `BatchGetItem` per 100 members (the campaign worker's 25 cost one round trip).
    async fn members(&self, ids: &[MemberId]) -> Result<Vec<Member>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let wanted = chunk
                .iter()
                .map(|id| key(keys::member_pk(id), keys::PROFILE))
                .collect();
            for item in self.get_items(wanted).await? {
                found.push(items::from_item(item)?);
            }
        }
        Ok(found)
    }

    async fn idempotency_record(
        &self,
        id: &MemberId,
        scope: &IdempotencyScope,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get_item(key(keys::member_pk(id), keys::scope_sk(scope)))
            .await?
            .map(|item| items::idempotency_record(&item))
            .transpose()
    }

    async fn member_by_referral_code(
        &self,
        code: &ReferralCode,
    ) -> Result<Option<MemberId>, StoreError> {
        let Some(item) = self
            .get_item(key(keys::referral_pk(code), keys::REFERRAL_SK))
            .await?
        else {
            return Ok(None);
        };
        let raw = item
            .get("member_id")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError("referral code item lacks member_id".into()))?;
        MemberId::parse(raw)
            .map(Some)
            .map_err(|e| StoreError(e.message))
    }

    async fn transact(
        &self,
        commits: Vec<Commit>,
        records: Vec<RecordWrite>,
    ) -> Result<(), CommitError> {
        self.transact_all(&commits, &records).await
    }
}
