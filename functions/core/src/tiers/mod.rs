//! Tiers: a ladder of levels reached by qualifying activity (spend or points) over a window.
//! Qualifying activity is kept apart from spendable points, so redeeming never costs a tier.
//! Upgrades happen the moment a threshold is crossed; downgrades only at evaluation, after the
//! tier's grace period, one level at a time, and never below a manual or plan floor.

mod evaluate;
mod window;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use evaluate::{evaluate, progress, Decision, TierProgress};
pub use window::{record, take_back, QualifyingDays, Window};

use crate::Points;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Eligible spend in minor units of the program currency.
    Spend,
    /// Points earned from purchases and actions, before tier and promotion bonuses.
    Points,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The 365 days before today and today itself.
    #[serde(rename = "rolling_12_months")]
    Rolling12Months,
    CalendarYear,
    /// From the member's latest enrolment anniversary to the day before the next one.
    Anniversary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLevel {
    pub tier_id: String,
    pub name: String,
    /// Qualifying amount needed, in the ladder's measure; the first level's must be 0.
    pub threshold: i64,
    #[serde(default = "hundred")]
    pub earn_multiplier_percent: u32,
    #[serde(default)]
    pub perks: Vec<String>,
    /// Days a member keeps this tier after falling below its threshold.
    #[serde(default)]
    pub grace_days: u32,
}

fn hundred() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRules {
    pub measure: Measure,
    pub window: WindowKind,
    /// Lowest first.
    pub levels: Vec<TierLevel>,
}

impl TierRules {
    pub fn base(&self) -> &TierLevel {
        &self.levels[0]
    }

    pub fn rank(&self, tier_id: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.tier_id == tier_id)
    }

    pub fn level(&self, tier_id: &str) -> Option<&TierLevel> {
        self.levels.iter().find(|l| l.tier_id == tier_id)
    }

    /// The highest level whose threshold `qualifying` reaches.
    pub fn earned_rank(&self, qualifying: i64) -> usize {
        self.levels
            .iter()
            .rposition(|l| l.threshold <= qualifying)
            .unwrap_or(0)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let Some(first) = self.levels.first() else {
            return Err("tiers.levels needs at least one level".into());
        };
        if first.threshold != 0 {
            return Err("tiers.levels[0] is the base tier and needs threshold 0".into());
        }
        for (i, level) in self.levels.iter().enumerate() {
            let path = format!("tiers.levels[{i}]");
            let id_ok = !level.tier_id.is_empty()
                && level.tier_id.len() <= 32
                && level
                    .tier_id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !id_ok {
                return Err(format!(
                    "{path}.tier_id must be 1 to 32 of a-z, 0-9, '_' and '-'"
                ));
            }
            if level.name.trim().is_empty() || level.name.chars().count() > 64 {
                return Err(format!("{path}.name must be 1 to 64 characters"));
            }
            if !(100..=1_000).contains(&level.earn_multiplier_percent) {
                return Err(format!(
                    "{path}.earn_multiplier_percent must be 100 to 1000"
                ));
            }
            if level.grace_days > 3_650 {
                return Err(format!("{path}.grace_days must be at most 3650"));
            }
            if i > 0 && level.threshold <= self.levels[i - 1].threshold {
                return Err(format!("{path}.threshold must be above the level below it"));
            }
            if level.threshold > crate::money::MAX_MINOR {
                return Err(format!("{path}.threshold is too large"));
            }
            if self.levels[..i].iter().any(|l| l.tier_id == level.tier_id) {
                return Err(format!("{path}.tier_id '{}' is used twice", level.tier_id));
            }
        }
        Ok(())
    }
}

/// A tier a member holds regardless of activity until `until`: granted by an admin or a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierFloor {
    pub tier: String,
    pub until: DateTime<Utc>,
    pub reason: String,
    /// Who granted a manual floor (a token's `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
}

/// A member's tier bookkeeping, kept on the member item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TierState {
    /// Day the member first fell below the current tier's threshold; grace runs from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_since: Option<NaiveDate>,
    /// Next day tier evaluation has to look at this member; none for the base tier with no floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_floor: Option<TierFloor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_floor: Option<TierFloor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluated_on: Option<NaiveDate>,
}

/// One recorded change of tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierChange {
    pub from_tier: String,
    pub to_tier: String,
    pub reason: String,
    pub evaluated_at: DateTime<Utc>,
    /// Who caused a manual change (a tier grant); none for the program's own evaluations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// Points a tier multiplier adds on top of `points`, rounded down.
pub fn multiplier_bonus(points: Points, multiplier_percent: u32) -> Points {
    let extra = i128::from(points) * (i128::from(multiplier_percent) - 100) / 100;
    Points::try_from(extra).unwrap_or(0)
}
