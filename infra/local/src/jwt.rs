//! The runner's development issuer and the JWT check API Gateway's JWT authorizer makes.
//!
//! The issuer signs RS256 tokens (API Gateway accepts RSA keys only) with one key per stack,
//! kept as PKCS#8 PEM under `.local/` so tokens survive a restart. The verifier applies API
//! Gateway's rules, strictly and without leeway: a `kid` naming a key of the issuer's JWKS, the
//! signature, `iss`, `aud` (or `client_id` when there is no `aud`), `exp` after now, `nbf` and
//! `iat` not after now. Scopes are the route's business ([`token_scopes`]).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    KeyPair as _, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::LocalError;

/// The only algorithm the issuer signs with and the verifier accepts.
const ALGORITHM: &str = "RS256";
const PEM_LABEL: &str = "PRIVATE KEY";
/// A minted token's lifetime when the request does not say.
pub const DEFAULT_EXPIRES_IN: i64 = 3600;
/// The longest lifetime a minted token may ask for (a day).
pub const MAX_EXPIRES_IN: i64 = 86_400;
/// Claims the issuer sets itself; a token request cannot supply them in `claims`.
const REGISTERED_CLAIMS: [&str; 7] = ["iss", "aud", "sub", "iat", "nbf", "exp", "scope"];

/// The private key tokens are signed with, and its public half as a JWK.
pub struct SigningKey {
    key_pair: KeyPair,
    public: PublicJwk,
}

/// An RSA public key as the JWKS publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: String,
    /// Big-endian modulus and exponent, no leading zeros.
    n: Vec<u8>,
    e: Vec<u8>,
}

impl PublicJwk {
    pub fn to_json(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }
}

fn key_error(what: impl std::fmt::Display) -> LocalError {
    LocalError::SigningKey(what.to_string())
}

impl SigningKey {
    /// A fresh 2048-bit key, kept in memory only.
    pub fn generate() -> Result<SigningKey, LocalError> {
        let key_pair = KeyPair::generate(KeySize::Rsa2048).map_err(key_error)?;
        Self::from_key_pair(key_pair)
    }

    /// The key stored at `path`, or a new one written there (readable by the owner only).
    pub fn load_or_create(path: &Path) -> Result<SigningKey, LocalError> {
        let read_error = |source| LocalError::Read {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let der = pem_decode(&pem).ok_or_else(|| {
                    key_error(format!(
                        "{} is not a PKCS#8 PEM private key",
                        path.display()
                    ))
                })?;
                let key_pair = KeyPair::from_pkcs8(&der)
                    .map_err(|e| key_error(format!("{}: {e}", path.display())))?;
                Self::from_key_pair(key_pair)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                let pkcs8 = key.key_pair.as_der().map_err(key_error)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(read_error)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(read_error)?;
                file.write_all(pem_encode(pkcs8.as_ref()).as_bytes())
                    .map_err(read_error)?;
                Ok(key)
            }
            Err(error) => Err(read_error(error)),
        }
    }

    fn from_key_pair(key_pair: KeyPair) -> Result<SigningKey, LocalError> {
        let public = key_pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        // The key id names the key by its content, so a new key never reuses an old id.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &n);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        Ok(SigningKey {
            key_pair,
            public: PublicJwk { kid, n, e },
        })
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// `GET /_local/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public.to_json()] })
    }

    /// A compact JWS of `claims`, with `alg`, `typ` and this key's `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": ALGORITHM, "typ": "JWT", "kid": self.public.kid });
        self.sign_with_header(&header, claims)
    }

    /// Signs with any header, for tests that need a token the verifier must refuse.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("signing with a valid RSA key and a modulus-sized buffer cannot fail");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn pem_encode(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    pem
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let body = pem
        .trim()
        .strip_prefix(&format!("-----BEGIN {PEM_LABEL}-----"))?
        .strip_suffix(&format!("-----END {PEM_LABEL}-----"))?;
    let joined: String = body.split_whitespace().collect();
    STANDARD.decode(joined).ok()
}

