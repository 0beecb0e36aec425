//! The loyalty domain: points, money, the program document and its earning rules, the ledger, and
//! the application services that move points. Adapters (DynamoDB, HTTP) live in other crates and
//! reach the domain only through the ports in [`ports`]; nothing here knows about AWS.
//!
//! Modules depend in one direction, each only on those above it:
//!
//! 1. [`ids`], [`money`], [`error`], [`clock`]: the vocabulary.
//! 2. [`ledger`]: entries, their sources and what they took from lots.
//! 3. [`tiers`], [`expiry`], [`pending`]: the pure arithmetic of tier windows, expiry lots and
//!    pending points, shared by the program document and the member.
//! 4. [`program`]: the program document — every type it is made of (earning, rewards,
//!    transfers, referral policy, plans, codes, seasons) and its validation.
//! 5. [`member`]: the member item — balances and every piece of per-member state the rules
//!    keep on it (counters, promotion uses, referral marks, the plan held).
//! 6. [`promotions`], [`referrals`], [`campaigns`]: rules over the program and the member. Each
//!    re-exports the document and member types it is about, so `referrals::ReferralPolicy`
//!    still names the policy.
//! 7. [`ports`]: what the stores and queues take and give, in the terms above.
//! 8. [`redemptions`], [`subscriptions`], [`webhooks`]: rules that also shape the records they
//!    write (through the ports' record types).
//! 9. [`events`], [`service`]: what committed changes announce, and the use cases that read,
//!    decide and write.

pub mod campaigns;
pub mod clock;
pub mod commands;
pub mod error;
pub mod events;
pub mod expiry;
pub mod idempotency;
pub mod ids;
pub mod ledger;
pub mod member;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod money;
pub mod pending;
pub mod ports;
pub mod program;
pub mod promotions;
pub mod redemptions;
pub mod referrals;
pub mod service;
pub mod subscriptions;
pub mod tiers;
pub mod webhooks;

pub use error::{ApiError, ErrorCode};
pub use service::App;

/// Points are whole numbers; signed because ledger entries carry a sign.
pub type Points = i64;
