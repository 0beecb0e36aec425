//! The renewal state machine: what the billing run does with a subscription on a given day, and
//! the subscription that follows from a charge's outcome (renewed, past due with the next retry,
//! lapsed, flagged for an operator). Pure: the service loads, charges and commits.

use chrono::{DateTime, NaiveDate, Utc};

use super::payments::PaymentOutcome;
use super::{next_retry, Dunning, OperatorFlag, Subscription, SubscriptionStatus};

/// What the billing run has to do with one subscription today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingStep {
    /// Its billing or retry date has not come.
    NotDue,
    /// Nothing to bill (incomplete, canceled, lapsed).
    Skip,
    /// Canceled at period end, and the period has ended.
    End,
    /// Collect attempt `attempt` of period `period`.
    Collect { period: u32, attempt: u32 },
}

pub fn billing_step(sub: &Subscription, today: NaiveDate) -> BillingStep {
    match sub.status {
        SubscriptionStatus::Active => {
            let (_, end) = sub.current_period();
            if today < end {
                BillingStep::NotDue
            } else if sub.cancel_at_period_end {
                BillingStep::End
            } else {
                BillingStep::Collect {
                    period: sub.period + 1,
                    attempt: 1,
                }
            }
        }
        SubscriptionStatus::PastDue => match &sub.dunning {
            Some(d) if today >= d.next_retry_on => BillingStep::Collect {
                period: d.period,
                attempt: d.failed_attempts + 1,
            },
            _ => BillingStep::NotDue,
        },
        _ => BillingStep::Skip,
    }
}

/// How a renewal charge ended for the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Renewed {
        recovered: bool,
    },
    PastDue {
        code: String,
        retry_on: NaiveDate,
    },
    /// The last retry failed: benefits end now.
    Lapsed,
}

/// The subscription after a renewal charge, and what happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Renewal {
    pub next: Subscription,
    pub settlement: Settlement,
}

/// The charge being settled: which period, which attempt, and into which plan.
#[derive(Debug, Clone, Copy)]
pub struct RenewalCharge<'a> {
    pub period: u32,
    pub attempt: u32,
    pub plan_id: &'a str,
    pub charge_id: &'a str,
}

/// The subscription after attempt `charge.attempt` of a renewal ended with `outcome`. A refused
/// request (`Rejected`) counts as a failed attempt, so the subscription still reaches an end,
/// and flags it for an operator; a payment needing authentication off session is a decline.
pub fn settle_renewal(
    sub: &Subscription,
    charge: RenewalCharge<'_>,
    outcome: &PaymentOutcome,
    now: DateTime<Utc>,
) -> Renewal {
    let today = now.date_naive();
    let mut next = sub.clone();
    next.updated_at = now;
    let code = match outcome {
        PaymentOutcome::Succeeded => {
            next.status = SubscriptionStatus::Active;
            next.period = charge.period;
            next.plan_id = charge.plan_id.to_owned();
            next.next_plan_id = None;
            next.dunning = None;
            return Renewal {
                next,
                settlement: Settlement::Renewed {
                    recovered: sub.status == SubscriptionStatus::PastDue,
                },
            };
        }
        PaymentOutcome::Declined { code } => code.clone(),
        PaymentOutcome::RequiresAction { .. } => "authentication_required".to_owned(),
        PaymentOutcome::Rejected { error_type, code } => {
            next.operator_flag = Some(OperatorFlag {
                charge_id: charge.charge_id.to_owned(),
                attempt: charge.attempt,
                error_type: error_type.clone(),
                code: code.clone(),
                at: now,
            });
            code.clone()
        }
    };
    let first_failed_on = sub.dunning.as_ref().map_or(today, |d| d.first_failed_on);
    let retry_on = next_retry(first_failed_on, charge.attempt);
    next.dunning = Some(Dunning {
        period: charge.period,
        first_failed_on,
        failed_attempts: charge.attempt,
        next_retry_on: retry_on.unwrap_or(today),
    });
    let settlement = match retry_on {
        Some(retry_on) => {
            next.status = SubscriptionStatus::PastDue;
            Settlement::PastDue { code, retry_on }
        }
        None => {
            next.status = SubscriptionStatus::Lapsed;
            Settlement::Lapsed
        }
    };
    Renewal { next, settlement }
}

/// The subscription after its first payment succeeded: active, in period 1.
pub fn activate(sub: &Subscription, now: DateTime<Utc>) -> Subscription {
    let mut active = sub.clone();
    active.status = SubscriptionStatus::Active;
    active.period = 1;
    active.updated_at = now;
    active
}

