//! Request bodies as clients send them. Deserialising one parses every field into its newtype and
//! rejects unknown fields, so a command that exists is a command whose shape is valid; the rules
//! that need the program (currency, caps, stock) are checked by the services.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::ids::{
    ActionName, ActionReference, Category, MemberId, OrderId, ReferralCode, RewardId, Sku,
};
use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    #[serde(default)]
    pub member_id: Option<MemberId>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub referral_code: Option<ReferralCode>,
}

impl EnrolRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(email) = &self.email {
            let shape_ok = email.len() <= 254
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                && email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                });
            if !shape_ok {
                return Err(ApiError::invalid("email", "email is not an address"));
            }
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty()
                || name.chars().count() > 200
                || name.chars().any(char::is_control)
            {
                return Err(ApiError::invalid(
                    "name",
                    "name must be 1 to 200 printable characters",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    pub sku: Sku,
    pub category: Category,
    /// Unit price.
    pub amount: Money,
    pub quantity: u32,
}

/// The largest number of item lines one order may carry.
pub const MAX_ITEMS: usize = 500;
pub const MAX_QUANTITY: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AccrualRequest {
    Purchase {
        order_id: OrderId,
        amount: Money,
        #[serde(default)]
        items: Vec<ItemRequest>,
        #[serde(default)]
        occurred_at: Option<DateTime<Utc>>,
    },
    Action {
        action: ActionName,
        reference: ActionReference,
        #[serde(default)]
        occurred_at: Option<DateTime<Utc>>,
    },
}

impl AccrualRequest {
    pub fn occurred_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Purchase { occurred_at, .. } | Self::Action { occurred_at, .. } => *occurred_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionRequest {
    pub reward_id: RewardId,
    /// Two-phase: reserve the points now (status `held`); the till's `use` confirms it, and an
    /// unconfirmed hold is released after the program's `codes.hold_minutes`.
    #[serde(default)]
    pub hold: bool,
}

/// The longest note a transfer may carry.
pub const MAX_TRANSFER_NOTE: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub to_member_id: MemberId,
    pub points: crate::Points,
    #[serde(default)]
    pub note: Option<String>,
}

impl TransferRequest {
    /// The shape rules that need no program: a positive amount and a short printable note.
    /// The program's limits are checked by the service.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.points < 1 {
            return Err(ApiError::invalid("points", "points must be at least 1"));
        }
        if let Some(note) = &self.note {
            if note.trim().is_empty()
                || note.chars().count() > MAX_TRANSFER_NOTE
                || note.chars().any(char::is_control)
            {
                return Err(ApiError::invalid(
                    "note",
                    format!("note must be 1 to {MAX_TRANSFER_NOTE} printable characters"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accrual_requests_parse_strictly() {
        let purchase =
            r#"{"kind":"purchase","order_id":"o-1","amount":{"minor":100,"currency":"USD"}}"#;
        assert!(serde_json::from_str::<AccrualRequest>(purchase).is_ok());
        let action = r#"{"kind":"action","action":"review","reference":"r-1","occurred_at":"2026-11-01T10:00:00+01:00"}"#;
        assert!(serde_json::from_str::<AccrualRequest>(action).is_ok());
        for bad in [
            r#"{"kind":"purchase","order_id":"o-1","amount":{"minor":100,"currency":"USD"},"points":5}"#,
            r#"{"kind":"refund","order_id":"o-1"}"#,
            r#"{"order_id":"o-1","amount":{"minor":100,"currency":"USD"}}"#,
            r#"{"kind":"purchase","order_id":"","amount":{"minor":100,"currency":"USD"}}"#,
            r#"{"kind":"action","action":"review","reference":"r 1"}"#,
            r#"{"kind":"action","action":"review","reference":"r","occurred_at":"yesterday"}"#,
        ] {
            assert!(
                serde_json::from_str::<AccrualRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn enrol_requests_check_email_and_name() {
        let ok: EnrolRequest =
            serde_json::from_str(r#"{"email":"a@b.co","name":"Ada"}"#).expect("ok");
        assert!(ok.validate().is_ok());
        for bad in [
            r#"{"email":"nope"}"#,
            r#"{"email":"a@b"}"#,
            r#"{"name":"  "}"#,
        ] {
            let request: EnrolRequest = serde_json::from_str(bad).expect("shape");
            assert!(request.validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<EnrolRequest>(r#"{"tier":"gold"}"#).is_err());
    }
}
