//! Reward codes at the till: look a code up, use it once, cancel it, and the sweep that releases
//! lapsed holds and settles expired codes. Every change moves the redemption record under a
//! condition on the version read, in the same transaction as the member's balance, so a `use`
//! and a `cancel` of one code racing each other have exactly one winner. Giving points back (a
//! cancel, a released hold, a refunded expired code) is a keyed movement under the
//! redemption's own key: whichever of them commits first is the only one.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use serde_json::json;

use super::due::DueIndex;
use super::{App, Attempt, Movement, Outcome, Read};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::Operation;
use crate::ids::{IdempotencyKey, MemberId};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::ports::{Commit, CommitError, MessageQueue, StockClaim, Store};
use crate::redemptions::{
    normalise_code, ExpiredCodePolicy, Lapse, Redemption, RedemptionStatus, RedemptionView, KIND,
};

/// Codes per sweep message.
pub const CODES_PER_MESSAGE: usize = 25;
/// Days before today the sweep looks at too, so an outage of up to a week is caught up by the
/// first run after it (settled records leave the index, so old days are usually empty: a
/// keys-only query each).
pub const CODE_SWEEP_CATCH_UP_DAYS: u64 = 7;

/// One sweep message: codes the due index lists under `day`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeBatch {
    pub day: NaiveDate,
    pub codes: Vec<String>,
}

/// What one sweep run sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CodeSweep {
    pub codes: usize,
    pub messages: usize,
}

/// What one sweep message settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CodeBatchReport {
    pub released: usize,
    pub expired: usize,
    /// Not due yet, or already settled (used, canceled, or by an earlier delivery).
    pub untouched: usize,
}

/// Why a redemption's points go back to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GiveBack {
    Cancel,
    ReleaseHold,
    RefundExpired,
}

impl GiveBack {
    fn cause(self) -> &'static str {
        match self {
            Self::Cancel => "canceled",
            Self::ReleaseHold => "hold_released",
            Self::RefundExpired => "code_expired",
        }
    }

    fn status(self) -> RedemptionStatus {
        match self {
            Self::Cancel => RedemptionStatus::Canceled,
            Self::ReleaseHold | Self::RefundExpired => RedemptionStatus::Expired,
        }
    }

    /// Whether `redemption` is in a state this give-back applies to at `now`; the refusal
    /// otherwise.
    fn admits(
        self,
        redemption: &Redemption,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ApiError> {
        let lapse = redemption.lapse_at(now);
        match (self, redemption.status, lapse) {
            (Self::Cancel, RedemptionStatus::Issued | RedemptionStatus::Held, None)
            | (Self::ReleaseHold, RedemptionStatus::Held, Some(Lapse::ReleaseHold))
            | (Self::RefundExpired, RedemptionStatus::Issued, Some(Lapse::ExpireCode)) => Ok(()),
            (_, RedemptionStatus::Used, _) => Err(already_used(&redemption.code)),
            _ => Err(not_usable(redemption, now)),
        }
    }
}

fn not_found(code: &str) -> ApiError {
    ApiError::new(ErrorCode::RedemptionNotFound, "no redemption has this code")
        .with_details(json!({ "code": code }))
}

/// A code from the path: one that cannot be a code is not found without a read, and is not
/// echoed back.
fn parse_code(raw: &str) -> Result<String, ApiError> {
    normalise_code(raw)
        .ok_or_else(|| ApiError::new(ErrorCode::RedemptionNotFound, "no redemption has this code"))
}

fn already_used(code: &str) -> ApiError {
    ApiError::new(ErrorCode::CodeAlreadyUsed, "the code was already used")
        .with_details(json!({ "code": code }))
}

fn not_usable(redemption: &Redemption, now: chrono::DateTime<chrono::Utc>) -> ApiError {
    let status = redemption.status_at(now);
    ApiError::new(
        ErrorCode::CodeNotUsable,
        format!("the code is {}", status.as_str()),
    )
    .with_details(json!({ "code": redemption.code, "status": status }))
}

