//! Turning an order or an action into points, with a breakdown line per contributing rule.
//! All arithmetic is integer (i128 intermediates); rounding is always down, at the granularity
//! the program's [`Rounding`] names.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{ActionRule, CapPeriod, Rounding, SpendRule};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{Category, Sku};
use crate::ledger::BreakdownLine;
use crate::money::Currency;
use crate::Points;

/// One validated item line of an order: `line_minor` is unit price × quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseLine {
    pub sku: Sku,
    pub category: Category,
    pub line_minor: i64,
}

/// A slice of the order that earns under one set of rules.
struct Part<'a> {
    minor: i128,
    category: Option<&'a Category>,
}

fn floor_div(numerator: i128, denominator: i128) -> i128 {
    numerator.div_euclid(denominator)
}

fn to_points(value: i128) -> Result<Points, ApiError> {
    Points::try_from(value)
        .map_err(|_| ApiError::invalid("amount", "amount earns more points than can be recorded"))
}

/// Points for a purchase of `amount_minor`, of which `lines` are itemised. The unitemised rest
/// earns the base rate; excluded categories earn nothing; multiplied categories earn the base
/// rate plus a separate bonus line, so the breakdown shows exactly what each rule gave.
pub fn evaluate_purchase(
    rule: &SpendRule,
    currency: Currency,
    amount_minor: i64,
    lines: &[PurchaseLine],
) -> Result<Vec<BreakdownLine>, ApiError> {
    let itemised: i128 = lines.iter().map(|l| i128::from(l.line_minor)).sum();
    let rest = i128::from(amount_minor) - itemised;
    if rest < 0 {
        return Err(ApiError::invalid(
            "items",
            "items add up to more than the order amount",
        ));
    }
    let excluded = |c: &Category| rule.excluded_categories.contains(c);
    let mut parts: Vec<Part<'_>> = lines
        .iter()
        .filter(|l| !excluded(&l.category))
        .map(|l| Part {
            minor: i128::from(l.line_minor),
            category: Some(&l.category),
        })
        .collect();
    parts.push(Part {
        minor: rest,
        category: None,
    });

    let per_unit = i128::from(rule.points_per_unit);
    let unit = i128::from(rule.unit_minor);
    let earn = |minor: i128, percent: i128| (minor * per_unit * percent, unit * 100);
    let rounded = |selected: &mut dyn Iterator<Item = &Part<'_>>, percent: i128| -> i128 {
        match rule.rounding {
            Rounding::FloorPerOrder => {
                let (numerator, denominator) = earn(selected.map(|p| p.minor).sum(), percent);
                floor_div(numerator, denominator)
            }
            Rounding::FloorPerItem => selected
                .map(|p| {
                    let (numerator, denominator) = earn(p.minor, percent);
                    floor_div(numerator, denominator)
                })
                .sum(),
        }
    };

    let eligible: i128 = parts.iter().map(|p| p.minor).sum();
    let rounding = match rule.rounding {
        Rounding::FloorPerOrder => "rounded down per order",
        Rounding::FloorPerItem => "rounded down per item",
    };
    let mut breakdown = vec![BreakdownLine {
        rule: "base_rate".into(),
        description: format!(
            "{} point(s) per {} minor units of {} on {} eligible minor units, {rounding}",
            rule.points_per_unit,
            rule.unit_minor,
            currency.as_str(),
            eligible
        ),
        points: to_points(rounded(&mut parts.iter(), 100))?,
    }];
    for multiplier in &rule.category_multipliers {
        let extra_percent = i128::from(multiplier.multiplier_percent) - 100;
        let in_category = || {
            parts
                .iter()
                .filter(|p| p.category == Some(&multiplier.category))
        };
        if extra_percent == 0 || in_category().next().is_none() {
            continue;
        }
        let points = to_points(rounded(&mut in_category(), extra_percent))?;
        breakdown.push(BreakdownLine {
            rule: format!("category_multiplier:{}", multiplier.category),
            description: format!(
                "{}% of the base rate on '{}' items ({} minor units)",
                multiplier.multiplier_percent,
                multiplier.category,
                in_category().map(|p| p.minor).sum::<i128>()
            ),
            points,
        });
    }
    Ok(breakdown)
}

/// Per-action counters on the member: period key → actions counted in that period.
pub type ActionCounts = BTreeMap<String, u32>;

