//! The charge-attempt state machine: what collecting one attempt at one period's charge has to
//! do, given the period's charge record, and how a provider's answer is written into it. Pure:
//! the service reads and writes the record and calls the provider; every rule about retries,
//! leases and look-ups lives here.
//!
//! An attempt is `pending` from before the provider is called until its answer is recorded.
//! A pending attempt left by a run that crashed or lost the answer is looked up at the provider
//! (by its metadata) before anything is charged again, so a period is charged at most once.

use chrono::{DateTime, Duration, Utc};

use super::payments::{Payment, PaymentOutcome};
use super::{attempt_key, AttemptStatus, Charge, ChargeAttempt};

/// A pending attempt younger than this belongs to a run still in flight; older, it is resolved
/// by a look-up at the provider. Longer than the billing function's timeout.
pub const PENDING_LEASE: Duration = Duration::minutes(5);

/// What collecting attempt `wanted` of a period's charge has to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptStep {
    /// The period is paid.
    Paid,
    /// Another run holds a fresh pending attempt: come back later.
    InFlight,
    /// Attempt `attempt` may have reached the provider (pending past its lease, or waiting on
    /// the customer's authentication): ask the provider before charging anything.
    LookUp { attempt: u32 },
    /// This call already holds attempt `attempt`'s answer (a retried commit): use it.
    Known { attempt: u32 },
    /// Attempt `attempt` ended already; its outcome stands.
    Settled { outcome: PaymentOutcome },
    /// Write attempt `attempt` as pending, then charge it.
    Open { attempt: u32 },
}

/// The next step for attempt `wanted`, given the stored `charge` (if any), the attempt whose
/// answer this call already holds (`known`) and the time.
pub fn attempt_step(
    charge: Option<&Charge>,
    wanted: u32,
    known: Option<u32>,
    now: DateTime<Utc>,
) -> AttemptStep {
    let Some(charge) = charge else {
        return AttemptStep::Open { attempt: wanted };
    };
    if charge.succeeded().is_some() {
        return AttemptStep::Paid;
    }
    let Some(last) = charge.last() else {
        return AttemptStep::Open { attempt: wanted };
    };
    let ours = known == Some(last.attempt);
    match last.status {
        AttemptStatus::Pending | AttemptStatus::RequiresAction if ours => AttemptStep::Known {
            attempt: last.attempt,
        },
        AttemptStatus::Pending if now - last.at < PENDING_LEASE => AttemptStep::InFlight,
        AttemptStatus::Pending | AttemptStatus::RequiresAction => AttemptStep::LookUp {
            attempt: last.attempt,
        },
        AttemptStatus::Declined | AttemptStatus::Rejected if last.attempt >= wanted => {
            AttemptStep::Settled {
                outcome: settled_outcome(last),
            }
        }
        AttemptStatus::Succeeded | AttemptStatus::Declined | AttemptStatus::Rejected => {
            AttemptStep::Open { attempt: wanted }
        }
    }
}

fn settled_outcome(attempt: &ChargeAttempt) -> PaymentOutcome {
    let code = attempt
        .decline_code
        .clone()
        .unwrap_or_else(|| "declined".into());
    match (&attempt.status, &attempt.error_type) {
        (AttemptStatus::Rejected, Some(error_type)) => PaymentOutcome::Rejected {
            error_type: error_type.clone(),
            code,
        },
        _ => PaymentOutcome::Declined { code },
    }
}

/// A pending attempt, written before the provider is called.
pub fn pending_attempt(charge_id: &str, attempt: u32, now: DateTime<Utc>) -> ChargeAttempt {
    ChargeAttempt {
        attempt,
        status: AttemptStatus::Pending,
        idempotency_key: attempt_key(charge_id, attempt),
        payment_intent: None,
        decline_code: None,
        error_type: None,
        at: now,
    }
}