/// A commit refused for a reason a new read may change is another attempt; anything else is
/// the store failing.
fn retry_or_fail<T>(error: CommitError) -> Result<Attempt<T>, ApiError> {
    match error {
        CommitError::RecordConflict { .. } | CommitError::StaleMember | CommitError::Conflict => {
            Ok(Attempt::Retry)
        }
        CommitError::Store(error) => Err(error.into()),
        other => {
            tracing::error!(error = %other, "a code write was refused for no reason it can have");
            Err(ApiError::internal())
        }
    }
}

impl<S: Store> App<S> {
    /// The redemption a code names and the record version read, strongly consistent. A member
    /// (`owner`) asking about another member's code hears that no such code exists.
    async fn redemption_by_code(
        &self,
        code: &str,
        owner: Option<&MemberId>,
    ) -> Result<(Redemption, u64), ApiError> {
        let record = self
            .store()
            .record(KIND, code)
            .await?
            .ok_or_else(|| not_found(code))?;
        let redemption: Redemption = record.parse()?;
        if owner.is_some_and(|owner| *owner != redemption.member_id) {
            return Err(not_found(code));
        }
        Ok((redemption, record.version))
    }

    /// `GET /v1/redemptions/{code}`.
    pub async fn redemption_view(
        &self,
        raw_code: &str,
        owner: Option<&MemberId>,
    ) -> Result<RedemptionView, ApiError> {
        let code = parse_code(raw_code)?;
        let (redemption, _) = self.redemption_by_code(&code, owner).await?;
        Ok(redemption.view(self.now()))
    }

    /// `POST /v1/redemptions/{code}/use`: the till takes the code, once. A held redemption's
    /// reserved points are confirmed spent in the same write.
    pub async fn use_code(&self, raw_code: &str) -> Result<RedemptionView, ApiError> {
        let code = parse_code(raw_code)?;
        let code = &code;
        self.retrying(|| async move {
            let (redemption, version) = self.redemption_by_code(code, None).await?;
            let now = self.now();
            match redemption.status_at(now) {
                RedemptionStatus::Issued | RedemptionStatus::Held => {}
                RedemptionStatus::Used => return Err(already_used(code)),
                RedemptionStatus::Canceled | RedemptionStatus::Expired => {
                    return Err(not_usable(&redemption, now))
                }
            }
            let used = redemption.moved(RedemptionStatus::Used, now);
            let mut commits = Vec::new();
            if redemption.status == RedemptionStatus::Held {
                commits.push(self.confirm_hold(&redemption).await?);
            }
            let write = used.replace(version).map_err(|_| ApiError::internal())?;
            match self.store().transact(commits, vec![write]).await {
                Ok(()) => Ok(Attempt::Done(used.view(now))),
                Err(error) => retry_or_fail(error),
            }
        })
        .await
    }

    /// The member with a hold's reserved points confirmed spent: they already left
    /// `available` when the hold was made, so no entry is written, only the reservation ends.
    async fn confirm_hold(&self, held: &Redemption) -> Result<Commit, ApiError> {
        let member = self
            .store()
            .member(&held.member_id)
            .await?
            .ok_or_else(|| super::member_not_found(&held.member_id))?;
        let expected_version = member.version;
        let mut next = member;
        next.balance.reserved = next.balance.reserved.saturating_sub(held.points).max(0);
        next.version += 1;
        Ok(Commit {
            member: next,
            expected_version: Some(expected_version),
            entry: None,
            idempotency: None,
            claim_referral_code: false,
            stock: None,
            tier_change: None,
        })
    }

