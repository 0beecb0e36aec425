//! Paid membership use cases, one concern per module:
//! - `start`: starting a subscription and its first, on-session payment (3-D Secure included);
//! - `collect`: collecting one attempt at one period's charge, at most once;
//! - `billing`: the daily billing run, renewals and their dunning retries;
//! - `cancel`: cancelling, changing plan, replacing the card;
//! - `webhooks`: what the provider reports later (asynchronous success, refunds, disputes);
//! - `charges`: the charge history a member and support read;
//! - `benefits`: what a paid period gives a member and what its end takes away.
//!
//! The rules themselves (what a retry does, what a decline does to the subscription) are pure
//! functions in [`crate::subscriptions::attempt`] and [`crate::subscriptions::renewal`].

mod benefits;
mod billing;
mod cancel;
mod charges;
mod collect;
mod start;
mod webhooks;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::json;

use super::{to_json, App};
use crate::error::{ApiError, ErrorCode};
use crate::ids::MemberId;
use crate::ports::{CommitError, Expect, Record, RecordWrite, Store};
use crate::program::ActiveProgram;
use crate::subscriptions::{
    Charge, Dunning, Subscription, SubscriptionStatus, CHARGE_KIND, SUBSCRIPTION_KIND,
};

pub use crate::subscriptions::attempt::PENDING_LEASE;
pub use billing::{
    BillingBatch, BillingPlan, BillingResult, BILLING_CATCH_UP_DAYS, SUBSCRIPTIONS_PER_MESSAGE,
};
pub use cancel::{CardChange, PlanChange};
pub use charges::{AttemptView, ChargeHistory, PeriodCharges};
pub use webhooks::{WebhookReceipt, WebhookResult, PROVIDER_EVENT_KIND};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodView {
    pub period: u32,
    pub start: NaiveDate,
    /// The first day after the period.
    pub end: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriptionView {
    pub subscription_id: String,
    pub member_id: MemberId,
    pub plan_id: String,
    pub status: SubscriptionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_period: Option<PeriodView>,
    pub next_billing_date: Option<NaiveDate>,
    pub cancel_at_period_end: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_plan_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dunning: Option<Dunning>,
    /// For an `incomplete` subscription whose first payment needs the member to authenticate:
    /// the PaymentIntent's client secret, for the app to finish 3-D Secure with Stripe.js.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl SubscriptionView {
    pub fn of(sub: &Subscription) -> Self {
        let current_period = (sub.period > 0).then(|| {
            let (start, end) = sub.current_period();
            PeriodView {
                period: sub.period,
                start,
                end,
            }
        });
        let next_billing_date = match sub.status {
            SubscriptionStatus::Active if !sub.cancel_at_period_end => sub.due(),
            SubscriptionStatus::PastDue => sub.due(),
            _ => None,
        };
        Self {
            subscription_id: sub.subscription_id.clone(),
            member_id: sub.member_id.clone(),
            plan_id: sub.plan_id.clone(),
            status: sub.status,
            current_period,
            next_billing_date,
            cancel_at_period_end: sub.cancel_at_period_end,
            next_plan_id: sub.next_plan_id.clone(),
            dunning: sub.dunning.clone(),
            client_secret: None,
        }
    }
}

/// A stored record and the version it was read at, to write over with a condition.
#[derive(Debug, Clone)]
pub(crate) struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

pub(crate) fn retryable(error: &CommitError) -> bool {
    matches!(
        error,
        CommitError::StaleMember
            | CommitError::Conflict
            | CommitError::RecordConflict { .. }
            | CommitError::IdempotencyKeyTaken
    )
}

/// A charge record that changed under us is a race the caller may retry; anything else is a
/// store failure.
pub(crate) fn charge_write_failed(error: CommitError) -> ApiError {
    if retryable(&error) {
        ApiError::new(
            ErrorCode::ConcurrentModification,
            "the charge changed; retry",
        )
    } else {
        commit_failed(error)
    }
}

pub(crate) fn commit_failed(error: CommitError) -> ApiError {
    match error {
        CommitError::Store(error) => error.into(),
        other => {
            tracing::error!(error = %other, "subscription commit failed");
            ApiError::internal()
        }
    }
}

fn record_of<T: Serialize>(
    kind: &str,
    id: &str,
    owner: Option<String>,
    version: u64,
    due: Option<NaiveDate>,
    body: &T,
) -> Result<Record, ApiError> {
    Ok(Record {
        kind: kind.to_owned(),
        id: id.to_owned(),
        owner,
        version,
        due,
        body: to_json(body)?,
    })
}

pub(crate) fn subscription_write(
    sub: &Subscription,
    previous: Option<u64>,
) -> Result<RecordWrite, ApiError> {
    let version = previous.map_or(1, |v| v + 1);
    Ok(RecordWrite {
        record: record_of(
            SUBSCRIPTION_KIND,
            sub.member_id.as_str(),
            Some(sub.member_id.as_str().to_owned()),
            version,
            sub.due(),
            sub,
        )?,
        expect: previous.map_or(Expect::Absent, Expect::Version),
    })
}

pub(crate) fn charge_write(
    charge: &Charge,
    previous: Option<u64>,
) -> Result<RecordWrite, ApiError> {
    let version = previous.map_or(1, |v| v + 1);
    Ok(RecordWrite {
        record: record_of(
            CHARGE_KIND,
            &charge.charge_id,
            Some(charge.subscription_id.clone()),
            version,
            None,
            charge,
        )?,
        expect: previous.map_or(Expect::Absent, Expect::Version),
    })
}

pub(crate) fn plan_not_found(program: &ActiveProgram, plan_id: &str) -> ApiError {
    let plans: Vec<&str> = program
        .document
        .plans
        .iter()
        .map(|p| p.plan_id.as_str())
        .collect();
    ApiError::invalid("plan_id", format!("the program has no plan '{plan_id}'"))
        .with_details(json!({ "field": "plan_id", "plans": plans }))
}

/// A payment method reference as a client sends it: 1 to 255 printable ASCII characters.
pub(crate) fn parse_payment_method(raw: &str) -> Result<String, ApiError> {
    let method = raw.trim();
    if method.is_empty() || method.len() > 255 || !method.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "payment_method",
            "payment_method must be 1 to 255 printable characters",
        ));
    }
    Ok(method.to_owned())
}

