//! The event catalog: what a committed item means to the outside world. The store's change feed
//! (the table's stream) reports every item a transaction wrote, with the item as it was before
//! when it existed; [`derive`] turns one such change into the events it announces and the
//! follow-up work it starts. Pure: the same change always derives the same events with the same
//! ids, so a redelivered stream record produces duplicates a receiver can drop, never new facts.
//!
//! | item written                                  | events                                   | follow-up                 |
//! |-----------------------------------------------|------------------------------------------|---------------------------|
//! | member, new                                   | `member.enrolled`                        |                           |
//! | member, first qualifying purchase marked      |                                          | referral message          |
//! | ledger entry                                  | `points.<kind>` (see [`points_event_type`]) |                        |
//! | tier change                                   | `tier.changed`                           |                           |
//! | referral record, decided                      | `referral.rewarded` / `referral.rejected` |                          |
//! | campaign record, new and dispatching          |                                          | first dispatch step       |
//! | campaign record, every targeted member done   | `campaign.completed`                     |                           |
//! | promotion record, new / closed                | `promotion.opened` / `promotion.closed`  | catalog change            |
//! | subscription record, status or period moved  | `subscription.*`                         |                           |
//! | redemption record, status moved               | `redemption.used` / `.canceled` / `.released` / `.expired` |         |
//! | lot warning record, new                       | `points.expiring`                        |                           |

use serde_json::{json, Value};

use super::DomainEvent;
use crate::campaigns::{Campaign, CampaignStatus};
use crate::ids::MemberId;
use crate::ledger::{EntryType, LedgerEntry};
use crate::member::Member;
use crate::ports::Record;
use crate::promotions::{Promotion, PromotionStatus};
use crate::redemptions::{Redemption, RedemptionStatus};
use crate::referrals::{Referral, ReferralStatus};
use crate::subscriptions::{Subscription, SubscriptionStatus};
use crate::tiers::TierChange;

/// The record kind of redemptions (see [`crate::redemptions`]).
pub const REDEMPTION_KIND: &str = crate::redemptions::KIND;

/// One item a committed transaction wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A member profile; `before` is `None` when the write created it.
    Member {
        before: Option<Box<Member>>,
        after: Box<Member>,
    },
    /// A ledger entry (entries are immutable: there is no "before").
    Entry(Box<LedgerEntry>),
    /// A line of a member's tier history.
    Tier {
        member_id: MemberId,
        change: TierChange,
    },
    /// A domain record; `before` is `None` when the write created it.
    Record {
        before: Option<Record>,
        after: Record,
    },
}

/// Work a change starts besides its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// A referee's first qualifying purchase: the referral worker decides the referral.
    Referral { referral_id: String },
    /// A new campaign: its first dispatch step.
    DispatchCampaign { campaign_id: String },
    /// The promotion list changed: functions' cached copies must learn of it.
    CatalogChanged { promotion_id: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    pub events: Vec<DomainEvent>,
    pub follow_ups: Vec<FollowUp>,
}

/// Why a change could not be read as the domain item its key says it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} record '{id}' does not parse: {reason}")]
pub struct Unreadable {
    pub kind: String,
    pub id: String,
    pub reason: String,
}

/// The event type of a ledger entry, by its kind: every kind announces itself, so a kind added
/// to [`EntryType`] has to be named here (the match is exhaustive) and nothing else changes.
pub fn points_event_type(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Earn | EntryType::Bonus => "points.earned",
        EntryType::Redeem => "points.redeemed",
        EntryType::Reverse => "points.reversed",
        EntryType::Adjust => "points.adjusted",
        EntryType::Expire => "points.expired",
        EntryType::Transfer => "points.transferred",
        EntryType::Release => "points.released",
    }
}

/// The events and follow-ups one committed change announces.
pub fn derive(change: &Change) -> Result<Derived, Unreadable> {
    let mut derived = Derived::default();
    match change {
        Change::Member { before, after } => member(before.as_deref(), after, &mut derived),
        Change::Entry(entry) => derived.events.push(points(entry)),
        Change::Tier { member_id, change } => derived
            .events
            .push(DomainEvent::tier_changed(member_id, change)),
        Change::Record { before, after } => record(before.as_ref(), after, &mut derived)?,
    }
    Ok(derived)
}

