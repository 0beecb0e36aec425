//! The reference model: the program's earning rules written again, plainly and apart from the
//! engine (base rate and its rounding, excluded categories, category multipliers, the single
//! best promotion, the tier and plan multipliers, action caps counted from the ledger). For each
//! accrual the engine recorded, it says what the accrual should have earned, from the member as
//! the engine last wrote it and the member's ledger before the entry.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loyalty_core::ledger::{EntryType, LedgerEntry, Source};
use loyalty_core::member::Member;
use loyalty_core::program::{ActiveProgram, CapPeriod, Rounding};
use loyalty_core::promotions::{Promotion, PromotionReward, PromotionStatus};

use crate::ops::{Action, Purchase};

/// `(rule, points)` lines with points, sorted by rule.
pub type Lines = BTreeMap<String, i64>;

fn floor(numerator: i128, denominator: i128) -> i128 {
    numerator.div_euclid(denominator)
}

fn excluded(program: &ActiveProgram, category: &str) -> bool {
    program
        .document
        .earning
        .excluded_categories
        .iter()
        .any(|c| c.as_str() == category)
}

/// The points for an amount at `percent` of the base rate, rounded as the program says, over
/// `parts` (each part an item line, or the unitemised rest).
fn at_rate(program: &ActiveProgram, parts: &[i128], percent: i128) -> i128 {
    let earning = &program.document.earning;
    let per_unit = i128::from(earning.points_per_unit);
    let unit = i128::from(earning.unit_minor) * 100;
    match earning.rounding {
        Rounding::FloorPerOrder => floor(parts.iter().sum::<i128>() * per_unit * percent, unit),
        Rounding::FloorPerItem => parts
            .iter()
            .map(|p| floor(p * per_unit * percent, unit))
            .sum(),
    }
}

/// Extra points a promotion gives, or `None` if it does not apply to this order.
fn promotion_extra(
    program: &ActiveProgram,
    promotion: &Promotion,
    purchase: &Purchase,
    activity: i64,
) -> Option<i64> {
    let in_scope: Vec<i128> = purchase
        .items
        .iter()
        .filter(|i| {
            promotion
                .categories
                .iter()
                .any(|c| c.as_str() == i.category)
        })
        .map(|i| i128::from(i.unit_minor) * i128::from(i.quantity))
        .collect();
    if !promotion.categories.is_empty() && in_scope.is_empty() {
        return None;
    }
    match promotion.reward {
        PromotionReward::Bonus { points } => Some(points),
        PromotionReward::Multiplier { percent } => {
            let base = if promotion.categories.is_empty() {
                i128::from(activity)
            } else {
                let earning = &program.document.earning;
                in_scope.iter().sum::<i128>() * i128::from(earning.points_per_unit)
                    / i128::from(earning.unit_minor)
            };
            i64::try_from(base * (i128::from(percent) - 100) / 100).ok()
        }
    }
}

fn multiplier(activity: i64, percent: u32) -> i64 {
    i64::try_from(i128::from(activity) * (i128::from(percent) - 100) / 100).unwrap_or(0)
}

/// Uses of `promotion` in the member's ledger so far: the earnings it paid on (a return names
/// the promotion line it takes back, and is no use of it).
fn uses(history: &[LedgerEntry], promotion: &str) -> u32 {
    let rule = format!("promotion:{promotion}");
    history
        .iter()
        .filter(|e| e.entry_type == EntryType::Earn && e.breakdown.iter().any(|l| l.rule == rule))
        .count() as u32
}

