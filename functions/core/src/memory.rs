//! An in-memory store with the same conditional semantics as the DynamoDB adapter: every commit
//! checks all its conditions first and then applies all its writes, under one lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::events::catalog::Change;
use crate::idempotency::{IdempotencyRecord, IdempotencyScope};
use crate::ids::{MemberId, ReferralCode, RewardId};
use crate::ledger::LedgerEntry;
use crate::member::Member;
use crate::ports::{
    review_shard, shard_of, Commit, CommitError, Expect, LedgerStore, MemberStore, ProgramStore,
    PublishError, Record, RecordStore, RecordWrite, Snapshot, StoreError, TierStore,
};
use crate::program::ActiveProgram;
use crate::tiers::TierChange;

#[derive(Debug, Default)]
struct State {
    members: HashMap<MemberId, Member>,
    /// Per member, entries by sequence number.
    ledgers: HashMap<MemberId, BTreeMap<u64, LedgerEntry>>,
    entry_ids: HashMap<(MemberId, String), u64>,
    /// Program-wide business keys (an order earns once per program), and who holds each.
    program_keys: HashMap<String, MemberId>,
    idempotency: HashMap<(MemberId, String), IdempotencyRecord>,
    referral_codes: HashMap<String, MemberId>,
    stock_used: HashMap<RewardId, u32>,
    programs: Vec<ActiveProgram>,
    tier_history: HashMap<MemberId, Vec<TierChange>>,
    records: HashMap<(String, String), Record>,
    commits: u64,
    /// The change feed (what the table's stream reports): every item a commit wrote, in commit
    /// order, not yet taken by [`MemoryStore::take_changes`]. Off unless asked for
    /// ([`MemoryStore::with_change_feed`]), so long runs do not keep a copy of every write.
    feed: Option<Vec<Change>>,
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

fn scope_key(scope: &IdempotencyScope) -> String {
    format!("{}#{}", scope.operation.as_str(), scope.key.as_str())
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Walks every member of index shard `shard` that `due` picks, in id order: the in-memory
    /// store's stand-in for a sparse due index.
    fn members_due_where(&self, shard: u32, due: impl Fn(&Member) -> bool) -> Vec<MemberId> {
        let state = self.state();
        let mut found: Vec<MemberId> = state
            .members
            .values()
            .filter(|m| due(m) && review_shard(&m.member_id) == shard)
            .map(|m| m.member_id.clone())
            .collect();
        found.sort();
        found
    }

    /// How many commits were applied; tests use it to prove a request wrote nothing.
    pub fn commits(&self) -> u64 {
        self.state().commits
    }

    /// The changes committed since the last call, oldest first, as the table's stream would
    /// deliver them to the consumer (see [`crate::App::relay_all`]).
    pub fn take_changes(&self) -> Vec<Change> {
        self.state()
            .feed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// A store that keeps a change feed, as a table with a stream does.
    pub fn with_change_feed() -> Self {
        let store = Self::default();
        store.state().feed = Some(Vec::new());
        store
    }
}

#[async_trait]
impl MemberStore for MemoryStore {
    async fn member(&self, id: &MemberId) -> Result<Option<Member>, StoreError> {
        Ok(self.state().members.get(id).cloned())
    }

    async fn members(&self, ids: &[MemberId]) -> Result<Vec<Member>, StoreError> {
        let state = self.state();
        Ok(ids
            .iter()
            .filter_map(|id| state.members.get(id).cloned())
            .collect())
    }

    async fn snapshot(
        &self,
        id: &MemberId,
        scope: Option<&IdempotencyScope>,
    ) -> Result<Snapshot, StoreError> {
        let state = self.state();
        Ok(Snapshot {
            member: state.members.get(id).cloned(),
            replay: scope.and_then(|s| state.idempotency.get(&(id.clone(), scope_key(s))).cloned()),
            program_version: state.programs.last().map(|p| p.version),
        })
    }

    async fn idempotency_record(
        &self,
        id: &MemberId,
        scope: &IdempotencyScope,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self
            .state()
            .idempotency
            .get(&(id.clone(), scope_key(scope)))
            .cloned())
    }

    async fn member_by_referral_code(
        &self,
        code: &ReferralCode,
    ) -> Result<Option<MemberId>, StoreError> {
        Ok(self.state().referral_codes.get(code.as_str()).cloned())
    }

    async fn transact(
        &self,
        commits: Vec<Commit>,
        records: Vec<RecordWrite>,
    ) -> Result<(), CommitError> {
        let mut state = self.state();
        for commit in &commits {
            state.check(commit)?;
        }
        for write in &records {
            let current = state
                .records
                .get(&(write.record.kind.clone(), write.record.id.clone()));
            let holds = match (write.expect, current) {
                (Expect::Absent, None) => true,
                (Expect::Version(v), Some(existing)) => existing.version == v,
                _ => false,
            };
            if !holds {
                return Err(CommitError::RecordConflict {
                    kind: write.record.kind.clone(),
                    id: write.record.id.clone(),
                });
            }
        }
        for commit in commits {
            state.apply(commit);
        }
        for write in records {
            let before = state.records.insert(
                (write.record.kind.clone(), write.record.id.clone()),
                write.record.clone(),
            );
            state.record_change(Change::Record {
                before,
                after: write.record,
            });
        }
        state.commits += 1;
        Ok(())
    }
}

impl State {
    fn record_change(&mut self, change: Change) {
        if let Some(feed) = &mut self.feed {
            feed.push(change);
        }
    }

