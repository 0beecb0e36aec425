//! Application services: the use cases behind every route, generic over the store so they run
//! the same against DynamoDB, the in-memory store, or a fault-injecting wrapper.

mod accrue;
mod adjust;
mod admin_keys;
mod campaigns;
mod codes;
mod due;
mod enrol;
mod expiry;
mod movement;
mod outbox;
mod program_admin;
mod promotions;
mod queries;
mod redeem;
mod referrals;
mod retry;
mod returns;
mod subscriptions;
mod tiers;
mod transfer;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::RwLock;
use tokio::time::Instant;

pub(crate) use movement::{Keyed, Movement, Read};
pub(crate) use retry::Attempt;

pub use accrue::AccrualReceipt;
pub use adjust::{AdjustmentReceipt, AdjustmentRequest, MAX_ADJUSTMENT};
pub use codes::{
    CodeBatch, CodeBatchReport, CodeSweep, CODES_PER_MESSAGE, CODE_SWEEP_CATCH_UP_DAYS,
};
pub use expiry::{ExpiryRun, EXPIRY_CATCH_UP_DAYS};
pub use outbox::{RelayError, Relayed};
pub use redeem::RedemptionReceipt;
pub use referrals::{
    ReferralError, ReferralMessage, ReferralOutcome, SweepReport, SWEEP_CATCH_UP_DAYS,
};
pub use returns::{OrderReturns, ReturnReceipt, ReturnRequest, ORDER_RETURNS_KIND};
pub use subscriptions::{
    AttemptView, BillingBatch, BillingPlan, BillingResult, CardChange, ChargeHistory,
    PeriodCharges, PlanChange, SubscriptionView, WebhookReceipt, WebhookResult,
    BILLING_CATCH_UP_DAYS, PENDING_LEASE, PROVIDER_EVENT_KIND, SUBSCRIPTIONS_PER_MESSAGE,
};
pub use transfer::{TransferReceipt, TRANSFER_DAY};
pub use webhooks::{DeliveryStep, MAX_WEBHOOKS, WEBHOOK_CACHE};

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::events::LogQueue;
use crate::idempotency::IdempotencyScope;
use crate::ids::MemberId;
use crate::ports::{CommitError, MessageQueue, Store, StoreError};
use crate::program::ActiveProgram;
use crate::promotions::Promotion;

/// A program copy this young is trusted even for a "not found" answer.
const FRESH_ENOUGH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct AppConfig {
    /// How long a function trusts its copy of the program before reading it again.
    pub program_cache_ttl: Duration,
    /// Attempts at a write that keeps losing races (stale member, transaction conflict).
    pub max_attempts: u32,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            program_cache_ttl: Duration::from_secs(30),
            max_attempts: 30,
        }
    }
}

/// The response of a keyed write.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written now.
    Created(Value),
    /// The same request was already applied; this is its original response.
    Replayed(Value),
    /// A dry run: what would have been written.
    Simulated(Value),
}

/// When the promotion list was read, the program version known then, and the list.
type CachedPromotions = (Instant, u64, Arc<Vec<Promotion>>);

pub struct App<S> {
    store: S,
    clock: Arc<dyn Clock>,
    config: AppConfig,
    program: RwLock<Option<(Instant, Arc<ActiveProgram>)>>,
    /// The promotion list, when it was read, and the program version known when it was read:
    /// a newer version stamp (promotions bump it) means the list may be missing one.
    promotions: RwLock<Option<CachedPromotions>>,
    /// Where the outbox sends a new campaign's first dispatch step.
    campaign_dispatch: Arc<dyn MessageQueue>,
    events: Arc<dyn MessageQueue>,
    /// Where the outbox hands a referee's first qualifying purchase to the referral worker.
    referral_queue: Arc<dyn MessageQueue>,
    payments: Arc<dyn crate::subscriptions::payments::PaymentProvider>,
    /// Webhook queues, HTTP client, URL policy and the cached list of active webhooks.
    webhooks: webhooks::WebhookWiring,
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store call failed");
        ApiError::internal()
    }
}

