//! The stream consumer's use case: a committed change announces its events and starts its
//! follow-up work. Every send happens here, after the store's change feed has reported the
//! commit, never in the request that made it; a failure is returned so the feed delivers the
//! change again (at least once, with the same event ids).

use serde_json::json;

use super::App;
use crate::campaigns::DispatchMessage;
use crate::error::ApiError;
use crate::events::catalog::{self, Change, FollowUp};
use crate::ports::{Store, StoreError};

/// Why a change could not be relayed; the change must be delivered again.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The item does not parse as what its key says: redelivery will not help, so the stream's
    /// on-failure destination keeps it for a person to look at.
    #[error(transparent)]
    Unreadable(#[from] catalog::Unreadable),
    #[error("could not send: {0}")]
    Send(#[from] StoreError),
    #[error("follow-up failed: {0}")]
    FollowUp(ApiError),
}

/// What one relayed change produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    pub events: usize,
    pub follow_ups: usize,
}

impl<S: Store> App<S> {
    /// Sends the events `change` announces to the events queue and starts its follow-ups
    /// (referral message, first campaign dispatch step, catalog change).
    pub async fn relay_change(&self, change: &Change) -> Result<Relayed, RelayError> {
        let derived = catalog::derive(change)?;
        let bodies = derived
            .events
            .iter()
            .map(|event| serde_json::to_string(event).map_err(|e| StoreError(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if !bodies.is_empty() {
            self.events.send(bodies).await?;
        }
        self.fan_out_to_webhooks(&derived.events).await?;
        for follow_up in &derived.follow_ups {
            match follow_up {
                FollowUp::Referral { referral_id } => {
                    let body = json!({ "referral_id": referral_id }).to_string();
                    self.referral_queue.send(vec![body]).await?;
                }
                FollowUp::DispatchCampaign { campaign_id } => {
                    let first = DispatchMessage {
                        campaign_id: campaign_id.clone(),
                        page: 0,
                        cursor: None,
                    };
                    let body =
                        serde_json::to_string(&first).map_err(|e| StoreError(e.to_string()))?;
                    self.campaign_dispatch.send(vec![body]).await?;
                }
                FollowUp::CatalogChanged { promotion_id } => {
                    // The change itself is stored; this makes every function re-read the
                    // promotion list on its next request (a newer program version stamp). The
                    // index is eventually consistent: the bump must not send accruals to a list
                    // that does not show the promotion yet.
                    self.forget_promotions().await;
                    self.await_listed(promotion_id)
                        .await
                        .map_err(RelayError::FollowUp)?;
                    self.announce_catalog_change(None)
                        .await
                        .map_err(RelayError::FollowUp)?;
                }
            }
        }
        Ok(Relayed {
            events: derived.events.len(),
            follow_ups: derived.follow_ups.len(),
        })
    }
}

impl<S: Store> App<S> {
    /// Relays `changes` in order, stopping at the first that fails (a stream shard delivers in
    /// order: what follows a failure waits for it). Local tools and tests use it with
    /// `MemoryStore::take_changes`.
    pub async fn relay_all(&self, changes: Vec<Change>) -> Result<Relayed, RelayError> {
        let mut total = Relayed::default();
        for change in &changes {
            let relayed = self.relay_change(change).await?;
            total.events += relayed.events;
            total.follow_ups += relayed.follow_ups;
        }
        Ok(total)
    }
}
