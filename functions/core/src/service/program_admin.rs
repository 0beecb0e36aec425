use serde::Serialize;
use serde_json::{json, Value};

use super::{parse_body, App};
use crate::error::{ApiError, ErrorCode};
use crate::ids::RewardId;
use crate::ports::{PublishError, Store};
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

    /// `POST /v1/admin/rewards`, by `actor`: the catalog is part of the program, so a new
    /// reward is a new program version, and that version records who created it.
    pub async fn create_reward(&self, actor: &str, body: &Value) -> Result<Reward, ApiError> {
        let reward: Reward = parse_body(body)?;
        let current = match self.store().active_program().await? {
            Some(program) => program,
            None => self.publish_default_program().await?,
        };
        if current.reward(reward.reward_id.as_str()).is_some() {
            return Err(ApiError::new(
                ErrorCode::RewardExists,
                format!("reward '{}' already exists", reward.reward_id),
            )
            .with_details(json!({ "reward_id": reward.reward_id })));
        }
        let mut document = current.document.clone();
        document.rewards.push(reward.clone());
        document.validate().map_err(|e| {
            ApiError::new(ErrorCode::ValidationError, e.message).with_details(e.details)
        })?;
        self.publish(document, Some(&current), Some(actor)).await?;
        Ok(reward)
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
