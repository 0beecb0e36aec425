//! What the payment provider reports after the fact, through its webhook: a payment settled
//! (succeeded, failed, needs the customer's action), or a paid charge taken back (refunded,
//! disputed). The wire format is Stripe's event object; [`read_stripe_event`] turns one into
//! what billing needs, leaving to the adapter only the look-up of a charge's PaymentIntent.

use serde_json::Value;

use super::payments::{Payment, PaymentError, PaymentOutcome};
use super::signature::SignatureError;
use super::RefundReason;

/// One attempt at one period's charge, as its PaymentIntent's metadata names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRef {
    pub charge_id: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentChange {
    /// An attempt's payment reached an outcome.
    Settled {
        attempt: AttemptRef,
        payment: Payment,
    },
    /// A paid period's money went back to the customer.
    TakenBack {
        charge_id: String,
        /// The refund's or dispute's id: the business key of the reversal.
        reference: String,
        reason: RefundReason,
    },
    /// Not about a charge of ours, or a kind of event billing does not act on.
    Unrelated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// The provider's event id: each is applied once.
    pub event_id: String,
    pub event_type: String,
    pub change: PaymentChange,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    #[error("webhook signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("webhook body: {0}")]
    Unreadable(String),
    /// The event is genuine but could not be resolved now; the provider will deliver it again.
    #[error(transparent)]
    Provider(#[from] PaymentError),
}

/// An event read, before a charge's PaymentIntent is resolved to our attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeEventBody {
    Ready(PaymentChange),
    /// `charge.refunded` or `charge.dispute.created`: the PaymentIntent's metadata names the
    /// charge, so the adapter looks the intent up.
    TakenBack {
        payment_intent: String,
        reference: String,
        reason: RefundReason,
    },
}

/// Our attempt named by a PaymentIntent's metadata, if the intent is ours.
pub fn attempt_of(intent: &Value) -> Option<AttemptRef> {
    let charge_id = intent["metadata"]["charge_id"].as_str()?;
    let attempt = intent["metadata"]["attempt"].as_str()?.parse().ok()?;
    Some(AttemptRef {
        charge_id: charge_id.to_owned(),
        attempt,
    })
}

/// Reads a Stripe event object. The outcome of a PaymentIntent event is the event type's, not
/// the intent's status: events can arrive out of order, and each says what happened then.
pub fn read_stripe_event(event: &Value) -> Result<(String, String, StripeEventBody), EventError> {
    let event_id = event["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| EventError::Unreadable("no event id".into()))?
        .to_owned();
    let event_type = event["type"]
        .as_str()
        .ok_or_else(|| EventError::Unreadable("no event type".into()))?
        .to_owned();
    let object = &event["data"]["object"];
    let intent_payment = |outcome: PaymentOutcome| {
        attempt_of(object).map_or(
            StripeEventBody::Ready(PaymentChange::Unrelated),
            |attempt| {
                StripeEventBody::Ready(PaymentChange::Settled {
                    attempt,
                    payment: Payment {
                        id: object["id"].as_str().unwrap_or_default().to_owned(),
                        outcome,
                    },
                })
            },
        )
    };
    let taken_back = |reference: Option<&str>, reason: RefundReason| match (
        object["payment_intent"].as_str(),
        reference,
    ) {
        (Some(intent), Some(reference)) => StripeEventBody::TakenBack {
            payment_intent: intent.to_owned(),
            reference: reference.to_owned(),
            reason,
        },
        _ => StripeEventBody::Ready(PaymentChange::Unrelated),
    };
    let body = match event_type.as_str() {
        "payment_intent.succeeded" => intent_payment(PaymentOutcome::Succeeded),
        "payment_intent.payment_failed" => intent_payment(PaymentOutcome::Declined {
            code: object["last_payment_error"]["decline_code"]
                .as_str()
                .or(object["last_payment_error"]["code"].as_str())
                .unwrap_or("payment_failed")
                .to_owned(),
        }),
        "payment_intent.requires_action" => intent_payment(PaymentOutcome::RequiresAction {
            client_secret: object["client_secret"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }),
        // The newest refund names the reversal; a charge refunded in parts is taken back once,
        // at its first refund.
        "charge.refunded" => {
            let refund = object["refunds"]["data"][0]["id"]
                .as_str()
                .or(object["id"].as_str());
            taken_back(refund, RefundReason::Refunded)
        }
        "charge.dispute.created" => taken_back(object["id"].as_str(), RefundReason::Disputed),
        _ => StripeEventBody::Ready(PaymentChange::Unrelated),
    };
    Ok((event_id, event_type, body))
}

/// Verifies a delivery's signature with the endpoint `secret`, then reads its event.
pub fn verify_and_read(
    secret: &str,
    signature: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(String, String, StripeEventBody), EventError> {
    super::signature::verify(signature, body, secret, now_unix)?;
    let event: Value =
        serde_json::from_slice(body).map_err(|e| EventError::Unreadable(e.to_string()))?;
    read_stripe_event(&event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payment_intent_event_names_our_attempt_by_its_metadata() {
        let event = json!({
            "id": "evt_1", "type": "payment_intent.succeeded",
            "data": { "object": { "id": "pi_1", "status": "succeeded",
                "metadata": { "charge_id": "sub_1:1", "attempt": "1" } } }
        });
        let (id, _, body) = read_stripe_event(&event).expect("read");
        assert_eq!(id, "evt_1");
        assert_eq!(
            body,
            StripeEventBody::Ready(PaymentChange::Settled {
                attempt: AttemptRef {
                    charge_id: "sub_1:1".into(),
                    attempt: 1
                },
                payment: Payment {
                    id: "pi_1".into(),
                    outcome: PaymentOutcome::Succeeded
                }
            })
        );
    }

    #[test]
    fn a_refund_and_a_dispute_point_at_the_payment_intent_and_are_keyed_by_their_own_ids() {
        let refund = json!({
            "id": "evt_2", "type": "charge.refunded",
            "data": { "object": { "id": "ch_1", "payment_intent": "pi_1",
                "refunds": { "data": [ { "id": "re_1" } ] } } }
        });
        assert_eq!(
            read_stripe_event(&refund).expect("read").2,
            StripeEventBody::TakenBack {
                payment_intent: "pi_1".into(),
                reference: "re_1".into(),
                reason: RefundReason::Refunded
            }
        );
        let dispute = json!({
            "id": "evt_3", "type": "charge.dispute.created",
            "data": { "object": { "id": "dp_1", "charge": "ch_1", "payment_intent": "pi_1" } }
        });
        assert_eq!(
            read_stripe_event(&dispute).expect("read").2,
            StripeEventBody::TakenBack {
                payment_intent: "pi_1".into(),
                reference: "dp_1".into(),
                reason: RefundReason::Disputed
            }
        );
    }

    #[test]
    fn events_that_are_not_ours_or_not_about_payments_change_nothing() {
        let foreign = json!({
            "id": "evt_4", "type": "payment_intent.succeeded",
            "data": { "object": { "id": "pi_9", "metadata": {} } }
        });
        let other = json!({ "id": "evt_5", "type": "customer.created", "data": { "object": {} } });
        for event in [foreign, other] {
            assert_eq!(
                read_stripe_event(&event).expect("read").2,
                StripeEventBody::Ready(PaymentChange::Unrelated)
            );
        }
        assert!(read_stripe_event(&json!({ "type": "x" })).is_err());
    }
}
