//! Points expiry: the program's policy and the lots a member's balance is made of.
//!
//! What a member earns in one calendar month (UTC) is one **lot** with one expiry date; the lots
//! live on the member item, keyed by the month they were opened (`YYYY-MM`), so they stay few:
//! with `fixed` N months at most N+1 (the expiry job removes lots as they expire), with
//! `inactivity` one (every lot shares the member's one date). Spending takes the
//! soonest-expiring lots first; points with no lot (earned while the policy was `none`) never
//! expire and are spent last. So the lots sum to at most the available balance, and to exactly
//! it when the policy has dated every point the member holds.
//!
//! A change of the policy applies to lots opened after it: existing lots keep their dates, and
//! points earned later in a month whose lot is already open join it with its date.
//!
//! Everything here is pure; the member's writes and the expiry job apply it.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::EntryType;
pub use crate::ledger::LotTake;
use crate::Points;

/// The record kind of one warning: one per member, lot and threshold, written under
/// `attribute_not_exists`; the catalog announces `points.expiring` from it.
pub const LOT_WARNING_KIND: &str = "lot_warning";

/// The longest expiry period a program may set.
pub const MAX_EXPIRY_MONTHS: u32 = 120;
/// The most warning thresholds a program may set, and the longest one in days.
pub const MAX_WARNINGS: usize = 4;
pub const MAX_WARN_DAYS: u32 = 365;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ExpiryMode {
    /// Points never expire.
    #[default]
    None,
    /// Points expire at the end of the month `months` after the month they were earned in.
    Fixed { months: u32 },
    /// The whole available balance expires `months` after the member's last qualifying activity
    /// (an accrual or a redemption).
    Inactivity { months: u32 },
}

/// The program's `expiry` setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryPolicy {
    #[serde(flatten)]
    pub mode: ExpiryMode,
    /// How many days before a lot expires `points.expiring` is announced, once per threshold.
    #[serde(default = "default_warn_days")]
    pub warn_days: Vec<u32>,
    /// Under `fixed`: campaign bonuses expire at the end of the month this many months after
    /// they were granted (sooner, usually), in a lot of their own (`YYYY-MM-campaign`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_months: Option<u32>,
}

fn default_warn_days() -> Vec<u32> {
    vec![30, 7]
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            mode: ExpiryMode::None,
            warn_days: default_warn_days(),
            campaign_months: None,
        }
    }
}

impl ExpiryPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if let ExpiryMode::Fixed { months } | ExpiryMode::Inactivity { months } = self.mode {
            if !(1..=MAX_EXPIRY_MONTHS).contains(&months) {
                return Err(format!("months must be 1 to {MAX_EXPIRY_MONTHS}"));
            }
        }
        if self
            .campaign_months
            .is_some_and(|months| !(1..=MAX_EXPIRY_MONTHS).contains(&months))
        {
            return Err(format!("campaign_months must be 1 to {MAX_EXPIRY_MONTHS}"));
        }
        if self.warn_days.len() > MAX_WARNINGS {
            return Err(format!("at most {MAX_WARNINGS} warn_days"));
        }
        if self
            .warn_days
            .iter()
            .any(|d| !(1..=MAX_WARN_DAYS).contains(d))
        {
            return Err(format!("each of warn_days must be 1 to {MAX_WARN_DAYS}"));
        }
        Ok(())
    }

    /// How a campaign bonus granted at `now` is dated: in its own lot when the policy gives
    /// campaign bonuses their own period, like any points otherwise.
    pub fn campaign_dating(&self, now: DateTime<Utc>) -> Dating {
        let mut dating = self.dating(now);
        if let (ExpiryMode::Fixed { .. }, Some(months)) = (&self.mode, self.campaign_months) {
            dating.month = format!("{}-campaign", dating.month);
            dating.expires_on = month_end_after(dating.today, months);
        }
        dating
    }

    /// How points credited at `now` are dated under this policy.
    pub fn dating(&self, now: DateTime<Utc>) -> Dating {
        let today = now.date_naive();
        let month = lot_key(today);
        let (expires_on, shared) = match self.mode {
            ExpiryMode::None => (None, false),
            ExpiryMode::Fixed { months } => (month_end_after(today, months), false),
            ExpiryMode::Inactivity { months } => {
                (today.checked_add_months(Months::new(months)), true)
            }
        };
        Dating {
            today,
            month,
            expires_on,
            shared,
            warn_days: self.warn_days.clone(),
        }
    }
}

