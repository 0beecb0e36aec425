//! Time is a port so that windows, caps and expiries can be tested at any instant.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock shifted by a fixed offset, so that a local run can live in next Black Friday
/// or at a month end. Set through `LOYALTY_CLOCK_OFFSET_SECONDS`; never set in a deployment.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock(pub Duration);

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

pub const CLOCK_OFFSET_ENV: &str = "LOYALTY_CLOCK_OFFSET_SECONDS";

/// The clock a function runs on: the system clock, offset when the local runner says so.
pub fn clock_from_env() -> Result<std::sync::Arc<dyn Clock>, String> {
    match std::env::var(CLOCK_OFFSET_ENV) {
        Ok(raw) => {
            let seconds: i64 = raw.trim().parse().map_err(|_| {
                format!("{CLOCK_OFFSET_ENV} '{raw}' is not a whole number of seconds")
            })?;
            let offset = Duration::try_seconds(seconds)
                .ok_or_else(|| format!("{CLOCK_OFFSET_ENV} is out of range"))?;
            Ok(std::sync::Arc::new(OffsetClock(offset)))
        }
        Err(_) => Ok(std::sync::Arc::new(SystemClock)),
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.lock() = at;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now += by;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A poisoned clock still holds a valid instant.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}
