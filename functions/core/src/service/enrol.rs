use super::{member_not_found, App};
use crate::commands::EnrolRequest;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{MemberId, ReferralCode};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::{Balance, Member, MemberStatus, MemberView};
use crate::ports::{Commit, CommitError, Store};

/// Fresh referral codes collide with odds of about n / 32^8; a few draws settle any collision.
const REFERRAL_CODE_DRAWS: u32 = 5;

impl<S: Store> App<S> {
    /// Enrols a member and grants the welcome bonus as the member's first ledger entry, in the
    /// same write that creates the member: there is no member without their bonus, and no
    /// second bonus, because the member can only be created once.
    pub async fn enrol(&self, request: EnrolRequest) -> Result<MemberView, ApiError> {
        request.validate()?;
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
        let member_id = request.member_id.clone().unwrap_or_else(MemberId::generate);
        let now = self.now();

        let mut attempt = 0;
        loop {
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
            };
            let bonus = program.document.welcome_bonus;
            let (member, entry) = if bonus > 0 {
                let member = fresh.with_entry(EntryType::Bonus, bonus)?;
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
            let commit = Commit {
                member: member.clone(),
                expected_version: None,
                entry,
                idempotency: None,
                claim_referral_code: true,
                stock: None,
                tier_change: None,
            };
            // A referred enrolment records its pending referral in the same transaction.
            let records = match &referred_by {
                Some(referrer) => vec![super::referrals::new_referral_record(
                    referrer,
                    &member_id,
                    &program.document.referrals,
                    now,
                )?],
                None => Vec::new(),
            };
            match self.store().transact(vec![commit], records).await {
                Ok(()) => return Ok(member.view(&program.document.tiers, now)),
                Err(CommitError::MemberExists | CommitError::RecordConflict { .. }) => {
                    return Err(ApiError::new(
                        ErrorCode::MemberExists,
                        format!("member '{member_id}' already exists"),
                    )
                    .with_details(serde_json::json!({ "member_id": member_id })))
                }
                Err(CommitError::ReferralCodeTaken) if attempt + 1 < REFERRAL_CODE_DRAWS => {
                    attempt += 1
                }
                Err(CommitError::Conflict) => self.back_off(&mut attempt).await?,
                Err(CommitError::Store(error)) => return Err(error.into()),
                Err(other) => {
                    tracing::error!(error = %other, "enrolment commit failed");
                    return Err(ApiError::internal());
                }
            }
        }
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
