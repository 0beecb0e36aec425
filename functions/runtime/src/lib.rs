//! What every Lambda function does once per execution environment, before its first event:
//! JSON tracing, the AWS SDK config, the app and the queues it needs from the environment, and
//! one log line saying what was wired. A `main` only names what its function needs:
//!
//! ```no_run
//! # async fn main_body() -> Result<(), loyalty_runtime::Error> {
//! let mut wiring = loyalty_runtime::Wiring::start("accrue").await;
//! let app = wiring.app()?.with_events(wiring.events());
//! let app = app.with_referral_queue(wiring.queue("REFERRAL_QUEUE_URL")?);
//! wiring.announce();
//! # let _ = app; Ok(()) }
//! ```
//!
//! A queue the function needs and the environment lacks fails the cold start with a message
//! naming the variable, rather than a function that starts and then loses messages.

use std::future::Future;
use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use loyalty_core::ports::MessageQueue;
use loyalty_core::subscriptions::payments::PaymentProvider;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_sqs::SqsQueue;
use serde_json::{Map, Value};

/// What a cold start or a function's run fails with (the Lambda runtime's error type).
pub type Error = lambda_runtime::Error;

/// JSON logs, filtered by `RUST_LOG`; CloudWatch and the local runner both read them. Each line
/// carries the fields of the span it was written in (the use case, the member, the operation).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .try_init();
}

/// The AWS SDK configuration (region, credentials, retry and timeout defaults) every client of
/// a function is built from. The one place it is built: a change to the SDK's settings lands
/// here for every function.
pub async fn aws_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

/// Where one variable is read from: the process environment on Lambda, a map in tests.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A function's cold start: builds what the function asks for, once, and remembers it so that
/// [`Wiring::announce`] can log it. Never records a secret: the payment provider is logged by
/// its API base, not its key.
pub struct Wiring {
    function: &'static str,
    aws: SdkConfig,
    env: Lookup,
    sqs: Option<aws_sdk_sqs::Client>,
    wired: Map<String, Value>,
}

impl Wiring {
    /// Starts tracing and loads the AWS config for `function` (its name in logs).
    pub async fn start(function: &'static str) -> Self {
        init_tracing();
        let aws = aws_config().await;
        Self::with_env(function, aws, |name| std::env::var(name).ok())
    }

    /// A wiring that reads its variables through `env` instead of the process environment.
    pub fn with_env(
        function: &'static str,
        aws: SdkConfig,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            function,
            aws,
            env: Box::new(env),
            sqs: None,
            wired: Map::new(),
        }
    }

    pub fn aws(&self) -> &SdkConfig {
        &self.aws
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|value| !value.trim().is_empty())
    }

    fn missing(&self, name: &str, why: &str) -> Error {
        let message = format!(
            "cold start of '{}' failed: {name} is not set ({why})",
            self.function
        );
        tracing::error!(function = self.function, variable = name, "{message}");
        message.into()
    }

    /// The app on the table in `TABLE_NAME` (with `PROGRAM_CACHE_SECONDS` and the clock).
    pub fn app(&mut self) -> Result<App<DynamoStore>, Error> {
        let app = loyalty_dynamo::app_from_env(&self.aws).map_err(|error| {
            let message = format!("cold start of '{}' failed: {error}", self.function);
            tracing::error!(function = self.function, "{message}");
            Error::from(message)
        })?;
        self.record("table", app.store().table());
        Ok(app)
    }

    /// Where the app's outgoing events go: the queue in `EVENTS_QUEUE_URL`, or the log when the
    /// deployment has none.
    pub fn events(&mut self) -> Arc<dyn MessageQueue> {
        match self.var("EVENTS_QUEUE_URL") {
            Some(url) => {
                self.record("EVENTS_QUEUE_URL", &url);
                Arc::new(self.sqs_queue(url))
            }
            None => {
                self.record("EVENTS_QUEUE_URL", "unset: events are logged");
                Arc::new(loyalty_core::events::LogQueue)
            }
        }
    }

    /// The queue whose URL is in `name`, which this function cannot run without: a missing URL
    /// fails the cold start.
    pub fn queue(&mut self, name: &'static str) -> Result<Arc<SqsQueue>, Error> {
        let url = self
            .var(name)
            .ok_or_else(|| self.missing(name, "the template sets it for this function"))?;
        self.record(name, &url);
        Ok(Arc::new(self.sqs_queue(url)))
    }

    /// The payment provider: Stripe when configured (the Secrets Manager secret named by
    /// `STRIPE_SECRET_ID`, or `STRIPE_SECRET_KEY` from the local runner's environment), otherwise
    /// none (starting or billing a subscription then answers `payment_provider_unavailable`). A
    /// secret that cannot be read fails the cold start: no half-configured function.
    pub async fn payments(&mut self) -> Result<Option<Arc<dyn PaymentProvider>>, Error> {
        let configured = loyalty_payments::secrets::config_from_environment(&self.aws)
            .await
            .map_err(|error| self.failed(&error))?;
        let Some(config) = configured else {
            self.record("payments", "none (no Stripe secret configured)");
            return Ok(None);
        };
        self.record(
            "payments",
            &format!("stripe at {} ({:?})", config.base, config.dialect),
        );
        let provider =
            loyalty_payments::StripePayments::new(config).map_err(|error| self.failed(&error))?;
        Ok(Some(Arc::new(provider)))
    }

    fn failed(&self, error: &str) -> Error {
        let message = format!("cold start of '{}' failed: {error}", self.function);
        tracing::error!(function = self.function, "{message}");
        message.into()
    }

    /// A number from `name`, or `default` when unset; a value that is not a number fails the
    /// cold start rather than silently running with the default.
    pub fn number(&mut self, name: &'static str, default: u32) -> Result<u32, Error> {
        let value = match self.var(name) {
            None => default,
            Some(raw) => raw.trim().parse().map_err(|_| {
                let message = format!(
                    "cold start of '{}' failed: {name} '{raw}' is not a number",
                    self.function
                );
                tracing::error!(function = self.function, variable = name, "{message}");
                Error::from(message)
            })?,
        };
        self.record(name, &value.to_string());
        Ok(value)
    }

    /// Which webhook URLs this function accepts and reaches: public `https` only, unless the
    /// local runner set `LOYALTY_WEBHOOKS_ALLOW_LOOPBACK_HTTP=true`.
    pub fn webhook_policy(&mut self) -> loyalty_core::webhooks::address::UrlPolicy {
        use loyalty_core::webhooks::address::{UrlPolicy, ALLOW_LOOPBACK_ENV};
        let policy = UrlPolicy::from_env_value(self.var(ALLOW_LOOPBACK_ENV).as_deref());
        let described = if policy.allow_loopback_http {
            "https, or http to loopback (local)"
        } else {
            "https to public addresses"
        };
        self.record("webhook_urls", described);
        policy
    }

    /// Everything wired so far, as the cold-start line logs it.
    pub fn wired(&self) -> &Map<String, Value> {
        &self.wired
    }

    /// Logs, once per cold start, what this environment was wired with.
    pub fn announce(&self) {
        let wired = Value::Object(self.wired.clone());
        tracing::info!(function = self.function, %wired, "cold start wired");
    }

    fn record(&mut self, what: &str, value: &str) {
        self.wired.insert(what.to_owned(), Value::from(value));
    }

    /// One SQS client (and connection pool) for every queue of the function.
    fn sqs_queue(&mut self, url: String) -> SqsQueue {
        let client = self
            .sqs
            .get_or_insert_with(|| aws_sdk_sqs::Client::new(&self.aws))
            .clone();
        SqsQueue::new(client, url)
    }
}

