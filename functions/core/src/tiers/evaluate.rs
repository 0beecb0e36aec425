//! The tier decision, as a pure function of the rules, the member's tier bookkeeping and the day.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;

use super::window::{first_day_below, QualifyingDays, Window};
use super::{TierChange, TierFloor, TierRules, TierState};

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub tier: String,
    pub state: TierState,
    pub change: Option<TierChange>,
}

/// What a member sees about their tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierProgress {
    pub qualifying: i64,
    pub window_start: NaiveDate,
    pub window_end: NaiveDate,
    pub next_tier: Option<String>,
    pub remaining_to_next: Option<i64>,
    /// The last day the current tier is certain to be held without further activity; `None` for
    /// the base tier, which cannot be lost.
    pub secured_until: Option<NaiveDate>,
}

fn active(floor: &Option<TierFloor>, now: DateTime<Utc>) -> Option<&TierFloor> {
    floor.as_ref().filter(|f| f.until > now)
}

/// The rank held by floors in force, and the earliest day such a floor runs out.
fn floor_of<'a>(
    rules: &TierRules,
    state: &'a TierState,
    now: DateTime<Utc>,
) -> (usize, Option<&'a TierFloor>) {
    [
        active(&state.manual_floor, now),
        active(&state.plan_floor, now),
    ]
    .into_iter()
    .flatten()
    .filter_map(|f| rules.rank(&f.tier).map(|rank| (rank, f)))
    .max_by_key(|(rank, _)| *rank)
    .map_or((0, None), |(rank, f)| (rank, Some(f)))
}

/// Decides the member's tier on `now`'s day. With `downgrades` false (during an accrual) only
/// upgrades happen; the evaluation job passes true. Deciding twice on one day gives the same
/// answer the second time.
pub fn evaluate(
    rules: &TierRules,
    current_tier: &str,
    state: &TierState,
    days: &QualifyingDays,
    enrolled: NaiveDate,
    now: DateTime<Utc>,
    downgrades: bool,
) -> Decision {
    let today = now.date_naive();
    let qualifying = Window::containing(rules.window, today, enrolled).sum(days);
    let earned = rules.earned_rank(qualifying);
    let (floor_rank, floor) = floor_of(rules, state, now);
    let target = earned.max(floor_rank);
    // A tier the program no longer has is treated as the one the member now qualifies for.
    let current = rules.rank(current_tier).unwrap_or(target);

    let mut next = state.clone();
    next.manual_floor = active(&state.manual_floor, now).cloned();
    next.plan_floor = active(&state.plan_floor, now).cloned();
    let already_evaluated_today = state.last_evaluated_on == Some(today);
    let mut rank = current;
    let mut reason = None;

    if target > current {
        rank = target;
        next.below_since = None;
        reason = Some(match floor.filter(|_| floor_rank > earned) {
            Some(f) => format!("floor: {}", f.reason),
            None => format!(
                "qualifying {qualifying} reached {}",
                rules.levels[target].threshold
            ),
        });
    } else if target == current {
        next.below_since = None;
    } else if downgrades && !already_evaluated_today {
        let since = state.below_since.unwrap_or(today);
        let grace = u64::from(rules.levels[current].grace_days);
        if today >= since + Days::new(grace) {
            rank = current - 1;
            next.below_since = (rank > target).then_some(today);
            reason = Some(format!(
                "qualifying {qualifying} below {} for the {grace}-day grace period",
                rules.levels[current].threshold
            ));
        } else {
            next.below_since = Some(since);
        }
    }
    if downgrades {
        next.last_evaluated_on = Some(today);
    }

    let level = &rules.levels[rank];
    next.review_on = if rank == 0 && floor.is_none() {
        None
    } else if floor_rank >= rank {
        floor.map(|f| f.until.date_naive() + Days::new(1))
    } else {
        // Review on the day the member falls below (grace starts then), or when grace ends.
        match next.below_since {
            Some(since) => Some(since + Days::new(u64::from(level.grace_days))),
            None => first_day_below(rules.window, days, today, enrolled, level.threshold),
        }
        .map(|day| day.max(today + Days::new(1)))
    };

    let tier = level.tier_id.clone();
    let change = reason.map(|reason| TierChange {
        from_tier: current_tier.to_owned(),
        to_tier: tier.clone(),
        reason,
        evaluated_at: now,
        actor: None,
    });
    Decision {
        tier,
        state: next,
        change,
    }
}

