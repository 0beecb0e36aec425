//! Promotions: a multiplier or a fixed bonus on purchases within a half-open UTC window
//! `[starts_at, ends_at)`, optionally limited to categories, tiers and a number of uses per
//! member. Several may be active at once; the rule is that **the single best promotion for the
//! purchase applies** (the one giving the most extra points; ties go to the one that started
//! first) and multipliers never compound — with each other or with the tier multiplier, which
//! is computed on the same base.

mod seasons;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Number;

pub use seasons::{season_boundaries, Season, SeasonAction};

use crate::error::ApiError;
use crate::ids::Category;
use crate::ledger::BreakdownLine;
pub use crate::member::promotion_uses::{PromotionUse, PromotionUses};
use crate::program::{PurchaseLine, SpendRule};
use crate::Points;

pub const RECORD_KIND: &str = "promotion";
/// All promotions are listed under one owner: the list is small (tens, not thousands).
pub const RECORD_OWNER: &str = "program";
pub use crate::program::seasons::MAX_MULTIPLIER_PERCENT;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromotionReward {
    Multiplier { percent: u32 },
    Bonus { points: Points },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStatus {
    Active,
    Canceled,
    /// A season's promotion after its season ended.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromotionSource {
    Manual,
    Season { season_id: String, year: i32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub promotion_id: String,
    pub name: String,
    pub reward: PromotionReward,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub categories: Vec<Category>,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub per_member_limit: Option<u32>,
    pub status: PromotionStatus,
    pub source: PromotionSource,
    pub created_at: DateTime<Utc>,
    /// The admin who created it (a token's `sub`); none for a season's promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_by: Option<String>,
}

/// `POST /v1/admin/promotions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionRequest {
    pub name: String,
    #[serde(default)]
    pub multiplier: Option<Number>,
    #[serde(default)]
    pub bonus_points: Option<Points>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub categories: Vec<Category>,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub per_member_limit: Option<u32>,
}

/// A multiplier such as `2` or `1.5` as a whole percentage; at most two decimals, above 1, at
/// most 10.
pub fn multiplier_percent(multiplier: &Number) -> Result<u32, ApiError> {
    let bad = || {
        ApiError::invalid(
            "multiplier",
            "multiplier must be above 1 and at most 10, with at most two decimals",
        )
    };
    let value = multiplier.as_f64().ok_or_else(bad)?;
    let percent = (value * 100.0).round();
    if (value * 100.0 - percent).abs() > 1e-6
        || percent <= 100.0
        || percent > f64::from(MAX_MULTIPLIER_PERCENT)
    {
        return Err(bad());
    }
    Ok(percent as u32)
}

impl PromotionRequest {
    pub fn into_promotion(
        self,
        promotion_id: String,
        now: DateTime<Utc>,
    ) -> Result<Promotion, ApiError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "name",
                "name must be 1 to 100 printable characters",
            ));
        }
        let reward = match (&self.multiplier, self.bonus_points) {
            (Some(m), None) => PromotionReward::Multiplier {
                percent: multiplier_percent(m)?,
            },
            (None, Some(points))
                if (1..=crate::program::MAX_CONFIGURED_POINTS).contains(&points) =>
            {
                PromotionReward::Bonus { points }
            }
            (None, Some(_)) => {
                return Err(ApiError::invalid(
                    "bonus_points",
                    "bonus_points must be 1 to 10000000",
                ))
            }
            _ => {
                return Err(ApiError::invalid(
                    "multiplier",
                    "give exactly one of multiplier and bonus_points",
                ))
            }
        };
        if self.ends_at <= now {
            return Err(ApiError::new(
                crate::error::ErrorCode::PromotionAlreadyEnded,
                "the promotion's window is already over",
            )
            .with_details(serde_json::json!({ "field": "ends_at", "ends_at": self.ends_at })));
        }
        if self.ends_at <= self.starts_at {
            return Err(ApiError::invalid(
                "ends_at",
                "ends_at must be after starts_at",
            ));
        }
        if self.per_member_limit == Some(0) {
            return Err(ApiError::invalid(
                "per_member_limit",
                "per_member_limit must be at least 1 (omit it for no limit)",
            ));
        }
        Ok(Promotion {
            promotion_id,
            name: name.to_owned(),
            reward,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            categories: self.categories,
            tiers: self.tiers,
            per_member_limit: self.per_member_limit,
            status: PromotionStatus::Active,
            source: PromotionSource::Manual,
            created_at: now,
            created_by: None,
            canceled_by: None,
        })
    }
}

impl Promotion {
    /// Live at `at`: not canceled, and `starts_at <= at < ends_at`.
    pub fn is_live(&self, at: DateTime<Utc>) -> bool {
        self.status != PromotionStatus::Canceled && self.starts_at <= at && at < self.ends_at
    }

