use serde::Serialize;
use serde_json::{json, Value};

use super::admin_keys::{self, KeyedResponse};
use super::{parse_body, App, Attempt, Outcome};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{fingerprint, Operation};
use crate::ids::{IdempotencyKey, RewardId};
use crate::ports::{CommitError, PublishError, Store};
use crate::program::{ActiveProgram, ProgramDocument, Reward};

/// The program a fresh deployment starts with; merchants replace it with `PUT /v1/admin/program`.
pub const DEFAULT_PROGRAM_JSON: &str = include_str!("../../../../infra/program.default.json");

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardView {
    #[serde(flatten)]
    pub reward: Reward,
    /// Units left for a limited-stock reward.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock_remaining: Option<u32>,
}

/// Refuses a reward whose id the program already uses, or that would make it invalid.
fn check_new_reward(current: &ActiveProgram, reward: &Reward) -> Result<(), ApiError> {
    if current.reward(reward.reward_id.as_str()).is_some() {
        return Err(ApiError::new(
            ErrorCode::RewardExists,
            format!("reward '{}' already exists", reward.reward_id),
        )
        .with_details(json!({ "reward_id": reward.reward_id })));
    }
    let mut document = current.document.clone();
    document.rewards.push(reward.clone());
    document
        .validate()
        .map_err(|e| ApiError::new(ErrorCode::ValidationError, e.message).with_details(e.details))
}

impl<S: Store> App<S> {
    pub(crate) async fn publish_default_program(&self) -> Result<ActiveProgram, ApiError> {
        let document = ProgramDocument::parse(DEFAULT_PROGRAM_JSON.as_bytes())?;
        match self.publish(document, None, None).await {
            Ok(program) => Ok(program),
            // Another environment published first; theirs is the one to use.
            Err(error) if error.code == ErrorCode::ConcurrentModification => self
                .store()
                .active_program()
                .await?
                .ok_or_else(ApiError::internal),
            Err(error) => Err(error),
        }
    }

    /// Publishes `document` as the next version, recording who published it. A document that
    /// fails validation never reaches the store, so the active version stays in force.
    async fn publish(
        &self,
        document: ProgramDocument,
        current: Option<&ActiveProgram>,
        actor: Option<&str>,
    ) -> Result<ActiveProgram, ApiError> {
        document.validate()?;
        let program = ActiveProgram {
            version: current.map_or(1, |p| p.version + 1),
            published_at: self.now(),
            created_by: actor.map(str::to_owned),
            document,
        };
        match self.store().publish_program(&program).await {
            Ok(()) => {
                self.forget_program().await;
                Ok(program)
            }
            Err(PublishError::VersionTaken(version)) => Err(ApiError::new(
                ErrorCode::ConcurrentModification,
                format!(
                    "program version {version} was published by someone else; fetch it and retry"
                ),
            )),
            Err(PublishError::Store(error)) => Err(error.into()),
        }
    }

    /// `PUT /v1/admin/program`, by `actor` (the admin token's `sub`).
    pub async fn replace_program(
        &self,
        actor: &str,
        body: &[u8],
    ) -> Result<ActiveProgram, ApiError> {
        let document = ProgramDocument::parse(body)?;
        let current = self.store().active_program().await?;
        self.publish(document, current.as_ref(), Some(actor)).await
    }

