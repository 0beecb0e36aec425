//! The ports adapters implement. They are split by concern, in the manner of per-operation store
//! traits, and joined by [`Store`] for handlers that need them all.
//!
//! The write side is one call, [`MemberStore::commit`]: everything a points movement changes is
//! applied atomically or not at all, and every uniqueness rule (entry id, idempotency key, member
//! id, referral code, stock) is a condition of that one write rather than a read before it.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::idempotency::{IdempotencyRecord, IdempotencyScope};
use crate::ids::{MemberId, ReferralCode, RewardId};
use crate::ledger::LedgerEntry;
use crate::member::Member;
use crate::program::ActiveProgram;
use crate::tiers::TierChange;

#[derive(Debug, Clone, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(pub String);

/// A member and, when the request carries a key, what that key already produced; read together
/// in one round trip.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub member: Option<Member>,
    pub replay: Option<IdempotencyRecord>,
    /// The active program's version as the store stamps it, read in the same round trip (see
    /// `App::program_at_least`): a function whose cached program is older refreshes it, so an
    /// admin change is seen by the next request. `None` when the store keeps no stamp.
    pub program_version: Option<u64>,
}

/// One reward unit taken from a limited stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockClaim {
    pub reward_id: RewardId,
    pub stock: u32,
    /// Give a unit back instead of taking one (a canceled or refunded redemption).
    pub release: bool,
}

/// Everything one points movement writes, applied all-or-nothing.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The member as it is after the movement.
    pub member: Member,
    /// The version the movement was computed from; `None` creates the member.
    pub expected_version: Option<u64>,
    pub entry: Option<LedgerEntry>,
    pub idempotency: Option<IdempotencyRecord>,
    /// Reserve the member's referral code (on enrolment).
    pub claim_referral_code: bool,
    pub stock: Option<StockClaim>,
    /// Recorded in the member's tier history, in the same write as the change itself.
    pub tier_change: Option<TierChange>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("member already exists")]
    MemberExists,
    #[error("member changed since it was read")]
    StaleMember,
    #[error("ledger entry already recorded")]
    DuplicateEntry,
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    #[error("referral code already taken")]
    ReferralCodeTaken,
    #[error("reward out of stock")]
    OutOfStock,
    /// A record's condition failed: it already exists, or changed since it was read.
    #[error("{kind} record '{id}' already exists or changed")]
    RecordConflict { kind: String, id: String },
    /// Another transaction touched the same items; safe to retry.
    #[error("transaction conflict")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait MemberStore: Send + Sync {
    /// The member, read strongly consistently.
    async fn member(&self, id: &MemberId) -> Result<Option<Member>, StoreError>;
    /// The members of `ids` that exist, strongly consistent. Adapters read them in as few round
    /// trips as they can (DynamoDB: one `BatchGetItem` per 100); this default reads one by one.
    async fn members(&self, ids: &[MemberId]) -> Result<Vec<Member>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.member(id).await?);
        }
        Ok(found)
    }
    /// The member and the idempotency record for `scope`, strongly consistent, one round trip.
    async fn snapshot(
        &self,
        id: &MemberId,
        scope: Option<&IdempotencyScope>,
    ) -> Result<Snapshot, StoreError>;
    async fn idempotency_record(
        &self,
        id: &MemberId,
        scope: &IdempotencyScope,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    async fn member_by_referral_code(
        &self,
        code: &ReferralCode,
    ) -> Result<Option<MemberId>, StoreError>;
    /// Applies member commits (possibly of several members) and record writes as one atomic
    /// write: all of it or none of it.
    async fn transact(
        &self,
        commits: Vec<Commit>,
        records: Vec<RecordWrite>,
    ) -> Result<(), CommitError>;

    async fn commit(&self, commit: Commit) -> Result<(), CommitError> {
        self.transact(vec![commit], Vec::new()).await
    }
}

/// A domain document other than members and ledger entries: a referral, a subscription, a
/// campaign, a promotion. Versioned, written under a condition, listable by owner, and
/// findable by a due day through a sharded index (billing dates, expiries).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub kind: String,
    pub id: String,
    /// Groups records for listing, e.g. the referrer's member id.
    pub owner: Option<String>,
    /// Starts at 1; every write of an existing record sets `version = previous + 1`.
    pub version: u64,
    /// Puts the record in the due index on this day.
    pub due: Option<chrono::NaiveDate>,
    /// A top-level integer `expires_at` (unix seconds) lets the store drop the record after
    /// that time (DynamoDB's TTL; it may lag by days, so readers still check).
    pub body: serde_json::Value,
}

