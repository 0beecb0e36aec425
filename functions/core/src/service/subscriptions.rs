//! Paid membership use cases: starting a subscription (taking the first payment), showing it,
//! cancelling at the end of the paid period, changing plan for the next period, and the daily
//! billing run with its dunning retries.
//!
//! At most one charge per period: the period's charge record is written with a pending attempt
//! before the provider is called, the provider call carries a key derived from that attempt, and
//! an attempt found pending (a crash, a timeout) is looked up at the provider by its metadata
//! before anything is charged again.

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::due::DueIndex;
use super::{member_not_found, missing_key, parse_body, to_json, App, Outcome};
use crate::error::{ApiError, ErrorCode};
use crate::events::DomainEvent;
use crate::idempotency::{fingerprint, IdempotencyRecord, IdempotencyScope, Operation};
use crate::ids::{IdempotencyKey, MemberId};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::Member;
use crate::ports::{Commit, CommitError, Expect, MessageQueue, Record, RecordWrite, Store};
use crate::program::ActiveProgram;
use crate::subscriptions::payments::{ChargeRequest, Payment, PaymentOutcome};
use crate::subscriptions::{
    attempt_key, next_retry, period_bounds, start_of, AttemptStatus, Charge, ChargeAttempt,
    Dunning, MemberPlan, Plan, Subscription, SubscriptionStatus, CHARGE_KIND, FLOOR_GRACE_DAYS,
    SUBSCRIPTION_KIND,
};
use crate::tiers::{evaluate, TierChange, TierFloor};

/// Days of billing dates the daily run looks back over, so a missed day is caught up.
pub const BILLING_CATCH_UP_DAYS: u64 = 7;
/// Subscriptions per fan-out message: each may call the payment provider, so keep it small.
pub const SUBSCRIPTIONS_PER_MESSAGE: usize = 25;
/// A pending attempt younger than this belongs to a run still in flight; older, it is resolved
/// by a look-up at the provider. Longer than the billing function's timeout.
pub const PENDING_LEASE: Duration = Duration::minutes(5);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    plan_id: String,
    payment_method: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    pub plan_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodView {
    pub period: u32,
    pub start: NaiveDate,
    /// The first day after the period.
    pub end: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriptionView {
    pub subscription_id: String,
    pub member_id: MemberId,
    pub plan_id: String,
    pub status: SubscriptionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_period: Option<PeriodView>,
    pub next_billing_date: Option<NaiveDate>,
    pub cancel_at_period_end: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_plan_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dunning: Option<Dunning>,
}

impl SubscriptionView {
    pub fn of(sub: &Subscription) -> Self {
        let current_period = (sub.period > 0).then(|| {
            let (start, end) = sub.current_period();
            PeriodView {
                period: sub.period,
                start,
                end,
            }
        });
        let next_billing_date = match sub.status {
            SubscriptionStatus::Active if !sub.cancel_at_period_end => sub.due(),
            SubscriptionStatus::PastDue => sub.due(),
            _ => None,
        };
        Self {
            subscription_id: sub.subscription_id.clone(),
            member_id: sub.member_id.clone(),
            plan_id: sub.plan_id.clone(),
            status: sub.status,
            current_period,
            next_billing_date,
            cancel_at_period_end: sub.cancel_at_period_end,
            next_plan_id: sub.next_plan_id.clone(),
            dunning: sub.dunning.clone(),
        }
    }
}

/// One fan-out message of the daily billing run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingBatch {
    pub day: NaiveDate,
    pub subscriptions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BillingPlan {
    pub subscriptions: usize,
    pub messages: usize,
}

/// What billing one subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingResult {
    NotDue,
    Renewed,
    Recovered,
    PastDue,
    Lapsed,
    Canceled,
    Skipped,
}

/// The outcome of collecting one attempt, with the charge record as it should be stored.
struct Collected {
    charge: Charge,
    /// Version of the stored charge record, to write the resolved one over.
    charge_version: u64,
    outcome: PaymentOutcome,
}