    /// Extra points this promotion gives a purchase, or `None` when it does not apply.
    /// `purchase_points` are the points of the spend rules (base and category lines).
    fn extra(
        &self,
        rule: &SpendRule,
        lines: &[PurchaseLine],
        purchase_points: Points,
    ) -> Option<Points> {
        let in_scope: Vec<&PurchaseLine> = lines
            .iter()
            .filter(|l| self.categories.contains(&l.category))
            .collect();
        if !self.categories.is_empty() && in_scope.is_empty() {
            return None;
        }
        match self.reward {
            PromotionReward::Bonus { points } => Some(points),
            PromotionReward::Multiplier { percent } => {
                let base = if self.categories.is_empty() {
                    i128::from(purchase_points)
                } else {
                    let minor: i128 = in_scope.iter().map(|l| i128::from(l.line_minor)).sum();
                    minor * i128::from(rule.points_per_unit) / i128::from(rule.unit_minor)
                };
                Points::try_from(base * (i128::from(percent) - 100) / 100).ok()
            }
        }
    }
}

/// Records one use of `promotion` (if it has a limit) and forgets the uses of promotions that
/// ended more than `late_window` ago, when no purchase from their window is accepted any more.
pub fn record_use(
    uses: &mut PromotionUses,
    promotion: &Promotion,
    now: DateTime<Utc>,
    late_window: chrono::Duration,
) -> Result<(), ApiError> {
    if promotion.per_member_limit.is_some() {
        let entry = uses
            .entry(promotion.promotion_id.clone())
            .or_insert(PromotionUse {
                count: 0,
                ends_at: promotion.ends_at,
            });
        entry.count = entry.count.checked_add(1).ok_or_else(|| {
            ApiError::new(
                crate::error::ErrorCode::CounterOverflow,
                "the promotion's use counter is full",
            )
        })?;
    }
    uses.retain(|_, u| u.ends_at + late_window > now);
    Ok(())
}

