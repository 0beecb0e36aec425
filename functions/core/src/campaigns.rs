//! Bonus campaigns: points granted to a segment (a tier, a list of members, an enrolment date
//! range) asynchronously. The request only records the campaign; a dispatcher walks the audience
//! page by page through indexes and a worker grants, at most once per member and campaign, never
//! beyond the budget. The campaign record keeps the counters, updated in the same transaction as
//! each grant, so they always add up.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::ids::MemberId;
use crate::Points;

pub const RECORD_KIND: &str = "campaign";
/// Marks a member counted as granted, skipped or failed, so a redelivered message counts each
/// member once, with one outcome.
pub const OUTCOME_KIND: &str = "campaign_outcome";
pub const RECORD_OWNER: &str = "program";
/// Members per grant message: SQS's 256 KB message limit leaves room for far more; this keeps
/// one message's work well inside the worker's timeout.
pub const MEMBERS_PER_GRANT: usize = 100;
/// Members a dispatcher reads per invocation before handing the rest to its next message.
pub const MEMBERS_PER_PAGE: usize = 1_000;
pub const MAX_LISTED_MEMBERS: usize = 10_000;
/// Members granted in one transaction: four items each (member, ledger entry, entry guard,
/// outcome marker) plus the campaign's counters stay within DynamoDB's 100 items per transaction.
pub const GRANTS_PER_WRITE: usize = 24;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Audience {
    Tier(String),
    MemberIds(Vec<MemberId>),
    EnrolledBetween([NaiveDate; 2]),
}

/// How the store walks an audience that lives in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceQuery {
    Tier(String),
    EnrolledBetween(NaiveDate, NaiveDate),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Dispatching,
    Dispatched,
    Canceled,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub targeted: u64,
    pub granted: u64,
    pub skipped: u64,
    pub failed: u64,
    pub points_granted: Points,
}

fn overflow(counter: &str) -> ApiError {
    ApiError::new(
        crate::error::ErrorCode::CounterOverflow,
        format!("the campaign's {counter} counter would overflow"),
    )
}

impl Counters {
    /// Counts `members` more grants worth `points` in all.
    pub fn add_grants(&mut self, members: u64, points: Points) -> Result<(), ApiError> {
        self.granted = self
            .granted
            .checked_add(members)
            .ok_or_else(|| overflow("granted"))?;
        self.points_granted = self
            .points_granted
            .checked_add(points)
            .ok_or_else(|| overflow("points_granted"))?;
        Ok(())
    }

    pub fn add_targeted(&mut self, members: u64) -> Result<(), ApiError> {
        self.targeted = self
            .targeted
            .checked_add(members)
            .ok_or_else(|| overflow("targeted"))?;
        Ok(())
    }

    pub fn add_skipped(&mut self) -> Result<(), ApiError> {
        self.skipped = self
            .skipped
            .checked_add(1)
            .ok_or_else(|| overflow("skipped"))?;
        Ok(())
    }

    pub fn add_failed(&mut self) -> Result<(), ApiError> {
        self.failed = self
            .failed
            .checked_add(1)
            .ok_or_else(|| overflow("failed"))?;
        Ok(())
    }
}