/// Serves a queue- or schedule-triggered function: every event's payload goes to `handler`,
/// whose `Ok` is the invocation's response (a partial batch response for SQS) and whose `Err`
/// fails the invocation.
pub async fn serve<F, Fut>(mut handler: F) -> Result<(), Error>
where
    F: FnMut(Value) -> Fut,
    Fut: Future<Output = Result<Value, String>>,
{
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| handler(event.payload),
    ))
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_config::Region;

    use super::*;

    fn wiring(vars: &[(&str, &str)]) -> Wiring {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        Wiring::with_env("accrue", aws, move |name| vars.get(name).cloned())
    }

    #[test]
    fn a_missing_required_queue_fails_the_cold_start_naming_the_variable() {
        let mut wiring = wiring(&[]);
        let error = wiring
            .queue("REFERRAL_QUEUE_URL")
            .expect_err("no queue without its URL");
        let message = error.to_string();
        assert!(message.contains("REFERRAL_QUEUE_URL"), "{message}");
        assert!(message.contains("'accrue'"), "{message}");
    }

    #[test]
    fn an_empty_queue_url_counts_as_missing() {
        let mut wiring = wiring(&[("REFERRAL_QUEUE_URL", "  ")]);
        assert!(wiring.queue("REFERRAL_QUEUE_URL").is_err());
    }

    #[test]
    fn the_cold_start_record_names_each_queue_it_wired() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/referrals";
        let mut wiring = wiring(&[("REFERRAL_QUEUE_URL", url)]);
        let queue = wiring.queue("REFERRAL_QUEUE_URL").expect("queue");
        assert_eq!(queue.url(), url);
        let events = wiring.events();
        drop(events);
        assert_eq!(wiring.wired()["REFERRAL_QUEUE_URL"], Value::from(url));
        assert_eq!(
            wiring.wired()["EVENTS_QUEUE_URL"],
            Value::from("unset: events are logged")
        );
    }

    #[test]
    fn a_number_that_does_not_parse_fails_instead_of_using_the_default() {
        let mut wiring = wiring(&[("CAMPAIGN_MAX_RECEIVES", "five")]);
        assert!(wiring.number("CAMPAIGN_MAX_RECEIVES", 5).is_err());
        let mut wiring = self::wiring(&[]);
        assert_eq!(wiring.number("CAMPAIGN_MAX_RECEIVES", 5).ok(), Some(5));
    }
}
