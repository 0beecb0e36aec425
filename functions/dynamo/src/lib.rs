//! The DynamoDB adapter: one table, single-table layout (see [`keys`]), implementing the core's
//! ports. Every points movement is one `TransactWriteItems` whose conditions carry the
//! exactly-once guarantees; reads are strongly consistent `GetItem`/`BatchGetItem`/`Query`s that
//! touch a bounded number of items whatever a member's history.

mod audience;
mod capacity;
mod client;
mod commit;
mod items;
pub mod keys;
mod ledger;
mod members;
mod observed;
mod program;
mod records;
pub mod stream;
mod tiers;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use loyalty_core::service::AppConfig;
use loyalty_core::App;

pub use capacity::{Capacity, CapacityMeter};
pub use client::dynamodb_client;
pub use commit::classify_cancellation;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    meter: CapacityMeter,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<Arc<str>>) -> Self {
        Self {
            client,
            table: table.into(),
            meter: CapacityMeter::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Round trips and capacity units consumed so far through this store.
    pub fn meter(&self) -> &CapacityMeter {
        &self.meter
    }
}

/// Reads `TABLE_NAME` and `PROGRAM_CACHE_SECONDS`. Called once per execution environment: the
/// SDK client and its connection pool live as long as the environment does.
pub fn app_from_env(aws: &aws_config::SdkConfig) -> Result<App<DynamoStore>, String> {
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set".to_owned())?;
    let cache_seconds = match std::env::var("PROGRAM_CACHE_SECONDS") {
        Ok(raw) => raw
            .parse::<u64>()
            .map_err(|_| format!("PROGRAM_CACHE_SECONDS '{raw}' is not a number"))?,
        Err(_) => AppConfig::default().program_cache_ttl.as_secs(),
    };
    let store = DynamoStore::new(dynamodb_client(aws), table);
    let config = AppConfig {
        program_cache_ttl: Duration::from_secs(cache_seconds),
        ..AppConfig::default()
    };
    Ok(App::new(
        store,
        loyalty_core::clock::clock_from_env()?,
        config,
    ))
}
