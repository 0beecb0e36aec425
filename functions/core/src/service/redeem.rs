use chrono::{DateTime, Duration, Utc};

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{missing_key, parse_body, to_json, App, Movement, Outcome, Read};
use crate::commands::RedemptionRequest;
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::Operation;
use crate::ids::{IdempotencyKey, MemberId, RewardId};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::Balance;
use crate::ports::{StockClaim, Store};
use crate::redemptions::{Redemption, RedemptionStatus};
use crate::Points;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedemptionReceipt {
    pub redemption_id: String,
    pub entry_id: String,
    pub reward_id: RewardId,
    pub points: Points,
    /// What the customer hands over at the till or types at checkout.
    pub code: String,
    /// `issued`, or `held` for a two-phase redemption waiting for the till's `use`.
    pub status: RedemptionStatus,
    pub expires_at: DateTime<Utc>,
    /// When an unconfirmed hold is released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<DateTime<Utc>>,
    pub balance: Balance,
}

/// The redemption's id is derived from its business key (member + Idempotency-Key), so the same
/// request retried can only ever name the same redemption.
fn redemption_id(member: &MemberId, key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(format!("{member}\n{}", key.as_str()).as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("rdm_{hex}")
}

fn unavailable(message: String, reward: &RewardId) -> ApiError {
    ApiError::new(ErrorCode::RewardUnavailable, message)
        .with_details(json!({ "reward_id": reward }))
}

impl<S: Store> App<S> {
    /// Spends points on a reward. The balance check is a condition of the write (the member's
    /// version), so concurrent redemptions from several devices can never overdraw it.
    pub async fn redeem(
        &self,
        member_id: &MemberId,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let request: RedemptionRequest = parse_body(body)?;
        let key = key.ok_or_else(|| missing_key("redemptions need"))?;
        let redemption_id = redemption_id(member_id, &key);
        self.keyed_request(member_id, Operation::Redemption, key, body, |read| {
            self.redemption_rules(read, &request, &redemption_id)
        })
        .await
    }

    /// A redemption's rules: the reward must be redeemable by this member now, within its
    /// per-member limit, and affordable from the available balance.
    async fn redemption_rules(
        &self,
        read: Read,
        request: &RedemptionRequest,
        redemption_id: &str,
    ) -> Result<Movement<()>, ApiError> {
        let Read {
            member,
            program_stamp,
        } = read;
        let member_id = &member.member_id;
        let now = self.now();
        let mut program = self.program_at_least(program_stamp).await?;
        let reward_id = &request.reward_id;
        // A reward this environment does not know may have been created a moment ago:
        // "not found" is only said after the active program, read now, agrees.
        if program.reward(reward_id.as_str()).is_none() {
            program = self.recheck_program().await?;
        }
        let reward = program.reward(reward_id.as_str()).ok_or_else(|| {
            ApiError::new(
                ErrorCode::RewardNotFound,
                format!("no reward '{reward_id}'"),
            )
            .with_details(json!({ "reward_id": reward_id }))
        })?;
        reward
            .redeemable(now, &member.tier)
            .map_err(|why| unavailable(why, reward_id))?;
        let redeemed_before = member
            .reward_counts
            .get(reward_id.as_str())
            .copied()
            .unwrap_or(0);
        if reward
            .per_member_limit
            .is_some_and(|limit| redeemed_before >= limit)
        {
            return Err(unavailable(
                format!(
                    "'{reward_id}' can be redeemed {} time(s) per member",
                    reward.per_member_limit.unwrap_or(0)
                ),
                reward_id,
            ));
        }
        let cost = reward.points_cost;
        if member.balance.available < cost {
            return Err(ApiError::new(
                ErrorCode::InsufficientPoints,
                format!(
                    "'{reward_id}' costs {cost} points; {} available",
                    member.balance.available
                ),
            )
            .with_details(json!({ "available": member.balance.available, "required": cost })));
        }

        let mut next = member.with_entry(
            EntryType::Redeem,
            -cost,
            &program.document.expiry.dating(now),
        )?;
        let redeemed = redeemed_before.checked_add(1).ok_or_else(|| {
            ApiError::new(ErrorCode::CounterOverflow, "the redemption counter is full")
        })?;
        next.reward_counts
            .insert(reward_id.as_str().to_owned(), redeemed);
        // A held redemption's points are out of `available` at once, so they cannot be spent
        // twice, and show as `reserved` until the till confirms them or the hold lapses.
        let hold_until = request
            .hold
            .then(|| now + Duration::minutes(i64::from(program.document.codes.hold_minutes)));
        if hold_until.is_some() {
            next.balance.reserved = next.balance.reserved.checked_add(cost).ok_or_else(|| {
                ApiError::new(ErrorCode::CounterOverflow, "the reserved points are full")
            })?;
        }
        let record = Redemption::new(
            redemption_id.to_owned(),
            member_id.clone(),
            reward,
            hold_until,
            now,
        );
        let code = record.code.clone();
        let source = Source::Redemption {
            redemption_id: redemption_id.to_owned(),
            reward_id: reward_id.clone(),
            code: code.clone(),
        };
        let entry = LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: member_id.clone(),
            entry_type: EntryType::Redeem,
            points: -cost,
            balance_after: next.balance.available,
            reason: format!("Redeemed {}", reward.name),
            breakdown: vec![BreakdownLine {
                rule: format!("reward:{reward_id}"),
                description: reward.name.clone(),
                points: -cost,
            }],
            source,
            program_version: program.version,
            occurred_at: now,
            recorded_at: now,
            lots: next.lots_taken(&member),
            pending: None,
        };
        let response = to_json(&RedemptionReceipt {
            redemption_id: redemption_id.to_owned(),
            entry_id: entry.entry_id.clone(),
            reward_id: reward_id.clone(),
            points: cost,
            code,
            status: record.status,
            expires_at: record.expires_at,
            hold_until,
            balance: next.balance,
        })?;
        // The record is keyed by its code: a code some other redemption already has fails the
        // write's condition, and the next attempt draws another.
        let records = vec![record.create().map_err(|_| ApiError::internal())?];
        Ok(Movement {
            member: next,
            entry,
            stock: reward.stock.map(|stock| StockClaim {
                reward_id: reward_id.clone(),
                stock,
                release: false,
            }),
            tier_change: None,
            records,
            others: Vec::new(),
            response,
            status: 201,
            duplicate: ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this redemption was already recorded",
            ),
            effects: (),
        })
    }
}