/// Why the authorizer refused a token. API Gateway answers all of them with the same 401; the
/// reason goes to the runner's log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Missing,
    Malformed,
    Algorithm(String),
    UnknownKey,
    Signature,
    Issuer,
    Audience,
    Expired,
    NotYetValid,
    IssuedInTheFuture,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Missing => write!(f, "no token"),
            Rejection::Malformed => write!(f, "not a JWT"),
            Rejection::Algorithm(alg) => write!(f, "algorithm {alg} is not {ALGORITHM}"),
            Rejection::UnknownKey => write!(f, "kid names no key of the issuer's JWKS"),
            Rejection::Signature => write!(f, "bad signature"),
            Rejection::Issuer => write!(f, "wrong issuer"),
            Rejection::Audience => write!(f, "wrong audience"),
            Rejection::Expired => write!(f, "expired"),
            Rejection::NotYetValid => write!(f, "not valid yet (nbf)"),
            Rejection::IssuedInTheFuture => write!(f, "issued in the future (iat)"),
        }
    }
}

/// One JWT authorizer's trust: its issuer, its audiences and the issuer's keys.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: Vec<PublicJwk>,
}

impl Verifier {
    /// The token's claims if API Gateway would accept it at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, Rejection> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let header = decode_json(header)?;
        let claims = decode_json(payload)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Rejection::Malformed)?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        if alg != ALGORITHM {
            return Err(Rejection::Algorithm(alg.to_owned()));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let key = self
            .keys
            .iter()
            .find(|key| Some(key.kid.as_str()) == kid)
            .ok_or(Rejection::UnknownKey)?;
        let signing_input = &token[..header_and_payload_len(token)];
        RsaPublicKeyComponents {
            n: &key.n,
            e: &key.e,
        }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            signing_input.as_bytes(),
            &signature,
        )
        .map_err(|_| Rejection::Signature)?;

        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(Rejection::Issuer);
        }
        // API Gateway reads `client_id` (Cognito access tokens) only when there is no `aud`.
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => self.audiences.contains(aud),
            Some(Value::Array(auds)) => auds
                .iter()
                .filter_map(Value::as_str)
                .any(|aud| self.audiences.iter().any(|a| a == aud)),
            Some(_) => false,
            None => claims
                .get("client_id")
                .and_then(Value::as_str)
                .is_some_and(|id| self.audiences.iter().any(|a| a == id)),
        };
        if !audience_ok {
            return Err(Rejection::Audience);
        }
        match numeric_date(&claims, "exp") {
            Some(Ok(exp)) if exp > now as f64 => {}
            _ => return Err(Rejection::Expired),
        }
        match numeric_date(&claims, "nbf") {
            None => {}
            Some(Ok(nbf)) if nbf <= now as f64 => {}
            Some(_) => return Err(Rejection::NotYetValid),
        }
        match numeric_date(&claims, "iat") {
            None => {}
            Some(Ok(iat)) if iat <= now as f64 => {}
            Some(_) => return Err(Rejection::IssuedInTheFuture),
        }
        Ok(claims)
    }
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json(part: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Malformed),
    }
}

/// A NumericDate claim: absent, a number, or present but not a number (`Err`).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Option<Result<f64, ()>> {
    claims.get(name).map(|v| v.as_f64().ok_or(()))
}

/// The token from the identity source: the whole value, or what follows `Bearer `.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_start();
    let token = match value.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => value[7..].trim(),
        _ => value.trim_end(),
    };
    (!token.is_empty()).then_some(token)
}

