//! The daily points run: walks the due index (today and the days a missed run left behind,
//! shard by shard, page by page) and, per member, releases each pending lot whose return window
//! has passed with one `release` entry, expires each lot past its date with one `expire` entry,
//! writes the warnings due today, and moves the member to its next due day.
//!
//! Exactly once however often it runs, and whoever else runs it at the same time: a release
//! entry's id is its day (`release:<yyyy-mm-dd>`) and an expire entry's its lot and date
//! (`expire:<YYYY-MM>:<expires_on>`), each written under `attribute_not_exists` with the
//! member's version condition; a warning is a record whose id is its lot, date and threshold,
//! written under `attribute_not_exists`. A lost race re-reads the member and finds the work done.
//! Events are derived from those items by the outbox: `points.released` and `points.expired`
//! from the entries, `points.expiring` from the warning.

use std::ops::ControlFlow;

use chrono::{Days, NaiveDate};
use serde::Serialize;

use super::due::DueIndex;
use super::{App, Attempt};
use crate::error::ApiError;
use crate::expiry::{warning_id, LotWarning, LOT_WARNING_KIND};
use crate::ids::MemberId;
use crate::ledger::{EntryType, LedgerEntry, PendingMove, Source};
use crate::member::Member;
use crate::ports::{Commit, CommitError, Expect, Record, RecordWrite, Store, REVIEW_SHARDS};
use crate::program::ActiveProgram;
use crate::tiers::record;

/// How many days back a run looks for members a missed run left in the index.
pub const EXPIRY_CATCH_UP_DAYS: u64 = 7;

/// What one run (or one member's share of it) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryRun {
    pub members: usize,
    pub released_lots: usize,
    pub released_points: crate::Points,
    pub expired_lots: usize,
    pub expired_points: crate::Points,
    pub warnings: usize,
}

impl ExpiryRun {
    fn add(&mut self, other: ExpiryRun) {
        self.members += other.members;
        self.released_lots += other.released_lots;
        self.released_points += other.released_points;
        self.expired_lots += other.expired_lots;
        self.expired_points += other.expired_points;
        self.warnings += other.warnings;
    }
}

/// The next thing one member needs, decided from one read.
enum Step {
    Release(Box<Commit>, crate::Points),
    Expire(Box<Commit>, crate::Points),
    Warn(Vec<RecordWrite>),
    Reschedule(Box<Commit>),
    Done,
}

