//! The program document: earning rules, actions and the rewards catalog as versioned data. A new
//! version applies to events recorded after it is published; each ledger entry keeps the version
//! that priced it.

pub mod codes;
mod earning;
pub mod plans;
pub mod referrals;
mod rewards;
pub mod seasons;
mod transfers;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use earning::{
    evaluate_action, evaluate_purchase, forget_periods_before, period_key, ActionCounts,
    PurchaseLine,
};
pub use rewards::{Reward, RewardKind};
pub use transfers::{TransferDay, TransferPolicy};

use crate::error::{ApiError, ErrorCode};
use crate::ids::{ActionName, Category};
use crate::money::Currency;
use crate::tiers::TierRules;
use crate::Points;
use seasons::Season;

/// Upper bound for any single configured points figure; keeps sums far from overflow.
pub const MAX_CONFIGURED_POINTS: Points = 10_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramDocument {
    pub name: String,
    pub currency: Currency,
    /// The tier ladder; every member starts in its first level.
    pub tiers: TierRules,
    #[serde(default)]
    pub welcome_bonus: Points,
    /// Referral rewards and their fraud controls; without it, referrals pay nothing.
    #[serde(default)]
    pub referrals: referrals::ReferralPolicy,
    pub earning: SpendRule,
    #[serde(default)]
    pub actions: Vec<ActionRule>,
    #[serde(default)]
    pub rewards: Vec<Reward>,
    /// Paid membership plans members can subscribe to.
    #[serde(default)]
    pub plans: Vec<plans::Plan>,
    /// Yearly promotions the season schedule opens and closes.
    #[serde(default)]
    pub seasons: Vec<Season>,
    /// How late an event may be reported: an accrual whose `occurred_at` is older than this many
    /// days is refused (`occurred_at_out_of_range`). Cap counters and promotion uses are kept at
    /// least this long, so no accepted late event can find its period's counter forgotten.
    #[serde(default = "default_late_events_days")]
    pub late_events_days: u32,
    /// How long before `enrolled_at` an event may have happened and still count: the order on
    /// which a member enrols at the till is stamped a moment before the enrolment is recorded.
    #[serde(default = "default_checkout_grace_seconds")]
    pub checkout_grace_seconds: u32,
    /// What a movement that takes points back (a return, a negative adjustment) does when the
    /// member has already spent them.
    #[serde(default)]
    pub return_policy: ReturnPolicy,
    /// Whether and how much members may give each other; off by default.
    #[serde(default)]
    pub transfers: TransferPolicy,
    /// Reward codes: how long a hold waits for the till, what an expired unused code does.
    #[serde(default)]
    pub codes: codes::CodePolicy,
    /// Whether and when points expire, and the warnings before they do (see [`crate::expiry`]).
    #[serde(default)]
    pub expiry: crate::expiry::ExpiryPolicy,
}

/// What taking back points a member has already spent does. The ledger is exact under each:
/// the entry records what was actually taken and the balance after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnPolicy {
    /// Take it all back; the balance may go below zero, and redemptions are refused until it
    /// has recovered (a redemption needs its cost available).
    AllowNegative,
    /// Take back at most what is available; the balance stops at zero.
    #[default]
    CapAtBalance,
    /// Refuse the movement (`insufficient_points`) when it would take more than is available.
    Reject,
}

impl ReturnPolicy {
    /// The points (≤ 0) a take-back of `wanted` (≤ 0) actually moves from `available`, or
    /// `None` when the policy refuses it.
    pub fn take_back(self, wanted: Points, available: Points) -> Option<Points> {
        let spendable = available.max(0);
        if -wanted <= spendable {
            return Some(wanted);
        }
        match self {
            Self::AllowNegative => Some(wanted),
            Self::CapAtBalance => Some(-spendable),
            Self::Reject => None,
        }
    }
}

