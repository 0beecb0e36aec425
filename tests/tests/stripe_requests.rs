//! The Stripe adapter against a recording fake of Stripe's API (an HTTP server on this
//! helper's port range): the requests carry the shapes Stripe requires of the saved-card flow
//! (a customer on every PaymentIntent, `setup_future_usage` on the first and never
//! `off_session`, `off_session` on renewals, an idempotency key on every POST), throttling and
//! server errors are retried with the same key, a refused request ends its attempt, refunds and
//! disputes arrive by signed webhook, and a 200-subscription anchor day fits its batches.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use loyalty_core::clock::{Clock, ManualClock};
use loyalty_core::events::MemoryQueue;
use loyalty_core::ids::MemberId;
use loyalty_core::service::{AppConfig, BillingResult};
use loyalty_core::subscriptions::payments::MemoryPayments;
use loyalty_core::subscriptions::{AttemptStatus, SubscriptionStatus};
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_http::{handle, Function};
use loyalty_payments::config::StripeConfig;
use loyalty_payments::{sign, Dialect, StripePayments};
use loyalty_tests::events::{json_of, ApiRequest};
use loyalty_tests::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    idempotency_key: Option<String>,
    form: Vec<(String, String)>,
}

impl Recorded {
    fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct FakeState {
    requests: Vec<Recorded>,
    intents: Vec<Value>,
    customers: usize,
    /// Answers forced on the next PaymentIntent creations, in order.
    scripted: VecDeque<(u16, Value)>,
}

#[derive(Clone)]
struct FakeStripe {
    base: String,
    state: Arc<Mutex<FakeState>>,
}

impl FakeStripe {
    async fn start() -> FakeStripe {
        let mut bound = None;
        for port in 18250..18300 {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
                bound = Some((listener, port));
                break;
            }
        }
        let (listener, port) = bound.expect("a free port in 18250-18299");
        let fake = FakeStripe {
            base: format!("http://127.0.0.1:{port}"),
            state: Arc::default(),
        };
        let serving = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let fake = serving.clone();
                tokio::spawn(async move { fake.serve(stream).await });
            }
        });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn script(&self, status: u16, body: Value) {
        self.lock().scripted.push_back((status, body));
    }

    fn requests(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .cloned()
            .collect()
    }

    fn config(&self) -> StripeConfig {
        StripeConfig::new(&self.base, "sk_test_fake")
            .expect("config")
            .with_dialect(Dialect::Stripe)
            .with_timeouts(Duration::from_millis(800), Duration::from_millis(3_000))
    }

    async fn serve(&self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let mut lines = head.lines();
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        let mut length = 0;
        let mut idempotency_key = None;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "idempotency-key" => idempotency_key = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        while buffer.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let body = &buffer[head_end..head_end + length];
        let form: Vec<(String, String)> = form_urlencoded::parse(body)
            .chain(form_urlencoded::parse(query.as_bytes()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let recorded = Recorded {
            method: method.clone(),
            path: path.to_owned(),
            idempotency_key,
            form,
        };
        let (status, answer) = self.answer(&recorded);
        self.lock().requests.push(recorded);
        let text = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    }

    fn answer(&self, request: &Recorded) -> (u16, Value) {
        let mut state = self.lock();
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/v1/customers") => {
                state.customers += 1;
                (
                    200,
                    json!({ "id": format!("cus_fake_{}", state.customers), "object": "customer" }),
                )
            }
            ("POST", "/v1/payment_intents") => {
                if let Some(forced) = state.scripted.pop_front() {
                    return forced;
                }
                let id = format!("pi_fake_{}", state.intents.len() + 1);
                let intent = json!({
                    "id": id, "object": "payment_intent", "status": "succeeded",
                    "client_secret": format!("{id}_secret_x"),
                    "customer": request.param("customer"),
                    "metadata": {
                        "charge_id": request.param("metadata[charge_id]"),
                        "attempt": request.param("metadata[attempt]"),
                        "presence": request.param("metadata[presence]"),
                    }
                });
                state.intents.push(intent.clone());
                (200, intent)
            }
            ("GET", "/v1/payment_intents") => (
                200,
                json!({ "object": "list", "data": state.intents, "has_more": false }),
            ),
            ("GET", path) if path.starts_with("/v1/payment_intents/") => {
                let id = path.trim_start_matches("/v1/payment_intents/");
                match state.intents.iter().find(|i| i["id"] == id) {
                    Some(intent) => (200, intent.clone()),
                    None => (
                        404,
                        json!({ "error": { "type": "invalid_request_error", "code": "resource_missing" } }),
                    ),
                }
            }
            ("POST", path) if path.ends_with("/attach") => (
                200,
                json!({ "id": path.split('/').nth(3), "object": "payment_method" }),
            ),
            _ => (
                404,
                json!({ "error": { "type": "invalid_request_error", "message": "unknown route" } }),
            ),
        }
    }
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).unwrap()
}

