//! Webhook deliveries end to end on the in-memory store and a simulated clock: the outbox's
//! fan-out, signed posts to a real receiver on this machine (ports 18510-18519), the retry
//! chain through the delivery queue, the DLQ after 72 hours, and what disabled, deleted and
//! unsubscribed webhooks receive (nothing).

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::commands::EnrolRequest;
use loyalty_core::events::MemoryQueue;
use loyalty_core::ids::{IdempotencyKey, MemberId};
use loyalty_core::memory::MemoryStore;
use loyalty_core::service::{AppConfig, DeliveryStep};
use loyalty_core::webhooks::address::UrlPolicy;
use loyalty_core::webhooks::delivery::DeliveryMessage;
use loyalty_core::webhooks::schedule::RETRY_WINDOW;
use loyalty_core::webhooks::{verify_signature, Answer, Outgoing, WebhookSender};
use loyalty_core::{App, ErrorCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use webhook_delivery::HttpSender;

struct Harness {
    app: App<MemoryStore>,
    clock: Arc<ManualClock>,
    deliveries: Arc<MemoryQueue>,
    parked: Arc<MemoryQueue>,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap()
}

fn harness(sender: Arc<dyn WebhookSender>, policy: UrlPolicy) -> Harness {
    let clock = Arc::new(ManualClock::new(start()));
    let deliveries = Arc::new(MemoryQueue::default());
    let parked = Arc::new(MemoryQueue::default());
    let app = App::new(
        MemoryStore::with_change_feed(),
        clock.clone(),
        AppConfig::default(),
    )
    .with_events(Arc::new(MemoryQueue::default()))
    .with_webhook_policy(policy)
    .with_webhook_sender(sender)
    .with_webhook_deliveries(deliveries.clone())
    .with_webhook_dlq(parked.clone());
    Harness {
        app,
        clock,
        deliveries,
        parked,
    }
}

fn local_sender(timeout: Duration) -> Arc<dyn WebhookSender> {
    Arc::new(HttpSender::new(UrlPolicy::LOCAL, timeout).expect("client"))
}

async fn create(h: &Harness, url: &str, types: &[&str]) -> Value {
    h.app
        .create_webhook("admin-1", &json!({ "url": url, "event_types": types }))
        .await
        .expect("webhook created")
}

/// Enrols `member` and relays what the commit wrote through the outbox (events and fan-out).
async fn enrol_and_relay(h: &Harness, member: &str) {
    h.app
        .enrol(EnrolRequest {
            member_id: Some(MemberId::parse(member).unwrap()),
            email: None,
            name: None,
            referral_code: None,
        })
        .await
        .expect("enrolled");
    h.app
        .relay_all(h.app.store().take_changes())
        .await
        .expect("relayed");
}

fn messages(queue: &MemoryQueue) -> Vec<DeliveryMessage> {
    queue
        .take()
        .iter()
        .map(|body| serde_json::from_str(body).expect("a delivery message"))
        .collect()
}

/// Handles queued delivery messages one at a time, moving the clock by each message's queue
/// delay, until the queue is empty; the steps taken, in order.
async fn drain(h: &Harness) -> Vec<DeliveryStep> {
    let mut steps = Vec::new();
    loop {
        let pending = messages(&h.deliveries);
        if pending.is_empty() {
            return steps;
        }
        for message in pending {
            let step = h.app.deliver_webhook(&message).await.expect("handled");
            if let DeliveryStep::Retrying(wait) | DeliveryStep::Waiting(wait) = step {
                let hop = wait.min(Duration::from_secs(900));
                h.clock
                    .advance(chrono::Duration::from_std(hop).expect("a short wait"));
            }
            steps.push(step);
            assert!(steps.len() < 1000, "the retry chain never ends");
        }
    }
}

/// What a receiver got: its headers (lower-case names) and raw body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver on `port`: it answers each request with the next status of `statuses` (the last
/// repeats); a status of 0 never answers.
async fn receiver(port: u16, statuses: Vec<u16>) -> Arc<Mutex<Vec<Received>>> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("receiver port free");
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        let mut served = 0usize;
        while let Ok((mut socket, _)) = listener.accept().await {
            let status = statuses[served.min(statuses.len() - 1)];
            served += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let Ok(read) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buffer.len() < head_end + length {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                    }
                }
                let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
                    .collect();
                log.lock().unwrap().push(Received {
                    headers,
                    body: buffer[head_end..head_end + length].to_vec(),
                });
                if status == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    received
}

