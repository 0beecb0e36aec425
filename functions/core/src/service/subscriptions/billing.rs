//! The daily billing run: fan-out of the subscriptions whose billing or retry date has come,
//! and the billing of one subscription: renewal off session on the saved card, dunning retries,
//! lapse, or the end of a subscription canceled at period end. What each outcome does to the
//! subscription is [`settle_renewal`]'s rule; this module loads, charges and commits.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::benefits::{member_only_commit, with_paid_period, without_plan};
use super::collect::{Collected, Collection, KnownPayment};
use super::{charge_write, commit_failed, log_rejected, retryable, subscription_write, Versioned};
use crate::error::{ApiError, ErrorCode};
use crate::ids::MemberId;
use crate::ports::{Commit, CommitError, MessageQueue, Store};
use crate::program::ActiveProgram;
use crate::service::due::DueIndex;
use crate::service::{App, Attempt};
use crate::subscriptions::payments::{PaymentOutcome, Presence};
use crate::subscriptions::renewal::{
    billing_step, settle_renewal, BillingStep, Renewal, RenewalCharge, Settlement,
};
use crate::subscriptions::{Plan, Subscription, SubscriptionStatus, SUBSCRIPTION_KIND};

/// Days of billing dates the daily run looks back over, so a missed day is caught up.
pub const BILLING_CATCH_UP_DAYS: u64 = 7;
/// Subscriptions per fan-out message. Billing one may call the payment provider twice (a
/// look-up and a charge), each bounded by the adapter's timeout; one per message keeps a
/// message well inside the function's timeout however busy the anchor day, and lets SQS
/// spread a busy day over concurrent invocations.
pub const SUBSCRIPTIONS_PER_MESSAGE: usize = 1;

/// One fan-out message of the daily billing run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingBatch {
    pub day: NaiveDate,
    pub subscriptions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BillingPlan {
    pub subscriptions: usize,
    pub messages: usize,
}

/// What billing one subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingResult {
    NotDue,
    Renewed,
    Recovered,
    PastDue,
    Lapsed,
    Canceled,
    Skipped,
}

/// The writes that settle one renewal charge (the stream consumer announces them from the
/// stored subscription: `subscription.renewed`, `.past_due`, `.lapsed`, and `tier.changed`).
struct SettledRenewal {
    result: BillingResult,
    commits: Vec<Commit>,
    next: Subscription,
}

impl<S: Store> App<S> {
    /// The daily run: finds the subscriptions whose billing (or retry) date has come, today and
    /// the days a missed run left behind, through the due index shard by shard, and sends them to
    /// `queue`. Sending one twice is harmless: billing is at most once per period.
    pub async fn plan_subscription_billing(
        &self,
        queue: &dyn MessageQueue,
    ) -> Result<BillingPlan, ApiError> {
        let index = DueIndex::Records(SUBSCRIPTION_KIND);
        let sent = self
            .fan_out_due(
                index,
                BILLING_CATCH_UP_DAYS,
                SUBSCRIPTIONS_PER_MESSAGE,
                queue,
                |day, ids| BillingBatch {
                    day,
                    subscriptions: ids.to_vec(),
                },
            )
            .await?;
        Ok(BillingPlan {
            subscriptions: sent.items,
            messages: sent.messages,
        })
    }

