//! Shared set-up for the integration tests: a fresh DynamoDB Local table per test (named
//! uniquely, so tests run in parallel), the app wired to it, and API Gateway v2 events built from
//! the fixtures that ship with `aws_lambda_events`.

pub mod abuse;
pub mod events;
pub mod flaky;
pub mod stream_relay;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::Select;
use aws_sdk_dynamodb::Client;
use loyalty_core::clock::{Clock, SystemClock};
use loyalty_core::commands::EnrolRequest;
use loyalty_core::ids::{IdempotencyKey, MemberId};
use loyalty_core::member::Member;
use loyalty_core::ports::Store;
use loyalty_core::service::{AppConfig, Outcome};
use loyalty_core::{ApiError, App};
use loyalty_dynamo::DynamoStore;
use serde_json::{json, Value};

pub const ENDPOINT_ENV: &str = "LOYALTY_TEST_DYNAMODB";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A client for the DynamoDB Local the test command started. Built per test: each test has its
/// own runtime, and a client's connection pool belongs to the runtime that made it.
pub fn dynamodb_client() -> Client {
    let endpoint = std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_ENV} is not set, and these tests need DynamoDB Local. Run `make test` (it installs \
             and starts it), or start one with `bash infra/scripts/dynamodb-local.sh start 8000` and \
             export {ENDPOINT_ENV}=http://127.0.0.1:8000"
        )
    });
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        // DynamoDB Local serialises the writes to a table with a stream behind one lock and,
        // under a test's concurrent load, answers some with a retryable 500 ("waiting for a
        // lock … will succeed in actual DynamoDB"): the tests' client retries those longer.
        .retry_config(
            aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(10),
        )
        .build();
    Client::from_conf(config)
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A new table with the template's definition, so tests exercise the schema that deploys, but
/// without its stream: DynamoDB Local serialises every write to a streaming table behind one
/// lock, and most tests never read the stream. Tests that relay events use [`streaming_table`].
pub async fn fresh_table(client: &Client) -> String {
    create_test_table(client, false).await
}

/// A new table with the template's definition and its stream, for tests whose events,
/// referral messages or campaign steps come from the outbox relaying that stream.
pub async fn streaming_table(client: &Client) -> String {
    create_test_table(client, true).await
}

async fn create_test_table(client: &Client, with_stream: bool) -> String {
    let template =
        loyalty_local::template::Template::load(&repo_root().join("infra/template.yaml"))
            .expect("infra/template.yaml parses");
    let table = unique("t");
    let mut definition = template
        .tables
        .first()
        .expect("the template declares a table")
        .clone();
    if !with_stream {
        definition.stream_view_type = None;
    }
    loyalty_local::tables::create_table(client, &definition, &table)
        .await
        .expect("table created in DynamoDB Local");
    table
}

pub struct TestApp {
    pub app: Arc<App<DynamoStore>>,
    pub store: DynamoStore,
}

pub async fn dynamo_store() -> DynamoStore {
    let client = dynamodb_client();
    let table = fresh_table(&client).await;
    DynamoStore::new(client, table)
}

/// A store on a table with the template's stream, for [`stream_relay`].
pub async fn streaming_store() -> DynamoStore {
    let client = dynamodb_client();
    let table = streaming_table(&client).await;
    DynamoStore::new(client, table)
}

pub async fn test_app() -> TestApp {
    test_app_with(Arc::new(SystemClock), AppConfig::default()).await
}

pub async fn test_app_with(clock: Arc<dyn Clock>, config: AppConfig) -> TestApp {
    let store = dynamo_store().await;
    TestApp {
        app: Arc::new(App::new(store.clone(), clock, config)),
        store,
    }
}

pub fn member_id(raw: &str) -> MemberId {
    MemberId::parse(raw).expect("valid member id")
}

pub fn key(raw: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(raw).expect("valid key"))
}

/// Publishes the shipped default program (`infra/program.default.json`) with `edit` applied to
/// its JSON, as an admin would.
pub async fn publish_default_program_with<S: Store>(app: &App<S>, edit: impl FnOnce(&mut Value)) {
    let raw =
        std::fs::read(repo_root().join("infra/program.default.json")).expect("default program");
    let mut document: Value = serde_json::from_slice(&raw).expect("json");
    edit(&mut document);
    app.replace_program("test-admin", document.to_string().as_bytes())
        .await
        .expect("program published");
}

pub async fn enrol<S: Store>(app: &App<S>, id: &str) -> MemberId {
    let request = EnrolRequest {
        member_id: Some(member_id(id)),
        email: None,
        name: None,
        referral_code: None,
    };
    app.enrol(request).await.expect("enrolled").member_id
}

pub fn purchase(order: &str, minor: i64) -> Value {
    json!({ "kind": "purchase", "order_id": order, "amount": { "minor": minor, "currency": "USD" } })
}

pub async fn accrue<S: Store>(
    app: &App<S>,
    member: &MemberId,
    idempotency_key: &str,
    body: Value,
) -> Result<Outcome, ApiError> {
    app.accrue(member, key(idempotency_key), &body, false).await
}

pub async fn member_state<S: Store>(app: &App<S>, id: &MemberId) -> Member {
    app.store()
        .member(id)
        .await
        .expect("store answers")
        .expect("member exists")
}

/// The member's whole ledger, checked as a gap-free `balance_after` chain (see
/// `App::audited_ledger`); a broken chain fails the test.
pub async fn audited_ledger<S: Store>(
    app: &App<S>,
    id: &MemberId,
) -> Vec<loyalty_core::ledger::LedgerEntry> {
    app.audited_ledger(id)
        .await
        .unwrap_or_else(|broken| panic!("{broken}"))
}

/// How many items the store's table holds (a consistent scan: tests only, never a request path).
/// A refused request must leave it unchanged.
pub async fn item_count(store: &DynamoStore) -> i32 {
    let mut total = 0;
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table())
            .select(Select::Count)
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .expect("scan");
        total += page.count();
        start = page.last_evaluated_key;
        if start.is_none() {
            return total;
        }
    }
}

pub fn body(outcome: &Outcome) -> &Value {
    match outcome {
        Outcome::Created(v) | Outcome::Replayed(v) | Outcome::Simulated(v) => v,
    }
}