/// The token's scopes: `scope` (space-separated, as Cognito and OAuth servers issue it) or `scp`
/// (a list or a space-separated string).
pub fn token_scopes(claims: &Map<String, Value>) -> Vec<String> {
    let split = |text: &str| text.split_whitespace().map(str::to_owned).collect();
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(text)) => split(text),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// `requestContext.authorizer.jwt` as API Gateway sends it: every claim as a string (lists as
/// `[a b]`, objects as JSON) and the token's scopes.
pub fn authorizer_context(claims: &Map<String, Value>) -> Value {
    let stringified: Map<String, Value> = claims
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(claim_text(value))))
        .collect();
    let scopes = token_scopes(claims);
    json!({
        "jwt": {
            "claims": stringified,
            "scopes": if scopes.is_empty() { Value::Null } else { json!(scopes) },
        }
    })
}

fn claim_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(claim_text).collect();
            format!("[{}]", inner.join(" "))
        }
        other => other.to_string(),
    }
}

/// The body of `POST /_local/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub sub: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub claims: Map<String, Value>,
    pub expires_in: Option<i64>,
}

/// What the issuer puts in a token: who it names, for whom, when.
pub struct Issuer<'a> {
    pub key: &'a SigningKey,
    pub issuer: &'a str,
    pub audience: &'a str,
}

