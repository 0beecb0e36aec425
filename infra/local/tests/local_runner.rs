//! The process runner against moto (SQS) and DynamoDB Local, with the `local-probe` function
//! and `tests/fixtures/probe-template.yaml`: batch semantics of the SQS event source mapping,
//! crash recovery, the table stream's mapping (filters, item failures, on-failure queue),
//! schedules fired on demand, and HTTP routes behind the JWT authorizer with
//! tokens minted by the runner's issuer.
//!
//! Needs `LOYALTY_TEST_DYNAMODB` and `LOYALTY_TEST_SQS` (set by `make test`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use loyalty_local::demo::Demo;
use loyalty_local::jwt::SigningKey;
use loyalty_local::runner::{dynamodb_client, FireError, Runner, RunnerConfig};
use loyalty_local::template::Template;
use serde_json::json;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/probe-template.yaml"
);

fn endpoints() -> (String, String) {
    match (std::env::var("LOYALTY_TEST_DYNAMODB"), std::env::var("LOYALTY_TEST_SQS")) {
        (Ok(dynamodb), Ok(sqs)) => (dynamodb, sqs),
        _ => panic!(
            "these tests need DynamoDB Local and moto_server: run `make test`, or start \
             `infra/scripts/dynamodb-local.sh start 8000` and `infra/scripts/moto.sh start 4566` and set \
             LOYALTY_TEST_DYNAMODB=http://127.0.0.1:8000 LOYALTY_TEST_SQS=http://127.0.0.1:4566"
        ),
    }
}

/// Generating an RSA key takes a while; the tests share one.
fn signing_key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    Arc::clone(KEY.get_or_init(|| Arc::new(SigningKey::generate().expect("key"))))
}

struct Probe {
    runner: Runner,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
}

async fn start(schedules: bool) -> Probe {
    let (dynamodb, sqs) = endpoints();
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let table = format!("probe-{run}");
    let template = Template::load(&PathBuf::from(FIXTURE)).expect("fixture parses");
    let runner = Runner::start(RunnerConfig {
        template,
        signing_key: signing_key(),
        dynamodb: dynamodb.clone(),
        sqs: Some(sqs.clone()),
        binaries: HashMap::from([(
            "local-probe".to_owned(),
            PathBuf::from(env!("CARGO_BIN_EXE_local-probe")),
        )]),
        bin_dir: PathBuf::from("/nonexistent"),
        table: table.clone(),
        queue_prefix: format!("{run}-"),
        // 2030-01-15T12:00:00Z, so two fires are surely in the same day.
        clock_offset: chrono::DateTime::parse_from_rfc3339("2030-01-15T12:00:00Z")
            .expect("time")
            .to_utc()
            - chrono::Utc::now(),
        schedules,
        rust_log: "warn".to_owned(),
    })
    .await
    .expect("runner starts");
    Probe {
        runner,
        dynamodb: dynamodb_client(&dynamodb).await,
        sqs: loyalty_local::sqs::client(&sqs).await,
        table,
    }
}