/// The subscription after its paid period was refunded or disputed: it ends now, and never
/// renews on a payment the customer took back.
pub fn end_after_refund(sub: &Subscription, now: DateTime<Utc>) -> Subscription {
    let mut ended = sub.clone();
    ended.status = SubscriptionStatus::Canceled;
    ended.cancel_at_period_end = false;
    ended.next_plan_id = None;
    ended.dunning = None;
    ended.updated_at = now;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemberId;
    use chrono::{Days, TimeZone};

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, m, d).expect("day")
    }

    fn at(m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, m, d, 9, 0, 0)
            .single()
            .expect("time")
    }

    fn active() -> Subscription {
        Subscription {
            subscription_id: "sub_1".into(),
            member_id: MemberId::parse("m-1").expect("id"),
            plan_id: "plus".into(),
            next_plan_id: Some("max".into()),
            status: SubscriptionStatus::Active,
            payment_method: "pm_card_visa".into(),
            customer: Some("cus_1".into()),
            anchor: day(1, 15),
            period: 1,
            cancel_at_period_end: false,
            dunning: None,
            operator_flag: None,
            created_at: at(1, 15),
            updated_at: at(1, 15),
        }
    }

    fn charge(period: u32, attempt: u32) -> RenewalCharge<'static> {
        RenewalCharge {
            period,
            attempt,
            plan_id: "max",
            charge_id: "sub_1:2",
        }
    }

    fn declined() -> PaymentOutcome {
        PaymentOutcome::Declined {
            code: "card_declined".into(),
        }
    }

    #[test]
    fn an_active_subscription_is_billed_for_the_next_period_on_its_anchor_day() {
        let sub = active();
        assert_eq!(billing_step(&sub, day(2, 14)), BillingStep::NotDue);
        assert_eq!(
            billing_step(&sub, day(2, 15)),
            BillingStep::Collect {
                period: 2,
                attempt: 1
            }
        );
        let ending = Subscription {
            cancel_at_period_end: true,
            ..sub
        };
        assert_eq!(billing_step(&ending, day(2, 15)), BillingStep::End);
    }

    #[test]
    fn a_renewal_moves_to_the_next_period_and_the_chosen_plan() {
        let renewal = settle_renewal(
            &active(),
            charge(2, 1),
            &PaymentOutcome::Succeeded,
            at(2, 15),
        );
        assert_eq!(renewal.settlement, Settlement::Renewed { recovered: false });
        assert_eq!(renewal.next.period, 2);
        assert_eq!(renewal.next.plan_id, "max");
        assert_eq!(renewal.next.next_plan_id, None);
    }

    #[test]
    fn declines_walk_the_dunning_schedule_and_the_last_one_lapses() {
        let mut sub = active();
        let mut now = at(2, 15);
        for attempt in 1..=3 {
            let renewal = settle_renewal(&sub, charge(2, attempt), &declined(), now);
            let Settlement::PastDue { retry_on, .. } = renewal.settlement else {
                panic!("attempt {attempt}: {:?}", renewal.settlement);
            };
            sub = renewal.next;
            assert_eq!(
                billing_step(&sub, retry_on),
                BillingStep::Collect {
                    period: 2,
                    attempt: attempt + 1
                }
            );
            now = at(2, 15) + Days::new(7);
        }
        let last = settle_renewal(&sub, charge(2, 4), &declined(), now);
        assert_eq!(last.settlement, Settlement::Lapsed);
        assert_eq!(last.next.status, SubscriptionStatus::Lapsed);
        assert_eq!(billing_step(&last.next, day(12, 31)), BillingStep::Skip);
    }

    #[test]
    fn a_recovered_period_says_so_and_clears_dunning() {
        let past_due = settle_renewal(&active(), charge(2, 1), &declined(), at(2, 15)).next;
        let renewal = settle_renewal(
            &past_due,
            charge(2, 2),
            &PaymentOutcome::Succeeded,
            at(2, 16),
        );
        assert_eq!(renewal.settlement, Settlement::Renewed { recovered: true });
        assert_eq!(renewal.next.dunning, None);
    }

    #[test]
    fn a_refused_request_flags_the_subscription_and_still_advances_dunning() {
        let rejected = PaymentOutcome::Rejected {
            error_type: "invalid_request_error".into(),
            code: "parameter_unknown".into(),
        };
        let renewal = settle_renewal(&active(), charge(2, 1), &rejected, at(2, 15));
        assert!(matches!(renewal.settlement, Settlement::PastDue { .. }));
        let flag = renewal.next.operator_flag.clone().expect("flagged");
        assert_eq!(flag.error_type, "invalid_request_error");
        assert_eq!(renewal.next.due(), Some(day(2, 16)));
    }

    #[test]
    fn an_off_session_payment_needing_authentication_is_a_decline() {
        let renewal = settle_renewal(
            &active(),
            charge(2, 1),
            &PaymentOutcome::RequiresAction {
                client_secret: "s".into(),
            },
            at(2, 15),
        );
        assert_eq!(
            renewal.settlement,
            Settlement::PastDue {
                code: "authentication_required".into(),
                retry_on: day(2, 16)
            }
        );
    }
}
