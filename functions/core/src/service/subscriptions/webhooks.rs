//! What the payment provider reports later, through `POST /v1/webhooks/stripe`: a first payment
//! that succeeded after 3-D Secure activates its subscription; a renewal's pending attempt gets
//! its outcome (the billing run applies it); a refunded or disputed period ends the
//! subscription and its bonus is taken back by a `reverse` ledger entry keyed by the refund.
//!
//! Each provider event is applied once: a keyed record of the event id is written under
//! `attribute_not_exists` in the same transaction as the event's effect, so a redelivery (Stripe
//! retries for days) finds it and changes nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::benefits::strip_plan;
use super::collect::Collected;
use super::start::activation;
use super::{charge_write, commit_failed, retryable, subscription_write, Versioned};
use crate::error::{ApiError, ErrorCode};
use crate::ledger::{EntryType, LedgerEntry, Source};
use crate::ports::{Commit, Expect, Record, RecordWrite, Store};
use crate::program::ReturnPolicy;
use crate::service::{App, Attempt};
use crate::subscriptions::attempt::record_payment;
use crate::subscriptions::payments::{Payment, PaymentOutcome};
use crate::subscriptions::provider_event::{AttemptRef, EventError, PaymentChange, ProviderEvent};
use crate::subscriptions::renewal::end_after_refund;
use crate::subscriptions::{
    AttemptStatus, Charge, ChargeRefund, RefundReason, Subscription, SubscriptionStatus,
};

/// The record kind of a provider event already applied; its id is the provider's event id.
pub const PROVIDER_EVENT_KIND: &str = "provider_event";

/// What a webhook delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookResult {
    /// The event changed a charge or a subscription.
    Applied,
    /// Recorded, but nothing of ours to change (not our payment, already settled, a kind of
    /// event billing does not act on).
    Ignored,
    /// This event was applied before.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookReceipt {
    pub event_id: String,
    pub result: WebhookResult,
}

/// The writes one event makes, with the event's own record added by the caller.
#[derive(Default)]
struct EventEffect {
    commits: Vec<Commit>,
    writes: Vec<RecordWrite>,
}

impl EventEffect {
    fn result(&self) -> WebhookResult {
        if self.commits.is_empty() && self.writes.is_empty() {
            WebhookResult::Ignored
        } else {
            WebhookResult::Applied
        }
    }
}

fn event_marker(event: &ProviderEvent, now: DateTime<Utc>) -> RecordWrite {
    RecordWrite {
        record: Record {
            kind: PROVIDER_EVENT_KIND.to_owned(),
            id: event.event_id.clone(),
            owner: None,
            version: 1,
            due: None,
            body: json!({ "event_type": event.event_type, "received_at": now }),
        },
        expect: Expect::Absent,
    }
}

fn event_error(error: EventError) -> ApiError {
    match error {
        // Stripe's own guidance answers a delivery that does not verify with a 400.
        EventError::Signature(error) => {
            tracing::warn!(%error, "a webhook delivery failed signature verification");
            ApiError::invalid(
                "Stripe-Signature",
                format!("the Stripe-Signature header does not verify: {error}"),
            )
        }
        EventError::Unreadable(reason) => ApiError::new(
            ErrorCode::ValidationError,
            format!("the event is unreadable: {reason}"),
        ),
        EventError::Provider(error) => {
            tracing::warn!(%error, "a webhook event could not be resolved; the provider will retry");
            ApiError::new(
                ErrorCode::PaymentProviderUnavailable,
                "the payment provider is unavailable; the event will be delivered again",
            )
        }
    }
}

impl<S: Store> App<S> {
    /// `POST /v1/webhooks/stripe`: verifies the delivery's `Stripe-Signature` and applies the
    /// event once.
    pub async fn receive_payment_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookReceipt, ApiError> {
        let signature = signature.ok_or_else(|| {
            ApiError::invalid(
                "Stripe-Signature",
                "a webhook delivery needs a Stripe-Signature header",
            )
        })?;
        let event = self
            .payments()
            .read_event(signature, body, self.now().timestamp())
            .await
            .map_err(event_error)?;
        self.apply_payment_event(&event).await
    }

