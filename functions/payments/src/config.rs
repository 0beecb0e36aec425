//! The adapter's configuration: where Stripe is, the keys, and the time it may take. The keys
//! come from AWS Secrets Manager in a deployment (read once per execution environment by the
//! function's wiring) and from the environment locally; the API base must be https unless it is
//! a loopback test server, so a mistyped base never carries the key in clear.

use std::time::Duration;

use serde_json::Value;

pub const API_BASE_ENV: &str = "STRIPE_API_BASE";
pub const SECRET_KEY_ENV: &str = "STRIPE_SECRET_KEY";
pub const WEBHOOK_SECRET_ENV: &str = "STRIPE_WEBHOOK_SECRET";
/// `localstripe` selects [`Dialect::Localstripe`]; anything else is Stripe.
pub const DIALECT_ENV: &str = "STRIPE_DIALECT";
/// Milliseconds one Stripe call (with its retries) may take.
pub const CALL_BUDGET_ENV: &str = "STRIPE_CALL_BUDGET_MS";
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// Which server the adapter speaks to. localstripe refuses a few parameters Stripe requires of
/// the saved-card flow; the dialect leaves exactly those out, and nothing else differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Stripe,
    Localstripe,
}

#[derive(Clone)]
pub struct StripeConfig {
    pub base: String,
    pub secret_key: String,
    /// The webhook endpoint's signing secret (`whsec_…`), for the functions that verify.
    pub webhook_secret: Option<String>,
    pub dialect: Dialect,
    /// One try's timeout.
    pub try_timeout: Duration,
    /// Everything one call may take, retries and backoff included: well under the timeout of
    /// the function making it (the members function has 10 s for up to three calls).
    pub call_budget: Duration,
    pub first_backoff: Duration,
    /// A retry is not started with less time than this left.
    pub min_try: Duration,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("base", &self.base)
            .field("dialect", &self.dialect)
            .field("call_budget", &self.call_budget)
            .finish_non_exhaustive()
    }
}

/// Whether `base` may carry the secret key: https, or http to a loopback address (a local
/// test server).
pub fn check_base(base: &str) -> Result<(), String> {
    if base.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = base.strip_prefix("http://") else {
        return Err(format!("Stripe API base '{base}' is not an https URL"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "Stripe API base '{base}' is plain http to a non-loopback host; the key would travel in clear"
        ))
    }
}

impl StripeConfig {
    /// A configuration with the default time limits: 2.5 s a try, 3.5 s a call.
    pub fn new(base: impl Into<String>, secret_key: impl Into<String>) -> Result<Self, String> {
        let base = base.into().trim_end_matches('/').to_owned();
        check_base(&base)?;
        let secret_key = secret_key.into();
        if secret_key.trim().is_empty() {
            return Err("the Stripe secret key is empty".into());
        }
        Ok(Self {
            base,
            secret_key,
            webhook_secret: None,
            dialect: Dialect::Stripe,
            try_timeout: Duration::from_millis(2_500),
            call_budget: Duration::from_millis(3_500),
            first_backoff: Duration::from_millis(200),
            min_try: Duration::from_millis(300),
        })
    }

    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    pub fn with_webhook_secret(mut self, secret: impl Into<String>) -> Self {
        self.webhook_secret = Some(secret.into()).filter(|s| !s.trim().is_empty());
        self
    }

    /// Time limits: one try, and the whole call with its retries.
    pub fn with_timeouts(mut self, try_timeout: Duration, call_budget: Duration) -> Self {
        self.try_timeout = try_timeout;
        self.call_budget = call_budget;
        self.min_try = self.min_try.min(try_timeout);
        self.first_backoff = self.first_backoff.min(call_budget / 4);
        self
    }

    /// The keys from a Secrets Manager secret string: a JSON object with `secret_key` and,
    /// optionally, `webhook_secret`; the base and dialect from the environment.
    pub fn from_secret_string(secret: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(secret)
            .map_err(|e| format!("the Stripe secret is not a JSON object: {e}"))?;
        let key = value["secret_key"]
            .as_str()
            .ok_or("the Stripe secret has no secret_key")?;
        let config = Self::new(base_from_env(), key)?.with_env_options();
        Ok(match value["webhook_secret"].as_str() {
            Some(webhook) => config.with_webhook_secret(webhook),
            None => config,
        })
    }

    /// Everything from the environment (`STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`,
    /// `STRIPE_API_BASE`, `STRIPE_DIALECT`): the local runner and tests.
    pub fn from_env() -> Result<Self, String> {
        let key = std::env::var(SECRET_KEY_ENV)
            .ok()
            .filter(|key| !key.trim().is_empty())
            .ok_or_else(|| format!("{SECRET_KEY_ENV} is not set"))?;
        let config = Self::new(base_from_env(), key)?.with_env_options();
        Ok(match std::env::var(WEBHOOK_SECRET_ENV) {
            Ok(webhook) => config.with_webhook_secret(webhook),
            Err(_) => config,
        })
    }

    fn with_env_options(self) -> Self {
        let dialect = match std::env::var(DIALECT_ENV).as_deref() {
            Ok("localstripe") => Dialect::Localstripe,
            _ => Dialect::Stripe,
        };
        let budget = std::env::var(CALL_BUDGET_ENV)
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis);
        let config = self.with_dialect(dialect);
        match budget {
            Some(budget) => {
                let try_timeout = config.try_timeout.min(budget);
                config.with_timeouts(try_timeout, budget)
            }
            None => config,
        }
    }
}

fn base_from_env() -> String {
    std::env::var(API_BASE_ENV).unwrap_or_else(|_| DEFAULT_API_BASE.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_travels_only_over_https_or_to_a_loopback_test_server() {
        assert!(check_base("https://api.stripe.com").is_ok());
        assert!(check_base("http://127.0.0.1:8420").is_ok());
        assert!(check_base("http://localhost:8420/").is_ok());
        assert!(check_base("http://[::1]:8420").is_ok());
        assert!(check_base("http://api.stripe.com").is_err());
        assert!(check_base("http://10.0.0.7:8420").is_err());
        assert!(check_base("http://127.0.0.1.evil.example").is_err());
        assert!(check_base("ftp://api.stripe.com").is_err());
        assert!(StripeConfig::new("http://api.stripe.com", "sk_live_x").is_err());
    }

    #[test]
    fn a_secret_string_carries_both_keys() {
        let config = StripeConfig::from_secret_string(
            r#"{"secret_key":"sk_test_1","webhook_secret":"whsec_1"}"#,
        )
        .expect("parsed");
        assert_eq!(config.secret_key, "sk_test_1");
        assert_eq!(config.webhook_secret.as_deref(), Some("whsec_1"));
        assert!(StripeConfig::from_secret_string(r#"{"webhook_secret":"w"}"#).is_err());
        assert!(StripeConfig::from_secret_string("sk_test_plain").is_err());
    }
}