    fn check(&self, commit: &Commit) -> Result<(), CommitError> {
        let id = &commit.member.member_id;
        match (commit.expected_version, self.members.get(id)) {
            (None, Some(_)) => return Err(CommitError::MemberExists),
            (Some(_), None) => return Err(CommitError::StaleMember),
            (Some(expected), Some(current)) if current.version != expected => {
                return Err(CommitError::StaleMember)
            }
            _ => {}
        }
        if let Some(record) = &commit.idempotency {
            let key = format!("{}#{}", record.operation.as_str(), record.key);
            if self.idempotency.contains_key(&(id.clone(), key)) {
                return Err(CommitError::IdempotencyKeyTaken);
            }
        }
        if let Some(entry) = &commit.entry {
            if self
                .entry_ids
                .contains_key(&(id.clone(), entry.entry_id.clone()))
            {
                return Err(CommitError::DuplicateEntry);
            }
            // Held by any member: the same answer as the member's own guard, naming no one.
            if let Some(key) = entry.source.program_key() {
                if self.program_keys.contains_key(&key) {
                    return Err(CommitError::DuplicateEntry);
                }
            }
        }
        if commit.claim_referral_code
            && self
                .referral_codes
                .contains_key(commit.member.referral_code.as_str())
        {
            return Err(CommitError::ReferralCodeTaken);
        }
        if let Some(claim) = &commit.stock {
            let used = self.stock_used.get(&claim.reward_id).copied().unwrap_or(0);
            // A release gives back a unit that was taken; there must be one.
            if claim.release && used == 0 {
                return Err(CommitError::OutOfStock);
            }
            // `used < stock <= u32::MAX`, so the increment in `apply` cannot wrap.
            if !claim.release && used >= claim.stock {
                return Err(CommitError::OutOfStock);
            }
        }
        Ok(())
    }

