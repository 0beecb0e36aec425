//! Paid membership plans (`plans` in the program document); subscriptions to them are in
//! [`crate::subscriptions`].

use serde::{Deserialize, Serialize};

use super::MAX_CONFIGURED_POINTS;
use crate::money::{Currency, Money};
use crate::tiers::TierRules;
use crate::Points;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Month,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub plan_id: String,
    pub name: String,
    pub price: Money,
    pub interval: Interval,
    /// Integer percent applied to points earned on spend (200 = double points).
    #[serde(default = "hundred")]
    pub earn_multiplier_percent: u32,
    /// Granted once per paid period.
    #[serde(default)]
    pub monthly_bonus_points: Points,
    /// A tier held while subscribed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_floor: Option<String>,
}

fn hundred() -> u32 {
    100
}

/// Checks the program's plans; the error is `(path, message)`.
pub fn validate_plans(
    plans: &[Plan],
    tiers: &TierRules,
    currency: Currency,
) -> Result<(), (String, String)> {
    for (i, plan) in plans.iter().enumerate() {
        let path = format!("plans[{i}]");
        let id_ok = !plan.plan_id.is_empty()
            && plan.plan_id.len() <= 32
            && plan
                .plan_id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !id_ok {
            return Err((
                format!("{path}.plan_id"),
                "plan_id must be 1 to 32 of a-z, 0-9, '_' and '-'".into(),
            ));
        }
        if plans[..i].iter().any(|p| p.plan_id == plan.plan_id) {
            return Err((path, format!("plan '{}' is defined twice", plan.plan_id)));
        }
        if plan.name.trim().is_empty()
            || plan.name.chars().count() > 64
            || plan.name.chars().any(char::is_control)
        {
            return Err((
                format!("{path}.name"),
                "name must be 1 to 64 printable characters".into(),
            ));
        }
        if plan.price.currency != currency {
            return Err((
                format!("{path}.price"),
                format!(
                    "price must be in the program currency {}",
                    currency.as_str()
                ),
            ));
        }
        if !(50..=100_000_000).contains(&plan.price.minor) {
            return Err((
                format!("{path}.price"),
                "price.minor must be 50 to 100000000".into(),
            ));
        }
        if !(100..=1_000).contains(&plan.earn_multiplier_percent) {
            return Err((
                format!("{path}.earn_multiplier_percent"),
                "earn_multiplier_percent must be 100 to 1000".into(),
            ));
        }
        if !(0..=MAX_CONFIGURED_POINTS).contains(&plan.monthly_bonus_points) {
            return Err((
                format!("{path}.monthly_bonus_points"),
                format!("monthly_bonus_points must be 0 to {MAX_CONFIGURED_POINTS}"),
            ));
        }
        if let Some(tier) = plan.tier_floor.as_ref().filter(|t| tiers.rank(t).is_none()) {
            return Err((
                format!("{path}.tier_floor"),
                format!("no tier '{tier}' in the ladder"),
            ));
        }
    }
    Ok(())
}