    /// `POST /v1/redemptions/{code}/cancel`: the points, the stock unit and the per-member
    /// count come back. Cancelling a canceled code answers the same 200.
    pub async fn cancel_code(
        &self,
        raw_code: &str,
        owner: Option<&MemberId>,
    ) -> Result<RedemptionView, ApiError> {
        let code = parse_code(raw_code)?;
        let (redemption, _) = self.redemption_by_code(&code, owner).await?;
        if redemption.status == RedemptionStatus::Canceled {
            return Ok(redemption.view(self.now()));
        }
        match self.give_back(&redemption, GiveBack::Cancel).await {
            Ok(view) if view.status == RedemptionStatus::Canceled => Ok(view),
            // The key was taken by a release or a refund that won the race: the code is not
            // usable, and its points are back.
            Ok(view) => Err(ApiError::new(
                ErrorCode::CodeNotUsable,
                format!("the code is {}", view.status.as_str()),
            )
            .with_details(json!({ "code": code, "status": view.status }))),
            // A cancel that lost its race to another cancel is answered as that one was.
            Err(error) => match self.redemption_by_code(&code, owner).await {
                Ok((now, _)) if now.status == RedemptionStatus::Canceled => {
                    Ok(now.view(self.now()))
                }
                _ => Err(error),
            },
        }
    }

    /// Gives a redemption's points back on the keyed-movement path, under the redemption's own
    /// key; answers the redemption as it is after (or as the first give-back left it).
    async fn give_back(
        &self,
        redemption: &Redemption,
        why: GiveBack,
    ) -> Result<RedemptionView, ApiError> {
        let id = &redemption.redemption_id;
        let key = IdempotencyKey::parse(&format!("redemption_cancel:{id}"))?;
        let body = json!({ "redemption_id": id });
        let code = &redemption.code;
        let outcome = self
            .keyed_request(
                &redemption.member_id,
                Operation::RedemptionReversal,
                key,
                &body,
                |read| self.give_back_rules(read, code, why),
            )
            .await?;
        let (Outcome::Created(view) | Outcome::Replayed(view) | Outcome::Simulated(view)) = outcome;
        serde_json::from_value(view).map_err(|_| ApiError::internal())
    }

