//! Referral processing: the record written at enrolment, the message an accrual sends when the
//! referee first qualifies, the worker's decision (reward both sides in one transaction, or
//! reject with a reason), the daily expiry sweep and the member's list.
//!
//! Exactly once per referral: the decision is written as a version-guarded update of the
//! referral record in the same transaction as both bonus entries (whose ids are derived from the
//! referral) and the referrer's counters (guarded by the referrer's version). A second delivery
//! finds the referral decided and does nothing; a racing delivery loses the transaction and then
//! finds it decided.

use chrono::{DateTime, Days, Utc};
use serde::{Deserialize, Serialize};

use super::{member_not_found, to_json, App, Attempt};
use crate::error::ApiError;
use crate::ids::MemberId;
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::Member;
use crate::ports::{Commit, CommitError, Expect, Record, RecordWrite, Store, REVIEW_SHARDS};
use crate::referrals::{
    decide, referee_of, referral_id, Decision, Referral, ReferralList, ReferralPolicy,
    ReferralStatus, RejectReason, KIND,
};
use crate::Points;

/// Due days the sweep looks back over, so that a missed run (or a referral whose expiry falls
/// later in its due day) is caught up.
pub const SWEEP_CATCH_UP_DAYS: u64 = 7;

/// The body of a referral-queue message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralMessage {
    pub referral_id: String,
}

/// Where a referral stands after processing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferralOutcome {
    pub referral_id: String,
    pub status: ReferralStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
    /// Whether this call decided it (false: it was already decided, or is still waiting).
    pub changed: bool,
}

impl ReferralOutcome {
    fn of(referral: &Referral, changed: bool) -> Self {
        Self {
            referral_id: referral.referral_id.clone(),
            status: referral.status,
            reason: referral.reason,
            changed,
        }
    }
}

/// Why a referral message could not be settled now; every variant is retried by redelivery.
#[derive(Debug, thiserror::Error)]
pub enum ReferralError {
    #[error("malformed referral message: {0}")]
    Malformed(String),
    /// The referral or one of its members is not visible yet (the message overtook the
    /// enrolment), or was never written.
    #[error("{0} is not visible yet")]
    NotVisible(String),
    /// The referee has not made a qualifying purchase yet.
    #[error("referral '{0}' is waiting for the referee's first qualifying purchase")]
    Waiting(String),
    #[error("{}", .0.message)]
    Api(ApiError),
}

impl From<ApiError> for ReferralError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<crate::ports::StoreError> for ReferralError {
    fn from(error: crate::ports::StoreError) -> Self {
        Self::Api(error.into())
    }
}

/// What one run of the expiry sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Referrals found due.
    pub examined: usize,
    /// Marked `expired` by this run.
    pub expired: usize,
    /// Rewarded or rejected by this run (their message had been lost).
    pub decided: usize,
    pub failed: usize,
}

/// The record of a new pending referral, created in the enrolment transaction.
pub(crate) fn new_referral_record(
    referrer: &MemberId,
    referee: &MemberId,
    policy: &ReferralPolicy,
    now: DateTime<Utc>,
) -> Result<RecordWrite, ApiError> {
    let referral = Referral::pending(referrer, referee, policy, now);
    Ok(RecordWrite {
        record: Record {
            kind: KIND.to_owned(),
            id: referral.referral_id.clone(),
            owner: Some(referrer.as_str().to_owned()),
            version: 1,
            due: Some(referral.due()),
            body: to_json(&referral)?,
        },
        expect: Expect::Absent,
    })
}

struct Bonus<'a> {
    referral_id: &'a str,
    role: &'static str,
    points: Points,
    description: String,
    program_version: u64,
    now: DateTime<Utc>,
    dating: &'a crate::expiry::Dating,
}

