use super::{member_not_found, to_json, App, Attempt, Outcome};
use crate::commands::EnrolRequest;
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{derived_id, fingerprint, IdempotencyRecord, IdempotencyScope, Operation};
use crate::ids::IdempotencyKey;
use crate::ids::{MemberId, ReferralCode};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::{Balance, Member, MemberStatus, MemberView};
use crate::ports::{Commit, CommitError, Store};

/// What an enrolment answered: a new member, or the first response to its key.
enum Enrolled {
    New(Box<MemberView>),
    Replayed(serde_json::Value),
}

/// Fresh referral codes collide with odds of about n / 32^8; a few draws settle any collision.
const REFERRAL_CODE_DRAWS: u32 = 5;

impl<S: Store> App<S> {
    /// Enrols a member and grants the welcome bonus as the member's first ledger entry, in the
    /// same write that creates the member: there is no member without their bonus, and no
    /// second bonus, because the member can only be created once.
    pub async fn enrol(&self, request: EnrolRequest) -> Result<MemberView, ApiError> {
        match self.enrol_keyed(request, None).await? {
            Enrolled::New(view) => Ok(*view),
            // Only a keyed enrolment can replay.
            Enrolled::Replayed(_) => Err(ApiError::internal()),
        }
    }

    /// `POST /v1/members` with an optional `Idempotency-Key`. The member id is the business key:
    /// a member is created once. A key makes a retried enrolment replay its first response
    /// instead of answering `member_exists` — and, for an enrolment without a `member_id`, it
    /// names the member (the id is derived from the key), so a retry cannot create a second one.
    pub async fn enrol_with_key(
        &self,
        request: EnrolRequest,
        key: Option<IdempotencyKey>,
    ) -> Result<Outcome, ApiError> {
        match self.enrol_keyed(request, key).await? {
            Enrolled::New(view) => Ok(Outcome::Created(to_json(&*view)?)),
            Enrolled::Replayed(response) => Ok(Outcome::Replayed(response)),
        }
    }

