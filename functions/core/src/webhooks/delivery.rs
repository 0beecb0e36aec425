//! One delivery: one event to one webhook. Its id is derived from the event and the webhook, so
//! an event the outbox relays again finds the delivery it already has instead of making a
//! second one. The record keeps every attempt (when, what the receiver answered or why it gave
//! no answer) and is dropped by the store's TTL a while after the retry window.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ports::StoreError;

/// Record kind of a delivery; its owner is the webhook, so a webhook's deliveries are one Query.
pub const DELIVERY_KIND: &str = "webhook_delivery";
/// No answer within this long counts as a failed attempt.
pub const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest delay SQS gives one message; longer waits take several hops.
pub const MAX_QUEUE_DELAY: Duration = Duration::seconds(900);
/// How long a delivery record is kept after it was created (past the 72-hour window).
pub const RETENTION: Duration = Duration::days(30);
/// Attempts kept on the record (the newest); the counts keep the totals.
pub const MAX_KEPT_ATTEMPTS: usize = 40;
/// How much of a failure's text an attempt keeps.
const MAX_ERROR_TEXT: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Failed so far; the next attempt is scheduled.
    Retrying,
    /// A receiver answered 2xx.
    Delivered,
    /// Every attempt of the retry window failed; the delivery is in the webhook DLQ.
    Parked,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub attempted_at: DateTime<Utc>,
    /// The receiver's status code, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why there was no answer (timeout, refused address, connection error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The admin who asked for this attempt (`POST …/retry`); automatic attempts have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl DeliveryAttempt {
    pub fn new(
        attempted_at: DateTime<Utc>,
        answer: &super::Answer,
        duration_ms: u64,
        requested_by: Option<String>,
    ) -> Self {
        let (status_code, error) = match answer {
            super::Answer::Status(code) => (Some(*code), None),
            super::Answer::Failed(why) => {
                let mut why = why.clone();
                if why.len() > MAX_ERROR_TEXT {
                    let mut end = MAX_ERROR_TEXT;
                    while !why.is_char_boundary(end) {
                        end -= 1;
                    }
                    why.truncate(end);
                }
                (None, Some(why))
            }
        };
        Self {
            attempted_at,
            status_code,
            error,
            duration_ms,
            requested_by,
        }
    }
}

/// The stored delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub delivery_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// The event as it is posted (re-sent as is by a retry).
    pub event: Value,
    pub status: DeliveryStatus,
    pub first_attempt_at: DateTime<Utc>,
    /// Automatic attempts so far: the schedule's input, and the chain's position (a queue
    /// message scheduled after fewer attempts is a stale duplicate).
    pub automatic_attempts: u32,
    pub manual_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The newest [`MAX_KEPT_ATTEMPTS`] attempts, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// Unix seconds: the store drops the record after this (DynamoDB TTL).
    pub expires_at: i64,
}

impl Delivery {
    pub fn new(message: &DeliveryMessage, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let event = EventKey::of(&message.event)?;
        Ok(Self {
            delivery_id: delivery_id(&event, &message.webhook_id),
            webhook_id: message.webhook_id.clone(),
            event_id: event.event_id,
            event_type: event.event_type,
            event: message.event.clone(),
            status: DeliveryStatus::Retrying,
            first_attempt_at: now,
            automatic_attempts: 0,
            manual_attempts: 0,
            next_attempt_at: None,
            delivered_at: None,
            attempts: Vec::new(),
            expires_at: (now + RETENTION).timestamp(),
        })
    }

    /// Records `attempt`; a 2xx answer delivers.
    pub fn record(&mut self, attempt: DeliveryAttempt, delivered: bool, manual: bool) {
        if manual {
            self.manual_attempts = self.manual_attempts.saturating_add(1);
        } else {
            self.automatic_attempts = self.automatic_attempts.saturating_add(1);
        }
        if delivered {
            self.status = DeliveryStatus::Delivered;
            self.delivered_at = Some(attempt.attempted_at);
            self.next_attempt_at = None;
        }
        self.attempts.push(attempt);
        if self.attempts.len() > MAX_KEPT_ATTEMPTS {
            let excess = self.attempts.len() - MAX_KEPT_ATTEMPTS;
            self.attempts.drain(..excess);
        }
    }
}