/// Default of [`ProgramDocument::late_events_days`].
pub const DEFAULT_LATE_EVENTS_DAYS: u32 = 30;
/// Largest accepted [`ProgramDocument::late_events_days`]: it bounds how many period counters a
/// member item keeps (a daily cap keeps one per day of the window).
pub const MAX_LATE_EVENTS_DAYS: u32 = 90;
/// Default of [`ProgramDocument::checkout_grace_seconds`]: five minutes.
pub const DEFAULT_CHECKOUT_GRACE_SECONDS: u32 = 300;
/// Largest accepted [`ProgramDocument::checkout_grace_seconds`]: one hour.
pub const MAX_CHECKOUT_GRACE_SECONDS: u32 = 3_600;

fn default_late_events_days() -> u32 {
    DEFAULT_LATE_EVENTS_DAYS
}

fn default_checkout_grace_seconds() -> u32 {
    DEFAULT_CHECKOUT_GRACE_SECONDS
}

/// Points for spend: `points_per_unit` for every `unit_minor` minor units, e.g. 1 point per 100
/// cents. Multipliers are integer percentages (150 = 1.5×) so no float ever touches points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendRule {
    pub points_per_unit: u32,
    pub unit_minor: u32,
    pub rounding: Rounding,
    #[serde(default)]
    pub excluded_categories: Vec<Category>,
    #[serde(default)]
    pub category_multipliers: Vec<CategoryMultiplier>,
    /// A return window: what a purchase earns stays pending (not spendable) for this many days
    /// after the order, then the daily points run releases it (see [`crate::pending`]). 0: points
    /// are available at once.
    #[serde(default, skip_serializing_if = "is_zero_days")]
    pub pending_days: u32,
    /// When a pending purchase counts towards tiers: `at_earn` (its own day, default) or
    /// `on_release`.
    #[serde(default)]
    pub pending_tier_activity: crate::pending::PendingTierActivity,
}

fn is_zero_days(days: &u32) -> bool {
    *days == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Each rule's points are summed over the whole order, then rounded down once.
    FloorPerOrder,
    /// Each item line (and the unitemised rest of the order) is rounded down on its own.
    FloorPerItem,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryMultiplier {
    pub category: Category,
    pub multiplier_percent: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRule {
    pub action: ActionName,
    pub points: Points,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<ActionCap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionCap {
    pub count: u32,
    pub per: CapPeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    Day,
    Week,
    Month,
    Year,
    Lifetime,
}

/// A published program: the document plus the version and time the store gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveProgram {
    pub version: u64,
    pub published_at: DateTime<Utc>,
    /// The `sub` of the admin who published this version; none for the default program a
    /// fresh deployment publishes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(flatten)]
    pub document: ProgramDocument,
}

impl ProgramDocument {
    /// How far back an event may be reported.
    pub fn late_window(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.late_events_days))
    }

    /// How long before enrolment an event may have happened and still count.
    pub fn checkout_grace(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::from(self.checkout_grace_seconds))
    }
}

impl ActiveProgram {
    pub fn reward(&self, id: &str) -> Option<&Reward> {
        self.document
            .rewards
            .iter()
            .find(|r| r.reward_id.as_str() == id)
    }

    pub fn action(&self, action: &ActionName) -> Option<&ActionRule> {
        self.document.actions.iter().find(|a| &a.action == action)
    }
}

fn invalid(path: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidProgram, message).with_details(json!({ "path": path }))
}

fn check_points(path: &str, points: Points, min: Points) -> Result<(), ApiError> {
    if points < min || points > MAX_CONFIGURED_POINTS {
        return Err(invalid(
            path,
            format!("{path} must be between {min} and {MAX_CONFIGURED_POINTS}"),
        ));
    }
    Ok(())
}

fn check_text(path: &str, text: &str, max: usize) -> Result<(), ApiError> {
    let length = text.chars().count();
    if text.trim().is_empty() || length > max || text.chars().any(char::is_control) {
        return Err(invalid(
            path,
            format!("{path} must be 1 to {max} printable characters"),
        ));
    }
    Ok(())
}