/// The key of the cap period `at` falls in. Keys sort in time order within one period kind.
pub fn period_key(per: CapPeriod, at: DateTime<Utc>) -> String {
    match per {
        CapPeriod::Day => at.format("%Y-%m-%d").to_string(),
        CapPeriod::Week => at.format("%G-W%V").to_string(),
        CapPeriod::Month => at.format("%Y-%m").to_string(),
        CapPeriod::Year => at.format("%Y").to_string(),
        CapPeriod::Lifetime => "lifetime".to_owned(),
    }
}

/// Forgets the counters of periods that ended before `oldest_accepted`, the earliest
/// `occurred_at` the program still accepts. A counter is dropped only once no accepted event can
/// fall in its period, so a late event always meets its own period's count, and the member item
/// stays bounded (one counter per period of the lateness window).
pub fn forget_periods_before(
    counts: &mut ActionCounts,
    per: CapPeriod,
    oldest_accepted: DateTime<Utc>,
) {
    let oldest = period_key(per, oldest_accepted);
    counts.retain(|key, _| key.as_str() >= oldest.as_str());
}

/// Points for an action and the member's counters after it, or `action_limit_reached`.
pub fn evaluate_action(
    rule: &ActionRule,
    counts: &ActionCounts,
    occurred_at: DateTime<Utc>,
) -> Result<(BreakdownLine, ActionCounts), ApiError> {
    let mut updated = counts.clone();
    if let Some(cap) = rule.cap {
        let key = period_key(cap.per, occurred_at);
        let used = counts.get(&key).copied().unwrap_or(0);
        if used >= cap.count {
            return Err(ApiError::new(
                ErrorCode::ActionLimitReached,
                format!(
                    "'{}' already earned {} time(s) this period ({key})",
                    rule.action, used
                ),
            )
            .with_details(
                serde_json::json!({ "action": rule.action, "period": key, "cap": cap.count }),
            ));
        }
        let counted = used.checked_add(1).ok_or_else(|| {
            ApiError::new(ErrorCode::ActionLimitReached, "the action counter is full")
        })?;
        updated.insert(key, counted);
    }
    let line = BreakdownLine {
        rule: format!("action:{}", rule.action),
        description: rule.description.clone(),
        points: rule.points,
    };
    Ok((line, updated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::tests::default_program;
    use crate::program::{ActionCap, CategoryMultiplier};

    fn usd() -> Currency {
        Currency::parse("USD").expect("usd")
    }

    fn rule(rounding: Rounding) -> SpendRule {
        SpendRule {
            points_per_unit: 1,
            unit_minor: 100,
            rounding,
            excluded_categories: vec![Category::parse("gift_card").expect("c")],
            category_multipliers: vec![CategoryMultiplier {
                category: Category::parse("coffee").expect("c"),
                multiplier_percent: 150,
            }],
            pending_days: 0,
            pending_tier_activity: Default::default(),
        }
    }

    fn line(category: &str, minor: i64) -> PurchaseLine {
        PurchaseLine {
            sku: Sku::parse("SKU-1").expect("sku"),
            category: Category::parse(category).expect("c"),
            line_minor: minor,
        }
    }

    fn total(lines: &[BreakdownLine]) -> Points {
        lines.iter().map(|l| l.points).sum()
    }

    #[test]
    fn base_rate_floors_per_order() {
        let breakdown =
            evaluate_purchase(&rule(Rounding::FloorPerOrder), usd(), 4599, &[]).expect("ok");
        assert_eq!(total(&breakdown), 45);
        assert_eq!(breakdown.len(), 1);
    }

    #[test]
    fn floor_per_item_rounds_each_line() {
        let lines = [line("books", 199), line("books", 199)];
        let per_order =
            evaluate_purchase(&rule(Rounding::FloorPerOrder), usd(), 398, &lines).expect("ok");
        let per_item =
            evaluate_purchase(&rule(Rounding::FloorPerItem), usd(), 398, &lines).expect("ok");
        assert_eq!(total(&per_order), 3);
        assert_eq!(total(&per_item), 2);
    }

    #[test]
    fn categories_multiply_and_exclusions_earn_nothing() {
        let lines = [line("coffee", 1000), line("gift_card", 5000)];
        let breakdown =
            evaluate_purchase(&rule(Rounding::FloorPerOrder), usd(), 8000, &lines).expect("ok");
        // 1000 coffee + 2000 unitemised earn base (30); coffee earns +50% of 10 more (5).
        assert_eq!(breakdown[0].points, 30);
        assert_eq!(breakdown[1].rule, "category_multiplier:coffee");
        assert_eq!(breakdown[1].points, 5);
        assert_eq!(total(&breakdown), 35);
    }

    #[test]
    fn items_cannot_exceed_the_amount() {
        let error = evaluate_purchase(
            &rule(Rounding::FloorPerOrder),
            usd(),
            100,
            &[line("books", 101)],
        )
        .expect_err("over");
        assert_eq!(error.code, ErrorCode::ValidationError);
    }

    #[test]
    fn the_largest_amount_does_not_overflow() {
        let mut generous = rule(Rounding::FloorPerOrder);
        generous.points_per_unit = 1000;
        generous.unit_minor = 1;
        generous.category_multipliers[0].multiplier_percent = 1000;
        let max = crate::money::MAX_MINOR;
        let breakdown =
            evaluate_purchase(&generous, usd(), max, &[line("coffee", max)]).expect("fits");
        assert_eq!(total(&breakdown), max * 1000 * 10);
    }

    #[test]
    fn action_caps_count_per_period_and_keep_late_events_apart() {
        let program = default_program();
        let mut rule = program.document.actions[0].clone();
        rule.cap = Some(ActionCap {
            count: 2,
            per: CapPeriod::Month,
        });
        let nov = |d: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-11-{d:02}T10:00:00Z"))
                .expect("d")
                .with_timezone(&Utc)
        };
        let (_, counts) = evaluate_action(&rule, &ActionCounts::new(), nov(1)).expect("first");
        let (_, counts) = evaluate_action(&rule, &counts, nov(30)).expect("second");
        let error = evaluate_action(&rule, &counts, nov(15)).expect_err("third");
        assert_eq!(error.code, ErrorCode::ActionLimitReached);
        let october = DateTime::parse_from_rfc3339("2026-10-31T23:59:59Z")
            .expect("d")
            .with_timezone(&Utc);
        let (_, counts) = evaluate_action(&rule, &counts, october).expect("late event, own period");
        assert!(
            evaluate_action(&rule, &counts, nov(2)).is_err(),
            "November stays full"
        );
    }

    #[test]
    fn counters_are_forgotten_only_once_no_accepted_event_can_reach_them() {
        let at = |raw: &str| {
            DateTime::parse_from_rfc3339(raw)
                .expect("d")
                .with_timezone(&Utc)
        };
        let mut counts: ActionCounts = [
            ("2026-10-20".to_owned(), 3),
            ("2026-10-21".to_owned(), 3),
            ("2026-11-19".to_owned(), 1),
        ]
        .into();
        forget_periods_before(&mut counts, CapPeriod::Day, at("2026-10-21T12:00:00Z"));
        assert_eq!(
            counts.keys().collect::<Vec<_>>(),
            ["2026-10-21", "2026-11-19"],
            "the oldest accepted day keeps its counter"
        );
        let mut weeks: ActionCounts =
            [("2026-W43".to_owned(), 2), ("2026-W44".to_owned(), 2)].into();
        forget_periods_before(&mut weeks, CapPeriod::Week, at("2026-10-26T00:00:00Z"));
        assert_eq!(weeks.keys().collect::<Vec<_>>(), ["2026-W44"]);
        let mut lifetime: ActionCounts = [("lifetime".to_owned(), 1)].into();
        forget_periods_before(
            &mut lifetime,
            CapPeriod::Lifetime,
            at("2030-01-01T00:00:00Z"),
        );
        assert_eq!(lifetime.len(), 1, "a lifetime counter is never forgotten");
    }

    #[test]
    fn period_keys_are_utc_calendar_periods() {
        let at = DateTime::parse_from_rfc3339("2027-01-01T01:00:00+02:00")
            .expect("d")
            .with_timezone(&Utc);
        assert_eq!(period_key(CapPeriod::Day, at), "2026-12-31");
        assert_eq!(period_key(CapPeriod::Week, at), "2026-W53");
        assert_eq!(period_key(CapPeriod::Month, at), "2026-12");
        assert_eq!(period_key(CapPeriod::Lifetime, at), "lifetime");
    }
}