/// What the delivery queue carries: the event, the webhook, and where in its retry chain the
/// message stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryMessage {
    pub webhook_id: String,
    pub event: Value,
    /// Automatic attempts made when this message was scheduled (0 from the fan-out).
    #[serde(default)]
    pub after_attempts: u32,
    /// The attempt is due at this time; earlier, the message only waits another hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// An admin's `retry`: one attempt outside the schedule, by this actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl DeliveryMessage {
    /// The first message of `event` to `webhook_id` (from the outbox's fan-out).
    pub fn first(webhook_id: &str, event: Value) -> Self {
        Self {
            webhook_id: webhook_id.to_owned(),
            event,
            after_attempts: 0,
            not_before: None,
            requested_by: None,
        }
    }
}

/// What identifies an event in a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
}

impl EventKey {
    pub fn of(event: &Value) -> Result<Self, StoreError> {
        let text = |name: &str| {
            event
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| StoreError(format!("webhook event lacks '{name}'")))
        };
        Ok(Self {
            event_id: text("event_id")?,
            event_type: text("type")?,
            occurred_at: text("occurred_at")?
                .parse()
                .map_err(|e| StoreError(format!("webhook event occurred_at: {e}")))?,
        })
    }
}

/// `<occurred_at in ms, 13 digits>-<16 hex of SHA-256(event_id, webhook_id)>`: the same event
/// and webhook always give the same id, and a webhook's deliveries list newest event first.
pub fn delivery_id(event: &EventKey, webhook_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(event.event_id.as_bytes())
        .chain_update([0u8])
        .chain_update(webhook_id.as_bytes())
        .finalize();
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let millis = event.occurred_at.timestamp_millis().max(0);
    format!("{millis:013}-{hash}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::webhooks::Answer;

    fn event(id: &str) -> Value {
        json!({"event_id": id, "type": "points.earned", "version": 1,
               "occurred_at": "2026-03-01T12:00:00Z", "data": {}})
    }

    #[test]
    fn the_same_event_and_webhook_always_make_the_same_delivery_id() {
        let key = EventKey::of(&event("e1")).expect("event");
        assert_eq!(delivery_id(&key, "wh_a"), delivery_id(&key, "wh_a"));
        assert_ne!(delivery_id(&key, "wh_a"), delivery_id(&key, "wh_b"));
        let other = EventKey::of(&event("e2")).expect("event");
        assert_ne!(delivery_id(&key, "wh_a"), delivery_id(&other, "wh_a"));
        assert!(delivery_id(&key, "wh_a").starts_with("1772366400000-"));
        assert!(EventKey::of(&json!({"type": "x.y"})).is_err());
    }

    #[test]
    fn attempts_are_counted_by_kind_and_the_oldest_are_dropped_past_the_limit() {
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().expect("time");
        let message = DeliveryMessage::first("wh_a", event("e1"));
        let mut delivery = Delivery::new(&message, now).expect("delivery");
        for _ in 0..MAX_KEPT_ATTEMPTS + 5 {
            let failed = DeliveryAttempt::new(now, &Answer::Failed("x".repeat(1000)), 10, None);
            delivery.record(failed, false, false);
        }
        assert_eq!(delivery.attempts.len(), MAX_KEPT_ATTEMPTS);
        assert_eq!(delivery.automatic_attempts as usize, MAX_KEPT_ATTEMPTS + 5);
        assert!(delivery.attempts[0]
            .error
            .as_ref()
            .is_some_and(|e| e.len() <= 300));
        let ok = DeliveryAttempt::new(now, &Answer::Status(204), 10, Some("admin".into()));
        delivery.record(ok, true, true);
        assert_eq!(delivery.status, DeliveryStatus::Delivered);
        assert_eq!(delivery.manual_attempts, 1);
        assert_eq!(delivery.expires_at, (now + RETENTION).timestamp());
    }
}
