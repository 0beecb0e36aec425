//! Tier evaluation outside accruals: the nightly review of members whose date has come, the
//! on-demand evaluation, manual grants, and the history of changes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::due::DueIndex;
use super::{member_not_found, App, Attempt};
use crate::error::{ApiError, ErrorCode};
use crate::ids::MemberId;
use crate::member::Member;
use crate::ports::{Commit, CommitError, MessageQueue, Store};
use crate::tiers::{evaluate, TierChange, TierFloor, TierProgress};

/// Days of review dates the nightly run looks back over, so a missed night is caught up.
pub const CATCH_UP_DAYS: u64 = 7;
/// Members per fan-out message: small enough that one message is evaluated well inside the
/// worker's timeout, large enough to keep the message count low.
pub const MEMBERS_PER_MESSAGE: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierEvaluation {
    pub member_id: MemberId,
    pub tier: String,
    pub changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<TierChange>,
    pub tier_progress: TierProgress,
    /// Who granted a tier (a token's `sub`); none for an evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierGrant {
    pub tier: String,
    pub reason: String,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierHistoryPage {
    pub changes: Vec<TierChange>,
    pub next_cursor: Option<String>,
}

/// One fan-out message of the nightly review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewBatch {
    pub day: NaiveDate,
    pub member_ids: Vec<MemberId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReviewPlan {
    pub members: usize,
    pub messages: usize,
}

impl<S: Store> App<S> {
    /// Applies `change` to the member with a version check, retrying on races.
    async fn update_tier<F>(
        &self,
        id: &MemberId,
        change: F,
    ) -> Result<(Member, Option<TierChange>), ApiError>
    where
        F: Fn(
            &Member,
            &crate::program::ActiveProgram,
        ) -> Result<(Member, Option<TierChange>), ApiError>,
    {
        let change = &change;
        self.retrying(|| async move {
            let member = self
                .store()
                .member(id)
                .await?
                .ok_or_else(|| member_not_found(id))?;
            let program = self.program().await?;
            let (mut next, tier_change) = change(&member, &program)?;
            if next == member {
                return Ok(Attempt::Done((member, None)));
            }
            next.version = member.version + 1;
            let commit = Commit {
                member: next.clone(),
                expected_version: Some(member.version),
                entry: None,
                idempotency: None,
                claim_referral_code: false,
                stock: None,
                tier_change: tier_change.clone(),
            };
            match self.store().commit(commit).await {
                // The tier-history line is the announcement: the stream consumer sends
                // `tier.changed` from it.
                Ok(()) => Ok(Attempt::Done((next, tier_change))),
                Err(CommitError::StaleMember | CommitError::Conflict) => Ok(Attempt::Retry),
                Err(CommitError::Store(error)) => Err(error.into()),
                Err(other) => {
                    tracing::error!(error = %other, "tier commit failed");
                    Err(ApiError::internal())
                }
            }
        })
        .await
    }

    async fn evaluation(
        &self,
        member: Member,
        change: Option<TierChange>,
        now: DateTime<Utc>,
    ) -> Result<TierEvaluation, ApiError> {
        let program = self.program().await?;
        Ok(TierEvaluation {
            tier_progress: member.tier_progress(&program.document.tiers, now),
            member_id: member.member_id,
            tier: member.tier,
            changed: change.is_some(),
            change,
            actor: None,
        })
    }

    /// Evaluates one member now: upgrades, floors, grace and one-step downgrades. Evaluating
    /// again on the same day changes nothing.
    pub async fn evaluate_tier(&self, id: &MemberId) -> Result<TierEvaluation, ApiError> {
        let now = self.now();
        let (member, change) = self
            .update_tier(id, |member, program| {
                let decision = evaluate(
                    &program.document.tiers,
                    &member.tier,
                    &member.tier_state,
                    &member.qualifying,
                    member.enrolled_at.date_naive(),
                    now,
                    true,
                );
                let next = Member {
                    tier: decision.tier,
                    tier_state: decision.state,
                    ..member.clone()
                };
                Ok((next, decision.change))
            })
            .await?;
        self.evaluation(member, change, now).await
    }

    /// Grants `grant.tier` as a floor until `grant.until`, by `actor` (the token's `sub`, kept
    /// on the floor and on the change it causes); an upgrade takes effect at once.
    pub async fn grant_tier(
        &self,
        actor: &str,
        id: &MemberId,
        grant: TierGrant,
    ) -> Result<TierEvaluation, ApiError> {
        let now = self.now();
        let reason = grant.reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "reason",
                "reason must be 1 to 200 printable characters",
            ));
        }
        if grant.until <= now {
            return Err(ApiError::invalid("until", "until must be in the future"));
        }
        let (member, change) = self
            .update_tier(id, |member, program| {
                let tiers = &program.document.tiers;
                if tiers.rank(&grant.tier).is_none() {
                    return Err(ApiError::invalid("tier", format!("no tier '{}' in the program", grant.tier))
                        .with_details(json!({ "field": "tier", "tiers": tiers.levels.iter().map(|l| &l.tier_id).collect::<Vec<_>>() })));
                }
                let mut state = member.tier_state.clone();
                state.manual_floor = Some(TierFloor { tier: grant.tier.clone(), until: grant.until, reason: format!("manual: {reason}"), granted_by: Some(actor.to_owned()) });
                let decision = evaluate(tiers, &member.tier, &state, &member.qualifying, member.enrolled_at.date_naive(), now, false);
                let next = Member { tier: decision.tier, tier_state: decision.state, ..member.clone() };
                let change = decision.change.map(|change| TierChange { actor: Some(actor.to_owned()), ..change });
                Ok((next, change))
            })
            .await?;
        let evaluation = self.evaluation(member, change, now).await?;
        Ok(TierEvaluation {
            actor: Some(actor.to_owned()),
            ..evaluation
        })
    }

    pub async fn tier_history(
        &self,
        id: &MemberId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<TierHistoryPage, ApiError> {
        let limit = limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::invalid("limit", "limit must be 1 to 100"));
        }
        let before = cursor
            .map(|c| {
                DateTime::parse_from_rfc3339(c)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::new(
                            ErrorCode::InvalidCursor,
                            "cursor is not one this API issued",
                        )
                    })
            })
            .transpose()?;
        let (member, changes) = tokio::join!(
            self.store().member(id),
            self.store().tier_history(id, before, limit)
        );
        member?.ok_or_else(|| member_not_found(id))?;
        let changes = changes?;
        let next_cursor = (changes.len() == limit as usize)
            .then(|| {
                changes.last().map(|c| {
                    c.evaluated_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                })
            })
            .flatten();
        Ok(TierHistoryPage {
            changes,
            next_cursor,
        })
    }

    /// The nightly run: finds the members whose review date has come (today and the days a
    /// missed run left behind), through the review index shard by shard, and sends them to
    /// `queue` in batches for the workers. Sending a day twice is harmless: evaluation is
    /// idempotent per day.
    pub async fn plan_tier_reviews(
        &self,
        queue: &dyn MessageQueue,
    ) -> Result<ReviewPlan, ApiError> {
        let sent = self
            .fan_out_due(
                DueIndex::TierReviews,
                CATCH_UP_DAYS,
                MEMBERS_PER_MESSAGE,
                queue,
                |day, ids| ReviewBatch {
                    day,
                    member_ids: ids
                        .iter()
                        .filter_map(|id| MemberId::parse(id).ok())
                        .collect(),
                },
            )
            .await?;
        Ok(ReviewPlan {
            members: sent.items,
            messages: sent.messages,
        })
    }

    /// Evaluates every member of one fan-out message; an error fails the whole message, which
    /// is then redelivered (the members already done are unchanged the second time).
    pub async fn evaluate_review_batch(&self, body: &str) -> Result<usize, ApiError> {
        let batch: ReviewBatch = serde_json::from_str(body)
            .map_err(|e| ApiError::new(ErrorCode::ValidationError, format!("review batch: {e}")))?;
        let mut evaluated = 0;
        for id in &batch.member_ids {
            match self.evaluate_tier(id).await {
                Ok(_) => evaluated += 1,
                // A member deleted since the plan has nothing left to evaluate.
                Err(error) if error.code == ErrorCode::MemberNotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(evaluated)
    }
}