/// `member` after a referral bonus (a version bump only, when the bonus is zero).
fn bonus_commit(
    member: &Member,
    bonus: Bonus<'_>,
) -> Result<(Member, Option<LedgerEntry>), ApiError> {
    if bonus.points <= 0 {
        let mut next = member.clone();
        next.version += 1;
        return Ok((next, None));
    }
    let next = member.with_entry(EntryType::Bonus, bonus.points, bonus.dating)?;
    let source = Source::Referral {
        referral_id: bonus.referral_id.to_owned(),
        role: bonus.role.to_owned(),
    };
    let entry = LedgerEntry {
        entry_id: source.entry_id(),
        seq: next.last_seq,
        member_id: member.member_id.clone(),
        entry_type: EntryType::Bonus,
        points: bonus.points,
        balance_after: next.balance.available,
        reason: format!("Referral bonus ({})", bonus.role),
        breakdown: vec![BreakdownLine {
            rule: format!("referral_{}", bonus.role),
            description: bonus.description,
            points: bonus.points,
        }],
        source,
        program_version: bonus.program_version,
        occurred_at: bonus.now,
        recorded_at: bonus.now,
        lots: Vec::new(),
        pending: None,
    };
    Ok((next, Some(entry)))
}

fn commit_of(before: &Member, (member, entry): (Member, Option<LedgerEntry>)) -> Commit {
    Commit {
        member,
        expected_version: Some(before.version),
        entry,
        idempotency: None,
        claim_referral_code: false,
        stock: None,
        tier_change: None,
    }
}

impl<S: Store> App<S> {
    /// Handles one referral-queue message. `Err` means "not now": the message must be retried
    /// (partial batch failure), never dropped.
    pub async fn handle_referral_message(
        &self,
        body: &str,
    ) -> Result<ReferralOutcome, ReferralError> {
        let message: ReferralMessage =
            serde_json::from_str(body).map_err(|e| ReferralError::Malformed(e.to_string()))?;
        referee_of(&message.referral_id).ok_or_else(|| {
            ReferralError::Malformed(format!("'{}' is not a referral id", message.referral_id))
        })?;
        self.settle_referral(&message.referral_id, false).await
    }

    /// Decides one referral if it is pending: reward, reject or expire. From a message, a
    /// referral that is not visible or still waiting is an error (retry); from the sweep, waiting
    /// is an answer.
    async fn settle_referral(
        &self,
        id: &str,
        from_sweep: bool,
    ) -> Result<ReferralOutcome, ReferralError> {
        self.retrying(|| async move {
            let record = self
                .store()
                .record(KIND, id)
                .await?
                .ok_or_else(|| ReferralError::NotVisible(format!("referral '{id}'")))?;
            let referral: Referral = record.parse()?;
            if referral.status != ReferralStatus::Pending {
                return Ok(Attempt::Done(ReferralOutcome::of(&referral, false)));
            }
            let (referrer, referee) = tokio::join!(
                self.store().member(&referral.referrer_id),
                self.store().member(&referral.referee_id)
            );
            let referrer = referrer?.ok_or_else(|| {
                ReferralError::NotVisible(format!("referrer '{}'", referral.referrer_id))
            })?;
            let referee = referee?.ok_or_else(|| {
                ReferralError::NotVisible(format!("referee '{}'", referral.referee_id))
            })?;
            let program = self.program().await?;
            let now = self.now();
            let mut next = referral.clone();
            next.decided_at = Some(now);
            let mut commits = Vec::new();
            match decide(
                &program.document.referrals,
                &referral,
                &referrer,
                &referee,
                now,
            ) {
                Decision::Wait if from_sweep => {
                    return Ok(Attempt::Done(ReferralOutcome::of(&referral, false)))
                }
                Decision::Wait => return Err(ReferralError::Waiting(id.to_owned())),
                Decision::Expire => next.status = ReferralStatus::Expired,
                Decision::Reject(reason) => {
                    next.status = ReferralStatus::Rejected;
                    next.reason = Some(reason);
                }
                Decision::Reward {
                    referrer_points,
                    referee_points,
                    order_id,
                    counts,
                } => {
                    next.status = ReferralStatus::Rewarded;
                    next.order_id = Some(order_id);
                    next.referrer_points = referrer_points;
                    next.referee_points = referee_points;
                    let dating = program.document.expiry.dating(now);
                    let bonus = |role, points, description| Bonus {
                        referral_id: id,
                        role,
                        points,
                        description,
                        program_version: program.version,
                        now,
                        dating: &dating,
                    };
                    let (mut paid_referrer, entry) = bonus_commit(
                        &referrer,
                        bonus(
                            "referrer",
                            referrer_points,
                            format!("Referred {}", referee.member_id),
                        ),
                    )?;
                    paid_referrer.referral_counts = counts;
                    commits.push(commit_of(&referrer, (paid_referrer, entry)));
                    let paid_referee = bonus_commit(
                        &referee,
                        bonus(
                            "referee",
                            referee_points,
                            format!("Referred by {}", referrer.member_id),
                        ),
                    )?;
                    commits.push(commit_of(&referee, paid_referee));
                }
            }
            let write = RecordWrite {
                record: Record {
                    version: record.version + 1,
                    // Decided referrals leave the due index: the sweep has nothing left to do.
                    due: None,
                    body: to_json(&next)?,
                    ..record.clone()
                },
                expect: Expect::Version(record.version),
            };
            match self.store().transact(commits, vec![write]).await {
                Ok(()) => {
                    tracing::info!(referral_id = id, status = ?next.status, reason = ?next.reason, "referral decided");
                    Ok(Attempt::Done(ReferralOutcome::of(&next, true)))
                }
                // Someone else moved the referral or a member; read again and decide again (an
                // already decided referral is then left alone).
                Err(
                    CommitError::StaleMember
                    | CommitError::Conflict
                    | CommitError::RecordConflict { .. }
                    | CommitError::DuplicateEntry,
                ) => Ok(Attempt::Retry),
                Err(CommitError::Store(error)) => Err(error.into()),
                Err(other) => {
                    tracing::error!(error = %other, "referral commit failed");
                    Err(ApiError::internal().into())
                }
            }
        })
        .await
    }

