//! Paid membership: plans in the program document, subscriptions to them, billing periods
//! anchored to the day of month the subscription started, and the dunning schedule that follows a
//! declined renewal.
//!
//! A subscription is a [`crate::ports::Record`] of kind [`SUBSCRIPTION_KIND`] whose id is the
//! member id (a member has at most one subscription at a time; a new one after a lapse or a
//! cancellation replaces the old). Each billed period has a [`Charge`] record of kind
//! [`CHARGE_KIND`] whose id is `<subscription_id>:<period>`; it is written, with a pending attempt,
//! before the payment provider is called, so a period is charged at most once however often the
//! billing of it is retried.

pub mod attempt;
pub mod payments;
pub mod provider_event;
pub mod renewal;
pub mod signature;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::MemberId;
use crate::ledger::BreakdownLine;
pub use crate::member::plan::MemberPlan;
use crate::member::Member;
use crate::money::Money;
pub use crate::program::plans::{validate_plans, Interval, Plan};
use crate::program::ActiveProgram;
use crate::tiers::multiplier_bonus;
use crate::Points;

pub const SUBSCRIPTION_KIND: &str = "subscription";
pub const CHARGE_KIND: &str = "subscription_charge";

/// Days after the first declined renewal on which it is tried again; after the last one fails the
/// subscription lapses.
pub const DUNNING_RETRY_DAYS: [u64; 3] = [1, 3, 7];

/// A plan's tier floor outlasts the paid period by this much, so that benefits carry through the
/// dunning retries and a billing run that is a day late; a lapse or a cancellation removes it at
/// once.
pub const FLOOR_GRACE_DAYS: u64 = 8;

impl ActiveProgram {
    pub fn plan(&self, plan_id: &str) -> Option<&Plan> {
        self.document.plans.iter().find(|p| p.plan_id == plan_id)
    }
}

/// The breakdown line a member's plan adds to points earned on spend, if any.
pub fn plan_multiplier_line(
    program: &ActiveProgram,
    member: &Member,
    activity: Points,
    at: DateTime<Utc>,
) -> Option<BreakdownLine> {
    let held = member.plan.as_ref().filter(|p| p.until > at)?;
    let plan = program.plan(&held.plan_id)?;
    let bonus = multiplier_bonus(activity, plan.earn_multiplier_percent);
    (bonus > 0).then(|| BreakdownLine {
        rule: format!("plan_multiplier:{}", plan.plan_id),
        description: format!(
            "{} subscribers earn {}% on spend",
            plan.name, plan.earn_multiplier_percent
        ),
        points: bonus,
    })
}

/// `anchor` moved forward `months` months, on the anchor's day of month or the last day of a
/// shorter month: 31 Jan + 1 → 28/29 Feb, 31 Jan + 2 → 31 Mar.
pub fn add_months_anchored(anchor: NaiveDate, months: u32) -> NaiveDate {
    let total = anchor.year() * 12 + anchor.month0() as i32 + months as i32;
    let (year, month) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
    let mut day = anchor.day();
    loop {
        if let Some(date) = NaiveDate::from_ymd_opt(year, month, day) {
            return date;
        }
        day -= 1;
    }
}

/// First and last-plus-one day of period `period` (1-based) of a subscription anchored on `anchor`.
pub fn period_bounds(anchor: NaiveDate, period: u32) -> (NaiveDate, NaiveDate) {
    let first = period.saturating_sub(1);
    (
        add_months_anchored(anchor, first),
        add_months_anchored(anchor, first + 1),
    )
}

/// Midnight UTC at the start of `day`.
pub fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Being started: the first payment has not succeeded (yet).
    Incomplete,
    Active,
    /// A renewal was declined; dunning retries are scheduled.
    PastDue,
    /// Canceled by the member; benefits ended with the paid period.
    Canceled,
    /// Every dunning retry was declined; benefits have ended.
    Lapsed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dunning {
    /// The period whose payment is being retried.
    pub period: u32,
    pub first_failed_on: NaiveDate,
    pub failed_attempts: u32,
    pub next_retry_on: NaiveDate,
}

/// The body of a subscription record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub subscription_id: String,
    pub member_id: MemberId,
    pub plan_id: String,
    /// A plan change waiting for the next period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_plan_id: Option<String>,
    pub status: SubscriptionStatus,
    /// The payment method charged: saved on [`Subscription::customer`] by the first payment,
    /// or replaced by the member since.
    pub payment_method: String,
    /// The member's customer at the payment provider (a Stripe Customer id), created before
    /// the first payment; renewals charge the card saved on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The day billing is anchored to (its day of month).
    pub anchor: NaiveDate,
    /// The newest paid period; 0 before the first payment.
    pub period: u32,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dunning: Option<Dunning>,
    /// Set when the provider refused one of our requests outright: someone has to look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_flag: Option<OperatorFlag>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a subscription needs an operator: a request the provider refused as invalid or
/// unauthenticated, which no retry of ours can fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorFlag {
    pub charge_id: String,
    pub attempt: u32,
    pub error_type: String,
    pub code: String,
    pub at: DateTime<Utc>,
}

impl Subscription {
    /// Start and end (exclusive) of the newest paid period.
    pub fn current_period(&self) -> (NaiveDate, NaiveDate) {
        period_bounds(self.anchor, self.period.max(1))
    }