impl ProgramDocument {
    /// Parses and validates a document. Every rule that could make earning ambiguous or
    /// overflow is rejected here, so evaluation never has to.
    pub fn parse(raw: &[u8]) -> Result<Self, ApiError> {
        let document: Self = serde_json::from_slice(raw).map_err(|e| {
            ApiError::new(ErrorCode::InvalidProgram, format!("program document: {e}"))
        })?;
        document.validate()?;
        Ok(document)
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        check_text("name", &self.name, 100)?;
        self.tiers
            .validate()
            .map_err(|message| invalid("tiers", message))?;
        let mut seasons = HashSet::new();
        for (i, season) in self.seasons.iter().enumerate() {
            let path = format!("seasons[{i}]");
            season
                .validate()
                .map_err(|message| invalid(&path, message))?;
            if !seasons.insert(&season.season_id) {
                return Err(invalid(
                    &path,
                    format!("season '{}' is defined twice", season.season_id),
                ));
            }
        }
        for (i, r) in self.rewards.iter().enumerate() {
            if let Some(tier) = r.tiers.iter().find(|t| self.tiers.rank(t).is_none()) {
                return Err(invalid(
                    &format!("rewards[{i}].tiers"),
                    format!("no tier '{tier}' in the ladder"),
                ));
            }
        }
        check_points("welcome_bonus", self.welcome_bonus, 0)?;
        if !(1..=MAX_LATE_EVENTS_DAYS).contains(&self.late_events_days) {
            return Err(invalid(
                "late_events_days",
                format!("late_events_days must be 1 to {MAX_LATE_EVENTS_DAYS}"),
            ));
        }
        if self.checkout_grace_seconds > MAX_CHECKOUT_GRACE_SECONDS {
            return Err(invalid(
                "checkout_grace_seconds",
                format!("checkout_grace_seconds must be 0 to {MAX_CHECKOUT_GRACE_SECONDS}"),
            ));
        }
        self.codes
            .validate()
            .map_err(|message| invalid("codes", message))?;
        self.expiry
            .validate()
            .map_err(|message| invalid("expiry", message))?;
        self.transfers
            .validate(&self.tiers)
            .map_err(|message| invalid("transfers", message))?;
        self.referrals
            .validate(self.currency)
            .map_err(|message| invalid("referrals", message))?;
        plans::validate_plans(&self.plans, &self.tiers, self.currency)
            .map_err(|(path, message)| invalid(&path, message))?;

        let earning = &self.earning;
        if !(1..=1_000).contains(&earning.points_per_unit) {
            return Err(invalid(
                "earning.points_per_unit",
                "points_per_unit must be 1 to 1000",
            ));
        }
        if !(1..=1_000_000).contains(&earning.unit_minor) {
            return Err(invalid(
                "earning.unit_minor",
                "unit_minor must be 1 to 1000000",
            ));
        }
        if earning.pending_days > crate::pending::MAX_PENDING_DAYS {
            return Err(invalid(
                "earning.pending_days",
                format!(
                    "pending_days must be 0 to {}",
                    crate::pending::MAX_PENDING_DAYS
                ),
            ));
        }
        let excluded: HashSet<&Category> = earning.excluded_categories.iter().collect();
        if excluded.len() != earning.excluded_categories.len() {
            return Err(invalid(
                "earning.excluded_categories",
                "a category is listed twice",
            ));
        }
        let mut multiplied = HashSet::new();
        for (i, m) in earning.category_multipliers.iter().enumerate() {
            let path = format!("earning.category_multipliers[{i}]");
            if !(100..=1_000).contains(&m.multiplier_percent) {
                return Err(invalid(
                    &path,
                    "multiplier_percent must be 100 to 1000 (1× to 10×)",
                ));
            }
            if !multiplied.insert(&m.category) {
                return Err(invalid(
                    &path,
                    format!("category '{}' has two multipliers", m.category),
                ));
            }
            if excluded.contains(&m.category) {
                return Err(invalid(
                    &path,
                    format!("category '{}' is both excluded and multiplied", m.category),
                ));
            }
        }

        let mut actions = HashSet::new();
        for (i, a) in self.actions.iter().enumerate() {
            let path = format!("actions[{i}]");
            if !actions.insert(&a.action) {
                return Err(invalid(
                    &path,
                    format!("action '{}' is defined twice", a.action),
                ));
            }
            check_points(&format!("{path}.points"), a.points, 1)?;
            check_text(&format!("{path}.description"), &a.description, 200)?;
            if a.cap.is_some_and(|cap| cap.count == 0) {
                return Err(invalid(
                    &path,
                    "a cap must allow at least one action per period",
                ));
            }
        }

        let mut rewards = HashSet::new();
        for (i, r) in self.rewards.iter().enumerate() {
            let path = format!("rewards[{i}]");
            if !rewards.insert(&r.reward_id) {
                return Err(invalid(
                    &path,
                    format!("reward '{}' is defined twice", r.reward_id),
                ));
            }
            r.validate(&path, self.currency)
                .map_err(|message| invalid(&path, message))?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const DEFAULT_PROGRAM: &str = include_str!("../../../../infra/program.default.json");

    pub(crate) fn default_program() -> ActiveProgram {
        ActiveProgram {
            version: 1,
            published_at: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .expect("date")
                .with_timezone(&Utc),
            created_by: None,
            document: ProgramDocument::parse(DEFAULT_PROGRAM.as_bytes())
                .expect("default program is valid"),
        }
    }

    #[test]
    fn the_shipped_program_is_valid_and_has_a_varied_catalog() {
        let program = default_program();
        let kinds: HashSet<_> = program.document.rewards.iter().map(|r| r.kind).collect();
        assert!(
            kinds.len() >= 4,
            "catalog needs at least four kinds of reward"
        );
        for action in [
            "review",
            "social_share",
            "profile_completed",
            "event_attended",
        ] {
            let name = ActionName::parse(action).expect("name");
            assert!(
                program.action(&name).and_then(|a| a.cap).is_some(),
                "{action} needs a cap"
            );
        }
        assert!(program.document.welcome_bonus > 0);
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<ProgramDocument, ApiError> {
        let mut value: serde_json::Value = serde_json::from_str(DEFAULT_PROGRAM).expect("json");
        edit(&mut value);
        ProgramDocument::parse(value.to_string().as_bytes())
    }

    #[test]
    fn bad_documents_are_rejected_with_a_reason() {
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("unknown field", Box::new(|v| v["surprise"] = json!(1))),
            (
                "zero rate",
                Box::new(|v| v["earning"]["points_per_unit"] = json!(0)),
            ),
            (
                "negative bonus",
                Box::new(|v| v["welcome_bonus"] = json!(-1)),
            ),
            ("bad currency", Box::new(|v| v["currency"] = json!("usd"))),
            (
                "multiplier 20x",
                Box::new(|v| {
                    v["earning"]["category_multipliers"][0]["multiplier_percent"] = json!(2000)
                }),
            ),
            (
                "duplicate reward",
                Box::new(|v| {
                    let first = v["rewards"][0].clone();
                    v["rewards"].as_array_mut().expect("array").push(first);
                }),
            ),
            (
                "zero cap",
                Box::new(|v| v["actions"][0]["cap"]["count"] = json!(0)),
            ),
            (
                "free reward",
                Box::new(|v| v["rewards"][0]["points_cost"] = json!(0)),
            ),
        ];
        for (name, edit) in cases {
            let error = with(edit).expect_err(name);
            assert_eq!(error.code, ErrorCode::InvalidProgram, "{name}");
            assert!(!error.message.is_empty(), "{name}");
        }
    }
}
