//! Fault injection by wrapping the ports: a store that refuses, throttles or loses the answer to
//! a write that happened; queues that deliver twice, late and out of order, and lose a send when
//! the sender "crashes" after its commit; a payment provider that times out before or after it
//! charged. Every decision comes from one seeded PRNG, drawn in the scheduler's order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use loyalty_core::campaigns::AudienceQuery;
use loyalty_core::idempotency::{IdempotencyRecord, IdempotencyScope};
use loyalty_core::ids::{MemberId, ReferralCode, RewardId};
use loyalty_core::ledger::LedgerEntry;
use loyalty_core::member::Member;
use loyalty_core::ports::{
    AudienceStore, Commit, CommitError, LedgerStore, MemberStore, MessageQueue, ProgramStore,
    PublishError, Record, RecordStore, RecordWrite, Snapshot, Store, StoreError, TierStore,
};
use loyalty_core::program::ActiveProgram;
use loyalty_core::subscriptions::payments::{
    CardSaved, ChargeRequest, CustomerRequest, MemoryPayments, Payment, PaymentError,
    PaymentProvider,
};
use loyalty_core::subscriptions::provider_event::{EventError, ProviderEvent};
use loyalty_core::tiers::TierChange;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sched::{in_task, Scheduler};

/// Chances, per thousand calls, of each fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRates {
    /// `TransactionConflict`: nothing written.
    pub conflict: u32,
    /// Written, but the caller hears a conflict (the engine retries and must replay).
    pub lost_commit_reply: u32,
    /// Written, but the caller's connection drops (a 500; the client retries).
    pub lost_response: u32,
    pub throttle_write: u32,
    pub throttle_read: u32,
    pub duplicate_delivery: u32,
    pub delayed_delivery: u32,
    /// A referral message not sent: the outbox died at its send, after the accrual's commit.
    /// The change stays on the stream and is relayed again.
    pub crash_after_commit: u32,
    pub payment_timeout_before: u32,
    pub payment_timeout_after: u32,
    /// A worker invocation killed after some of its store calls.
    pub kill_worker: u32,
}

impl FaultRates {
    pub const NONE: FaultRates = FaultRates {
        conflict: 0,
        lost_commit_reply: 0,
        lost_response: 0,
        throttle_write: 0,
        throttle_read: 0,
        duplicate_delivery: 0,
        delayed_delivery: 0,
        crash_after_commit: 0,
        payment_timeout_before: 0,
        payment_timeout_after: 0,
        kill_worker: 0,
    };

    pub const DEFAULT: FaultRates = FaultRates {
        conflict: 30,
        lost_commit_reply: 30,
        lost_response: 25,
        throttle_write: 15,
        throttle_read: 8,
        duplicate_delivery: 150,
        delayed_delivery: 150,
        crash_after_commit: 150,
        payment_timeout_before: 80,
        payment_timeout_after: 80,
        kill_worker: 120,
    };
}

/// How many of each fault a run injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub conflict: u64,
    pub lost_commit_reply: u64,
    pub lost_response: u64,
    pub throttle: u64,
    pub duplicate_delivery: u64,
    pub delayed_delivery: u64,
    pub crash_after_commit: u64,
    pub payment_timeout: u64,
    pub killed_worker: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.conflict
            + self.lost_commit_reply
            + self.lost_response
            + self.throttle
            + self.duplicate_delivery
            + self.delayed_delivery
            + self.crash_after_commit
            + self.payment_timeout
            + self.killed_worker
    }

    pub fn add(&mut self, other: &FaultCounts) {
        self.conflict += other.conflict;
        self.lost_commit_reply += other.lost_commit_reply;
        self.lost_response += other.lost_response;
        self.throttle += other.throttle;
        self.duplicate_delivery += other.duplicate_delivery;
        self.delayed_delivery += other.delayed_delivery;
        self.crash_after_commit += other.crash_after_commit;
        self.payment_timeout += other.payment_timeout;
        self.killed_worker += other.killed_worker;
    }
}

/// One write the store applied, in the order it applied them.
#[derive(Debug, Clone)]
pub struct Applied {
    pub commits: Vec<Commit>,
    pub records: Vec<RecordWrite>,
}

struct FaultState {
    rng: ChaCha8Rng,
    rates: FaultRates,
    /// Faults are injected only while this is set (not during set-up and audits).
    enabled: bool,
    counts: FaultCounts,
    log: Vec<Applied>,
}

