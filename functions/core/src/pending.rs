//! Pending points: what a purchase earns under a spend rule with `pending_days` (a return
//! window) is held apart from `available` until the window has passed, so goods brought back
//! inside it take back points that were never spendable.
//!
//! A member's pending points are kept as one lot per release day, on the member item: at most
//! one lot per day of the program's lateness window and return window, however many orders the
//! member places. The daily points run moves each lot whose day has come to `available` with one
//! `release` entry keyed by that day (`release:<yyyy-mm-dd>`), so it happens exactly once
//! however often the run fires. A return of an order still inside its window takes back from
//! that order's lot first.
//!
//! When the program counts pending activity towards tiers `on_release`, each lot also carries
//! the qualifying activity its orders will count on the day it is released.
//!
//! Everything here is pure; the accrual, the returns and the daily run apply it.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::Points;

/// The longest return window a program may set.
pub const MAX_PENDING_DAYS: u32 = 365;

/// When pending activity counts towards tiers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingTierActivity {
    /// On the order's day, as if it were not pending (a return inside the window takes it back
    /// from that day, like any return).
    #[default]
    AtEarn,
    /// On the day the points are released: an order returned inside its window never counts.
    OnRelease,
}

/// The pending points released on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLot {
    pub points: Points,
    /// Activity to count towards tiers on release (`on_release` only; otherwise zero).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub qualifying: i64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// A member's pending points by release day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PendingLots(BTreeMap<NaiveDate, PendingLot>);

/// The day points earned by an order placed at `occurred_at` are released: the return window
/// counts from the purchase (never from a clock ahead of ours).
pub fn release_day(occurred_at: DateTime<Utc>, now: DateTime<Utc>, pending_days: u32) -> NaiveDate {
    occurred_at.min(now).date_naive() + Days::new(u64::from(pending_days))
}

impl PendingLots {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn total(&self) -> Points {
        self.0.values().map(|lot| lot.points).sum()
    }

    pub fn lot(&self, day: NaiveDate) -> Option<PendingLot> {
        self.0.get(&day).copied()
    }

    /// The first day a lot is released on.
    pub fn next_release(&self) -> Option<NaiveDate> {
        self.0.keys().next().copied()
    }

    /// The earliest lot whose day has come by `today`.
    pub fn due_on(&self, today: NaiveDate) -> Option<(NaiveDate, PendingLot)> {
        self.0
            .iter()
            .next()
            .filter(|(day, _)| **day <= today)
            .map(|(day, lot)| (*day, *lot))
    }

    pub(crate) fn add(&mut self, day: NaiveDate, points: Points, qualifying: i64) {
        let lot = self.0.entry(day).or_default();
        lot.points = lot.points.saturating_add(points);
        lot.qualifying = lot.qualifying.saturating_add(qualifying);
    }

    pub(crate) fn remove(&mut self, day: NaiveDate) -> Option<PendingLot> {
        self.0.remove(&day)
    }

    /// Takes up to `points` and `qualifying` from the lot released on `day`; what it took.
    pub(crate) fn take(&mut self, day: NaiveDate, points: Points, qualifying: i64) -> PendingLot {
        let Some(lot) = self.0.get_mut(&day) else {
            return PendingLot::default();
        };
        let taken = PendingLot {
            points: lot.points.min(points.max(0)),
            qualifying: lot.qualifying.min(qualifying.max(0)),
        };
        lot.points -= taken.points;
        lot.qualifying -= taken.qualifying;
        if lot.points == 0 {
            self.0.remove(&day);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    #[test]
    fn orders_released_on_the_same_day_share_one_lot() {
        let mut lots = PendingLots::default();
        lots.add(day(10), 40, 0);
        lots.add(day(10), 60, 0);
        lots.add(day(12), 5, 0);
        assert_eq!(lots.total(), 105);
        assert_eq!(lots.lot(day(10)).map(|l| l.points), Some(100));
        assert_eq!(lots.next_release(), Some(day(10)));
    }

    #[test]
    fn only_a_lot_whose_day_has_come_is_due() {
        let mut lots = PendingLots::default();
        lots.add(day(10), 40, 0);
        assert_eq!(lots.due_on(day(9)), None);
        assert_eq!(
            lots.due_on(day(10)).map(|(d, l)| (d, l.points)),
            Some((day(10), 40))
        );
        assert_eq!(lots.due_on(day(20)).map(|(d, _)| d), Some(day(10)));
    }

    #[test]
    fn a_take_never_exceeds_the_lot_and_an_emptied_lot_is_gone() {
        let mut lots = PendingLots::default();
        lots.add(day(10), 40, 300);
        let taken = lots.take(day(10), 25, 100);
        assert_eq!((taken.points, taken.qualifying), (25, 100));
        let taken = lots.take(day(10), 25, 500);
        assert_eq!((taken.points, taken.qualifying), (15, 200));
        assert!(lots.is_empty());
        assert_eq!(lots.take(day(10), 5, 0), PendingLot::default());
    }

    #[test]
    fn the_window_counts_from_the_purchase_and_never_from_a_clock_ahead_of_ours() {
        let now = "2026-03-10T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let earlier = "2026-03-08T23:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let ahead = "2026-03-11T00:02:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(release_day(earlier, now, 14), day(22));
        assert_eq!(release_day(ahead, now, 14), day(24));
    }
}