/// What a purchase recorded at `at` should earn for `prior`, the member as it was before.
pub fn purchase_lines(
    program: &ActiveProgram,
    promotions: &[Promotion],
    prior: &Member,
    history: &[LedgerEntry],
    purchase: &Purchase,
    at: DateTime<Utc>,
) -> Lines {
    let mut lines = Lines::new();
    let itemised: i128 = purchase
        .items
        .iter()
        .map(|i| i128::from(i.unit_minor) * i128::from(i.quantity))
        .sum();
    let mut parts: Vec<(Option<&str>, i128)> = purchase
        .items
        .iter()
        .filter(|i| !excluded(program, &i.category))
        .map(|i| {
            (
                Some(i.category.as_str()),
                i128::from(i.unit_minor) * i128::from(i.quantity),
            )
        })
        .collect();
    parts.push((None, i128::from(purchase.amount_minor) - itemised));
    let all: Vec<i128> = parts.iter().map(|(_, m)| *m).collect();
    let base = at_rate(program, &all, 100) as i64;
    lines.insert("base_rate".into(), base);
    let mut activity = base;
    for m in &program.document.earning.category_multipliers {
        let selected: Vec<i128> = parts
            .iter()
            .filter(|(c, _)| *c == Some(m.category.as_str()))
            .map(|(_, minor)| *minor)
            .collect();
        if selected.is_empty() {
            continue;
        }
        let extra = at_rate(program, &selected, i128::from(m.multiplier_percent) - 100) as i64;
        lines.insert(format!("category_multiplier:{}", m.category), extra);
        activity += extra;
    }
    let best = promotions
        .iter()
        .filter(|p| p.status != PromotionStatus::Canceled && p.starts_at <= at && at < p.ends_at)
        .filter(|p| p.tiers.is_empty() || p.tiers.contains(&prior.tier))
        .filter(|p| {
            p.per_member_limit
                .is_none_or(|limit| uses(history, &p.promotion_id) < limit)
        })
        .filter_map(|p| {
            promotion_extra(program, p, purchase, activity)
                .filter(|x| *x > 0)
                .map(|x| (p, x))
        })
        .max_by(|(a, x), (b, y)| {
            x.cmp(y)
                .then(b.starts_at.cmp(&a.starts_at))
                .then(b.promotion_id.cmp(&a.promotion_id))
        });
    if let Some((promotion, extra)) = best {
        lines.insert(format!("promotion:{}", promotion.promotion_id), extra);
    }
    if let Some(level) = program.document.tiers.level(&prior.tier) {
        let bonus = multiplier(activity, level.earn_multiplier_percent);
        lines.insert(format!("tier_multiplier:{}", level.tier_id), bonus);
    }
    if let Some(held) = prior.plan.as_ref().filter(|p| p.until > at) {
        if let Some(plan) = program.plan(&held.plan_id) {
            let bonus = multiplier(activity, plan.earn_multiplier_percent);
            lines.insert(format!("plan_multiplier:{}", plan.plan_id), bonus);
        }
    }
    lines.retain(|_, points| *points != 0);
    lines
}

/// The cap period key of `at`, computed here rather than borrowed from the engine.
pub fn period(per: CapPeriod, at: DateTime<Utc>) -> String {
    match per {
        CapPeriod::Day => at.format("%Y-%m-%d").to_string(),
        CapPeriod::Week => at.format("%G-W%V").to_string(),
        CapPeriod::Month => at.format("%Y-%m").to_string(),
        CapPeriod::Year => at.format("%Y").to_string(),
        CapPeriod::Lifetime => "lifetime".into(),
    }
}

/// What an action recorded at `at` should earn, or why it should have been refused.
pub fn action_lines(
    program: &ActiveProgram,
    history: &[LedgerEntry],
    action: &Action,
    at: DateTime<Utc>,
) -> Result<Lines, String> {
    let rule = program
        .document
        .actions
        .iter()
        .find(|a| a.action.as_str() == action.action)
        .ok_or_else(|| format!("no action '{}' in the program", action.action))?;
    if let Some(cap) = rule.cap {
        let key = period(cap.per, at);
        let used = history
            .iter()
            .filter(|e| match &e.source {
                Source::Action { action: a, .. } => {
                    a.as_str() == action.action && period(cap.per, e.occurred_at) == key
                }
                _ => false,
            })
            .count() as u32;
        if used >= cap.count {
            return Err(format!(
                "'{}' already earned {used} time(s) in {key}; the cap is {}",
                action.action, cap.count
            ));
        }
    }
    let mut lines = Lines::new();
    lines.insert(format!("action:{}", action.action), rule.points);
    Ok(lines)
}

/// The lines of a recorded entry, in the same shape.
pub fn recorded_lines(entry: &LedgerEntry) -> Lines {
    let mut lines = Lines::new();
    for line in &entry.breakdown {
        *lines.entry(line.rule.clone()).or_default() += line.points;
    }
    lines.retain(|_, points| *points != 0);
    lines
}

/// Qualifying spend of an order for a spend-measured ladder: the amount less excluded items.
pub fn qualifying_spend(program: &ActiveProgram, purchase: &Purchase) -> i64 {
    let excluded_minor: i64 = purchase
        .items
        .iter()
        .filter(|i| excluded(program, &i.category))
        .map(|i| i.unit_minor * i64::from(i.quantity))
        .sum();
    purchase.amount_minor - excluded_minor
}