/// The fault plan and what it did, shared by every wrapped port of one run.
#[derive(Clone)]
pub struct Faults(Arc<Mutex<FaultState>>);

impl Faults {
    pub fn new(seed: u64, rates: FaultRates) -> Self {
        Self(Arc::new(Mutex::new(FaultState {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xfa17_5eed),
            rates,
            enabled: false,
            counts: FaultCounts::default(),
            log: Vec::new(),
        })))
    }

    fn state(&self) -> MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.state().enabled = enabled;
    }

    pub fn counts(&self) -> FaultCounts {
        self.state().counts
    }

    pub fn count_killed(&self, killed: u64) {
        self.state().counts.killed_worker += killed;
    }

    /// The writes applied since `from`.
    pub fn log_since(&self, from: usize) -> Vec<Applied> {
        self.state()
            .log
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    pub fn log_len(&self) -> usize {
        self.state().log.len()
    }

    /// Draws a fault with `per_mille` chance, counting it with `count`; never outside requests.
    fn roll(
        &self,
        per_mille: impl Fn(&FaultRates) -> u32,
        count: impl Fn(&mut FaultCounts),
    ) -> bool {
        if !in_task() {
            return false;
        }
        let mut state = self.state();
        if !state.enabled {
            return false;
        }
        let chance = per_mille(&state.rates);
        let hit = chance > 0 && state.rng.random_range(0..1000) < chance;
        if hit {
            count(&mut state.counts);
        }
        hit
    }

    /// A draw for the workload side of a fault (which gate a worker dies at).
    pub fn draw(&self, below: u32) -> u32 {
        self.state().rng.random_range(0..below.max(1))
    }

    pub fn rates(&self) -> FaultRates {
        self.state().rates
    }

    fn record(&self, applied: Applied) {
        self.state().log.push(applied);
    }
}

/// The store as the services see it in a simulation.
pub struct SimStore<S> {
    inner: Arc<S>,
    sched: Scheduler,
    faults: Faults,
}

impl<S> Clone for SimStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            sched: self.sched.clone(),
            faults: self.faults.clone(),
        }
    }
}

