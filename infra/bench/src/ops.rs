//! The operations the benchmark knows, and how each is invoked: an API Gateway v2 event built
//! from the route in `infra/template.yaml` (so the benchmark calls what deploys), fed to
//! `loyalty_http::handle` as the Lambda runtime would. Operations that are designed but not
//! built yet are in the table too, so the report says what is missing; adding one is a new
//! variant, its route and body, and flipping [`Op::built`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::Client;
use http::{HeaderMap, HeaderName, HeaderValue};
use lambda_http::Body;
use loyalty_core::clock::SystemClock;
use loyalty_core::ports::Store;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_dynamo::{Capacity, DynamoStore};
use loyalty_http::Function;
use loyalty_local::event::apigw_v2_event;
use loyalty_local::template::{HttpRoute, Template};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Enrol,
    Accrue,
    AccrueDryRun,
    Redeem,
    GetMember,
    LedgerPage,
    TierEvaluation,
    CampaignGrant,
    ReferralReward,
    Billing,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::Enrol,
        Op::Accrue,
        Op::AccrueDryRun,
        Op::Redeem,
        Op::GetMember,
        Op::LedgerPage,
        Op::TierEvaluation,
        Op::CampaignGrant,
        Op::ReferralReward,
        Op::Billing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Enrol => "enrol",
            Op::Accrue => "accrue (purchase)",
            Op::AccrueDryRun => "accrue dry-run",
            Op::Redeem => "redeem",
            Op::GetMember => "get member",
            Op::LedgerPage => "ledger page (20)",
            Op::TierEvaluation => "tier evaluation (one member)",
            Op::CampaignGrant => "campaign grant (per member)",
            Op::ReferralReward => "referral reward",
            Op::Billing => "billing (one subscription)",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Op::Enrol => "enrol",
            Op::Accrue => "accrue",
            Op::AccrueDryRun => "accrue_dry_run",
            Op::Redeem => "redeem",
            Op::GetMember => "get_member",
            Op::LedgerPage => "ledger_page",
            Op::TierEvaluation => "tier_evaluation",
            Op::CampaignGrant => "campaign_grant",
            Op::ReferralReward => "referral_reward",
            Op::Billing => "billing",
        }
    }

    /// Whether the operation exists today (all do; kept so a designed-but-unbuilt operation
    /// can be listed as a gap).
    pub fn built(self) -> bool {
        true
    }

    /// Whether it is an HTTP route, invoked through the handler; the others are queue workers,
    /// measured by calling their `App` service directly (see `services.rs`).
    pub fn http(self) -> bool {
        self.function().is_some()
    }

    /// The binary that runs the operation.
    pub fn binary(self) -> &'static str {
        match self {
            Op::TierEvaluation => "tier-evaluate",
            Op::CampaignGrant => "campaign-worker",
            Op::ReferralReward => "referral-worker",
            Op::Billing => "subscription-billing",
            _ => self.function().map_or("—", |f| f.binary()),
        }
    }

    /// Members handled by one measured call (a campaign grant message covers `GRANT_MEMBERS` members in
    /// one transaction); units and latency are reported per member.
    pub fn members_per_call(self) -> usize {
        match self {
            Op::CampaignGrant => crate::services::GRANT_MEMBERS,
            _ => 1,
        }
    }

    /// For queue workers: members per SQS message (and, conservatively, per Lambda invocation,
    /// though an invocation can take a batch of several messages). The Lambda request and the
    /// SQS requests of a message are shared by its members in the cost model.
    pub fn members_per_message(self) -> usize {
        match self {
            // `MEMBERS_PER_MESSAGE` in functions/core/src/service/tiers.rs (not exported).
            Op::TierEvaluation => 50,
            Op::CampaignGrant => crate::services::GRANT_MEMBERS,
            // `SUBSCRIPTIONS_PER_MESSAGE` in functions/core/src/service/subscriptions.rs.
            Op::Billing => 25,
            _ => 1,
        }
    }

    /// The function the template routes the operation to.
    pub fn function(self) -> Option<Function> {
        match self {
            Op::Enrol | Op::GetMember | Op::LedgerPage => Some(Function::Members),
            Op::Accrue | Op::AccrueDryRun => Some(Function::Accrue),
            Op::Redeem => Some(Function::Redeem),
            _ => None,
        }
    }

    /// SQS requests per operation: a queue worker's message is sent, received and deleted
    /// (3 requests), shared by the members it carries. HTTP operations send none (a referee's
    /// first qualifying purchase sends one referral message; that is priced on the referral).
    pub fn sqs_requests(self) -> f64 {
        if self.http() {
            0.0
        } else {
            3.0 / self.members_per_message() as f64
        }
    }

    pub fn expected_status(self) -> u16 {
        match self {
            Op::Enrol | Op::Accrue | Op::Redeem => 201,
            _ => 200,
        }
    }

    /// The event for one invocation on `member`; `tag` is unique per invocation in a run.
    pub fn event(self, api: &Api, member: &str, tag: &str) -> Option<(Function, String)> {
        let accruals = format!("/v1/members/{member}/accruals");
        Some(match self {
            Op::Enrol => api.event(
                "POST",
                "/v1/members",
                "",
                &[],
                Some(&json!({ "member_id": format!("e-{tag}"), "email": "bench@example.com", "name": "Bench" })),
            ),
            Op::Accrue => api.event(
                "POST",
                &accruals,
                "",
                &[("idempotency-key", &format!("a-{tag}"))],
                Some(&purchase(&format!("o-{tag}"), 5_250)),
            ),
            Op::AccrueDryRun => api.event(
                "POST",
                &accruals,
                "dry_run=true",
                &[],
                Some(&purchase(&format!("d-{tag}"), 5_250)),
            ),
            Op::Redeem => api.event(
                "POST",
                &format!("/v1/members/{member}/redemptions"),
                "",
                &[("idempotency-key", &format!("r-{tag}"))],
                Some(&json!({ "reward_id": "free-coffee" })),
            ),
            Op::GetMember => api.event("GET", &format!("/v1/members/{member}"), "", &[], None),
            Op::LedgerPage => api.event(
                "GET",
                &format!("/v1/members/{member}/ledger"),
                "limit=20",
                &[],
                None,
            ),
            _ => return None,
        })
    }
}

