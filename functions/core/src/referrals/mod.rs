//! Referrals: a member shares their code, a friend enrols with it and then makes a first
//! qualifying purchase, and both are rewarded — once, and only within the program's policy.
//!
//! Everything here is pure: the policy (part of the program document), the referral record's
//! body, the marks a referral leaves on member items (the referee's qualifying purchase, the
//! referrer's reward counters), and [`decide`], which turns a referral and its two members into
//! a decision. The services in `service::referrals` load, decide and write.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{MemberId, OrderId};
use crate::ledger::Source;
use crate::member::Member;

pub use crate::member::referrals::{ReferralCounts, ReferralPurchase};
pub use crate::program::referrals::{OnFullReturn, ReferralPolicy};
use crate::Points;

/// The record kind of referrals in the record store.
pub const KIND: &str = "referral";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralStatus {
    Pending,
    Rewarded,
    Rejected,
    Expired,
}

/// Why a referral was rejected; stable codes, shown to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Referrer and referee are the same member or share an email address.
    SelfReferral,
    /// The referee was a member before the referral, or did not enrol through it.
    RefereeNotNew,
    /// The referrer has had `monthly_cap` referrals rewarded this month.
    MonthlyCapReached,
    /// The referrer has had `daily_velocity` referrals rewarded today.
    DailyVelocityExceeded,
    /// The referee's first purchase was below the program's minimum.
    FirstPurchaseBelowMinimum,
}

/// The body of a `referral` record. Its id is derived from the referee (see [`referral_id`]): a
/// member enrols once, so there is at most one referral per referee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Referral {
    pub referral_id: String,
    pub referrer_id: MemberId,
    pub referee_id: MemberId,
    pub status: ReferralStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// The qualifying order, once decided on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    #[serde(default)]
    pub referrer_points: Points,
    #[serde(default)]
    pub referee_points: Points,
    /// When both bonuses were taken back because the qualifying order was returned in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clawed_back_at: Option<DateTime<Utc>>,
}

impl Referral {
    /// A new pending referral for a referee enrolling at `now`.
    pub fn pending(
        referrer: &MemberId,
        referee: &MemberId,
        policy: &ReferralPolicy,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            referral_id: referral_id(referee, now),
            referrer_id: referrer.clone(),
            referee_id: referee.clone(),
            status: ReferralStatus::Pending,
            reason: None,
            created_at: now,
            expires_at: now + Duration::days(i64::from(policy.expires_after_days)),
            decided_at: None,
            order_id: None,
            referrer_points: 0,
            referee_points: 0,
            clawed_back_at: None,
        }
    }

    /// The day the expiry sweep looks at this referral.
    pub fn due(&self) -> NaiveDate {
        self.expires_at.date_naive()
    }
}

/// The referral id of a referee who enrolled at `enrolled_at`: the enrolment time (milliseconds,
/// zero-padded) then the member id. Derived from the member item alone, so an accrual needs no
/// read to name it; unique because a member enrols once; and ordered by time, so listing a
/// referrer's records newest id first is newest referral first.
pub fn referral_id(referee: &MemberId, enrolled_at: DateTime<Utc>) -> String {
    format!(
        "{:013}-{}",
        enrolled_at.timestamp_millis().max(0),
        referee.as_str()
    )
}

/// The referee of a well-formed referral id.
pub fn referee_of(referral_id: &str) -> Option<MemberId> {
    let (millis, member) = referral_id.split_once('-')?;
    if millis.len() != 13 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    MemberId::parse(member).ok()
}

/// Marks the referee's first qualifying purchase on `next` (the member as the accrual writes it)
/// and returns the referral id to announce, when `source` is that purchase: the member came
/// through a referral, has no qualifying purchase yet, the order is at least the minimum and it
/// happened after enrolment — or within `checkout_grace` before it, because the order a referee
/// enrols on at the till is their first purchase. Reads nothing: everything it needs is on the
/// member item.
pub fn mark_first_purchase(
    next: &mut Member,
    policy: &ReferralPolicy,
    source: &Source,
    occurred_at: DateTime<Utc>,
    now: DateTime<Utc>,
    checkout_grace: Duration,
) -> Option<String> {
    let Source::Order {
        order_id, amount, ..
    } = source
    else {
        return None;
    };
    if next.referred_by.is_none()
        || next.referral_purchase.is_some()
        || occurred_at < next.enrolled_at - checkout_grace
        || !policy.qualifies(amount)
    {
        return None;
    }
    next.referral_purchase = Some(ReferralPurchase {
        order_id: order_id.clone(),
        amount: *amount,
        occurred_at,
        recorded_at: now,
    });
    Some(referral_id(&next.member_id, next.enrolled_at))
}