fn member(before: Option<&Member>, after: &Member, derived: &mut Derived) {
    if before.is_none() {
        derived.events.push(DomainEvent {
            event_id: format!("member.enrolled:{}", after.member_id),
            event_type: "member.enrolled",
            member_id: Some(after.member_id.clone()),
            occurred_at: after.enrolled_at,
            data: json!({
                "tier": after.tier,
                "referral_code": after.referral_code,
                "referred_by": after.referred_by,
                "balance": after.balance,
            }),
        });
    }
    let newly_marked = before.is_none_or(|b| b.referral_purchase.is_none());
    if newly_marked && after.referral_purchase.is_some() && after.referred_by.is_some() {
        derived.follow_ups.push(FollowUp::Referral {
            referral_id: crate::referrals::referral_id(&after.member_id, after.enrolled_at),
        });
    }
}

fn points(entry: &LedgerEntry) -> DomainEvent {
    DomainEvent {
        event_id: format!("entry:{}:{}", entry.member_id, entry.entry_id),
        event_type: points_event_type(entry.entry_type),
        member_id: Some(entry.member_id.clone()),
        occurred_at: entry.occurred_at,
        data: json!({
            "entry_id": entry.entry_id,
            "entry_type": entry.entry_type,
            "seq": entry.seq,
            "points": entry.points,
            "balance": entry.balance_after,
            "pending": entry.pending,
            "reason": entry.reason,
            "breakdown": entry.breakdown,
            "source": entry.source,
            "program_version": entry.program_version,
            "recorded_at": entry.recorded_at,
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(record: &Record) -> Result<T, Unreadable> {
    T::deserialize(&record.body).map_err(|e| Unreadable {
        kind: record.kind.clone(),
        id: record.id.clone(),
        reason: e.to_string(),
    })
}

fn parse_before<T: serde::de::DeserializeOwned>(
    before: Option<&Record>,
) -> Result<Option<T>, Unreadable> {
    before.map(parse).transpose()
}

/// A record event's id: the record's key and the version that made the change, so one write
/// has one id however often it is delivered.
fn record_event(
    event_type: &'static str,
    record: &Record,
    member_id: Option<MemberId>,
    occurred_at: chrono::DateTime<chrono::Utc>,
    data: Value,
) -> DomainEvent {
    DomainEvent {
        event_id: format!(
            "{event_type}:{}:{}:v{}",
            record.kind, record.id, record.version
        ),
        event_type,
        member_id,
        occurred_at,
        data,
    }
}

fn record(
    before: Option<&Record>,
    after: &Record,
    derived: &mut Derived,
) -> Result<(), Unreadable> {
    match after.kind.as_str() {
        crate::referrals::KIND => {
            let was: Option<Referral> = parse_before(before)?;
            let now: Referral = parse(after)?;
            referral(was.map(|r| r.status), &now, after, derived);
        }
        crate::campaigns::RECORD_KIND => {
            let was: Option<Campaign> = parse_before(before)?;
            let now: Campaign = parse(after)?;
            campaign(was.as_ref(), &now, after, derived);
        }
        crate::promotions::RECORD_KIND => {
            let was: Option<Promotion> = parse_before(before)?;
            let now: Promotion = parse(after)?;
            promotion(was.as_ref(), &now, after, derived);
        }
        crate::subscriptions::SUBSCRIPTION_KIND => {
            let was: Option<Subscription> = parse_before(before)?;
            let now: Subscription = parse(after)?;
            subscription(was.as_ref(), &now, after, derived);
        }
        REDEMPTION_KIND => {
            let was: Option<Redemption> = parse_before(before)?;
            let now: Redemption = parse(after)?;
            redemption(was.as_ref(), &now, after, derived);
        }
        // Written once under `attribute_not_exists`; only its creation announces.
        crate::expiry::LOT_WARNING_KIND if before.is_none() => {
            let warning: crate::expiry::LotWarning = parse(after)?;
            derived.events.push(record_event(
                "points.expiring",
                after,
                Some(warning.member_id.clone()),
                warning.warned_at,
                json!({
                    "member_id": warning.member_id,
                    "points": warning.points,
                    "expires_on": warning.expires_on,
                    "days_before": warning.days_before,
                    "lot": warning.lot,
                }),
            ));
        }
        _ => {}
    }
    Ok(())
}

fn referral(was: Option<ReferralStatus>, now: &Referral, record: &Record, derived: &mut Derived) {
    if was == Some(now.status) {
        return;
    }
    let event_type = match now.status {
        ReferralStatus::Rewarded => "referral.rewarded",
        ReferralStatus::Rejected => "referral.rejected",
        ReferralStatus::Pending | ReferralStatus::Expired => return,
    };
    derived.events.push(record_event(
        event_type,
        record,
        Some(now.referrer_id.clone()),
        now.decided_at.unwrap_or(now.created_at),
        json!({
            "referral_id": now.referral_id,
            "referrer_id": now.referrer_id,
            "referee_id": now.referee_id,
            "reason": now.reason,
            "order_id": now.order_id,
            "referrer_points": now.referrer_points,
            "referee_points": now.referee_points,
        }),
    ));
}

fn campaign(was: Option<&Campaign>, now: &Campaign, record: &Record, derived: &mut Derived) {
    if was.is_none() && now.status == CampaignStatus::Dispatching && now.pages_dispatched == 0 {
        derived.follow_ups.push(FollowUp::DispatchCampaign {
            campaign_id: now.campaign_id.clone(),
        });
    }
    if completed(now) && !was.is_some_and(completed) {
        derived.events.push(record_event(
            "campaign.completed",
            record,
            None,
            now.created_at,
            json!({
                "campaign_id": now.campaign_id,
                "name": now.name,
                "targeted": now.counters.targeted,
                "granted": now.counters.granted,
                "skipped": now.counters.skipped,
                "failed": now.counters.failed,
                "points_granted": now.counters.points_granted,
            }),
        ));
    }
}

/// Every page dispatched and every targeted member granted, skipped or failed.
fn completed(campaign: &Campaign) -> bool {
    let c = &campaign.counters;
    campaign.status == CampaignStatus::Dispatched
        && c.granted.saturating_add(c.skipped).saturating_add(c.failed) >= c.targeted
}

fn promotion(was: Option<&Promotion>, now: &Promotion, record: &Record, derived: &mut Derived) {
    let data = || {
        json!({
            "promotion_id": now.promotion_id,
            "name": now.name,
            "starts_at": now.starts_at,
            "ends_at": now.ends_at,
            "status": now.status,
        })
    };
    if was.is_none() && now.status == PromotionStatus::Active {
        derived.events.push(record_event(
            "promotion.opened",
            record,
            None,
            now.starts_at.max(now.created_at),
            data(),
        ));
    }
    if now.status == PromotionStatus::Closed && was.is_none_or(|w| w.status != now.status) {
        derived.events.push(record_event(
            "promotion.closed",
            record,
            None,
            now.ends_at,
            data(),
        ));
    }
    if was.is_none_or(|w| w.status != now.status) {
        derived.follow_ups.push(FollowUp::CatalogChanged {
            promotion_id: now.promotion_id.clone(),
        });
    }
}

fn subscription(
    was: Option<&Subscription>,
    now: &Subscription,
    record: &Record,
    derived: &mut Derived,
) {
    let was_status = was.map(|w| w.status);
    let was_period = was.map_or(0, |w| w.period);
    let mut push = |event_type: &'static str, data: Value| {
        derived.events.push(record_event(
            event_type,
            record,
            Some(now.member_id.clone()),
            now.updated_at,
            data,
        ));
    };
    if now.status == SubscriptionStatus::Active && now.period > was_period {
        if now.period == 1 {
            push(
                "subscription.started",
                json!({ "subscription_id": now.subscription_id, "plan_id": now.plan_id, "period": 1 }),
            );
        } else {
            push(
                "subscription.renewed",
                json!({
                    "subscription_id": now.subscription_id,
                    "plan_id": now.plan_id,
                    "period": now.period,
                    "recovered": was_status == Some(SubscriptionStatus::PastDue),
                }),
            );
        }
    }
    if now.status == SubscriptionStatus::PastDue {
        let attempts = |s: &Subscription| s.dunning.as_ref().map(|d| (d.period, d.failed_attempts));
        if let Some(dunning) = now
            .dunning
            .as_ref()
            .filter(|_| was.and_then(attempts) != attempts(now))
        {
            push(
                "subscription.past_due",
                json!({
                    "subscription_id": now.subscription_id,
                    "period": dunning.period,
                    "attempt": dunning.failed_attempts,
                    "next_retry_on": dunning.next_retry_on,
                }),
            );
        }
    }
    if now.status == SubscriptionStatus::Lapsed && was_status != Some(SubscriptionStatus::Lapsed) {
        push(
            "subscription.lapsed",
            json!({
                "subscription_id": now.subscription_id,
                "period": now.dunning.as_ref().map_or(now.period, |d| d.period),
                "attempts": now.dunning.as_ref().map(|d| d.failed_attempts),
            }),
        );
    }
    let canceled =
        |s: &Subscription| s.status == SubscriptionStatus::Canceled || s.cancel_at_period_end;
    if canceled(now) && !was.is_some_and(canceled) {
        let ends_on = if now.status == SubscriptionStatus::Canceled {
            now.updated_at.date_naive()
        } else {
            now.current_period().1
        };
        push(
            "subscription.canceled",
            json!({ "subscription_id": now.subscription_id, "ends_on": ends_on }),
        );
    }
}

/// A redemption announces each move of its lifecycle once: `redemption.used` at the till,
/// `redemption.canceled`, `redemption.released` (a hold nobody confirmed) and
/// `redemption.expired` (an unused code past its expiry). Creating one announces nothing here:
/// its ledger entry is `points.redeemed`.
fn redemption(was: Option<&Redemption>, now: &Redemption, record: &Record, derived: &mut Derived) {
    let was_status = was.map(|w| w.status);
    if was_status == Some(now.status) {
        return;
    }
    let event_type = match now.status {
        RedemptionStatus::Used => "redemption.used",
        RedemptionStatus::Canceled => "redemption.canceled",
        RedemptionStatus::Expired if was_status == Some(RedemptionStatus::Held) => {
            "redemption.released"
        }
        RedemptionStatus::Expired => "redemption.expired",
        RedemptionStatus::Issued | RedemptionStatus::Held => return,
    };
    derived.events.push(record_event(
        event_type,
        record,
        Some(now.member_id.clone()),
        now.updated_at,
        json!({
            "code": now.code,
            "redemption_id": now.redemption_id,
            "reward_id": now.reward_id,
            "points": now.points,
            "status": now.status,
            "from_status": was_status,
            "expires_at": now.expires_at,
        }),
    ));
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::campaigns::{Audience, Counters};
    use crate::promotions::{PromotionReward, PromotionSource};
    use crate::referrals::ReferralPolicy;
    use crate::subscriptions::Dunning;

    fn at(day: u32) -> chrono::DateTime<chrono::Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
    }

    fn rec<T: serde::Serialize>(kind: &str, id: &str, version: u64, body: &T) -> Record {
        Record {
            kind: kind.into(),
            id: id.into(),
            owner: None,
            version,
            due: None,
            body: serde_json::to_value(body).unwrap(),
        }
    }

    fn types(derived: &Derived) -> Vec<&'static str> {
        derived.events.iter().map(|e| e.event_type).collect()
    }

    fn subscription(status: SubscriptionStatus, period: u32) -> Subscription {
        Subscription {
            subscription_id: "s-1".into(),
            member_id: MemberId::parse("ada").unwrap(),
            plan_id: "plus".into(),
            next_plan_id: None,
            status,
            payment_method: "pm_card_visa".into(),
            customer: Some("cus_1".into()),
            operator_flag: None,
            anchor: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            period,
            cancel_at_period_end: false,
            dunning: None,
            created_at: at(2),
            updated_at: at(2),
        }
    }

    fn sub_change(was: &Subscription, now: &Subscription, version: u64) -> Derived {
        derive(&Change::Record {
            before: Some(rec("subscription", "s-1", version - 1, was)),
            after: rec("subscription", "s-1", version, now),
        })
        .unwrap()
    }

    #[test]
    fn a_subscription_announces_each_move_of_its_lifecycle_once() {
        let incomplete = subscription(SubscriptionStatus::Incomplete, 0);
        let active = subscription(SubscriptionStatus::Active, 1);
        assert_eq!(
            types(&sub_change(&incomplete, &active, 2)),
            ["subscription.started"]
        );
        let renewed = subscription(SubscriptionStatus::Active, 2);
        assert_eq!(
            types(&sub_change(&active, &renewed, 3)),
            ["subscription.renewed"]
        );
        let mut past_due = subscription(SubscriptionStatus::PastDue, 2);
        past_due.dunning = Some(Dunning {
            period: 3,
            first_failed_on: NaiveDate::from_ymd_opt(2026, 5, 2).unwrap(),
            failed_attempts: 1,
            next_retry_on: NaiveDate::from_ymd_opt(2026, 5, 3).unwrap(),
        });
        assert_eq!(
            types(&sub_change(&renewed, &past_due, 4)),
            ["subscription.past_due"]
        );
        // The same write delivered again: same event, same id.
        assert_eq!(
            sub_change(&renewed, &past_due, 4),
            sub_change(&renewed, &past_due, 4)
        );
        // A write that moves nothing announces nothing.
        assert!(types(&sub_change(&past_due, &past_due, 5)).is_empty());
        let mut lapsed = past_due.clone();
        lapsed.status = SubscriptionStatus::Lapsed;
        assert_eq!(
            types(&sub_change(&past_due, &lapsed, 6)),
            ["subscription.lapsed"]
        );
        let mut canceling = renewed.clone();
        canceling.cancel_at_period_end = true;
        assert_eq!(
            types(&sub_change(&renewed, &canceling, 7)),
            ["subscription.canceled"]
        );
        let mut canceled = canceling.clone();
        canceled.status = SubscriptionStatus::Canceled;
        assert!(types(&sub_change(&canceling, &canceled, 8)).is_empty());
    }

    #[test]
    fn a_referral_is_announced_when_it_is_rewarded_or_rejected() {
        let referrer = MemberId::parse("ada").unwrap();
        let referee = MemberId::parse("bob").unwrap();
        let pending = Referral::pending(&referrer, &referee, &ReferralPolicy::default(), at(2));
        let mut rewarded = pending.clone();
        rewarded.status = ReferralStatus::Rewarded;
        rewarded.decided_at = Some(at(3));
        let derived = derive(&Change::Record {
            before: Some(rec("referral", &pending.referral_id, 1, &pending)),
            after: rec("referral", &pending.referral_id, 2, &rewarded),
        })
        .unwrap();
        assert_eq!(types(&derived), ["referral.rewarded"]);
        assert_eq!(derived.events[0].member_id.as_ref(), Some(&referrer));
        let mut rejected = pending.clone();
        rejected.status = ReferralStatus::Rejected;
        let derived = derive(&Change::Record {
            before: Some(rec("referral", &pending.referral_id, 1, &pending)),
            after: rec("referral", &pending.referral_id, 2, &rejected),
        })
        .unwrap();
        assert_eq!(types(&derived), ["referral.rejected"]);
    }

    fn campaign(status: CampaignStatus, pages: u64, counters: Counters) -> Campaign {
        Campaign {
            campaign_id: "c-1".into(),
            name: "Spring".into(),
            points: 100,
            audience: Audience::Tier("gold".into()),
            budget_points: None,
            reason: "spring".into(),
            status,
            created_at: at(2),
            created_by: Some("admin".into()),
            canceled_by: None,
            pages_dispatched: pages,
            counters,
        }
    }

    #[test]
    fn a_new_campaign_starts_its_dispatch_and_announces_completion_once() {
        let new = campaign(CampaignStatus::Dispatching, 0, Counters::default());
        let derived = derive(&Change::Record {
            before: None,
            after: rec("campaign", "c-1", 1, &new),
        })
        .unwrap();
        assert_eq!(
            derived.follow_ups,
            [FollowUp::DispatchCampaign {
                campaign_id: "c-1".into()
            }]
        );
        let counters = Counters {
            targeted: 2,
            granted: 2,
            ..Counters::default()
        };
        let dispatched = campaign(CampaignStatus::Dispatched, 1, counters);
        let derived = derive(&Change::Record {
            before: Some(rec("campaign", "c-1", 1, &new)),
            after: rec("campaign", "c-1", 2, &dispatched),
        })
        .unwrap();
        assert_eq!(types(&derived), ["campaign.completed"]);
        assert!(
            derived.follow_ups.is_empty(),
            "an existing campaign is not dispatched again"
        );
        let again = derive(&Change::Record {
            before: Some(rec("campaign", "c-1", 2, &dispatched)),
            after: rec("campaign", "c-1", 3, &dispatched),
        })
        .unwrap();
        assert!(types(&again).is_empty());
    }

    #[test]
    fn a_season_promotion_opening_and_closing_announces_itself_and_a_catalog_change() {
        let open = Promotion {
            promotion_id: "season-bf-2026".into(),
            name: "Black Friday".into(),
            reward: PromotionReward::Multiplier { percent: 200 },
            starts_at: at(2),
            ends_at: at(5),
            categories: Vec::new(),
            tiers: Vec::new(),
            per_member_limit: None,
            status: PromotionStatus::Active,
            source: PromotionSource::Season {
                season_id: "bf".into(),
                year: 2026,
            },
            created_at: at(2),
            created_by: None,
            canceled_by: None,
        };
        let opened = derive(&Change::Record {
            before: None,
            after: rec("promotion", "season-bf-2026", 1, &open),
        })
        .unwrap();
        assert_eq!(types(&opened), ["promotion.opened"]);
        assert_eq!(
            opened.follow_ups,
            [FollowUp::CatalogChanged {
                promotion_id: "season-bf-2026".into()
            }]
        );
        let mut closed = open.clone();
        closed.status = PromotionStatus::Closed;
        let derived = derive(&Change::Record {
            before: Some(rec("promotion", "season-bf-2026", 1, &open)),
            after: rec("promotion", "season-bf-2026", 2, &closed),
        })
        .unwrap();
        assert_eq!(types(&derived), ["promotion.closed"]);
        assert_eq!(derived.follow_ups.len(), 1);
    }

    fn redemption_change(was: &Redemption, now: &Redemption, version: u64) -> Derived {
        derive(&Change::Record {
            before: Some(rec("redemption", &was.code, version - 1, was)),
            after: rec("redemption", &now.code, version, now),
        })
        .unwrap()
    }

    fn redemption(hold: bool) -> Redemption {
        let reward: crate::program::Reward = serde_json::from_value(json!({
            "reward_id": "coffee", "name": "Coffee", "kind": "free_product", "points_cost": 500,
            "stock": 10,
        }))
        .unwrap();
        let mut redemption = Redemption::new(
            "rdm_1".into(),
            MemberId::parse("ada").unwrap(),
            &reward,
            hold.then(|| at(3)),
            at(2),
        );
        redemption.code = "ABCD-EFGH-JKMN".into();
        redemption
    }

    #[test]
    fn a_redemption_announces_use_cancel_release_and_expiry_once_each() {
        let issued = redemption(false);
        let created = derive(&Change::Record {
            before: None,
            after: rec("redemption", &issued.code, 1, &issued),
        })
        .unwrap();
        assert!(types(&created).is_empty(), "points.redeemed announces it");
        let used = issued.moved(RedemptionStatus::Used, at(3));
        let derived = redemption_change(&issued, &used, 2);
        assert_eq!(types(&derived), ["redemption.used"]);
        assert_eq!(
            derived.events[0].event_id,
            "redemption.used:redemption:ABCD-EFGH-JKMN:v2"
        );
        assert_eq!(
            derived.events[0].member_id,
            Some(MemberId::parse("ada").unwrap())
        );
        let canceled = issued.moved(RedemptionStatus::Canceled, at(3));
        assert_eq!(
            types(&redemption_change(&issued, &canceled, 2)),
            ["redemption.canceled"]
        );
        let expired = issued.moved(RedemptionStatus::Expired, at(4));
        assert_eq!(
            types(&redemption_change(&issued, &expired, 2)),
            ["redemption.expired"]
        );
        let held = redemption(true);
        let released = held.moved(RedemptionStatus::Expired, at(4));
        assert_eq!(
            types(&redemption_change(&held, &released, 2)),
            ["redemption.released"]
        );
        // The same write delivered again derives the same event; a write that moves nothing
        // derives none.
        assert_eq!(
            redemption_change(&issued, &used, 2),
            redemption_change(&issued, &used, 2)
        );
        assert!(types(&redemption_change(&used, &used, 3)).is_empty());
    }

    #[test]
    fn a_lot_warning_announces_points_expiring_when_it_is_written_and_never_again() {
        let warning = crate::expiry::LotWarning {
            member_id: MemberId::parse("alice").unwrap(),
            lot: "2026-01".into(),
            points: 120,
            expires_on: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
            days_before: 30,
            warned_at: at(1),
            expires_at: 0,
        };
        let record = rec(
            crate::expiry::LOT_WARNING_KIND,
            "alice:2026-01:2027-01-31:30",
            1,
            &warning,
        );
        let derived = derive(&Change::Record {
            before: None,
            after: record.clone(),
        })
        .unwrap();
        assert_eq!(types(&derived), vec!["points.expiring"]);
        assert_eq!(
            derived.events[0].member_id.as_ref().unwrap().as_str(),
            "alice"
        );
        assert_eq!(derived.events[0].data["expires_on"], "2027-01-31");
        assert_eq!(derived.events[0].data["days_before"], 30);
        let again = derive(&Change::Record {
            before: Some(record.clone()),
            after: record,
        })
        .unwrap();
        assert!(again.events.is_empty());
    }

    fn entry(kind: EntryType, entry_id: &str, member: &str, points: i64, source: Value) -> Change {
        Change::Entry(Box::new(LedgerEntry {
            entry_id: entry_id.into(),
            seq: 4,
            member_id: MemberId::parse(member).unwrap(),
            entry_type: kind,
            points,
            balance_after: 900 + points,
            reason: "because".into(),
            breakdown: Vec::new(),
            source: serde_json::from_value(source).unwrap(),
            lots: Vec::new(),
            pending: None,
            program_version: 3,
            occurred_at: at(4),
            recorded_at: at(4),
        }))
    }

    #[test]
    fn returns_adjustments_and_transfers_announce_their_points_movement() {
        let returned = derive(&entry(
            EntryType::Reverse,
            "return:o-1:r-1",
            "ada",
            -120,
            json!({"kind": "return", "order_id": "o-1", "return_id": "r-1",
                   "amount": {"minor": 1200, "currency": "USD"}}),
        ))
        .unwrap();
        assert_eq!(types(&returned), ["points.reversed"]);
        let event = &returned.events[0];
        assert_eq!(event.event_id, "entry:ada:return:o-1:r-1");
        assert_eq!(event.data["points"], -120);
        assert_eq!(event.data["balance"], 780);
        assert_eq!(event.data["source"]["return_id"], "r-1");

        let adjusted = derive(&entry(
            EntryType::Adjust,
            "adjustment:a-1",
            "ada",
            50,
            json!({"kind": "adjustment", "adjustment_id": "a-1", "actor": "support-7"}),
        ))
        .unwrap();
        assert_eq!(types(&adjusted), ["points.adjusted"]);
        assert_eq!(adjusted.events[0].data["source"]["actor"], "support-7");

        // Both sides of a transfer announce themselves, each under its member and its own id.
        let out = derive(&entry(
            EntryType::Transfer,
            "transfer:t-1:out",
            "ada",
            -300,
            json!({"kind": "transfer", "transfer_id": "t-1", "direction": "out", "counterparty": "bob"}),
        ))
        .unwrap();
        let incoming = derive(&entry(
            EntryType::Transfer,
            "transfer:t-1:in",
            "bob",
            300,
            json!({"kind": "transfer", "transfer_id": "t-1", "direction": "in", "counterparty": "ada"}),
        ))
        .unwrap();
        assert_eq!(types(&out), ["points.transferred"]);
        assert_eq!(types(&incoming), ["points.transferred"]);
        assert_ne!(out.events[0].event_id, incoming.events[0].event_id);
        assert_eq!(
            incoming.events[0].member_id,
            Some(MemberId::parse("bob").unwrap())
        );
        assert_eq!(out.events[0].data["points"], -300);
    }

    #[test]
    fn a_tier_history_line_announces_tier_changed_with_a_stable_id() {
        let change = Change::Tier {
            member_id: MemberId::parse("ada").unwrap(),
            change: TierChange {
                from_tier: "silver".into(),
                to_tier: "gold".into(),
                reason: "qualified".into(),
                evaluated_at: at(3),
                actor: None,
            },
        };
        let derived = derive(&change).unwrap();
        assert_eq!(types(&derived), ["tier.changed"]);
        assert_eq!(derived, derive(&change).unwrap());
        assert_eq!(derived.events[0].data["to_tier"], "gold");
    }

    #[test]
    fn a_record_body_that_does_not_parse_is_an_error_not_silence() {
        let bad = Record {
            kind: "subscription".into(),
            id: "s-1".into(),
            owner: None,
            version: 1,
            due: None,
            body: serde_json::json!({ "status": 7 }),
        };
        assert!(derive(&Change::Record {
            before: None,
            after: bad
        })
        .is_err());
    }
}