/// A checkout's purchase: an order total with two itemised lines (coffee ×2 earns double,
/// a pastry earns 1.5×) and an unitemised rest.
pub fn purchase(order: &str, minor: i64) -> Value {
    json!({
        "kind": "purchase",
        "order_id": order,
        "amount": { "minor": minor, "currency": "USD" },
        "items": [
            { "sku": "LATTE", "category": "coffee", "amount": { "minor": 450, "currency": "USD" }, "quantity": 2 },
            { "sku": "CROISSANT", "category": "bakery", "amount": { "minor": 375, "currency": "USD" }, "quantity": 1 }
        ]
    })
}

pub fn plain_purchase(order: &str, minor: i64) -> Value {
    json!({ "kind": "purchase", "order_id": order, "amount": { "minor": minor, "currency": "USD" } })
}

/// Builds API Gateway v2 events for the template's routes.
pub struct Api {
    routes: Vec<HttpRoute>,
    /// `requestContext.authorizer` for a checkout (`loyalty/pos`) caller, which may enrol,
    /// accrue, redeem and read for any member: what API Gateway passes after verifying its token.
    caller: Value,
}

impl Api {
    pub fn new(template: &Template) -> Self {
        let claims = json!({
            "iss": "loyalty-local", "aud": "loyalty-local", "sub": "bench-till",
            "iat": 1_900_000_000, "exp": 1_900_003_600, "scope": "loyalty/pos",
        });
        let claims = claims.as_object().cloned().unwrap_or_default();
        Self {
            routes: template.http_routes(),
            caller: loyalty_local::jwt::authorizer_context(&claims),
        }
    }