struct Stripeish {
    app: Arc<App<DynamoStore>>,
    clock: Arc<ManualClock>,
    fake: FakeStripe,
    webhook_secret: String,
}

async fn stripe_app(start: DateTime<Utc>) -> Stripeish {
    let fake = FakeStripe::start().await;
    let webhook_secret = format!("whsec_{}", unique("gen"));
    let payments =
        StripePayments::new(fake.config().with_webhook_secret(&webhook_secret)).expect("client");
    let clock = Arc::new(ManualClock::new(start));
    let app = App::new(dynamo_store().await, clock.clone(), AppConfig::default())
        .with_events(Arc::new(MemoryQueue::default()))
        .with_payments(Arc::new(payments));
    Stripeish {
        app: Arc::new(app),
        clock,
        fake,
        webhook_secret,
    }
}

async fn subscribed(s: &Stripeish) -> MemberId {
    let member = enrol(&s.app, &unique("m")).await;
    s.app
        .start_subscription(
            &member,
            key(&unique("start")),
            &json!({ "plan_id": "plus", "payment_method": "pm_card_visa" }),
        )
        .await
        .expect("started");
    member
}

#[tokio::test]
async fn stripe_requests_follow_the_saved_card_flow_with_a_customer_and_a_key_on_every_charge() {
    let s = stripe_app(at(2027, 1, 10)).await;
    let member = subscribed(&s).await;
    s.clock.set(at(2027, 2, 10));
    assert_eq!(
        s.app.bill_subscription(&member).await.expect("billed"),
        BillingResult::Renewed
    );

    let customers = s.fake.requests("POST", "/v1/customers");
    assert_eq!(customers.len(), 1, "one customer, created once");
    assert_eq!(
        customers[0].idempotency_key.as_deref(),
        Some(format!("loyalty:customer:{member}").as_str())
    );
    let intents = s.fake.requests("POST", "/v1/payment_intents");
    assert_eq!(intents.len(), 2);
    let (first, renewal) = (&intents[0], &intents[1]);
    for intent in [first, renewal] {
        assert_eq!(intent.param("customer"), Some("cus_fake_1"), "{intent:?}");
        assert_eq!(intent.param("payment_method"), Some("pm_card_visa"));
        assert_eq!(intent.param("confirm"), Some("true"));
        assert!(intent
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with("loyalty:sub_")));
    }
    assert_eq!(first.param("setup_future_usage"), Some("off_session"));
    assert_eq!(
        first.param("off_session"),
        None,
        "never off_session on the first"
    );
    assert_eq!(renewal.param("off_session"), Some("true"));
    assert_eq!(renewal.param("setup_future_usage"), None);
    assert_ne!(first.idempotency_key, renewal.idempotency_key);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_the_same_key_and_a_refused_request_ends_the_attempt(
) {
    let s = stripe_app(at(2027, 3, 10)).await;
    let member = subscribed(&s).await;
    s.fake.script(
        429,
        json!({ "error": { "type": "rate_limit_error", "message": "slow down" } }),
    );
    s.fake.script(
        500,
        json!({ "error": { "type": "api_error", "message": "oops" } }),
    );
    s.clock.set(at(2027, 4, 10));
    assert_eq!(
        s.app.bill_subscription(&member).await.expect("billed"),
        BillingResult::Renewed
    );
    let renewals: Vec<_> = s.fake.requests("POST", "/v1/payment_intents")[1..].to_vec();
    assert_eq!(renewals.len(), 3, "two failures, then the success");
    assert!(renewals
        .iter()
        .all(|r| r.idempotency_key == renewals[0].idempotency_key));

    // The next period Stripe refuses the request itself: final, flagged, no retry, and the
    // subscription moves on through dunning instead of staying pending.
    s.fake.script(
        400,
        json!({ "error": { "type": "invalid_request_error", "code": "parameter_invalid_integer", "param": "amount" } }),
    );
    s.clock.set(at(2027, 5, 10));
    assert_eq!(
        s.app.bill_subscription(&member).await.expect("billed"),
        BillingResult::PastDue
    );
    assert_eq!(s.fake.requests("POST", "/v1/payment_intents").len(), 5);
    let view = s.app.subscription_view(&member).await.expect("view");
    assert_eq!(view.status, SubscriptionStatus::PastDue);
    let charges = s.app.subscription_charges(&member).await.expect("history");
    let refused = &charges.periods[0];
    assert_eq!(refused.period, 3);
    assert_eq!(refused.attempts[0].outcome, AttemptStatus::Rejected);
    assert_eq!(refused.outcome, "failed");
    assert_eq!(
        s.app.bill_subscription(&member).await.expect("again"),
        BillingResult::NotDue
    );
}

fn signed(s: &Stripeish, event: &Value) -> ApiRequest {
    let t = s.clock.now().timestamp();
    let signature = sign(&s.webhook_secret, t, event.to_string().as_bytes());
    ApiRequest::post("/v1/webhooks/stripe", event.clone())
        .anonymous()
        .header("Stripe-Signature", &format!("t={t},v1={signature}"))
}

