//! What referrals leave on member items: the referee's first qualifying purchase and the
//! referrer's reward counters (see [`crate::referrals`]).

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::OrderId;
use crate::money::Money;

/// The referee's first qualifying purchase, marked on the referee's member item by the accrual
/// that records it, so that it is marked (and announced) once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralPurchase {
    pub order_id: OrderId,
    pub amount: Money,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// Rewarded referrals of a referrer in the current month and day (UTC), on the referrer's member
/// item: the reward transaction writes them under the member's version, so a cap is never
/// exceeded by racing workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralCounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    #[serde(default)]
    pub month_rewarded: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<NaiveDate>,
    #[serde(default)]
    pub day_rewarded: u32,
}

impl ReferralCounts {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    fn month_key(at: DateTime<Utc>) -> String {
        format!("{:04}-{:02}", at.year(), at.month())
    }

    pub fn this_month(&self, now: DateTime<Utc>) -> u32 {
        if self.month.as_deref() == Some(Self::month_key(now).as_str()) {
            self.month_rewarded
        } else {
            0
        }
    }

    pub fn today(&self, now: DateTime<Utc>) -> u32 {
        if self.day == Some(now.date_naive()) {
            self.day_rewarded
        } else {
            0
        }
    }

    /// The counters after one more reward at `now`.
    pub fn after_reward(&self, now: DateTime<Utc>) -> Self {
        Self {
            month: Some(Self::month_key(now)),
            // Capped far below the limit by the policy (monthly_cap <= 10000); saturating so a
            // corrupt counter still cannot wrap back under the cap.
            month_rewarded: self.this_month(now).saturating_add(1),
            day: Some(now.date_naive()),
            day_rewarded: self.today(now).saturating_add(1),
        }
    }
}