impl<S: Store> SimStore<S> {
    pub fn new(inner: Arc<S>, sched: Scheduler, faults: Faults) -> Self {
        Self {
            inner,
            sched,
            faults,
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn read(&self, what: &'static str) -> Result<(), StoreError> {
        self.sched.pass(what).await;
        if self.faults.roll(|r| r.throttle_read, |c| c.throttle += 1) {
            return Err(StoreError(
                "ProvisionedThroughputExceeded (injected)".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> MemberStore for SimStore<S> {
    async fn member(&self, id: &MemberId) -> Result<Option<Member>, StoreError> {
        self.read("member").await?;
        self.inner.member(id).await
    }
    async fn snapshot(
        &self,
        id: &MemberId,
        scope: Option<&IdempotencyScope>,
    ) -> Result<Snapshot, StoreError> {
        self.read("snapshot").await?;
        self.inner.snapshot(id, scope).await
    }
    async fn idempotency_record(
        &self,
        id: &MemberId,
        scope: &IdempotencyScope,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.read("idempotency_record").await?;
        self.inner.idempotency_record(id, scope).await
    }
    async fn member_by_referral_code(
        &self,
        code: &ReferralCode,
    ) -> Result<Option<MemberId>, StoreError> {
        self.read("member_by_referral_code").await?;
        self.inner.member_by_referral_code(code).await
    }
    async fn transact(
        &self,
        commits: Vec<Commit>,
        records: Vec<RecordWrite>,
    ) -> Result<(), CommitError> {
        self.sched.pass("transact").await;
        if self.faults.roll(|r| r.conflict, |c| c.conflict += 1) {
            return Err(CommitError::Conflict);
        }
        if self.faults.roll(|r| r.throttle_write, |c| c.throttle += 1) {
            return Err(CommitError::Store(StoreError(
                "ThrottlingException (injected)".into(),
            )));
        }
        self.inner
            .transact(commits.clone(), records.clone())
            .await?;
        self.faults.record(Applied { commits, records });
        if self
            .faults
            .roll(|r| r.lost_commit_reply, |c| c.lost_commit_reply += 1)
        {
            return Err(CommitError::Conflict);
        }
        if self
            .faults
            .roll(|r| r.lost_response, |c| c.lost_response += 1)
        {
            return Err(CommitError::Store(StoreError(
                "connection reset after the write (injected)".into(),
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> LedgerStore for SimStore<S> {
    async fn entries_before(
        &self,
        id: &MemberId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.read("entries_before").await?;
        self.inner.entries_before(id, before_seq, limit).await
    }

    async fn entry(
        &self,
        id: &MemberId,
        entry_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.read("entry").await?;
        self.inner.entry(id, entry_id).await
    }
}

/// Program reads are not gated: they only change in admin steps, and environments refresh their
/// copies on their own clock, so gating them would let cache timing steer the schedule.
#[async_trait]
impl<S: Store> ProgramStore for SimStore<S> {
    async fn active_program(&self) -> Result<Option<ActiveProgram>, StoreError> {
        self.inner.active_program().await
    }
    async fn publish_program(&self, program: &ActiveProgram) -> Result<(), PublishError> {
        self.sched.pass("publish_program").await;
        self.inner.publish_program(program).await
    }
    async fn stock_used(&self, rewards: &[RewardId]) -> Result<HashMap<RewardId, u32>, StoreError> {
        self.read("stock_used").await?;
        self.inner.stock_used(rewards).await
    }
}

#[async_trait]
impl<S: Store> TierStore for SimStore<S> {
    async fn tier_history(
        &self,
        id: &MemberId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: u32,
    ) -> Result<Vec<TierChange>, StoreError> {
        self.read("tier_history").await?;
        self.inner.tier_history(id, before, limit).await
    }
    async fn members_due(
        &self,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        self.read("members_due").await?;
        self.inner.members_due(day, shard, cursor).await
    }
    async fn members_expiry_due(
        &self,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        self.read("members_expiry_due").await?;
        self.inner.members_expiry_due(day, shard, cursor).await
    }
}

#[async_trait]
impl<S: Store> RecordStore for SimStore<S> {
    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.read("record").await?;
        self.inner.record(kind, id).await
    }
    async fn records_of(
        &self,
        kind: &str,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        self.read("records_of").await?;
        self.inner.records_of(kind, owner, limit).await
    }
    async fn records_due(
        &self,
        kind: &str,
        day: chrono::NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.read("records_due").await?;
        self.inner.records_due(kind, day, shard, cursor).await
    }
}

#[async_trait]
impl<S: Store> AudienceStore for SimStore<S> {
    async fn audience_page(
        &self,
        audience: &AudienceQuery,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<MemberId>, Option<String>), StoreError> {
        self.read("audience_page").await?;
        self.inner.audience_page(audience, cursor, limit).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueueName {
    Referral,
    CampaignDispatch,
    CampaignGrant,
    TierReview,
    Billing,
}

impl QueueName {
    pub const ALL: [QueueName; 5] = [
        QueueName::Referral,
        QueueName::CampaignDispatch,
        QueueName::CampaignGrant,
        QueueName::TierReview,
        QueueName::Billing,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub body: String,
    /// How many times SQS has handed this message out, this delivery included.
    pub receives: u32,
}

/// A queue with SQS's delivery guarantees: at least once, in no particular order. A received
/// message stays in flight until acknowledged; one never acknowledged (its worker failed or was
/// killed) comes back after the visibility timeout, the end of the step.
pub struct SimQueue {
    name: QueueName,
    messages: Mutex<VecDeque<Delivery>>,
    inflight: Mutex<BTreeMap<u64, Delivery>>,
    next_receipt: Mutex<u64>,
    dead: Mutex<Vec<Delivery>>,
    sched: Scheduler,
    faults: Faults,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimQueue {
    pub fn new(name: QueueName, sched: Scheduler, faults: Faults) -> Self {
        Self {
            name,
            messages: Mutex::new(VecDeque::new()),
            inflight: Mutex::new(BTreeMap::new()),
            next_receipt: Mutex::new(0),
            dead: Mutex::new(Vec::new()),
            sched,
            faults,
        }
    }

    /// Messages waiting or in flight.
    pub fn len(&self) -> usize {
        lock(&self.messages).len() + lock(&self.inflight).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dead_letters(&self) -> Vec<Delivery> {
        lock(&self.dead).clone()
    }

    /// Up to `max` messages with their receipts, shuffled; some are held back for a later
    /// receive (delayed) and some handed out twice (duplicated).
    pub fn receive(&self, max: usize) -> Vec<(u64, Delivery)> {
        let mut queue = lock(&self.messages);
        let mut taken: Vec<Delivery> = Vec::new();
        let mut held = VecDeque::new();
        while let Some(message) = queue.pop_front() {
            if taken.len() >= max {
                held.push_back(message);
                continue;
            }
            if self
                .faults
                .roll(|r| r.delayed_delivery, |c| c.delayed_delivery += 1)
            {
                held.push_back(message);
                continue;
            }
            if self
                .faults
                .roll(|r| r.duplicate_delivery, |c| c.duplicate_delivery += 1)
            {
                taken.push(message.clone());
            }
            taken.push(message);
        }
        *queue = held;
        drop(queue);
        if in_task() {
            let mut state = self.faults.state();
            if state.enabled {
                taken.shuffle(&mut state.rng);
            }
        }
        let mut inflight = lock(&self.inflight);
        let mut next = lock(&self.next_receipt);
        taken
            .into_iter()
            .map(|delivery| {
                *next += 1;
                inflight.insert(*next, delivery.clone());
                (*next, delivery)
            })
            .collect()
    }

    /// The worker finished with this delivery: it is deleted.
    pub fn ack(&self, receipt: u64) {
        lock(&self.inflight).remove(&receipt);
    }

    /// The visibility timeout passes: unacknowledged deliveries come back, or go to the
    /// dead-letter queue once received `MAX_RECEIVES` times.
    pub fn expire_inflight(&self) {
        let expired = std::mem::take(&mut *lock(&self.inflight));
        for (_, delivery) in expired {
            if delivery.receives >= crate::ops::MAX_RECEIVES {
                lock(&self.dead).push(delivery);
            } else {
                lock(&self.messages).push_back(Delivery {
                    receives: delivery.receives + 1,
                    ..delivery
                });
            }
        }
    }
}

#[async_trait]
impl MessageQueue for SimQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), StoreError> {
        self.sched.pass("send").await;
        // The outbox dying at its send, after the commit it announces (the referral message, the
        // one a request used to send itself): the stream delivers the change again.
        if self.name == QueueName::Referral
            && self
                .faults
                .roll(|r| r.crash_after_commit, |c| c.crash_after_commit += 1)
        {
            return Err(StoreError("process died before the send (injected)".into()));
        }
        lock(&self.messages).extend(
            bodies
                .into_iter()
                .map(|body| Delivery { body, receives: 1 }),
        );
        Ok(())
    }
}

/// The payment provider with timeouts before and after the charge.
pub struct SimPayments {
    inner: MemoryPayments,
    sched: Scheduler,
    faults: Faults,
}

impl SimPayments {
    pub fn new(sched: Scheduler, faults: Faults) -> Self {
        Self {
            inner: MemoryPayments::default(),
            sched,
            faults,
        }
    }

    pub fn set_declining(&self, method: &str, declining: bool) {
        if declining {
            self.inner.decline(method);
        } else {
            self.inner.accept(method);
        }
    }

    pub fn succeeded_for(&self, charge_id: &str) -> usize {
        self.inner.succeeded_for(charge_id)
    }

    pub fn payments(&self) -> Vec<(ChargeRequest, Payment)> {
        self.inner.payments()
    }
}

#[async_trait]
impl PaymentProvider for SimPayments {
    async fn create_customer(&self, request: &CustomerRequest) -> Result<String, PaymentError> {
        self.sched.pass("customer").await;
        self.inner.create_customer(request).await
    }

    async fn save_card(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<CardSaved, PaymentError> {
        self.inner.save_card(customer, payment_method).await
    }

    async fn read_event(
        &self,
        signature: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<ProviderEvent, EventError> {
        self.inner.read_event(signature, body, now_unix).await
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        self.sched.pass("charge").await;
        if self
            .faults
            .roll(|r| r.payment_timeout_before, |c| c.payment_timeout += 1)
        {
            return Err(PaymentError(
                "timed out before the charge (injected)".into(),
            ));
        }
        let payment = self.inner.charge(request).await?;
        if self
            .faults
            .roll(|r| r.payment_timeout_after, |c| c.payment_timeout += 1)
        {
            return Err(PaymentError("timed out after the charge (injected)".into()));
        }
        Ok(payment)
    }

    async fn find(
        &self,
        customer: &str,
        charge_id: &str,
        attempt: u32,
    ) -> Result<Option<Payment>, PaymentError> {
        self.sched.pass("find").await;
        if self
            .faults
            .roll(|r| r.payment_timeout_before, |c| c.payment_timeout += 1)
        {
            return Err(PaymentError("look-up timed out (injected)".into()));
        }
        self.inner.find(customer, charge_id, attempt).await
    }
}
