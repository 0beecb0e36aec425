//! The charge history of a member's subscription: each billed period with its amount, every
//! attempt at collecting it and how it ended, and a refund or dispute that took it back. One
//! bounded query of the subscription's charge records, so the cost does not grow with the
//! member's history beyond [`CHARGE_HISTORY_LIMIT`].

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::error::{ApiError, ErrorCode};
use crate::ids::MemberId;
use crate::money::Money;
use crate::ports::Store;
use crate::service::{member_not_found, App};
use crate::subscriptions::{AttemptStatus, Charge, ChargeRefund, CHARGE_KIND};

/// Periods answered at most, newest first.
pub const CHARGE_HISTORY_LIMIT: u32 = 36;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub outcome: AttemptStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodCharges {
    pub period: u32,
    pub period_start: NaiveDate,
    pub plan_id: String,
    pub amount: Money,
    /// `paid`, `refunded`, `disputed`, `open` (being collected or retried) or `failed`.
    pub outcome: &'static str,
    pub attempts: Vec<AttemptView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<ChargeRefund>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChargeHistory {
    pub member_id: MemberId,
    pub subscription_id: String,
    pub periods: Vec<PeriodCharges>,
}

fn outcome_of(charge: &Charge) -> &'static str {
    if let Some(refund) = &charge.refund {
        return match refund.reason {
            crate::subscriptions::RefundReason::Refunded => "refunded",
            crate::subscriptions::RefundReason::Disputed => "disputed",
        };
    }
    if charge.succeeded().is_some() {
        return "paid";
    }
    match charge.last().map(|a| a.status) {
        Some(AttemptStatus::Rejected) => "failed",
        _ => "open",
    }
}

impl PeriodCharges {
    pub fn of(charge: &Charge) -> Self {
        Self {
            period: charge.period,
            period_start: charge.period_start,
            plan_id: charge.plan_id.clone(),
            amount: charge.amount,
            outcome: outcome_of(charge),
            attempts: charge
                .attempts
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    outcome: a.status,
                    payment_intent: a.payment_intent.clone(),
                    decline_code: a.decline_code.clone(),
                    at: a.at,
                })
                .collect(),
            refund: charge.refund.clone(),
        }
    }
}

impl<S: Store> App<S> {
    /// `GET /v1/members/{id}/subscription/charges`: the current subscription's billed periods,
    /// newest first.
    pub async fn subscription_charges(
        &self,
        member_id: &MemberId,
    ) -> Result<ChargeHistory, ApiError> {
        let Some(sub) = self.subscription_record(member_id).await? else {
            self.store()
                .member(member_id)
                .await?
                .ok_or_else(|| member_not_found(member_id))?;
            return Err(ApiError::new(
                ErrorCode::SubscriptionNotFound,
                format!("member '{member_id}' has no subscription"),
            ));
        };
        let records = self
            .store()
            .records_of(
                CHARGE_KIND,
                &sub.value.subscription_id,
                CHARGE_HISTORY_LIMIT,
            )
            .await?;
        let mut periods = records
            .into_iter()
            .map(|r| r.parse::<Charge>().map(|c| PeriodCharges::of(&c)))
            .collect::<Result<Vec<_>, _>>()?;
        periods.sort_by_key(|p| std::cmp::Reverse(p.period));
        Ok(ChargeHistory {
            member_id: member_id.clone(),
            subscription_id: sub.value.subscription_id,
            periods,
        })
    }
}
