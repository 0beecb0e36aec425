//! Seasons: yearly promotions declared in the program document ("Black Friday double points,
//! every year 27–30 November"). A scheduled run opens a season's promotion when its window has
//! begun and closes it after it ends; the promotion id is the season and year, so running the
//! schedule twice at one boundary has one effect.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use super::{Promotion, PromotionReward, PromotionSource, PromotionStatus};
use crate::program::seasons::day;
pub use crate::program::seasons::Season;

#[derive(Debug, Clone, PartialEq)]
pub enum SeasonAction {
    Open(Box<Promotion>),
    Close { promotion_id: String },
}

/// How long after a season ends the schedule still closes it (covers missed runs).
const CLOSE_WITHIN_DAYS: i64 = 7;

fn midnight(date: NaiveDate) -> Option<DateTime<Utc>> {
    Utc.from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
        .single()
}

impl Season {
    /// The season's window in the year it starts.
    pub fn window(&self, year: i32) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = day(year, &self.starts)?;
        let mut end = day(year, &self.ends)?;
        if end <= start {
            end = day(year + 1, &self.ends)?;
        }
        Some((midnight(start)?, midnight(end)?))
    }

    pub fn promotion_id(&self, year: i32) -> String {
        format!("season-{}-{year}", self.season_id)
    }

    fn promotion(
        &self,
        year: i32,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Promotion {
        let reward = match (self.multiplier_percent, self.bonus_points) {
            (Some(percent), _) => PromotionReward::Multiplier { percent },
            (None, points) => PromotionReward::Bonus {
                points: points.unwrap_or(0),
            },
        };
        Promotion {
            promotion_id: self.promotion_id(year),
            name: format!("{} {year}", self.name),
            reward,
            starts_at,
            ends_at,
            categories: self.categories.clone(),
            tiers: self.tiers.clone(),
            per_member_limit: self.per_member_limit,
            status: PromotionStatus::Active,
            source: PromotionSource::Season {
                season_id: self.season_id.clone(),
                year,
            },
            created_at: now,
            created_by: None,
            canceled_by: None,
        }
    }
}

/// What the schedule should do for `season` at `now`: open this year's (or last year's, for a
/// season spanning new year) promotion while its window runs, close it once it has ended.
pub fn season_boundaries(season: &Season, now: DateTime<Utc>) -> Vec<SeasonAction> {
    let mut actions = Vec::new();
    for year in [now.year() - 1, now.year()] {
        let Some((starts_at, ends_at)) = season.window(year) else {
            continue;
        };
        if starts_at <= now && now < ends_at {
            actions.push(SeasonAction::Open(Box::new(
                season.promotion(year, starts_at, ends_at, now),
            )));
        } else if ends_at <= now && now < ends_at + Duration::days(CLOSE_WITHIN_DAYS) {
            actions.push(SeasonAction::Close {
                promotion_id: season.promotion_id(year),
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn black_friday() -> Season {
        Season {
            season_id: "black-friday".into(),
            name: "Black Friday double points".into(),
            starts: "11-27".into(),
            ends: "12-01".into(),
            multiplier_percent: Some(200),
            bonus_points: None,
            categories: vec![],
            tiers: vec![],
            per_member_limit: None,
        }
    }

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("date")
    }

    #[test]
    fn opens_inside_the_window_and_closes_after_it() {
        let season = black_friday();
        assert!(season_boundaries(&season, at(2026, 11, 26, 23)).is_empty());
        let open = season_boundaries(&season, at(2026, 11, 27, 0));
        assert!(
            matches!(&open[..], [SeasonAction::Open(p)] if p.promotion_id == "season-black-friday-2026"
            && p.starts_at == at(2026, 11, 27, 0) && p.ends_at == at(2026, 12, 1, 0))
        );
        assert!(matches!(
            &season_boundaries(&season, at(2026, 12, 1, 0))[..],
            [SeasonAction::Close { .. }]
        ));
        assert!(season_boundaries(&season, at(2026, 12, 9, 0)).is_empty());
    }

    #[test]
    fn a_season_can_span_new_year() {
        let mut winter = black_friday();
        winter.starts = "12-20".into();
        winter.ends = "01-06".into();
        let open = season_boundaries(&winter, at(2027, 1, 2, 12));
        assert!(
            matches!(&open[..], [SeasonAction::Open(p)] if p.promotion_id == "season-black-friday-2026")
        );
        assert!(winter.validate().is_ok());
        winter.starts = "02-29".into();
        assert!(winter.validate().is_err());
    }
}