/// What to do with a pending referral.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The referee has not qualified yet and the referral has not expired.
    Wait,
    Expire,
    Reject(RejectReason),
    /// Pay both sides; the referrer's counters become `counts`.
    Reward {
        referrer_points: Points,
        referee_points: Points,
        order_id: OrderId,
        counts: ReferralCounts,
    },
}

fn same_email(a: &Member, b: &Member) -> bool {
    match (&a.email, &b.email) {
        (Some(a), Some(b)) => normalise_email(a) == normalise_email(b),
        _ => false,
    }
}

/// Lower case, and for the local part drop `+tags` and dots, the usual aliasing tricks.
fn normalise_email(email: &str) -> String {
    let email = email.trim().to_lowercase();
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split('+').next().unwrap_or(local).replace('.', "");
            format!("{local}@{domain}")
        }
        None => email,
    }
}

/// Decides a pending referral at `now`, checking the policy in order: self-referral, a referee
/// who is not new, expiry, the first-purchase minimum, the monthly cap and the daily velocity.
pub fn decide(
    policy: &ReferralPolicy,
    referral: &Referral,
    referrer: &Member,
    referee: &Member,
    now: DateTime<Utc>,
) -> Decision {
    if referral.referrer_id == referral.referee_id
        || referrer.member_id == referee.member_id
        || same_email(referrer, referee)
    {
        return Decision::Reject(RejectReason::SelfReferral);
    }
    if referee.referred_by.as_ref() != Some(&referral.referrer_id)
        || referee.enrolled_at < referral.created_at
    {
        return Decision::Reject(RejectReason::RefereeNotNew);
    }
    let Some(purchase) = &referee.referral_purchase else {
        return if now >= referral.expires_at {
            Decision::Expire
        } else {
            Decision::Wait
        };
    };
    if purchase.recorded_at > referral.expires_at {
        return Decision::Expire;
    }
    if !policy.qualifies(&purchase.amount) {
        return Decision::Reject(RejectReason::FirstPurchaseBelowMinimum);
    }
    let counts = &referrer.referral_counts;
    if counts.this_month(now) >= policy.monthly_cap {
        return Decision::Reject(RejectReason::MonthlyCapReached);
    }
    if counts.today(now) >= policy.daily_velocity {
        return Decision::Reject(RejectReason::DailyVelocityExceeded);
    }
    Decision::Reward {
        referrer_points: policy.referrer_points,
        referee_points: policy.referee_points,
        order_id: purchase.order_id.clone(),
        counts: counts.after_reward(now),
    }
}

/// One referral as a member sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferralView {
    pub referral_id: String,
    pub referrer_id: MemberId,
    pub referee_id: MemberId,
    pub status: ReferralStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// What the member asking earned from this referral.
    pub points: Points,
}

impl Referral {
    pub fn view_for(&self, member: &MemberId) -> ReferralView {
        let points = if &self.referrer_id == member {
            self.referrer_points
        } else if &self.referee_id == member {
            self.referee_points
        } else {
            0
        };
        ReferralView {
            referral_id: self.referral_id.clone(),
            referrer_id: self.referrer_id.clone(),
            referee_id: self.referee_id.clone(),
            status: self.status,
            reason: self.reason,
            created_at: self.created_at,
            expires_at: self.expires_at,
            decided_at: self.decided_at,
            points,
        }
    }
}

/// `GET /v1/members/{id}/referrals`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferralList {
    pub member_id: MemberId,
    /// Referrals this member made, newest first.
    pub referrals: Vec<ReferralView>,
    /// The referral this member enrolled through, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referred_by: Option<ReferralView>,
    /// Points earned from all of the above.
    pub points_earned: Points,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn counters_roll_over_by_month_and_day() {
        let day1 = Utc.with_ymd_and_hms(2026, 1, 31, 10, 0, 0).unwrap();
        let counts = ReferralCounts::default()
            .after_reward(day1)
            .after_reward(day1);
        assert_eq!((counts.this_month(day1), counts.today(day1)), (2, 2));
        let next_day = day1 + Duration::days(1);
        assert_eq!(
            (counts.this_month(next_day), counts.today(next_day)),
            (0, 0)
        );
        let later_same_month = Utc.with_ymd_and_hms(2026, 1, 31, 23, 0, 0).unwrap();
        assert_eq!(counts.after_reward(later_same_month).month_rewarded, 3);
    }

    #[test]
    fn referral_ids_sort_by_time_and_name_their_referee() {
        let referee = MemberId::parse("bob-1").unwrap();
        let early = referral_id(&referee, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let late = referral_id(&referee, Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap());
        assert!(early < late);
        assert_eq!(referee_of(&early), Some(referee));
        assert_eq!(referee_of("123-bob"), None);
    }

    #[test]
    fn email_aliases_are_the_same_person() {
        assert_eq!(
            normalise_email(" Alice.Smith+ref@Example.com"),
            "alicesmith@example.com"
        );
    }
}