impl Issuer<'_> {
    /// `POST /_local/tokens`: the token response, or why the request is refused.
    pub fn mint(&self, body: &[u8], now: i64) -> Result<Value, String> {
        let request: TokenRequest =
            serde_json::from_slice(body).map_err(|e| format!("invalid token request: {e}"))?;
        if request.sub.trim().is_empty() {
            return Err("sub must not be empty".to_owned());
        }
        if let Some(scope) = request
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(format!("scope '{scope}' is empty or has whitespace"));
        }
        if let Some(name) = request
            .claims
            .keys()
            .find(|name| REGISTERED_CLAIMS.contains(&name.as_str()))
        {
            return Err(format!(
                "claims.{name} is set by the issuer; use the request's own fields"
            ));
        }
        let expires_in = request.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
        if !(1..=MAX_EXPIRES_IN).contains(&expires_in) {
            return Err(format!(
                "expires_in must be between 1 and {MAX_EXPIRES_IN} seconds"
            ));
        }
        let mut claims = request.claims;
        claims.insert("iss".to_owned(), json!(self.issuer));
        claims.insert("aud".to_owned(), json!(self.audience));
        claims.insert("sub".to_owned(), json!(request.sub));
        claims.insert("iat".to_owned(), json!(now));
        claims.insert("nbf".to_owned(), json!(now));
        claims.insert("exp".to_owned(), json!(now + expires_in));
        claims.insert("scope".to_owned(), json!(request.scopes.join(" ")));
        Ok(json!({
            "access_token": self.key.sign(&Value::Object(claims)),
            "token_type": "Bearer",
            "expires_in": expires_in,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    const NOW: i64 = 1_900_000_000;

    /// Generating an RSA key takes a while; the tests share one.
    fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate().expect("key"))
    }

    fn verifier() -> Verifier {
        Verifier {
            issuer: "https://issuer".to_owned(),
            audiences: vec!["app".to_owned(), "pos".to_owned()],
            keys: vec![key().public_jwk().clone()],
        }
    }

    fn claims(overrides: Value) -> Value {
        let mut claims = json!({
            "iss": "https://issuer", "aud": "app", "sub": "m1",
            "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 60, "scope": "loyalty/member loyalty/pos",
        });
        for (name, value) in overrides.as_object().expect("object") {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    fn verify(claims: Value) -> Result<Map<String, Value>, Rejection> {
        verifier().verify(&key().sign(&claims), NOW)
    }

    #[test]
    fn a_well_formed_token_verifies_and_yields_its_claims_and_scopes() {
        let verified = verify(claims(json!({}))).expect("valid");
        assert_eq!(verified["sub"], "m1");
        assert_eq!(token_scopes(&verified), ["loyalty/member", "loyalty/pos"]);
        // Any configured audience; a list of audiences; client_id when aud is absent.
        assert!(verify(claims_with("aud", json!("pos"))).is_ok());
        assert!(verify(claims_with("aud", json!(["x", "app"]))).is_ok());
        assert!(verify(claims(json!({"aud": null, "client_id": "app"}))).is_ok());
        // nbf and iat are optional; exactly now is not in the future.
        assert!(verify(claims(json!({"nbf": null, "iat": null}))).is_ok());
        assert!(verify(claims(json!({"nbf": NOW, "iat": NOW}))).is_ok());
    }

    fn claims_with(name: &str, value: Value) -> Value {
        claims(json!({ name: value }))
    }

    #[test]
    fn expired_tokens_are_refused_without_leeway() {
        assert_eq!(
            verify(claims_with("exp", json!(NOW))),
            Err(Rejection::Expired)
        );
        assert_eq!(
            verify(claims_with("exp", json!(NOW - 1))),
            Err(Rejection::Expired)
        );
        assert_eq!(
            verify(claims(json!({"exp": null}))),
            Err(Rejection::Expired)
        );
        assert_eq!(
            verify(claims_with("exp", json!("soon"))),
            Err(Rejection::Expired)
        );
    }

    #[test]
    fn tokens_not_valid_yet_or_issued_in_the_future_are_refused() {
        assert_eq!(
            verify(claims_with("nbf", json!(NOW + 1))),
            Err(Rejection::NotYetValid)
        );
        assert_eq!(
            verify(claims_with("iat", json!(NOW + 1))),
            Err(Rejection::IssuedInTheFuture)
        );
    }

    #[test]
    fn a_wrong_issuer_or_audience_is_refused() {
        assert_eq!(
            verify(claims_with("iss", json!("https://other"))),
            Err(Rejection::Issuer)
        );
        assert_eq!(verify(claims(json!({"iss": null}))), Err(Rejection::Issuer));
        assert_eq!(
            verify(claims_with("aud", json!("other"))),
            Err(Rejection::Audience)
        );
        assert_eq!(
            verify(claims_with("aud", json!(["x", "y"]))),
            Err(Rejection::Audience)
        );
        // client_id counts only when there is no aud at all.
        assert_eq!(
            verify(claims(json!({"aud": "other", "client_id": "app"}))),
            Err(Rejection::Audience)
        );
        assert_eq!(
            verify(claims(json!({"aud": null}))),
            Err(Rejection::Audience)
        );
    }

    #[test]
    fn a_tampered_signature_or_payload_is_refused() {
        let token = key().sign(&claims(json!({})));
        let (signed, signature) = token.rsplit_once('.').expect("three parts");
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64");
        bytes[10] ^= 1;
        let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(verifier().verify(&tampered, NOW), Err(Rejection::Signature));
        // Someone else's claims under this token's signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims_with("sub", json!("m2")).to_string());
        parts[1] = &forged;
        assert_eq!(
            verifier().verify(&parts.join("."), NOW),
            Err(Rejection::Signature)
        );
        // A token signed by another key under this key's kid.
        let other = SigningKey::generate().expect("key");
        let header = json!({"alg": "RS256", "kid": key().public_jwk().kid});
        assert_eq!(
            verifier().verify(&other.sign_with_header(&header, &claims(json!({}))), NOW),
            Err(Rejection::Signature)
        );
    }

    #[test]
    fn an_unknown_kid_or_another_algorithm_is_refused() {
        let claims = claims(json!({}));
        let unknown = key().sign_with_header(&json!({"alg": "RS256", "kid": "nope"}), &claims);
        assert_eq!(verifier().verify(&unknown, NOW), Err(Rejection::UnknownKey));
        let no_kid = key().sign_with_header(&json!({"alg": "RS256"}), &claims);
        assert_eq!(verifier().verify(&no_kid, NOW), Err(Rejection::UnknownKey));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        assert_eq!(
            verifier().verify(&none, NOW),
            Err(Rejection::Algorithm("none".to_owned()))
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(
                verifier().verify(junk, NOW),
                Err(Rejection::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn scopes_come_from_scope_or_scp_and_a_missing_scope_is_an_empty_list() {
        let verified = verify(claims(json!({"scope": null}))).expect("valid");
        assert!(token_scopes(&verified).is_empty());
        let scp = verify(claims(json!({"scope": null, "scp": ["a/b", "c/d"]}))).expect("valid");
        assert_eq!(token_scopes(&scp), ["a/b", "c/d"]);
    }

    #[test]
    fn the_authorizer_context_stringifies_every_claim_as_api_gateway_does() {
        let verified = verify(claims(
            json!({"groups": ["a", "b"], "admin": true, "org": {"id": 1}}),
        ))
        .expect("valid");
        let context = authorizer_context(&verified);
        let jwt = &context["jwt"];
        assert_eq!(jwt["claims"]["sub"], "m1");
        assert_eq!(jwt["claims"]["exp"], (NOW + 60).to_string());
        assert_eq!(jwt["claims"]["groups"], "[a b]");
        assert_eq!(jwt["claims"]["admin"], "true");
        assert_eq!(jwt["claims"]["org"], r#"{"id":1}"#);
        assert_eq!(jwt["scopes"], json!(["loyalty/member", "loyalty/pos"]));
    }

    #[test]
    fn minted_tokens_verify_and_bad_requests_are_refused() {
        let issuer = Issuer {
            key: key(),
            issuer: "https://issuer",
            audience: "app",
        };
        let minted = issuer
            .mint(
                br#"{"sub":"m1","scopes":["loyalty/pos"],"claims":{"tenant":"t1"},"expires_in":60}"#,
                NOW,
            )
            .expect("minted");
        assert_eq!(minted["token_type"], "Bearer");
        assert_eq!(minted["expires_in"], 60);
        let claims = verifier()
            .verify(minted["access_token"].as_str().expect("token"), NOW)
            .expect("valid");
        assert_eq!(claims["tenant"], "t1");
        assert_eq!(claims["scope"], "loyalty/pos");
        assert_eq!(claims["exp"], NOW + 60);
        assert!(verifier()
            .verify(minted["access_token"].as_str().expect("token"), NOW + 60)
            .is_err());
        for bad in [
            &b"not json"[..],
            br#"{"scopes":[]}"#,
            br#"{"sub":"","scopes":[]}"#,
            br#"{"sub":"m1"}"#,
            br#"{"sub":"m1","scopes":["a b"]}"#,
            br#"{"sub":"m1","scopes":[],"claims":{"iss":"x"}}"#,
            br#"{"sub":"m1","scopes":[],"expires_in":0}"#,
            br#"{"sub":"m1","scopes":[],"expires_in":86401}"#,
            br#"{"sub":"m1","scopes":[],"bogus":1}"#,
        ] {
            assert!(
                issuer.mint(bad, NOW).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_identity_source_takes_a_bare_token_or_a_bearer_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc"), Some("abc"));
        assert_eq!(bearer_token("abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn a_stored_key_is_reused_and_its_jwks_publishes_the_public_half() {
        let dir = std::env::temp_dir().join(format!("loyalty-jwt-{}", ulid::Ulid::new()));
        let path = dir.join("run/jwt-test.pem");
        let first = SigningKey::load_or_create(&path).expect("created");
        let again = SigningKey::load_or_create(&path).expect("loaded");
        assert_eq!(first.public_jwk(), again.public_jwk());
        let jwks = again.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert_eq!(jwks["keys"][0]["alg"], "RS256");
        assert_eq!(jwks["keys"][0]["kid"], first.public_jwk().kid);
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        let token = first.sign(&claims(json!({})));
        assert!(Verifier {
            keys: vec![again.public_jwk().clone()],
            ..verifier()
        }
        .verify(&token, NOW)
        .is_ok());
        std::fs::write(&path, "junk").expect("write");
        assert!(SigningKey::load_or_create(&path).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
