//! The loyalty domain: points, money, the program document and its earning rules, the ledger, and
//! the application services that move points. Adapters (DynamoDB, HTTP) live in other crates and
//! reach the domain only through the ports in [`ports`]; nothing here knows about AWS.

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
