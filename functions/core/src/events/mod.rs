//! Outgoing domain events ("welcome to Gold"). They are derived from committed items by the
//! stream consumer ([`catalog`]), never sent by the request that made the change: a change that
//! commits is announced, one that doesn't isn't. Ids are derived from what was stored, so a
//! consumer can drop the duplicates that at-least-once delivery brings.

pub mod catalog;

#[cfg(any(test, feature = "testing"))]
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::ids::MemberId;
use crate::ports::{MessageQueue, StoreError};
use crate::tiers::TierChange;

/// The version of the event envelope and of every type's `data`; a breaking change to either
/// gets a new number, so receivers can tell which shape they hold.
pub const SCHEMA_VERSION: u32 = 1;

/// `{"event_id", "type", "version", "occurred_at", "member_id"?, "data"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainEvent {
    pub event_id: String,
    pub event_type: &'static str,
    pub member_id: Option<MemberId>,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
}

impl Serialize for DomainEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event_id", &self.event_id)?;
        map.serialize_entry("type", self.event_type)?;
        map.serialize_entry("version", &SCHEMA_VERSION)?;
        map.serialize_entry("occurred_at", &self.occurred_at)?;
        if let Some(member) = &self.member_id {
            map.serialize_entry("member_id", member)?;
        }
        map.serialize_entry("data", &self.data)?;
        map.end()
    }
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
pub struct MemoryQueue {
    sent: Mutex<Vec<String>>,
    /// The delay each delayed message was sent with, in sending order.
    delays: Mutex<Vec<std::time::Duration>>,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryQueue {
    pub fn sent(&self) -> Vec<String> {
        self.sent.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn take(&self) -> Vec<String> {
        self.sent
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// The delays of the delayed messages sent so far (they are also in [`Self::sent`]).
    pub fn delays(&self) -> Vec<std::time::Duration> {
        self.delays.lock().map(|d| d.clone()).unwrap_or_default()
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
        self.sent
            .lock()
            .map_err(|_| StoreError("queue poisoned".into()))?
            .extend(bodies);
        Ok(())
    }

    async fn send_delayed(
        &self,
        body: String,
        delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.delays
            .lock()
            .map_err(|_| StoreError("queue poisoned".into()))?
            .push(delay);
        self.send(vec![body]).await
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