fn subscription_id(member: &MemberId, key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(format!("{member}\n{}", key.as_str()).as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("sub_{hex}")
}

fn retryable(error: &CommitError) -> bool {
    matches!(
        error,
        CommitError::StaleMember
            | CommitError::Conflict
            | CommitError::RecordConflict { .. }
            | CommitError::IdempotencyKeyTaken
    )
}

/// A charge record that changed under us is a race the caller may retry; anything else is a
/// store failure.
fn charge_write_failed(error: CommitError) -> ApiError {
    if retryable(&error) {
        ApiError::new(
            ErrorCode::ConcurrentModification,
            "the charge changed; retry",
        )
    } else {
        commit_failed(error)
    }
}

fn commit_failed(error: CommitError) -> ApiError {
    match error {
        CommitError::Store(error) => error.into(),
        other => {
            tracing::error!(error = %other, "subscription commit failed");
            ApiError::internal()
        }
    }
}

fn record_of<T: Serialize>(
    kind: &str,
    id: &str,
    owner: Option<String>,
    version: u64,
    due: Option<NaiveDate>,
    body: &T,
) -> Result<Record, ApiError> {
    Ok(Record {
        kind: kind.to_owned(),
        id: id.to_owned(),
        owner,
        version,
        due,
        body: to_json(body)?,
    })
}

fn subscription_write(sub: &Subscription, previous: Option<u64>) -> Result<RecordWrite, ApiError> {
    let version = previous.map_or(1, |v| v + 1);
    Ok(RecordWrite {
        record: record_of(
            SUBSCRIPTION_KIND,
            sub.member_id.as_str(),
            Some(sub.member_id.as_str().to_owned()),
            version,
            sub.due(),
            sub,
        )?,
        expect: previous.map_or(Expect::Absent, Expect::Version),
    })
}

fn charge_write(charge: &Charge, previous: Option<u64>) -> Result<RecordWrite, ApiError> {
    let version = previous.map_or(1, |v| v + 1);
    Ok(RecordWrite {
        record: record_of(
            CHARGE_KIND,
            &charge.charge_id,
            Some(charge.subscription_id.clone()),
            version,
            None,
            charge,
        )?,
        expect: previous.map_or(Expect::Absent, Expect::Version),
    })
}

fn plan_not_found(program: &ActiveProgram, plan_id: &str) -> ApiError {
    let plans: Vec<&str> = program
        .document
        .plans
        .iter()
        .map(|p| p.plan_id.as_str())
        .collect();
    ApiError::invalid("plan_id", format!("the program has no plan '{plan_id}'"))
        .with_details(json!({ "field": "plan_id", "plans": plans }))
}

fn declined(code: &str) -> ApiError {
    ApiError::new(ErrorCode::PaymentDeclined, "the payment was declined")
        .with_details(json!({ "decline_code": code }))
}

fn event(
    sub: &Subscription,
    kind: &'static str,
    suffix: &str,
    now: DateTime<Utc>,
    data: Value,
) -> DomainEvent {
    DomainEvent {
        event_id: format!("{}:{kind}:{suffix}", sub.subscription_id),
        event_type: kind,
        member_id: Some(sub.member_id.clone()),
        occurred_at: now,
        data,
    }
}

/// The member after a paid period: the monthly bonus (once per period, by entry id), the plan and
/// its tier floor until the period ends (plus a grace for dunning).
fn with_paid_period(
    member: &Member,
    program: &ActiveProgram,
    sub: &Subscription,
    plan: &Plan,
    period: u32,
    now: DateTime<Utc>,
) -> Result<(Member, Option<LedgerEntry>, Option<TierChange>), ApiError> {
    let bonus = plan.monthly_bonus_points;
    let (mut next, entry) = if bonus > 0 {
        let next = member.with_entry(EntryType::Bonus, bonus)?;
        let source = Source::Subscription {
            subscription_id: sub.subscription_id.clone(),
            period,
        };
        let entry = LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: member.member_id.clone(),
            entry_type: EntryType::Bonus,
            points: bonus,
            balance_after: next.balance.available,
            reason: format!("{} monthly bonus", plan.name),
            breakdown: vec![BreakdownLine {
                rule: format!("plan_bonus:{}", plan.plan_id),
                description: format!("{} monthly bonus, period {period}", plan.name),
                points: bonus,
            }],
            source,
            program_version: program.version,
            occurred_at: now,
            recorded_at: now,
        };
        (next, Some(entry))
    } else {
        let mut next = member.clone();
        next.version += 1;
        (next, None)
    };
    let (_, end) = period_bounds(sub.anchor, period);
    let until = start_of(end + Days::new(FLOOR_GRACE_DAYS));
    next.plan = Some(MemberPlan {
        subscription_id: sub.subscription_id.clone(),
        plan_id: plan.plan_id.clone(),
        until,
    });
    next.tier_state.plan_floor = plan.tier_floor.as_ref().map(|tier| TierFloor {
        tier: tier.clone(),
        until,
        reason: format!("plan: {}", plan.name),
        granted_by: None,
    });
    let tiers = &program.document.tiers;
    let decision = evaluate(
        tiers,
        &member.tier,
        &next.tier_state,
        &next.qualifying,
        member.enrolled_at.date_naive(),
        now,
        false,
    );
    next.tier = decision.tier;
    next.tier_state = decision.state;
    Ok((next, entry, decision.change))
}

