//! The one retry loop. Every write here is conditional (a member version, a record version, an
//! absent key), so losing a race is normal: read again, decide again, write again. What differs
//! between use cases is only what one attempt does; how long to wait and when to give up lives
//! here.

use std::time::Duration;

use rand::Rng;

use super::App;
use crate::error::{ApiError, ErrorCode};
use crate::ports::Store;

/// What one attempt at a conditional write came to.
pub(crate) enum Attempt<T> {
    /// An answer: written, replayed, or nothing to do.
    Done(T),
    /// Lost a race; read again after a wait.
    Retry,
}

/// The wait before attempt `attempt + 1`: full jitter under a ceiling that doubles up to 64 ms,
/// so racing writers spread apart and one of them wins each round.
fn jittered_wait(attempt: u32) -> Duration {
    let ceiling_ms = 2u64.saturating_pow(attempt.min(6)).min(64);
    Duration::from_micros(rand::rng().random_range(0..=ceiling_ms * 1000))
}

/// What a caller hears when every attempt lost its race.
fn gave_up() -> ApiError {
    ApiError::new(
        ErrorCode::ConcurrentModification,
        "the member is being changed by other requests; retry with the same Idempotency-Key",
    )
}

impl<S: Store> App<S> {
    /// Runs `attempt` until it answers, waiting between tries, and gives up with
    /// `concurrent_modification` after `AppConfig::max_attempts`. `E` is the use case's error
    /// (an `ApiError`, or one that wraps it).
    ///
    /// `attempt` is a closure returning a future (`|| async move { … }` over references) rather
    /// than an async closure: the futures of async closures called through a generic bound cannot
    /// yet be proven `Send`, and the Lambda runtime needs them to be.
    pub(crate) async fn retrying<T, E, Fut>(&self, mut attempt: impl FnMut() -> Fut) -> Result<T, E>
    where
        E: From<ApiError>,
        Fut: std::future::Future<Output = Result<Attempt<T>, E>>,
    {
        let mut tries = 0u32;
        loop {
            match attempt().await? {
                Attempt::Done(answer) => return Ok(answer),
                Attempt::Retry => {
                    tries += 1;
                    if tries >= self.config.max_attempts {
                        return Err(gave_up().into());
                    }
                    tokio::time::sleep(jittered_wait(tries)).await;
                }
            }
        }
    }
}