/// `YYYY-MM` of a day: the key of the lot opened in its month.
pub fn lot_key(day: NaiveDate) -> String {
    format!("{:04}-{:02}", day.year(), day.month())
}

/// The last day of the month `months` after `day`'s month.
pub fn month_end_after(day: NaiveDate, months: u32) -> Option<NaiveDate> {
    let first = day.with_day(1)?.checked_add_months(Months::new(months))?;
    first.checked_add_months(Months::new(1))?.pred_opt()
}

/// How a write on one day dates the points it credits, and which warnings it schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dating {
    pub today: NaiveDate,
    /// The lot credited points join.
    pub month: String,
    /// The date credited points expire on; `None` when the policy lets them never expire.
    pub expires_on: Option<NaiveDate>,
    /// Inactivity: every lot shares one date, which each qualifying activity moves.
    pub shared: bool,
    pub warn_days: Vec<u32>,
}

/// Points earned in one month, and the last day they can be spent. Stored as a pair
/// (`[points, "YYYY-MM-DD"]`): a member item carries up to N+1 of them on every write, and
/// attribute names would be a third of their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(Points, NaiveDate)", into = "(Points, NaiveDate)")]
pub struct Lot {
    pub points: Points,
    pub expires_on: NaiveDate,
}

impl From<(Points, NaiveDate)> for Lot {
    fn from((points, expires_on): (Points, NaiveDate)) -> Self {
        Self { points, expires_on }
    }
}

impl From<Lot> for (Points, NaiveDate) {
    fn from(lot: Lot) -> Self {
        (lot.points, lot.expires_on)
    }
}

/// A member's lots and the next day the expiry job has work for them (a warning or an expiry):
/// the member's place in the sparse, sharded expiry index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryState {
    #[serde(default)]
    pub lots: BTreeMap<String, Lot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<NaiveDate>,
}

/// What `GET /v1/members/{id}` shows of the next lots to expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiring {
    pub points: Points,
    pub on: NaiveDate,
}

/// How many lots the member view lists.
pub const EXPIRING_SHOWN: usize = 3;

impl ExpiryState {
    pub fn is_empty(&self) -> bool {
        self.lots.is_empty() && self.due.is_none()
    }

    pub fn total(&self) -> Points {
        self.lots.values().map(|lot| lot.points).sum()
    }

