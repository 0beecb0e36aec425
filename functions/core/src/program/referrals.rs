//! The program's referral rules (`referrals` in the program document); what they decide is in
//! [`crate::referrals`].

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::Points;

/// Largest bonus either side may get from one referral.
const MAX_REFERRAL_POINTS: Points = 1_000_000;

/// The program's referral rules (`referrals` in the program document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralPolicy {
    /// Bonus for the member who shared the code.
    pub referrer_points: Points,
    /// Bonus for the friend who enrolled with it.
    pub referee_points: Points,
    /// The referee's first purchase must be at least this much, in the program's currency.
    pub min_first_purchase: Money,
    /// Rewarded referrals per referrer per UTC calendar month.
    pub monthly_cap: u32,
    /// Rewarded referrals per referrer per UTC day.
    pub daily_velocity: u32,
    /// A referral whose referee has not qualified this many days after enrolling expires.
    pub expires_after_days: u32,
    /// What happens to both bonuses when the order that qualified the referral is returned in
    /// full: kept (the default) or clawed back.
    #[serde(default)]
    pub on_full_return: OnFullReturn,
}

/// The referral bonus policy for a fully returned qualifying order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFullReturn {
    #[default]
    Keep,
    ClawBack,
}

impl Default for ReferralPolicy {
    /// What a program without a `referrals` section gets: nothing is paid.
    fn default() -> Self {
        Self {
            referrer_points: 0,
            referee_points: 0,
            min_first_purchase: Money::new(0, Currency::parse("USD").expect("USD is a currency")),
            monthly_cap: 10,
            daily_velocity: 3,
            expires_after_days: 30,
            on_full_return: OnFullReturn::Keep,
        }
    }
}

impl ReferralPolicy {
    pub fn validate(&self, currency: Currency) -> Result<(), String> {
        for (name, points) in [
            ("referrer_points", self.referrer_points),
            ("referee_points", self.referee_points),
        ] {
            if !(0..=MAX_REFERRAL_POINTS).contains(&points) {
                return Err(format!("{name} must be 0 to {MAX_REFERRAL_POINTS}"));
            }
        }
        if self.min_first_purchase.minor < 0 {
            return Err("min_first_purchase must not be negative".into());
        }
        if self.min_first_purchase.minor > 0 && self.min_first_purchase.currency != currency {
            return Err(format!(
                "min_first_purchase must be in the program currency {}",
                currency.as_str()
            ));
        }
        if !(1..=10_000).contains(&self.monthly_cap) {
            return Err("monthly_cap must be 1 to 10000".into());
        }
        if !(1..=1_000).contains(&self.daily_velocity) {
            return Err("daily_velocity must be 1 to 1000".into());
        }
        if !(1..=365).contains(&self.expires_after_days) {
            return Err("expires_after_days must be 1 to 365".into());
        }
        Ok(())
    }

    /// Whether `amount` (already in the program's currency) is enough for a first purchase.
    pub fn qualifies(&self, amount: &Money) -> bool {
        self.min_first_purchase.minor == 0
            || (amount.currency == self.min_first_purchase.currency
                && amount.minor >= self.min_first_purchase.minor)
    }
}