    /// A give-back's rules: the redemption, read again on every attempt, must still be in a
    /// state `why` applies to; the points return as a `reverse` entry, a held redemption's
    /// reservation ends, and the per-member count and the stock unit are released.
    async fn give_back_rules(
        &self,
        read: Read,
        code: &str,
        why: GiveBack,
    ) -> Result<Movement<()>, ApiError> {
        let Read {
            member,
            program_stamp,
        } = read;
        let (redemption, version) = self.redemption_by_code(code, None).await?;
        let now = self.now();
        why.admits(&redemption, now)?;
        let program = self.program_at_least(program_stamp).await?;
        let points = redemption.points;
        let reward_id = &redemption.reward_id;
        // The points go back into the lots the redemption took them from, with their dates.
        let redeemed = self
            .store()
            .entry(
                &member.member_id,
                &format!("redemption:{}", redemption.redemption_id),
            )
            .await
            .map_err(ApiError::from)?;
        let taken = redeemed.map(|entry| entry.lots).unwrap_or_default();
        let dating = program.document.expiry.dating(now);
        let mut next = member.with_restored(EntryType::Reverse, points, &taken, &dating)?;
        let balance = &mut next.balance;
        balance.lifetime_redeemed = balance.lifetime_redeemed.saturating_sub(points).max(0);
        if redemption.status == RedemptionStatus::Held {
            balance.reserved = balance.reserved.saturating_sub(points).max(0);
        }
        if let Some(count) = next.reward_counts.get_mut(reward_id.as_str()) {
            *count = count.saturating_sub(1);
        }
        let source = Source::RedemptionReversal {
            redemption_id: redemption.redemption_id.clone(),
            reward_id: reward_id.clone(),
            code: code.to_owned(),
            cause: why.cause().to_owned(),
        };
        let reward_name = program
            .reward(reward_id.as_str())
            .map_or_else(|| reward_id.to_string(), |r| r.name.clone());
        let entry = LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: member.member_id.clone(),
            entry_type: EntryType::Reverse,
            points,
            balance_after: next.balance.available,
            reason: format!("Redemption of {reward_name} given back ({})", why.cause()),
            breakdown: vec![BreakdownLine {
                rule: format!("reward:{reward_id}"),
                description: reward_name,
                points,
            }],
            source,
            lots: Vec::new(),
            pending: None,
            program_version: program.version,
            occurred_at: now,
            recorded_at: now,
        };
        let after = redemption.moved(why.status(), now);
        let response = super::to_json(&after.view(now))?;
        Ok(Movement {
            member: next,
            entry,
            stock: redemption.stock_claimed.then(|| StockClaim {
                reward_id: reward_id.clone(),
                stock: 0,
                release: true,
            }),
            tier_change: None,
            records: vec![after.replace(version).map_err(|_| ApiError::internal())?],
            others: Vec::new(),
            response,
            status: 200,
            duplicate: not_usable(&after, now),
            effects: (),
        })
    }

    /// The scheduled half of the sweep: sends the codes the due index lists for today (and the
    /// catch-up days) to `queue`, in batches.
    pub async fn plan_code_sweep(&self, queue: &dyn MessageQueue) -> Result<CodeSweep, ApiError> {
        let sent = self
            .fan_out_due(
                DueIndex::Records(KIND),
                CODE_SWEEP_CATCH_UP_DAYS,
                CODES_PER_MESSAGE,
                queue,
                |day, ids| CodeBatch {
                    day,
                    codes: ids.to_vec(),
                },
            )
            .await?;
        Ok(CodeSweep {
            codes: sent.items,
            messages: sent.messages,
        })
    }

    /// The queued half: settles every code of one message. An error fails the whole message,
    /// which is redelivered; settling is idempotent, so the codes it already settled are
    /// untouched the second time.
    pub async fn settle_code_batch(&self, body: &str) -> Result<CodeBatchReport, ApiError> {
        let batch: CodeBatch = serde_json::from_str(body)
            .map_err(|e| ApiError::new(ErrorCode::ValidationError, e.to_string()))?;
        let mut report = CodeBatchReport::default();
        for code in &batch.codes {
            match self.settle_code(code).await? {
                Some(Lapse::ReleaseHold) => report.released += 1,
                Some(Lapse::ExpireCode) => report.expired += 1,
                None => report.untouched += 1,
            }
        }
        Ok(report)
    }

    /// Releases a lapsed hold or settles an expired code, once: what this call did, or `None`
    /// when there was nothing to do (not due, or a `use`, a cancel or an earlier delivery got
    /// there first).
    pub async fn settle_code(&self, code: &str) -> Result<Option<Lapse>, ApiError> {
        let Some(record) = self.store().record(KIND, code).await? else {
            return Ok(None);
        };
        let redemption: Redemption = record.parse()?;
        let Some(lapse) = redemption.lapse_at(self.now()) else {
            return Ok(None);
        };
        let program = self.program().await?;
        let settled = match (lapse, program.document.codes.expired_codes) {
            (Lapse::ReleaseHold, _) => self.give_back(&redemption, GiveBack::ReleaseHold).await,
            (Lapse::ExpireCode, ExpiredCodePolicy::Refund) => {
                self.give_back(&redemption, GiveBack::RefundExpired).await
            }
            (Lapse::ExpireCode, ExpiredCodePolicy::Forfeit) => self.forfeit(code).await,
        };
        match settled {
            Ok(view) if view.status == RedemptionStatus::Expired => Ok(Some(lapse)),
            Ok(_) => Ok(None),
            Err(error)
                if matches!(
                    error.code,
                    ErrorCode::CodeAlreadyUsed | ErrorCode::CodeNotUsable
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// An expired unused code under the `forfeit` policy: only the record moves; the points
    /// stay spent.
    async fn forfeit(&self, code: &str) -> Result<RedemptionView, ApiError> {
        self.retrying(|| async move {
            let (redemption, version) = self.redemption_by_code(code, None).await?;
            let now = self.now();
            GiveBack::RefundExpired.admits(&redemption, now)?;
            let expired = redemption.moved(RedemptionStatus::Expired, now);
            let write = expired.replace(version).map_err(|_| ApiError::internal())?;
            match self.store().transact(Vec::new(), vec![write]).await {
                Ok(()) => Ok(Attempt::Done(expired.view(now))),
                Err(error) => retry_or_fail(error),
            }
        })
        .await
    }
}
