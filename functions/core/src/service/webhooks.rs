//! Webhook use cases: the admin routes (create, list, disable, delete, deliveries, retry), the
//! outbox's fan-out (one queue message per event and subscribed webhook) and the delivery
//! function's one attempt (sign, post, record, schedule the next attempt or park).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::RwLock;
use tokio::time::Instant;

use super::{App, Attempt};
use crate::error::{ApiError, ErrorCode};
use crate::events::{DomainEvent, Unconfigured};
use crate::ports::{CommitError, Expect, MessageQueue, Record, RecordWrite, Store, StoreError};
use crate::webhooks::address::{self, UrlPolicy};
use crate::webhooks::delivery::{
    Delivery, DeliveryAttempt, DeliveryMessage, DeliveryStatus, DELIVERY_KIND, MAX_QUEUE_DELAY,
};
use crate::webhooks::{
    self, schedule, NoSender, Outgoing, Webhook, WebhookSender, WebhookStatus, WEBHOOKS_OWNER,
    WEBHOOK_KIND,
};

/// How long the outbox trusts its list of webhooks. A webhook created or disabled elsewhere is
/// seen within this long; the delivery function checks the webhook again before every attempt,
/// so a disabled webhook gets nothing however stale this copy is.
pub const WEBHOOK_CACHE: Duration = Duration::from_secs(10);
/// The most webhooks a deployment has (one Query reads them all).
pub const MAX_WEBHOOKS: u32 = 100;
/// Deliveries one page of `GET …/deliveries` shows by default, and at most.
const DEFAULT_DELIVERIES: u32 = 20;
const MAX_DELIVERIES: u32 = 100;

/// The webhook side of an app: its queues, its HTTP client and its URL policy.
pub(crate) struct WebhookWiring {
    deliveries: Arc<dyn MessageQueue>,
    parked: Arc<dyn MessageQueue>,
    sender: Arc<dyn WebhookSender>,
    policy: UrlPolicy,
    active: RwLock<Option<(Instant, Arc<Vec<Webhook>>)>>,
}

impl Default for WebhookWiring {
    fn default() -> Self {
        Self {
            deliveries: Arc::new(Unconfigured("WEBHOOK_DELIVERY_QUEUE_URL")),
            parked: Arc::new(Unconfigured("WEBHOOK_DLQ_URL")),
            sender: Arc::new(NoSender),
            policy: UrlPolicy::PUBLIC_HTTPS,
            active: RwLock::new(None),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    url: String,
    event_types: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// What one queue message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStep {
    /// The receiver answered 2xx.
    Delivered,
    /// The attempt failed; the next one is in this long.
    Retrying(Duration),
    /// The last attempt of the window failed; the delivery is in the webhook DLQ.
    Parked,
    /// Not due yet: the message waits another hop of this long.
    Waiting(Duration),
    /// Nothing to do (already delivered, a stale duplicate, a disabled or deleted webhook).
    Skipped(&'static str),
    /// An admin's retry was attempted and failed; the delivery keeps its status.
    RetryFailed,
}

fn not_found(webhook_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::WebhookNotFound,
        format!("no webhook '{webhook_id}'"),
    )
    .with_details(json!({ "webhook_id": webhook_id }))
}

fn to_body<T: serde::Serialize>(value: &T) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError(format!("serialise: {e}")))
}

/// The queue delay of a wait: SQS delays a message by at most 15 minutes.
fn hop(wait: chrono::Duration) -> Duration {
    wait.min(MAX_QUEUE_DELAY).to_std().unwrap_or_default()
}

impl<S: Store> App<S> {
    /// Where fan-out and retries send delivery messages.
    pub fn with_webhook_deliveries(mut self, queue: Arc<dyn MessageQueue>) -> Self {
        self.webhooks.deliveries = queue;
        self
    }

    /// Where deliveries are parked after their retry window.
    pub fn with_webhook_dlq(mut self, queue: Arc<dyn MessageQueue>) -> Self {
        self.webhooks.parked = queue;
        self
    }

