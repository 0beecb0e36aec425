//! Outgoing domain events ("welcome to Gold"), sent after the change they describe is stored.
//! Ids are derived from what happened, so a consumer can drop the duplicates that retries send.

#[cfg(any(test, feature = "testing"))]
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::ids::MemberId;
use crate::ports::{MessageQueue, StoreError};
use crate::tiers::TierChange;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<MemberId>,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
}

impl DomainEvent {
    pub fn tier_changed(member: &MemberId, change: &TierChange) -> Self {
        Self {
            event_id: format!(
                "tier:{member}:{}:{}",
                change.to_tier,
                change.evaluated_at.timestamp_millis()
            ),
            event_type: "tier.changed",
            member_id: Some(member.clone()),
            occurred_at: change.evaluated_at,
            data: json!({ "from_tier": change.from_tier, "to_tier": change.to_tier, "reason": change.reason }),
        }
    }
}

/// Where events go when a deployment has no queue for them: the log, so they are not lost
/// silently.
#[derive(Debug, Default)]
pub struct LogQueue;

#[async_trait]
impl MessageQueue for LogQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), StoreError> {
        for body in bodies {
            tracing::info!(%body, "event (no queue configured)");
        }
        Ok(())
    }
}

/// Keeps what was sent; for tests and local tools (the `testing` feature).
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct MemoryQueue(Mutex<Vec<String>>);

#[cfg(any(test, feature = "testing"))]
impl MemoryQueue {
    pub fn sent(&self) -> Vec<String> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// Puts messages back, as a queue redelivering them would.
    pub async fn send_now(&self, bodies: Vec<String>) {
        let _ = self.send(bodies).await;
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), StoreError> {
        self.0
            .lock()
            .map_err(|_| StoreError("queue poisoned".into()))?
            .extend(bodies);
        Ok(())
    }
}

impl DomainEvent {
    /// A season's promotion opened or closed ("Black Friday double points starts now").
    pub fn promotion(
        event_type: &'static str,
        promotion: &crate::promotions::Promotion,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            event_id: format!("{event_type}:{}", promotion.promotion_id),
            event_type,
            member_id: None,
            occurred_at: at,
            data: json!({
                "promotion_id": promotion.promotion_id,
                "name": promotion.name,
                "starts_at": promotion.starts_at,
                "ends_at": promotion.ends_at,
            }),
        }
    }
}

/// A queue a deployment has not configured: sending fails loudly instead of dropping work.
#[derive(Debug, Clone, Copy)]
pub struct Unconfigured(pub &'static str);

#[async_trait]
impl MessageQueue for Unconfigured {
    async fn send(&self, _bodies: Vec<String>) -> Result<(), StoreError> {
        Err(StoreError(format!("{} is not configured", self.0)))
    }
}