/// The best promotion for a purchase made at `at` by a member of `tier`, as a breakdown line,
/// with the promotion's id.
pub fn best_promotion(
    promotions: &[Promotion],
    rule: &SpendRule,
    lines: &[PurchaseLine],
    purchase_points: Points,
    tier: &str,
    uses: &PromotionUses,
    at: DateTime<Utc>,
) -> Option<(Promotion, BreakdownLine)> {
    promotions
        .iter()
        .filter(|p| p.is_live(at))
        .filter(|p| p.tiers.is_empty() || p.tiers.iter().any(|t| t == tier))
        .filter(|p| {
            p.per_member_limit
                .is_none_or(|limit| uses.get(&p.promotion_id).map_or(0, |u| u.count) < limit)
        })
        .filter_map(|p| {
            p.extra(rule, lines, purchase_points)
                .filter(|x| *x > 0)
                .map(|x| (p, x))
        })
        // Most points first; among equals, the earliest start, then the smallest id.
        .max_by(|(a, x), (b, y)| {
            x.cmp(y)
                .then(b.starts_at.cmp(&a.starts_at))
                .then(b.promotion_id.cmp(&a.promotion_id))
        })
        .map(|(p, points)| {
            let description = match p.reward {
                PromotionReward::Multiplier { percent } => {
                    format!("{}: {}% points (best promotion applies)", p.name, percent)
                }
                PromotionReward::Bonus { points } => {
                    format!("{}: {points} bonus points (best promotion applies)", p.name)
                }
            };
            (
                p.clone(),
                BreakdownLine {
                    rule: format!("promotion:{}", p.promotion_id),
                    description,
                    points,
                },
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Sku;
    use crate::program::Rounding;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0)
            .single()
            .expect("date")
    }

    fn promo(
        id: &str,
        reward: PromotionReward,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Promotion {
        Promotion {
            promotion_id: id.into(),
            name: id.into(),
            reward,
            starts_at: from,
            ends_at: to,
            categories: vec![],
            tiers: vec![],
            per_member_limit: None,
            status: PromotionStatus::Active,
            source: PromotionSource::Manual,
            created_at: from,
            created_by: None,
            canceled_by: None,
        }
    }

    fn rule() -> SpendRule {
        SpendRule {
            points_per_unit: 1,
            unit_minor: 100,
            rounding: Rounding::FloorPerOrder,
            excluded_categories: vec![],
            category_multipliers: vec![],
            pending_days: 0,
            pending_tier_activity: Default::default(),
        }
    }

    fn line(category: &str, minor: i64) -> PurchaseLine {
        PurchaseLine {
            sku: Sku::parse("s").expect("sku"),
            category: Category::parse(category).expect("c"),
            line_minor: minor,
        }
    }

    #[test]
    fn windows_are_half_open() {
        let p = promo(
            "double",
            PromotionReward::Multiplier { percent: 200 },
            at(27, 0),
            at(30, 0),
        );
        assert!(!p.is_live(at(26, 23)));
        assert!(p.is_live(at(27, 0)));
        assert!(p.is_live(at(29, 23)));
        assert!(!p.is_live(at(30, 0)));
    }

    #[test]
    fn the_single_best_promotion_applies_and_multipliers_do_not_compound() {
        let promos = vec![
            promo(
                "double",
                PromotionReward::Multiplier { percent: 200 },
                at(1, 0),
                at(30, 0),
            ),
            promo(
                "triple",
                PromotionReward::Multiplier { percent: 300 },
                at(1, 0),
                at(30, 0),
            ),
            promo(
                "bonus",
                PromotionReward::Bonus { points: 150 },
                at(1, 0),
                at(30, 0),
            ),
        ];
        let (p, line) = best_promotion(
            &promos,
            &rule(),
            &[],
            100,
            "bronze",
            &PromotionUses::new(),
            at(5, 0),
        )
        .expect("one");
        assert_eq!(
            (p.promotion_id.as_str(), line.points),
            ("triple", 200),
            "3× adds 200, not 2× then 3×"
        );
        let (p, _) = best_promotion(
            &promos,
            &rule(),
            &[],
            50,
            "bronze",
            &PromotionUses::new(),
            at(5, 0),
        )
        .expect("one");
        assert_eq!(
            p.promotion_id, "bonus",
            "for a small order the fixed bonus is worth more"
        );
    }

    #[test]
    fn categories_tiers_and_limits_narrow_a_promotion() {
        let mut coffee = promo(
            "coffee",
            PromotionReward::Multiplier { percent: 250 },
            at(1, 0),
            at(30, 0),
        );
        coffee.categories = vec![Category::parse("coffee").expect("c")];
        coffee.tiers = vec!["gold".into()];
        coffee.per_member_limit = Some(1);
        let lines = [line("coffee", 1_000), line("books", 5_000)];
        assert!(best_promotion(
            &[coffee.clone()],
            &rule(),
            &lines,
            60,
            "bronze",
            &PromotionUses::new(),
            at(5, 0)
        )
        .is_none());
        let (_, l) = best_promotion(
            &[coffee.clone()],
            &rule(),
            &lines,
            60,
            "gold",
            &PromotionUses::new(),
            at(5, 0),
        )
        .expect("gold");
        assert_eq!(l.points, 15, "1.5 × the 10 base points of the coffee line");
        let mut used = PromotionUses::new();
        let window = chrono::Duration::days(30);
        record_use(&mut used, &coffee, at(5, 0), window).expect("counted");
        assert!(best_promotion(
            &[coffee.clone()],
            &rule(),
            &lines,
            60,
            "gold",
            &used,
            at(5, 0)
        )
        .is_none());
        record_use(&mut used, &coffee, at(30, 0), window).expect("counted");
        assert_eq!(
            used.get("coffee").map(|u| u.count),
            Some(2),
            "kept while a late purchase from its window can still arrive"
        );
        let later = at(30, 0) + window;
        record_use(&mut used, &coffee, later, window).expect("counted");
        assert!(
            used.is_empty(),
            "forgotten once the lateness window has passed"
        );
    }

    #[test]
    fn a_promotion_that_has_already_ended_is_refused_at_creation() {
        let request = |ends: &str| -> PromotionRequest {
            serde_json::from_value(serde_json::json!({
                "name": "p", "bonus_points": 5,
                "starts_at": "2026-10-01T00:00:00Z", "ends_at": ends,
            }))
            .expect("shape")
        };
        let error = request("2026-11-01T00:00:00Z")
            .into_promotion("p".into(), at(5, 0))
            .expect_err("ended");
        assert_eq!(error.code, crate::error::ErrorCode::PromotionAlreadyEnded);
        assert!(request("2026-11-06T00:00:00Z")
            .into_promotion("p".into(), at(5, 0))
            .is_ok());
    }

    #[test]
    fn multipliers_parse_to_whole_percentages() {
        let n = |v: &str| serde_json::from_str::<Number>(v).expect("number");
        assert_eq!(multiplier_percent(&n("2")).ok(), Some(200));
        assert_eq!(multiplier_percent(&n("1.25")).ok(), Some(125));
        for bad in ["1", "0.5", "10.5", "1.333", "-2"] {
            assert!(multiplier_percent(&n(bad)).is_err(), "{bad}");
        }
    }
}