#[tokio::test]
async fn a_receiver_that_fails_twice_then_succeeds_gets_the_same_event_three_times_with_valid_signatures(
) {
    let received_log = receiver(18510, vec![500, 503, 204]).await;
    let received = received_log.clone();
    let h = harness(local_sender(Duration::from_secs(5)), UrlPolicy::LOCAL);
    let webhook = create(&h, "http://127.0.0.1:18510/hooks", &["member.*"]).await;
    let secret = webhook["secret"].as_str().expect("a secret").to_owned();
    let webhook_id = webhook["webhook_id"].as_str().unwrap().to_owned();

    enrol_and_relay(&h, "ada").await;
    let steps = drain(&h).await;
    assert_eq!(
        steps,
        [
            DeliveryStep::Retrying(Duration::from_secs(30)),
            DeliveryStep::Retrying(Duration::from_secs(60)),
            DeliveryStep::Delivered
        ]
    );

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    let attempt_times = [
        start(),
        start() + chrono::Duration::seconds(30),
        start() + chrono::Duration::seconds(90),
    ];
    for (request, at) in received.iter().zip(attempt_times) {
        assert_eq!(request.body, received[0].body, "the same event each time");
        let signature = request.header("loyalty-signature").expect("signed");
        assert!(signature.starts_with(&format!("t={},v1=", at.timestamp())));
        assert_eq!(
            verify_signature(signature, &request.body, &secret, at.timestamp()),
            Ok(())
        );
        assert!(verify_signature(signature, b"{}", &secret, at.timestamp()).is_err());
    }
    let event: Value = serde_json::from_slice(&received[0].body).expect("JSON");
    assert_eq!(event["type"], "member.enrolled");
    assert_eq!(event["member_id"], "ada");
    assert_eq!(
        received[0].header("loyalty-event-id"),
        event["event_id"].as_str()
    );

    let listed = h
        .app
        .webhook_deliveries(&webhook_id, None)
        .await
        .expect("deliveries");
    let delivery = &listed["deliveries"][0];
    assert_eq!(delivery["status"], "delivered");
    let codes: Vec<&Value> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(503), &json!(204)]);

    // The outbox relays the same change again (at least once): no second delivery.
    let again = DeliveryMessage::first(&webhook_id, event.clone());
    assert_eq!(
        h.app.deliver_webhook(&again).await.expect("handled"),
        DeliveryStep::Skipped("already delivered")
    );

    // An admin may still send a delivered event again (the receiver lost it).
    let delivery_id = delivery["delivery_id"].as_str().unwrap();
    h.app
        .retry_webhook_delivery("admin-9", &webhook_id, delivery_id)
        .await
        .expect("retry queued");
    assert_eq!(drain(&h).await, [DeliveryStep::Delivered]);
    assert_eq!(received_log.lock().unwrap().len(), 4);
}

/// Never answers; counts attempts; answers 200 once `answer_now` is set.
#[derive(Default)]
struct Silent {
    attempts: AtomicUsize,
    answer_now: AtomicU16,
}

