//! A member and their balance buckets. The member item is small and bounded: it holds counters,
//! never history, so every write costs the same however long the member has been around.

pub mod plan;
pub mod promotion_uses;
pub mod referrals;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::expiry::{Dating, Expiring, ExpiryState, LotTake};
use crate::ids::{MemberId, ReferralCode};
use crate::ledger::{EntryType, PendingMove};
use crate::pending::{PendingLot, PendingLots};
use crate::program::ActionCounts;
use crate::tiers::{QualifyingDays, TierProgress, TierRules, TierState};
use crate::Points;
use promotion_uses::PromotionUses;
use referrals::{ReferralCounts, ReferralPurchase};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Active,
    /// Closed by the operator: the member keeps its ledger but receives no transfers.
    Deactivated,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub available: Points,
    pub pending: Points,
    pub lifetime_earned: Points,
    pub lifetime_redeemed: Points,
    pub expired: Points,
    /// Points held by unconfirmed two-phase redemptions: already out of `available` (so they
    /// cannot be spent twice), confirmed by the till's `use` or given back when the hold lapses.
    #[serde(default)]
    pub reserved: Points,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub member_id: MemberId,
    pub status: MemberStatus,
    pub tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub referral_code: ReferralCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referred_by: Option<MemberId>,
    pub enrolled_at: DateTime<Utc>,
    pub balance: Balance,
    /// Bumped on every write; the store only accepts a write made from the current version.
    pub version: u64,
    /// Sequence number of the newest ledger entry.
    pub last_seq: u64,
    /// Per action, counts per cap period (see [`crate::program::evaluate_action`]).
    #[serde(default)]
    pub action_counts: BTreeMap<String, ActionCounts>,
    /// Per reward, how many this member has redeemed (for per-member limits).
    #[serde(default)]
    pub reward_counts: BTreeMap<String, u32>,
    /// Per promotion, how many purchases it has rewarded (for per-member limits).
    #[serde(default)]
    pub promotion_uses: PromotionUses,
    #[serde(default)]
    pub tier_state: TierState,
    /// Qualifying activity per day, within the longest tier window.
    #[serde(default)]
    pub qualifying: QualifyingDays,
    /// The paid plan whose benefits the member has while subscribed (see [`crate::subscriptions`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<plan::MemberPlan>,
    /// A referred member's first qualifying purchase, marked once by the accrual that records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral_purchase: Option<ReferralPurchase>,
    /// Referrals rewarded to this member as referrer, this month and today.
    #[serde(default, skip_serializing_if = "ReferralCounts::is_empty")]
    pub referral_counts: ReferralCounts,
    /// The lots the balance is made of and the next day the expiry job has work for them
    /// (see [`crate::expiry`]).
    #[serde(default, skip_serializing_if = "ExpiryState::is_empty")]
    pub expiry: ExpiryState,
    /// Points earned inside a return window, by the day they are released (see
    /// [`crate::pending`]); they sum to `balance.pending`.
    #[serde(default, skip_serializing_if = "PendingLots::is_empty")]
    pub pending_lots: PendingLots,
}

impl Member {
    /// The member after one more ledger entry of `points` of kind `entry_type`, its lots dated
    /// or spent soonest-expiring first under `dating` (see [`crate::expiry`]).
    pub fn with_entry(
        &self,
        entry_type: EntryType,
        points: Points,
        dating: &Dating,
    ) -> Result<Self, ApiError> {
        let mut next = self.with_balance(entry_type, points, 0)?;
        next.expiry = self
            .expiry
            .after_entry(entry_type, points, dating)
            .capped_at(next.balance.available, dating);
        Ok(next)
    }

    /// The member after an order earned `points` that stay pending until `release_on`: counted
    /// as earned, not spendable, and not dated for expiry until they are released.
    pub fn with_pending_earned(
        &self,
        points: Points,
        release_on: NaiveDate,
        qualifying_on_release: i64,
    ) -> Result<(Self, Option<PendingMove>), ApiError> {
        let mut next = self.with_balance(EntryType::Earn, points, points)?;
        let moved = (points != 0 || qualifying_on_release != 0)
            .then_some(PendingMove { points, release_on });
        if moved.is_some() {
            next.pending_lots
                .add(release_on, points, qualifying_on_release);
        }
        Ok((next, moved))
    }

    /// The member after the daily run releases the pending lot of `day` into `available`,
    /// where its points are dated for expiry as if earned today; the lot it released.
    pub fn with_released(
        &self,
        day: NaiveDate,
        dating: &Dating,
    ) -> Result<(Self, PendingLot), ApiError> {
        let lot = self.pending_lots.lot(day).unwrap_or_default();
        let mut next = self.with_balance(EntryType::Release, 0, -lot.points)?;
        next.pending_lots.remove(day);
        next.expiry = self
            .expiry
            .after_entry(EntryType::Release, lot.points, dating)
            .capped_at(next.balance.available, dating);
        Ok((next, lot))
    }

    /// The member after a reversal of `points` (≤ 0) of which `from_pending` is taken from the
    /// pending lot of its day first; the rest leaves `available`.
    pub fn with_reversed_from_pending(
        &self,
        points: Points,
        from_pending: Option<(NaiveDate, PendingLot)>,
        dating: &Dating,
    ) -> Result<(Self, Option<PendingMove>), ApiError> {
        let Some((day, wanted)) = from_pending else {
            return Ok((self.with_entry(EntryType::Reverse, points, dating)?, None));
        };
        let mut lots = self.pending_lots.clone();
        let taken = lots.take(day, wanted.points, wanted.qualifying);
        let mut next = self.with_balance(EntryType::Reverse, points, -taken.points)?;
        next.pending_lots = lots;
        let from_available = points + taken.points;
        next.expiry = self
            .expiry
            .after_entry(EntryType::Reverse, from_available, dating)
            .capped_at(next.balance.available, dating);
        let moved = (taken.points != 0).then_some(PendingMove {
            points: -taken.points,
            release_on: day,
        });
        Ok((next, moved))
    }