impl Record {
    /// The record's body as a domain type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, StoreError> {
        T::deserialize(&self.body)
            .map_err(|e| StoreError(format!("{} record '{}': {e}", self.kind, self.id)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The record must not exist yet.
    Absent,
    /// The stored record must still have this version.
    Version(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordWrite {
    pub record: Record,
    pub expect: Expect,
}

#[async_trait]
pub trait RecordStore: Send + Sync {
    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError>;
    /// Up to `limit` records of `kind` owned by `owner`, newest id first.
    async fn records_of(
        &self,
        kind: &str,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError>;
    /// One page of the ids of `kind` records due on `day` in `shard`, and the next page's cursor.
    async fn records_due(
        &self,
        kind: &str,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError>;
}

#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Up to `limit` entries with `seq < before_seq`, newest first.
    async fn entries_before(
        &self,
        id: &MemberId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError>;
    /// The member's entry with id `entry_id` (the id its business key gave it), read by key:
    /// what an order earned, for the return that takes it back.
    async fn entry(&self, id: &MemberId, entry_id: &str)
        -> Result<Option<LedgerEntry>, StoreError>;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Someone published another version first.
    #[error("program version {0} already exists")]
    VersionTaken(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait ProgramStore: Send + Sync {
    async fn active_program(&self) -> Result<Option<ActiveProgram>, StoreError>;
    /// Stores `program` as the new active version; it must be exactly one past the current one.
    async fn publish_program(&self, program: &ActiveProgram) -> Result<(), PublishError>;
    /// Units redeemed so far for each limited-stock reward asked about.
    async fn stock_used(&self, rewards: &[RewardId]) -> Result<HashMap<RewardId, u32>, StoreError>;
}

/// Tier bookkeeping that is not on the member item.
#[async_trait]
pub trait TierStore: Send + Sync {
    /// Up to `limit` tier changes, newest first, older than `before` when given.
    async fn tier_history(
        &self,
        id: &MemberId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: u32,
    ) -> Result<Vec<TierChange>, StoreError>;
    /// One page of the members whose tier review falls on `day`, in shard `shard`, and the cursor
    /// of the next page.
    async fn members_due(
        &self,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError>;
    /// One page of the members the daily points run has work for on `day` (a pending lot to
    /// release, a lot to expire or warn about: [`crate::member::Member::points_due`]), in shard
    /// `shard`, and the cursor of the next page (see [`crate::expiry`], [`crate::pending`]).
    async fn members_expiry_due(
        &self,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError>;
}

/// Walks campaign audiences that live in indexes.
#[async_trait]
pub trait AudienceStore: Send + Sync {
    /// Up to `limit` member ids of the audience from `cursor` on, and the next cursor.
    async fn audience_page(
        &self,
        audience: &crate::campaigns::AudienceQuery,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError>;
}

/// Review dates are spread over this many index partitions so that one night's evaluations do
/// not all land on one.
pub const REVIEW_SHARDS: u32 = 16;

/// Everything the services need from storage.
pub trait Store:
    MemberStore + LedgerStore + ProgramStore + TierStore + RecordStore + AudienceStore + 'static
{
}

impl<
        T: MemberStore
            + LedgerStore
            + ProgramStore
            + TierStore
            + RecordStore
            + AudienceStore
            + 'static,
    > Store for T
{
}

/// A queue the services send messages to (outgoing events, fan-out work). Bodies are JSON.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    async fn send(&self, bodies: Vec<String>) -> Result<(), StoreError>;

    /// Sends one message that becomes visible after `delay` (SQS allows at most 15 minutes).
    /// Queues that cannot delay refuse, rather than deliver early.
    async fn send_delayed(
        &self,
        _body: String,
        _delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        Err(StoreError("this queue cannot delay messages".into()))
    }
}

/// The due-index shard of an id: a stable hash (FNV-1a), so an id's shard never moves.
pub fn shard_of(id: &str) -> u32 {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % REVIEW_SHARDS
}

/// The review-index shard of a member.
pub fn review_shard(id: &MemberId) -> u32 {
    shard_of(id.as_str())
}