/// The member after their plan's benefits end: no plan, no plan floor, and a tier review today
/// so that evaluation applies grace and downgrades. `None` if the member holds no benefits of `sub`.
fn without_plan(member: &Member, sub: &Subscription, today: NaiveDate) -> Option<Member> {
    let holds = member
        .plan
        .as_ref()
        .is_some_and(|p| p.subscription_id == sub.subscription_id);
    if !holds {
        return None;
    }
    let mut next = member.clone();
    next.version += 1;
    next.plan = None;
    next.tier_state.plan_floor = None;
    next.tier_state.review_on = Some(next.tier_state.review_on.map_or(today, |d| d.min(today)));
    Some(next)
}

fn member_commit(
    next: Member,
    previous: u64,
    entry: Option<LedgerEntry>,
    idempotency: Option<IdempotencyRecord>,
    tier_change: Option<TierChange>,
) -> Commit {
    Commit {
        member: next,
        expected_version: Some(previous),
        entry,
        idempotency,
        claim_referral_code: false,
        stock: None,
        tier_change,
    }
}

impl<S: Store> App<S> {
    async fn subscription_record(
        &self,
        member: &MemberId,
    ) -> Result<Option<(Subscription, u64)>, ApiError> {
        match self
            .store()
            .record(SUBSCRIPTION_KIND, member.as_str())
            .await?
        {
            Some(record) => Ok(Some((record.parse()?, record.version))),
            None => Ok(None),
        }
    }

    async fn charge_record(&self, charge_id: &str) -> Result<Option<(Charge, u64)>, ApiError> {
        match self.store().record(CHARGE_KIND, charge_id).await? {
            Some(record) => Ok(Some((record.parse()?, record.version))),
            None => Ok(None),
        }
    }

    /// Every attempt at one period's charge, for audits and tests.
    pub async fn subscription_charge(
        &self,
        subscription_id: &str,
        period: u32,
    ) -> Result<Option<Charge>, ApiError> {
        Ok(self
            .charge_record(&crate::subscriptions::charge_id(subscription_id, period))
            .await?
            .map(|(c, _)| c))
    }