    /// Applies the upgrade this write earns, judged from the tier and tier state the member had
    /// before it (`from`): crossing a threshold upgrades in the same write, so the next accrual
    /// earns at the new multiplier; downgrades are left to the review. The change, if any, is
    /// written to the tier history with the write.
    pub fn upgrade_in_write(
        &mut self,
        rules: &TierRules,
        from: (&str, &TierState),
        now: DateTime<Utc>,
    ) -> Option<crate::tiers::TierChange> {
        let (tier, state) = from;
        let decision = crate::tiers::evaluate(
            rules,
            tier,
            state,
            &self.qualifying,
            self.enrolled_at.date_naive(),
            now,
            false,
        );
        self.tier = decision.tier;
        self.tier_state = decision.state;
        decision.change
    }

    /// The next day the daily points run has work for this member: a pending lot to release, or
    /// a lot to expire or warn about. The due index lists the member under it.
    pub fn points_due(&self) -> Option<NaiveDate> {
        match (self.expiry.due, self.pending_lots.next_release()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The member after a reversal of `points` (≥ 0) that puts back what a spending entry took
    /// from its lots (`taken`, recorded on that entry): each lot regains its own points and date.
    pub fn with_restored(
        &self,
        entry_type: EntryType,
        points: Points,
        taken: &[LotTake],
        dating: &Dating,
    ) -> Result<Self, ApiError> {
        let mut next = self.with_balance(entry_type, points, 0)?;
        let restored: Points = taken.iter().map(|t| t.points).sum();
        let beyond = points.saturating_sub(restored).max(0);
        next.expiry = self
            .expiry
            .restored(taken, dating)
            .after_entry(entry_type, beyond, dating)
            .capped_at(next.balance.available, dating);
        Ok(next)
    }

    /// The member after the expiry job expires lot `lot`: its points leave the available balance
    /// for the `expired` bucket, the lot is gone, and the next due day is from `next_day` on.
    pub fn with_lot_expired(
        &self,
        lot: &str,
        next_day: chrono::NaiveDate,
        warn_days: &[u32],
    ) -> Result<(Self, Points), ApiError> {
        let points = self.expiry.lots.get(lot).map_or(0, |l| l.points);
        let mut next = self.with_balance(EntryType::Expire, -points, 0)?;
        next.expiry.lots.remove(lot);
        next.expiry.due = next.expiry.next_due(next_day, warn_days);
        Ok((next, points))
    }

    /// What the entry that made `self` from `before` took from the lots.
    pub fn lots_taken(&self, before: &Member) -> Vec<LotTake> {
        self.expiry.taken_since(&before.expiry)
    }

    /// The balance after an entry of `points`, of which `pending` moved the pending points
    /// rather than the available ones.
    fn with_balance(
        &self,
        entry_type: EntryType,
        points: Points,
        pending: Points,
    ) -> Result<Self, ApiError> {
        let overflow = || ApiError::invalid("points", "the balance would overflow");
        let mut next = self.clone();
        let balance = &mut next.balance;
        let available_change = points.checked_sub(pending).ok_or_else(overflow)?;
        balance.available = balance
            .available
            .checked_add(available_change)
            .ok_or_else(overflow)?;
        balance.pending = balance.pending.checked_add(pending).ok_or_else(overflow)?;
        match entry_type {
            EntryType::Earn | EntryType::Bonus => {
                balance.lifetime_earned = balance
                    .lifetime_earned
                    .checked_add(points)
                    .ok_or_else(overflow)?;
            }
            EntryType::Redeem => {
                balance.lifetime_redeemed = balance
                    .lifetime_redeemed
                    .checked_sub(points)
                    .ok_or_else(overflow)?;
            }
            EntryType::Expire => {
                balance.expired = balance.expired.checked_sub(points).ok_or_else(overflow)?;
            }
            EntryType::Reverse | EntryType::Adjust | EntryType::Transfer | EntryType::Release => {}
        }
        next.version += 1;
        next.last_seq += 1;
        Ok(next)
    }

    /// What clients see, including where the member stands on the tier ladder on `now`'s day.
    pub fn view(&self, rules: &TierRules, now: DateTime<Utc>) -> MemberView {
        MemberView {
            member_id: self.member_id.clone(),
            status: self.status,
            tier: self.tier.clone(),
            balance: self.balance,
            referral_code: self.referral_code.clone(),
            enrolled_at: self.enrolled_at,
            email: self.email.clone(),
            name: self.name.clone(),
            tier_progress: self.tier_progress(rules, now),
            expiring: self.expiry.expiring(),
        }
    }

    pub fn tier_progress(&self, rules: &TierRules, now: DateTime<Utc>) -> TierProgress {
        crate::tiers::progress(
            rules,
            &self.tier,
            &self.tier_state,
            &self.qualifying,
            self.enrolled_at.date_naive(),
            now,
        )
    }
}

/// What clients see of a member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub member_id: MemberId,
    pub status: MemberStatus,
    pub tier: String,
    pub balance: Balance,
    pub referral_code: ReferralCode,
    pub enrolled_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub tier_progress: TierProgress,
    /// The next lots to expire, soonest first.
    pub expiring: Vec<Expiring>,
}
