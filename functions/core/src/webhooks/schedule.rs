//! When a failed delivery is tried again: exponential backoff from 30 seconds (the first retry
//! well within a minute), doubling to at most four hours, for 72 hours from the first attempt
//! (Square's window); the last retry lands on the 72-hour mark and, if it fails too, the
//! delivery is parked. Pure, so the whole schedule runs on a simulated clock in tests.

use chrono::{DateTime, Duration, Utc};

/// The wait after the first failed attempt.
pub const FIRST_RETRY: Duration = Duration::seconds(30);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::hours(4);
/// How long after its first attempt a delivery is still retried.
pub const RETRY_WINDOW: Duration = Duration::hours(72);

/// The wait before the next attempt after `attempts` failed automatic attempts (the first at
/// `first_attempt_at`), or `None` when the window is over and the delivery is parked.
pub fn next_attempt(
    attempts: u32,
    first_attempt_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let deadline = first_attempt_at + RETRY_WINDOW;
    if attempts == 0 || now >= deadline {
        return None;
    }
    // 2^12 × 30 s is already past the cap; the exponent stops there so nothing overflows.
    let doublings = (attempts - 1).min(12);
    let backoff = (FIRST_RETRY * 2_i32.pow(doublings)).min(MAX_BACKOFF);
    Some(backoff.min(deadline - now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn the_first_retry_comes_within_a_minute_and_waits_double_up_to_the_cap() {
        let at = start();
        assert_eq!(next_attempt(1, at, at), Some(Duration::seconds(30)));
        assert_eq!(next_attempt(2, at, at), Some(Duration::seconds(60)));
        assert_eq!(next_attempt(3, at, at), Some(Duration::seconds(120)));
        assert_eq!(next_attempt(10, at, at), Some(MAX_BACKOFF));
        assert_eq!(next_attempt(u32::MAX, at, at), Some(MAX_BACKOFF));
    }

    #[test]
    fn nothing_is_tried_after_the_window_and_the_last_wait_ends_on_its_edge() {
        let at = start();
        let late = at + RETRY_WINDOW - Duration::minutes(10);
        assert_eq!(next_attempt(20, at, late), Some(Duration::minutes(10)));
        assert_eq!(next_attempt(21, at, at + RETRY_WINDOW), None);
        assert_eq!(next_attempt(0, at, at), None);
    }

    #[test]
    fn a_receiver_that_never_answers_is_retried_for_72_hours_then_parked() {
        // A simulated clock: each attempt happens exactly when the schedule says.
        let first = start();
        let mut now = first;
        let mut attempts = 1;
        let mut waits = Vec::new();
        while let Some(wait) = next_attempt(attempts, first, now) {
            waits.push(wait);
            now += wait;
            attempts += 1;
            assert!(attempts < 100, "the schedule never ends");
        }
        assert_eq!(
            now,
            first + RETRY_WINDOW,
            "the last attempt is on the 72-hour mark"
        );
        let before_last = &waits[..waits.len() - 1];
        assert!(before_last.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= MAX_BACKOFF));
        assert_eq!(attempts, 27, "attempts over the window: {waits:?}");
    }
}