#[async_trait]
impl WebhookSender for Silent {
    async fn post(&self, _outgoing: Outgoing<'_>) -> Answer {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match self.answer_now.load(Ordering::SeqCst) {
            0 => Answer::Failed("no answer within 10 s".into()),
            status => Answer::Status(status),
        }
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_ends_in_the_dlq_after_the_retry_schedule() {
    let silent = Arc::new(Silent::default());
    let h = harness(silent.clone(), UrlPolicy::PUBLIC_HTTPS);
    let webhook = create(
        &h,
        "https://hooks.example.com/loyalty",
        &["member.enrolled"],
    )
    .await;
    let webhook_id = webhook["webhook_id"].as_str().unwrap().to_owned();
    enrol_and_relay(&h, "bob").await;

    let steps = drain(&h).await;
    assert_eq!(steps.last(), Some(&DeliveryStep::Parked));
    assert_eq!(silent.attempts.load(Ordering::SeqCst), 27);
    let elapsed = h.clock_now() - start();
    assert_eq!(
        elapsed, RETRY_WINDOW,
        "parked at the end of the 72-hour window"
    );
    let delays = h.deliveries.delays();
    assert!(
        delays.iter().all(|d| *d <= Duration::from_secs(900)),
        "SQS delays"
    );
    let parked = h.parked.take();
    assert_eq!(parked.len(), 1);
    let parked: Value = serde_json::from_str(&parked[0]).unwrap();
    assert_eq!(parked["webhook_id"], webhook_id.as_str());
    assert_eq!(parked["attempts"], 27);

    let listed = h.app.webhook_deliveries(&webhook_id, None).await.unwrap();
    let delivery = listed["deliveries"][0].clone();
    assert_eq!(delivery["status"], "parked");
    assert_eq!(delivery["automatic_attempts"], 27);
    assert_eq!(delivery["attempts"][0]["error"], "no answer within 10 s");

    // An admin's retry re-sends it once, by name; now the receiver answers.
    silent.answer_now.store(200, Ordering::SeqCst);
    let delivery_id = delivery["delivery_id"].as_str().unwrap();
    h.app
        .retry_webhook_delivery("admin-2", &webhook_id, delivery_id)
        .await
        .expect("retry queued");
    assert_eq!(drain(&h).await, [DeliveryStep::Delivered]);
    let listed = h.app.webhook_deliveries(&webhook_id, None).await.unwrap();
    let delivery = &listed["deliveries"][0];
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["manual_attempts"], 1);
    let last = delivery["attempts"].as_array().unwrap().last().unwrap();
    assert_eq!(last["requested_by"], "admin-2");
    assert_eq!(last["status_code"], 200);

    let unknown = h
        .app
        .retry_webhook_delivery("admin-2", &webhook_id, "0000000000000-0000000000000000")
        .await
        .expect_err("no such delivery");
    assert_eq!(unknown.code, ErrorCode::WebhookDeliveryNotFound);
}