/// Where the member stands: qualifying amount, distance to the next tier, how long the current
/// one is secured.
pub fn progress(
    rules: &TierRules,
    tier: &str,
    state: &TierState,
    days: &QualifyingDays,
    enrolled: NaiveDate,
    now: DateTime<Utc>,
) -> TierProgress {
    let today = now.date_naive();
    let window = Window::containing(rules.window, today, enrolled);
    let qualifying = window.sum(days);
    let rank = rules.rank(tier).unwrap_or(0);
    let next = rules.levels.get(rank + 1);
    let secured_until = if rank == 0 {
        None
    } else {
        let (floor_rank, floor) = floor_of(rules, state, now);
        let grace = u64::from(rules.levels[rank].grace_days);
        let by_activity = match state.below_since {
            Some(since) => Some(since + Days::new(grace)),
            None => first_day_below(
                rules.window,
                days,
                today,
                enrolled,
                rules.levels[rank].threshold,
            )
            .map(|d| d + Days::new(grace)),
        }
        .map(|first_possible_downgrade| first_possible_downgrade - Days::new(1));
        let by_floor = floor
            .filter(|_| floor_rank >= rank)
            .map(|f| f.until.date_naive());
        by_activity.max(by_floor)
    };
    TierProgress {
        qualifying,
        window_start: window.start,
        window_end: window.end,
        next_tier: next.map(|l| l.tier_id.clone()),
        remaining_to_next: next.map(|l| (l.threshold - qualifying).max(0)),
        secured_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiers::{Measure, TierLevel, WindowKind};
    use chrono::TimeZone;

    fn rules() -> TierRules {
        let level = |id: &str, threshold: i64, grace_days: u32| TierLevel {
            tier_id: id.into(),
            name: id.into(),
            threshold,
            earn_multiplier_percent: 100,
            perks: vec![],
            grace_days,
        };
        TierRules {
            measure: Measure::Spend,
            window: WindowKind::Rolling12Months,
            levels: vec![
                level("bronze", 0, 0),
                level("silver", 100, 30),
                level("gold", 500, 30),
                level("platinum", 1000, 30),
            ],
        }
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
            .single()
            .expect("date")
    }

    fn days(entries: &[(DateTime<Utc>, i64)]) -> QualifyingDays {
        entries
            .iter()
            .map(|(at, amount)| (at.date_naive(), *amount))
            .collect()
    }

    const ENROLLED: fn() -> NaiveDate = || NaiveDate::from_ymd_opt(2024, 1, 1).expect("date");

    #[test]
    fn crossing_a_threshold_upgrades_at_once_even_several_levels() {
        let activity = days(&[(at(2026, 11, 1), 600)]);
        let decision = evaluate(
            &rules(),
            "bronze",
            &TierState::default(),
            &activity,
            ENROLLED(),
            at(2026, 11, 1),
            false,
        );
        assert_eq!(decision.tier, "gold");
        assert!(decision.change.is_some());
        // The activity leaves the rolling window 366 days later: review then, grace starts then.
        assert_eq!(decision.state.review_on, Some(at(2027, 11, 2).date_naive()));
    }

    #[test]
    fn downgrade_waits_for_grace_and_moves_one_level_then_another_grace() {
        let activity = days(&[(at(2025, 1, 1), 1200)]);
        let state = TierState::default();
        // 2026-01-02: the January activity has rolled off; grace starts.
        let first = evaluate(
            &rules(),
            "platinum",
            &state,
            &activity,
            ENROLLED(),
            at(2026, 1, 2),
            true,
        );
        assert_eq!(first.tier, "platinum");
        assert_eq!(first.state.below_since, Some(at(2026, 1, 2).date_naive()));
        assert_eq!(first.state.review_on, Some(at(2026, 2, 1).date_naive()));
        let during = evaluate(
            &rules(),
            "platinum",
            &first.state,
            &activity,
            ENROLLED(),
            at(2026, 1, 31),
            true,
        );
        assert_eq!(during.tier, "platinum");
        let after = evaluate(
            &rules(),
            "platinum",
            &during.state,
            &activity,
            ENROLLED(),
            at(2026, 2, 1),
            true,
        );
        assert_eq!(after.tier, "gold", "one level at a time");
        assert_eq!(after.state.below_since, Some(at(2026, 2, 1).date_naive()));
        let again = evaluate(
            &rules(),
            "gold",
            &after.state,
            &activity,
            ENROLLED(),
            at(2026, 2, 1),
            true,
        );
        assert_eq!(
            (again.tier.as_str(), again.change.is_none()),
            ("gold", true),
            "same day twice: no change"
        );
        assert_eq!(again.state, after.state);
        let next = evaluate(
            &rules(),
            "gold",
            &again.state,
            &activity,
            ENROLLED(),
            at(2026, 3, 3),
            true,
        );
        assert_eq!(next.tier, "silver");
    }

    #[test]
    fn a_floor_holds_the_tier_until_it_expires() {
        let state = TierState {
            manual_floor: Some(TierFloor {
                tier: "gold".into(),
                until: at(2026, 12, 31),
                reason: "service recovery".into(),
                granted_by: None,
            }),
            ..TierState::default()
        };
        let granted = evaluate(
            &rules(),
            "bronze",
            &state,
            &QualifyingDays::new(),
            ENROLLED(),
            at(2026, 11, 1),
            true,
        );
        assert_eq!(granted.tier, "gold");
        assert_eq!(granted.state.review_on, Some(at(2027, 1, 1).date_naive()));
        let held = evaluate(
            &rules(),
            "gold",
            &granted.state,
            &QualifyingDays::new(),
            ENROLLED(),
            at(2026, 12, 30),
            true,
        );
        assert_eq!(held.tier, "gold");
        let expired = evaluate(
            &rules(),
            "gold",
            &held.state,
            &QualifyingDays::new(),
            ENROLLED(),
            at(2027, 1, 1),
            true,
        );
        assert_eq!(expired.state.manual_floor, None);
        assert_eq!(expired.tier, "gold", "grace starts when the floor ends");
        assert_eq!(expired.state.below_since, Some(at(2027, 1, 1).date_naive()));
    }

    #[test]
    fn progress_shows_distance_and_security() {
        let activity = days(&[(at(2026, 3, 1), 150)]);
        let p = progress(
            &rules(),
            "silver",
            &TierState::default(),
            &activity,
            ENROLLED(),
            at(2026, 11, 22),
        );
        assert_eq!(p.qualifying, 150);
        assert_eq!(
            (p.next_tier.as_deref(), p.remaining_to_next),
            (Some("gold"), Some(350))
        );
        // Leaves the window 2027-03-02, then 30 days of grace.
        assert_eq!(p.secured_until, Some(at(2027, 3, 31).date_naive()));
    }
}
