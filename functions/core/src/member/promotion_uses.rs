//! What promotions leave on member items: how often the member used each promotion that has a
//! per-member limit (see [`crate::promotions`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How often a member has used a promotion that has a per-member limit. Kept until the promotion
/// ends plus the program's lateness window — the last moment a purchase from its window can still
/// be reported — so the limit holds for every accepted purchase, and the member item does not
/// grow with the years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionUse {
    pub count: u32,
    pub ends_at: DateTime<Utc>,
}

pub type PromotionUses = std::collections::BTreeMap<String, PromotionUse>;