impl<S: Store> App<S> {
    /// The daily run over every member due today or in the catch-up days before it.
    pub async fn run_expiry(&self) -> Result<ExpiryRun, ApiError> {
        let today = self.now().date_naive();
        let mut run = ExpiryRun::default();
        let mut failed = 0usize;
        for back in (0..=EXPIRY_CATCH_UP_DAYS).rev() {
            let day = today - Days::new(back);
            for shard in 0..REVIEW_SHARDS {
                let mut cursor = None;
                loop {
                    let (ids, next) = self
                        .due_page(&DueIndex::Expiries, day, shard, cursor)
                        .await?;
                    for id in ids {
                        // One member's failure does not hold up the others; the run still
                        // fails at the end, so the schedule retries it and the alarm sees it.
                        let outcome = match MemberId::parse(&id) {
                            Ok(member) => self.expire_member(&member).await,
                            Err(error) => Err(error),
                        };
                        match outcome {
                            Ok(done) => run.add(done),
                            Err(error) => {
                                tracing::error!(member_id = %id, code = ?error.code, "expiry failed");
                                failed += 1;
                            }
                        }
                    }
                    match next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
        }
        if failed > 0 {
            tracing::error!(failed, ?run, "expiry run incomplete");
            return Err(ApiError::internal());
        }
        Ok(run)
    }

    /// One member's expiry work for today, step by step, each step one conditional write.
    pub async fn expire_member(&self, member_id: &MemberId) -> Result<ExpiryRun, ApiError> {
        // What the steps did so far, and whether today's warnings were written: kept across
        // attempts, as a warning written before a lost race stays written.
        let progress = &tokio::sync::Mutex::new((
            ExpiryRun {
                members: 1,
                ..ExpiryRun::default()
            },
            false,
        ));
        // Each step has attempts of its own: a member with many lots past their date does not
        // run out of attempts for having many.
        loop {
            let next = self
                .retrying(|| async move {
                    let mut progress = progress.lock().await;
                    let (done, warned) = &mut *progress;
                    let Some(member) = self.store().member(member_id).await? else {
                        return Ok(Attempt::Done(ControlFlow::Break(())));
                    };
                    let program = self.program().await?;
                    let today = self.now().date_naive();
                    let step = self.expiry_step(&member, today, &program, *warned)?;
                    let outcome = match step {
                        Step::Done => return Ok(Attempt::Done(ControlFlow::Break(()))),
                        Step::Release(commit, points) => {
                            let outcome = self.store().commit(*commit).await;
                            if outcome.is_ok() {
                                done.released_lots += 1;
                                done.released_points += points;
                            }
                            outcome
                        }
                        Step::Expire(commit, points) => {
                            let outcome = self.store().commit(*commit).await;
                            if outcome.is_ok() {
                                done.expired_lots += 1;
                                done.expired_points += points;
                            }
                            outcome
                        }
                        Step::Warn(warnings) => {
                            let mut outcome = Ok(());
                            for warning in warnings {
                                match self.store().transact(Vec::new(), vec![warning]).await {
                                    Ok(()) => done.warnings += 1,
                                    // Written already, by an earlier run or a racing one.
                                    Err(CommitError::RecordConflict { .. }) => {}
                                    Err(error) => {
                                        outcome = Err(error);
                                        break;
                                    }
                                }
                            }
                            // A warning lost to a conflict is tried again on the next read.
                            *warned = outcome.is_ok();
                            outcome
                        }
                        Step::Reschedule(commit) => match self.store().commit(*commit).await {
                            Ok(()) => return Ok(Attempt::Done(ControlFlow::Break(()))),
                            Err(error) => Err(error),
                        },
                    };
                    match outcome {
                        Ok(()) => Ok(Attempt::Done(ControlFlow::Continue(()))),
                        // Another writer (a spend, a racing run) got there first: read again.
                        Err(
                            CommitError::StaleMember
                            | CommitError::Conflict
                            | CommitError::DuplicateEntry,
                        ) => Ok(Attempt::Retry),
                        Err(CommitError::Store(error)) => Err(error.into()),
                        Err(error) => {
                            tracing::error!(%error, %member_id, "expiry write refused");
                            Err(ApiError::internal())
                        }
                    }
                })
                .await?;
            if next.is_break() {
                let (done, _) = *progress.lock().await;
                return Ok(done);
            }
        }
    }

    /// What `member` needs next on `today`: release its earliest pending lot whose day has
    /// come, else expire its soonest lot past its date, else write the warnings due (once per
    /// call), else move it to its next due day, else nothing.
    fn expiry_step(
        &self,
        member: &Member,
        today: NaiveDate,
        program: &ActiveProgram,
        warned: bool,
    ) -> Result<Step, ApiError> {
        let warn_days = &program.document.expiry.warn_days;
        let program_version = program.version;
        if let Some((day, _)) = member.pending_lots.due_on(today) {
            return self.release_step(member, day, program);
        }
        let tomorrow = today + Days::new(1);
        if let Some((lot, dated)) = member.expiry.expired_on(today).into_iter().next() {
            let (next, points) = member.with_lot_expired(&lot, tomorrow, warn_days)?;
            let now = self.now();
            let source = Source::Expiry {
                lot: lot.clone(),
                expires_on: dated.expires_on,
            };
            let entry = LedgerEntry {
                entry_id: source.entry_id(),
                seq: next.last_seq,
                member_id: member.member_id.clone(),
                entry_type: EntryType::Expire,
                points: -points,
                balance_after: next.balance.available,
                reason: format!("Points earned in {lot} expired after {}", dated.expires_on),
                breakdown: Vec::new(),
                source,
                program_version,
                occurred_at: now,
                recorded_at: now,
                lots: next.lots_taken(member),
                pending: None,
            };
            return Ok(Step::Expire(
                Box::new(member_commit(member, next, Some(entry))),
                points,
            ));
        }
        if !warned {
            let warnings = member.expiry.warnings_on(today, warn_days);
            if !warnings.is_empty() {
                let now = self.now();
                let writes = warnings
                    .into_iter()
                    .map(|(lot, dated, days)| {
                        let warning = LotWarning {
                            member_id: member.member_id.clone(),
                            lot: lot.clone(),
                            points: dated.points,
                            expires_on: dated.expires_on,
                            days_before: days,
                            warned_at: now,
                            expires_at: LotWarning::kept_until(dated.expires_on),
                        };
                        Ok(RecordWrite {
                            expect: Expect::Absent,
                            record: Record {
                                kind: LOT_WARNING_KIND.to_owned(),
                                id: warning_id(
                                    member.member_id.as_str(),
                                    &lot,
                                    dated.expires_on,
                                    days,
                                ),
                                owner: Some(member.member_id.as_str().to_owned()),
                                version: 1,
                                due: None,
                                body: super::to_json(&warning)?,
                            },
                        })
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                return Ok(Step::Warn(writes));
            }
        }
        let due = member.expiry.next_due(tomorrow, warn_days);
        if due != member.expiry.due {
            let mut next = member.clone();
            next.expiry.due = due;
            next.version += 1;
            return Ok(Step::Reschedule(Box::new(member_commit(
                member, next, None,
            ))));
        }
        Ok(Step::Done)
    }
}

impl<S: Store> App<S> {
    /// Releases `member`'s pending lot of `day` into `available`. Activity that counts towards
    /// tiers on release is recorded today, and may upgrade the member as an accrual would.
    fn release_step(
        &self,
        member: &Member,
        day: NaiveDate,
        program: &ActiveProgram,
    ) -> Result<Step, ApiError> {
        let now = self.now();
        let today = now.date_naive();
        let (mut next, lot) = member.with_released(day, &program.document.expiry.dating(now))?;
        let mut tier_change = None;
        if lot.qualifying != 0 {
            // On the lot's own day, even when a missed run releases it later: a return after
            // the release takes the activity back from that day.
            record(&mut next.qualifying, day, lot.qualifying, today)?;
            tier_change = next.upgrade_in_write(
                &program.document.tiers,
                (&member.tier, &member.tier_state),
                now,
            );
        }
        let source = Source::Release { release_on: day };
        let entry = LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: member.member_id.clone(),
            entry_type: EntryType::Release,
            points: 0,
            balance_after: next.balance.available,
            reason: format!("Pending points released after their return window ({day})"),
            breakdown: Vec::new(),
            source,
            program_version: program.version,
            occurred_at: now,
            recorded_at: now,
            lots: Vec::new(),
            pending: Some(PendingMove {
                points: -lot.points,
                release_on: day,
            }),
        };
        let mut commit = member_commit(member, next, Some(entry));
        commit.tier_change = tier_change;
        Ok(Step::Release(Box::new(commit), lot.points))
    }
}

fn member_commit(before: &Member, after: Member, entry: Option<LedgerEntry>) -> Commit {
    Commit {
        expected_version: Some(before.version),
        member: after,
        entry,
        idempotency: None,
        claim_referral_code: false,
        stock: None,
        tier_change: None,
    }
}
