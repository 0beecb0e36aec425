//! Idempotency for creates that are not a member's points movement (campaigns, promotions,
//! rewards): the first response to a key is a record, written in the same transaction as what
//! it created where the store allows it, so a retried create answers that response again
//! (`Idempotent-Replayed: true`) and a different body under the same key is refused.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::App;
use crate::error::ApiError;
use crate::idempotency::Operation;
use crate::ids::IdempotencyKey;
use crate::ports::{Expect, Record, RecordWrite, Store};

/// Record kind of an admin create's first response.
pub const KIND: &str = "admin_idempotency";

/// What a key produced the first time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyedResponse {
    pub operation: Operation,
    /// Hash of the canonical request (see [`crate::idempotency::fingerprint`]).
    pub fingerprint: String,
    pub status: u16,
    pub response: Value,
    pub created_at: DateTime<Utc>,
}

impl KeyedResponse {
    /// The first response when `fingerprint` matches, `idempotency_key_reused` otherwise.
    pub fn replay(&self, fingerprint: &str) -> Result<Value, ApiError> {
        crate::idempotency::IdempotencyRecord {
            operation: self.operation,
            key: String::new(),
            fingerprint: self.fingerprint.clone(),
            status: self.status,
            response: self.response.clone(),
            entry_id: String::new(),
            created_at: self.created_at,
        }
        .replay(fingerprint)
    }
}

fn record_id(operation: Operation, key: &IdempotencyKey) -> String {
    format!("{}:{}", operation.as_str(), key.as_str())
}

/// The write that claims `key` for `operation`: it fails (a record conflict) if the key was
/// claimed first by another request.
pub(crate) fn claim(
    operation: Operation,
    key: &IdempotencyKey,
    response: KeyedResponse,
) -> Result<RecordWrite, ApiError> {
    Ok(RecordWrite {
        record: Record {
            kind: KIND.into(),
            id: record_id(operation, key),
            owner: None,
            version: 1,
            due: None,
            body: serde_json::to_value(response).map_err(|_| ApiError::internal())?,
        },
        expect: Expect::Absent,
    })
}

impl<S: Store> App<S> {
    /// What `key` produced the first time it was used for `operation`, if it was.
    pub(crate) async fn keyed_response(
        &self,
        operation: Operation,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyedResponse>, ApiError> {
        match self
            .store()
            .record(KIND, &record_id(operation, key))
            .await?
        {
            Some(record) => Ok(Some(record.parse()?)),
            None => Ok(None),
        }
    }
}
