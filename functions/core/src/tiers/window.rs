//! Qualifying windows over per-day buckets. A member keeps one bucket per UTC day with activity
//! inside the longest window (about a year), so a window sum is exact to the day and the member
//! item stays bounded however long the history.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};

use super::WindowKind;

/// Qualifying amount per UTC day (`YYYY-MM-DD`).
pub type QualifyingDays = BTreeMap<NaiveDate, i64>;

/// Days of history worth keeping: the rolling window plus slack for late-arriving events.
const KEEP_DAYS: u64 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDate,
    /// Inclusive.
    pub end: NaiveDate,
}

/// The anniversary of `enrolled` in `year`; 29 February falls on 28 February in other years.
fn anniversary_in(enrolled: NaiveDate, year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, enrolled.month(), enrolled.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, enrolled.month(), enrolled.day() - 1))
        .unwrap_or(enrolled)
}

impl Window {
    /// The window that `today` falls in.
    pub fn containing(kind: WindowKind, today: NaiveDate, enrolled: NaiveDate) -> Window {
        match kind {
            WindowKind::Rolling12Months => Window {
                start: today - Days::new(365),
                end: today,
            },
            WindowKind::CalendarYear => Window {
                start: NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today),
                end: NaiveDate::from_ymd_opt(today.year(), 12, 31).unwrap_or(today),
            },
            WindowKind::Anniversary => {
                let this_year = anniversary_in(enrolled, today.year());
                let start = if this_year <= today {
                    this_year
                } else {
                    anniversary_in(enrolled, today.year() - 1)
                };
                let next = anniversary_in(enrolled, start.year() + 1);
                Window {
                    start,
                    end: next - Days::new(1),
                }
            }
        }
    }

    pub fn sum(&self, days: &QualifyingDays) -> i64 {
        // Each day is bounded by `record`; a saturating sum keeps even a corrupt item from
        // wrapping a member into another tier.
        days.range(self.start..=self.end)
            .fold(0i64, |total, (_, amount)| total.saturating_add(*amount))
    }
}

/// Adds `amount` on `day` and forgets days no window can reach any more; refuses, changing
/// nothing, an amount that would overflow the day's total or the window's sum.
pub fn record(
    days: &mut QualifyingDays,
    day: NaiveDate,
    amount: i64,
    today: NaiveDate,
) -> Result<(), crate::error::ApiError> {
    if amount > 0 {
        let total: i64 = days
            .values()
            .try_fold(amount, |total, day| total.checked_add(*day))
            .ok_or_else(|| {
                crate::error::ApiError::new(
                    crate::error::ErrorCode::CounterOverflow,
                    "the qualifying total would overflow",
                )
            })?;
        debug_assert!(total >= amount);
        let entry = days.entry(day).or_default();
        // Cannot fail: the sum of all days including this one was just checked.
        *entry = entry.saturating_add(amount);
    }
    let oldest = today - Days::new(KEEP_DAYS);
    days.retain(|d, _| *d >= oldest);
    Ok(())
}

/// Takes `amount` back from `day` (a return of that day's order), never below zero: the day
/// may hold less when it has been forgotten or other returns took it first.
pub fn take_back(days: &mut QualifyingDays, day: NaiveDate, amount: i64) {
    if let Some(total) = days.get_mut(&day) {
        *total -= amount.clamp(0, *total);
        if *total == 0 {
            days.remove(&day);
        }
    }
}

