//! The paid plan a member holds, as the member item carries it (see [`crate::subscriptions`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The plan a member currently enjoys, kept on the member item so that an accrual needs no extra
/// read to apply it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberPlan {
    pub subscription_id: String,
    pub plan_id: String,
    /// Benefits stop at this instant even if no billing run has removed them.
    pub until: DateTime<Utc>,
}
