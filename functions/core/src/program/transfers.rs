//! The program's transfer policy: whether members may give points to each other, how much per
//! transfer and per day, and which tiers may send. Pure rules; the service applies them to one
//! read of the sender, the receiver and the sender's day counter.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::tiers::TierRules;
use crate::Points;

use super::MAX_CONFIGURED_POINTS;

/// Off unless the program turns it on: giving points away is a liability decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferPolicy {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_min_points")]
    pub min_points: Points,
    #[serde(default = "default_max_points")]
    pub max_points: Points,
    /// Transfers one member may send per UTC day.
    #[serde(default = "default_daily_transfers")]
    pub daily_transfers: u32,
    /// Points one member may send per UTC day, over all their transfers.
    #[serde(default = "default_daily_points")]
    pub daily_points: Points,
    /// The tiers whose members may send; empty means every tier. Anyone may receive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sender_tiers: Vec<String>,
}

fn default_min_points() -> Points {
    1
}
fn default_max_points() -> Points {
    10_000
}
fn default_daily_transfers() -> u32 {
    5
}
fn default_daily_points() -> Points {
    20_000
}

impl Default for TransferPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            min_points: default_min_points(),
            max_points: default_max_points(),
            daily_transfers: default_daily_transfers(),
            daily_points: default_daily_points(),
            sender_tiers: Vec::new(),
        }
    }
}

/// What one member has sent on one UTC day; kept in a counter item written in the same
/// transaction as the transfer, under a condition on its version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferDay {
    pub transfers: u32,
    pub points: Points,
}

fn refused(code: ErrorCode, message: String, details: serde_json::Value) -> ApiError {
    ApiError::new(code, message).with_details(details)
}

impl TransferPolicy {
    pub fn validate(&self, tiers: &TierRules) -> Result<(), String> {
        if self.min_points < 1 || self.min_points > self.max_points {
            return Err("min_points must be at least 1 and at most max_points".into());
        }
        if self.max_points > MAX_CONFIGURED_POINTS {
            return Err(format!(
                "max_points must be at most {MAX_CONFIGURED_POINTS}"
            ));
        }
        if self.daily_transfers == 0 {
            return Err("daily_transfers must allow at least one transfer".into());
        }
        if self.daily_points < self.min_points || self.daily_points > MAX_CONFIGURED_POINTS {
            return Err(format!(
                "daily_points must be between min_points and {MAX_CONFIGURED_POINTS}"
            ));
        }
        if let Some(tier) = self.sender_tiers.iter().find(|t| tiers.rank(t).is_none()) {
            return Err(format!("sender_tiers: no tier '{tier}' in the ladder"));
        }
        Ok(())
    }

    /// Whether a member of `tier`, who has sent `sent_today` already, may send `points` now.
    /// The balance is checked by the caller (`insufficient_points` is a 409, these are 422s).
    pub fn allows(
        &self,
        tier: &str,
        points: Points,
        sent_today: TransferDay,
    ) -> Result<(), ApiError> {
        if !self.enabled {
            return Err(refused(
                ErrorCode::TransfersDisabled,
                "this program does not allow transfers".into(),
                json!({}),
            ));
        }
        if !self.sender_tiers.is_empty() && !self.sender_tiers.iter().any(|t| t == tier) {
            return Err(refused(
                ErrorCode::TransferTierNotAllowed,
                format!("members in tier '{tier}' cannot send points"),
                json!({ "tier": tier, "sender_tiers": self.sender_tiers }),
            ));
        }
        if points < self.min_points {
            return Err(refused(
                ErrorCode::TransferBelowMinimum,
                format!("a transfer is at least {} points", self.min_points),
                json!({ "field": "points", "min_points": self.min_points }),
            ));
        }
        if points > self.max_points {
            return Err(refused(
                ErrorCode::TransferAboveMaximum,
                format!("a transfer is at most {} points", self.max_points),
                json!({ "field": "points", "max_points": self.max_points }),
            ));
        }
        if sent_today.transfers >= self.daily_transfers {
            return Err(refused(
                ErrorCode::TransferDailyCountExceeded,
                format!("at most {} transfers a day", self.daily_transfers),
                json!({ "daily_transfers": self.daily_transfers, "sent_today": sent_today.transfers }),
            ));
        }
        if sent_today.points.saturating_add(points) > self.daily_points {
            return Err(refused(
                ErrorCode::TransferDailyPointsExceeded,
                format!("at most {} points a day", self.daily_points),
                json!({ "daily_points": self.daily_points, "sent_today": sent_today.points }),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> TransferPolicy {
        TransferPolicy {
            enabled: true,
            min_points: 10,
            max_points: 500,
            daily_transfers: 2,
            daily_points: 600,
            sender_tiers: vec!["silver".into()],
        }
    }

    fn code(result: Result<(), ApiError>) -> Option<ErrorCode> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn each_limit_refuses_with_its_own_code() {
        let fresh = TransferDay::default();
        let policy = open();
        assert_eq!(code(policy.allows("silver", 100, fresh)), None);
        assert_eq!(
            code(TransferPolicy::default().allows("silver", 100, fresh)),
            Some(ErrorCode::TransfersDisabled)
        );
        assert_eq!(
            code(policy.allows("bronze", 100, fresh)),
            Some(ErrorCode::TransferTierNotAllowed)
        );
        assert_eq!(
            code(policy.allows("silver", 9, fresh)),
            Some(ErrorCode::TransferBelowMinimum)
        );
        assert_eq!(
            code(policy.allows("silver", 501, fresh)),
            Some(ErrorCode::TransferAboveMaximum)
        );
        let two_sent = TransferDay {
            transfers: 2,
            points: 20,
        };
        assert_eq!(
            code(policy.allows("silver", 10, two_sent)),
            Some(ErrorCode::TransferDailyCountExceeded)
        );
        let most_sent = TransferDay {
            transfers: 1,
            points: 500,
        };
        assert_eq!(code(policy.allows("silver", 100, most_sent)), None);
        assert_eq!(
            code(policy.allows("silver", 101, most_sent)),
            Some(ErrorCode::TransferDailyPointsExceeded)
        );
    }

    #[test]
    fn an_empty_tier_list_lets_every_tier_send() {
        let policy = TransferPolicy {
            sender_tiers: Vec::new(),
            ..open()
        };
        assert_eq!(
            code(policy.allows("bronze", 100, TransferDay::default())),
            None
        );
    }
}