    /// Applies one verified provider event, at most once.
    pub async fn apply_payment_event(
        &self,
        event: &ProviderEvent,
    ) -> Result<WebhookReceipt, ApiError> {
        let receipt = |result| WebhookReceipt {
            event_id: event.event_id.clone(),
            result,
        };
        let receipt = &receipt;
        self.retrying(|| async move {
            if self
                .store()
                .record(PROVIDER_EVENT_KIND, &event.event_id)
                .await?
                .is_some()
            {
                return Ok(Attempt::Done(receipt(WebhookResult::Duplicate)));
            }
            let now = self.now();
            let effect = match &event.change {
                PaymentChange::Unrelated => EventEffect::default(),
                PaymentChange::Settled { attempt, payment } => {
                    self.settled_payment(attempt, payment, now).await?
                }
                PaymentChange::TakenBack {
                    charge_id,
                    reference,
                    reason,
                } => self.taken_back(charge_id, reference, *reason, now).await?,
            };
            let result = effect.result();
            let mut writes = effect.writes;
            writes.push(event_marker(event, now));
            match self.store().transact(effect.commits, writes).await {
                Ok(()) => {
                    tracing::info!(event_id = %event.event_id, event_type = %event.event_type, ?result, "provider event applied");
                    Ok(Attempt::Done(receipt(result)))
                }
                // The event's record taken by a parallel delivery shows up as a duplicate on
                // the next read; any other race is retried from the reads.
                Err(e) if retryable(&e) => Ok(Attempt::Retry),
                Err(e) => Err(commit_failed(e)),
            }
        })
        .await
    }

    /// An attempt's payment settled at the provider. A first payment that succeeded activates
    /// its subscription here; a renewal attempt only gets its outcome, which the billing run
    /// applies to the subscription (its rules live in one place).
    async fn settled_payment(
        &self,
        attempt: &AttemptRef,
        payment: &Payment,
        now: DateTime<Utc>,
    ) -> Result<EventEffect, ApiError> {
        let Some(mut charge) = self.charge_record(&attempt.charge_id).await? else {
            return Ok(EventEffect::default());
        };
        let open = charge.value.succeeded().is_none()
            && charge.value.attempts.iter().any(|a| {
                a.attempt == attempt.attempt
                    && matches!(
                        a.status,
                        AttemptStatus::Pending | AttemptStatus::RequiresAction
                    )
            });
        if !open {
            return Ok(EventEffect::default());
        }
        record_payment(&mut charge.value, attempt.attempt, payment, now);
        let sub = self
            .subscription_record(&charge.value.member_id)
            .await?
            .filter(|s| s.value.subscription_id == charge.value.subscription_id);
        let activates = payment.outcome == PaymentOutcome::Succeeded
            && charge.value.period == 1
            && sub
                .as_ref()
                .is_some_and(|s| s.value.status == SubscriptionStatus::Incomplete);
        if let (true, Some(sub)) = (activates, sub) {
            let program = self.program().await?;
            let member = self.store().member(&charge.value.member_id).await?;
            if let (Some(plan), Some(member)) = (program.plan(&charge.value.plan_id), member) {
                let collected = Collected {
                    attempt: attempt.attempt,
                    outcome: PaymentOutcome::Succeeded,
                    charge,
                };
                let done = activation(&member, &program, &sub, plan, &collected, None, now)?;
                return Ok(EventEffect {
                    commits: vec![done.commit],
                    writes: done.writes,
                });
            }
        }
        Ok(EventEffect {
            writes: vec![charge_write(&charge.value, Some(charge.version))?],
            ..EventEffect::default()
        })
    }

