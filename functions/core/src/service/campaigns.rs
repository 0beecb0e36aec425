//! Campaign services: create (and hand off to the dispatcher), read, cancel, dispatch one
//! audience page, and grant one message's members.

use serde_json::{json, Value};

use super::admin_keys::{self, KeyedResponse};
use super::{member_not_found, missing_key, parse_body, App, Attempt, Outcome};
use crate::campaigns::{
    Audience, AudienceQuery, Campaign, CampaignRequest, CampaignStatus, DispatchMessage,
    GrantMessage, GRANTS_PER_WRITE, MEMBERS_PER_GRANT, MEMBERS_PER_PAGE, OUTCOME_KIND, RECORD_KIND,
    RECORD_OWNER,
};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{derived_id, fingerprint, Operation};
use crate::ids::{IdempotencyKey, MemberId};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::ports::{Commit, CommitError, Expect, MessageQueue, Record, RecordWrite, Store};

/// What became of one member of a grant message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Granted,
    AlreadyCounted,
    Skipped,
}

/// The record of one audience page as its step first read it (see `App::audience_page`).
const PAGE_KIND: &str = "campaign_page";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AudiencePage {
    members: Vec<String>,
    next: Option<String>,
}

impl AudiencePage {
    fn into_parts(self) -> (Vec<String>, Option<String>) {
        (self.members, self.next)
    }
}

fn to_record(campaign: &Campaign, version: u64) -> Result<Record, ApiError> {
    Ok(Record {
        kind: RECORD_KIND.into(),
        id: campaign.campaign_id.clone(),
        owner: Some(RECORD_OWNER.into()),
        version,
        due: None,
        body: serde_json::to_value(campaign).map_err(|_| ApiError::internal())?,
    })
}

fn outcome_marker(campaign_id: &str, member: &str, outcome: &str) -> RecordWrite {
    RecordWrite {
        record: Record {
            kind: OUTCOME_KIND.into(),
            id: format!("{campaign_id}:{member}"),
            owner: None,
            version: 1,
            due: None,
            body: json!({ "outcome": outcome }),
        },
        expect: Expect::Absent,
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::CampaignNotFound, format!("no campaign '{id}'"))
        .with_details(json!({ "campaign_id": id }))
}

fn store_error(error: CommitError) -> ApiError {
    match error {
        CommitError::Store(e) => e.into(),
        other => {
            tracing::error!(error = %other, "campaign write failed");
            ApiError::internal()
        }
    }
}

impl<S: Store> App<S> {
    async fn campaign(&self, id: &str) -> Result<(Campaign, u64), ApiError> {
        let record = self
            .store()
            .record(RECORD_KIND, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok((record.parse()?, record.version))
    }

    /// Reads, changes and writes the campaign record under its version, retrying on races.
    async fn update_campaign<T>(
        &self,
        id: &str,
        change: impl FnMut(&mut Campaign) -> Option<T> + Send,
    ) -> Result<Option<T>, ApiError> {
        // Each attempt's future borrows the change; the lock is never held across an await.
        let change = &std::sync::Mutex::new(change);
        self.retrying(|| async move {
            let (mut campaign, version) = self.campaign(id).await?;
            let changed = (change
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner))(
                &mut campaign
            );
            let Some(result) = changed else {
                return Ok(Attempt::Done(None));
            };
            let write = RecordWrite {
                record: to_record(&campaign, version + 1)?,
                expect: Expect::Version(version),
            };
            match self.store().transact(Vec::new(), vec![write]).await {
                Ok(()) => Ok(Attempt::Done(Some(result))),
                Err(CommitError::RecordConflict { .. } | CommitError::Conflict) => {
                    Ok(Attempt::Retry)
                }
                Err(other) => Err(store_error(other)),
            }
        })
        .await
    }

