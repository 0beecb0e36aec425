//! The rewards catalog. A reward's kind decides which fields it must carry, so that a "$5 off"
//! always says how much and in which currency.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::RewardId;
use crate::money::{Currency, Money};
use crate::Points;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    FreeProduct,
    FixedDiscount,
    PercentDiscount,
    FreeShipping,
    Merchandise,
    GiftCard,
    Experience,
    CharityDonation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reward {
    pub reward_id: RewardId,
    pub name: String,
    pub kind: RewardKind,
    pub points_cost: Points,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Monetary value for discounts, gift cards and donations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_off: Option<u32>,
    /// The product a free-product reward hands out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Total units that can ever be redeemed; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_member_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_until: Option<DateTime<Utc>>,
    /// Tiers allowed to redeem; absent or empty means every tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<String>,
    /// How long the code handed out at redemption stays valid.
    #[serde(default = "default_code_valid_days")]
    pub code_valid_days: u32,
}

fn default_code_valid_days() -> u32 {
    30
}

impl Reward {
    pub(crate) fn validate(&self, path: &str, currency: Currency) -> Result<(), String> {
        let name_len = self.name.chars().count();
        if self.name.trim().is_empty() || name_len > 100 || self.name.chars().any(char::is_control)
        {
            return Err(format!("{path}.name must be 1 to 100 printable characters"));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 500)
        {
            return Err(format!("{path}.description is longer than 500 characters"));
        }
        if !(1..=super::MAX_CONFIGURED_POINTS).contains(&self.points_cost) {
            return Err(format!(
                "{path}.points_cost must be 1 to {}",
                super::MAX_CONFIGURED_POINTS
            ));
        }
        if self.per_member_limit == Some(0) {
            return Err(format!(
                "{path}.per_member_limit must be at least 1 (omit it for no limit)"
            ));
        }
        if !(1..=3_650).contains(&self.code_valid_days) {
            return Err(format!("{path}.code_valid_days must be 1 to 3650"));
        }
        if let (Some(from), Some(until)) = (self.available_from, self.available_until) {
            if from >= until {
                return Err(format!(
                    "{path}.available_from must be before available_until"
                ));
            }
        }
        let needs_value = matches!(
            self.kind,
            RewardKind::FixedDiscount | RewardKind::GiftCard | RewardKind::CharityDonation
        );
        match (&self.value, needs_value) {
            (None, true) => {
                return Err(format!(
                    "{path}.value is required for a {:?} reward",
                    self.kind
                ))
            }
            (Some(_), false) => {
                return Err(format!(
                    "{path}.value only applies to discounts, gift cards and donations"
                ))
            }
            (Some(value), true) => {
                if value.currency != currency {
                    return Err(format!(
                        "{path}.value must be in the program currency {}",
                        currency.as_str()
                    ));
                }
                if value.minor <= 0 || value.minor > crate::money::MAX_MINOR {
                    return Err(format!("{path}.value must be a positive amount"));
                }
            }
            (None, false) => {}
        }
        match (self.percent_off, self.kind == RewardKind::PercentDiscount) {
            (None, true) => {
                return Err(format!(
                    "{path}.percent_off is required for a percent discount"
                ))
            }
            (Some(p), true) if !(1..=100).contains(&p) => {
                return Err(format!("{path}.percent_off must be 1 to 100"))
            }
            (Some(_), false) => {
                return Err(format!(
                    "{path}.percent_off only applies to percent discounts"
                ))
            }
            _ => {}
        }
        if self.kind == RewardKind::FreeProduct && self.sku.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{path}.sku is required for a free product"));
        }
        Ok(())
    }

    /// Whether the reward can be redeemed at `now` by a member of `tier`; `Err` says why not.
    pub fn redeemable(&self, now: DateTime<Utc>, tier: &str) -> Result<(), String> {
        if self.available_from.is_some_and(|from| now < from) {
            return Err(format!("reward '{}' is not available yet", self.reward_id));
        }
        if self.available_until.is_some_and(|until| now >= until) {
            return Err(format!(
                "reward '{}' is no longer available",
                self.reward_id
            ));
        }
        if !self.tiers.is_empty() && !self.tiers.iter().any(|t| t == tier) {
            return Err(format!(
                "reward '{}' is reserved for tiers {}",
                self.reward_id,
                self.tiers.join(", ")
            ));
        }
        Ok(())
    }
}
