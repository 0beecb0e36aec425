//! Where a function's Stripe keys come from, read once per execution environment: the AWS
//! Secrets Manager secret the template names (`STRIPE_SECRET_ID`), or, when the environment
//! itself carries `STRIPE_SECRET_KEY` (the local runner and tests), the environment.

use std::sync::Arc;
use std::time::Duration;

use loyalty_core::subscriptions::payments::PaymentProvider;

use crate::config::{StripeConfig, SECRET_KEY_ENV};
use crate::StripePayments;

pub const SECRET_ID_ENV: &str = "STRIPE_SECRET_ID";

/// A cold start waits at most this long for the secret.
const SECRET_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The adapter's configuration from the function's environment. `Ok(None)`: payments are not
/// configured in this deployment.
pub async fn config_from_environment(
    aws: &aws_config::SdkConfig,
) -> Result<Option<StripeConfig>, String> {
    if std::env::var(SECRET_KEY_ENV).is_ok_and(|k| !k.trim().is_empty()) {
        return StripeConfig::from_env().map(Some);
    }
    let Some(secret_id) = std::env::var(SECRET_ID_ENV)
        .ok()
        .filter(|id| !id.trim().is_empty())
    else {
        return Ok(None);
    };
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let read = client.get_secret_value().secret_id(&secret_id).send();
    let answer = tokio::time::timeout(SECRET_READ_TIMEOUT, read)
        .await
        .map_err(|_| format!("reading secret {secret_id} timed out"))?
        .map_err(|e| format!("reading secret {secret_id}: {e}"))?;
    let text = answer
        .secret_string()
        .ok_or_else(|| format!("secret {secret_id} has no string value"))?;
    StripeConfig::from_secret_string(text).map(Some)
}

/// The payment provider of a function: Stripe when configured, otherwise none, with a warning
/// (the app then answers `payment_provider_unavailable`), so a deployment without payments
/// still runs everything else. A secret that cannot be read is an error: the function should
/// not start half-configured.
pub async fn provider_from_environment(
    aws: &aws_config::SdkConfig,
) -> Result<Option<Arc<dyn PaymentProvider>>, String> {
    match config_from_environment(aws).await? {
        Some(config) => {
            tracing::info!(?config, "Stripe payments configured");
            Ok(Some(Arc::new(StripePayments::new(config)?)))
        }
        None => {
            tracing::warn!("no Stripe secret configured; subscriptions cannot be charged");
            Ok(None)
        }
    }
}