    /// Collects attempt `attempt` of `period`'s charge, at most once. `known` carries a payment
    /// this same call already received, so a retried commit does not ask the provider again.
    async fn collect(
        &self,
        sub: &Subscription,
        period: u32,
        plan: &Plan,
        attempt: u32,
        known: &mut Option<(String, u32, Payment)>,
    ) -> Result<Collected, ApiError> {
        let now = self.now();
        let charge_id = sub.charge_id(period);
        let (mut charge, version, number, resumed) = match self.charge_record(&charge_id).await? {
            Some((charge, version)) => {
                if charge.succeeded().is_some() {
                    return Ok(Collected {
                        charge,
                        charge_version: version,
                        outcome: PaymentOutcome::Succeeded,
                    });
                }
                match charge.last().cloned() {
                    Some(last) if last.status == AttemptStatus::Pending => {
                        let ours = known
                            .as_ref()
                            .is_some_and(|(id, n, _)| *id == charge_id && *n == last.attempt);
                        if !ours && now - last.at < PENDING_LEASE {
                            return Err(ApiError::new(
                                ErrorCode::ConcurrentModification,
                                "this period's payment is being collected; retry shortly",
                            ));
                        }
                        (charge, version, last.attempt, true)
                    }
                    Some(last) if last.attempt >= attempt => {
                        let code = last
                            .decline_code
                            .clone()
                            .unwrap_or_else(|| "declined".into());
                        return Ok(Collected {
                            charge,
                            charge_version: version,
                            outcome: PaymentOutcome::Declined { code },
                        });
                    }
                    _ => {
                        let mut charge = charge;
                        charge.attempts.push(ChargeAttempt {
                            attempt,
                            status: AttemptStatus::Pending,
                            idempotency_key: attempt_key(&charge_id, attempt),
                            payment_intent: None,
                            decline_code: None,
                            at: now,
                        });
                        self.store()
                            .transact(Vec::new(), vec![charge_write(&charge, Some(version))?])
                            .await
                            .map_err(charge_write_failed)?;
                        (charge, version + 1, attempt, false)
                    }
                }
            }
            None => {
                let (period_start, _) = period_bounds(sub.anchor, period);
                let charge = Charge {
                    charge_id: charge_id.clone(),
                    subscription_id: sub.subscription_id.clone(),
                    member_id: sub.member_id.clone(),
                    period,
                    period_start,
                    plan_id: plan.plan_id.clone(),
                    amount: plan.price,
                    attempts: vec![ChargeAttempt {
                        attempt,
                        status: AttemptStatus::Pending,
                        idempotency_key: attempt_key(&charge_id, attempt),
                        payment_intent: None,
                        decline_code: None,
                        at: now,
                    }],
                };
                self.store()
                    .transact(Vec::new(), vec![charge_write(&charge, None)?])
                    .await
                    .map_err(charge_write_failed)?;
                (charge, 1, attempt, false)
            }
        };

        let payment = match known
            .as_ref()
            .filter(|(id, n, _)| *id == charge_id && *n == number)
        {
            Some((_, _, payment)) => payment.clone(),
            None => {
                let found = if resumed {
                    self.payments()
                        .find(&charge_id, number)
                        .await
                        .map_err(|e| {
                            tracing::warn!(error = %e, %charge_id, "payment look-up failed");
                            ApiError::new(
                                ErrorCode::PaymentProviderUnavailable,
                                "the payment provider is unavailable; retry",
                            )
                        })?
                } else {
                    None
                };
                match found {
                    Some(payment) => payment,
                    None => {
                        let request = ChargeRequest {
                            idempotency_key: attempt_key(&charge_id, number),
                            charge_id: charge_id.clone(),
                            attempt: number,
                            amount: charge.amount,
                            payment_method: sub.payment_method.clone(),
                            member_id: sub.member_id.as_str().to_owned(),
                            description: format!("{} period {period}", plan.name),
                        };
                        self.payments().charge(&request).await.map_err(|e| {
                            tracing::warn!(error = %e, %charge_id, "charge failed; the attempt stays pending");
                            ApiError::new(ErrorCode::PaymentProviderUnavailable, "the payment provider is unavailable; retry")
                        })?
                    }
                }
            }
        };
        *known = Some((charge_id, number, payment.clone()));
        if let Some(last) = charge
            .attempts
            .iter_mut()
            .rev()
            .find(|a| a.attempt == number)
        {
            last.payment_intent = Some(payment.id.clone());
            last.at = now;
            match &payment.outcome {
                PaymentOutcome::Succeeded => last.status = AttemptStatus::Succeeded,
                PaymentOutcome::Declined { code } => {
                    last.status = AttemptStatus::Declined;
                    last.decline_code = Some(code.clone());
                }
            }
        }
        Ok(Collected {
            charge,
            charge_version: version,
            outcome: payment.outcome,
        })
    }

