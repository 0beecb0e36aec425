//! Adjustments: points customer service gives (goodwill) or takes (correcting an error), each an
//! `adjust` entry that records who did it and why.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{missing_key, parse_body, to_json, App, Movement, Outcome, Read};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{derived_id, Operation};
use crate::ids::{IdempotencyKey, MemberId};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::Balance;
use crate::ports::Store;
use crate::Points;

/// The largest adjustment either way: a typo of a few extra digits is refused, not paid.
pub const MAX_ADJUSTMENT: Points = 10_000_000;
const MAX_REASON: usize = 200;
const MAX_NOTE: usize = 1_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    pub points: Points,
    pub reason: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdjustmentReceipt {
    pub entry_id: String,
    pub points: Points,
    pub balance: Balance,
    pub actor: String,
}

/// Free text shown in the audit trail: trimmed, not blank, bounded, no control characters.
fn audit_text(field: &str, raw: &str, max: usize) -> Result<String, ApiError> {
    let text = raw.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(text.to_owned())
}

impl AdjustmentRequest {
    fn validated(mut self) -> Result<Self, ApiError> {
        if self.points == 0 || self.points.abs() > MAX_ADJUSTMENT {
            return Err(ApiError::invalid(
                "points",
                format!("points must be non-zero and at most {MAX_ADJUSTMENT} either way"),
            ));
        }
        self.reason = audit_text("reason", &self.reason, MAX_REASON)?;
        self.note = self
            .note
            .as_deref()
            .map(|note| audit_text("note", note, MAX_NOTE))
            .transpose()?;
        Ok(self)
    }
}

impl<S: Store> App<S> {
    /// `POST /v1/admin/members/{id}/adjustments` by `actor` (the token's `sub`). A negative
    /// adjustment follows the program's `return_policy` when the points are already spent.
    pub async fn adjust(
        &self,
        actor: &str,
        member_id: &MemberId,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let request = parse_body::<AdjustmentRequest>(body)?.validated()?;
        let key = key.ok_or_else(|| missing_key("adjustments need"))?;
        let adjustment_id = derived_id("adj_", Operation::Adjustment, &key);
        self.keyed_request(member_id, Operation::Adjustment, key, body, |read| {
            self.adjustment_rules(read, actor, &adjustment_id, &request)
        })
        .await
    }

    async fn adjustment_rules(
        &self,
        read: Read,
        actor: &str,
        adjustment_id: &str,
        request: &AdjustmentRequest,
    ) -> Result<Movement<()>, ApiError> {
        let Read {
            member,
            program_stamp,
        } = read;
        let program = self.program_at_least(program_stamp).await?;
        let now = self.now();
        let available = member.balance.available;
        let points = if request.points > 0 {
            request.points
        } else {
            program
                .document
                .return_policy
                .take_back(request.points, available)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InsufficientPoints,
                        format!(
                            "the adjustment takes {} points; {available} available",
                            -request.points
                        ),
                    )
                    .with_details(json!({ "available": available, "required": -request.points }))
                })?
        };
        let next = member.with_entry(
            EntryType::Adjust,
            points,
            &program.document.expiry.dating(now),
        )?;
        let source = Source::Adjustment {
            adjustment_id: adjustment_id.to_owned(),
            actor: actor.to_owned(),
            note: request.note.clone(),
        };
        let entry = LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: member.member_id.clone(),
            entry_type: EntryType::Adjust,
            points,
            balance_after: next.balance.available,
            reason: request.reason.clone(),
            breakdown: vec![BreakdownLine {
                rule: "adjustment".into(),
                description: request.reason.clone(),
                points,
            }],
            source,
            program_version: program.version,
            occurred_at: now,
            recorded_at: now,
            lots: next.lots_taken(&member),
            pending: None,
        };
        let response = to_json(&AdjustmentReceipt {
            entry_id: entry.entry_id.clone(),
            points,
            balance: next.balance,
            actor: actor.to_owned(),
        })?;
        Ok(Movement {
            member: next,
            entry,
            stock: None,
            tier_change: None,
            records: Vec::new(),
            others: Vec::new(),
            response,
            status: 201,
            duplicate: ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this adjustment was already recorded",
            ),
            effects: (),
        })
    }
}
