//! Ledger entries: the immutable record of every points movement. An entry's id comes from the
//! business event that caused it, so recording the same event twice collides in the store instead
//! of paying twice.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ActionName, ActionReference, MemberId, OrderId, RewardId};
use crate::money::Money;
use crate::Points;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    Earn,
    Bonus,
    Redeem,
    Reverse,
    Adjust,
    Expire,
    Transfer,
    /// Pending points whose return window has passed, moved to `available`.
    Release,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakdownLine {
    pub rule: String,
    pub description: String,
    pub points: Points,
}

/// What caused an entry; carries the business key the entry id is derived from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Order {
        order_id: OrderId,
        amount: Money,
        /// What the order counted towards tiers (minor units, excluded categories left out), so
        /// a return can take back its share on the order's day. Absent on entries written before
        /// returns existed: their whole amount counted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qualifying_minor: Option<i64>,
    },
    Action {
        action: ActionName,
        reference: ActionReference,
    },
    Enrolment,
    Campaign {
        campaign_id: String,
    },
    Redemption {
        redemption_id: String,
        reward_id: RewardId,
        code: String,
    },
    /// A referral bonus; `role` is `referrer` or `referee`.
    Referral {
        referral_id: String,
        role: String,
    },
    /// A redemption's points given back: canceled, a hold released, or an expired code refunded
    /// (`cause`). One per redemption, whichever comes first.
    RedemptionReversal {
        redemption_id: String,
        reward_id: RewardId,
        code: String,
        cause: String,
    },
    /// A paid period of a subscription: its monthly bonus is granted once per period.
    Subscription {
        subscription_id: String,
        period: u32,
    },
    /// A paid period's payment taken back (a refund or a dispute): its bonus is reversed once,
    /// keyed by the provider's refund or dispute id.
    SubscriptionRefund {
        subscription_id: String,
        period: u32,
        reference: String,
    },
    /// Points given or taken by customer service; `actor` is the token's `sub`.
    Adjustment {
        adjustment_id: String,
        actor: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Goods of an order brought back: what the order earned on them is taken back.
    Return {
        order_id: OrderId,
        return_id: String,
        amount: Money,
    },
    /// One side of a transfer between members: both sides share the transfer id, and each
    /// names the other member.
    Transfer {
        transfer_id: String,
        direction: TransferDirection,
        counterparty: MemberId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A lot past its date, expired by the daily job: once per lot and date.
    Expiry {
        lot: String,
        expires_on: chrono::NaiveDate,
    },
    /// The pending points due on one day moved to `available` by the daily job: once per day.
    Release {
        release_on: chrono::NaiveDate,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferDirection {
    /// The sender's side: points leave.
    Out,
    /// The receiver's side: points arrive.
    In,
}

impl TransferDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

impl Source {
    /// The entry id: one per business event, whatever request or retry carried it.
    pub fn entry_id(&self) -> String {
        match self {
            Self::Order { order_id, .. } => Self::order_entry_id(order_id),
            Self::Action {
                action, reference, ..
            } => format!("action:{action}:{reference}"),
            Self::Enrolment => "welcome".to_owned(),
            Self::Campaign { campaign_id } => format!("campaign:{campaign_id}"),
            Self::Redemption { redemption_id, .. } => format!("redemption:{redemption_id}"),
            Self::RedemptionReversal { redemption_id, .. } => {
                format!("redemption_cancel:{redemption_id}")
            }
            Self::Referral { referral_id, role } => format!("referral:{referral_id}:{role}"),
            Self::Subscription {
                subscription_id,
                period,
            } => format!("subscription:{subscription_id}:{period}"),
            Self::SubscriptionRefund { reference, .. } => {
                format!("subscription_refund:{reference}")
            }
            Self::Adjustment { adjustment_id, .. } => format!("adjustment:{adjustment_id}"),
            Self::Return {
                order_id,
                return_id,
                ..
            } => format!("return:{order_id}:{return_id}"),
            Self::Transfer {
                transfer_id,
                direction,
                ..
            } => format!("transfer:{transfer_id}:{}", direction.as_str()),
            // Once per lot and date, however often the expiry job runs.
            Self::Expiry { lot, expires_on } => format!("expire:{lot}:{expires_on}"),
            Self::Release { release_on } => format!("release:{release_on}"),
        }
    }
}

impl Source {
    /// The id of the entry an order earned with, for the returns that take it back.
    pub fn order_entry_id(order_id: &OrderId) -> String {
        format!("order:{order_id}")
    }

    /// The key that must be unique across the whole program, not just within one member's
    /// ledger: an order earns once, whichever member it is sent for. Stores hold a program-wide
    /// guard on it, written under `attribute_not_exists` in the same transaction as the entry.
    pub fn program_key(&self) -> Option<String> {
        match self {
            Self::Order { order_id, .. } => Some(format!("order:{order_id}")),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub entry_id: String,
    /// Position in the member's ledger, 1-based and gap-free; pages are cut on it.
    pub seq: u64,
    pub member_id: MemberId,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    pub points: Points,
    pub balance_after: Points,
    pub reason: String,
    pub breakdown: Vec<BreakdownLine>,
    pub source: Source,
    pub program_version: u64,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// What a spending entry took from the member's lots, soonest-expiring first, so that its
    /// reversal puts each back with its own date.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<LotTake>,
    /// The part of `points` that moved the member's pending points (earned inside a return
    /// window) rather than available ones; `balance_after` moved by `points - pending.points`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingMove>,
}

/// What a spending entry took from one lot, so a reversal can put it back where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotTake {
    pub lot: String,
    pub points: Points,
    pub expires_on: NaiveDate,
}

/// A change to the pending points that are released on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMove {
    pub points: Points,
    pub release_on: chrono::NaiveDate,
}

impl LedgerEntry {
    /// What the entry changed the available balance by.
    pub fn available_change(&self) -> Points {
        self.points - self.pending.map_or(0, |p| p.points)
    }
}

/// One page of a member's ledger, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    pub next_cursor: Option<String>,
}
