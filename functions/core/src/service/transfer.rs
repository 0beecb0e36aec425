//! Transfers: a member gives points to another member. One transaction debits the sender and
//! credits the receiver — a `transfer` entry on each side with its own `balance_after`, both
//! members under their version conditions — and counts the sender's day in a counter item under
//! its own condition; or nothing happens. Two members sending to each other at once never
//! deadlock: DynamoDB cancels one transaction instead of waiting, and the loser retries on a
//! fresh read.

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{missing_key, parse_body, to_json, App, Movement, Outcome, Read};
use crate::commands::TransferRequest;
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::Operation;
use crate::ids::{IdempotencyKey, MemberId};
use crate::ledger::{EntryType, LedgerEntry, Source, TransferDirection};
use crate::member::{Balance, Member, MemberStatus};
use crate::ports::{Commit, Expect, Record, RecordWrite, Store};
use crate::program::TransferDay;
use crate::Points;

/// The record kind of a sender's per-day counter; one item per member and UTC day.
pub const TRANSFER_DAY: &str = "transfer_day";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferReceipt {
    pub transfer_id: String,
    pub to_member_id: MemberId,
    pub points: Points,
    /// The sender's balance after the transfer.
    pub balance: Balance,
}

/// The transfer's id comes from its business key (sender + Idempotency-Key), so a retried
/// request can only ever name the same transfer, and both entry ids follow from it.
fn transfer_id(sender: &MemberId, key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(format!("{sender}\n{}", key.as_str()).as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("trf_{hex}")
}

fn day_counter_id(sender: &MemberId, day: chrono::NaiveDate) -> String {
    format!("{sender}:{day}")
}

/// How long a day's counter is kept after its day: it is only read on its own day, so the
/// table's TTL removes it (at leisure) after that.
const COUNTER_KEPT_DAYS: u64 = 2;

/// The counter's body, with the `expires_at` the store turns into the item's TTL.
fn counter_body(day: &TransferDay, now: chrono::DateTime<chrono::Utc>) -> Result<Value, ApiError> {
    let mut body = to_json(day)?;
    let expires_at = (now.date_naive() + chrono::Days::new(COUNTER_KEPT_DAYS))
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp();
    body["expires_at"] = json!(expires_at);
    Ok(body)
}

fn receiver_refused(code: ErrorCode, message: String, receiver: &MemberId) -> ApiError {
    ApiError::new(code, message)
        .with_details(json!({ "field": "to_member_id", "to_member_id": receiver }))
}

/// What both sides of one transfer share.
struct Transfer<'a> {
    transfer_id: &'a str,
    note: &'a Option<String>,
    program_version: u64,
    now: chrono::DateTime<chrono::Utc>,
}

impl Transfer<'_> {
    /// One side of the transfer as a ledger entry of the member after it.
    fn side(
        &self,
        after: &Member,
        direction: TransferDirection,
        points: Points,
        counterparty: &MemberId,
    ) -> LedgerEntry {
        let source = Source::Transfer {
            transfer_id: self.transfer_id.to_owned(),
            direction,
            counterparty: counterparty.clone(),
            note: self.note.clone(),
        };
        let reason = match direction {
            TransferDirection::Out => format!("Sent to {counterparty}"),
            TransferDirection::In => format!("Received from {counterparty}"),
        };
        LedgerEntry {
            entry_id: source.entry_id(),
            seq: after.last_seq,
            member_id: after.member_id.clone(),
            entry_type: EntryType::Transfer,
            points,
            balance_after: after.balance.available,
            reason,
            breakdown: Vec::new(),
            source,
            program_version: self.program_version,
            occurred_at: self.now,
            recorded_at: self.now,
            lots: Vec::new(),
            pending: None,
        }
    }
}

impl<S: Store> App<S> {
    /// Moves points from `member_id` to the request's receiver under the program's transfer
    /// policy.
    pub async fn transfer(
        &self,
        member_id: &MemberId,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let request: TransferRequest = parse_body(body)?;
        request.validate()?;
        let key = key.ok_or_else(|| missing_key("transfers need"))?;
        if &request.to_member_id == member_id {
            return Err(receiver_refused(
                ErrorCode::TransferToSelf,
                "a member cannot transfer points to itself".into(),
                &request.to_member_id,
            ));
        }
        let transfer_id = transfer_id(member_id, &key);
        self.keyed_request(member_id, Operation::Transfer, key, body, |read| {
            self.transfer_rules(read, &request, &transfer_id)
        })
        .await
    }

