//! The payment-provider port. The Stripe adapter lives in `loyalty_payments`; [`MemoryPayments`]
//! stands in for it in tests, and can be told to decline a payment method or to "crash" after
//! charging.

#[cfg(any(test, feature = "testing"))]
use std::collections::{HashMap, HashSet};
#[cfg(any(test, feature = "testing"))]
use std::sync::Mutex;

use async_trait::async_trait;

use super::provider_event::{EventError, ProviderEvent};
use crate::money::Money;

/// The webhook signing secret of [`MemoryPayments`], for tests that sign deliveries.
#[cfg(any(test, feature = "testing"))]
pub const MEMORY_WEBHOOK_SECRET: &str = "whsec_memory";

/// Whether the customer is at hand to authenticate the payment (3-D Secure). Stripe's saved-card
/// flow takes the first payment on session, asking to keep the card for later
/// (`setup_future_usage=off_session`), and every renewal off session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The member is in the app: a payment that needs action goes back to them.
    OnSession,
    /// A renewal: the member is not there, so a payment that needs action is a decline.
    OffSession,
}

/// One attempt at collecting one period's charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Sent as the provider's idempotency key.
    pub idempotency_key: String,
    /// Stored on the payment as metadata, so the attempt can be found again after a crash.
    pub charge_id: String,
    pub attempt: u32,
    pub amount: Money,
    /// The provider's customer the card is saved on (a Stripe Customer id).
    pub customer: String,
    pub payment_method: String,
    pub presence: Presence,
    pub member_id: String,
    pub description: String,
}

/// The provider's customer of one member, created at most once per idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRequest {
    pub idempotency_key: String,
    pub member_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    Succeeded,
    /// The card was refused; dunning applies.
    Declined {
        code: String,
    },
    /// The customer must authenticate (3-D Secure) in the app with this secret; the provider
    /// reports the result later.
    RequiresAction {
        client_secret: String,
    },
    /// The provider refused the request itself (an invalid request, a revoked key): retrying the
    /// same request cannot succeed, and an operator has to look.
    Rejected {
        error_type: String,
        code: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The provider's id of the payment (a PaymentIntent id on Stripe).
    pub id: String,
    pub outcome: PaymentOutcome,
}

/// What saving a new card on a customer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardSaved {
    Saved,
    /// The provider refused the card (unknown, declined on verification).
    Refused {
        code: String,
    },
}

