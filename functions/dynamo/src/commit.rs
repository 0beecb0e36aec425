//! One points movement = one `TransactWriteItems`. Each write carries the condition that makes
//! it safe to retry, and a cancelled transaction is read reason by reason to tell the caller
//! which rule stopped it.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, Put, ReturnConsumedCapacity, TransactWriteItem, Update,
};
use loyalty_core::ports::{Commit, CommitError, RecordWrite, StoreError};

use tracing::Instrument;

use crate::capacity::Units;
use crate::items::{self, key, n};
use crate::{keys, observed, DynamoStore};

/// What each write in the transaction is for, in transaction order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    CreateMember,
    UpdateMember,
    LedgerEntry,
    EntryGuard,
    /// The program-wide guard of a business key (an order): held by another member, or by this
    /// one; either way the entry is a duplicate.
    ProgramKey,
    Idempotency,
    ReferralCode,
    Stock,
    TierHistory,
    Record,
}

const NEW_ITEM: &str = "attribute_not_exists(pk)";

fn put(table: &str, item: items::Item, condition: &str) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .set_item(Some(item))
        .condition_expression(condition)
        .table_name(table)
        .build()
        .map_err(|e| StoreError(format!("build put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

impl DynamoStore {
    fn writes(&self, commit: &Commit) -> Result<Vec<(Role, TransactWriteItem)>, StoreError> {
        let table = &*self.table;
        let member_pk = keys::member_pk(&commit.member.member_id);
        let mut writes = Vec::with_capacity(6);
        let member = items::member_item(&commit.member)?;
        match commit.expected_version {
            None => writes.push((Role::CreateMember, put(table, member, NEW_ITEM)?)),
            Some(version) => {
                let mut write = put(table, member, "version = :expected")?;
                if let Some(put) = write.put.as_mut() {
                    put.expression_attribute_values =
                        Some([(":expected".to_owned(), n(version))].into());
                }
                writes.push((Role::UpdateMember, write));
            }
        }
        if let Some(entry) = &commit.entry {
            writes.push((
                Role::LedgerEntry,
                put(table, items::entry_item(entry)?, NEW_ITEM)?,
            ));
            let mut guard = key(member_pk.clone(), keys::entry_guard_sk(&entry.entry_id));
            guard.insert("seq".to_owned(), n(entry.seq));
            writes.push((Role::EntryGuard, put(table, guard, NEW_ITEM)?));
            if let Some(unique) = entry.source.program_key() {
                let mut item = key(keys::unique_pk(&unique), keys::UNIQUE_SK);
                item.insert(
                    "member_id".to_owned(),
                    items::s(commit.member.member_id.as_str()),
                );
                writes.push((Role::ProgramKey, put(table, item, NEW_ITEM)?));
            }
        }
        if let Some(record) = &commit.idempotency {
            writes.push((
                Role::Idempotency,
                put(
                    table,
                    items::idempotency_item(member_pk.clone(), record),
                    NEW_ITEM,
                )?,
            ));
        }
        if commit.claim_referral_code {
            let mut code = key(
                keys::referral_pk(&commit.member.referral_code),
                keys::REFERRAL_SK,
            );
            code.insert(
                "member_id".to_owned(),
                items::s(commit.member.member_id.as_str()),
            );
            writes.push((Role::ReferralCode, put(table, code, NEW_ITEM)?));
        }
        if let Some(change) = &commit.tier_change {
            let item = items::tier_change_item(&commit.member, change)?;
            writes.push((Role::TierHistory, put(table, item, NEW_ITEM)?));
        }
        if let Some(claim) = commit.stock.as_ref().filter(|claim| claim.release) {
            // A unit given back: the counter goes down, never below zero.
            let update = Update::builder()
                .table_name(table)
                .set_key(Some(key(keys::stock_pk(&claim.reward_id), keys::STOCK_SK)))
                .update_expression("SET redeemed = redeemed - :one")
                .condition_expression("redeemed >= :one")
                .expression_attribute_values(":one", n(1))
                .build()
                .map_err(|e| StoreError(format!("build update: {e}")))?;
            writes.push((
                Role::Stock,
                TransactWriteItem::builder().update(update).build(),
            ));
        } else if let Some(claim) = &commit.stock {
            // A counter of units taken, checked against the stock the program sets now: raising
            // the stock in a new program version frees units without touching this item.
            let update = Update::builder()
                .table_name(table)
                .set_key(Some(key(keys::stock_pk(&claim.reward_id), keys::STOCK_SK)))
                .update_expression("SET redeemed = if_not_exists(redeemed, :zero) + :one")
                .condition_expression("attribute_not_exists(redeemed) OR redeemed < :stock")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":stock", n(claim.stock))
                .build()
                .map_err(|e| StoreError(format!("build update: {e}")))?;
            writes.push((
                Role::Stock,
                TransactWriteItem::builder().update(update).build(),
            ));
        }
        Ok(writes)
    }

    pub(crate) async fn transact_all(
        &self,
        commits: &[Commit],
        records: &[RecordWrite],
    ) -> Result<(), CommitError> {
        let mut planned = Vec::new();
        for commit in commits {
            planned.extend(self.writes(commit)?);
        }
        for write in records {
            planned.push((Role::Record, self.record_write(write)?));
        }
        let (roles, writes): (Vec<Role>, Vec<TransactWriteItem>) = planned.into_iter().unzip();
        let span = tracing::info_span!("transact_write_items", items = writes.len());
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .instrument(span)
            .await;
        match result {
            Ok(output) => {
                self.meter.record(Units::Write, output.consumed_capacity());
                observed::committed(commits);
                Ok(())
            }
            Err(error) => {
                self.meter.record(Units::Write, []);
                let error = classify_error(error, &roles);
                observed::refused(&error);
                match error {
                    // Name the record: its position among the record writes is its position here.
                    CommitError::RecordConflict { id, .. } => {
                        let nth: usize = id.parse().unwrap_or(0);
                        let record = &records[nth.min(records.len().saturating_sub(1))].record;
                        Err(CommitError::RecordConflict {
                            kind: record.kind.clone(),
                            id: record.id.clone(),
                        })
                    }
                    other => Err(other),
                }
            }
        }
    }
}

fn classify_error<R: std::fmt::Debug + Send + Sync + 'static>(
    error: SdkError<TransactWriteItemsError, R>,
    roles: &[Role],
) -> CommitError {
    match error.into_service_error() {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => {
            classify_cancellation(cancelled.cancellation_reasons(), roles)
        }
        TransactWriteItemsError::TransactionInProgressException(_)
        | TransactWriteItemsError::ProvisionedThroughputExceededException(_)
        | TransactWriteItemsError::RequestLimitExceeded(_)
        | TransactWriteItemsError::ThrottlingException(_) => CommitError::Conflict,
        other => CommitError::Store(StoreError(format!("TransactWriteItems: {other}"))),
    }
}

/// Reads the per-write reasons of a cancelled transaction. A definite rule violation (the key
/// was used, the entry exists, stock ran out) wins over a transient one (a conflict, a stale
/// member), because retrying cannot change a definite answer.
pub fn classify_cancellation(reasons: &[CancellationReason], roles: &[Role]) -> CommitError {
    let failed = |role: Role| {
        roles
            .iter()
            .zip(reasons)
            .any(|(r, reason)| *r == role && reason.code() == Some("ConditionalCheckFailed"))
    };
    // An existing member also holds its welcome entry, so "exists" is checked before the guard.
    if failed(Role::Idempotency) {
        CommitError::IdempotencyKeyTaken
    } else if failed(Role::CreateMember) {
        CommitError::MemberExists
    } else if failed(Role::EntryGuard) || failed(Role::ProgramKey) {
        CommitError::DuplicateEntry
    } else if failed(Role::ReferralCode) {
        CommitError::ReferralCodeTaken
    } else if failed(Role::Stock) {
        CommitError::OutOfStock
    } else if let Some(nth) = roles
        .iter()
        .zip(reasons)
        .filter(|(role, _)| **role == Role::Record)
        .position(|(_, reason)| reason.code() == Some("ConditionalCheckFailed"))
    {
        // The caller maps the position among record writes back to the record.
        CommitError::RecordConflict {
            kind: String::new(),
            id: nth.to_string(),
        }
    } else if reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
    {
        CommitError::Conflict
    } else if failed(Role::UpdateMember) || failed(Role::LedgerEntry) || failed(Role::TierHistory) {
        CommitError::StaleMember
    } else {
        let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
        CommitError::Store(StoreError(format!("transaction cancelled: {codes:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(codes: &[&str]) -> Vec<CancellationReason> {
        codes
            .iter()
            .map(|c| CancellationReason::builder().code(*c).build())
            .collect()
    }

    const ACCRUAL: [Role; 4] = [
        Role::UpdateMember,
        Role::LedgerEntry,
        Role::EntryGuard,
        Role::Idempotency,
    ];

    #[test]
    fn a_used_key_wins_over_everything_else() {
        let error = classify_cancellation(
            &reasons(&[
                "ConditionalCheckFailed",
                "None",
                "ConditionalCheckFailed",
                "ConditionalCheckFailed",
            ]),
            &ACCRUAL,
        );
        assert!(matches!(error, CommitError::IdempotencyKeyTaken));
    }

    #[test]
    fn a_recorded_order_is_a_duplicate_not_a_retry() {
        let error = classify_cancellation(
            &reasons(&[
                "ConditionalCheckFailed",
                "None",
                "ConditionalCheckFailed",
                "None",
            ]),
            &ACCRUAL,
        );
        assert!(matches!(error, CommitError::DuplicateEntry));
    }

    #[test]
    fn an_order_held_by_another_member_is_a_duplicate_that_names_no_one() {
        let roles = [
            Role::UpdateMember,
            Role::LedgerEntry,
            Role::EntryGuard,
            Role::ProgramKey,
            Role::Idempotency,
        ];
        let error = classify_cancellation(
            &reasons(&["None", "None", "None", "ConditionalCheckFailed", "None"]),
            &roles,
        );
        assert!(matches!(error, CommitError::DuplicateEntry));
    }

    #[test]
    fn conflicts_and_stale_members_are_retried() {
        let conflict = classify_cancellation(
            &reasons(&["TransactionConflict", "None", "None", "None"]),
            &ACCRUAL,
        );
        assert!(matches!(conflict, CommitError::Conflict));
        let stale = classify_cancellation(
            &reasons(&["ConditionalCheckFailed", "None", "None", "None"]),
            &ACCRUAL,
        );
        assert!(matches!(stale, CommitError::StaleMember));
    }

    #[test]
    fn an_existing_member_is_reported_as_such_not_as_its_welcome_entry() {
        let roles = [
            Role::CreateMember,
            Role::LedgerEntry,
            Role::EntryGuard,
            Role::ReferralCode,
        ];
        let error = classify_cancellation(
            &reasons(&[
                "ConditionalCheckFailed",
                "ConditionalCheckFailed",
                "ConditionalCheckFailed",
                "None",
            ]),
            &roles,
        );
        assert!(matches!(error, CommitError::MemberExists));
    }

    #[test]
    fn out_of_stock_and_unknown_reasons() {
        let roles = [
            Role::UpdateMember,
            Role::LedgerEntry,
            Role::EntryGuard,
            Role::Idempotency,
            Role::Stock,
        ];
        let stock = classify_cancellation(
            &reasons(&["None", "None", "None", "None", "ConditionalCheckFailed"]),
            &roles,
        );
        assert!(matches!(stock, CommitError::OutOfStock));
        let odd = classify_cancellation(
            &reasons(&["ValidationError", "None", "None", "None", "None"]),
            &roles,
        );
        assert!(matches!(odd, CommitError::Store(_)));
    }
}
