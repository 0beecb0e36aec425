//! A store wrapper that injects the faults DynamoDB Local never produces: transaction conflicts
//! (nothing applied) and lost responses (applied, but the caller hears a conflict).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use loyalty_core::idempotency::{IdempotencyRecord, IdempotencyScope};
use loyalty_core::ids::{MemberId, ReferralCode, RewardId};
use loyalty_core::ledger::LedgerEntry;
use loyalty_core::member::Member;
use loyalty_core::ports::{
    Commit, CommitError, LedgerStore, MemberStore, ProgramStore, PublishError, Record, RecordStore,
    RecordWrite, Snapshot, StoreError, TierStore,
};
use loyalty_core::program::ActiveProgram;
use loyalty_core::tiers::TierChange;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The transaction is refused with `TransactionConflict`; nothing is written.
    Conflict,
    /// The transaction is applied, then the response is lost and the caller sees a conflict.
    LostResponse,
}

pub struct Flaky<S> {
    inner: S,
    fault: Fault,
    remaining: AtomicU32,
}

impl<S> Flaky<S> {
    /// Injects `fault` into the next `times` commits.
    pub fn new(inner: S, fault: Fault, times: u32) -> Self {
        Self {
            inner,
            fault,
            remaining: AtomicU32::new(times),
        }
    }

    fn take_fault(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[async_trait]
impl<S: MemberStore> MemberStore for Flaky<S> {
    async fn member(&self, id: &MemberId) -> Result<Option<Member>, StoreError> {
        self.inner.member(id).await
    }
    async fn members(&self, ids: &[MemberId]) -> Result<Vec<Member>, StoreError> {
        self.inner.members(ids).await
    }
    async fn snapshot(
        &self,
        id: &MemberId,
        scope: Option<&IdempotencyScope>,
    ) -> Result<Snapshot, StoreError> {
        self.inner.snapshot(id, scope).await
    }
    async fn idempotency_record(
        &self,
        id: &MemberId,
        scope: &IdempotencyScope,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency_record(id, scope).await
    }
    async fn member_by_referral_code(
        &self,
        code: &ReferralCode,
    ) -> Result<Option<MemberId>, StoreError> {
        self.inner.member_by_referral_code(code).await
    }
    async fn transact(
        &self,
        commits: Vec<Commit>,
        records: Vec<RecordWrite>,
    ) -> Result<(), CommitError> {
        if !self.take_fault() {
            return self.inner.transact(commits, records).await;
        }
        match self.fault {
            Fault::Conflict => Err(CommitError::Conflict),
            Fault::LostResponse => {
                self.inner.transact(commits, records).await?;
                Err(CommitError::Conflict)
            }
        }
    }
}

#[async_trait]
impl<S: LedgerStore> LedgerStore for Flaky<S> {
    async fn entries_before(
        &self,
        id: &MemberId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.inner.entries_before(id, before_seq, limit).await
    }

    async fn entry(
        &self,
        id: &MemberId,
        entry_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.inner.entry(id, entry_id).await
    }
}

#[async_trait]
impl<S: ProgramStore> ProgramStore for Flaky<S> {
    async fn active_program(&self) -> Result<Option<ActiveProgram>, StoreError> {
        self.inner.active_program().await
    }
    async fn publish_program(&self, program: &ActiveProgram) -> Result<(), PublishError> {
        self.inner.publish_program(program).await
    }
    async fn stock_used(&self, rewards: &[RewardId]) -> Result<HashMap<RewardId, u32>, StoreError> {
        self.inner.stock_used(rewards).await
    }
}

#[async_trait]
impl<S: TierStore> TierStore for Flaky<S> {
    async fn tier_history(
        &self,
        id: &MemberId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: u32,
    ) -> Result<Vec<TierChange>, StoreError> {
        self.inner.tier_history(id, before, limit).await
    }
    async fn members_due(
        &self,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        self.inner.members_due(day, shard, cursor).await
    }
    async fn members_expiry_due(
        &self,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        self.inner.members_expiry_due(day, shard, cursor).await
    }
}

#[async_trait]
impl<S: RecordStore> RecordStore for Flaky<S> {
    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.inner.record(kind, id).await
    }
    async fn records_of(
        &self,
        kind: &str,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        self.inner.records_of(kind, owner, limit).await
    }
    async fn records_due(
        &self,
        kind: &str,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.inner.records_due(kind, day, shard, cursor).await
    }
}

#[async_trait]
impl<S: loyalty_core::ports::AudienceStore> loyalty_core::ports::AudienceStore for Flaky<S> {
    async fn audience_page(
        &self,
        audience: &loyalty_core::campaigns::AudienceQuery,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        self.inner.audience_page(audience, cursor, limit).await
    }
}
