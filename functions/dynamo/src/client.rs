//! The one DynamoDB client configuration every function uses, built once per execution
//! environment. A Lambda environment runs one invocation at a time against one regional table,
//! so the SDK's per-call machinery is set for that and nothing else; each choice below is
//! measured in BENCHMARKS.md ("Process CPU per change").

use aws_sdk_dynamodb::config::endpoint::{
    DefaultResolver, Endpoint, EndpointFuture, Params, ResolveEndpoint,
};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::StalledStreamProtectionConfig;
use aws_sdk_dynamodb::Client;
use std::sync::OnceLock;

/// Attempts per call, the first included. Transient errors (throttling, 5xx, a dropped
/// connection) are retried by the SDK with jittered backoff; every write is a conditional
/// transaction, so a retried write that already committed is refused by its own conditions and
/// settled by the service, never applied twice.
pub const ATTEMPTS: u32 = 3;

/// Builds the DynamoDB client from the shared AWS config:
/// - **Endpoint resolved once.** The SDK evaluates DynamoDB's endpoint rules for every call (its
///   parameters built from the request, then compared with the last result); the table's
///   endpoint cannot change while the environment lives, so the rules run for the first call
///   (region, FIPS/dual-stack, `AWS_ENDPOINT_URL_DYNAMODB` respected) and every later call gets
///   that endpoint (an account-ID endpoint, where the first call's credentials name the account,
///   serves every table of that account just the same).
/// - **Retries: standard mode, [`ATTEMPTS`] attempts**, stated rather than inherited.
/// - **Stalled-stream protection off.** It wraps every response body to track throughput with
///   timers, for long downloads; DynamoDB answers here are a few KB (a query page at most
///   ~1 MB), and a stalled call is bounded by the SDK's connect timeout and the function's own
///   timeout, after which the caller's retry is answered by the idempotency record.
pub fn dynamodb_client(aws: &aws_config::SdkConfig) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(aws)
        .endpoint_resolver(ResolvedOnce::default())
        .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// DynamoDB's endpoint rules, evaluated for the first call and their answer kept: the
/// parameters (region, FIPS, dual-stack, `AWS_ENDPOINT_URL_DYNAMODB`, one table) are the same
/// for every call of this client.
#[derive(Debug, Default)]
struct ResolvedOnce {
    rules: DefaultResolver,
    endpoint: OnceLock<Endpoint>,
}

impl ResolveEndpoint for ResolvedOnce {
    fn resolve_endpoint<'a>(&'a self, params: &'a Params) -> EndpointFuture<'a> {
        if let Some(endpoint) = self.endpoint.get() {
            return EndpointFuture::ready(Ok(endpoint.clone()));
        }
        EndpointFuture::new(async move {
            let endpoint = self.rules.resolve_endpoint(params).await?;
            Ok(self.endpoint.get_or_init(|| endpoint).clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::{BehaviorVersion, Region};

    fn params(region: &str, endpoint: Option<&str>) -> Params {
        Params::builder()
            .region(region)
            .use_fips(false)
            .use_dual_stack(false)
            .set_endpoint(endpoint.map(str::to_owned))
            .account_id_endpoint_mode("disabled")
            .build()
            .expect("params")
    }

    #[tokio::test]
    async fn the_first_resolution_follows_the_rules_and_later_calls_reuse_it() {
        let resolver = ResolvedOnce::default();
        let first = resolver
            .resolve_endpoint(&params("eu-west-1", None))
            .await
            .expect("resolved");
        assert_eq!(first.url(), "https://dynamodb.eu-west-1.amazonaws.com");
        let again = resolver
            .resolve_endpoint(&params("eu-west-1", Some("http://127.0.0.1:1")))
            .await
            .expect("cached");
        assert_eq!(again.url(), first.url());
    }

    #[tokio::test]
    async fn an_endpoint_url_override_is_what_gets_kept() {
        let resolver = ResolvedOnce::default();
        let endpoint = resolver
            .resolve_endpoint(&params("us-east-1", Some("http://127.0.0.1:8000")))
            .await
            .expect("resolved");
        assert_eq!(endpoint.url(), "http://127.0.0.1:8000");
    }

    #[test]
    fn the_client_keeps_the_stated_retries_and_no_stalled_stream_protection() {
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .build();
        let client = dynamodb_client(&aws);
        let conf = client.config();
        assert_eq!(
            conf.retry_config().map(|r| r.max_attempts()),
            Some(ATTEMPTS)
        );
        assert_eq!(
            conf.stalled_stream_protection().map(|s| s.is_enabled()),
            Some(false)
        );
    }
}
