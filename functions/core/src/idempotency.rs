//! Idempotency records: the first response to a keyed request, kept for as long as the ledger
//! entry it produced, so a retry a month later still gets the same answer and moves nothing.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};
use crate::ids::IdempotencyKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Accrual,
    Redemption,
    Subscription,
    Enrolment,
    Campaign,
    Promotion,
    Reward,
    Adjustment,
    Return,
    Transfer,
    /// Points of a redemption given back (a cancel, a released hold, a refunded expired code),
    /// keyed by the redemption: whichever comes first is the only one.
    RedemptionReversal,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accrual => "accrual",
            Self::Redemption => "redemption",
            Self::Subscription => "subscription",
            Self::Enrolment => "enrolment",
            Self::Campaign => "campaign",
            Self::Promotion => "promotion",
            Self::Reward => "reward",
            Self::Adjustment => "adjustment",
            Self::Return => "return",
            Self::Transfer => "transfer",
            Self::RedemptionReversal => "redemption_reversal",
        }
    }
}

/// An id derived from an operation's Idempotency-Key: `prefix` then 24 hex digits of a hash,
/// so a retried create can only ever name the thing the first attempt created.
pub fn derived_id(prefix: &str, operation: Operation, key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(format!("{}\n{}", operation.as_str(), key.as_str()).as_bytes());
    digest
        .iter()
        .take(12)
        .fold(String::from(prefix), |mut id, byte| {
            let _ = write!(id, "{byte:02x}");
            id
        })
}

/// Where a key lives: keys are scoped to a member and an operation, as a client retries one
/// request, not one string across the whole program. The HTTP layer also scopes each key to its
/// caller (`IdempotencyKey::scoped_to`), so two clients' keys never meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyScope {
    pub operation: Operation,
    pub key: IdempotencyKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub operation: Operation,
    pub key: String,
    /// Hash of the canonical request; a different body under the same key is refused.
    pub fingerprint: String,
    pub status: u16,
    pub response: Value,
    pub entry_id: String,
    pub created_at: DateTime<Utc>,
}

impl IdempotencyRecord {
    /// The stored response when `fingerprint` matches, `idempotency_key_reused` otherwise.
    pub fn replay(&self, fingerprint: &str) -> Result<Value, ApiError> {
        if self.fingerprint != fingerprint {
            return Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request",
            ));
        }
        Ok(self.response.clone())
    }
}

/// A hash of the request that ignores key order and white space.
pub fn fingerprint(operation: Operation, body: &Value) -> String {
    let mut canonical = String::from(operation.as_str());
    canonical.push('\n');
    write_canonical(body, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a = fingerprint(
            Operation::Accrual,
            &json!({"a": 1, "b": {"x": [1, 2], "y": "z"}}),
        );
        let b = fingerprint(
            Operation::Accrual,
            &json!({"b": {"y": "z", "x": [1, 2]}, "a": 1}),
        );
        let c = fingerprint(
            Operation::Accrual,
            &json!({"a": 2, "b": {"x": [1, 2], "y": "z"}}),
        );
        let d = fingerprint(
            Operation::Redemption,
            &json!({"a": 1, "b": {"x": [1, 2], "y": "z"}}),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