    /// The function the template routes `method path` to, and the event API Gateway sends it
    /// for a POS caller.
    pub fn event(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (Function, String) {
        let (route, params) = self
            .routes
            .iter()
            .find_map(|r| r.matches(method, path).map(|p| (r, p)))
            .unwrap_or_else(|| panic!("no route in infra/template.yaml for {method} {path}"));
        let function = Function::from_binary(&route.binary)
            .unwrap_or_else(|| panic!("no function named {}", route.binary));
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static("loyalty.example.com"));
        if body.is_some() {
            map.insert("content-type", HeaderValue::from_static("application/json"));
        }
        for (name, value) in headers {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        let params: HashMap<String, String> = params;
        let event = apigw_v2_event(
            route,
            params,
            method,
            path,
            query,
            &map,
            body.as_bytes(),
            Some(self.caller.clone()),
        );
        (function, event.to_string())
    }
}

/// One handler invocation: the event as Lambda delivers it (JSON text) → `lambda_http` request
/// → `loyalty_http::handle` → response. Timed end to end; for a DynamoDB store that includes
/// every round trip.
pub async fn invoke<S: Store>(
    app: &App<S>,
    function: Function,
    event: &str,
) -> (u16, Value, Duration) {
    let started = Instant::now();
    let request = lambda_http::request::from_str(event).expect("lambda_http parses the event");
    let response = loyalty_http::handle(app, function, request).await;
    let elapsed = started.elapsed();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (response.status().as_u16(), body, elapsed)
}

pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        .build();
    Client::from_conf(config)
}

/// Everything one benchmark run talks to: a fresh table with the template's definition and
/// an app (one "execution environment") on it. The program is cached for the whole run so that
/// per-operation counts are the operation's own, not the 30 s program refresh's.
pub struct Bench {
    pub app: Arc<App<DynamoStore>>,
    pub store: DynamoStore,
    pub api: Api,
    pub table: String,
}

impl Bench {
    /// The operations' table, without its stream: DynamoDB Local's per-write stream cost grows
    /// with the records a stream holds and would distort the latencies (a stream adds no WRU on
    /// DynamoDB).
    pub async fn new(endpoint: &str) -> Self {
        Self::on_table(endpoint, false).await
    }

    /// A table with the template's stream, for what reads it (the outbox).
    pub async fn streaming(endpoint: &str) -> Self {
        Self::on_table(endpoint, true).await
    }

    async fn on_table(endpoint: &str, with_stream: bool) -> Self {
        let template = Template::load(&repo_root().join("infra/template.yaml"))
            .expect("infra/template.yaml parses");
        let mut definition = template
            .tables
            .first()
            .expect("the template declares a table")
            .clone();
        if !with_stream {
            definition.stream_view_type = None;
        }
        let client = client(endpoint);
        let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S%3f");
        let table = format!("bench-{stamp}");
        loyalty_local::tables::create_table(&client, &definition, &table)
            .await
            .expect("table created in DynamoDB Local");
        let store = DynamoStore::new(client, table.clone());
        let config = AppConfig {
            program_cache_ttl: Duration::from_secs(24 * 3600),
            ..AppConfig::default()
        };
        let app = Arc::new(App::new(store.clone(), Arc::new(SystemClock), config));
        app.program().await.expect("default program published");
        Self {
            app,
            store,
            api: Api::new(&template),
            table,
        }
    }

    pub fn meter(&self) -> Capacity {
        self.store.meter().snapshot()
    }

    /// Enrols `member` and gives it `minor` of spend (points to redeem), through the services.
    pub async fn member_with_balance(&self, member: &str, minor: i64) {
        let id = loyalty_core::ids::MemberId::parse(member).expect("member id");
        self.app
            .enrol(loyalty_core::commands::EnrolRequest {
                member_id: Some(id.clone()),
                email: None,
                name: None,
                referral_code: None,
            })
            .await
            .expect("enrolled");
        if minor > 0 {
            let key = loyalty_core::ids::IdempotencyKey::parse(&format!("fund-{member}")).ok();
            self.app
                .accrue(
                    &id,
                    key,
                    &plain_purchase(&format!("fund-{member}"), minor),
                    false,
                )
                .await
                .expect("funded");
        }
    }
}

/// Per-invocation measurements of one operation run sequentially.
#[derive(Debug, Clone, Default)]
pub struct Sequential {
    pub latencies: Vec<Duration>,
    pub capacity: Capacity,
    pub unexpected: usize,
    pub first_unexpected: Option<String>,
    /// Whether every invocation cost the same round trips and units.
    pub constant: bool,
    /// This process's CPU (`utime + stime`) over the calls, where measured (service calls).
    pub cpu: Duration,
}