#[tokio::test]
async fn a_refund_and_a_dispute_arrive_by_webhook_signed_with_a_generated_secret() {
    let s = stripe_app(at(2027, 6, 10)).await;
    let refunded_member = subscribed(&s).await;
    let disputed_member = subscribed(&s).await;
    let refund = json!({
        "id": unique("evt"), "object": "event", "type": "charge.refunded",
        "data": { "object": { "id": "ch_1", "object": "charge", "payment_intent": "pi_fake_1",
            "refunds": { "data": [ { "id": unique("re") } ] } } }
    });
    let dispute = json!({
        "id": unique("evt"), "object": "event", "type": "charge.dispute.created",
        "data": { "object": { "id": unique("dp"), "object": "dispute", "charge": "ch_2",
            "payment_intent": "pi_fake_2" } }
    });
    for (event, member) in [(&refund, &refunded_member), (&dispute, &disputed_member)] {
        let response = handle(&s.app, Function::Members, signed(&s, event).request()).await;
        assert_eq!(response.status(), 200, "{}", json_of(&response));
        assert_eq!(json_of(&response)["result"], "applied");
        let view = s.app.subscription_view(member).await.expect("view");
        assert_eq!(view.status, SubscriptionStatus::Canceled);
        assert_eq!(member_state(&s.app, member).await.balance.available, 100);
    }
    // The adapter read each charge's PaymentIntent to find the period.
    assert_eq!(
        s.fake
            .requests("GET", "/v1/payment_intents/pi_fake_1")
            .len(),
        1
    );
    assert_eq!(
        s.fake
            .requests("GET", "/v1/payment_intents/pi_fake_2")
            .len(),
        1
    );
    let history = s
        .app
        .subscription_charges(&refunded_member)
        .await
        .expect("history");
    assert_eq!(history.periods[0].outcome, "refunded");
}

#[tokio::test]
async fn a_200_subscription_anchor_day_is_billed_one_per_message_without_a_failed_batch() {
    const COUNT: usize = 200;
    let clock = Arc::new(ManualClock::new(at(2027, 7, 20)));
    let payments = Arc::new(MemoryPayments::default());
    let app = App::new(dynamo_store().await, clock.clone(), AppConfig::default())
        .with_events(Arc::new(MemoryQueue::default()))
        .with_payments(payments.clone());
    for _ in 0..COUNT {
        let member = enrol(&app, &unique("m")).await;
        app.start_subscription(
            &member,
            key("start"),
            &json!({ "plan_id": "plus", "payment_method": "pm_card_visa" }),
        )
        .await
        .expect("started");
    }
    clock.set(at(2027, 8, 20));
    let queue = MemoryQueue::default();
    let scheduled = json!({
        "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2027-08-20T06:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {}
    });
    let plan = subscription_billing::handle(&app, &queue, scheduled)
        .await
        .expect("planned");
    assert_eq!(plan["subscriptions"], COUNT);
    let bodies = queue.take();
    assert_eq!(bodies.len(), COUNT, "one subscription per message");
    // Delivered as the template's event source does: up to five messages per invocation.
    for (n, batch) in bodies.chunks(5).enumerate() {
        let records: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, b)| json!({ "messageId": format!("m{n}-{i}"), "body": b, "eventSource": "aws:sqs" }))
            .collect();
        let response = subscription_billing::handle(&app, &queue, json!({ "Records": records }))
            .await
            .expect("handled");
        assert_eq!(
            response["batchItemFailures"].as_array().map(Vec::len),
            Some(0),
            "{response}"
        );
    }
    assert_eq!(payments.payments().len(), 2 * COUNT);
}

#[test]
fn a_billing_batch_fits_its_function_timeout_even_when_every_stripe_call_takes_its_whole_budget() {
    let template: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("infra/template.yaml")).expect("template"),
    )
    .expect("yaml");
    let function = &template["Resources"]["SubscriptionBillingFunction"]["Properties"];
    let timeout = function["Timeout"].as_u64().expect("timeout");
    let batch = function["Events"]["SubscriptionBillingBatches"]["Properties"]["BatchSize"]
        .as_u64()
        .expect("batch size");
    let per_message = loyalty_core::service::SUBSCRIPTIONS_PER_MESSAGE as u64;
    // A subscription costs at most a customer creation, a look-up and a charge.
    let calls = 3;
    let budget = StripeConfig::new("https://api.stripe.com", "sk_test_x")
        .expect("config")
        .call_budget;
    let worst = budget * (batch * per_message * calls) as u32;
    assert!(
        worst < Duration::from_secs(timeout) / 2,
        "{worst:?} of Stripe calls in a batch against a {timeout} s timeout"
    );
    let members_timeout = template["Globals"]["Function"]["Timeout"]
        .as_u64()
        .expect("global timeout");
    assert!(
        budget * 2 < Duration::from_secs(members_timeout),
        "a first payment (a customer and a charge) must fit the members function's timeout"
    );
}
