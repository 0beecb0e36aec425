//! Collecting one attempt at one period's charge, at most once: the period's charge record is
//! written with a pending attempt before the provider is called, the provider call carries a key
//! derived from that attempt, and an attempt found pending (a crash, a timeout) or waiting on
//! the customer is looked up at the provider by its metadata before anything is charged again.
//! Which of these applies is [`attempt_step`]'s decision.

use super::{charge_write, charge_write_failed, Versioned};
use crate::error::{ApiError, ErrorCode};
use crate::ports::Store;
use crate::service::App;
use crate::subscriptions::attempt::{attempt_step, pending_attempt, record_payment, AttemptStep};
use crate::subscriptions::payments::{ChargeRequest, Payment, PaymentOutcome, Presence};
use crate::subscriptions::{attempt_key, period_bounds, Charge, Plan, Subscription};

/// A provider answer this call already received, so that a commit retried after a race does not
/// ask the provider again.
#[derive(Debug, Clone)]
pub(crate) struct KnownPayment {
    charge_id: String,
    attempt: u32,
    payment: Payment,
}

/// The attempt to collect.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Collection<'a> {
    pub sub: &'a Subscription,
    pub customer: &'a str,
    pub plan: &'a Plan,
    pub period: u32,
    pub attempt: u32,
    pub presence: Presence,
}

/// The outcome of collecting one attempt, with the charge record as it should be stored.
#[derive(Debug, Clone)]
pub(crate) struct Collected {
    pub charge: Versioned<Charge>,
    /// The attempt the outcome belongs to (a resumed attempt may be older than the one asked).
    pub attempt: u32,
    pub outcome: PaymentOutcome,
}

fn unavailable(error: impl std::fmt::Display, charge_id: &str, doing: &str) -> ApiError {
    tracing::warn!(%error, %charge_id, "{doing} failed; the attempt stays pending");
    ApiError::new(
        ErrorCode::PaymentProviderUnavailable,
        "the payment provider is unavailable; retry",
    )
}

fn new_charge(what: &Collection<'_>, charge_id: &str) -> Charge {
    let (period_start, _) = period_bounds(what.sub.anchor, what.period);
    Charge {
        charge_id: charge_id.to_owned(),
        subscription_id: what.sub.subscription_id.clone(),
        member_id: what.sub.member_id.clone(),
        period: what.period,
        period_start,
        plan_id: what.plan.plan_id.clone(),
        amount: what.plan.price,
        attempts: Vec::new(),
        refund: None,
    }
}

impl<S: Store> App<S> {
    /// Collects `what.attempt` of `what.period`'s charge, at most once. `known` carries a payment
    /// this same call already received.
    pub(crate) async fn collect(
        &self,
        what: Collection<'_>,
        known: &mut Option<KnownPayment>,
    ) -> Result<Collected, ApiError> {
        let now = self.now();
        let charge_id = what.sub.charge_id(what.period);
        let stored = self.charge_record(&charge_id).await?;
        let held = known.as_ref().filter(|k| k.charge_id == charge_id);
        let step = attempt_step(
            stored.as_ref().map(|c| &c.value),
            what.attempt,
            held.map(|k| k.attempt),
            now,
        );
        let (mut charge, number, payment) = match step {
            AttemptStep::Paid | AttemptStep::Settled { .. } => {
                let charge = stored.ok_or_else(ApiError::internal)?;
                let (attempt, outcome) = match step {
                    AttemptStep::Settled { outcome } => (
                        charge.value.last().map_or(what.attempt, |a| a.attempt),
                        outcome,
                    ),
                    _ => (
                        charge.value.succeeded().map_or(what.attempt, |a| a.attempt),
                        PaymentOutcome::Succeeded,
                    ),
                };
                return Ok(Collected {
                    charge,
                    attempt,
                    outcome,
                });
            }
            AttemptStep::InFlight => {
                return Err(ApiError::new(
                    ErrorCode::ConcurrentModification,
                    "this period's payment is being collected; retry shortly",
                ))
            }
            AttemptStep::Known { attempt } => {
                let charge = stored.ok_or_else(ApiError::internal)?;
                let payment = held.map(|k| k.payment.clone());
                (charge, attempt, payment)
            }
            AttemptStep::LookUp { attempt } => {
                let charge = stored.ok_or_else(ApiError::internal)?;
                let found = self
                    .payments()
                    .find(what.customer, &charge_id, attempt)
                    .await
                    .map_err(|e| unavailable(e, &charge_id, "payment look-up"))?;
                (charge, attempt, found)
            }
            AttemptStep::Open { attempt } => {
                let (mut charge, previous) = match stored {
                    Some(stored) => (stored.value, Some(stored.version)),
                    None => (new_charge(&what, &charge_id), None),
                };
                charge
                    .attempts
                    .push(pending_attempt(&charge_id, attempt, now));
                self.store()
                    .transact(Vec::new(), vec![charge_write(&charge, previous)?])
                    .await
                    .map_err(charge_write_failed)?;
                let version = previous.map_or(1, |v| v + 1);
                (
                    Versioned {
                        value: charge,
                        version,
                    },
                    attempt,
                    None,
                )
            }
        };
        let payment = match payment {
            Some(payment) => payment,
            None => {
                let request = ChargeRequest {
                    idempotency_key: attempt_key(&charge_id, number),
                    charge_id: charge_id.clone(),
                    attempt: number,
                    amount: charge.value.amount,
                    customer: what.customer.to_owned(),
                    payment_method: what.sub.payment_method.clone(),
                    presence: what.presence,
                    member_id: what.sub.member_id.as_str().to_owned(),
                    description: format!("{} period {}", what.plan.name, what.period),
                };
                self.payments()
                    .charge(&request)
                    .await
                    .map_err(|e| unavailable(e, &charge_id, "charge"))?
            }
        };
        *known = Some(KnownPayment {
            charge_id,
            attempt: number,
            payment: payment.clone(),
        });
        record_payment(&mut charge.value, number, &payment, now);
        Ok(Collected {
            charge,
            attempt: number,
            outcome: payment.outcome,
        })
    }
}
