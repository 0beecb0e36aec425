//! Identifiers are newtypes that can only be built by parsing, so every id that reaches a store
//! key has already been checked for length and alphabet.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_reference_char(c: char) -> bool {
    is_token_char(c) || matches!(c, '.' | ':' | '/' | '#')
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $allowed:expr, $alphabet:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ApiError> {
                let length = raw.chars().count();
                if length == 0 || length > $max {
                    return Err(ApiError::invalid(
                        $field,
                        format!("{} must be 1 to {} characters", $field, $max),
                    ));
                }
                if !raw.chars().all($allowed) {
                    return Err(ApiError::invalid(
                        $field,
                        format!("{} may contain only {}", $field, $alphabet),
                    ));
                }
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}

text_id!(
    /// A member's id: 1–64 characters of `[A-Za-z0-9_-]`, chosen by the merchant or generated.
    MemberId, "member_id", 64, is_token_char, "letters, digits, '_' and '-'"
);
text_id!(
    RewardId,
    "reward_id",
    64,
    is_token_char,
    "letters, digits, '_' and '-'"
);
text_id!(
    /// An order id as the merchant's commerce system knows it; it makes an order earn once.
    OrderId, "order_id", 128, is_reference_char, "letters, digits and _ - . : / #"
);
text_id!(
    /// The caller's reference for an action (the review id, the event ticket, ...).
    ActionReference, "reference", 128, is_reference_char, "letters, digits and _ - . : / #"
);
text_id!(
    /// The merchant's id of one return of an order.
    ReturnId, "return_id", 128, is_reference_char, "letters, digits and _ - . : / #"
);
text_id!(
    ActionName,
    "action",
    64,
    is_token_char,
    "letters, digits, '_' and '-'"
);
text_id!(
    Category,
    "category",
    64,
    is_token_char,
    "letters, digits, '_' and '-'"
);
text_id!(
    Sku,
    "sku",
    64,
    is_reference_char,
    "letters, digits and _ - . : / #"
);

impl MemberId {
    /// Ids we mint are ULIDs: unique without coordination and sortable by creation time.
    pub fn generate() -> Self {
        Self(format!(
            "mem_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ))
    }
}

/// The `Idempotency-Key` header: 1–255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        if raw.is_empty()
            || raw.len() > Self::MAX_LEN
            || !raw.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(ApiError::new(
                crate::ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same key in the namespace of one caller (a token's `sub`): two clients that both
    /// send `Idempotency-Key: 1` for a member make two requests, not one replayed. The subject
    /// is hashed, so the stored key stays printable and bounded whatever an issuer puts in `sub`.
    pub fn scoped_to(&self, caller: &str) -> IdempotencyKey {
        let digest = Sha256::digest(caller.as_bytes());
        let caller: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        Self(format!("{caller}:{}", self.0))
    }
}

/// Referral codes are short, read aloud and typed on phones: Crockford's base32 alphabet avoids
/// look-alike letters, and codes compare case-insensitively. They are random, so a member's id
/// tells nothing about their code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ReferralCode(String);

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl ReferralCode {
    pub const LEN: usize = 8;

    pub fn generate() -> Self {
        Self(random_crockford(Self::LEN))
    }

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let normalised = raw.trim().to_ascii_uppercase();
        if normalised.len() != Self::LEN || !normalised.bytes().all(|b| CROCKFORD.contains(&b)) {
            return Err(ApiError::invalid(
                "referral_code",
                "referral_code must be 8 characters of 0-9 and A-Z (no I, L, O or U)",
            ));
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ReferralCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// Random text over Crockford's alphabet; used for referral codes and reward codes.
pub fn random_crockford(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CROCKFORD[rng.random_range(0..CROCKFORD.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_follow_the_contract() {
        assert!(MemberId::parse("alice_01-X").is_ok());
        assert!(MemberId::parse(&"a".repeat(64)).is_ok());
        assert!(MemberId::parse(&"a".repeat(65)).is_err());
        assert!(MemberId::parse("").is_err());
        assert!(MemberId::parse("bob smith").is_err());
        assert!(MemberId::parse("émile").is_err());
        assert!(MemberId::parse(MemberId::generate().as_str()).is_ok());
    }

    #[test]
    fn idempotency_keys_are_printable_ascii_up_to_255() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
    }

    #[test]
    fn a_key_scoped_to_two_callers_is_two_keys() {
        let key = IdempotencyKey::parse("1").expect("key");
        assert_ne!(key.scoped_to("pos-1"), key.scoped_to("pos-2"));
        assert_eq!(key.scoped_to("pos-1"), key.scoped_to("pos-1"));
        assert_ne!(key.scoped_to("pos-1"), key);
        let printable = key.scoped_to("ünïcode sub\twith tabs");
        assert!(printable
            .as_str()
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn referral_codes_are_case_insensitive_and_unambiguous() {
        let code = ReferralCode::generate();
        assert_eq!(code.as_str().len(), 8);
        assert_eq!(
            ReferralCode::parse(&code.as_str().to_lowercase()).ok(),
            Some(code)
        );
        assert!(ReferralCode::parse("ABCDEFGI").is_err());
        assert!(ReferralCode::parse("ABC").is_err());
    }
}
