//! Seasons: yearly promotions declared in the program document (`seasons`); the schedule that
//! opens and closes their promotions is in `promotions::seasons`.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::Category;
use crate::Points;

/// The largest multiplier a promotion may give, in percent.
pub const MAX_MULTIPLIER_PERCENT: u32 = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Season {
    pub season_id: String,
    pub name: String,
    /// First day, `MM-DD`, UTC.
    pub starts: String,
    /// Day after the last day, `MM-DD`, UTC; before `starts` when the season spans new year.
    pub ends: String,
    #[serde(default)]
    pub multiplier_percent: Option<u32>,
    #[serde(default)]
    pub bonus_points: Option<Points>,
    #[serde(default)]
    pub categories: Vec<Category>,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub per_member_limit: Option<u32>,
}

/// A `MM-DD` day of `year`.
pub(crate) fn day(year: i32, month_day: &str) -> Option<NaiveDate> {
    let (month, day) = month_day.split_once('-')?;
    NaiveDate::from_ymd_opt(year, month.parse().ok()?, day.parse().ok()?)
}

impl Season {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let id_ok = !self.season_id.is_empty()
            && self.season_id.len() <= 40
            && self
                .season_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(format!(
                "season_id '{}' must be 1 to 40 of a-z, 0-9, '-' and '_'",
                self.season_id
            ));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 100 {
            return Err(format!(
                "season '{}': name must be 1 to 100 characters",
                self.season_id
            ));
        }
        for (field, value) in [("starts", &self.starts), ("ends", &self.ends)] {
            // A leap day would make the season skip three years in four.
            if day(2026, value).is_none() {
                return Err(format!("season '{}': {field} '{value}' is not a MM-DD date (29 February is not allowed)", self.season_id));
            }
        }
        if self.starts == self.ends {
            return Err(format!(
                "season '{}': starts and ends are the same day",
                self.season_id
            ));
        }
        match (self.multiplier_percent, self.bonus_points) {
            (Some(p), None) if (101..=MAX_MULTIPLIER_PERCENT).contains(&p) => Ok(()),
            (None, Some(b)) if (1..=super::MAX_CONFIGURED_POINTS).contains(&b) => Ok(()),
            _ => Err(format!(
                "season '{}': give exactly one of multiplier_percent (101 to 1000) and bonus_points",
                self.season_id
            )),
        }
    }
}
