//! Webhooks: merchants' endpoints that receive the event catalog's events as signed `POST`s.
//!
//! # Layout
//! - this module: the webhook itself, which event types it wants, its secret and the
//!   `Loyalty-Signature` header (Stripe's scheme, so merchants' existing verifiers work);
//! - [`address`]: which URLs and addresses a delivery may reach;
//! - [`schedule`]: when a failed delivery is tried again, and when it is parked (pure);
//! - [`delivery`]: one delivery of one event to one webhook, its attempts and its queue message.
//!
//! The use cases (admin routes, fan-out from the outbox, the delivery function) are in
//! `service::webhooks`; the HTTP client is the `webhook-delivery` function's adapter.

pub mod address;
pub mod delivery;
pub mod schedule;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::subscriptions::signature;

/// Record kind of a webhook.
pub const WEBHOOK_KIND: &str = "webhook";
/// Every webhook that is not deleted is listed under this owner: the fan-out reads them with one
/// Query.
pub const WEBHOOKS_OWNER: &str = "all";
/// The header a delivery is signed in.
pub const SIGNATURE_HEADER: &str = "Loyalty-Signature";
/// How many event types (or patterns) one webhook may name.
pub const MAX_EVENT_TYPES: usize = 50;
/// Descriptions are labels for people, not documents.
pub const MAX_DESCRIPTION: usize = 500;
/// How long a deleted webhook's tombstone is kept (its deliveries can still be read by id).
pub const DELETED_RETENTION_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    Active,
    Disabled,
    Deleted,
}

/// A merchant's endpoint and the event types it subscribed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub webhook_id: String,
    pub url: String,
    pub event_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The HMAC key of its signatures; shown once, in the response that created it.
    pub secret: String,
    pub status: WebhookStatus,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    /// Unix seconds after which the store may drop the record (set on deletion only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Webhook {
    /// Whether this webhook is sent events of `event_type` now.
    pub fn wants(&self, event_type: &str) -> bool {
        self.status == WebhookStatus::Active
            && self
                .event_types
                .iter()
                .any(|pattern| type_matches(pattern, event_type))
    }

    /// What an admin sees: everything but the secret.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "webhook_id": self.webhook_id,
            "url": self.url,
            "event_types": self.event_types,
            "description": self.description,
            "status": self.status,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        })
    }
}

/// `"*"` matches every type, `"points.*"` every type of the `points` family, anything else
/// exactly one type.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(family) => family.ends_with('.') && event_type.starts_with(family),
        None => pattern == event_type,
    }
}

/// The event types of a new webhook: at least one, at most [`MAX_EVENT_TYPES`], each `"*"`,
/// `"<family>.*"` or `"<family>.<name>"` in lower case; duplicates are dropped.
pub fn parse_event_types(types: Vec<String>) -> Result<Vec<String>, ApiError> {
    if types.is_empty() || types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::invalid(
            "event_types",
            format!("event_types needs 1 to {MAX_EVENT_TYPES} event types"),
        ));
    }
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let mut parsed: Vec<String> = Vec::with_capacity(types.len());
    for pattern in types {
        let valid = pattern == "*"
            || pattern
                .split_once('.')
                .is_some_and(|(family, name)| word(family) && (name == "*" || word(name)));
        if !valid {
            return Err(ApiError::invalid(
                "event_types",
                format!("'{pattern}' is not an event type (e.g. points.earned, points.*, *)"),
            ));
        }
        if !parsed.contains(&pattern) {
            parsed.push(pattern);
        }
    }
    Ok(parsed)
}

/// A new signing secret: 32 bytes from the operating system's generator, hex-encoded.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("whsec_{hex}")
}

/// A new webhook id: time-ordered, so lists come newest first.
pub fn new_webhook_id(now: DateTime<Utc>) -> String {
    let ulid = ulid::Ulid::from_datetime(std::time::SystemTime::from(now));
    format!("wh_{}", ulid.to_string().to_lowercase())
}

