//! The keyed-movement path: snapshot → replay → rules → commit → settle → back off, written once.
//! A points movement (an accrual, a redemption, a return, an adjustment, a cancellation) is its
//! rules and nothing else: given the member as read and the program stamp read with it, the rules
//! say what to write and what to answer; this path reads, replays a key already used, writes
//! everything in one conditional transaction with the idempotency record, and turns a lost race
//! into another attempt.

use serde_json::Value;

use super::{member_not_found, App, Attempt, Outcome};
use crate::error::ApiError;
use crate::idempotency::{fingerprint, IdempotencyRecord, IdempotencyScope, Operation};
use crate::ids::{IdempotencyKey, MemberId};
use crate::ledger::LedgerEntry;
use crate::member::Member;
use crate::ports::{Commit, RecordWrite, StockClaim, Store};
use crate::tiers::TierChange;

/// What a movement writes and answers, decided by its rules from one read of the member.
pub(crate) struct Movement<E> {
    /// The member after the movement.
    pub member: Member,
    pub entry: LedgerEntry,
    pub stock: Option<StockClaim>,
    pub tier_change: Option<TierChange>,
    /// Records written in the same transaction (an order's returns so far, a referral).
    pub records: Vec<RecordWrite>,
    /// Other members' changes in the same transaction (a referrer's bonus clawed back), each
    /// under its own version.
    pub others: Vec<Commit>,
    /// The response body, stored with the idempotency record so a retry answers it again.
    pub response: Value,
    /// The status the response is stored with (201 for every movement so far).
    pub status: u16,
    /// What the caller hears when the entry already exists under another key.
    pub duplicate: ApiError,
    /// Handed back after a successful commit (never on a replay), for the work that follows it.
    pub effects: E,
}

/// Who the movement is for and the key it is recorded under.
pub(crate) struct Keyed<'a> {
    pub member_id: &'a MemberId,
    /// `None` is a dry run: read, run the rules, write nothing and answer `Simulated`.
    pub scope: Option<&'a IdempotencyScope>,
    pub fingerprint: &'a str,
}

/// One read of the member, with the program stamp the store read in the same round trip.
pub(crate) struct Read {
    pub member: Member,
    pub program_stamp: Option<u64>,
}

impl<S: Store> App<S> {
    /// The movement a keyed request asks for: `operation` and `key` name it, `body` is what a
    /// retry under the same key must repeat. Answers the outcome only.
    pub(crate) async fn keyed_request<E, Fut>(
        &self,
        member_id: &MemberId,
        operation: Operation,
        key: IdempotencyKey,
        body: &Value,
        rules: impl Fn(Read) -> Fut,
    ) -> Result<Outcome, ApiError>
    where
        Fut: std::future::Future<Output = Result<Movement<E>, ApiError>>,
    {
        let fingerprint = fingerprint(operation, body);
        let scope = IdempotencyScope { operation, key };
        let keyed = Keyed {
            member_id,
            scope: Some(&scope),
            fingerprint: &fingerprint,
        };
        let (outcome, _) = self.keyed_movement(keyed, rules).await?;
        Ok(outcome)
    }

    /// Runs a movement's `rules` on the keyed-movement path. Returns the outcome, and the
    /// movement's effects when this call wrote it.
    pub(crate) async fn keyed_movement<E, Fut>(
        &self,
        keyed: Keyed<'_>,
        rules: impl Fn(Read) -> Fut,
    ) -> Result<(Outcome, Option<E>), ApiError>
    where
        Fut: std::future::Future<Output = Result<Movement<E>, ApiError>>,
    {
        let Keyed {
            member_id,
            scope,
            fingerprint,
        } = keyed;
        let rules = &rules;
        self.retrying(|| async move {
            let snapshot = self.store().snapshot(member_id, scope).await?;
            if let Some(record) = snapshot.replay {
                let replayed = Outcome::Replayed(record.replay(fingerprint)?);
                return Ok(Attempt::Done((replayed, None)));
            }
            let member = snapshot.member.ok_or_else(|| member_not_found(member_id))?;
            let expected_version = member.version;
            let read = Read {
                member,
                program_stamp: snapshot.program_version,
            };
            let movement = rules(read).await?;
            let Some(scope) = scope else {
                return Ok(Attempt::Done((Outcome::Simulated(movement.response), None)));
            };
            let now = self.now();
            let commit = Commit {
                member: movement.member,
                expected_version: Some(expected_version),
                idempotency: Some(IdempotencyRecord {
                    operation: scope.operation,
                    key: scope.key.as_str().to_owned(),
                    fingerprint: fingerprint.to_owned(),
                    status: movement.status,
                    response: movement.response.clone(),
                    entry_id: movement.entry.entry_id.clone(),
                    created_at: now,
                }),
                entry: Some(movement.entry),
                claim_referral_code: false,
                stock: movement.stock,
                tier_change: movement.tier_change,
            };
            let mut commits = vec![commit];
            commits.extend(movement.others);
            match self.store().transact(commits, movement.records).await {
                Ok(()) => Ok(Attempt::Done((
                    Outcome::Created(movement.response),
                    Some(movement.effects),
                ))),
                Err(error) => {
                    let duplicate = movement.duplicate;
                    match self
                        .settle(error, member_id, scope, fingerprint, || duplicate)
                        .await?
                    {
                        Attempt::Done(outcome) => Ok(Attempt::Done((outcome, None))),
                        Attempt::Retry => Ok(Attempt::Retry),
                    }
                }
            }
        })
        .await
    }
}
