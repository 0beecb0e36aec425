//! What a paid period gives a member (the monthly bonus once per period, the plan and its tier
//! floor until the period ends plus a grace) and what the end of a subscription takes away.

use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::error::ApiError;
use crate::idempotency::IdempotencyRecord;
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::Member;
use crate::ports::Commit;
use crate::program::ActiveProgram;
use crate::subscriptions::{
    period_bounds, start_of, MemberPlan, Plan, Subscription, FLOOR_GRACE_DAYS,
};
use crate::tiers::{TierChange, TierFloor};

/// The member after a paid period, with the bonus entry and the tier change it brings.
pub(crate) struct PaidPeriod {
    pub member: Member,
    pub entry: Option<LedgerEntry>,
    pub tier_change: Option<TierChange>,
}

impl PaidPeriod {
    /// The member's commit, written over `previous` (the member version read).
    pub fn commit(self, previous: u64, idempotency: Option<IdempotencyRecord>) -> Commit {
        Commit {
            member: self.member,
            expected_version: Some(previous),
            entry: self.entry,
            idempotency,
            claim_referral_code: false,
            stock: None,
            tier_change: self.tier_change,
        }
    }
}

/// The member after paid period `period` of `sub` on `plan`: the monthly bonus (once per period,
/// by entry id), the plan and its tier floor until the period ends (plus a grace for dunning).
pub(crate) fn with_paid_period(
    member: &Member,
    program: &ActiveProgram,
    sub: &Subscription,
    plan: &Plan,
    period: u32,
    now: DateTime<Utc>,
) -> Result<PaidPeriod, ApiError> {
    let bonus = plan.monthly_bonus_points;
    let mut entry = None;
    let mut next = if bonus > 0 {
        let next = member.with_entry(
            EntryType::Bonus,
            bonus,
            &program.document.expiry.dating(now),
        )?;
        let source = Source::Subscription {
            subscription_id: sub.subscription_id.clone(),
            period,
        };
        entry = Some(LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: member.member_id.clone(),
            entry_type: EntryType::Bonus,
            points: bonus,
            balance_after: next.balance.available,
            reason: format!("{} monthly bonus", plan.name),
            breakdown: vec![BreakdownLine {
                rule: format!("plan_bonus:{}", plan.plan_id),
                description: format!("{} monthly bonus, period {period}", plan.name),
                points: bonus,
            }],
            source,
            program_version: program.version,
            occurred_at: now,
            recorded_at: now,
            lots: Vec::new(),
            pending: None,
        });
        next
    } else {
        let mut next = member.clone();
        next.version += 1;
        next
    };
    let (_, end) = period_bounds(sub.anchor, period);
    let until = start_of(end + Days::new(FLOOR_GRACE_DAYS));
    next.plan = Some(MemberPlan {
        subscription_id: sub.subscription_id.clone(),
        plan_id: plan.plan_id.clone(),
        until,
    });
    next.tier_state.plan_floor = plan.tier_floor.as_ref().map(|tier| TierFloor {
        tier: tier.clone(),
        until,
        reason: format!("plan: {}", plan.name),
        granted_by: None,
    });
    let floor_granted = next.tier_state.clone();
    let tier_change =
        next.upgrade_in_write(&program.document.tiers, (&member.tier, &floor_granted), now);
    Ok(PaidPeriod {
        member: next,
        entry,
        tier_change,
    })
}

/// The member after their plan's benefits end: no plan, no plan floor, and a tier review today
/// so that evaluation applies grace and downgrades. `None` if the member holds no benefits of `sub`.
pub(crate) fn without_plan(
    member: &Member,
    sub: &Subscription,
    today: NaiveDate,
) -> Option<Member> {
    let holds = member
        .plan
        .as_ref()
        .is_some_and(|p| p.subscription_id == sub.subscription_id);
    if !holds {
        return None;
    }
    let mut next = member.clone();
    next.version += 1;
    strip_plan(&mut next, today);
    Some(next)
}

/// Takes the plan and its tier floor off `member`, with a tier review today so that evaluation
/// applies grace and downgrades.
pub(crate) fn strip_plan(member: &mut Member, today: NaiveDate) {
    member.plan = None;
    member.tier_state.plan_floor = None;
    member.tier_state.review_on = Some(member.tier_state.review_on.map_or(today, |d| d.min(today)));
}

/// A member write with no ledger entry (benefits ending), over version `previous`.
pub(crate) fn member_only_commit(next: Member, previous: u64) -> Commit {
    Commit {
        member: next,
        expected_version: Some(previous),
        entry: None,
        idempotency: None,
        claim_referral_code: false,
        stock: None,
        tier_change: None,
    }
}