    /// `POST /v1/admin/campaigns` by `actor` (the admin token's `sub`): records the campaign and
    /// queues its first dispatch step.
    ///
    /// The `Idempotency-Key` is required, and the campaign's id is derived from it: a retry can
    /// only ever name the campaign the first attempt created, and answers that attempt's response.
    /// The first dispatch step is sent after the campaign is stored; if that send fails the call
    /// fails, and its retry (same key) finds the campaign not yet dispatched and sends the step
    /// again — a step sent twice is harmless, as dispatching a page already counted does nothing.
    pub async fn create_campaign(
        &self,
        actor: &str,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let key = key.ok_or_else(|| missing_key("creating a campaign needs"))?;
        let fingerprint = fingerprint(Operation::Campaign, body);
        if let Some(done) = self.keyed_response(Operation::Campaign, &key).await? {
            return self.replay_campaign(&done, &fingerprint).await;
        }
        let request: CampaignRequest = parse_body(body)?;
        let id = derived_id("cmp_", Operation::Campaign, &key);
        let now = self.now();
        let campaign = Campaign {
            created_by: Some(actor.to_owned()),
            ..request.into_campaign(id.clone(), now)?
        };
        if let Audience::Tier(tier) = &campaign.audience {
            let program = self.program().await?;
            if program.document.tiers.rank(tier).is_none() {
                return Err(ApiError::invalid(
                    "audience",
                    format!("no tier '{tier}' in the program"),
                ));
            }
        }
        let response = json!({
            "campaign_id": campaign.campaign_id,
            "status": campaign.status,
            "created_by": campaign.created_by,
        });
        let first = KeyedResponse {
            operation: Operation::Campaign,
            fingerprint: fingerprint.clone(),
            status: 202,
            response: response.clone(),
            created_at: now,
        };
        let writes = vec![
            RecordWrite {
                record: to_record(&campaign, 1)?,
                expect: Expect::Absent,
            },
            admin_keys::claim(Operation::Campaign, &key, first)?,
        ];
        match self.store().transact(Vec::new(), writes).await {
            Ok(()) => {}
            // The same key won a race with this request: answer what it created.
            Err(CommitError::RecordConflict { .. }) => {
                let done = self
                    .keyed_response(Operation::Campaign, &key)
                    .await?
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::ConcurrentModification,
                            "the campaign is being created by another request; retry",
                        )
                    })?;
                return self.replay_campaign(&done, &fingerprint).await;
            }
            Err(other) => return Err(store_error(other)),
        }
        // The first dispatch step comes from the stored campaign (the stream consumer).
        Ok(Outcome::Created(response))
    }

    /// Answers a retried create with its first response. Its first dispatch step needs no
    /// re-send: the stream consumer sends it from the stored campaign, however the reply went.
    async fn replay_campaign(
        &self,
        done: &KeyedResponse,
        fingerprint: &str,
    ) -> Result<Outcome, ApiError> {
        Ok(Outcome::Replayed(done.replay(fingerprint)?))
    }

    pub async fn get_campaign(&self, id: &str) -> Result<Campaign, ApiError> {
        Ok(self.campaign(id).await?.0)
    }

    /// Stops further grants, recording `actor` as who canceled; members not yet granted are
    /// counted as skipped.
    pub async fn cancel_campaign(&self, actor: &str, id: &str) -> Result<Campaign, ApiError> {
        self.update_campaign(id, |c| {
            (c.status != CampaignStatus::Canceled).then(|| {
                c.status = CampaignStatus::Canceled;
                c.canceled_by = Some(actor.to_owned());
            })
        })
        .await?;
        self.get_campaign(id).await
    }

    /// One dispatcher step: reads audience page `message.page`, sends its members to the grant
    /// queue in batches, records the page as dispatched and hands the rest to the next message.
    /// A redelivered step finds its page already counted and does nothing.
    pub async fn dispatch_campaign(
        &self,
        message: &DispatchMessage,
        dispatch: &dyn MessageQueue,
        grants: &dyn MessageQueue,
    ) -> Result<usize, ApiError> {
        let (campaign, _) = self.campaign(&message.campaign_id).await?;
        if campaign.pages_dispatched > message.page || campaign.status == CampaignStatus::Canceled {
            return Ok(0);
        }
        let (members, next): (Vec<String>, Option<String>) = match &campaign.audience {
            Audience::MemberIds(ids) => {
                let start = usize::try_from(message.page)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(MEMBERS_PER_PAGE);
                let page: Vec<String> = ids
                    .iter()
                    .skip(start)
                    .take(MEMBERS_PER_PAGE)
                    .map(|m| m.to_string())
                    .collect();
                let more = start + page.len() < ids.len();
                (page, more.then(String::new))
            }
            Audience::Tier(tier) => {
                self.audience_page(&campaign, AudienceQuery::Tier(tier.clone()), message)
                    .await?
            }
            Audience::EnrolledBetween([from, to]) => {
                self.audience_page(
                    &campaign,
                    AudienceQuery::EnrolledBetween(*from, *to),
                    message,
                )
                .await?
            }
        };
        let bodies = members
            .chunks(MEMBERS_PER_GRANT)
            .map(|chunk| {
                serde_json::to_string(&GrantMessage {
                    campaign_id: campaign.campaign_id.clone(),
                    member_ids: chunk.to_vec(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ApiError::internal())?;
        if !bodies.is_empty() {
            grants.send(bodies).await?;
        }
        // The next step is queued before this one is recorded: a crash in between repeats this
        // page (its grants are idempotent, its count is not yet taken) rather than losing the rest.
        if let Some(cursor) = &next {
            let step = DispatchMessage {
                campaign_id: campaign.campaign_id.clone(),
                page: message.page.saturating_add(1),
                cursor: Some(cursor.clone()).filter(|c| !c.is_empty()),
            };
            dispatch
                .send(vec![
                    serde_json::to_string(&step).map_err(|_| ApiError::internal())?
                ])
                .await?;
        }
        let page = message.page;
        let count = members.len() as u64;
        let mut overflowed = None;
        self.update_campaign(&campaign.campaign_id, |c| {
            if c.pages_dispatched != page {
                return None;
            }
            if let Err(error) = c.counters.add_targeted(count) {
                overflowed = Some(error);
                return None;
            }
            c.pages_dispatched = page.saturating_add(1);
            if next.is_none() && c.status == CampaignStatus::Dispatching {
                c.status = CampaignStatus::Dispatched;
            }
            Some(())
        })
        .await?;
        if let Some(error) = overflowed {
            return Err(error);
        }
        Ok(members.len())
    }

    /// The members of one audience page, read once: the first delivery of a step records what
    /// it read, and every other delivery of that step (a duplicate running alongside it, or a
    /// retry) works from the same list. An audience changes while it is walked (members enrol,
    /// move tiers); without this, two deliveries could grant different members while only one
    /// of them is counted as targeted (simulator seed 88).
    async fn audience_page(
        &self,
        campaign: &Campaign,
        query: AudienceQuery,
        message: &DispatchMessage,
    ) -> Result<(Vec<String>, Option<String>), ApiError> {
        let id = format!("{}:{}", campaign.campaign_id, message.page);
        if let Some(recorded) = self.store().record(PAGE_KIND, &id).await? {
            return Ok(recorded.parse::<AudiencePage>()?.into_parts());
        }
        let (ids, next) = self
            .store()
            .audience_page(&query, message.cursor.clone(), MEMBERS_PER_PAGE)
            .await?;
        let page = AudiencePage {
            members: ids.into_iter().map(|m| m.to_string()).collect(),
            next,
        };
        let write = RecordWrite {
            record: Record {
                kind: PAGE_KIND.into(),
                id: id.clone(),
                owner: None,
                version: 1,
                due: None,
                body: serde_json::to_value(&page).map_err(|_| ApiError::internal())?,
            },
            expect: Expect::Absent,
        };
        match self.store().transact(Vec::new(), vec![write]).await {
            Ok(()) => Ok(page.into_parts()),
            // Another delivery of this step recorded its read first: use that one.
            Err(CommitError::RecordConflict { .. }) => {
                let recorded = self
                    .store()
                    .record(PAGE_KIND, &id)
                    .await?
                    .ok_or_else(ApiError::internal)?;
                Ok(recorded.parse::<AudiencePage>()?.into_parts())
            }
            Err(CommitError::Store(error)) => Err(error.into()),
            Err(other) => {
                tracing::error!(error = %other, "audience page record failed");
                Err(ApiError::internal())
            }
        }
    }

    /// Grants the members of one grant message. `last_attempt` is true on the delivery after
    /// which SQS gives the message to the dead-letter queue: members that still fail then are
    /// counted as failed, once.
    pub async fn grant_campaign(
        &self,
        message: &GrantMessage,
        last_attempt: bool,
    ) -> Result<(), ApiError> {
        let parsed: Vec<Option<MemberId>> = message
            .member_ids
            .iter()
            .map(|raw| MemberId::parse(raw).ok())
            .collect();
        let valid: Vec<MemberId> = parsed.iter().flatten().cloned().collect();
        let mut done = std::collections::HashSet::new();
        for chunk in valid.chunks(GRANTS_PER_WRITE) {
            if self.grant_chunk(&message.campaign_id, chunk).await? {
                done.extend(chunk.iter().map(|m| m.as_str().to_owned()));
            }
        }
        let mut first_error = None;
        for raw in message
            .member_ids
            .iter()
            .filter(|raw| !done.contains(raw.as_str()))
        {
            let result = match MemberId::parse(raw) {
                Ok(member) => self
                    .grant_one(&message.campaign_id, &member)
                    .await
                    .map(|_| ()),
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                if last_attempt {
                    self.count_outcome(&message.campaign_id, raw, "failed")
                        .await?;
                }
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Grants a whole chunk of members in one transaction, with one update of the campaign's
    /// counters. Returns false, writing nothing, when the chunk needs member-by-member handling:
    /// a member already granted (a redelivery), missing, or the budget running out inside it.
    async fn grant_chunk(&self, campaign_id: &str, members: &[MemberId]) -> Result<bool, ApiError> {
        // A member listed twice cannot be written twice in one transaction (nor batch-read).
        let distinct: std::collections::HashSet<&MemberId> = members.iter().collect();
        if distinct.len() != members.len() {
            return Ok(false);
        }
        self.retrying(|| async move {
            let (campaign, version) = self.campaign(campaign_id).await?;
            let (cost, fits) = campaign.cost_of(members.len())?;
            if campaign.status == CampaignStatus::Canceled || !fits {
                return Ok(Attempt::Done(false));
            }
            let program = self.program().await?;
            let now = self.now();
            // One read for the whole chunk (a `BatchGetItem` on DynamoDB), not one per member.
            let found = self.store().members(members).await?;
            if found.len() != members.len() {
                return Ok(Attempt::Done(false));
            }
            let mut commits = Vec::with_capacity(members.len());
            for member in found {
                commits.push(self.campaign_commit(&campaign, member, &program, now)?);
            }
            let mut counted = campaign.clone();
            counted.counters.add_grants(members.len() as u64, cost)?;
            let mut writes = vec![RecordWrite {
                record: to_record(&counted, version + 1)?,
                expect: Expect::Version(version),
            }];
            writes.extend(
                members
                    .iter()
                    .map(|m| outcome_marker(campaign_id, m.as_str(), "granted")),
            );
            match self.store().transact(commits, writes).await {
                Ok(()) => Ok(Attempt::Done(true)),
                // A member of the chunk already has an outcome (a redelivery).
                Err(CommitError::DuplicateEntry) => Ok(Attempt::Done(false)),
                Err(CommitError::RecordConflict { kind, .. }) if kind == OUTCOME_KIND => {
                    Ok(Attempt::Done(false))
                }
                Err(
                    CommitError::StaleMember
                    | CommitError::Conflict
                    | CommitError::RecordConflict { .. },
                ) => Ok(Attempt::Retry),
                Err(other) => Err(store_error(other)),
            }
        })
        .await
    }

    fn campaign_commit(
        &self,
        campaign: &Campaign,
        member: crate::member::Member,
        program: &crate::program::ActiveProgram,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Commit, ApiError> {
        let program_version = program.version;
        let next = member.with_entry(
            EntryType::Bonus,
            campaign.points,
            &program.document.expiry.campaign_dating(now),
        )?;
        let source = Source::Campaign {
            campaign_id: campaign.campaign_id.clone(),
        };
        let entry = LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: member.member_id.clone(),
            entry_type: EntryType::Bonus,
            points: campaign.points,
            balance_after: next.balance.available,
            reason: campaign.reason.clone(),
            breakdown: vec![BreakdownLine {
                rule: format!("campaign:{}", campaign.campaign_id),
                description: campaign.name.clone(),
                points: campaign.points,
            }],
            source,
            program_version,
            occurred_at: now,
            recorded_at: now,
            lots: Vec::new(),
            pending: None,
        };
        Ok(Commit {
            member: next,
            expected_version: Some(member.version),
            entry: Some(entry),
            idempotency: None,
            claim_referral_code: false,
            stock: None,
            tier_change: None,
        })
    }

    async fn grant_one(&self, campaign_id: &str, member_id: &MemberId) -> Result<Grant, ApiError> {
        self.retrying(|| async move {
            let (campaign, version) = self.campaign(campaign_id).await?;
            let (cost, fits) = campaign.cost_of(1)?;
            if campaign.status == CampaignStatus::Canceled || !fits {
                return self
                    .count_outcome(campaign_id, member_id.as_str(), "skipped")
                    .await
                    .map(Attempt::Done);
            }
            let Some(member) = self.store().member(member_id).await? else {
                return Err(member_not_found(member_id));
            };
            let commit =
                self.campaign_commit(&campaign, member, &*self.program().await?, self.now())?;
            let mut counted = campaign.clone();
            counted.counters.add_grants(1, cost)?;
            let writes = vec![
                RecordWrite {
                    record: to_record(&counted, version + 1)?,
                    expect: Expect::Version(version),
                },
                outcome_marker(campaign_id, member_id.as_str(), "granted"),
            ];
            match self.store().transact(vec![commit], writes).await {
                Ok(()) => Ok(Attempt::Done(Grant::Granted)),
                // Granted (or counted as skipped or failed) by an earlier delivery, and counted
                // in that same write.
                Err(CommitError::DuplicateEntry) => Ok(Attempt::Done(Grant::AlreadyCounted)),
                Err(CommitError::RecordConflict { kind, .. }) if kind == OUTCOME_KIND => {
                    Ok(Attempt::Done(Grant::AlreadyCounted))
                }
                Err(
                    CommitError::StaleMember
                    | CommitError::Conflict
                    | CommitError::RecordConflict { .. },
                ) => Ok(Attempt::Retry),
                Err(other) => Err(store_error(other)),
            }
        })
        .await
    }

    /// Counts `member` as skipped or failed, once: the marker record makes a repeat a no-op.
    async fn count_outcome(
        &self,
        campaign_id: &str,
        member: &str,
        outcome: &str,
    ) -> Result<Grant, ApiError> {
        self.retrying(|| async move {
            let (mut campaign, version) = self.campaign(campaign_id).await?;
            match outcome {
                "failed" => campaign.counters.add_failed()?,
                _ => campaign.counters.add_skipped()?,
            }
            let writes = vec![
                outcome_marker(campaign_id, member, outcome),
                RecordWrite {
                    record: to_record(&campaign, version + 1)?,
                    expect: Expect::Version(version),
                },
            ];
            match self.store().transact(Vec::new(), writes).await {
                Ok(()) => Ok(Attempt::Done(Grant::Skipped)),
                Err(CommitError::RecordConflict { kind, .. }) if kind == OUTCOME_KIND => {
                    Ok(Attempt::Done(Grant::AlreadyCounted))
                }
                Err(CommitError::RecordConflict { .. } | CommitError::Conflict) => {
                    Ok(Attempt::Retry)
                }
                Err(other) => Err(store_error(other)),
            }
        })
        .await
    }
}
