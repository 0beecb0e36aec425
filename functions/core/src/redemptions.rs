//! Reward codes: every redemption is a record, keyed by the code the customer shows at the till,
//! with a lifecycle `issued` → `used`, or `held` → `used` (a two-phase redemption confirmed at
//! the till), or back to the member (`canceled`, a lapsed hold released, an expired code
//! refunded). The record's status and version are conditions of every write that moves it, in
//! the same transaction as the member's balance, so one code has exactly one fate.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{random_crockford, MemberId, RewardId};
use crate::ports::{Expect, Record, RecordWrite};
pub use crate::program::codes::{
    CodePolicy, ExpiredCodePolicy, DEFAULT_HOLD_MINUTES, MAX_HOLD_MINUTES,
};
use crate::program::Reward;
use crate::Points;

/// The record kind of redemptions; a record's id is its code.
pub const KIND: &str = "redemption";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedemptionStatus {
    /// Paid for; the code can be used until it expires.
    Issued,
    /// Points reserved, not yet confirmed: `use` confirms it, or it is released when the hold
    /// lapses.
    Held,
    Used,
    /// Given back by a cancel: points, the stock unit and the per-member count returned.
    Canceled,
    /// Not used in time: an expired code (refunded or forfeited by program policy) or a
    /// released hold (always refunded).
    Expired,
}

impl RedemptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Held => "held",
            Self::Used => "used",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }
}

/// A fresh code: 60 random bits from the OS-seeded generator, so it says nothing about the member
/// or the redemption and cannot be guessed from other codes.
pub fn new_code() -> String {
    let raw = random_crockford(12);
    format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12])
}

