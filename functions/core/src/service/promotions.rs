//! Promotions: admin management, the cached list the accrual path reads, and the season
//! schedule that opens and closes yearly promotions.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::admin_keys::{self, KeyedResponse};
use super::{parse_body, App, Attempt, Outcome};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{fingerprint, Operation};
use crate::ids::IdempotencyKey;
use crate::ports::{CommitError, Expect, Record, RecordWrite, Store};
use crate::promotions::{
    season_boundaries, Promotion, PromotionRequest, PromotionStatus, SeasonAction, RECORD_KIND,
    RECORD_OWNER,
};

/// Promotions kept in the accrual path's list: all live ones and those ended recently enough
/// that a late-reported purchase from their window still earns under them.
const MAX_LISTED: u32 = 100;
/// Index reads a new promotion waits for before it is announced (100 ms apart).
const LISTING_CHECKS: u32 = 20;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromotionView {
    #[serde(flatten)]
    pub promotion: Promotion,
    pub live: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeasonRun {
    pub opened: usize,
    pub closed: usize,
}

fn record(promotion: &Promotion, version: u64) -> Result<Record, ApiError> {
    Ok(Record {
        kind: RECORD_KIND.into(),
        id: promotion.promotion_id.clone(),
        owner: Some(RECORD_OWNER.into()),
        version,
        due: None,
        body: serde_json::to_value(promotion).map_err(|_| ApiError::internal())?,
    })
}

impl<S: Store> App<S> {
    /// The promotions the accrual path considers, from this environment's copy while it is
    /// fresh: one index read per cache period, not per request.
    ///
    /// `known` is the program version this request has seen (its stamp, or its program's
    /// version): creating or cancelling a promotion publishes a new program version, so a list
    /// read before that version may lack the promotion and is read again.
    pub(crate) async fn promotions(&self, known: u64) -> Result<Arc<Vec<Promotion>>, ApiError> {
        if let Some((fetched, seen, list)) = self.promotions.read().await.as_ref() {
            if fetched.elapsed() < self.config.program_cache_ttl && *seen >= known {
                return Ok(Arc::clone(list));
            }
        }
        let records = self
            .store()
            .records_of(RECORD_KIND, RECORD_OWNER, MAX_LISTED)
            .await?;
        let list: Vec<Promotion> = records
            .iter()
            .map(|r| r.parse())
            .collect::<Result<_, _>>()?;
        let list = Arc::new(list);
        *self.promotions.write().await = Some((Instant::now(), known, Arc::clone(&list)));
        Ok(list)
    }

    pub(crate) async fn forget_promotions(&self) {
        *self.promotions.write().await = None;
    }

    /// `POST /v1/admin/promotions` by `actor` (the admin token's `sub`). With an `Idempotency-Key` the first response is recorded in
    /// the same transaction as the promotion, so a retry (or a racing duplicate) answers that
    /// response and creates nothing. The stream consumer announces the stored promotion to every
    /// environment's cache (see [`App::relay_change`]); this one forgets its copy at once.
    pub async fn create_promotion(
        &self,
        actor: &str,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let fingerprint = fingerprint(Operation::Promotion, body);
        if let Some(key) = &key {
            if let Some(done) = self.keyed_response(Operation::Promotion, key).await? {
                return Ok(Outcome::Replayed(done.replay(&fingerprint)?));
            }
        }
        let request: PromotionRequest = parse_body(body)?;
        // Time-ordered, as the accrual path lists the newest promotions; a retry cannot create
        // a second one because the key's record is written in the same transaction (Absent).
        let id = format!("promo_{}", ulid::Ulid::new().to_string().to_lowercase());
        let now = self.now();
        let promotion = Promotion {
            created_by: Some(actor.to_owned()),
            ..request.into_promotion(id, now)?
        };
        let response = serde_json::to_value(&promotion).map_err(|_| ApiError::internal())?;
        let mut writes = vec![RecordWrite {
            record: record(&promotion, 1)?,
            expect: Expect::Absent,
        }];
        if let Some(key) = &key {
            let first = KeyedResponse {
                operation: Operation::Promotion,
                fingerprint: fingerprint.clone(),
                status: 201,
                response: response.clone(),
                created_at: now,
            };
            writes.push(admin_keys::claim(Operation::Promotion, key, first)?);
        }
        match self.store().transact(Vec::new(), writes).await {
            Ok(()) => {}
            Err(CommitError::RecordConflict { .. }) if key.is_some() => {
                let key = key.as_ref().ok_or_else(ApiError::internal)?;
                let done = self
                    .keyed_response(Operation::Promotion, key)
                    .await?
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::ConcurrentModification,
                            "the promotion is being created by another request; retry",
                        )
                    })?;
                return Ok(Outcome::Replayed(done.replay(&fingerprint)?));
            }
            Err(other) => return Err(commit_error(other)),
        }
        self.forget_promotions().await;
        Ok(Outcome::Created(response))
    }

    /// Waits (briefly, bounded) until the promotion index lists `id`: the index is eventually
    /// consistent, and the version bump that follows tells accruals to read the list again —
    /// it must not send them to a list that does not show the promotion yet.
    pub(crate) async fn await_listed(&self, id: &str) -> Result<(), ApiError> {
        for _ in 0..LISTING_CHECKS {
            let listed = self
                .store()
                .records_of(RECORD_KIND, RECORD_OWNER, MAX_LISTED)
                .await?;
            if listed.iter().any(|r| r.id == id) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::warn!(promotion_id = id, "promotion not yet listed by the index");
        Ok(())
    }

    pub async fn list_promotions(&self) -> Result<Value, ApiError> {
        let now = self.now();
        let records = self
            .store()
            .records_of(RECORD_KIND, RECORD_OWNER, MAX_LISTED)
            .await?;
        let views: Vec<PromotionView> = records
            .iter()
            .map(|r| {
                r.parse::<Promotion>().map(|p| PromotionView {
                    live: p.is_live(now),
                    promotion: p,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(json!({ "promotions": views }))
    }

    /// Cancels a promotion, recording `actor` as who canceled; canceling one already canceled
    /// answers with it unchanged.
    pub async fn cancel_promotion(&self, actor: &str, id: &str) -> Result<Promotion, ApiError> {
        self.retrying(|| async move {
            let record = self.store().record(RECORD_KIND, id).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::PromotionNotFound, format!("no promotion '{id}'"))
                    .with_details(json!({ "promotion_id": id }))
            })?;
            let mut promotion: Promotion = record.parse()?;
            if promotion.status == PromotionStatus::Canceled {
                return Ok(Attempt::Done(promotion));
            }
            promotion.status = PromotionStatus::Canceled;
            promotion.canceled_by = Some(actor.to_owned());
            let write = RecordWrite {
                record: self::record(&promotion, record.version + 1)?,
                expect: Expect::Version(record.version),
            };
            match self.store().transact(Vec::new(), vec![write]).await {
                // The stream consumer announces the change to every environment's cache.
                Ok(()) => {
                    self.forget_promotions().await;
                    Ok(Attempt::Done(promotion))
                }
                Err(CommitError::RecordConflict { .. } | CommitError::Conflict) => {
                    Ok(Attempt::Retry)
                }
                Err(other) => Err(commit_error(other)),
            }
        })
        .await
    }

    /// Opens the promotions of seasons that have begun and closes those that have ended; each
    /// once, however often it runs.
    pub async fn run_seasons(&self) -> Result<SeasonRun, ApiError> {
        let program = self.program().await?;
        let now = self.now();
        let mut run = SeasonRun::default();
        for season in &program.document.seasons {
            for action in season_boundaries(season, now) {
                match action {
                    SeasonAction::Open(promotion) => {
                        let write = RecordWrite {
                            record: record(&promotion, 1)?,
                            expect: Expect::Absent,
                        };
                        match self.store().transact(Vec::new(), vec![write]).await {
                            Ok(()) => run.opened += 1,
                            // Opened by an earlier run; the stream announced its record.
                            Err(CommitError::RecordConflict { .. }) => {}
                            Err(other) => return Err(commit_error(other)),
                        }
                    }
                    SeasonAction::Close { promotion_id } => {
                        let Some(stored) = self.store().record(RECORD_KIND, &promotion_id).await?
                        else {
                            continue;
                        };
                        let mut promotion: Promotion = stored.parse()?;
                        if promotion.status != PromotionStatus::Active {
                            continue;
                        }
                        promotion.status = PromotionStatus::Closed;
                        let write = RecordWrite {
                            record: record(&promotion, stored.version + 1)?,
                            expect: Expect::Version(stored.version),
                        };
                        match self.store().transact(Vec::new(), vec![write]).await {
                            Ok(()) => run.closed += 1,
                            Err(CommitError::RecordConflict { .. }) => {}
                            Err(other) => return Err(commit_error(other)),
                        }
                    }
                }
            }
        }
        if run.opened + run.closed > 0 {
            // The stream consumer announces each opening and closing (its event and the
            // catalog change every environment's cache learns of); this one forgets its copy.
            self.forget_promotions().await;
        }
        Ok(run)
    }
}

fn commit_error(error: CommitError) -> ApiError {
    match error {
        CommitError::Store(e) => e.into(),
        CommitError::Conflict | CommitError::RecordConflict { .. } => ApiError::new(
            ErrorCode::ConcurrentModification,
            "the record was changed by another request; retry",
        ),
        other => {
            tracing::error!(error = %other, "record write failed");
            ApiError::internal()
        }
    }
}
