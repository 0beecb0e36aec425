//! The payment-provider port. The Stripe adapter lives in `loyalty_payments`; [`MemoryPayments`]
//! stands in for it in tests, and can be told to decline a payment method or to "crash" after
//! charging.

#[cfg(any(test, feature = "testing"))]
use std::collections::{HashMap, HashSet};
#[cfg(any(test, feature = "testing"))]
use std::sync::Mutex;

use async_trait::async_trait;

use crate::money::Money;

/// One attempt at collecting one period's charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Sent as the provider's idempotency key.
    pub idempotency_key: String,
    /// Stored on the payment as metadata, so the attempt can be found again after a crash.
    pub charge_id: String,
    pub attempt: u32,
    pub amount: Money,
    pub payment_method: String,
    pub member_id: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    Succeeded,
    Declined { code: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The provider's id of the payment (a PaymentIntent id on Stripe).
    pub id: String,
    pub outcome: PaymentOutcome,
}

/// The provider could not be reached or answered something unexpected; whether money moved is
/// unknown, so the attempt stays pending and is looked up before any new charge.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payment provider: {0}")]
pub struct PaymentError(pub String);

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Charges `request.amount` to `request.payment_method`, off session.
    async fn charge(&self, request: &ChargeRequest) -> Result<Payment, PaymentError>;
    /// The payment made for `charge_id`'s attempt `attempt`, if the provider has one (found by
    /// its metadata). A payment still processing is an error: ask again later.
    async fn find(&self, charge_id: &str, attempt: u32) -> Result<Option<Payment>, PaymentError>;
}

/// The provider of a deployment without one: every call fails.
#[derive(Debug, Default)]
pub struct NoPayments;

#[async_trait]
impl PaymentProvider for NoPayments {
    async fn charge(&self, _: &ChargeRequest) -> Result<Payment, PaymentError> {
        Err(PaymentError("no payment provider is configured".into()))
    }

    async fn find(&self, _: &str, _: u32) -> Result<Option<Payment>, PaymentError> {
        Err(PaymentError("no payment provider is configured".into()))
    }
}

#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
struct Ledger {
    payments: Vec<(ChargeRequest, Payment)>,
    declining: HashSet<String>,
    /// Charges that succeed at the provider and then "lose" the answer.
    crash_after_charge: u32,
    by_key: HashMap<String, usize>,
}

/// An in-memory provider (the `testing` feature). Payment methods succeed unless [`MemoryPayments::decline`] was called
/// for them. Like localstripe, it ignores idempotency keys unless told to honour them, so tests
/// show that the at-most-once guarantee is the caller's own.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct MemoryPayments {
    state: Mutex<Ledger>,
    honour_keys: bool,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryPayments {
    pub fn honouring_keys() -> Self {
        Self {
            honour_keys: true,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn decline(&self, payment_method: &str) {
        self.lock().declining.insert(payment_method.to_owned());
    }

    pub fn accept(&self, payment_method: &str) {
        self.lock().declining.remove(payment_method);
    }

    /// The next `count` charges succeed but return an error, as if the caller crashed.
    pub fn crash_after_charge(&self, count: u32) {
        self.lock().crash_after_charge = count;
    }

    /// Every payment made, in order.
    pub fn payments(&self) -> Vec<(ChargeRequest, Payment)> {
        self.lock().payments.clone()
    }

    /// Successful payments for `charge_id`.
    pub fn succeeded_for(&self, charge_id: &str) -> usize {
        self.lock()
            .payments
            .iter()
            .filter(|(r, p)| r.charge_id == charge_id && p.outcome == PaymentOutcome::Succeeded)
            .count()
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl PaymentProvider for MemoryPayments {
    async fn charge(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        let mut state = self.lock();
        if self.honour_keys {
            if let Some(index) = state.by_key.get(&request.idempotency_key) {
                return Ok(state.payments[*index].1.clone());
            }
        }
        let outcome = if state.declining.contains(&request.payment_method) {
            PaymentOutcome::Declined {
                code: "card_declined".into(),
            }
        } else {
            PaymentOutcome::Succeeded
        };
        let payment = Payment {
            id: format!("pi_mem_{}", state.payments.len() + 1),
            outcome,
        };
        state.payments.push((request.clone(), payment.clone()));
        let index = state.payments.len() - 1;
        state.by_key.insert(request.idempotency_key.clone(), index);
        if state.crash_after_charge > 0 {
            state.crash_after_charge -= 1;
            return Err(PaymentError(
                "connection reset after the charge was made".into(),
            ));
        }
        Ok(payment)
    }

    async fn find(&self, charge_id: &str, attempt: u32) -> Result<Option<Payment>, PaymentError> {
        Ok(self
            .lock()
            .payments
            .iter()
            .rev()
            .find(|(r, _)| r.charge_id == charge_id && r.attempt == attempt)
            .map(|(_, p)| p.clone()))
    }
}
