//! Outgoing domain events ("welcome to Gold"), sent after the change they describe is stored.
//! Ids are derived from what happened, so a consumer can drop the duplicates that retries send.

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
    pub member_id: MemberId,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
}

impl DomainEvent {
    pub fn tier_changed(member: &MemberId, change: &TierChange) -> Self {
        Self {
            event_id: format!("tier:{member}:{}:{}", change.to_tier, change.evaluated_at.timestamp_millis()),
            event_type: "tier.changed",
            member_id: member.clone(),
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

/// Keeps what was sent; for tests and local tools.
#[derive(Debug, Default)]
pub struct MemoryQueue(Mutex<Vec<String>>);

impl MemoryQueue {
    pub fn sent(&self) -> Vec<String> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn take(&self) -> Vec<String> {
        self.0.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default()
    }
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), StoreError> {
        self.0.lock().map_err(|_| StoreError("queue poisoned".into()))?.extend(bodies);
        Ok(())
    }
}