impl Campaign {
    /// Points `members` grants cost, and whether they fit what is left of the budget.
    pub fn cost_of(&self, members: usize) -> Result<(Points, bool), ApiError> {
        let cost = Points::try_from(members)
            .ok()
            .and_then(|n| self.points.checked_mul(n))
            .ok_or_else(|| overflow("points_granted"))?;
        let fits = match self.budget_points {
            None => true,
            Some(budget) => self
                .counters
                .points_granted
                .checked_add(cost)
                .is_some_and(|total| total <= budget),
        };
        Ok((cost, fits))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub campaign_id: String,
    pub name: String,
    pub points: Points,
    pub audience: Audience,
    #[serde(default)]
    pub budget_points: Option<Points>,
    pub reason: String,
    pub status: CampaignStatus,
    pub created_at: DateTime<Utc>,
    /// The admin who created it (a token's `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_by: Option<String>,
    /// Audience pages already dispatched; a redelivered dispatch message for one of them is a
    /// no-op, so `targeted` counts each member once.
    pub pages_dispatched: u64,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    pub name: String,
    pub points: Points,
    pub audience: Audience,
    #[serde(default)]
    pub budget_points: Option<Points>,
    pub reason: String,
}

fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be 1 to {max} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

impl CampaignRequest {
    pub fn into_campaign(
        self,
        campaign_id: String,
        now: DateTime<Utc>,
    ) -> Result<Campaign, ApiError> {
        if !(1..=crate::program::MAX_CONFIGURED_POINTS).contains(&self.points) {
            return Err(ApiError::invalid("points", "points must be 1 to 10000000"));
        }
        if self.budget_points.is_some_and(|b| b < 1) {
            return Err(ApiError::invalid(
                "budget_points",
                "budget_points must be positive",
            ));
        }
        match &self.audience {
            Audience::MemberIds(ids) if ids.is_empty() || ids.len() > MAX_LISTED_MEMBERS => {
                return Err(ApiError::invalid(
                    "audience",
                    format!("member_ids must list 1 to {MAX_LISTED_MEMBERS} members"),
                ));
            }
            Audience::EnrolledBetween([from, to]) if from > to => {
                return Err(ApiError::invalid(
                    "audience",
                    "enrolled_between must run from an earlier to a later day",
                ));
            }
            Audience::Tier(tier) if tier.is_empty() => {
                return Err(ApiError::invalid("audience", "tier is empty"))
            }
            _ => {}
        }
        Ok(Campaign {
            campaign_id,
            name: text("name", &self.name, 100)?,
            points: self.points,
            audience: self.audience,
            budget_points: self.budget_points,
            reason: text("reason", &self.reason, 200)?,
            status: CampaignStatus::Dispatching,
            created_at: now,
            created_by: None,
            canceled_by: None,
            pages_dispatched: 0,
            counters: Counters::default(),
        })
    }
}

/// One dispatcher step: audience page `page`, continuing from `cursor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchMessage {
    pub campaign_id: String,
    pub page: u64,
    #[serde(default)]
    pub cursor: Option<String>,
}

/// Members to grant, as the worker receives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantMessage {
    pub campaign_id: String,
    pub member_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn audiences_parse_in_the_three_documented_shapes() {
        for (raw, ok) in [
            (r#"{"tier":"gold"}"#, true),
            (r#"{"member_ids":["a","b"]}"#, true),
            (r#"{"enrolled_between":["2026-01-01","2026-03-31"]}"#, true),
            (r#"{"tier":"gold","member_ids":["a"]}"#, false),
            (r#"{"everyone":true}"#, false),
            (r#"{"member_ids":["bad id"]}"#, false),
        ] {
            assert_eq!(serde_json::from_str::<Audience>(raw).is_ok(), ok, "{raw}");
        }
    }

    #[test]
    fn counters_and_costs_refuse_to_overflow_instead_of_wrapping() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 22, 0, 0, 0)
            .single()
            .expect("date");
        let request: CampaignRequest = serde_json::from_str(
            r#"{"name":"x","points":10000000,"audience":{"tier":"gold"},"budget_points":5,"reason":"r"}"#,
        )
        .expect("shape");
        let mut campaign = request.into_campaign("c".into(), now).expect("valid");
        assert_eq!(campaign.cost_of(1).expect("fits i64"), (10_000_000, false));
        assert_eq!(
            campaign.cost_of(usize::MAX).expect_err("overflow").code,
            crate::error::ErrorCode::CounterOverflow
        );
        campaign.counters.points_granted = Points::MAX;
        campaign.budget_points = None;
        assert!(campaign.cost_of(1).expect("no budget").1);
        assert!(campaign.counters.add_grants(1, 1).is_err());
        campaign.counters.granted = u64::MAX;
        campaign.counters.points_granted = 0;
        assert!(campaign.counters.add_grants(1, 1).is_err());
        assert_eq!(
            campaign.counters.granted,
            u64::MAX,
            "unchanged by a refusal"
        );
    }

    #[test]
    fn campaign_requests_are_validated() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 22, 0, 0, 0)
            .single()
            .expect("date");
        let request = |json: &str| serde_json::from_str::<CampaignRequest>(json).expect("shape");
        let ok = request(
            r#"{"name":"Thanks","points":50,"audience":{"tier":"gold"},"reason":"goodwill"}"#,
        );
        assert!(ok.into_campaign("c1".into(), now).is_ok());
        let backwards = request(
            r#"{"name":"x","points":5,"audience":{"enrolled_between":["2026-03-01","2026-01-01"]},"reason":"r"}"#,
        );
        assert!(backwards.into_campaign("c2".into(), now).is_err());
        let free = request(r#"{"name":"x","points":0,"audience":{"tier":"gold"},"reason":"r"}"#);
        assert!(free.into_campaign("c3".into(), now).is_err());
    }
}
