//! The table's stream, read as the domain's change feed: a stream record's images become the
//! [`Change`] the core's event catalog understands. The key layout (see [`crate::keys`]) says
//! what an item is; items that announce nothing (guards, idempotency records, program copies)
//! are `None`, and the template's filter criteria keep most of them from waking the consumer.

use loyalty_core::events::catalog::Change;
use loyalty_core::ids::MemberId;
use loyalty_core::ports::{Record, StoreError};
use serde::Deserialize;

use crate::keys;

/// An image as the stream (and the `aws_lambda_events` stream event) carries it.
pub type Image = serde_dynamo::Item;

/// The stream's filter criteria, one pattern per item the catalog reads: member profiles,
/// ledger entries, tier changes and records. The template lists the same patterns.
pub const FILTER_PATTERNS: [&str; 4] = [
    r#"{"dynamodb":{"Keys":{"sk":{"S":["PROFILE"]}}}}"#,
    r#"{"dynamodb":{"Keys":{"sk":{"S":[{"prefix":"LEDGER#"}]}}}}"#,
    r#"{"dynamodb":{"Keys":{"sk":{"S":[{"prefix":"TIER#"}]}}}}"#,
    r#"{"dynamodb":{"Keys":{"sk":{"S":["REC"]}}}}"#,
];

fn text<'a>(image: &'a Image, name: &str) -> Option<&'a str> {
    match image.get(name)? {
        serde_dynamo::AttributeValue::S(value) => Some(value.as_str()),
        _ => None,
    }
}

fn decode<T: serde::de::DeserializeOwned>(image: &Image, what: &str) -> Result<T, StoreError> {
    serde_dynamo::from_item(image.clone())
        .map_err(|e| StoreError(format!("stream image of a {what}: {e}")))
}

#[derive(Deserialize)]
struct RecordImage {
    kind: String,
    id: String,
    #[serde(default)]
    owner: Option<String>,
    version: u64,
    #[serde(default)]
    due: Option<String>,
    body: String,
}

fn record(image: &Image) -> Result<Record, StoreError> {
    let raw: RecordImage = decode(image, "record")?;
    Ok(Record {
        body: serde_json::from_str(&raw.body)
            .map_err(|e| StoreError(format!("record '{}' body: {e}", raw.id)))?,
        kind: raw.kind,
        id: raw.id,
        owner: raw.owner,
        version: raw.version,
        due: raw.due.and_then(|d| d.parse().ok()),
    })
}

/// The change a stream record describes: `new_image` is the item after the write (empty for a
/// removal), `old_image` the item before (empty for a new item).
pub fn change_of(new_image: &Image, old_image: &Image) -> Result<Option<Change>, StoreError> {
    if new_image.is_empty() {
        return Ok(None);
    }
    let (Some(pk), Some(sk)) = (text(new_image, keys::PK), text(new_image, keys::SK)) else {
        return Ok(None);
    };
    let before = (!old_image.is_empty()).then_some(old_image);
    let change = if let Some(member) = pk.strip_prefix("MEMBER#") {
        if sk == keys::PROFILE {
            Change::Member {
                before: before.map(|b| decode(b, "member")).transpose()?,
                after: decode(new_image, "member")?,
            }
        } else if sk.starts_with(keys::LEDGER_PREFIX) {
            Change::Entry(decode(new_image, "ledger entry")?)
        } else if sk.starts_with(keys::TIER_PREFIX) {
            Change::Tier {
                member_id: MemberId::parse(member)
                    .map_err(|_| StoreError(format!("tier change under '{pk}'")))?,
                change: decode(new_image, "tier change")?,
            }
        } else {
            return Ok(None);
        }
    } else if sk == keys::RECORD_SK {
        Change::Record {
            before: before.map(record).transpose()?,
            after: record(new_image)?,
        }
    } else {
        return Ok(None);
    };
    Ok(Some(change))
}
