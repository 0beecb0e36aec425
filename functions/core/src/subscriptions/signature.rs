//! The provider's webhook signature scheme (Stripe's, which the in-memory provider shares): the `Stripe-Signature` header carries `t=<unix seconds>`
//! and one or more `v1=<hex>` signatures, each an HMAC-SHA256 of `"<t>.<raw body>"` keyed with
//! the endpoint's signing secret. A signature older (or newer) than the tolerance is refused, so
//! a captured delivery cannot be replayed later; Stripe's libraries default to 300 seconds.

use sha2::{Digest, Sha256};

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

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal without an early exit, so the time taken says nothing about where strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    let expected = sign(secret, timestamp, body);
    if !signatures
        .iter()
        .any(|s| same(s.as_bytes(), expected.as_bytes()))
    {
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