    fn apply(&mut self, commit: Commit) {
        let id = commit.member.member_id.clone();
        if let Some(claim) = commit.stock {
            let used = self.stock_used.entry(claim.reward_id).or_default();
            *used = if claim.release {
                used.saturating_sub(1)
            } else {
                used.saturating_add(1)
            };
        }
        if commit.claim_referral_code {
            self.referral_codes
                .insert(commit.member.referral_code.as_str().to_owned(), id.clone());
        }
        if let Some(record) = commit.idempotency {
            let key = format!("{}#{}", record.operation.as_str(), record.key);
            self.idempotency.insert((id.clone(), key), record);
        }
        if let Some(change) = commit.tier_change {
            self.record_change(Change::Tier {
                member_id: id.clone(),
                change: change.clone(),
            });
            self.tier_history
                .entry(id.clone())
                .or_default()
                .push(change);
        }
        if let Some(entry) = commit.entry {
            if let Some(key) = entry.source.program_key() {
                self.program_keys.insert(key, id.clone());
            }
            self.entry_ids
                .insert((id.clone(), entry.entry_id.clone()), entry.seq);
            self.record_change(Change::Entry(Box::new(entry.clone())));
            self.ledgers
                .entry(id.clone())
                .or_default()
                .insert(entry.seq, entry);
        }
        let after = Box::new(commit.member.clone());
        let before = self.members.insert(id, commit.member).map(Box::new);
        self.record_change(Change::Member { before, after });
    }
}

#[async_trait]
impl RecordStore for MemoryStore {
    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self
            .state()
            .records
            .get(&(kind.to_owned(), id.to_owned()))
            .cloned())
    }

    async fn records_of(
        &self,
        kind: &str,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let state = self.state();
        let mut found: Vec<Record> = state
            .records
            .values()
            .filter(|r| r.kind == kind && r.owner.as_deref() == Some(owner))
            .cloned()
            .collect();
        found.sort_by(|a, b| b.id.cmp(&a.id));
        found.truncate(limit as usize);
        Ok(found)
    }

    async fn records_due(
        &self,
        kind: &str,
        day: chrono::NaiveDate,
        shard: u32,
        _cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let state = self.state();
        let mut due: Vec<String> = state
            .records
            .values()
            .filter(|r| r.kind == kind && r.due == Some(day) && shard_of(&r.id) == shard)
            .map(|r| r.id.clone())
            .collect();
        due.sort();
        Ok((due, None))
    }
}

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn entries_before(
        &self,
        id: &MemberId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let state = self.state();
        Ok(state
            .ledgers
            .get(id)
            .map(|ledger| {
                ledger
                    .range(..before_seq)
                    .rev()
                    .take(limit as usize)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn entry(
        &self,
        id: &MemberId,
        entry_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let state = self.state();
        Ok(state.ledgers.get(id).and_then(|ledger| {
            ledger
                .values()
                .find(|entry| entry.entry_id == entry_id)
                .cloned()
        }))
    }
}

#[async_trait]
impl ProgramStore for MemoryStore {
    async fn active_program(&self) -> Result<Option<ActiveProgram>, StoreError> {
        Ok(self.state().programs.last().cloned())
    }

    async fn publish_program(&self, program: &ActiveProgram) -> Result<(), PublishError> {
        let mut state = self.state();
        let current = state.programs.last().map_or(0, |p| p.version);
        if program.version != current + 1 {
            return Err(PublishError::VersionTaken(program.version));
        }
        state.programs.push(program.clone());
        Ok(())
    }

    async fn stock_used(&self, rewards: &[RewardId]) -> Result<HashMap<RewardId, u32>, StoreError> {
        let state = self.state();
        Ok(rewards
            .iter()
            .filter_map(|r| state.stock_used.get(r).map(|used| (r.clone(), *used)))
            .collect())
    }
}

#[async_trait]
impl TierStore for MemoryStore {
    async fn tier_history(
        &self,
        id: &MemberId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: u32,
    ) -> Result<Vec<TierChange>, StoreError> {
        let state = self.state();
        let mut changes: Vec<TierChange> = state
            .tier_history
            .get(id)
            .map(|h| {
                h.iter()
                    .filter(|c| before.is_none_or(|b| c.evaluated_at < b))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        changes.sort_by_key(|c| std::cmp::Reverse(c.evaluated_at));
        changes.truncate(limit as usize);
        Ok(changes)
    }

    /// Walks every member: fine for the in-memory store, which the review index stands in for.
    async fn members_due(
        &self,
        day: chrono::NaiveDate,
        shard: u32,
        _cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        Ok((
            self.members_due_where(shard, |m| m.tier_state.review_on == Some(day)),
            None,
        ))
    }

    async fn members_expiry_due(
        &self,
        day: chrono::NaiveDate,
        shard: u32,
        _cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        Ok((
            self.members_due_where(shard, |m| m.points_due() == Some(day)),
            None,
        ))
    }
}

#[async_trait]
impl crate::ports::AudienceStore for MemoryStore {
    /// Walks every member in id order; the cursor is the position to continue from.
    async fn audience_page(
        &self,
        audience: &crate::campaigns::AudienceQuery,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        use crate::campaigns::AudienceQuery;
        let state = self.state();
        let mut matching: Vec<MemberId> = state
            .members
            .values()
            .filter(|m| match audience {
                AudienceQuery::Tier(tier) => &m.tier == tier,
                AudienceQuery::EnrolledBetween(from, to) => {
                    (*from..=*to).contains(&m.enrolled_at.date_naive())
                }
            })
            .map(|m| m.member_id.clone())
            .collect();
        matching.sort();
        let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        let page: Vec<MemberId> = matching.iter().skip(start).take(limit).cloned().collect();
        let next = (start + page.len() < matching.len()).then(|| (start + page.len()).to_string());
        Ok((page, next))
    }
}