impl<S: Store> App<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, config: AppConfig) -> Self {
        Self {
            store,
            clock,
            config,
            program: RwLock::new(None),
            promotions: RwLock::new(None),
            campaign_dispatch: Arc::new(crate::events::Unconfigured("CAMPAIGN_DISPATCH_QUEUE_URL")),
            events: Arc::new(LogQueue),
            referral_queue: Arc::new(LogQueue),
            payments: Arc::new(crate::subscriptions::payments::NoPayments),
            webhooks: webhooks::WebhookWiring::default(),
        }
    }

    /// Sends referral messages (a referee's first qualifying purchase) to `queue` instead of the
    /// log.
    pub fn with_referral_queue(mut self, queue: Arc<dyn MessageQueue>) -> Self {
        self.referral_queue = queue;
        self
    }

    /// Takes subscription payments through `provider` (none by default: starting a subscription
    /// then fails with `payment_provider_unavailable`).
    pub fn with_payments(
        mut self,
        provider: Arc<dyn crate::subscriptions::payments::PaymentProvider>,
    ) -> Self {
        self.payments = provider;
        self
    }

    pub fn payments(&self) -> &dyn crate::subscriptions::payments::PaymentProvider {
        self.payments.as_ref()
    }

    /// Sends new campaigns' dispatch steps to `queue`.
    pub fn with_campaign_dispatch(mut self, queue: Arc<dyn MessageQueue>) -> Self {
        self.campaign_dispatch = queue;
        self
    }

    /// Sends outgoing events to `queue` instead of the log.
    pub fn with_events(mut self, queue: Arc<dyn MessageQueue>) -> Self {
        self.events = queue;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The active program, from this environment's copy while it is fresh. On a store that has
    /// never had a program, the shipped default is published as version 1, so a fresh deployment
    /// works before anyone configures it.
    pub async fn program(&self) -> Result<Arc<ActiveProgram>, ApiError> {
        self.program_at_least(None).await
    }

    /// The active program, from this environment's copy while it is fresh and at least version
    /// `stamp` — the version the store stamped on the read this request already made. An admin
    /// change (a program, a reward, a promotion) bumps the stamp, so the request after it reads
    /// the program again instead of answering from a copy that predates the change.
    pub(crate) async fn program_at_least(
        &self,
        stamp: Option<u64>,
    ) -> Result<Arc<ActiveProgram>, ApiError> {
        if let Some((fetched, program)) = self.program.read().await.as_ref() {
            if fetched.elapsed() < self.config.program_cache_ttl
                && stamp.is_none_or(|stamp| program.version >= stamp)
            {
                return Ok(Arc::clone(program));
            }
        }
        self.fresh_program().await
    }

    /// The active program read again unless this environment's copy is younger than
    /// `FRESH_ENOUGH`: before answering "not found" for something the copy lacks. The floor keeps
    /// a flood of requests for unknown ids from turning into a read of the program item each.
    pub(crate) async fn recheck_program(&self) -> Result<Arc<ActiveProgram>, ApiError> {
        if let Some((fetched, program)) = self.program.read().await.as_ref() {
            if fetched.elapsed() < FRESH_ENOUGH {
                return Ok(Arc::clone(program));
            }
        }
        self.fresh_program().await
    }

    /// The active program read from the store now, replacing this environment's copy.
    pub(crate) async fn fresh_program(&self) -> Result<Arc<ActiveProgram>, ApiError> {
        let program = match self.store.active_program().await? {
            Some(program) => program,
            None => self.publish_default_program().await?,
        };
        let program = Arc::new(program);
        *self.program.write().await = Some((Instant::now(), Arc::clone(&program)));
        Ok(program)
    }

    pub(crate) async fn forget_program(&self) {
        *self.program.write().await = None;
    }

    /// What a failed keyed commit means for the caller.
    pub(crate) async fn settle(
        &self,
        error: CommitError,
        member: &MemberId,
        scope: &IdempotencyScope,
        fingerprint: &str,
        duplicate: impl FnOnce() -> ApiError,
    ) -> Result<Attempt<Outcome>, ApiError> {
        match error {
            CommitError::IdempotencyKeyTaken => {
                match self.store.idempotency_record(member, scope).await? {
                    Some(record) => Ok(Attempt::Done(Outcome::Replayed(
                        record.replay(fingerprint)?,
                    ))),
                    None => Ok(Attempt::Retry),
                }
            }
            CommitError::DuplicateEntry => Err(duplicate()),
            CommitError::OutOfStock => Err(ApiError::new(
                ErrorCode::RewardUnavailable,
                "the reward is out of stock",
            )),
            CommitError::StaleMember | CommitError::Conflict | CommitError::ReferralCodeTaken => {
                Ok(Attempt::Retry)
            }
            CommitError::MemberExists => Err(ApiError::new(
                ErrorCode::MemberExists,
                "the member already exists",
            )),
            CommitError::RecordConflict { .. } => Ok(Attempt::Retry),
            CommitError::Store(error) => Err(error.into()),
        }
    }
}

/// A write that cannot go without an `Idempotency-Key` got none; `what` names the write
/// ("accruals need").
pub(crate) fn missing_key(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::MissingIdempotencyKey,
        format!("{what} an Idempotency-Key header"),
    )
}

pub(crate) fn member_not_found(id: &MemberId) -> ApiError {
    ApiError::new(ErrorCode::MemberNotFound, format!("no member '{id}'"))
        .with_details(serde_json::json!({ "member_id": id }))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|error| {
        tracing::error!(%error, "response did not serialise");
        ApiError::internal()
    })
}

/// Parses a JSON body into a request type, naming what was wrong without echoing internals.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    T::deserialize(body).map_err(|e| ApiError::new(ErrorCode::ValidationError, e.to_string()))
}
