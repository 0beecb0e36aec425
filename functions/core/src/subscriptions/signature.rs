//! The provider's webhook signature scheme (Stripe's, which the in-memory provider shares): the `Stripe-Signature` header carries `t=<unix seconds>`
//! and one or more `v1=<hex>` signatures, each an HMAC-SHA256 of `"<t>.<raw body>"` keyed with
//! the endpoint's signing secret. A signature older (or newer) than the tolerance is refused, so
//! a captured delivery cannot be replayed later; Stripe's libraries default to 300 seconds.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// Seconds a signed delivery stays acceptable (Stripe's recommended default).
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("no v1 signature matches the body")]
    Mismatch,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `v1` signature of `body` sent at `timestamp`, as Stripe computes it.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut payload = format!("{timestamp}.").into_bytes();
    payload.extend_from_slice(body);
    hex(&hmac_sha256(secret.as_bytes(), &payload))
}

/// Checks `header` against `body` with the endpoint `secret` at unix time `now`.
pub fn verify(header: &str, body: &[u8], secret: &str, now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            continue;
        };
        match name {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut payload = format!("{timestamp}.").into_bytes();
    payload.extend_from_slice(body);
    // `verify_slice` compares in constant time, so timing says nothing about where a guess differs.
    let matches = |candidate: &&str| {
        unhex(candidate).is_some_and(|bytes| {
            let mut mac =
                HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
            mac.update(&payload);
            mac.verify_slice(&bytes).is_ok()
        })
    };
    if !signatures.iter().any(matches) {
        return Err(SignatureError::Mismatch);
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_test_vectors() {
        // Test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_delivery_signed_with_the_endpoint_secret_within_five_minutes_is_accepted() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let header = format!("t=1700000000,v1={}", sign("whsec_test", 1700000000, body));
        assert_eq!(verify(&header, body, "whsec_test", 1700000299), Ok(()));
        // Stripe sends one v1 per active secret while a secret is rolled.
        let rolled = format!(
            "t=1700000000,v1=00ff,v1={},v0=abc",
            sign("whsec_test", 1700000000, body)
        );
        assert_eq!(verify(&rolled, body, "whsec_test", 1700000000), Ok(()));
    }

    #[test]
    fn a_tampered_body_another_secret_or_an_old_delivery_is_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let header = format!("t=1700000000,v1={}", sign("whsec_test", 1700000000, body));
        assert_eq!(
            verify(&header, br#"{"id":"evt_2"}"#, "whsec_test", 1700000000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, body, "whsec_other", 1700000000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, body, "whsec_test", 1700000301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("v1=abc", body, "whsec_test", 1700000000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("t=1700000000", body, "whsec_test", 1700000000),
            Err(SignatureError::Malformed)
        );
    }
}
