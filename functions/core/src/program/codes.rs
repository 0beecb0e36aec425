//! The program's settings for reward codes (`codes` in the program document); the codes
//! themselves are in [`crate::redemptions`].

use serde::{Deserialize, Serialize};

/// What an expired, unused code does with its points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiredCodePolicy {
    /// The points come back (a `reverse` entry), with the stock unit and the per-member count.
    #[default]
    Refund,
    /// The member keeps nothing: the points stay spent.
    Forfeit,
}

/// The program's settings for codes: how long a hold waits for its confirmation, and what an
/// unused expired code does. How long a code is valid is each reward's `code_valid_days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodePolicy {
    #[serde(default = "default_hold_minutes")]
    pub hold_minutes: u32,
    #[serde(default)]
    pub expired_codes: ExpiredCodePolicy,
}

/// Default of [`CodePolicy::hold_minutes`].
pub const DEFAULT_HOLD_MINUTES: u32 = 15;
/// Longest accepted hold: a day.
pub const MAX_HOLD_MINUTES: u32 = 1_440;

fn default_hold_minutes() -> u32 {
    DEFAULT_HOLD_MINUTES
}

impl Default for CodePolicy {
    fn default() -> Self {
        Self {
            hold_minutes: DEFAULT_HOLD_MINUTES,
            expired_codes: ExpiredCodePolicy::default(),
        }
    }
}

impl CodePolicy {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_HOLD_MINUTES).contains(&self.hold_minutes) {
            return Err(format!("hold_minutes must be 1 to {MAX_HOLD_MINUTES}"));
        }
        Ok(())
    }
}
