//! Conversions between domain values and DynamoDB items. Domain types go through serde_dynamo;
//! the keys are added here so the domain never knows how it is stored.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use loyalty_core::idempotency::IdempotencyRecord;
use loyalty_core::ledger::LedgerEntry;
use loyalty_core::member::Member;
use loyalty_core::ports::StoreError;
use loyalty_core::program::ActiveProgram;
use loyalty_core::tiers::TierChange;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

fn to_item<T: Serialize>(value: &T, pk: String, sk: impl Into<String>) -> Result<Item, StoreError> {
    let mut item: Item =
        serde_dynamo::to_item(value).map_err(|e| StoreError(format!("encode: {e}")))?;
    item.extend(key(pk, sk));
    Ok(item)
}

pub(crate) fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError(format!("decode: {e}")))
}

pub(crate) fn member_item(member: &Member) -> Result<Item, StoreError> {
    let mut item = to_item(member, keys::member_pk(&member.member_id), keys::PROFILE)?;
    let day = member.enrolled_at.format("%Y-%m-%d").to_string();
    item.insert(keys::GSI1_PK.to_owned(), s(keys::enrolled_gsi1pk(&day)));
    item.insert(keys::GSI1_SK.to_owned(), s(member.member_id.as_str()));
    let shard = loyalty_core::ports::review_shard(&member.member_id);
    item.insert(
        keys::GSI3_PK.to_owned(),
        s(keys::tier_gsi3pk(&member.tier, shard)),
    );
    item.insert(keys::GSI3_SK.to_owned(), s(member.member_id.as_str()));
    // Sparse: only members with a review date are in the review index.
    if let Some(day) = member.tier_state.review_on {
        let shard = loyalty_core::ports::review_shard(&member.member_id);
        item.insert(keys::GSI2_PK.to_owned(), s(keys::review_gsi2pk(day, shard)));
        item.insert(keys::GSI2_SK.to_owned(), s(member.member_id.as_str()));
    }
    // Sparse: only members with pending points to release or lots to expire or warn about are
    // in the daily points run's index.
    if let Some(day) = member.points_due() {
        let shard = loyalty_core::ports::review_shard(&member.member_id);
        item.insert(keys::GSI4_PK.to_owned(), s(keys::expiry_gsi4pk(day, shard)));
        item.insert(keys::GSI4_SK.to_owned(), s(member.member_id.as_str()));
    }
    Ok(item)
}

pub(crate) fn tier_change_item(member: &Member, change: &TierChange) -> Result<Item, StoreError> {
    to_item(
        change,
        keys::member_pk(&member.member_id),
        keys::tier_sk(change.evaluated_at),
    )
}

pub(crate) fn entry_item(entry: &LedgerEntry) -> Result<Item, StoreError> {
    to_item(
        entry,
        keys::member_pk(&entry.member_id),
        keys::ledger_sk(entry.seq),
    )
}

/// The idempotency record keeps the response as JSON text so a replay returns it byte for byte.
pub(crate) fn idempotency_item(member_pk: String, record: &IdempotencyRecord) -> Item {
    let mut item = key(
        member_pk,
        keys::idempotency_sk(record.operation.as_str(), &record.key),
    );
    item.extend([
        ("operation".to_owned(), s(record.operation.as_str())),
        ("key".to_owned(), s(record.key.as_str())),
        ("fingerprint".to_owned(), s(record.fingerprint.as_str())),
        ("status".to_owned(), n(record.status)),
        ("response".to_owned(), s(record.response.to_string())),
        ("entry_id".to_owned(), s(record.entry_id.as_str())),
        ("created_at".to_owned(), s(record.created_at.to_rfc3339())),
    ]);
    item
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError(format!("item lacks string attribute '{name}'")))
}

fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|raw| raw.parse().ok())
        .ok_or_else(|| StoreError(format!("item lacks numeric attribute '{name}'")))
}

pub(crate) fn idempotency_record(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    let bad = |what: &str| StoreError(format!("idempotency record: bad {what}"));
    Ok(IdempotencyRecord {
        operation: serde_json::from_value(serde_json::Value::String(
            text(item, "operation")?.to_owned(),
        ))
        .map_err(|_| bad("operation"))?,
        key: text(item, "key")?.to_owned(),
        fingerprint: text(item, "fingerprint")?.to_owned(),
        status: number(item, "status")?,
        response: serde_json::from_str(text(item, "response")?).map_err(|_| bad("response"))?,
        entry_id: text(item, "entry_id")?.to_owned(),
        created_at: chrono::DateTime::parse_from_rfc3339(text(item, "created_at")?)
            .map_err(|_| bad("created_at"))?
            .with_timezone(&chrono::Utc),
    })
}

/// Programs are stored as JSON text: the document is what the merchant wrote, and keeping it
/// as text keeps it exactly so.
pub(crate) fn program_item(program: &ActiveProgram, sk: String) -> Result<Item, StoreError> {
    let document =
        serde_json::to_string(&program.document).map_err(|e| StoreError(format!("encode: {e}")))?;
    let mut item = key(keys::PROGRAM_PK.to_owned(), sk);
    item.extend([
        ("version".to_owned(), n(program.version)),
        (
            "published_at".to_owned(),
            s(program.published_at.to_rfc3339()),
        ),
        ("document".to_owned(), s(document)),
    ]);
    if let Some(actor) = &program.created_by {
        item.insert("created_by".to_owned(), s(actor.as_str()));
    }
    Ok(item)
}

pub(crate) fn program(item: &Item) -> Result<ActiveProgram, StoreError> {
    Ok(ActiveProgram {
        version: number(item, "version")?,
        published_at: chrono::DateTime::parse_from_rfc3339(text(item, "published_at")?)
            .map_err(|_| StoreError("program: bad published_at".into()))?
            .with_timezone(&chrono::Utc),
        created_by: text(item, "created_by").ok().map(str::to_owned),
        document: serde_json::from_str(text(item, "document")?)
            .map_err(|e| StoreError(format!("program: bad document: {e}")))?,
    })
}

pub(crate) fn stock_used(item: &Item) -> u32 {
    number(item, "redeemed").unwrap_or(0)
}
