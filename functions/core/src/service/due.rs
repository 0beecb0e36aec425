//! Fan-out from the due index: the nightly jobs (tier reviews, billing) look at today and the
//! days a missed run left behind, shard by shard and page by page, and hand what is due to a
//! queue in batches, so no single invocation does a night's work and nothing scans.

use chrono::{Days, NaiveDate};
use serde::Serialize;

use super::App;
use crate::error::ApiError;
use crate::ports::{MessageQueue, Store, REVIEW_SHARDS};

/// Which due index to walk.
pub(crate) enum DueIndex<'a> {
    /// Members by tier review day.
    TierReviews,
    /// Records of a kind by due day.
    Records(&'a str),
    /// Members by the next day the expiry job has work for their lots.
    Expiries,
}

/// What one fan-out sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FanOut {
    pub items: usize,
    pub messages: usize,
}

impl<S: Store> App<S> {
    pub(crate) async fn due_page(
        &self,
        index: &DueIndex<'_>,
        day: NaiveDate,
        shard: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), ApiError> {
        Ok(match index {
            DueIndex::TierReviews => {
                let (members, next) = self.store().members_due(day, shard, cursor).await?;
                (
                    members.into_iter().map(|m| m.as_str().to_owned()).collect(),
                    next,
                )
            }
            DueIndex::Records(kind) => self.store().records_due(kind, day, shard, cursor).await?,
            DueIndex::Expiries => {
                let (members, next) = self.store().members_expiry_due(day, shard, cursor).await?;
                (
                    members.into_iter().map(|m| m.as_str().to_owned()).collect(),
                    next,
                )
            }
        })
    }

    /// Sends everything due from `catch_up` days ago to today to `queue`, `per_message` ids per
    /// message built by `batch`. Sending a day twice is harmless when the consumer is
    /// idempotent per day, as every consumer of this is.
    pub(crate) async fn fan_out_due<B: Serialize>(
        &self,
        index: DueIndex<'_>,
        catch_up: u64,
        per_message: usize,
        queue: &dyn MessageQueue,
        batch: impl Fn(NaiveDate, &[String]) -> B,
    ) -> Result<FanOut, ApiError> {
        let today = self.now().date_naive();
        let mut sent = FanOut::default();
        for back in (0..=catch_up).rev() {
            let day = today - Days::new(back);
            for shard in 0..REVIEW_SHARDS {
                let mut cursor = None;
                loop {
                    let (ids, next) = self.due_page(&index, day, shard, cursor).await?;
                    let bodies: Vec<String> = ids
                        .chunks(per_message)
                        .map(|chunk| serde_json::to_string(&batch(day, chunk)))
                        .collect::<Result<_, _>>()
                        .map_err(|_| ApiError::internal())?;
                    sent.items += ids.len();
                    sent.messages += bodies.len();
                    if !bodies.is_empty() {
                        queue.send(bodies).await?;
                    }
                    match next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
        }
        Ok(sent)
    }
}