/// Writes the provider's answer for `attempt` into `charge`.
pub fn record_payment(charge: &mut Charge, attempt: u32, payment: &Payment, now: DateTime<Utc>) {
    let Some(entry) = charge
        .attempts
        .iter_mut()
        .rev()
        .find(|a| a.attempt == attempt)
    else {
        return;
    };
    if !payment.id.is_empty() {
        entry.payment_intent = Some(payment.id.clone());
    }
    entry.at = now;
    match &payment.outcome {
        PaymentOutcome::Succeeded => entry.status = AttemptStatus::Succeeded,
        PaymentOutcome::Declined { code } => {
            entry.status = AttemptStatus::Declined;
            entry.decline_code = Some(code.clone());
        }
        PaymentOutcome::RequiresAction { .. } => entry.status = AttemptStatus::RequiresAction,
        PaymentOutcome::Rejected { error_type, code } => {
            entry.status = AttemptStatus::Rejected;
            entry.decline_code = Some(code.clone());
            entry.error_type = Some(error_type.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemberId;
    use crate::money::{Currency, Money};
    use chrono::{NaiveDate, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0)
            .single()
            .expect("time")
    }

    fn charge(attempts: Vec<ChargeAttempt>) -> Charge {
        Charge {
            charge_id: "sub_1:2".into(),
            subscription_id: "sub_1".into(),
            member_id: MemberId::parse("m-1").expect("id"),
            period: 2,
            period_start: NaiveDate::from_ymd_opt(2027, 3, 1).expect("day"),
            plan_id: "plus".into(),
            amount: Money {
                minor: 999,
                currency: Currency::parse("USD").expect("usd"),
            },
            attempts,
            refund: None,
        }
    }

    fn settled(attempt: u32, outcome: PaymentOutcome) -> ChargeAttempt {
        let mut charge = charge(vec![pending_attempt("sub_1:2", attempt, now())]);
        record_payment(
            &mut charge,
            attempt,
            &Payment {
                id: format!("pi_{attempt}"),
                outcome,
            },
            now(),
        );
        charge.attempts.remove(0)
    }

    #[test]
    fn a_period_without_a_charge_record_opens_the_wanted_attempt() {
        assert_eq!(
            attempt_step(None, 1, None, now()),
            AttemptStep::Open { attempt: 1 }
        );
    }

    #[test]
    fn a_paid_period_is_never_charged_again() {
        let paid = charge(vec![settled(1, PaymentOutcome::Succeeded)]);
        assert_eq!(attempt_step(Some(&paid), 2, None, now()), AttemptStep::Paid);
    }

    #[test]
    fn a_fresh_pending_attempt_belongs_to_a_run_in_flight() {
        let pending = charge(vec![pending_attempt("sub_1:2", 1, now())]);
        assert_eq!(
            attempt_step(Some(&pending), 1, None, now() + Duration::seconds(30)),
            AttemptStep::InFlight
        );
    }

    #[test]
    fn a_pending_attempt_past_its_lease_is_looked_up_before_any_new_charge() {
        let pending = charge(vec![pending_attempt("sub_1:2", 1, now())]);
        let later = now() + PENDING_LEASE + Duration::seconds(1);
        assert_eq!(
            attempt_step(Some(&pending), 2, None, later),
            AttemptStep::LookUp { attempt: 1 }
        );
    }

    #[test]
    fn a_retried_commit_reuses_the_answer_it_already_holds() {
        let pending = charge(vec![pending_attempt("sub_1:2", 1, now())]);
        assert_eq!(
            attempt_step(Some(&pending), 1, Some(1), now()),
            AttemptStep::Known { attempt: 1 }
        );
    }

    #[test]
    fn a_payment_waiting_on_the_customer_is_asked_about_at_once() {
        let waiting = charge(vec![settled(
            1,
            PaymentOutcome::RequiresAction {
                client_secret: "pi_1_secret".into(),
            },
        )]);
        assert_eq!(
            attempt_step(Some(&waiting), 1, None, now()),
            AttemptStep::LookUp { attempt: 1 }
        );
    }

    #[test]
    fn a_declined_attempt_stands_until_the_next_retry_is_due() {
        let declined = charge(vec![settled(
            1,
            PaymentOutcome::Declined {
                code: "card_declined".into(),
            },
        )]);
        assert_eq!(
            attempt_step(Some(&declined), 1, None, now()),
            AttemptStep::Settled {
                outcome: PaymentOutcome::Declined {
                    code: "card_declined".into()
                }
            }
        );
        assert_eq!(
            attempt_step(Some(&declined), 2, None, now()),
            AttemptStep::Open { attempt: 2 }
        );
    }

    #[test]
    fn a_rejected_attempt_is_final_and_keeps_its_error_type() {
        let rejected = charge(vec![settled(
            1,
            PaymentOutcome::Rejected {
                error_type: "invalid_request_error".into(),
                code: "parameter_unknown".into(),
            },
        )]);
        assert_eq!(rejected.attempts[0].status, AttemptStatus::Rejected);
        assert_eq!(
            attempt_step(Some(&rejected), 1, None, now()),
            AttemptStep::Settled {
                outcome: PaymentOutcome::Rejected {
                    error_type: "invalid_request_error".into(),
                    code: "parameter_unknown".into()
                }
            }
        );
    }
}