    /// A paid period refunded or disputed: the charge records it, the subscription ends now if
    /// that period is its current one, and the period's bonus is reversed (as far as the
    /// balance allows: balances never go negative).
    async fn taken_back(
        &self,
        charge_id: &str,
        reference: &str,
        reason: RefundReason,
        now: DateTime<Utc>,
    ) -> Result<EventEffect, ApiError> {
        let Some(mut charge) = self.charge_record(charge_id).await? else {
            return Ok(EventEffect::default());
        };
        if charge.value.refund.is_some() || charge.value.succeeded().is_none() {
            return Ok(EventEffect::default());
        }
        charge.value.refund = Some(ChargeRefund {
            reference: reference.to_owned(),
            reason,
            at: now,
        });
        let mut effect = EventEffect {
            writes: vec![charge_write(&charge.value, Some(charge.version))?],
            ..EventEffect::default()
        };
        let sub = self
            .subscription_record(&charge.value.member_id)
            .await?
            .filter(|s| s.value.subscription_id == charge.value.subscription_id);
        let ended = sub
            .as_ref()
            .and_then(|s| ends_with_refund(s, &charge.value, now));
        if let (Some(ended), Some(sub)) = (&ended, &sub) {
            effect
                .writes
                .push(subscription_write(ended, Some(sub.version))?);
        }
        if let Some(commit) = self
            .reversal(&charge.value, reference, reason, ended.is_some(), now)
            .await?
        {
            effect.commits.push(commit);
        }
        Ok(effect)
    }

    /// The member's write for a taken-back period: the bonus reversed by a `reverse` entry keyed
    /// by the refund, and the plan's benefits removed if the subscription ends.
    async fn reversal(
        &self,
        charge: &Charge,
        reference: &str,
        reason: RefundReason,
        ends: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Commit>, ApiError> {
        let Some(member) = self.store().member(&charge.member_id).await? else {
            return Ok(None);
        };
        let program = self.program().await?;
        // What the period actually granted (its entry, read by key), not what the plan grants
        // today: a plan changed since must not take back more or less than was given.
        let grant = Source::Subscription {
            subscription_id: charge.subscription_id.clone(),
            period: charge.period,
        };
        let granted = self
            .store()
            .entry(&charge.member_id, &grant.entry_id())
            .await?
            .map_or(0, |entry| entry.points.max(0));
        // The money is already back with the customer, so a refund cannot be refused: `reject`
        // stops at the balance like `cap_at_balance`; `allow_negative` takes it all.
        let points = match program.document.return_policy {
            ReturnPolicy::AllowNegative => granted,
            ReturnPolicy::CapAtBalance | ReturnPolicy::Reject => {
                granted.min(member.balance.available.max(0))
            }
        };
        let holds_plan = member
            .plan
            .as_ref()
            .is_some_and(|p| p.subscription_id == charge.subscription_id);
        let strips = ends && holds_plan;
        if points == 0 && !strips {
            return Ok(None);
        }
        let mut entry = None;
        let mut next = if points > 0 {
            let next = member.with_entry(
                EntryType::Reverse,
                -points,
                &program.document.expiry.dating(self.now()),
            )?;
            let source = Source::SubscriptionRefund {
                subscription_id: charge.subscription_id.clone(),
                period: charge.period,
                reference: reference.to_owned(),
            };
            entry = Some(LedgerEntry {
                entry_id: source.entry_id(),
                seq: next.last_seq,
                member_id: member.member_id.clone(),
                entry_type: EntryType::Reverse,
                points: -points,
                balance_after: next.balance.available,
                reason: format!(
                    "monthly bonus of period {} taken back: payment {}",
                    charge.period,
                    match reason {
                        RefundReason::Refunded => "refunded",
                        RefundReason::Disputed => "disputed",
                    }
                ),
                breakdown: Vec::new(),
                source,
                program_version: program.version,
                occurred_at: now,
                recorded_at: now,
                lots: next.lots_taken(&member),
                pending: None,
            });
            next
        } else {
            let mut next = member.clone();
            next.version += 1;
            next
        };
        if strips {
            strip_plan(&mut next, now.date_naive());
        }
        Ok(Some(Commit {
            member: next,
            expected_version: Some(member.version),
            entry,
            idempotency: None,
            claim_referral_code: false,
            stock: None,
            tier_change: None,
        }))
    }
}

/// The subscription after `charge`'s period was taken back, if that period is the one it
/// currently stands on; an older period's refund leaves a running subscription alone.
fn ends_with_refund(
    sub: &Versioned<Subscription>,
    charge: &Charge,
    now: DateTime<Utc>,
) -> Option<Subscription> {
    let current = sub.value.period == charge.period
        && matches!(
            sub.value.status,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue
        );
    current.then(|| end_after_refund(&sub.value, now))
}
