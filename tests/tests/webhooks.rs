//! Webhooks on DynamoDB Local: webhooks and their deliveries as records (conditional writes,
//! listed by owner with a Query, the TTL attribute set from the record), and a redelivered
//! event that finds its delivery instead of making a second one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::events::MemoryQueue;
use loyalty_core::service::{AppConfig, DeliveryStep};
use loyalty_core::webhooks::delivery::{DeliveryMessage, RETENTION};
use loyalty_core::webhooks::{Answer, Outgoing, WebhookSender};
use loyalty_core::App;
use loyalty_tests::*;
use serde_json::json;

/// Answers 500 to the first `failures` posts, then 200.
struct Flaky {
    failures: usize,
    posts: AtomicUsize,
}

#[async_trait]
impl WebhookSender for Flaky {
    async fn post(&self, _outgoing: Outgoing<'_>) -> Answer {
        let n = self.posts.fetch_add(1, Ordering::SeqCst);
        Answer::Status(if n < self.failures { 500 } else { 200 })
    }
}

#[tokio::test]
async fn deliveries_are_records_listed_by_webhook_kept_for_a_while_and_made_once_per_event() {
    let store = dynamo_store().await;
    let start = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let deliveries = Arc::new(MemoryQueue::default());
    let sender = Arc::new(Flaky {
        failures: 1,
        posts: AtomicUsize::new(0),
    });
    let app = App::new(store.clone(), clock.clone(), AppConfig::default())
        .with_webhook_sender(sender.clone())
        .with_webhook_deliveries(deliveries.clone())
        .with_webhook_dlq(Arc::new(MemoryQueue::default()));

    let created = app
        .create_webhook(
            "admin-1",
            &json!({ "url": "https://hooks.example.com/x", "event_types": ["points.*"],
                     "description": "CRM" }),
        )
        .await
        .expect("created");
    let webhook_id = created["webhook_id"].as_str().unwrap().to_owned();
    let listed = app.list_webhooks().await.expect("listed");
    assert_eq!(listed["webhooks"][0]["webhook_id"], webhook_id.as_str());
    assert_eq!(listed["webhooks"][0]["created_by"], "admin-1");
    assert!(listed["webhooks"][0].get("secret").is_none());

    let event = json!({ "event_id": "entry:ada:o-1", "type": "points.earned", "version": 1,
                        "occurred_at": "2026-03-02T11:59:00Z", "member_id": "ada",
                        "data": { "points": 25 } });
    let first = DeliveryMessage::first(&webhook_id, event.clone());
    let step = app.deliver_webhook(&first).await.expect("attempted");
    assert_eq!(
        step,
        DeliveryStep::Retrying(std::time::Duration::from_secs(30))
    );
    // The outbox relays the same change again: the same delivery, no second chain.
    let step = app.deliver_webhook(&first).await.expect("handled");
    assert!(matches!(step, DeliveryStep::Skipped(_)), "{step:?}");

    clock.advance(chrono::Duration::seconds(30));
    let retry: DeliveryMessage =
        serde_json::from_str(&deliveries.take().remove(0)).expect("the scheduled retry");
    assert_eq!(retry.after_attempts, 1);
    assert_eq!(
        app.deliver_webhook(&retry).await.unwrap(),
        DeliveryStep::Delivered
    );
    assert_eq!(sender.posts.load(Ordering::SeqCst), 2);

    let page = app
        .webhook_deliveries(&webhook_id, Some(10))
        .await
        .expect("deliveries");
    let list = page["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "delivered");
    assert_eq!(list[0]["attempts"].as_array().unwrap().len(), 2);

    // The item carries the table's TTL attribute, 30 days after the first attempt.
    let delivery_id = list[0]["delivery_id"].as_str().unwrap();
    let item = dynamodb_client()
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            AttributeValue::S(format!("REC#webhook_delivery#{delivery_id}")),
        )
        .key("sk", AttributeValue::S("REC".into()))
        .send()
        .await
        .expect("read")
        .item
        .expect("the delivery item");
    assert_eq!(
        item.get("expires_at").and_then(|v| v.as_n().ok()).cloned(),
        Some((start + RETENTION).timestamp().to_string())
    );

    let deleted = app.delete_webhook("admin-2", &webhook_id).await.unwrap();
    assert_eq!(deleted["updated_by"], "admin-2");
    assert_eq!(app.list_webhooks().await.unwrap()["webhooks"], json!([]));
    let limit = app.webhook_deliveries(&webhook_id, Some(0)).await;
    assert!(limit.is_err());
}