/// The alarm-able line written when the provider refuses one of our requests outright: an
/// operator has to look (a revoked key, a request this code builds wrongly).
pub(crate) fn log_rejected(charge_id: &str, attempt: u32, error_type: &str, code: &str) {
    tracing::error!(
        alarm = "payment_request_rejected",
        %charge_id,
        attempt,
        error_type,
        code,
        "the payment provider refused the request; the attempt failed and the subscription is flagged for an operator"
    );
}

impl<S: Store> App<S> {
    pub(crate) async fn subscription_record(
        &self,
        member: &MemberId,
    ) -> Result<Option<Versioned<Subscription>>, ApiError> {
        match self
            .store()
            .record(SUBSCRIPTION_KIND, member.as_str())
            .await?
        {
            Some(record) => Ok(Some(Versioned {
                value: record.parse()?,
                version: record.version,
            })),
            None => Ok(None),
        }
    }

    pub(crate) async fn charge_record(
        &self,
        charge_id: &str,
    ) -> Result<Option<Versioned<Charge>>, ApiError> {
        match self.store().record(CHARGE_KIND, charge_id).await? {
            Some(record) => Ok(Some(Versioned {
                value: record.parse()?,
                version: record.version,
            })),
            None => Ok(None),
        }
    }

    /// Every attempt at one period's charge, for audits and tests.
    pub async fn subscription_charge(
        &self,
        subscription_id: &str,
        period: u32,
    ) -> Result<Option<Charge>, ApiError> {
        Ok(self
            .charge_record(&crate::subscriptions::charge_id(subscription_id, period))
            .await?
            .map(|c| c.value))
    }

    /// `GET /v1/members/{id}/subscription`.
    pub async fn subscription_view(
        &self,
        member_id: &MemberId,
    ) -> Result<SubscriptionView, ApiError> {
        match self.subscription_record(member_id).await? {
            Some(sub) => Ok(SubscriptionView::of(&sub.value)),
            None => {
                self.store()
                    .member(member_id)
                    .await?
                    .ok_or_else(|| super::member_not_found(member_id))?;
                Err(ApiError::new(
                    ErrorCode::SubscriptionNotFound,
                    format!("member '{member_id}' has no subscription"),
                ))
            }
        }
    }
}