    /// Publishes the active program again as the next version, unchanged, so every function
    /// sees a newer version stamp on its next member read and re-reads what it caches (the
    /// program and the promotion list): the way a change outside the program document — a
    /// promotion created, cancelled, opened or closed — reaches the hot path at once. A publish
    /// lost to someone else's is just as good: theirs bumped the version too.
    pub(crate) async fn announce_catalog_change(
        &self,
        actor: Option<&str>,
    ) -> Result<(), ApiError> {
        let current = match self.store().active_program().await? {
            Some(program) => program,
            None => self.publish_default_program().await?,
        };
        match self
            .publish(current.document.clone(), Some(&current), actor)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.code == ErrorCode::ConcurrentModification => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `POST /v1/admin/rewards`, by `actor`: the catalog is part of the program, so a new
    /// reward is a new program version, and that version records who created it.
    ///
    /// With an `Idempotency-Key`, the key is claimed (with the response it will answer) before
    /// the program is published: the publish is a separate write, so a retry that finds the
    /// claim but not the reward completes the publish, and a retry that finds both replays.
    pub async fn create_reward(
        &self,
        actor: &str,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let fingerprint = fingerprint(Operation::Reward, body);
        if let Some(key) = &key {
            if let Some(done) = self.keyed_response(Operation::Reward, key).await? {
                return self.complete_reward(actor, &done, &fingerprint).await;
            }
        }
        let reward: Reward = parse_body(body)?;
        let current = match self.store().active_program().await? {
            Some(program) => program,
            None => self.publish_default_program().await?,
        };
        check_new_reward(&current, &reward)?;
        let mut response = serde_json::to_value(&reward).map_err(|_| ApiError::internal())?;
        if let Some(object) = response.as_object_mut() {
            object.insert("created_by".to_owned(), Value::from(actor));
        }
        let Some(key) = key else {
            self.publish_reward(actor, &reward).await?;
            return Ok(Outcome::Created(response));
        };
        let first = KeyedResponse {
            operation: Operation::Reward,
            fingerprint: fingerprint.clone(),
            status: 201,
            response: response.clone(),
            created_at: self.now(),
        };
        let claim = admin_keys::claim(Operation::Reward, &key, first)?;
        match self.store().transact(Vec::new(), vec![claim]).await {
            Ok(()) => {}
            Err(CommitError::RecordConflict { .. }) => {
                let done = self
                    .keyed_response(Operation::Reward, &key)
                    .await?
                    .ok_or_else(ApiError::internal)?;
                return self.complete_reward(actor, &done, &fingerprint).await;
            }
            Err(CommitError::Store(error)) => return Err(error.into()),
            Err(other) => {
                tracing::error!(error = %other, "reward key claim failed");
                return Err(ApiError::internal());
            }
        }
        self.publish_reward(actor, &reward).await?;
        Ok(Outcome::Created(response))
    }

    /// A retried keyed reward create: the first response, after making sure its reward was
    /// published (the first attempt may have stopped between claiming the key and publishing).
    async fn complete_reward(
        &self,
        actor: &str,
        done: &KeyedResponse,
        fingerprint: &str,
    ) -> Result<Outcome, ApiError> {
        let response = done.replay(fingerprint)?;
        let mut stored = response.clone();
        if let Some(object) = stored.as_object_mut() {
            object.remove("created_by");
        }
        let reward: Reward = serde_json::from_value(stored).map_err(|error| {
            tracing::error!(%error, "stored reward response does not parse");
            ApiError::internal()
        })?;
        self.publish_reward(actor, &reward).await?;
        Ok(Outcome::Replayed(response))
    }

    /// Adds `reward` to the active program as a new version, retrying lost races; a program
    /// that already has exactly this reward needs nothing.
    async fn publish_reward(&self, actor: &str, reward: &Reward) -> Result<(), ApiError> {
        self.retrying(|| async move {
            let current = match self.store().active_program().await? {
                Some(program) => program,
                None => self.publish_default_program().await?,
            };
            if current.reward(reward.reward_id.as_str()) == Some(reward) {
                return Ok(Attempt::Done(()));
            }
            check_new_reward(&current, reward)?;
            let mut document = current.document.clone();
            document.rewards.push(reward.clone());
            match self.publish(document, Some(&current), Some(actor)).await {
                Ok(_) => Ok(Attempt::Done(())),
                Err(error) if error.code == ErrorCode::ConcurrentModification => Ok(Attempt::Retry),
                Err(error) => Err(error),
            }
        })
        .await
    }

    /// `GET /v1/rewards`, with what is left of each limited stock.
    pub async fn rewards(&self) -> Result<Vec<RewardView>, ApiError> {
        let program = self.program().await?;
        let limited: Vec<RewardId> = program
            .document
            .rewards
            .iter()
            .filter(|r| r.stock.is_some())
            .map(|r| r.reward_id.clone())
            .collect();
        let used = if limited.is_empty() {
            Default::default()
        } else {
            self.store().stock_used(&limited).await?
        };
        Ok(program
            .document
            .rewards
            .iter()
            .map(|reward| RewardView {
                stock_remaining: reward.stock.map(|stock| {
                    stock.saturating_sub(used.get(&reward.reward_id).copied().unwrap_or(0))
                }),
                reward: reward.clone(),
            })
            .collect())
    }
}