impl Harness {
    fn clock_now(&self) -> DateTime<Utc> {
        use loyalty_core::clock::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_a_failed_attempt() {
    let received = receiver(18511, vec![0]).await;
    let sender = HttpSender::new(UrlPolicy::LOCAL, Duration::from_millis(300)).expect("client");
    let answer = sender
        .post(Outgoing {
            url: "http://127.0.0.1:18511/slow",
            event_id: "e1",
            body: b"{}",
            signature: "t=1,v1=00",
        })
        .await;
    assert!(
        matches!(&answer, Answer::Failed(why) if why.contains("no answer")),
        "{answer:?}"
    );
    assert_eq!(received.lock().unwrap().len(), 1, "the request did arrive");
}

#[tokio::test]
async fn deliveries_never_reach_loopback_or_private_addresses_on_aws() {
    let received = receiver(18512, vec![200]).await;
    let sender = HttpSender::new(UrlPolicy::PUBLIC_HTTPS, Duration::from_secs(2)).expect("client");
    for url in [
        "http://127.0.0.1:18512/",
        "https://127.0.0.1:18512/",
        "https://localhost:18512/",
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
    ] {
        let answer = sender
            .post(Outgoing {
                url,
                event_id: "e1",
                body: b"{}",
                signature: "t=1,v1=00",
            })
            .await;
        assert!(matches!(answer, Answer::Failed(_)), "{url}: {answer:?}");
    }
    assert!(received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn private_link_local_and_plain_http_urls_are_refused_on_aws_and_nothing_is_written() {
    let h = harness(Arc::new(Silent::default()), UrlPolicy::PUBLIC_HTTPS);
    for url in [
        "http://hooks.example.com/loyalty",
        "http://127.0.0.1:18513/",
        "https://10.1.2.3/",
        "https://192.168.0.10/",
        "https://169.254.169.254/",
        "https://[fe80::1]/",
        "https://localhost/",
    ] {
        let error = h
            .app
            .create_webhook("admin-1", &json!({ "url": url, "event_types": ["*"] }))
            .await
            .expect_err(url);
        assert_eq!(error.code, ErrorCode::ValidationError, "{url}");
        assert_eq!(error.details["field"], "url", "{url}");
    }
    for body in [
        json!({ "url": "https://hooks.example.com/", "event_types": [] }),
        json!({ "url": "https://hooks.example.com/", "event_types": ["Points"] }),
        json!({ "url": "https://hooks.example.com/", "event_types": ["*"], "secret": "mine" }),
        json!({ "event_types": ["*"] }),
    ] {
        let error = h
            .app
            .create_webhook("admin-1", &body)
            .await
            .expect_err("refused");
        assert_eq!(error.code, ErrorCode::ValidationError, "{body}");
    }
    let listed = h.app.list_webhooks().await.unwrap();
    assert_eq!(listed["webhooks"], json!([]));

    let local = harness(Arc::new(Silent::default()), UrlPolicy::LOCAL);
    create(&local, "http://127.0.0.1:18513/hooks", &["*"]).await;
}

#[tokio::test]
async fn disabled_and_deleted_webhooks_get_nothing() {
    let received = receiver(18514, vec![200]).await;
    let h = harness(local_sender(Duration::from_secs(5)), UrlPolicy::LOCAL);
    let url = "http://127.0.0.1:18514/hooks";
    // A second apart: ids are time-ordered, and the list is checked newest first.
    let disabled = create(&h, url, &["member.enrolled"]).await;
    h.clock.advance(chrono::Duration::seconds(1));
    let kept = create(&h, url, &["member.enrolled"]).await;
    h.clock.advance(chrono::Duration::seconds(1));
    let deleted = create(&h, url, &["member.enrolled"]).await;
    let id = |w: &Value| w["webhook_id"].as_str().unwrap().to_owned();

    let view = h
        .app
        .disable_webhook("admin-3", &id(&disabled))
        .await
        .unwrap();
    assert_eq!(view["status"], "disabled");
    assert_eq!(view["updated_by"], "admin-3");
    enrol_and_relay(&h, "cy").await;
    let queued = h.deliveries.sent();
    assert_eq!(
        queued.len(),
        2,
        "no message for the disabled webhook: {queued:?}"
    );

    // Deleted after the fan-out: its queued message is dropped at delivery.
    let view = h
        .app
        .delete_webhook("admin-3", &id(&deleted))
        .await
        .unwrap();
    assert_eq!(view["status"], "deleted");
    let steps = drain(&h).await;
    assert_eq!(
        steps
            .iter()
            .filter(|s| **s == DeliveryStep::Delivered)
            .count(),
        1
    );
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let secret = kept["secret"].as_str().unwrap();
    let signature = received[0].header("loyalty-signature").unwrap();
    assert_eq!(
        verify_signature(
            signature,
            &received[0].body,
            secret,
            h.clock_now().timestamp()
        ),
        Ok(())
    );

    let listed = h.app.list_webhooks().await.unwrap();
    let ids: Vec<&str> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [id(&kept).as_str(), id(&disabled).as_str()],
        "newest first, deleted gone"
    );
    assert!(listed["webhooks"][0].get("secret").is_none());
    let gone = h
        .app
        .webhook_deliveries(&id(&deleted), None)
        .await
        .expect_err("deleted");
    assert_eq!(gone.code, ErrorCode::WebhookNotFound);
    let gone = h
        .app
        .disable_webhook("admin-3", &id(&deleted))
        .await
        .expect_err("deleted");
    assert_eq!(gone.code, ErrorCode::WebhookNotFound);
}

#[tokio::test]
async fn a_webhook_disabled_while_its_delivery_is_retrying_gets_no_more_attempts() {
    let silent = Arc::new(Silent::default());
    let h = harness(silent.clone(), UrlPolicy::PUBLIC_HTTPS);
    let webhook = create(&h, "https://hooks.example.com/x", &["member.enrolled"]).await;
    enrol_and_relay(&h, "dee").await;
    let first = messages(&h.deliveries);
    assert_eq!(first.len(), 1);
    let step = h.app.deliver_webhook(&first[0]).await.unwrap();
    assert_eq!(step, DeliveryStep::Retrying(Duration::from_secs(30)));
    h.app
        .disable_webhook("admin-1", webhook["webhook_id"].as_str().unwrap())
        .await
        .unwrap();
    h.clock.advance(chrono::Duration::seconds(30));
    let steps = drain(&h).await;
    assert!(
        matches!(steps.as_slice(), [DeliveryStep::Skipped(_)]),
        "{steps:?}"
    );
    assert_eq!(silent.attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn each_webhook_gets_only_the_event_types_it_subscribed_to() {
    let h = harness(Arc::new(Silent::default()), UrlPolicy::PUBLIC_HTTPS);
    let earned = create(&h, "https://a.example.com/", &["points.earned"]).await;
    let members = create(&h, "https://b.example.com/", &["member.*"]).await;
    let tiers = create(&h, "https://c.example.com/", &["tier.changed"]).await;
    let member = MemberId::parse("eve").unwrap();
    h.app
        .enrol(EnrolRequest {
            member_id: Some(member.clone()),
            email: None,
            name: None,
            referral_code: None,
        })
        .await
        .unwrap();
    let order = json!({ "kind": "purchase", "order_id": "o-1",
                        "amount": { "minor": 2500, "currency": "USD" } });
    h.app
        .accrue(
            &member,
            Some(IdempotencyKey::parse("k1").unwrap()),
            &order,
            false,
        )
        .await
        .unwrap();
    h.app.relay_all(h.app.store().take_changes()).await.unwrap();
    let mut routed: Vec<(String, String)> = messages(&h.deliveries)
        .into_iter()
        .map(|m| (m.webhook_id, m.event["type"].as_str().unwrap().to_owned()))
        .collect();
    routed.sort();
    routed.dedup();
    let id = |w: &Value| w["webhook_id"].as_str().unwrap().to_owned();
    let mut expected = vec![
        (id(&earned), "points.earned".to_owned()),
        (id(&members), "member.enrolled".to_owned()),
    ];
    expected.sort();
    assert_eq!(routed, expected);
    assert!(routed.iter().all(|(w, _)| *w != id(&tiers)));
}

#[tokio::test]
async fn the_lambda_handler_reports_only_the_messages_it_could_not_handle() {
    let h = harness(Arc::new(Silent::default()), UrlPolicy::PUBLIC_HTTPS);
    create(&h, "https://hooks.example.com/x", &["member.enrolled"]).await;
    enrol_and_relay(&h, "fay").await;
    let good = h.deliveries.take().remove(0);
    let event = json!({ "Records": [
        { "messageId": "m1", "body": good, "eventSource": "aws:sqs" },
        { "messageId": "m2", "body": "not json", "eventSource": "aws:sqs" },
    ]});
    let response = webhook_delivery::handle(&h.app, event)
        .await
        .expect("handled");
    assert_eq!(
        response["batchItemFailures"],
        json!([{ "itemIdentifier": "m2" }])
    );
}
