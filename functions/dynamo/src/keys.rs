//! The single-table layout. Everything about one member shares the partition `MEMBER#<id>`, so
//! a points movement is a transaction within one partition.
//!
//! | item                | pk                | sk                          |
//! |---------------------|-------------------|-----------------------------|
//! | member              | `MEMBER#<id>`     | `PROFILE`                   |
//! | ledger entry        | `MEMBER#<id>`     | `LEDGER#<seq, 20 digits>`   |
//! | entry-id guard      | `MEMBER#<id>`     | `ENTRY#<entry id>`          |
//! | idempotency record  | `MEMBER#<id>`     | `IDEM#<operation>#<key>`    |
//! | referral code       | `REFCODE#<code>`  | `REFCODE`                   |
//! | program (active)    | `PROGRAM`         | `ACTIVE`                    |
//! | program (history)   | `PROGRAM`         | `VERSION#<version, 10 d.>`  |
//! | reward stock        | `REWARD#<id>`     | `STOCK`                     |
//! | program-wide key    | `UNIQUE#<key>`    | `UNIQUE`                    |
//! | program version stamp | `PROGRAM#STAMP#<shard>` | `STAMP`               |
//!
//! | tier change         | `MEMBER#<id>`     | `TIER#<evaluated at, ms>`   |
//!
//! GSI1 (`gsi1pk`, `gsi1sk`, keys only) lists members by enrolment day: `ENROLLED#<yyyy-mm-dd>`.
//! GSI2 (`gsi2pk`, `gsi2sk`, keys only, sparse) lists members by tier review day, spread over
//! shards: `REVIEW#<yyyy-mm-dd>#<shard>`.
//! GSI4 (`gsi4pk`, `gsi4sk`, keys only, sparse) lists members by the next day the daily points
//! run has work for them (pending points to release, lots to expire or warn about), spread over
//! shards: `EXPIRY#<yyyy-mm-dd>#<shard>`.

use loyalty_core::idempotency::IdempotencyScope;
use loyalty_core::ids::{MemberId, ReferralCode, RewardId};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// The table's TTL attribute (unix seconds).
pub const TTL: &str = "expires_at";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
pub const GSI3: &str = "GSI3";
pub const GSI3_PK: &str = "gsi3pk";
pub const GSI3_SK: &str = "gsi3sk";
pub const GSI2: &str = "GSI2";
pub const GSI2_PK: &str = "gsi2pk";
pub const GSI2_SK: &str = "gsi2sk";
pub const GSI4: &str = "GSI4";
pub const GSI4_PK: &str = "gsi4pk";
pub const GSI4_SK: &str = "gsi4sk";

pub const PROFILE: &str = "PROFILE";
pub const LEDGER_PREFIX: &str = "LEDGER#";

pub fn member_pk(id: &MemberId) -> String {
    format!("MEMBER#{id}")
}

pub fn ledger_sk(seq: u64) -> String {
    format!("{LEDGER_PREFIX}{seq:020}")
}

pub fn entry_guard_sk(entry_id: &str) -> String {
    format!("ENTRY#{entry_id}")
}

pub fn idempotency_sk(operation: &str, key: &str) -> String {
    format!("IDEM#{operation}#{key}")
}

pub fn scope_sk(scope: &IdempotencyScope) -> String {
    idempotency_sk(scope.operation.as_str(), scope.key.as_str())
}

pub fn referral_pk(code: &ReferralCode) -> String {
    format!("REFCODE#{}", code.as_str())
}

pub const REFERRAL_SK: &str = "REFCODE";
pub const PROGRAM_PK: &str = "PROGRAM";
pub const PROGRAM_ACTIVE_SK: &str = "ACTIVE";

pub fn program_version_sk(version: u64) -> String {
    format!("VERSION#{version:010}")
}

pub fn stock_pk(reward: &RewardId) -> String {
    format!("REWARD#{reward}")
}

pub const STOCK_SK: &str = "STOCK";

/// A business key unique across the program (an order earns once, whichever member).
pub fn unique_pk(key: &str) -> String {
    format!("UNIQUE#{key}")
}

pub const UNIQUE_SK: &str = "UNIQUE";

/// Copies of the active program version, one per shard: every keyed member read fetches its
/// shard's copy in the same `BatchGetItem`, so a function learns of a newer program (or a new
/// promotion) on the next request without a global hot item.
pub const STAMP_SHARDS: u32 = 16;

pub fn stamp_pk(shard: u32) -> String {
    format!("PROGRAM#STAMP#{shard:02}")
}

pub const STAMP_SK: &str = "STAMP";

/// GSI3 (keys only): members by tier, spread over shards, for campaign audiences.
pub fn tier_gsi3pk(tier: &str, shard: u32) -> String {
    format!("TIER#{tier}#{shard:02}")
}

pub fn enrolled_gsi1pk(day: &str) -> String {
    format!("ENROLLED#{day}")
}

pub fn expiry_gsi4pk(day: chrono::NaiveDate, shard: u32) -> String {
    format!("EXPIRY#{day}#{shard:02}")
}

pub fn review_gsi2pk(day: chrono::NaiveDate, shard: u32) -> String {
    format!("REVIEW#{day}#{shard:02}")
}

/// Records: `REC#<kind>#<id>` / `REC`; listed by owner through GSI1 (`OWNER#<kind>#<owner>`)
/// and by due day through GSI2 (`DUE#<kind>#<yyyy-mm-dd>#<shard>`).
pub fn record_pk(kind: &str, id: &str) -> String {
    format!("REC#{kind}#{id}")
}

pub const RECORD_SK: &str = "REC";
pub const GSI1: &str = "GSI1";

pub fn owner_gsi1pk(kind: &str, owner: &str) -> String {
    format!("OWNER#{kind}#{owner}")
}

pub fn due_gsi2pk(kind: &str, day: chrono::NaiveDate, shard: u32) -> String {
    format!("DUE#{kind}#{day}#{shard:02}")
}

pub const TIER_PREFIX: &str = "TIER#";

pub fn tier_sk(at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{TIER_PREFIX}{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}