    /// `POST /v1/members/{id}/subscription`: starts a subscription and takes the first payment.
    pub async fn start_subscription(
        &self,
        member_id: &MemberId,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let key = key.ok_or_else(|| missing_key("starting a subscription needs"))?;
        let request: StartRequest = parse_body(body)?;
        let method = request.payment_method.trim();
        if method.is_empty() || method.len() > 255 || !method.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(ApiError::invalid(
                "payment_method",
                "payment_method must be 1 to 255 printable characters",
            ));
        }
        let scope = IdempotencyScope {
            operation: Operation::Subscription,
            key: key.clone(),
        };
        let fingerprint = fingerprint(Operation::Subscription, body);
        let sub_id = subscription_id(member_id, &key);
        let mut known = None;
        let mut attempt = 0;
        loop {
            let snapshot = self.store().snapshot(member_id, Some(&scope)).await?;
            if let Some(record) = snapshot.replay {
                return Ok(Outcome::Replayed(record.replay(&fingerprint)?));
            }
            let member = snapshot.member.ok_or_else(|| member_not_found(member_id))?;
            let program = self.program().await?;
            let plan = program
                .plan(&request.plan_id)
                .ok_or_else(|| plan_not_found(&program, &request.plan_id))?
                .clone();
            let now = self.now();

            let (sub, sub_version) = match self.subscription_record(member_id).await? {
                Some((sub, version)) if sub.subscription_id == sub_id => {
                    if sub.status != SubscriptionStatus::Incomplete {
                        return Ok(Outcome::Replayed(to_json(&SubscriptionView::of(&sub))?));
                    }
                    (sub, Some(version))
                }
                Some((other, version)) => {
                    let busy = match other.status {
                        SubscriptionStatus::Active | SubscriptionStatus::PastDue => true,
                        SubscriptionStatus::Incomplete => {
                            let charge = self.charge_record(&other.charge_id(1)).await?;
                            charge.is_some_and(|(c, _)| {
                                c.last()
                                    .is_some_and(|a| a.status != AttemptStatus::Declined)
                            })
                        }
                        SubscriptionStatus::Canceled | SubscriptionStatus::Lapsed => false,
                    };
                    if busy {
                        return Err(ApiError::new(ErrorCode::SubscriptionConflict, "the member already has a subscription; change its plan instead")
                            .with_details(json!({ "subscription_id": other.subscription_id, "status": other.status })));
                    }
                    self.new_subscription(member_id, &sub_id, &plan, method, now, Some(version))
                        .await?
                }
                None => {
                    self.new_subscription(member_id, &sub_id, &plan, method, now, None)
                        .await?
                }
            };
            // The new subscription record may have lost a race; start over from the reads.
            let Some(sub_version) = sub_version else {
                self.back_off(&mut attempt).await?;
                continue;
            };

            let collected = match self.collect(&sub, 1, &plan, 1, &mut known).await {
                Ok(collected) => collected,
                Err(error) if error.code == ErrorCode::ConcurrentModification => {
                    self.back_off(&mut attempt).await?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let result: Result<(), CommitError> = match collected.outcome {
                PaymentOutcome::Declined { code } => {
                    let write = charge_write(&collected.charge, Some(collected.charge_version))?;
                    match self.store().transact(Vec::new(), vec![write]).await {
                        Ok(()) => return Err(declined(&code)),
                        Err(e) if retryable(&e) => Err(e),
                        Err(e) => return Err(commit_failed(e)),
                    }
                }
                PaymentOutcome::Succeeded => {
                    let mut active = sub.clone();
                    active.status = SubscriptionStatus::Active;
                    active.period = 1;
                    active.updated_at = now;
                    let view = to_json(&SubscriptionView::of(&active))?;
                    let (next, entry, tier_change) =
                        with_paid_period(&member, &program, &active, &plan, 1, now)?;
                    let idempotency = IdempotencyRecord {
                        operation: Operation::Subscription,
                        key: key.as_str().to_owned(),
                        fingerprint: fingerprint.clone(),
                        status: 201,
                        response: view.clone(),
                        entry_id: format!("subscription:{sub_id}:1"),
                        created_at: now,
                    };
                    let commit = member_commit(
                        next,
                        member.version,
                        entry,
                        Some(idempotency),
                        tier_change.clone(),
                    );
                    let writes = vec![
                        subscription_write(&active, Some(sub_version))?,
                        charge_write(&collected.charge, Some(collected.charge_version))?,
                    ];
                    match self.store().transact(vec![commit], writes).await {
                        Ok(()) => {
                            let mut events = vec![event(
                                &active,
                                "subscription.started",
                                "1",
                                now,
                                json!({ "plan_id": plan.plan_id, "period": 1 }),
                            )];
                            events.extend(
                                tier_change
                                    .iter()
                                    .map(|c| DomainEvent::tier_changed(member_id, c)),
                            );
                            self.publish_events(events).await;
                            return Ok(Outcome::Created(view));
                        }
                        Err(CommitError::IdempotencyKeyTaken) => continue,
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if retryable(&e) => self.back_off(&mut attempt).await?,
                Err(e) => return Err(commit_failed(e)),
            }
        }
    }

    /// Writes a fresh, incomplete subscription over nothing or over an ended one. Returns the
    /// stored version, or `None` if another request wrote first.
    async fn new_subscription(
        &self,
        member_id: &MemberId,
        sub_id: &str,
        plan: &Plan,
        payment_method: &str,
        now: DateTime<Utc>,
        previous: Option<u64>,
    ) -> Result<(Subscription, Option<u64>), ApiError> {
        let sub = Subscription {
            subscription_id: sub_id.to_owned(),
            member_id: member_id.clone(),
            plan_id: plan.plan_id.clone(),
            next_plan_id: None,
            status: SubscriptionStatus::Incomplete,
            payment_method: payment_method.to_owned(),
            anchor: now.date_naive(),
            period: 0,
            cancel_at_period_end: false,
            dunning: None,
            created_at: now,
            updated_at: now,
        };
        match self
            .store()
            .transact(Vec::new(), vec![subscription_write(&sub, previous)?])
            .await
        {
            Ok(()) => Ok((sub, Some(previous.map_or(1, |v| v + 1)))),
            Err(e) if retryable(&e) => Ok((sub, None)),
            Err(e) => Err(commit_failed(e)),
        }
    }

    /// `GET /v1/members/{id}/subscription`.
    pub async fn subscription_view(
        &self,
        member_id: &MemberId,
    ) -> Result<SubscriptionView, ApiError> {
        match self.subscription_record(member_id).await? {
            Some((sub, _)) => Ok(SubscriptionView::of(&sub)),
            None => {
                self.store()
                    .member(member_id)
                    .await?
                    .ok_or_else(|| member_not_found(member_id))?;
                Err(ApiError::new(
                    ErrorCode::SubscriptionNotFound,
                    format!("member '{member_id}' has no subscription"),
                ))
            }
        }
    }

    /// `DELETE /v1/members/{id}/subscription`: an active subscription ends with its paid period
    /// (benefits last until then); one in dunning ends now. Cancelling twice changes nothing.
    pub async fn cancel_subscription(
        &self,
        member_id: &MemberId,
    ) -> Result<SubscriptionView, ApiError> {
        let mut attempt = 0;
        loop {
            let now = self.now();
            let Some((sub, version)) = self.subscription_record(member_id).await? else {
                return self.subscription_view(member_id).await;
            };
            let mut next = sub.clone();
            next.updated_at = now;
            let mut commits = Vec::new();
            match sub.status {
                SubscriptionStatus::Active if sub.cancel_at_period_end => {
                    return Ok(SubscriptionView::of(&sub))
                }
                SubscriptionStatus::Canceled => return Ok(SubscriptionView::of(&sub)),
                SubscriptionStatus::Active => {
                    next.cancel_at_period_end = true;
                    next.next_plan_id = None;
                }
                SubscriptionStatus::PastDue => {
                    next.status = SubscriptionStatus::Canceled;
                    next.dunning = None;
                    if let Some(member) = self.store().member(member_id).await? {
                        if let Some(ended) = without_plan(&member, &sub, now.date_naive()) {
                            commits.push(member_commit(ended, member.version, None, None, None));
                        }
                    }
                }
                SubscriptionStatus::Incomplete | SubscriptionStatus::Lapsed => {
                    return Err(ApiError::new(
                        ErrorCode::SubscriptionConflict,
                        "the subscription is not active",
                    )
                    .with_details(json!({ "status": sub.status })));
                }
            }
            match self
                .store()
                .transact(commits, vec![subscription_write(&next, Some(version))?])
                .await
            {
                Ok(()) => {
                    let (_, end) = sub.current_period();
                    let ends_on = if next.status == SubscriptionStatus::Canceled {
                        now.date_naive()
                    } else {
                        end
                    };
                    self.publish_events(vec![event(
                        &next,
                        "subscription.canceled",
                        &sub.period.to_string(),
                        now,
                        json!({ "ends_on": ends_on }),
                    )])
                    .await;
                    return Ok(SubscriptionView::of(&next));
                }
                Err(e) if retryable(&e) => self.back_off(&mut attempt).await?,
                Err(e) => return Err(commit_failed(e)),
            }
        }
    }

    /// `PATCH /v1/members/{id}/subscription`: the new plan is billed and applies from the next
    /// period; choosing the current plan withdraws a pending change.
    pub async fn change_subscription_plan(
        &self,
        member_id: &MemberId,
        body: &Value,
    ) -> Result<SubscriptionView, ApiError> {
        let change: PlanChange = parse_body(body)?;
        let mut attempt = 0;
        loop {
            let program = self.program().await?;
            if program.plan(&change.plan_id).is_none() {
                return Err(plan_not_found(&program, &change.plan_id));
            }
            let Some((sub, version)) = self.subscription_record(member_id).await? else {
                return self.subscription_view(member_id).await;
            };
            if !matches!(
                sub.status,
                SubscriptionStatus::Active | SubscriptionStatus::PastDue
            ) || sub.cancel_at_period_end
            {
                return Err(ApiError::new(ErrorCode::SubscriptionConflict, "only a subscription that renews can change plan")
                    .with_details(json!({ "status": sub.status, "cancel_at_period_end": sub.cancel_at_period_end })));
            }
            let mut next = sub.clone();
            next.next_plan_id = (change.plan_id != sub.plan_id).then(|| change.plan_id.clone());
            if next == sub {
                return Ok(SubscriptionView::of(&sub));
            }
            next.updated_at = self.now();
            match self
                .store()
                .transact(Vec::new(), vec![subscription_write(&next, Some(version))?])
                .await
            {
                Ok(()) => return Ok(SubscriptionView::of(&next)),
                Err(e) if retryable(&e) => self.back_off(&mut attempt).await?,
                Err(e) => return Err(commit_failed(e)),
            }
        }
    }

    /// The daily run: finds the subscriptions whose billing (or retry) date has come, today and
    /// the days a missed run left behind, through the due index shard by shard, and sends them to
    /// `queue` in batches. Sending one twice is harmless: billing is at most once per period.
    pub async fn plan_subscription_billing(
        &self,
        queue: &dyn MessageQueue,
    ) -> Result<BillingPlan, ApiError> {
        let index = DueIndex::Records(SUBSCRIPTION_KIND);
        let sent = self
            .fan_out_due(
                index,
                BILLING_CATCH_UP_DAYS,
                SUBSCRIPTIONS_PER_MESSAGE,
                queue,
                |day, ids| BillingBatch {
                    day,
                    subscriptions: ids.to_vec(),
                },
            )
            .await?;
        Ok(BillingPlan {
            subscriptions: sent.items,
            messages: sent.messages,
        })
    }

    /// Bills every subscription of one fan-out message. A failure fails the message, which is
    /// redelivered; the subscriptions already billed are not due any more the second time.
    pub async fn bill_subscription_batch(
        &self,
        body: &str,
    ) -> Result<Vec<BillingResult>, ApiError> {
        let batch: BillingBatch = serde_json::from_str(body).map_err(|e| {
            ApiError::new(ErrorCode::ValidationError, format!("billing batch: {e}"))
        })?;
        let mut results = Vec::with_capacity(batch.subscriptions.len());
        let mut failure = None;
        for id in &batch.subscriptions {
            match MemberId::parse(id) {
                Ok(member) => match self.bill_subscription(&member).await {
                    Ok(result) => results.push(result),
                    Err(error) => {
                        tracing::warn!(subscription = %id, %error, "billing failed; the message will be retried");
                        failure = Some(error);
                    }
                },
                Err(_) => results.push(BillingResult::Skipped),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(results),
        }
    }

    /// Bills one member's subscription if its date has come: renews, retries a declined period,
    /// lapses after the last retry, or ends a subscription canceled at period end.
    pub async fn bill_subscription(&self, member_id: &MemberId) -> Result<BillingResult, ApiError> {
        let mut known = None;
        let mut attempt = 0;
        loop {
            let now = self.now();
            let today = now.date_naive();
            let Some((sub, version)) = self.subscription_record(member_id).await? else {
                return Ok(BillingResult::Skipped);
            };
            let (period, number) = match sub.status {
                SubscriptionStatus::Active => {
                    let (_, end) = sub.current_period();
                    if today < end {
                        return Ok(BillingResult::NotDue);
                    }
                    if sub.cancel_at_period_end {
                        match self
                            .end_subscription(&sub, version, SubscriptionStatus::Canceled, now)
                            .await
                        {
                            Ok(()) => return Ok(BillingResult::Canceled),
                            Err(e) if retryable(&e) => {
                                self.back_off(&mut attempt).await?;
                                continue;
                            }
                            Err(e) => return Err(commit_failed(e)),
                        }
                    }
                    (sub.period + 1, 1)
                }
                SubscriptionStatus::PastDue => match &sub.dunning {
                    Some(d) if today >= d.next_retry_on => (d.period, d.failed_attempts + 1),
                    _ => return Ok(BillingResult::NotDue),
                },
                _ => return Ok(BillingResult::Skipped),
            };
            let program = self.program().await?;
            let plan_id = sub
                .next_plan_id
                .clone()
                .unwrap_or_else(|| sub.plan_id.clone());
            let Some(plan) = program.plan(&plan_id).cloned() else {
                // The plan was withdrawn from the program: nothing to renew into.
                match self
                    .end_subscription(&sub, version, SubscriptionStatus::Canceled, now)
                    .await
                {
                    Ok(()) => return Ok(BillingResult::Canceled),
                    Err(e) if retryable(&e) => {
                        self.back_off(&mut attempt).await?;
                        continue;
                    }
                    Err(e) => return Err(commit_failed(e)),
                }
            };
            let collected = match self.collect(&sub, period, &plan, number, &mut known).await {
                Ok(collected) => collected,
                Err(error)
                    if error.code == ErrorCode::ConcurrentModification && known.is_some() =>
                {
                    self.back_off(&mut attempt).await?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let charge = charge_write(&collected.charge, Some(collected.charge_version))?;
            let (result, commits, next, events) = match collected.outcome {
                PaymentOutcome::Succeeded => {
                    let Some(member) = self.store().member(member_id).await? else {
                        return Ok(BillingResult::Skipped);
                    };
                    let recovered = sub.status == SubscriptionStatus::PastDue;
                    let mut next = sub.clone();
                    next.status = SubscriptionStatus::Active;
                    next.period = period;
                    next.plan_id = plan.plan_id.clone();
                    next.next_plan_id = None;
                    next.dunning = None;
                    next.updated_at = now;
                    let (member_next, entry, tier_change) =
                        with_paid_period(&member, &program, &next, &plan, period, now)?;
                    let mut events = vec![event(
                        &next,
                        "subscription.renewed",
                        &period.to_string(),
                        now,
                        json!({ "plan_id": plan.plan_id, "period": period, "recovered": recovered, "amount": plan.price }),
                    )];
                    events.extend(
                        tier_change
                            .iter()
                            .map(|c| DomainEvent::tier_changed(member_id, c)),
                    );
                    let commit =
                        member_commit(member_next, member.version, entry, None, tier_change);
                    let result = if recovered {
                        BillingResult::Recovered
                    } else {
                        BillingResult::Renewed
                    };
                    (result, vec![commit], next, events)
                }
                PaymentOutcome::Declined { code } => {
                    let first = sub.dunning.as_ref().map_or(today, |d| d.first_failed_on);
                    let mut next = sub.clone();
                    next.updated_at = now;
                    match next_retry(first, number) {
                        Some(retry_on) => {
                            next.status = SubscriptionStatus::PastDue;
                            next.dunning = Some(Dunning {
                                period,
                                first_failed_on: first,
                                failed_attempts: number,
                                next_retry_on: retry_on,
                            });
                            let events = vec![event(
                                &next,
                                "subscription.past_due",
                                &format!("{period}:{number}"),
                                now,
                                json!({ "period": period, "attempt": number, "decline_code": code, "next_retry_on": retry_on }),
                            )];
                            (BillingResult::PastDue, Vec::new(), next, events)
                        }
                        None => {
                            next.status = SubscriptionStatus::Lapsed;
                            next.dunning = Some(Dunning {
                                period,
                                first_failed_on: first,
                                failed_attempts: number,
                                next_retry_on: today,
                            });
                            let mut commits = Vec::new();
                            if let Some(member) = self.store().member(member_id).await? {
                                if let Some(ended) = without_plan(&member, &sub, today) {
                                    commits.push(member_commit(
                                        ended,
                                        member.version,
                                        None,
                                        None,
                                        None,
                                    ));
                                }
                            }
                            let events = vec![event(
                                &next,
                                "subscription.lapsed",
                                &period.to_string(),
                                now,
                                json!({ "period": period, "attempts": number }),
                            )];
                            (BillingResult::Lapsed, commits, next, events)
                        }
                    }
                }
            };
            match self
                .store()
                .transact(
                    commits,
                    vec![subscription_write(&next, Some(version))?, charge],
                )
                .await
            {
                Ok(()) => {
                    self.publish_events(events).await;
                    return Ok(result);
                }
                Err(e) if retryable(&e) => self.back_off(&mut attempt).await?,
                Err(e) => return Err(commit_failed(e)),
            }
        }
    }

    /// Ends a subscription without a charge (canceled at period end, or its plan withdrawn).
    async fn end_subscription(
        &self,
        sub: &Subscription,
        version: u64,
        status: SubscriptionStatus,
        now: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        let mut next = sub.clone();
        next.status = status;
        next.cancel_at_period_end = false;
        next.next_plan_id = None;
        next.updated_at = now;
        let mut commits = Vec::new();
        if let Some(member) = self.store().member(&sub.member_id).await? {
            if let Some(ended) = without_plan(&member, sub, now.date_naive()) {
                commits.push(member_commit(ended, member.version, None, None, None));
            }
        }
        let write = subscription_write(&next, Some(version)).map_err(|_| {
            CommitError::Store(crate::ports::StoreError(
                "subscription did not serialise".into(),
            ))
        })?;
        self.store().transact(commits, vec![write]).await
    }
}
