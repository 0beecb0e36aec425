//! Counts what the store asks of DynamoDB, from the `ConsumedCapacity` it returns, so tests and
//! benchmarks can state per-operation costs as measured rather than as estimated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::types::ConsumedCapacity;

/// Capacity units are reported with fractions (0.5 RRU for an eventually consistent read);
/// they are kept in thousandths so the counters stay integers.
#[derive(Debug, Default)]
struct Counters {
    round_trips: AtomicU64,
    read_milli_units: AtomicU64,
    write_milli_units: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Units {
    Read,
    Write,
}

#[derive(Debug, Clone, Default)]
pub struct CapacityMeter(Arc<Counters>);

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capacity {
    pub round_trips: u64,
    pub read_units: f64,
    pub write_units: f64,
}

impl std::ops::Sub for Capacity {
    type Output = Capacity;
    fn sub(self, earlier: Capacity) -> Capacity {
        Capacity {
            round_trips: self.round_trips - earlier.round_trips,
            read_units: self.read_units - earlier.read_units,
            write_units: self.write_units - earlier.write_units,
        }
    }
}

fn milli(units: Option<f64>) -> u64 {
    (units.unwrap_or(0.0) * 1000.0).round() as u64
}

impl CapacityMeter {
    /// Records one round trip. `kind` says where a bare total belongs: some calls report only
    /// `CapacityUnits`, without the read/write split.
    pub(crate) fn record<'a>(
        &self,
        kind: Units,
        consumed: impl IntoIterator<Item = &'a ConsumedCapacity>,
    ) {
        self.0.round_trips.fetch_add(1, Ordering::Relaxed);
        for c in consumed {
            let (read, write) = match (c.read_capacity_units, c.write_capacity_units, kind) {
                (None, None, Units::Read) => (c.capacity_units, None),
                (None, None, Units::Write) => (None, c.capacity_units),
                (read, write, _) => (read, write),
            };
            self.0
                .read_milli_units
                .fetch_add(milli(read), Ordering::Relaxed);
            self.0
                .write_milli_units
                .fetch_add(milli(write), Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Capacity {
        Capacity {
            round_trips: self.0.round_trips.load(Ordering::Relaxed),
            read_units: self.0.read_milli_units.load(Ordering::Relaxed) as f64 / 1000.0,
            write_units: self.0.write_milli_units.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}