    /// The day the billing job next has to look at this subscription, if ever.
    pub fn due(&self) -> Option<NaiveDate> {
        match self.status {
            SubscriptionStatus::Active => Some(self.current_period().1),
            SubscriptionStatus::PastDue => self.dunning.as_ref().map(|d| d.next_retry_on),
            _ => None,
        }
    }

    pub fn charge_id(&self, period: u32) -> String {
        charge_id(&self.subscription_id, period)
    }
}

pub fn charge_id(subscription_id: &str, period: u32) -> String {
    format!("{subscription_id}:{period}")
}

/// The day of the retry after `failed` declined attempts of a period first declined on `first`,
/// or `None` when the retries are used up.
pub fn next_retry(first: NaiveDate, failed: u32) -> Option<NaiveDate> {
    let index = usize::try_from(failed).ok()?.checked_sub(1)?;
    DUNNING_RETRY_DAYS
        .get(index)
        .map(|days| first + Days::new(*days))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// Written before the provider is called; resolved by the call or, after a crash, by a
    /// look-up of the attempt's payment at the provider.
    Pending,
    Succeeded,
    Declined,
    /// The customer has to authenticate the payment in the app (3-D Secure); resolved by a
    /// look-up at the provider or by its webhook.
    RequiresAction,
    /// The provider refused the request itself; final, and the subscription is flagged.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeAttempt {
    pub attempt: u32,
    pub status: AttemptStatus,
    pub idempotency_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// The provider's error type of a rejected attempt (`invalid_request_error`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub at: DateTime<Utc>,
}

/// The body of a charge record: one billed period and every attempt at collecting it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub charge_id: String,
    pub subscription_id: String,
    pub member_id: MemberId,
    pub period: u32,
    pub period_start: NaiveDate,
    pub plan_id: String,
    pub amount: Money,
    pub attempts: Vec<ChargeAttempt>,
    /// The period's payment was refunded or disputed; its benefits were taken back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<ChargeRefund>,
}

/// A paid period given back: a refund, or a dispute (chargeback) opened against the payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeRefund {
    /// The provider's object that took the money back (`re_…` or `dp_…`).
    pub reference: String,
    pub reason: RefundReason,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    Refunded,
    Disputed,
}

impl Charge {
    pub fn succeeded(&self) -> Option<&ChargeAttempt> {
        self.attempts
            .iter()
            .find(|a| a.status == AttemptStatus::Succeeded)
    }

    pub fn last(&self) -> Option<&ChargeAttempt> {
        self.attempts.last()
    }
}

/// The provider idempotency key of one attempt at one period's charge.
pub fn attempt_key(charge_id: &str, attempt: u32) -> String {
    format!("loyalty:{charge_id}:{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn billing_anchors_to_the_original_day_of_month() {
        let anchor = day(2027, 1, 31);
        let dates: Vec<NaiveDate> = (0..13).map(|m| add_months_anchored(anchor, m)).collect();
        assert_eq!(dates[1], day(2027, 2, 28));
        assert_eq!(dates[2], day(2027, 3, 31));
        assert_eq!(dates[3], day(2027, 4, 30));
        assert_eq!(dates[12], day(2028, 1, 31));
        assert_eq!(add_months_anchored(day(2028, 1, 31), 1), day(2028, 2, 29));
        assert_eq!(
            period_bounds(anchor, 2),
            (day(2027, 2, 28), day(2027, 3, 31))
        );
    }

    #[test]
    fn plans_are_validated_against_the_ladder_and_currency() {
        let program = crate::program::tests::default_program();
        let tiers = &program.document.tiers;
        let usd = program.document.currency;
        assert!(validate_plans(&program.document.plans, tiers, usd).is_ok());
        let plus = program
            .plan("plus")
            .expect("the shipped program has Plus")
            .clone();
        let cases: Vec<(&str, Plan)> = vec![
            (
                "tier_floor",
                Plan {
                    tier_floor: Some("diamond".into()),
                    ..plus.clone()
                },
            ),
            (
                "price",
                Plan {
                    price: Money {
                        minor: 0,
                        ..plus.price
                    },
                    ..plus.clone()
                },
            ),
            (
                "price",
                Plan {
                    price: Money {
                        minor: 999,
                        currency: Currency::parse("EUR").expect("eur"),
                    },
                    ..plus.clone()
                },
            ),
            (
                "earn_multiplier_percent",
                Plan {
                    earn_multiplier_percent: 50,
                    ..plus.clone()
                },
            ),
            (
                "plan_id",
                Plan {
                    plan_id: "Plus!".into(),
                    ..plus.clone()
                },
            ),
        ];
        for (field, plan) in cases {
            let (path, _) = validate_plans(&[plan], tiers, usd).expect_err(field);
            assert!(path.ends_with(field), "{path} for {field}");
        }
        let (path, _) = validate_plans(&[plus.clone(), plus], tiers, usd).expect_err("duplicate");
        assert_eq!(path, "plans[1]");
    }

    #[test]
    fn dunning_retries_after_one_three_and_seven_days() {
        let first = day(2027, 3, 1);
        assert_eq!(next_retry(first, 1), Some(day(2027, 3, 2)));
        assert_eq!(next_retry(first, 2), Some(day(2027, 3, 4)));
        assert_eq!(next_retry(first, 3), Some(day(2027, 3, 8)));
        assert_eq!(next_retry(first, 4), None);
    }
}