    /// The daily sweep: every referral due (expiring) today or on the days a missed run left
    /// behind is settled; still pending and past expiry → `expired`. A referral whose referee did
    /// qualify but whose message was lost is decided here. Running it twice changes nothing the
    /// second time.
    pub async fn sweep_referrals(&self) -> Result<SweepReport, ApiError> {
        let today = self.now().date_naive();
        let mut report = SweepReport::default();
        for back in (0..=SWEEP_CATCH_UP_DAYS).rev() {
            let day = today - Days::new(back);
            for shard in 0..REVIEW_SHARDS {
                let mut cursor = None;
                loop {
                    let (ids, next) = self.store().records_due(KIND, day, shard, cursor).await?;
                    for id in ids {
                        report.examined += 1;
                        match self.settle_referral(&id, true).await {
                            Ok(outcome)
                                if outcome.changed && outcome.status == ReferralStatus::Expired =>
                            {
                                report.expired += 1
                            }
                            Ok(outcome) if outcome.changed => report.decided += 1,
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(referral_id = %id, %error, "referral not settled by the sweep");
                                report.failed += 1;
                            }
                        }
                    }
                    match next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
        }
        Ok(report)
    }

    /// The referrals `id` made (newest first, up to `limit`), the one they enrolled through,
    /// and the points earned from them.
    pub async fn member_referrals(
        &self,
        id: &MemberId,
        limit: Option<u32>,
    ) -> Result<ReferralList, ApiError> {
        let limit = limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::invalid("limit", "limit must be 1 to 100"));
        }
        let (member, records) = tokio::join!(
            self.store().member(id),
            self.store().records_of(KIND, id.as_str(), limit)
        );
        let member = member?.ok_or_else(|| member_not_found(id))?;
        let mut made = records?
            .iter()
            .map(Record::parse::<Referral>)
            .collect::<Result<Vec<_>, _>>()?;
        made.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.referral_id.cmp(&a.referral_id))
        });
        let referred_by = match member.referred_by {
            Some(_) => self
                .store()
                .record(KIND, &referral_id(id, member.enrolled_at))
                .await?
                .map(|record| record.parse::<Referral>())
                .transpose()?
                .map(|referral| referral.view_for(id)),
            None => None,
        };
        let referrals: Vec<_> = made.iter().map(|r| r.view_for(id)).collect();
        let points_earned = referrals.iter().map(|r| r.points).sum::<Points>()
            + referred_by.as_ref().map_or(0, |r| r.points);
        Ok(ReferralList {
            member_id: id.clone(),
            referrals,
            referred_by,
            points_earned,
        })
    }
}