    async fn enrol_keyed(
        &self,
        request: EnrolRequest,
        key: Option<IdempotencyKey>,
    ) -> Result<Enrolled, ApiError> {
        request.validate()?;
        let fingerprint = fingerprint(Operation::Enrolment, &to_json(&request)?);
        let scope = key.map(|key| IdempotencyScope {
            operation: Operation::Enrolment,
            key,
        });
        let member_id = match (&request.member_id, &scope) {
            (Some(id), _) => id.clone(),
            (None, Some(scope)) => {
                MemberId::parse(&derived_id("mem_", Operation::Enrolment, &scope.key))?
            }
            (None, None) => MemberId::generate(),
        };
        if let Some(scope) = &scope {
            if let Some(record) = self.store().idempotency_record(&member_id, scope).await? {
                return Ok(Enrolled::Replayed(record.replay(&fingerprint)?));
            }
        }
        let program = self.program().await?;
        let referred_by = match &request.referral_code {
            Some(code) => Some(
                self.store()
                    .member_by_referral_code(code)
                    .await?
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::ReferralCodeNotFound,
                            format!("no member has referral code '{}'", code.as_str()),
                        )
                    })?,
            ),
            None => None,
        };
        let now = self.now();

        let (member_id, request, program, referred_by, scope, fingerprint) = (
            &member_id,
            &request,
            &program,
            &referred_by,
            &scope,
            &fingerprint,
        );
        // A drawn referral code may be taken; a few fresh draws, then it is a fault.
        let draws = &std::sync::atomic::AtomicU32::new(0);
        self.retrying(|| async move {
            let fresh = Member {
                member_id: member_id.clone(),
                status: MemberStatus::Active,
                tier: program.document.tiers.base().tier_id.clone(),
                email: request.email.clone(),
                name: request.name.clone(),
                referral_code: ReferralCode::generate(),
                referred_by: referred_by.clone(),
                enrolled_at: now,
                balance: Balance::default(),
                version: 0,
                last_seq: 0,
                action_counts: Default::default(),
                reward_counts: Default::default(),
                promotion_uses: Default::default(),
                tier_state: Default::default(),
                qualifying: Default::default(),
                plan: None,
                referral_purchase: None,
                referral_counts: Default::default(),
                expiry: Default::default(),
                pending_lots: Default::default(),
            };
            let bonus = program.document.welcome_bonus;
            let (member, entry) = if bonus > 0 {
                let member = fresh.with_entry(
                    EntryType::Bonus,
                    bonus,
                    &program.document.expiry.dating(now),
                )?;
                let source = Source::Enrolment;
                let entry = LedgerEntry {
                    entry_id: source.entry_id(),
                    seq: member.last_seq,
                    member_id: member_id.clone(),
                    entry_type: EntryType::Bonus,
                    points: bonus,
                    balance_after: member.balance.available,
                    reason: "Welcome bonus".into(),
                    breakdown: vec![BreakdownLine {
                        rule: "welcome_bonus".into(),
                        description: format!("Welcome to {}", program.document.name),
                        points: bonus,
                    }],
                    source,
                    program_version: program.version,
                    occurred_at: now,
                    recorded_at: now,
                    lots: Vec::new(),
                    pending: None,
                };
                (member, Some(entry))
            } else {
                (
                    Member {
                        version: 1,
                        ..fresh
                    },
                    None,
                )
            };
            let view = member.view(&program.document.tiers, now);
            let idempotency = match scope {
                Some(scope) => Some(IdempotencyRecord {
                    operation: Operation::Enrolment,
                    key: scope.key.as_str().to_owned(),
                    fingerprint: fingerprint.clone(),
                    status: 201,
                    response: to_json(&view)?,
                    entry_id: Source::Enrolment.entry_id(),
                    created_at: now,
                }),
                None => None,
            };
            let commit = Commit {
                member: member.clone(),
                expected_version: None,
                entry,
                idempotency,
                claim_referral_code: true,
                stock: None,
                tier_change: None,
            };
            // A referred enrolment records its pending referral in the same transaction.
            let records = match referred_by {
                Some(referrer) => vec![super::referrals::new_referral_record(
                    referrer,
                    member_id,
                    &program.document.referrals,
                    now,
                )?],
                None => Vec::new(),
            };
            match self.store().transact(vec![commit], records).await {
                Ok(()) => Ok(Attempt::Done(Enrolled::New(Box::new(view)))),
                Err(
                    CommitError::IdempotencyKeyTaken
                    | CommitError::MemberExists
                    | CommitError::RecordConflict { .. },
                ) => {
                    // The key's first request may have created this member: answer it.
                    if let Some(scope) = scope {
                        if let Some(record) =
                            self.store().idempotency_record(member_id, scope).await?
                        {
                            let replayed = Enrolled::Replayed(record.replay(fingerprint)?);
                            return Ok(Attempt::Done(replayed));
                        }
                    }
                    Err(ApiError::new(
                        ErrorCode::MemberExists,
                        format!("member '{member_id}' already exists"),
                    )
                    .with_details(serde_json::json!({ "member_id": member_id })))
                }
                Err(CommitError::ReferralCodeTaken)
                    if draws.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
                        < REFERRAL_CODE_DRAWS =>
                {
                    Ok(Attempt::Retry)
                }
                Err(CommitError::Conflict) => Ok(Attempt::Retry),
                Err(CommitError::Store(error)) => Err(error.into()),
                Err(other) => {
                    tracing::error!(error = %other, "enrolment commit failed");
                    Err(ApiError::internal())
                }
            }
        })
        .await
    }

    pub async fn member_view(&self, id: &MemberId) -> Result<MemberView, ApiError> {
        let member = self
            .store()
            .member(id)
            .await?
            .ok_or_else(|| member_not_found(id))?;
        let program = self.program().await?;
        Ok(member.view(&program.document.tiers, self.now()))
    }
}