    /// A transfer's rules: the program allows it for this sender today, the receiver exists and
    /// is active, and the sender can afford it.
    async fn transfer_rules(
        &self,
        read: Read,
        request: &TransferRequest,
        transfer_id: &str,
    ) -> Result<Movement<()>, ApiError> {
        let Read {
            member: sender,
            program_stamp,
        } = read;
        let now = self.now();
        let program = self.program_at_least(program_stamp).await?;
        let receiver_id = &request.to_member_id;
        let counter_id = day_counter_id(&sender.member_id, now.date_naive());
        // One store call at a time: a request stays one sequence of calls, so its interleavings
        // with other requests are the ones the simulator's scheduler explores.
        let receiver = self.store().member(receiver_id).await?;
        let counter = self.store().record(TRANSFER_DAY, &counter_id).await?;
        let sent_today: TransferDay = match &counter {
            Some(record) => record.parse()?,
            None => TransferDay::default(),
        };
        let points = request.points;
        program
            .document
            .transfers
            .allows(&sender.tier, points, sent_today)?;
        let receiver = receiver.ok_or_else(|| {
            receiver_refused(
                ErrorCode::ReceiverNotFound,
                format!("no member '{receiver_id}' to receive the points"),
                receiver_id,
            )
        })?;
        if receiver.status != MemberStatus::Active {
            return Err(receiver_refused(
                ErrorCode::ReceiverInactive,
                format!("member '{receiver_id}' cannot receive points"),
                receiver_id,
            ));
        }
        if sender.balance.available < points {
            return Err(ApiError::new(
                ErrorCode::InsufficientPoints,
                format!(
                    "the transfer is {points} points; {} available",
                    sender.balance.available
                ),
            )
            .with_details(json!({ "available": sender.balance.available, "required": points })));
        }

        // Transferred points get a fresh date on the receiver's side, as if earned today.
        let dating = program.document.expiry.dating(now);
        let sender_after = sender.with_entry(EntryType::Transfer, -points, &dating)?;
        let receiver_after = receiver.with_entry(EntryType::Transfer, points, &dating)?;
        let transfer = Transfer {
            transfer_id,
            note: &request.note,
            program_version: program.version,
            now,
        };
        let mut out = transfer.side(&sender_after, TransferDirection::Out, -points, receiver_id);
        out.lots = sender_after.lots_taken(&sender);
        let incoming = transfer.side(
            &receiver_after,
            TransferDirection::In,
            points,
            &sender.member_id,
        );
        let overflow = || ApiError::new(ErrorCode::CounterOverflow, "the transfer counter is full");
        let day = TransferDay {
            transfers: sent_today.transfers.checked_add(1).ok_or_else(overflow)?,
            points: sent_today.points.checked_add(points).ok_or_else(overflow)?,
        };
        let counter = RecordWrite {
            expect: counter
                .as_ref()
                .map_or(Expect::Absent, |r| Expect::Version(r.version)),
            record: Record {
                kind: TRANSFER_DAY.to_owned(),
                id: counter_id,
                owner: None,
                version: counter.as_ref().map_or(1, |r| r.version + 1),
                due: None,
                body: counter_body(&day, now)?,
            },
        };
        let response = to_json(&TransferReceipt {
            transfer_id: transfer_id.to_owned(),
            to_member_id: receiver_id.clone(),
            points,
            balance: sender_after.balance,
        })?;
        Ok(Movement {
            member: sender_after,
            entry: out,
            stock: None,
            tier_change: None,
            records: vec![counter],
            others: vec![Commit {
                expected_version: Some(receiver.version),
                member: receiver_after,
                entry: Some(incoming),
                idempotency: None,
                claim_referral_code: false,
                stock: None,
                tier_change: None,
            }],
            response,
            status: 201,
            duplicate: ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this transfer was already recorded",
            ),
            effects: (),
        })
    }
}