    /// The lot keys, soonest-expiring first (ties by month).
    fn soonest_first(&self) -> Vec<String> {
        let mut keys: Vec<(NaiveDate, &String)> =
            self.lots.iter().map(|(k, l)| (l.expires_on, k)).collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k.clone()).collect()
    }

    /// The lots after an entry of `points` of kind `entry_type` dated by `dating`.
    pub fn after_entry(&self, entry_type: EntryType, points: Points, dating: &Dating) -> Self {
        let mut next = self.clone();
        if dating.shared && matches!(entry_type, EntryType::Earn | EntryType::Redeem) {
            if let Some(on) = dating.expires_on {
                next.lots.values_mut().for_each(|lot| lot.expires_on = on);
            }
        }
        if points > 0 {
            next.credit(points, dating);
        } else if points < 0 {
            next.take(-points);
        }
        next.due = next.next_due(dating.today, &dating.warn_days);
        next
    }

    fn credit(&mut self, points: Points, dating: &Dating) {
        let Some(expires_on) = dating.expires_on else {
            return;
        };
        // Inactivity keeps one lot: all of it shares the member's one date.
        let key = match self.lots.keys().next() {
            Some(first) if dating.shared => first.clone(),
            _ => dating.month.clone(),
        };
        let lot = self.lots.entry(key).or_insert(Lot {
            points: 0,
            expires_on,
        });
        lot.points = lot.points.saturating_add(points);
    }

    /// Takes up to `points` from the soonest-expiring lots; what the lots lack comes from
    /// points that never expire.
    fn take(&mut self, mut points: Points) {
        for key in self.soonest_first() {
            if points == 0 {
                break;
            }
            let Some(lot) = self.lots.get_mut(&key) else {
                continue;
            };
            let taken = lot.points.min(points);
            lot.points -= taken;
            points -= taken;
            if lot.points == 0 {
                self.lots.remove(&key);
            }
        }
    }

    /// The lots held to at most `available` (never below zero): a credit that first repays a
    /// negative balance (a take-back under `allow_negative`) dates only what is left above zero,
    /// so the lots never hold points the member does not have.
    pub fn capped_at(&self, available: Points, dating: &Dating) -> Self {
        let excess = self.total() - available.max(0);
        if excess <= 0 {
            return self.clone();
        }
        let mut next = self.clone();
        next.take(excess);
        next.due = next.next_due(dating.today, &dating.warn_days);
        next
    }

    /// What was taken from each lot between `before` and `self`, soonest-expiring first.
    pub fn taken_since(&self, before: &ExpiryState) -> Vec<LotTake> {
        before
            .soonest_first()
            .into_iter()
            .filter_map(|key| {
                let was = before.lots.get(&key)?;
                let now = self.lots.get(&key).map_or(0, |lot| lot.points);
                (now < was.points).then(|| LotTake {
                    lot: key,
                    points: was.points - now,
                    expires_on: was.expires_on,
                })
            })
            .collect()
    }

    /// The lots after a reversal puts back what a spending entry took: each into the lot it came
    /// from, with that lot's date. Points whose lot's date has passed (the job may already have
    /// expired the rest of it, under the id a second expiry would reuse) are credited as if
    /// earned today.
    pub fn restored(&self, taken: &[LotTake], dating: &Dating) -> Self {
        let mut next = self.clone();
        for take in taken {
            if take.expires_on < dating.today {
                next.credit(take.points, dating);
                continue;
            }
            let lot = next.lots.entry(take.lot.clone()).or_insert(Lot {
                points: 0,
                expires_on: take.expires_on,
            });
            lot.points = lot.points.saturating_add(take.points);
        }
        next.due = next.next_due(dating.today, &dating.warn_days);
        next
    }

    /// The lots past their date on `today` (their last day was before it), soonest first.
    pub fn expired_on(&self, today: NaiveDate) -> Vec<(String, Lot)> {
        self.soonest_first()
            .into_iter()
            .filter_map(|key| {
                let lot = *self.lots.get(&key)?;
                (lot.expires_on < today).then_some((key, lot))
            })
            .collect()
    }

    /// The lots a warning is due for on `today`, with the threshold to announce: the tightest
    /// threshold `today` has reached, so a run that missed the 30-day day does not announce it
    /// on the 7-day one.
    pub fn warnings_on(&self, today: NaiveDate, warn_days: &[u32]) -> Vec<(String, Lot, u32)> {
        self.soonest_first()
            .into_iter()
            .filter_map(|key| {
                let lot = *self.lots.get(&key)?;
                if lot.expires_on < today {
                    return None;
                }
                let left = (lot.expires_on - today).num_days();
                let threshold = warn_days
                    .iter()
                    .copied()
                    .filter(|d| i64::from(*d) >= left)
                    .min()?;
                Some((key, lot, threshold))
            })
            .collect()
    }

    /// The first day from `from` on when the expiry job has work for these lots: a warning day
    /// or the day after a lot's last. A lot already past its date makes it `from` itself.
    pub fn next_due(&self, from: NaiveDate, warn_days: &[u32]) -> Option<NaiveDate> {
        self.lots
            .values()
            .flat_map(|lot| {
                // A lot past its date is due at once; a warning day already past is not.
                let expiry = lot
                    .expires_on
                    .checked_add_days(Days::new(1))
                    .map(|day| day.max(from));
                let warnings = warn_days
                    .iter()
                    .filter_map(move |d| lot.expires_on.checked_sub_days(Days::new(u64::from(*d))))
                    .filter(move |day| *day >= from);
                expiry.into_iter().chain(warnings)
            })
            .min()
    }

    /// The next lots to expire, soonest first, for the member view.
    pub fn expiring(&self) -> Vec<Expiring> {
        self.soonest_first()
            .into_iter()
            .take(EXPIRING_SHOWN)
            .filter_map(|key| {
                let lot = self.lots.get(&key)?;
                Some(Expiring {
                    points: lot.points,
                    on: lot.expires_on,
                })
            })
            .collect()
    }
}

/// The id of the warning record for one lot and threshold.
pub fn warning_id(member: &str, lot: &str, expires_on: NaiveDate, days: u32) -> String {
    format!("{member}:{lot}:{expires_on}:{days}")
}

/// A warning's record body: what `points.expiring` announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotWarning {
    pub member_id: crate::ids::MemberId,
    pub lot: String,
    pub points: Points,
    pub expires_on: NaiveDate,
    pub days_before: u32,
    pub warned_at: DateTime<Utc>,
    /// When the store may forget the warning (epoch seconds, the table's TTL): a month after
    /// the lot's date, when no run can warn about the lot again.
    pub expires_at: i64,
}