impl Probe {
    async fn count(&self, pk: &str) -> Option<i64> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("get_item")
            .item?;
        Some(match item.get("n") {
            Some(AttributeValue::N(n)) => n.parse().expect("number"),
            _ => 1,
        })
    }

    async fn send(&self, bodies: &[&str]) {
        let url = self.runner.queue_url("WorkQueue").expect("queue");
        for body in bodies {
            self.sqs
                .send_message()
                .queue_url(url)
                .message_body(*body)
                .send()
                .await
                .expect("send");
        }
    }

    /// Bodies that reached the dead-letter queue within `limit`, once `expected` are there.
    async fn dead_letters(&self, expected: usize, limit: Duration) -> Vec<String> {
        let url = self.runner.queue_url("WorkDlq").expect("dlq");
        let started = Instant::now();
        let mut bodies = Vec::new();
        while bodies.len() < expected && started.elapsed() < limit {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive dlq");
            for message in out.messages.unwrap_or_default() {
                bodies.push(message.body.unwrap_or_default());
            }
        }
        bodies
    }

    async fn wait_for(&self, pk: &str, limit: Duration) -> Option<i64> {
        let started = Instant::now();
        loop {
            if let Some(n) = self.count(pk).await {
                return Some(n);
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_retried_then_dead_lettered_and_the_rest_apply_once() {
    let probe = start(false).await;
    probe
        .send(&["apple", "banana", "poison", "flaky-1", "dup", "dup"])
        .await;
    let dead = probe.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(dead, ["poison"], "only the poison message is dead-lettered");
    // poison: received maxReceiveCount (2) times, never applied.
    assert_eq!(probe.count("ATTEMPT#poison").await, Some(2));
    assert_eq!(probe.count("EFFECT#poison").await, None);
    for body in ["apple", "banana"] {
        assert_eq!(
            probe.count(&format!("ATTEMPT#{body}")).await,
            Some(1),
            "{body}"
        );
        assert_eq!(
            probe.count(&format!("EFFECT#{body}")).await,
            Some(1),
            "{body}"
        );
    }
    // Delivered twice (failed after its effect on the first delivery): one effect.
    assert_eq!(probe.count("ATTEMPT#flaky-1").await, Some(2));
    assert_eq!(probe.count("EFFECT#flaky-1").await, Some(1));
    // Sent twice by the producer: both delivered, one effect.
    assert_eq!(probe.count("ATTEMPT#dup").await, Some(2));
    assert_eq!(probe.count("EFFECT#dup").await, Some(1));
    probe.runner.stop().await;
}

impl Probe {
    async fn change(&self, pk: &str) {
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(pk.to_owned()))
            .send()
            .await
            .expect("put change");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_changes_reach_the_function_through_the_stream_filtered_and_resumed_after_an_item_failure(
) {
    let probe = start(false).await;
    for pk in ["CHANGE#a", "CHANGE#flaky", "CHANGE#b", "OTHER#x"] {
        probe.change(pk).await;
    }
    assert_eq!(
        probe.wait_for("SEEN#b", Duration::from_secs(30)).await,
        Some(1),
        "the record after the failed one is delivered on the retry"
    );
    assert_eq!(
        probe.count("SEEN#a").await,
        Some(1),
        "done before the failure"
    );
    assert_eq!(
        probe.count("SEEN#flaky").await,
        Some(2),
        "resumed from the failed record"
    );
    assert_eq!(
        probe.count("SEEN#OTHER#x").await,
        None,
        "the filter drops keys outside CHANGE#"
    );
    assert_eq!(probe.count("SEEN#SEEN#a").await, None);
    probe.runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_record_failing_past_its_retries_is_described_on_the_failure_queue_and_the_shard_moves_on(
) {
    let probe = start(false).await;
    probe.change("CHANGE#poison").await;
    let url = probe.runner.queue_url("StreamFailures").expect("queue");
    let started = Instant::now();
    let mut messages = Vec::new();
    while messages.is_empty() && started.elapsed() < Duration::from_secs(60) {
        let out = probe
            .sqs
            .receive_message()
            .queue_url(url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive failures");
        messages.extend(out.messages.unwrap_or_default());
    }
    assert_eq!(messages.len(), 1);
    let message: serde_json::Value =
        serde_json::from_str(messages[0].body().unwrap_or_default()).expect("JSON");
    let info = &message["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["startSequenceNumber"], info["endSequenceNumber"]);
    assert!(info["shardId"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        message["Records"][0]["dynamodb"]["Keys"]["pk"]["S"],
        "CHANGE#poison"
    );
    assert_eq!(
        probe.count("SEEN#poison").await,
        Some(3),
        "the first delivery and two retries"
    );
    probe.change("CHANGE#after").await;
    assert_eq!(
        probe.wait_for("SEEN#after", Duration::from_secs(30)).await,
        Some(1),
        "the shard continues after the failed record"
    );
    probe.runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_the_whole_batch_and_the_process_comes_back() {
    let probe = start(false).await;
    probe.send(&["crash"]).await;
    let dead = probe.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(dead, ["crash"]);
    assert_eq!(probe.count("ATTEMPT#crash").await, Some(2));
    probe.send(&["after-crash"]).await;
    assert_eq!(
        probe
            .wait_for("EFFECT#after-crash", Duration::from_secs(30))
            .await,
        Some(1),
        "the restarted process handles new messages"
    );
    probe.runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fired_twice_in_one_period_has_one_effect() {
    let probe = start(false).await;
    let first = probe.runner.fire_schedule("Nightly").await.expect("fires");
    let second = probe.runner.fire_schedule("Nightly").await.expect("fires");
    let first: serde_json::Value = serde_json::from_slice(&first).expect("json");
    let second: serde_json::Value = serde_json::from_slice(&second).expect("json");
    assert_eq!(
        first["period"], "2030-01-15",
        "the runner's clock offset applies"
    );
    assert_eq!(
        (first["applied"].as_bool(), second["applied"].as_bool()),
        (Some(true), Some(false))
    );
    let rule = "arn:aws:events:us-east-1:123456789012:rule/loyalty-local-ProbeFunctionNightly";
    assert_eq!(probe.count(&format!("FIRES#{rule}")).await, Some(2));
    assert_eq!(
        probe.count(&format!("PERIOD#{rule}#2030-01-15")).await,
        Some(1)
    );
    // ScheduleV2 fires too; unknown names are refused.
    probe
        .runner
        .fire_schedule("Hourly")
        .await
        .expect("v2 fires");
    assert!(matches!(
        probe.runner.fire_schedule("Nope").await,
        Err(FireError::NotFound)
    ));
    // Over HTTP, as `curl -X POST /_local/schedules/Nightly`.
    let response = probe
        .runner
        .call(
            "POST",
            "/_local/schedules/Nightly",
            &http::HeaderMap::new(),
            b"",
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(probe.count(&format!("FIRES#{rule}")).await, Some(3));
    assert_eq!(
        probe.count(&format!("PERIOD#{rule}#2030-01-15")).await,
        Some(1)
    );
    probe.runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_pass_the_jwt_authorizer_with_tokens_minted_by_the_runner() {
    let probe = start(false).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = async {
        let demo = Demo::new(&api).expect("loopback");
        let minted = demo
            .send(
                None,
                "POST",
                "/_local/tokens",
                None,
                Some(
                    json!({"sub": "tester", "scopes": ["probe/read"], "claims": {"tenant": "t1"}}),
                ),
            )
            .await
            .expect("minted");
        assert_eq!(minted.status, 200, "{}", minted.body);
        assert_eq!(minted.body["token_type"], "Bearer");
        let token = minted.body["access_token"]
            .as_str()
            .expect("token")
            .to_owned();

        let whoami = demo
            .send(Some(&token), "GET", "/probe/whoami", None, None)
            .await
            .expect("whoami");
        assert_eq!(whoami.status, 200, "{}", whoami.body);
        let jwt = &whoami.body["authorizer"]["jwt"];
        assert_eq!(jwt["claims"]["sub"], "tester");
        assert_eq!(jwt["claims"]["tenant"], "t1");
        // No Default and no override: the runner's own issuer and audience.
        assert_eq!(jwt["claims"]["iss"], "loyalty-local");
        assert_eq!(jwt["claims"]["aud"], "loyalty-local");
        assert!(jwt["claims"]["exp"].is_string(), "claims arrive as strings");
        assert_eq!(jwt["scopes"], json!(["probe/read"]));

        let anonymous = demo
            .send(None, "GET", "/probe/whoami", None, None)
            .await
            .expect("anonymous");
        assert_eq!(
            (anonymous.status, anonymous.body.clone()),
            (401, json!({"message": "Unauthorized"}))
        );
        let other_scope = demo
            .send(
                None,
                "POST",
                "/_local/tokens",
                None,
                Some(json!({"sub": "tester", "scopes": ["probe/write"]})),
            )
            .await
            .expect("minted");
        let other_token = other_scope.body["access_token"].as_str().expect("token");
        let forbidden = demo
            .send(Some(other_token), "GET", "/probe/whoami", None, None)
            .await
            .expect("forbidden");
        assert_eq!(
            (forbidden.status, forbidden.body.clone()),
            (403, json!({"message": "Forbidden"}))
        );
        let open = demo
            .send(None, "GET", "/probe/open", None, None)
            .await
            .expect("open");
        assert_eq!(open.status, 200);
        assert_eq!(
            open.body["authorizer"],
            json!(null),
            "public routes have no authorizer"
        );

        let jwks = demo
            .send(None, "GET", "/_local/jwks.json", None, None)
            .await
            .expect("jwks");
        assert_eq!(jwks.status, 200);
        assert_eq!(jwks.body["keys"][0]["kid"], signing_key().public_jwk().kid);
        let description = demo
            .send(None, "GET", "/_local/openapi.yaml", None, None)
            .await
            .expect("openapi.yaml");
        assert_eq!(description.status, 200);
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(description.body.as_str().expect("YAML, not JSON"))
                .expect("the description parses");
        assert_eq!(yaml["openapi"].as_str(), Some("3.1.0"));
        let refused = demo
            .send(
                None,
                "POST",
                "/_local/tokens",
                None,
                Some(json!({"scopes": []})),
            )
            .await
            .expect("refused");
        assert_eq!(refused.status, 400);
        assert_eq!(refused.body["error"]["code"], "invalid_token_request");
        let _ = stop.send(());
    };
    let (served, ()) = tokio::join!(
        probe.runner.serve(listener, async {
            let _ = stopped.await;
        }),
        client
    );
    served.expect("served");
    probe.runner.stop().await;
}