/// The first day after `today` on which, with no further activity, the qualifying amount
/// drops below `threshold`; `None` when it never does within reach.
pub fn first_day_below(
    kind: WindowKind,
    days: &QualifyingDays,
    today: NaiveDate,
    enrolled: NaiveDate,
    threshold: i64,
) -> Option<NaiveDate> {
    if threshold <= 0 {
        return None;
    }
    match kind {
        WindowKind::Rolling12Months => {
            // Activity on day d leaves the window on d + 366.
            let mut total = Window::containing(kind, today, enrolled).sum(days);
            if total < threshold {
                return Some(today + Days::new(1));
            }
            for (day, amount) in days.range(today - Days::new(365)..=today) {
                total -= amount;
                if total < threshold {
                    return Some(*day + Days::new(366));
                }
            }
            Some(today + Days::new(366))
        }
        WindowKind::CalendarYear | WindowKind::Anniversary => {
            let window = Window::containing(kind, today, enrolled);
            if window.sum(days) < threshold {
                Some(today + Days::new(1))
            } else {
                Some(window.end + Days::new(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn rolling_window_counts_365_days_back_but_not_366() {
        let today = d("2026-11-22");
        let mut days = QualifyingDays::new();
        days.insert(today - Days::new(365), 10);
        days.insert(today - Days::new(366), 1000);
        let window = Window::containing(WindowKind::Rolling12Months, today, d("2020-01-01"));
        assert_eq!(window.sum(&days), 10);
        assert_eq!(window.start, d("2025-11-22"));
    }

    #[test]
    fn rolling_window_across_29_february() {
        let today = d("2028-03-01");
        let mut days = QualifyingDays::new();
        days.insert(d("2027-03-02"), 5);
        days.insert(d("2027-03-01"), 7);
        days.insert(d("2028-02-29"), 11);
        let window = Window::containing(WindowKind::Rolling12Months, today, d("2020-01-01"));
        assert_eq!(window.start, d("2027-03-02"));
        assert_eq!(window.sum(&days), 16);
    }

    #[test]
    fn calendar_year_and_anniversary_windows() {
        let cal = Window::containing(WindowKind::CalendarYear, d("2026-12-31"), d("2020-06-01"));
        assert_eq!((cal.start, cal.end), (d("2026-01-01"), d("2026-12-31")));
        let leap = Window::containing(WindowKind::Anniversary, d("2027-03-01"), d("2024-02-29"));
        assert_eq!((leap.start, leap.end), (d("2027-02-28"), d("2028-02-28")));
        let before = Window::containing(WindowKind::Anniversary, d("2027-02-27"), d("2024-02-29"));
        assert_eq!(
            (before.start, before.end),
            (d("2026-02-28"), d("2027-02-27"))
        );
    }

    #[test]
    fn secured_until_follows_roll_off() {
        let today = d("2026-11-22");
        let mut days = QualifyingDays::new();
        days.insert(d("2026-01-10"), 600);
        days.insert(d("2026-06-10"), 600);
        let below = first_day_below(WindowKind::Rolling12Months, &days, today, today, 1000);
        // The January activity leaves the window 366 days later; 600 < 1000 from then.
        assert_eq!(below, Some(d("2026-01-10") + Days::new(366)));
        let year = first_day_below(WindowKind::CalendarYear, &days, today, today, 1000);
        assert_eq!(year, Some(d("2027-01-01")));
    }

    #[test]
    fn month_ends_and_year_ends() {
        let today = d("2027-03-31");
        let rolling = Window::containing(WindowKind::Rolling12Months, today, d("2020-01-31"));
        assert_eq!(rolling.start, d("2026-03-31"));
        let anniversary =
            Window::containing(WindowKind::Anniversary, d("2027-01-31"), d("2020-01-31"));
        assert_eq!(
            (anniversary.start, anniversary.end),
            (d("2027-01-31"), d("2028-01-30"))
        );
        let mut days = QualifyingDays::new();
        days.insert(d("2026-12-31"), 40);
        days.insert(d("2027-01-01"), 2);
        let year = Window::containing(WindowKind::CalendarYear, d("2027-01-01"), d("2020-01-31"));
        assert_eq!(year.sum(&days), 2);
    }

    #[test]
    fn old_days_are_forgotten() {
        let mut days = QualifyingDays::new();
        record(&mut days, d("2024-01-01"), 5, d("2026-11-22")).expect("fits");
        record(&mut days, d("2026-11-22"), 5, d("2026-11-22")).expect("fits");
        assert_eq!(days.len(), 1);
    }
}