impl LotWarning {
    pub fn kept_until(expires_on: NaiveDate) -> i64 {
        (expires_on + Days::new(WARNING_KEPT_DAYS))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp()
    }
}

/// How long after its lot's date a warning record is kept.
const WARNING_KEPT_DAYS: u64 = 30;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn fixed(months: u32, y: i32, m: u32, d: u32) -> Dating {
        let policy = ExpiryPolicy {
            mode: ExpiryMode::Fixed { months },
            warn_days: vec![30, 7],
            campaign_months: None,
        };
        policy.dating(Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap())
    }

    #[test]
    fn fixed_expiry_falls_on_the_end_of_the_month_n_months_later() {
        assert_eq!(fixed(1, 2026, 1, 15).expires_on, Some(day(2026, 2, 28)));
        assert_eq!(fixed(3, 2027, 11, 30).expires_on, Some(day(2028, 2, 29)));
        assert_eq!(fixed(12, 2026, 12, 31).expires_on, Some(day(2027, 12, 31)));
    }

    #[test]
    fn earning_in_one_month_adds_to_one_lot() {
        let lots = ExpiryState::default()
            .after_entry(EntryType::Earn, 100, &fixed(12, 2026, 1, 3))
            .after_entry(EntryType::Earn, 50, &fixed(12, 2026, 1, 28));
        assert_eq!(lots.lots.len(), 1);
        assert_eq!(lots.total(), 150);
    }

    #[test]
    fn spending_takes_the_soonest_expiring_lots_first_and_records_what_it_took() {
        let before = ExpiryState::default()
            .after_entry(EntryType::Earn, 100, &fixed(12, 2026, 1, 3))
            .after_entry(EntryType::Earn, 100, &fixed(12, 2026, 2, 3));
        let after = before.after_entry(EntryType::Redeem, -130, &fixed(12, 2026, 3, 1));
        assert_eq!(after.lots.keys().collect::<Vec<_>>(), vec!["2026-02"]);
        assert_eq!(after.total(), 70);
        let taken = after.taken_since(&before);
        assert_eq!(
            taken
                .iter()
                .map(|t| (t.lot.as_str(), t.points))
                .collect::<Vec<_>>(),
            vec![("2026-01", 100), ("2026-02", 30)]
        );
        let restored = after.restored(&taken, &fixed(12, 2026, 3, 2));
        assert_eq!(restored.lots, before.lots);
    }

    #[test]
    fn a_reversal_after_the_lot_expired_credits_the_points_as_earned_today() {
        let before =
            ExpiryState::default().after_entry(EntryType::Earn, 100, &fixed(1, 2026, 1, 3));
        let after = before.after_entry(EntryType::Redeem, -60, &fixed(1, 2026, 1, 4));
        let taken = after.taken_since(&before);
        let restored = after.restored(&taken, &fixed(1, 2026, 3, 10));
        assert_eq!(restored.lots["2026-03"].points, 60);
        assert_eq!(restored.lots["2026-03"].expires_on, day(2026, 4, 30));
        assert_eq!(restored.lots["2026-01"].points, 40);
    }

    #[test]
    fn spending_more_than_the_lots_hold_empties_them() {
        let before = ExpiryState::default().after_entry(EntryType::Earn, 40, &fixed(6, 2026, 5, 1));
        let after = before.after_entry(EntryType::Adjust, -100, &fixed(6, 2026, 5, 2));
        assert!(after.lots.is_empty());
        assert_eq!(after.due, None);
    }

    #[test]
    fn a_credit_that_repays_a_negative_balance_dates_only_what_is_left_above_zero() {
        let lots = ExpiryState::default().after_entry(EntryType::Earn, 100, &fixed(12, 2026, 1, 3));
        let capped = lots.capped_at(40, &fixed(12, 2026, 1, 3));
        assert_eq!(capped.total(), 40);
        assert_eq!(lots.capped_at(500, &fixed(12, 2026, 1, 3)), lots);
        assert!(lots.capped_at(-10, &fixed(12, 2026, 1, 3)).lots.is_empty());
    }

    #[test]
    fn campaign_bonuses_can_expire_sooner_in_a_lot_of_their_own() {
        let policy = ExpiryPolicy {
            mode: ExpiryMode::Fixed { months: 12 },
            warn_days: vec![],
            campaign_months: Some(2),
        };
        let now = Utc.with_ymd_and_hms(2026, 3, 9, 0, 0, 0).unwrap();
        let lots = ExpiryState::default()
            .after_entry(EntryType::Earn, 100, &policy.dating(now))
            .after_entry(EntryType::Bonus, 30, &policy.campaign_dating(now));
        assert_eq!(lots.lots["2026-03"].expires_on, day(2027, 3, 31));
        assert_eq!(lots.lots["2026-03-campaign"].expires_on, day(2026, 5, 31));
        // Spent first: it expires first.
        let spent = lots.after_entry(EntryType::Redeem, -40, &policy.dating(now));
        assert!(!spent.lots.contains_key("2026-03-campaign"));
        assert_eq!(spent.total(), 90);
    }

    #[test]
    fn points_credited_without_an_expiry_policy_open_no_lot() {
        let none =
            ExpiryPolicy::default().dating(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let lots = ExpiryState::default().after_entry(EntryType::Earn, 100, &none);
        assert!(lots.is_empty());
    }

    #[test]
    fn inactivity_keeps_one_lot_whose_date_each_qualifying_activity_moves() {
        let policy = ExpiryPolicy {
            mode: ExpiryMode::Inactivity { months: 6 },
            warn_days: vec![7],
            campaign_months: Some(1),
        };
        // Inactivity keeps one lot: campaign bonuses share the member's one date.
        let bonus = policy.campaign_dating(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(bonus.month, "2026-01");
        let at = |m, d| policy.dating(Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap());
        let lots = ExpiryState::default()
            .after_entry(EntryType::Earn, 100, &at(1, 10))
            .after_entry(EntryType::Bonus, 50, &at(3, 10));
        assert_eq!(lots.lots.len(), 1);
        assert_eq!(lots.lots["2026-01"].expires_on, day(2026, 7, 10));
        let later = lots.after_entry(EntryType::Redeem, -20, &at(5, 1));
        assert_eq!(later.lots["2026-01"].expires_on, day(2026, 11, 1));
        assert_eq!(later.total(), 130);
    }

    #[test]
    fn the_due_day_is_the_next_warning_or_the_day_after_a_lot_expires() {
        let lots = ExpiryState::default().after_entry(EntryType::Earn, 10, &fixed(1, 2026, 1, 15));
        // Expires 2026-02-28: warnings on 01-29 and 02-21, expiry run on 03-01.
        assert_eq!(lots.due, Some(day(2026, 1, 29)));
        assert_eq!(
            lots.next_due(day(2026, 1, 30), &[30, 7]),
            Some(day(2026, 2, 21))
        );
        assert_eq!(
            lots.next_due(day(2026, 2, 22), &[30, 7]),
            Some(day(2026, 3, 1))
        );
        assert_eq!(
            lots.next_due(day(2026, 3, 5), &[30, 7]),
            Some(day(2026, 3, 5))
        );
    }

    #[test]
    fn a_lot_expires_the_day_after_its_last_day() {
        let lots = ExpiryState::default().after_entry(EntryType::Earn, 10, &fixed(1, 2026, 1, 15));
        assert!(lots.expired_on(day(2026, 2, 28)).is_empty());
        assert_eq!(lots.expired_on(day(2026, 3, 1)).len(), 1);
    }

    #[test]
    fn warnings_name_the_tightest_threshold_reached() {
        let lots = ExpiryState::default().after_entry(EntryType::Earn, 10, &fixed(1, 2026, 1, 15));
        assert!(lots.warnings_on(day(2026, 1, 28), &[30, 7]).is_empty());
        assert_eq!(lots.warnings_on(day(2026, 1, 29), &[30, 7])[0].2, 30);
        assert_eq!(lots.warnings_on(day(2026, 2, 25), &[30, 7])[0].2, 7);
        assert!(lots.warnings_on(day(2026, 3, 1), &[30, 7]).is_empty());
    }

    #[test]
    fn a_policy_outside_its_bounds_is_refused() {
        let zero = ExpiryPolicy {
            mode: ExpiryMode::Fixed { months: 0 },
            warn_days: vec![],
            campaign_months: None,
        };
        assert!(zero.validate().is_err());
        let many = ExpiryPolicy {
            mode: ExpiryMode::None,
            warn_days: vec![1, 2, 3, 4, 5],
            campaign_months: None,
        };
        assert!(many.validate().is_err());
        let parsed: ExpiryPolicy = serde_json::from_str(r#"{"mode":"fixed","months":12}"#).unwrap();
        assert_eq!(parsed.warn_days, vec![30, 7]);
        assert!(parsed.validate().is_ok());
    }
}