/// The provider could not be reached, throttled us, failed inside or answered something
/// unexpected, after the adapter's own retries; whether money moved is unknown, so the attempt
/// stays pending and is looked up before any new charge.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payment provider: {0}")]
pub struct PaymentError(pub String);

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Creates the member's customer at the provider; the same key answers the same customer.
    async fn create_customer(&self, request: &CustomerRequest) -> Result<String, PaymentError>;
    /// Charges `request.amount` to `request.payment_method` saved on `request.customer`.
    async fn charge(&self, request: &ChargeRequest) -> Result<Payment, PaymentError>;
    /// The payment made for `charge_id`'s attempt `attempt` on `customer`, if the provider has
    /// one (found by its metadata). A payment still processing is an error: ask again later.
    async fn find(
        &self,
        customer: &str,
        charge_id: &str,
        attempt: u32,
    ) -> Result<Option<Payment>, PaymentError>;
    /// Saves `payment_method` on `customer` for later off-session charges (a replaced card).
    async fn save_card(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<CardSaved, PaymentError>;
    /// Verifies one webhook delivery (its `Stripe-Signature` header against the raw body, at
    /// unix time `now_unix`) and reads the payment change it reports.
    async fn read_event(
        &self,
        signature: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<ProviderEvent, EventError>;
}

/// The provider of a deployment without one: every call fails.
#[derive(Debug, Default)]
pub struct NoPayments;

fn not_configured() -> PaymentError {
    PaymentError("no payment provider is configured".into())
}

#[async_trait]
impl PaymentProvider for NoPayments {
    async fn create_customer(&self, _: &CustomerRequest) -> Result<String, PaymentError> {
        Err(not_configured())
    }

    async fn charge(&self, _: &ChargeRequest) -> Result<Payment, PaymentError> {
        Err(not_configured())
    }

    async fn find(&self, _: &str, _: &str, _: u32) -> Result<Option<Payment>, PaymentError> {
        Err(not_configured())
    }

    async fn save_card(&self, _: &str, _: &str) -> Result<CardSaved, PaymentError> {
        Err(not_configured())
    }

    async fn read_event(&self, _: &str, _: &[u8], _: i64) -> Result<ProviderEvent, EventError> {
        Err(not_configured().into())
    }
}

#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
struct Ledger {
    payments: Vec<(ChargeRequest, Payment)>,
    declining: HashSet<String>,
    /// Payment methods whose on-session payments need 3-D Secure (off session they decline
    /// with `authentication_required`, as Stripe does).
    authenticating: HashSet<String>,
    /// Payment methods the provider refuses as an invalid request.
    rejecting: HashSet<String>,
    /// Charges that succeed at the provider and then "lose" the answer.
    crash_after_charge: u32,
    by_key: HashMap<String, usize>,
    customers: HashMap<String, String>,
    saved_cards: Vec<(String, String)>,
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

    /// On-session payments with `payment_method` need 3-D Secure.
    pub fn require_action(&self, payment_method: &str) {
        self.lock().authenticating.insert(payment_method.to_owned());
    }

    /// Payments with `payment_method` are refused as invalid requests.
    pub fn reject(&self, payment_method: &str) {
        self.lock().rejecting.insert(payment_method.to_owned());
    }

    /// The member finished (or failed) 3-D Secure for the payment `payment_intent`.
    pub fn complete_action(&self, payment_intent: &str, succeeded: bool) {
        let mut state = self.lock();
        if let Some((_, payment)) = state
            .payments
            .iter_mut()
            .find(|(_, p)| p.id == payment_intent)
        {
            payment.outcome = if succeeded {
                PaymentOutcome::Succeeded
            } else {
                PaymentOutcome::Declined {
                    code: "authentication_failed".into(),
                }
            };
        }
    }

    /// The next `count` charges succeed but return an error, as if the caller crashed.
    pub fn crash_after_charge(&self, count: u32) {
        self.lock().crash_after_charge = count;
    }

    /// Every payment made, in order.
    pub fn payments(&self) -> Vec<(ChargeRequest, Payment)> {
        self.lock().payments.clone()
    }

    /// Every card saved on a customer after the first payment, as (customer, payment method).
    pub fn saved_cards(&self) -> Vec<(String, String)> {
        self.lock().saved_cards.clone()
    }

    /// Customers created.
    pub fn customers(&self) -> usize {
        self.lock().customers.len()
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
    async fn create_customer(&self, request: &CustomerRequest) -> Result<String, PaymentError> {
        let mut state = self.lock();
        let next = format!("cus_mem_{}", state.customers.len() + 1);
        // Stripe honours this key for 24 hours; the caller stores the id long before then.
        Ok(state
            .customers
            .entry(request.idempotency_key.clone())
            .or_insert(next)
            .clone())
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<Payment, PaymentError> {
        let mut state = self.lock();
        if self.honour_keys {
            if let Some(index) = state.by_key.get(&request.idempotency_key) {
                return Ok(state.payments[*index].1.clone());
            }
        }
        let id = format!("pi_mem_{}", state.payments.len() + 1);
        let method = &request.payment_method;
        let outcome = if state.rejecting.contains(method) {
            PaymentOutcome::Rejected {
                error_type: "invalid_request_error".into(),
                code: "parameter_invalid".into(),
            }
        } else if state.declining.contains(method) {
            PaymentOutcome::Declined {
                code: "card_declined".into(),
            }
        } else if state.authenticating.contains(method) {
            match request.presence {
                Presence::OnSession => PaymentOutcome::RequiresAction {
                    client_secret: format!("{id}_secret_mem"),
                },
                Presence::OffSession => PaymentOutcome::Declined {
                    code: "authentication_required".into(),
                },
            }
        } else {
            PaymentOutcome::Succeeded
        };
        let payment = Payment { id, outcome };
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

    async fn find(
        &self,
        customer: &str,
        charge_id: &str,
        attempt: u32,
    ) -> Result<Option<Payment>, PaymentError> {
        Ok(self
            .lock()
            .payments
            .iter()
            .rev()
            .find(|(r, _)| {
                r.customer == customer && r.charge_id == charge_id && r.attempt == attempt
            })
            .map(|(_, p)| p.clone()))
    }

    async fn save_card(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<CardSaved, PaymentError> {
        let mut state = self.lock();
        if state.declining.contains(payment_method) || state.rejecting.contains(payment_method) {
            return Ok(CardSaved::Refused {
                code: "card_declined".into(),
            });
        }
        state
            .saved_cards
            .push((customer.to_owned(), payment_method.to_owned()));
        Ok(CardSaved::Saved)
    }

    async fn read_event(
        &self,
        signature: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<ProviderEvent, EventError> {
        use super::provider_event::{verify_and_read, PaymentChange, StripeEventBody};
        let (event_id, event_type, body) =
            verify_and_read(MEMORY_WEBHOOK_SECRET, signature, body, now_unix)?;
        let change = match body {
            StripeEventBody::Ready(change) => change,
            StripeEventBody::TakenBack {
                payment_intent,
                reference,
                reason,
            } => self
                .lock()
                .payments
                .iter()
                .find(|(_, p)| p.id == payment_intent)
                .map_or(PaymentChange::Unrelated, |(r, _)| {
                    PaymentChange::TakenBack {
                        charge_id: r.charge_id.clone(),
                        reference,
                        reason,
                    }
                }),
        };
        Ok(ProviderEvent {
            event_id,
            event_type,
            change,
        })
    }
}