    /// Bills every subscription of one fan-out message. A failure fails the message, which is
    /// redelivered; the subscriptions already billed are not due any more the second time.
    pub async fn bill_subscription_batch(
        &self,
        body: &str,
    ) -> Result<Vec<BillingResult>, ApiError> {
        let batch: BillingBatch = serde_json::from_str(body).map_err(|e| {
            ApiError::new(ErrorCode::ValidationError, format!("billing batch: {e}"))
        })?;
        let mut results = Vec::with_capacity(batch.subscriptions.len());
        let mut failure = None;
        for id in &batch.subscriptions {
            match MemberId::parse(id) {
                Ok(member) => match self.bill_subscription(&member).await {
                    Ok(result) => results.push(result),
                    Err(error) => {
                        tracing::warn!(subscription = %id, %error, "billing failed; the message will be retried");
                        failure = Some(error);
                    }
                },
                Err(_) => results.push(BillingResult::Skipped),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(results),
        }
    }

    /// Bills one member's subscription if its date has come: renews, retries a declined period,
    /// lapses after the last retry, or ends a subscription canceled at period end.
    pub async fn bill_subscription(&self, member_id: &MemberId) -> Result<BillingResult, ApiError> {
        // A payment the provider already answered is not asked for again by a later attempt;
        // each attempt holds it for its whole run.
        let known = &tokio::sync::Mutex::new(None::<KnownPayment>);
        self.retrying(|| async move {
            let mut known = known.lock().await;
            let now = self.now();
            let Some(sub) = self.subscription_record(member_id).await? else {
                return Ok(Attempt::Done(BillingResult::Skipped));
            };
            let (period, number) = match billing_step(&sub.value, now.date_naive()) {
                BillingStep::NotDue => return Ok(Attempt::Done(BillingResult::NotDue)),
                BillingStep::Skip => return Ok(Attempt::Done(BillingResult::Skipped)),
                BillingStep::End => return self.ended_without_charge(&sub, now).await,
                BillingStep::Collect { period, attempt } => (period, attempt),
            };
            let program = self.program().await?;
            let plan_id = sub
                .value
                .next_plan_id
                .clone()
                .unwrap_or_else(|| sub.value.plan_id.clone());
            let Some(plan) = program.plan(&plan_id).cloned() else {
                // The plan was withdrawn from the program: nothing to renew into.
                return self.ended_without_charge(&sub, now).await;
            };
            // A subscription started before customers were stored gets one now.
            let Some(sub) = self.with_customer(sub).await? else {
                return Ok(Attempt::Retry);
            };
            let customer = sub.value.customer.clone().ok_or_else(ApiError::internal)?;
            let what = Collection {
                sub: &sub.value,
                customer: &customer,
                plan: &plan,
                period,
                attempt: number,
                presence: Presence::OffSession,
            };
            let collected = match self.collect(what, &mut known).await {
                Ok(collected) => collected,
                Err(error)
                    if error.code == ErrorCode::ConcurrentModification && known.is_some() =>
                {
                    return Ok(Attempt::Retry)
                }
                Err(error) => return Err(error),
            };
            let settled = self
                .settle_renewal_charge(&sub.value, &program, &plan, period, &collected, now)
                .await?;
            let Some(settled) = settled else {
                return Ok(Attempt::Done(BillingResult::Skipped));
            };
            let writes = vec![
                subscription_write(&settled.next, Some(sub.version))?,
                charge_write(&collected.charge.value, Some(collected.charge.version))?,
            ];
            match self.store().transact(settled.commits, writes).await {
                Ok(()) => Ok(Attempt::Done(settled.result)),
                Err(e) if retryable(&e) => Ok(Attempt::Retry),
                Err(e) => Err(commit_failed(e)),
            }
        })
        .await
    }

    /// One attempt at ending a subscription canceled at period end, or whose plan was withdrawn.
    async fn ended_without_charge(
        &self,
        sub: &Versioned<Subscription>,
        now: DateTime<Utc>,
    ) -> Result<Attempt<BillingResult>, ApiError> {
        match self
            .end_subscription(sub, SubscriptionStatus::Canceled, now)
            .await
        {
            Ok(()) => Ok(Attempt::Done(BillingResult::Canceled)),
            Err(e) if retryable(&e) => Ok(Attempt::Retry),
            Err(e) => Err(commit_failed(e)),
        }
    }

    /// The writes of a renewal charge's outcome. `None` if the member is gone.
    async fn settle_renewal_charge(
        &self,
        sub: &Subscription,
        program: &ActiveProgram,
        plan: &Plan,
        period: u32,
        collected: &Collected,
        now: DateTime<Utc>,
    ) -> Result<Option<SettledRenewal>, ApiError> {
        let charge_id = collected.charge.value.charge_id.clone();
        let charge = RenewalCharge {
            period,
            attempt: collected.attempt,
            plan_id: &plan.plan_id,
            charge_id: &charge_id,
        };
        if let PaymentOutcome::Rejected { error_type, code } = &collected.outcome {
            log_rejected(&charge_id, collected.attempt, error_type, code);
        }
        let Renewal { next, settlement } = settle_renewal(sub, charge, &collected.outcome, now);
        let today = now.date_naive();
        let member_id = &sub.member_id;
        let settled = match settlement {
            Settlement::Renewed { recovered } => {
                let Some(member) = self.store().member(member_id).await? else {
                    return Ok(None);
                };
                let paid = with_paid_period(&member, program, &next, plan, period, now)?;
                SettledRenewal {
                    result: if recovered {
                        BillingResult::Recovered
                    } else {
                        BillingResult::Renewed
                    },
                    commits: vec![paid.commit(member.version, None)],
                    next,
                }
            }
            Settlement::PastDue { .. } => SettledRenewal {
                result: BillingResult::PastDue,
                commits: Vec::new(),
                next,
            },
            Settlement::Lapsed => {
                let mut commits = Vec::new();
                if let Some(member) = self.store().member(member_id).await? {
                    if let Some(ended) = without_plan(&member, sub, today) {
                        commits.push(member_only_commit(ended, member.version));
                    }
                }
                SettledRenewal {
                    result: BillingResult::Lapsed,
                    commits,
                    next,
                }
            }
        };
        Ok(Some(settled))
    }

    /// Ends a subscription without a charge (canceled at period end, or its plan withdrawn).
    pub(crate) async fn end_subscription(
        &self,
        sub: &Versioned<Subscription>,
        status: SubscriptionStatus,
        now: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        let mut next = sub.value.clone();
        next.status = status;
        next.cancel_at_period_end = false;
        next.next_plan_id = None;
        next.updated_at = now;
        let mut commits = Vec::new();
        if let Some(member) = self.store().member(&sub.value.member_id).await? {
            if let Some(ended) = without_plan(&member, &sub.value, now.date_naive()) {
                commits.push(member_only_commit(ended, member.version));
            }
        }
        let write = subscription_write(&next, Some(sub.version)).map_err(|_| {
            CommitError::Store(crate::ports::StoreError(
                "subscription did not serialise".into(),
            ))
        })?;
        self.store().transact(commits, vec![write]).await
    }
}