/// The `Loyalty-Signature` value of `body` sent at unix time `timestamp`:
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        signature::sign(secret, timestamp, body)
    )
}

/// Checks a `Loyalty-Signature` value as a receiver would (five minutes' tolerance).
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<(), signature::SignatureError> {
    signature::verify(header, body, secret, now)
}

/// What a receiver answered, or why it gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No answer: refused address, connection error, or nothing within the timeout.
    Failed(String),
}

impl Answer {
    pub fn delivered(&self) -> bool {
        matches!(self, Answer::Status(code) if (200..300).contains(code))
    }
}

/// One signed delivery on its way out.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub event_id: &'a str,
    pub body: &'a [u8],
    pub signature: &'a str,
}

/// The port the delivery function posts through. Adapters enforce [`address::UrlPolicy`] on the
/// addresses they connect to and give up after [`delivery::DELIVERY_TIMEOUT`].
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn post(&self, outgoing: Outgoing<'_>) -> Answer;
}

/// A deployment without the delivery function's client: every attempt fails, loudly.
#[derive(Debug, Default)]
pub struct NoSender;

#[async_trait]
impl WebhookSender for NoSender {
    async fn post(&self, _outgoing: Outgoing<'_>) -> Answer {
        Answer::Failed("webhook delivery is not configured in this function".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_type_a_family_or_everything() {
        assert!(type_matches("points.earned", "points.earned"));
        assert!(!type_matches("points.earned", "points.redeemed"));
        assert!(type_matches("points.*", "points.redeemed"));
        assert!(!type_matches("points.*", "pointsx.redeemed"));
        assert!(!type_matches("points.*", "tier.changed"));
        assert!(type_matches("*", "tier.changed"));
    }

    #[test]
    fn event_types_must_name_types_or_families_and_duplicates_are_dropped() {
        let parsed = parse_event_types(vec![
            "points.earned".into(),
            "tier.*".into(),
            "points.earned".into(),
        ])
        .expect("valid");
        assert_eq!(parsed, ["points.earned", "tier.*"]);
        for bad in [
            "",
            "points",
            "Points.earned",
            "points.",
            "*.earned",
            "a.b.c",
            "p*",
        ] {
            let error = parse_event_types(vec![bad.into()]).expect_err(bad);
            assert_eq!(error.details["field"], "event_types", "{bad}");
        }
        assert!(parse_event_types(Vec::new()).is_err());
        let too_many = (0..=MAX_EVENT_TYPES).map(|i| format!("a.t{i}")).collect();
        assert!(parse_event_types(too_many).is_err());
    }

    #[test]
    fn a_disabled_webhook_wants_nothing() {
        let mut webhook = Webhook {
            webhook_id: "wh_1".into(),
            url: "https://example.com/hooks".into(),
            event_types: vec!["points.*".into()],
            description: None,
            secret: new_secret(),
            status: WebhookStatus::Active,
            created_at: Utc::now(),
            created_by: "admin".into(),
            updated_at: Utc::now(),
            updated_by: "admin".into(),
            expires_at: None,
        };
        assert!(webhook.wants("points.earned"));
        assert!(!webhook.wants("member.enrolled"));
        webhook.status = WebhookStatus::Disabled;
        assert!(!webhook.wants("points.earned"));
        assert!(webhook.view().get("secret").is_none());
    }

    #[test]
    fn secrets_are_random_and_signatures_verify_with_them_only() {
        let secret = new_secret();
        assert_ne!(secret, new_secret());
        assert_eq!(secret.len(), "whsec_".len() + 64);
        let body = br#"{"event_id":"e1"}"#;
        let header = signature_header(&secret, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify_signature(&header, body, &secret, 1_700_000_010),
            Ok(())
        );
        assert!(verify_signature(&header, body, &new_secret(), 1_700_000_010).is_err());
    }
}