/// A code as typed at the till: trimmed, upper case. Anything longer than a code is refused
/// before any read.
pub fn normalise_code(raw: &str) -> Option<String> {
    let code = raw.trim().to_ascii_uppercase();
    let shaped = code.len() == 14 && code.bytes().all(|b| b == b'-' || b.is_ascii_alphanumeric());
    shaped.then_some(code)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redemption {
    pub code: String,
    pub redemption_id: String,
    pub member_id: MemberId,
    pub reward_id: RewardId,
    pub points: Points,
    pub status: RedemptionStatus,
    pub expires_at: DateTime<Utc>,
    /// When an unconfirmed hold lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<DateTime<Utc>>,
    /// A unit of limited stock was taken, and is given back when the points are.
    #[serde(default)]
    pub stock_claimed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `{"code","redemption_id","member_id","reward_id","points","status","expires_at"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedemptionView {
    pub code: String,
    pub redemption_id: String,
    pub member_id: MemberId,
    pub reward_id: RewardId,
    pub points: Points,
    pub status: RedemptionStatus,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<DateTime<Utc>>,
}

/// What the scheduled sweep does with a redemption that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// A hold nobody confirmed: the points come back.
    ReleaseHold,
    /// An unused code past its expiry: per [`ExpiredCodePolicy`].
    ExpireCode,
}

impl Redemption {
    /// A new redemption of `reward` by `member_id` at `now`, under a fresh code; held until
    /// `hold_until` when given.
    pub fn new(
        redemption_id: String,
        member_id: MemberId,
        reward: &Reward,
        hold_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            code: new_code(),
            redemption_id,
            member_id,
            reward_id: reward.reward_id.clone(),
            points: reward.points_cost,
            status: if hold_until.is_some() {
                RedemptionStatus::Held
            } else {
                RedemptionStatus::Issued
            },
            expires_at: now + Duration::days(i64::from(reward.code_valid_days)),
            hold_until,
            stock_claimed: reward.stock.is_some(),
            created_at: now,
            updated_at: now,
        }
    }

    /// What has happened to it by `now`: an issued code past its expiry, or a hold past its
    /// time, reads `expired` even before the sweep has settled it.
    pub fn status_at(&self, now: DateTime<Utc>) -> RedemptionStatus {
        match self.lapse_at(now) {
            Some(_) => RedemptionStatus::Expired,
            None => self.status,
        }
    }

    /// What the sweep must do with it at `now`, if anything.
    pub fn lapse_at(&self, now: DateTime<Utc>) -> Option<Lapse> {
        match self.status {
            RedemptionStatus::Held if self.hold_until.is_none_or(|until| now >= until) => {
                Some(Lapse::ReleaseHold)
            }
            RedemptionStatus::Issued if now >= self.expires_at => Some(Lapse::ExpireCode),
            _ => None,
        }
    }

    /// When the sweep next has work with it: while held, the hold's end; while issued, the
    /// expiry; never once settled.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.status {
            RedemptionStatus::Held => self.hold_until,
            RedemptionStatus::Issued => Some(self.expires_at),
            _ => None,
        }
    }

    pub fn view(&self, now: DateTime<Utc>) -> RedemptionView {
        RedemptionView {
            code: self.code.clone(),
            redemption_id: self.redemption_id.clone(),
            member_id: self.member_id.clone(),
            reward_id: self.reward_id.clone(),
            points: self.points,
            status: self.status_at(now),
            expires_at: self.expires_at,
            hold_until: self
                .hold_until
                .filter(|_| self.status == RedemptionStatus::Held),
        }
    }

    /// This redemption moved to `status` at `now`.
    pub fn moved(&self, status: RedemptionStatus, now: DateTime<Utc>) -> Self {
        let mut next = self.clone();
        next.status = status;
        next.updated_at = now;
        next
    }

    /// The record holding it at `version`, in the due index while the sweep has work with it.
    pub fn record(&self, version: u64) -> Result<Record, serde_json::Error> {
        Ok(Record {
            kind: KIND.to_owned(),
            id: self.code.clone(),
            owner: Some(self.member_id.as_str().to_owned()),
            version,
            due: self.due_at().map(|at| at.date_naive()),
            body: serde_json::to_value(self)?,
        })
    }

    /// The write that creates it: the code must be new.
    pub fn create(&self) -> Result<RecordWrite, serde_json::Error> {
        Ok(RecordWrite {
            record: self.record(1)?,
            expect: Expect::Absent,
        })
    }

    /// The write that replaces the record read at `version` with this one, only if nobody
    /// moved it since.
    pub fn replace(&self, version: u64) -> Result<RecordWrite, serde_json::Error> {
        Ok(RecordWrite {
            record: self.record(version + 1)?,
            expect: Expect::Version(version),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 12, minute, 0).unwrap()
    }

    fn redemption(hold_until: Option<DateTime<Utc>>) -> Redemption {
        let reward: Reward = serde_json::from_value(serde_json::json!({
            "reward_id": "coffee", "name": "Coffee", "kind": "free_product", "points_cost": 500,
        }))
        .unwrap();
        Redemption::new(
            "rdm_1".into(),
            MemberId::parse("ada").unwrap(),
            &reward,
            hold_until,
            at(0),
        )
    }

    #[test]
    fn a_hold_lapses_at_its_time_and_an_issued_code_at_its_expiry() {
        let held = redemption(Some(at(15)));
        assert_eq!(held.status, RedemptionStatus::Held);
        assert_eq!(held.lapse_at(at(14)), None);
        assert_eq!(held.lapse_at(at(15)), Some(Lapse::ReleaseHold));
        assert_eq!(held.status_at(at(15)), RedemptionStatus::Expired);
        let issued = redemption(None);
        assert_eq!(issued.lapse_at(at(59)), None);
        assert_eq!(issued.lapse_at(issued.expires_at), Some(Lapse::ExpireCode));
        let used = issued.moved(RedemptionStatus::Used, at(1));
        assert_eq!(used.lapse_at(used.expires_at), None);
        assert_eq!(used.due_at(), None);
    }

    #[test]
    fn codes_are_random_and_typed_codes_are_normalised() {
        let code = new_code();
        assert_ne!(code, new_code());
        assert_eq!(
            normalise_code(&format!(" {} ", code.to_lowercase())),
            Some(code)
        );
        assert_eq!(normalise_code("../../etc"), None);
        assert_eq!(normalise_code(&"A".repeat(500)), None);
    }

    #[test]
    fn a_record_is_in_the_due_index_only_while_the_sweep_has_work_with_it() {
        let held = redemption(Some(at(15)));
        let record = held.record(1).unwrap();
        assert_eq!(record.due, Some(at(15).date_naive()));
        assert_eq!(record.id, held.code);
        let canceled = held.moved(RedemptionStatus::Canceled, at(3));
        assert_eq!(canceled.record(2).unwrap().due, None);
    }

    #[test]
    fn a_hold_of_zero_minutes_or_over_a_day_is_refused() {
        let mut policy = CodePolicy::default();
        assert!(policy.validate().is_ok());
        policy.hold_minutes = 0;
        assert!(policy.validate().is_err());
        policy.hold_minutes = MAX_HOLD_MINUTES + 1;
        assert!(policy.validate().is_err());
    }
}