/// Runs `op` `samples` times on `member`, one at a time, metering each call.
pub async fn sequential(
    bench: &Bench,
    op: Op,
    member: &str,
    phase: &str,
    samples: usize,
) -> Sequential {
    let mut out = Sequential {
        constant: true,
        ..Sequential::default()
    };
    let mut first: Option<Capacity> = None;
    for i in 0..samples {
        let (function, event) = op
            .event(&bench.api, member, &format!("{phase}-{i}"))
            .expect("built op");
        let before = bench.meter();
        let (status, body, elapsed) = invoke(&bench.app, function, &event).await;
        let used = bench.meter() - before;
        out.latencies.push(elapsed);
        out.capacity = add(out.capacity, used);
        match first {
            None => first = Some(used),
            Some(f) if f != used => out.constant = false,
            _ => {}
        }
        if status != op.expected_status() {
            out.unexpected += 1;
            out.first_unexpected
                .get_or_insert_with(|| format!("{status} {body}"));
        }
    }
    out
}

pub fn add(a: Capacity, b: Capacity) -> Capacity {
    Capacity {
        round_trips: a.round_trips + b.round_trips,
        read_units: a.read_units + b.read_units,
        write_units: a.write_units + b.write_units,
    }
}

/// Round trips, RRU and WRU (as DynamoDB Local reports them) per member of `op`.
pub fn per_member(op: Op, s: &Sequential) -> (f64, f64, f64) {
    per_op(s.capacity, s.latencies.len() * op.members_per_call())
}

/// Write units AWS bills for `measured` WRU. Every write the DynamoDB adapter makes is a
/// `TransactWriteItems` (`loyalty_dynamo::commit` and the program publish; there is no
/// PutItem, UpdateItem or BatchWriteItem), which AWS bills at 2 WRU per item-KB, while DynamoDB
/// Local reports 1. Reads are GetItem, BatchGetItem and Query (no TransactGetItems): as measured.
pub fn billed_wru(measured: f64) -> f64 {
    measured * 2.0
}

/// Write units billed on AWS per member of `op`: the measured figure × 2, except where DynamoDB
/// Local's report is below what the items written must cost. It reports a handful of WRU for a
/// campaign grant's 97-item transaction (24 × member, ledger entry, entry guard, outcome marker +
/// the campaign record); AWS bills every item of a transaction at 2 WRU per KB, so a grant is at
/// least 2 × (4 + 1/24) ≈ 8.08 WRU per member (every item ≤ 1 KB).
pub fn billed_wru_for(op: Op, measured: f64) -> f64 {
    let floor = match op {
        Op::CampaignGrant => 2.0 * (4.0 + 1.0 / crate::services::GRANT_MEMBERS as f64),
        _ => 0.0,
    };
    billed_wru(measured).max(floor)
}

pub fn per_op(total: Capacity, n: usize) -> (f64, f64, f64) {
    let n = n.max(1) as f64;
    (
        total.round_trips as f64 / n,
        total.read_units / n,
        total.write_units / n,
    )
}

#[derive(Debug, Clone, Default)]
pub struct Load {
    pub concurrency: usize,
    pub hot: bool,
    pub completed: usize,
    pub unexpected: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub capacity: Capacity,
}

impl Load {
    pub fn ops_per_sec(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `concurrency` workers invoke `op` back to back for `duration`. Each worker has its own member
/// (`pool-<w>`), unless `hot`, when all share one member and contend for it.
pub async fn load(
    bench: &Arc<Bench>,
    op: Op,
    concurrency: usize,
    duration: Duration,
    hot: Option<&str>,
    phase: &str,
) -> Load {
    let before = bench.meter();
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let bench = Arc::clone(bench);
        let member = hot.map_or_else(|| format!("pool-{w}"), str::to_owned);
        let phase = phase.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut unexpected = 0;
            let mut i = 0;
            while Instant::now() < deadline {
                let (function, event) = op
                    .event(&bench.api, &member, &format!("{phase}-{w}-{i}"))
                    .expect("built op");
                let (status, _, elapsed) = invoke(&bench.app, function, &event).await;
                latencies.push(elapsed);
                if status != op.expected_status() {
                    unexpected += 1;
                }
                i += 1;
            }
            (latencies, unexpected)
        }));
    }
    let mut out = Load {
        concurrency,
        hot: hot.is_some(),
        ..Load::default()
    };
    for worker in workers {
        let (latencies, unexpected) = worker.await.expect("worker");
        out.completed += latencies.len();
        out.unexpected += unexpected;
        out.latencies.extend(latencies);
    }
    out.elapsed = started.elapsed();
    out.capacity = bench.meter() - before;
    out
}