    /// The HTTP client deliveries are posted with.
    pub fn with_webhook_sender(mut self, sender: Arc<dyn WebhookSender>) -> Self {
        self.webhooks.sender = sender;
        self
    }

    /// Which URLs webhooks may have (public `https` unless the local runner says otherwise).
    pub fn with_webhook_policy(mut self, policy: UrlPolicy) -> Self {
        self.webhooks.policy = policy;
        self
    }

    async fn webhook(&self, webhook_id: &str) -> Result<Option<(Record, Webhook)>, ApiError> {
        let Some(record) = self.store.record(WEBHOOK_KIND, webhook_id).await? else {
            return Ok(None);
        };
        let webhook: Webhook = record.parse()?;
        if webhook.status == WebhookStatus::Deleted {
            return Ok(None);
        }
        Ok(Some((record, webhook)))
    }

    /// `POST /v1/admin/webhooks`: the new webhook, with its secret (shown this once).
    pub async fn create_webhook(&self, actor: &str, body: &Value) -> Result<Value, ApiError> {
        let request: CreateWebhook = super::parse_body(body)?;
        let url = address::parse_url(request.url.trim(), self.webhooks.policy)?;
        let event_types = webhooks::parse_event_types(request.event_types)?;
        let description = request.description.map(|d| d.trim().to_owned());
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > webhooks::MAX_DESCRIPTION)
        {
            return Err(ApiError::invalid(
                "description",
                format!(
                    "description is longer than {} characters",
                    webhooks::MAX_DESCRIPTION
                ),
            ));
        }
        let existing = self
            .store
            .records_of(WEBHOOK_KIND, WEBHOOKS_OWNER, MAX_WEBHOOKS)
            .await?;
        if existing.len() >= MAX_WEBHOOKS as usize {
            return Err(ApiError::invalid(
                "url",
                format!("a deployment has at most {MAX_WEBHOOKS} webhooks; delete one first"),
            ));
        }
        let now = self.now();
        let webhook = Webhook {
            webhook_id: webhooks::new_webhook_id(now),
            url: url.to_string(),
            event_types,
            description: description.filter(|d| !d.is_empty()),
            secret: webhooks::new_secret(),
            status: WebhookStatus::Active,
            created_at: now,
            created_by: actor.to_owned(),
            updated_at: now,
            updated_by: actor.to_owned(),
            expires_at: None,
        };
        let write = RecordWrite {
            record: Record {
                kind: WEBHOOK_KIND.into(),
                id: webhook.webhook_id.clone(),
                owner: Some(WEBHOOKS_OWNER.into()),
                version: 1,
                due: None,
                body: to_body(&webhook)?,
            },
            expect: Expect::Absent,
        };
        match self.store.transact(Vec::new(), vec![write]).await {
            Ok(()) => {}
            Err(CommitError::Store(error)) => return Err(error.into()),
            Err(error) => {
                tracing::error!(%error, "a new webhook id collided");
                return Err(ApiError::internal());
            }
        }
        self.forget_webhooks().await;
        tracing::info!(webhook_id = %webhook.webhook_id, actor, "webhook created");
        let mut view = webhook.view();
        view["secret"] = Value::from(webhook.secret);
        Ok(view)
    }

    /// `GET /v1/admin/webhooks`: every webhook not deleted, newest first, without secrets.
    pub async fn list_webhooks(&self) -> Result<Value, ApiError> {
        let records = self
            .store
            .records_of(WEBHOOK_KIND, WEBHOOKS_OWNER, MAX_WEBHOOKS)
            .await?;
        let webhooks = records
            .iter()
            .map(|record| record.parse::<Webhook>().map(|w| w.view()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({ "webhooks": webhooks }))
    }

    /// `POST /v1/admin/webhooks/{id}/disable`: no more deliveries, including scheduled retries.
    pub async fn disable_webhook(&self, actor: &str, webhook_id: &str) -> Result<Value, ApiError> {
        let webhook = self
            .change_webhook(actor, webhook_id, |webhook, _| {
                webhook.status = WebhookStatus::Disabled;
                true
            })
            .await?;
        Ok(webhook.view())
    }

    /// `DELETE /v1/admin/webhooks/{id}`: gone from the list and from every future delivery; the
    /// tombstone (and the deliveries) expire with the store's TTL.
    pub async fn delete_webhook(&self, actor: &str, webhook_id: &str) -> Result<Value, ApiError> {
        let webhook = self
            .change_webhook(actor, webhook_id, |webhook, now| {
                webhook.status = WebhookStatus::Deleted;
                webhook.expires_at = Some(
                    (now + chrono::Duration::days(webhooks::DELETED_RETENTION_DAYS)).timestamp(),
                );
                false
            })
            .await?;
        Ok(webhook.view())
    }

    /// Applies `change` to the webhook under the version condition, retrying a lost race;
    /// `change` says whether the webhook stays listed.
    async fn change_webhook(
        &self,
        actor: &str,
        webhook_id: &str,
        change: impl Fn(&mut Webhook, DateTime<Utc>) -> bool,
    ) -> Result<Webhook, ApiError> {
        let change = &change;
        self.retrying(|| async move {
            let (record, mut webhook) = self
                .webhook(webhook_id)
                .await?
                .ok_or_else(|| not_found(webhook_id))?;
            let now = self.now();
            let listed = change(&mut webhook, now);
            webhook.updated_at = now;
            webhook.updated_by = actor.to_owned();
            let write = RecordWrite {
                record: Record {
                    owner: listed.then(|| WEBHOOKS_OWNER.to_owned()),
                    version: record.version + 1,
                    body: to_body(&webhook)?,
                    ..record.clone()
                },
                expect: Expect::Version(record.version),
            };
            match self.store.transact(Vec::new(), vec![write]).await {
                Ok(()) => {
                    self.forget_webhooks().await;
                    tracing::info!(webhook_id, actor, status = ?webhook.status, "webhook changed");
                    Ok(Attempt::Done(webhook))
                }
                Err(CommitError::Store(error)) => Err(error.into()),
                Err(_) => Ok(Attempt::Retry),
            }
        })
        .await
    }

    /// `GET /v1/admin/webhooks/{id}/deliveries`: up to `limit` deliveries, newest event first,
    /// each with its attempts.
    pub async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        limit: Option<u32>,
    ) -> Result<Value, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_DELIVERIES);
        if !(1..=MAX_DELIVERIES).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_DELIVERIES}"),
            ));
        }
        self.webhook(webhook_id)
            .await?
            .ok_or_else(|| not_found(webhook_id))?;
        let records = self
            .store
            .records_of(DELIVERY_KIND, webhook_id, limit)
            .await?;
        let deliveries = records
            .iter()
            .map(|record| record.parse::<Delivery>().map(|d| delivery_view(&d)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({ "deliveries": deliveries }))
    }

    /// `POST /v1/admin/webhooks/{id}/deliveries/{delivery_id}/retry`: one more attempt now,
    /// outside the schedule (a parked delivery included); the attempt records `actor`.
    pub async fn retry_webhook_delivery(
        &self,
        actor: &str,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<Value, ApiError> {
        let (_, webhook) = self
            .webhook(webhook_id)
            .await?
            .ok_or_else(|| not_found(webhook_id))?;
        let delivery = self
            .store
            .record(DELIVERY_KIND, delivery_id)
            .await?
            .map(|record| record.parse::<Delivery>())
            .transpose()?
            .filter(|delivery| delivery.webhook_id == webhook_id)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::WebhookDeliveryNotFound,
                    format!("webhook '{webhook_id}' has no delivery '{delivery_id}'"),
                )
                .with_details(json!({ "webhook_id": webhook_id, "delivery_id": delivery_id }))
            })?;
        if webhook.status != WebhookStatus::Active {
            return Err(ApiError::invalid(
                "webhook_id",
                format!("webhook '{webhook_id}' is disabled: it receives nothing"),
            ));
        }
        let message = DeliveryMessage {
            requested_by: Some(actor.to_owned()),
            ..DeliveryMessage::first(webhook_id, delivery.event.clone())
        };
        let body = serde_json::to_string(&message).map_err(|_| ApiError::internal())?;
        self.webhooks.deliveries.send(vec![body]).await?;
        tracing::info!(
            webhook_id,
            delivery_id,
            actor,
            "webhook delivery retry requested"
        );
        Ok(delivery_view(&delivery))
    }

    async fn forget_webhooks(&self) {
        *self.webhooks.active.write().await = None;
    }

    /// The webhooks that receive events, from this environment's copy while it is fresh.
    async fn active_webhooks(&self) -> Result<Arc<Vec<Webhook>>, StoreError> {
        if let Some((fetched, webhooks)) = self.webhooks.active.read().await.as_ref() {
            if fetched.elapsed() < WEBHOOK_CACHE {
                return Ok(Arc::clone(webhooks));
            }
        }
        let records = self
            .store
            .records_of(WEBHOOK_KIND, WEBHOOKS_OWNER, MAX_WEBHOOKS)
            .await?;
        let webhooks: Vec<Webhook> = records
            .iter()
            .map(Record::parse::<Webhook>)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|webhook| webhook.status == WebhookStatus::Active)
            .collect();
        let webhooks = Arc::new(webhooks);
        *self.webhooks.active.write().await = Some((Instant::now(), Arc::clone(&webhooks)));
        Ok(webhooks)
    }

    /// The outbox's fan-out: one delivery message per event and webhook subscribed to its
    /// type. Returns how many were sent.
    pub(crate) async fn fan_out_to_webhooks(
        &self,
        events: &[DomainEvent],
    ) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let webhooks = self.active_webhooks().await?;
        let mut bodies = Vec::new();
        for event in events {
            for webhook in webhooks.iter().filter(|w| w.wants(event.event_type)) {
                let message = DeliveryMessage::first(&webhook.webhook_id, to_body(event)?);
                bodies
                    .push(serde_json::to_string(&message).map_err(|e| StoreError(e.to_string()))?);
            }
        }
        let sent = bodies.len();
        if sent > 0 {
            self.webhooks.deliveries.send(bodies).await?;
        }
        Ok(sent)
    }

    /// The delivery function's work for one queue message: at most one signed `POST`, recorded
    /// on the delivery, then the next attempt scheduled or the delivery parked. `Err` means the
    /// message must come back (nothing it promised is lost).
    pub async fn deliver_webhook(
        &self,
        message: &DeliveryMessage,
    ) -> Result<DeliveryStep, StoreError> {
        let now = self.now();
        let manual = message.requested_by.is_some();
        if let Some(due) = message.not_before.filter(|due| *due > now && !manual) {
            let wait = hop(due - now);
            let body = serde_json::to_string(message).map_err(|e| StoreError(e.to_string()))?;
            self.webhooks.deliveries.send_delayed(body, wait).await?;
            return Ok(DeliveryStep::Waiting(wait));
        }
        let fresh = Delivery::new(message, now)?;
        let stored = self.store.record(DELIVERY_KIND, &fresh.delivery_id).await?;
        let (mut delivery, expect) = match &stored {
            Some(record) => (record.parse::<Delivery>()?, Expect::Version(record.version)),
            None => (fresh, Expect::Absent),
        };
        // An admin's retry re-sends whatever the status (a receiver may have lost a delivered
        // event); the automatic chain stops once delivered or parked.
        if !manual {
            if delivery.status == DeliveryStatus::Delivered {
                return Ok(DeliveryStep::Skipped("already delivered"));
            }
            if delivery.status == DeliveryStatus::Parked
                || delivery.automatic_attempts != message.after_attempts
            {
                return Ok(DeliveryStep::Skipped(
                    "a later message carries this delivery",
                ));
            }
        }
        let webhook = match self.store.record(WEBHOOK_KIND, &message.webhook_id).await? {
            Some(record) => record.parse::<Webhook>()?,
            None => return Ok(DeliveryStep::Skipped("the webhook is deleted")),
        };
        if webhook.status != WebhookStatus::Active {
            return Ok(DeliveryStep::Skipped("the webhook is disabled or deleted"));
        }

        let body = serde_json::to_vec(&delivery.event).map_err(|e| StoreError(e.to_string()))?;
        let signature = webhooks::signature_header(&webhook.secret, now.timestamp(), &body);
        let started = std::time::Instant::now();
        let answer = self
            .webhooks
            .sender
            .post(Outgoing {
                url: &webhook.url,
                event_id: &delivery.event_id,
                body: &body,
                signature: &signature,
            })
            .await;
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let delivered = answer.delivered();
        tracing::info!(webhook_id = %webhook.webhook_id, delivery_id = %delivery.delivery_id,
            event_id = %delivery.event_id, ?answer, manual, "webhook attempt");
        let attempt = DeliveryAttempt::new(now, &answer, took, message.requested_by.clone());
        delivery.record(attempt, delivered, manual);

        let step = if delivered {
            DeliveryStep::Delivered
        } else if manual {
            DeliveryStep::RetryFailed
        } else {
            match schedule::next_attempt(
                delivery.automatic_attempts,
                delivery.first_attempt_at,
                now,
            ) {
                Some(wait) => {
                    let due = now + wait;
                    delivery.status = DeliveryStatus::Retrying;
                    delivery.next_attempt_at = Some(due);
                    // The next message goes first: if the record write below fails, this
                    // message comes back and makes the same attempt, and the later of the two
                    // chains finds itself stale. The other order could lose the chain.
                    let next = DeliveryMessage {
                        after_attempts: delivery.automatic_attempts,
                        not_before: Some(due),
                        ..message.clone()
                    };
                    let next =
                        serde_json::to_string(&next).map_err(|e| StoreError(e.to_string()))?;
                    self.webhooks
                        .deliveries
                        .send_delayed(next, hop(wait))
                        .await?;
                    DeliveryStep::Retrying(wait.to_std().unwrap_or_default())
                }
                None => {
                    delivery.status = DeliveryStatus::Parked;
                    delivery.next_attempt_at = None;
                    let parked = json!({
                        "delivery_id": delivery.delivery_id,
                        "webhook_id": delivery.webhook_id,
                        "event": delivery.event,
                        "attempts": delivery.automatic_attempts,
                        "parked_at": now,
                    });
                    self.webhooks.parked.send(vec![parked.to_string()]).await?;
                    DeliveryStep::Parked
                }
            }
        };
        let version = match expect {
            Expect::Version(version) => version + 1,
            Expect::Absent => 1,
        };
        let write = RecordWrite {
            record: Record {
                kind: DELIVERY_KIND.into(),
                id: delivery.delivery_id.clone(),
                owner: Some(delivery.webhook_id.clone()),
                version,
                due: None,
                body: to_body(&delivery)?,
            },
            expect,
        };
        match self.store.transact(Vec::new(), vec![write]).await {
            Ok(()) => Ok(step),
            // Another copy of this message, or an admin's retry, recorded first. The message
            // comes back and reads the delivery again: a duplicate copy then finds itself
            // stale, and a chain overtaken by a retry goes on (receivers de-duplicate on
            // event_id if the attempt is repeated).
            Err(CommitError::Store(error)) => Err(error),
            Err(error) => Err(StoreError(format!(
                "delivery {} changed while it was attempted: {error}",
                delivery.delivery_id
            ))),
        }
    }
}

/// A delivery as the deliveries route shows it.
fn delivery_view(delivery: &Delivery) -> Value {
    json!({
        "delivery_id": delivery.delivery_id,
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "first_attempt_at": delivery.first_attempt_at,
        "next_attempt_at": delivery.next_attempt_at,
        "delivered_at": delivery.delivered_at,
        "automatic_attempts": delivery.automatic_attempts,
        "manual_attempts": delivery.manual_attempts,
        "attempts": delivery.attempts,
    })
}
