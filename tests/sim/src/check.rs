//! The invariants, checked after every step, and the audit at the end of a seed. The checker
//! keeps its own copy of every member's ledger, built from the writes the store applied in the
//! order it applied them, and compares it with what the engine answers.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Days, Duration, Utc};
use loyalty_core::ledger::{EntryType, LedgerEntry, Source};
use loyalty_core::member::Member;
use loyalty_core::ports::Store;
use loyalty_core::program::ActiveProgram;
use loyalty_core::promotions::{Promotion, PromotionStatus};
use loyalty_core::referrals::{Referral, ReferralStatus, RejectReason};
use loyalty_core::tiers::WindowKind;
use loyalty_core::ErrorCode;
use serde_json::Value;

use crate::model;
use crate::ops::{self, member_id, Action, Answered, Op, Purchase, Reply};
use crate::workload::Abuse;
use crate::world::World;

type Violation = String;

#[derive(Default)]
pub struct Checker {
    abuse: Abuse,
    program: Option<ActiveProgram>,
    promotions: Vec<Promotion>,
    /// Each promotion's status as the outbox had relayed it when the current batch began.
    relayed_promotions: BTreeMap<String, String>,
    members: BTreeMap<String, Member>,
    ledgers: BTreeMap<String, Vec<LedgerEntry>>,
    /// Candidate bodies per (member, order): a retry under a new key or a reused key with
    /// another body may race the original.
    purchases: BTreeMap<(String, String), Vec<Purchase>>,
    actions: BTreeMap<(String, String, String), Vec<Action>>,
    /// The purchase each order entry was priced from.
    accepted: BTreeMap<(String, String), Purchase>,
    /// The first successful answer per (operation, member, key).
    first_answers: BTreeMap<(String, String, String), Value>,
    campaigns: BTreeSet<String>,
    emails: BTreeMap<String, Option<String>>,
    log_position: usize,
    pub entries_checked: u64,
}

fn fail<T>(message: impl Into<String>) -> Result<T, Violation> {
    Err(message.into())
}

fn amount_of(entry: &LedgerEntry) -> Option<(String, i64)> {
    match &entry.source {
        Source::Order {
            order_id, amount, ..
        } => Some((order_id.as_str().to_owned(), amount.minor)),
        _ => None,
    }
}

impl Checker {
    pub fn new(abuse: Abuse) -> Self {
        Self {
            abuse,
            ..Self::default()
        }
    }

    fn program(&self) -> Result<&ActiveProgram, Violation> {
        self.program
            .as_ref()
            .ok_or_else(|| "no program published".to_owned())
    }

    /// Reads the program and promotions as the environments will see them from now on.
    pub async fn refresh<S: Store>(&mut self, world: &World<S>) -> Result<(), Violation> {
        self.program = world
            .inner_store()
            .active_program()
            .await
            .map_err(|e| e.to_string())?;
        let listed = ops::promotions(&world.envs[0])
            .await
            .map_err(|e| e.message)?;
        self.promotions = listed["promotions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Notes which promotion changes the outbox had relayed when a batch begins: a change it has
    /// not relayed yet (its turn was killed, or its send failed) reaches the environments that
    /// did not write it only after it is relayed.
    pub fn note_relayed<S: Store>(&mut self, world: &World<S>) {
        self.relayed_promotions = world.relayed_promotions();
    }

    /// The promotion lists an environment may have priced with: the current one, and while a
    /// promotion's latest change is not relayed, the list without it or with it still active.
    fn promotion_views(&self) -> Vec<Vec<Promotion>> {
        let status = |p: &Promotion| {
            serde_json::to_value(p.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let unrelayed =
            |p: &Promotion| self.relayed_promotions.get(&p.promotion_id) != Some(&status(p));
        let mut views = vec![self.promotions.clone()];
        if self.promotions.iter().any(unrelayed) {
            views.push(
                self.promotions
                    .iter()
                    .filter(|p| !unrelayed(p))
                    .cloned()
                    .collect(),
            );
            views.push(
                self.promotions
                    .iter()
                    .cloned()
                    .map(|mut p| {
                        if unrelayed(&p) {
                            p.status = PromotionStatus::Active;
                        }
                        p
                    })
                    .collect(),
            );
        }
        views
    }

    /// Notes what a batch is about to send, so the writes it causes can be priced.
    pub fn expect(&mut self, ops: &[(usize, Op)]) {
        for (_, op) in ops {
            match op {
                Op::Purchase(p) => self
                    .purchases
                    .entry((p.member.clone(), p.order_id.clone()))
                    .or_default()
                    .push(p.clone()),
                Op::Action(a) => self
                    .actions
                    .entry((a.member.clone(), a.action.clone(), a.reference.clone()))
                    .or_default()
                    .push(a.clone()),
                Op::Enrol { member, email, .. } => {
                    self.emails.entry(member.clone()).or_insert(email.clone());
                }
                _ => {}
            }
        }
    }

    /// Walks the writes applied since the last step: every commit must follow the version it
    /// read, every entry must extend its member's ledger by one, and every accrual must earn
    /// what the reference model says.
    pub fn check_writes<S: Store>(&mut self, world: &World<S>) -> Result<(), Violation> {
        let applied = world.faults.log_since(self.log_position);
        self.log_position += applied.len();
        for write in applied {
            for commit in write.commits {
                let id = commit.member.member_id.as_str().to_owned();
                let prior = self.members.get(&id).cloned();
                match (commit.expected_version, &prior) {
                    (None, Some(_)) => return fail(format!("member {id} was created twice")),
                    (Some(v), Some(p)) if p.version != v => {
                        return fail(format!(
                            "a write to {id} from version {v} was applied over version {}",
                            p.version
                        ))
                    }
                    (Some(_), None) => {
                        return fail(format!("a write to {id} before it was created"))
                    }
                    _ => {}
                }
                if let Some(entry) = &commit.entry {
                    let history = self.ledgers.get(&id).cloned().unwrap_or_default();
                    if entry.seq != history.len() as u64 + 1 {
                        return fail(format!(
                            "{id}: entry {} has seq {} after {} entries",
                            entry.entry_id,
                            entry.seq,
                            history.len()
                        ));
                    }
                    if entry.entry_type == EntryType::Earn {
                        let prior = prior.as_ref().ok_or("an accrual for no member")?;
                        check_lateness(&id, prior, entry)?;
                        self.price(&id, prior, &history, entry)?;
                        self.entries_checked += 1;
                    }
                    self.ledgers
                        .entry(id.clone())
                        .or_default()
                        .push(entry.clone());
                }
                self.members.insert(id, commit.member);
            }
        }
        Ok(())
    }

    fn price(
        &mut self,
        id: &str,
        prior: &Member,
        history: &[LedgerEntry],
        entry: &LedgerEntry,
    ) -> Result<(), Violation> {
        let program = self.program()?.clone();
        let recorded = model::recorded_lines(entry);
        match &entry.source {
            Source::Order { order_id, .. } => {
                let candidates = self
                    .purchases
                    .get(&(id.to_owned(), order_id.as_str().to_owned()))
                    .cloned()
                    .unwrap_or_default();
                let mut tried = Vec::new();
                for candidate in candidates {
                    if candidate.occurred_at.unwrap_or(entry.recorded_at) != entry.occurred_at {
                        continue;
                    }
                    for promotions in self.promotion_views() {
                        let expected = model::purchase_lines(
                            &program,
                            &promotions,
                            prior,
                            history,
                            &candidate,
                            entry.occurred_at,
                        );
                        if expected == recorded {
                            self.accepted
                                .insert((id.to_owned(), order_id.as_str().to_owned()), candidate);
                            return Ok(());
                        }
                        if !tried.contains(&expected) {
                            tried.push(expected);
                        }
                    }
                }
                fail(format!(
                    "{id}: order {order_id} earned {recorded:?}; the model says {tried:?} (tier {}, occurred_at {})",
                    prior.tier, entry.occurred_at
                ))
            }
            Source::Action { action, reference } => {
                let candidates = self
                    .actions
                    .get(&(
                        id.to_owned(),
                        action.as_str().to_owned(),
                        reference.as_str().to_owned(),
                    ))
                    .cloned()
                    .unwrap_or_default();
                let candidate = candidates
                    .first()
                    .ok_or_else(|| format!("{id}: an action nobody sent: {}", entry.entry_id))?;
                let expected = model::action_lines(&program, history, candidate, entry.occurred_at)
                    .map_err(|why| format!("{id}: {} was paid although {why}", entry.entry_id))?;
                if expected != recorded {
                    return fail(format!(
                        "{id}: {} earned {recorded:?}; the model says {expected:?}",
                        entry.entry_id
                    ));
                }
                Ok(())
            }
            other => fail(format!("{id}: an earn entry from {other:?}")),
        }
    }

    /// Checks what each request of a batch was answered.
    pub fn check_answers(
        &mut self,
        ops: &[(usize, Op)],
        answers: &[Option<Answered>],
        members_before: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<(), Violation> {
        for ((_, op), answer) in ops.iter().zip(answers) {
            let Some(answer) = answer else { continue };
            for reply in &answer.replies {
                self.check_reply(op, reply, members_before, now)
                    .map_err(|why| {
                        format!("{why}\n  request: {op:?}\n  answers: {:?}", answer.replies)
                    })?;
            }
        }
        Ok(())
    }

    fn remember(
        &mut self,
        kind: &str,
        member: &str,
        key: &str,
        body: &Value,
    ) -> Result<(), Violation> {
        let slot = (kind.to_owned(), member.to_owned(), key.to_owned());
        match self.first_answers.get(&slot) {
            Some(first) if first != body => fail(format!(
                "a replay of {kind} key {key} answered {body} but the first answer was {first}"
            )),
            Some(_) => Ok(()),
            None => {
                self.first_answers.insert(slot, body.clone());
                Ok(())
            }
        }
    }

    fn has_entry(&self, member: &str, entry_id: &str) -> bool {
        self.ledgers
            .get(member)
            .is_some_and(|l| l.iter().any(|e| e.entry_id == entry_id))
    }

    fn check_reply(
        &mut self,
        op: &Op,
        reply: &Reply,
        members_before: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<(), Violation> {
        let transient = |code: ErrorCode| {
            matches!(
                code,
                ErrorCode::Internal
                    | ErrorCode::ConcurrentModification
                    | ErrorCode::PaymentProviderUnavailable
            )
        };
        let missing = |member: &str, code: ErrorCode| {
            code == ErrorCode::MemberNotFound && !members_before.contains(member)
        };
        let members = &self.members;
        // `occurred_at_out_of_range` is right for a request outside the window (issue 12), and
        // tolerated for any late request while that switch generates them.
        let late_code = |code: ErrorCode, member: &str, at: Option<DateTime<Utc>>| {
            code.as_str() == "occurred_at_out_of_range"
                && (self.abuse.late_events
                    || at.is_some_and(|at| {
                        at < now - LATE_EVENTS
                            || members
                                .get(member)
                                .is_some_and(|m| at < m.enrolled_at - CHECKOUT_GRACE)
                    }))
        };
        match (op, reply) {
            (Op::Purchase(p), Reply::Created(body) | Reply::Replayed(body)) => {
                self.remember("accrual", &p.member, &p.key, body)?;
                let entry = format!("order:{}", p.order_id);
                if body["entry_id"].as_str() != Some(entry.as_str())
                    || !self.has_entry(&p.member, &entry)
                {
                    return fail(format!(
                        "{}: accepted order {} has no ledger entry",
                        p.member, p.order_id
                    ));
                }
                Ok(())
            }
            (Op::Action(a), Reply::Created(body) | Reply::Replayed(body)) => {
                self.remember("accrual", &a.member, &a.key, body)?;
                let entry = format!("action:{}:{}", a.action, a.reference);
                if !self.has_entry(&a.member, &entry) {
                    return fail(format!(
                        "{}: accepted {entry} has no ledger entry",
                        a.member
                    ));
                }
                Ok(())
            }
            (Op::Redeem { member, key, .. }, Reply::Created(body) | Reply::Replayed(body)) => {
                self.remember("redemption", member, key, body)?;
                let entry = body["entry_id"].as_str().unwrap_or_default().to_owned();
                if !self.has_entry(member, &entry) {
                    return fail(format!("{member}: redemption {entry} has no ledger entry"));
                }
                Ok(())
            }
            (
                Op::Transfer {
                    member, key, to, ..
                },
                Reply::Created(body) | Reply::Replayed(body),
            ) => {
                self.remember("transfer", member, key, body)?;
                let transfer_id = body["transfer_id"].as_str().unwrap_or_default();
                let out = format!("transfer:{transfer_id}:out");
                let incoming = format!("transfer:{transfer_id}:in");
                if !self.has_entry(member, &out) || !self.has_entry(to, &incoming) {
                    return fail(format!(
                        "{member}: transfer {transfer_id} to {to} lacks a side in the ledgers"
                    ));
                }
                Ok(())
            }
            (
                Op::Transfer {
                    member, to, points, ..
                },
                Reply::Failed(code, _),
            ) => {
                let fine = match code {
                    ErrorCode::TransferToSelf => member == to,
                    ErrorCode::ValidationError | ErrorCode::TransferBelowMinimum => *points < 10,
                    ErrorCode::ReceiverNotFound => !members_before.contains(to.as_str()),
                    ErrorCode::InsufficientPoints
                    | ErrorCode::TransferDailyCountExceeded
                    | ErrorCode::TransferDailyPointsExceeded => true,
                    c => transient(*c) || missing(member, *c),
                };
                if fine {
                    Ok(())
                } else {
                    fail(format!("transfer refused with {}", code.as_str()))
                }
            }
            (
                Op::StartSubscription { member, key, .. },
                Reply::Created(body) | Reply::Replayed(body),
            ) => self.remember("subscription", member, key, body),
            (
                Op::Return { member, key, .. } | Op::Adjust { member, key, .. },
                Reply::Created(body) | Reply::Replayed(body),
            ) => {
                self.remember("movement", member, key, body)?;
                let entry = body["entry_id"].as_str().unwrap_or_default().to_owned();
                if !self.has_entry(member, &entry) {
                    return fail(format!("{member}: movement {entry} has no ledger entry"));
                }
                Ok(())
            }
            (Op::Return { member, .. }, Reply::Failed(code, _)) => match code {
                ErrorCode::OrderNotFound
                | ErrorCode::ReturnExceedsOrder
                | ErrorCode::DuplicateReturn
                | ErrorCode::IdempotencyKeyReused => Ok(()),
                c if transient(*c) || missing(member, *c) => Ok(()),
                other => fail(format!("return refused with {}", other.as_str())),
            },
            (Op::Adjust { member, .. }, Reply::Failed(code, _)) => match code {
                c if transient(*c) || missing(member, *c) => Ok(()),
                other => fail(format!("adjustment refused with {}", other.as_str())),
            },
            (Op::Purchase(p), Reply::Failed(code, _)) => {
                let duplicate = *code == ErrorCode::DuplicateOrder
                    && (self.has_entry(&p.member, &format!("order:{}", p.order_id))
                        || (self.abuse.shared_orders
                            && self
                                .ledgers
                                .values()
                                .flatten()
                                .any(|e| amount_of(e).is_some_and(|(o, _)| o == p.order_id))));
                let future = *code == ErrorCode::ValidationError
                    && p.occurred_at
                        .is_some_and(|at| at > now + Duration::minutes(5));
                if duplicate
                    || future
                    || transient(*code)
                    || missing(&p.member, *code)
                    || late_code(*code, &p.member, p.occurred_at)
                    || *code == ErrorCode::IdempotencyKeyReused
                {
                    Ok(())
                } else {
                    fail(format!("purchase refused with {}", code.as_str()))
                }
            }
            (Op::Action(a), Reply::Failed(code, _)) => {
                let duplicate = *code == ErrorCode::DuplicateAction
                    && self.has_entry(&a.member, &format!("action:{}:{}", a.action, a.reference));
                let capped = *code == ErrorCode::ActionLimitReached && self.cap_full(a, now)?;
                let future = *code == ErrorCode::ValidationError
                    && a.occurred_at
                        .is_some_and(|at| at > now + Duration::minutes(5));
                if duplicate
                    || capped
                    || future
                    || transient(*code)
                    || missing(&a.member, *code)
                    || late_code(*code, &a.member, a.occurred_at)
                    || *code == ErrorCode::IdempotencyKeyReused
                {
                    Ok(())
                } else {
                    fail(format!("action refused with {}", code.as_str()))
                }
            }
            (Op::Redeem { member, reward, .. }, Reply::Failed(code, _)) => {
                let known = self.program()?.reward(reward).is_some();
                match code {
                    ErrorCode::RewardNotFound if !known => Ok(()),
                    ErrorCode::InsufficientPoints | ErrorCode::RewardUnavailable => Ok(()),
                    c if transient(*c) || missing(member, *c) => Ok(()),
                    other => fail(format!("redemption refused with {}", other.as_str())),
                }
            }
            (Op::UseCode { member, .. }, Reply::Failed(code, _)) => match code {
                ErrorCode::CodeAlreadyUsed | ErrorCode::CodeNotUsable => Ok(()),
                c if transient(*c) || missing(member, *c) => Ok(()),
                other => fail(format!("use of a code refused with {}", other.as_str())),
            },
            (Op::CancelCode { member, .. }, Reply::Failed(code, _)) => match code {
                ErrorCode::CodeAlreadyUsed | ErrorCode::CodeNotUsable => Ok(()),
                c if transient(*c) || missing(member, *c) => Ok(()),
                other => fail(format!("cancel of a code refused with {}", other.as_str())),
            },
            (Op::CancelCode { member, .. }, Reply::Done(view)) if !view.is_null() => {
                // A canceled code's points are back: its reversal is in the ledger.
                let entry = format!(
                    "redemption_cancel:{}",
                    view["redemption_id"].as_str().unwrap_or_default()
                );
                if view["status"] != "canceled" || !self.has_entry(member, &entry) {
                    return fail(format!("{member}: cancel answered {view} without {entry}"));
                }
                Ok(())
            }
            (Op::Enrol { member, .. }, Reply::Failed(code, _)) => match code {
                ErrorCode::MemberExists | ErrorCode::ReferralCodeNotFound => Ok(()),
                c if transient(*c) => Ok(()),
                other => fail(format!(
                    "{member}: enrolment refused with {}",
                    other.as_str()
                )),
            },
            (Op::StartSubscription { member, .. }, Reply::Failed(code, _)) => match code {
                ErrorCode::PaymentDeclined | ErrorCode::SubscriptionConflict => Ok(()),
                c if transient(*c) || missing(member, *c) => Ok(()),
                other => fail(format!("subscription refused with {}", other.as_str())),
            },
            (Op::CreatePromotion(_), Reply::Done(body) | Reply::Created(body)) => {
                let ends = body["ends_at"]
                    .as_str()
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok());
                if ends.is_some_and(|ends| ends <= now) {
                    return fail("a promotion whose window is already over was accepted");
                }
                Ok(())
            }
            (op, Reply::Failed(code, message)) if op.is_admin() => {
                let ended = matches!(op, Op::CreatePromotion(_))
                    && matches!(
                        code.as_str(),
                        "validation_error" | "promotion_already_ended"
                    );
                if transient(*code) || (ended && self.abuse.ended_promotions) {
                    Ok(())
                } else {
                    fail(format!(
                        "admin call refused with {}: {message}",
                        code.as_str()
                    ))
                }
            }
            _ => Ok(()),
        }
    }

    /// Whether the ledger already holds a full cap of `action` in the period of its time.
    fn cap_full(&self, action: &Action, now: DateTime<Utc>) -> Result<bool, Violation> {
        let program = self.program()?;
        let Some(cap) = program
            .document
            .actions
            .iter()
            .find(|a| a.action.as_str() == action.action)
            .and_then(|a| a.cap)
        else {
            return Ok(false);
        };
        let at = action.occurred_at.unwrap_or(now);
        let key = model::period(cap.per, at);
        let used = self
            .ledgers
            .get(&action.member)
            .map(|l| {
                l.iter()
                    .filter(|e| matches!(&e.source, Source::Action { action: a, .. } if a.as_str() == action.action))
                    .filter(|e| model::period(cap.per, e.occurred_at) == key)
                    .count() as u32
            })
            .unwrap_or(0);
        // Time moves within a batch only by the clock, which stands still; `at` defaulted to
        // now may be a little earlier than the engine's now, in the same period.
        Ok(used >= cap.count)
    }

    /// Every invariant over the stored state.
    pub async fn check_state<S: Store>(&mut self, world: &World<S>) -> Result<(), Violation> {
        let program = self.program()?.clone();
        let app = &world.envs[0];
        let now = world.now();
        let mut orders: BTreeMap<String, String> = BTreeMap::new();
        let mut keys_paid: BTreeMap<String, String> = BTreeMap::new();
        let mut redeemed: BTreeMap<String, u32> = BTreeMap::new();
        let mut campaign_totals: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        // Per transfer, its sides as (member, counterparty, points): exactly one out and one in.
        let mut transfers: BTreeMap<String, Vec<(String, String, i64)>> = BTreeMap::new();
        for (id, known) in &self.members {
            let member = world
                .inner_store()
                .member(&member_id(id))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{id} was written but cannot be read"))?;
            if &member != known {
                return fail(format!(
                    "{id}: the stored member is not the one last written"
                ));
            }
            let entries = ops::audited_ledger(app, &member_id(id))
                .await
                .map_err(|why| format!("{id}: {why}"))?;
            let expected = self.ledgers.get(id).cloned().unwrap_or_default();
            if entries != expected {
                return fail(format!(
                    "{id}: the stored ledger ({} entries) is not the ledger written ({} entries)",
                    entries.len(),
                    expected.len()
                ));
            }
            check_balances(id, &member, &entries)?;
            check_expiry(id, &member, &entries)?;
            check_returns(id, &entries)?;
            for entry in &entries {
                let business_key = match &entry.source {
                    Source::Order { order_id, .. } => {
                        if let Some(other) = orders.insert(order_id.as_str().to_owned(), id.clone())
                        {
                            return fail(format!(
                                "order {order_id} earned for {other} and for {id}"
                            ));
                        }
                        None
                    }
                    Source::Referral { .. }
                    | Source::Subscription { .. }
                    | Source::SubscriptionRefund { .. } => Some(entry.entry_id.clone()),
                    Source::Campaign { campaign_id } => {
                        let total = campaign_totals.entry(campaign_id.clone()).or_default();
                        total.0 += 1;
                        total.1 += entry.points;
                        None
                    }
                    Source::Redemption { reward_id, .. } => {
                        *redeemed.entry(reward_id.as_str().to_owned()).or_default() += 1;
                        None
                    }
                    // A canceled, released or refunded redemption gives its stock unit back.
                    Source::RedemptionReversal { reward_id, .. } => {
                        *redeemed.entry(reward_id.as_str().to_owned()).or_default() -= 1;
                        None
                    }
                    Source::Transfer {
                        transfer_id,
                        counterparty,
                        ..
                    } => {
                        transfers.entry(transfer_id.clone()).or_default().push((
                            id.clone(),
                            counterparty.as_str().to_owned(),
                            entry.points,
                        ));
                        // Each side's id is unique within its member's ledger by construction;
                        // the pairing below checks the two sides across members.
                        None
                    }
                    _ => None,
                };
                if let Some(key) = business_key {
                    if let Some(other) = keys_paid.insert(key.clone(), id.clone()) {
                        return fail(format!("{key} was paid to {other} and to {id}"));
                    }
                }
                if let Source::Subscription {
                    subscription_id,
                    period,
                } = &entry.source
                {
                    let charge = loyalty_core::subscriptions::charge_id(subscription_id, *period);
                    let paid = world.payments().succeeded_for(&charge);
                    if paid != 1 {
                        return fail(format!(
                            "{id}: bonus for {charge} with {paid} successful payments"
                        ));
                    }
                }
            }
            self.check_counters(id, &member, &entries, &program)?;
            self.check_tier(id, &member, &entries, &program, now)?;
        }
        check_transfers_conserve(&transfers)?;
        for (request, payment) in world.payments().payments() {
            let paid = world.payments().succeeded_for(&request.charge_id);
            if paid > 1 {
                return fail(format!(
                    "{} was charged {paid} times (last {})",
                    request.charge_id, payment.id
                ));
            }
        }
        for reward in program
            .document
            .rewards
            .iter()
            .filter(|r| r.stock.is_some())
        {
            let used = world
                .inner_store()
                .stock_used(std::slice::from_ref(&reward.reward_id))
                .await
                .map_err(|e| e.to_string())?
                .get(&reward.reward_id)
                .copied()
                .unwrap_or(0);
            let entries = redeemed
                .get(reward.reward_id.as_str())
                .copied()
                .unwrap_or(0);
            if used != entries || Some(used) > reward.stock {
                return fail(format!(
                    "reward {}: stock used {used}, redemptions {entries}, stock {:?}",
                    reward.reward_id, reward.stock
                ));
            }
        }
        self.campaigns = world
            .inner_store()
            .records_of(
                loyalty_core::campaigns::RECORD_KIND,
                loyalty_core::campaigns::RECORD_OWNER,
                1_000,
            )
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let mut names = BTreeSet::new();
        for id in &self.campaigns {
            let campaign = ops::campaign(app, id).await.map_err(|e| e.message)?;
            if !names.insert(campaign["name"].to_string()) {
                return fail(format!(
                    "campaign {} was created twice (a retried create)",
                    campaign["name"]
                ));
            }
            let (granted, points) = campaign_totals.get(id).copied().unwrap_or_default();
            let counted = (
                campaign["granted"].as_u64().unwrap_or(u64::MAX),
                campaign["points_granted"].as_i64().unwrap_or(-1),
            );
            if counted != (granted, points) {
                return fail(format!(
                    "campaign {id} counts {counted:?} granted but the ledger holds {:?}",
                    (granted, points)
                ));
            }
            if campaign["budget_points"]
                .as_i64()
                .is_some_and(|budget| points > budget)
            {
                return fail(format!("campaign {id} granted {points} over its budget"));
            }
        }
        Ok(())
    }

    fn check_counters(
        &self,
        id: &str,
        member: &Member,
        entries: &[LedgerEntry],
        program: &ActiveProgram,
    ) -> Result<(), Violation> {
        for rule in &program.document.actions {
            let Some(cap) = rule.cap else { continue };
            let mut per_period: BTreeMap<String, u32> = BTreeMap::new();
            for entry in entries {
                if matches!(&entry.source, Source::Action { action, .. } if *action == rule.action)
                {
                    *per_period
                        .entry(model::period(cap.per, entry.occurred_at))
                        .or_default() += 1;
                }
            }
            if let Some((period, count)) = per_period.iter().find(|(_, c)| **c > cap.count) {
                return fail(format!(
                    "{id}: '{}' paid {count} times in {period}; the cap is {}",
                    rule.action, cap.count
                ));
            }
            for (period, counted) in member
                .action_counts
                .get(rule.action.as_str())
                .into_iter()
                .flatten()
            {
                let paid = per_period.get(period).copied().unwrap_or(0);
                if *counted != paid {
                    return fail(format!(
                        "{id}: '{}' counter for {period} is {counted} but the ledger holds {paid}",
                        rule.action
                    ));
                }
            }
        }
        let mut names = BTreeSet::new();
        if let Some(twice) = self.promotions.iter().find(|p| !names.insert(&p.name)) {
            return fail(format!(
                "promotion '{}' was created twice (a retried create)",
                twice.name
            ));
        }
        for promotion in &self.promotions {
            let rule = format!("promotion:{}", promotion.promotion_id);
            let used = entries
                .iter()
                .filter(|e| {
                    e.entry_type == EntryType::Earn && e.breakdown.iter().any(|l| l.rule == rule)
                })
                .count() as u32;
            if let Some(limit) = promotion.per_member_limit {
                if used > limit {
                    return fail(format!(
                        "{id}: promotion {} used {used} times; the limit is {limit}",
                        promotion.promotion_id
                    ));
                }
            }
            if let Some(counted) = member.promotion_uses.get(&promotion.promotion_id) {
                if counted.count != used {
                    return fail(format!(
                        "{id}: promotion {} counter {} but the ledger holds {used}",
                        promotion.promotion_id, counted.count
                    ));
                }
            }
        }
        for reward in &program.document.rewards {
            let of_reward = |e: &&LedgerEntry| match &e.source {
                Source::Redemption { reward_id, .. } => *reward_id == reward.reward_id,
                _ => false,
            };
            let given_back = |e: &&LedgerEntry| match &e.source {
                Source::RedemptionReversal { reward_id, .. } => *reward_id == reward.reward_id,
                _ => false,
            };
            let used = (entries.iter().filter(of_reward).count()
                - entries.iter().filter(given_back).count()) as u32;
            let counted = member
                .reward_counts
                .get(reward.reward_id.as_str())
                .copied()
                .unwrap_or(0);
            if counted != used || reward.per_member_limit.is_some_and(|limit| used > limit) {
                return fail(format!(
                    "{id}: reward {} counted {counted}, redeemed {used}, limit {:?}",
                    reward.reward_id, reward.per_member_limit
                ));
            }
        }
        Ok(())
    }

    /// The tier is never below the one the qualifying history earns, nor below a floor in force.
    fn check_tier(
        &self,
        id: &str,
        member: &Member,
        entries: &[LedgerEntry],
        program: &ActiveProgram,
        now: DateTime<Utc>,
    ) -> Result<(), Violation> {
        let tiers = &program.document.tiers;
        let rank = tiers
            .rank(&member.tier)
            .ok_or_else(|| format!("{id}: tier '{}' is not on the ladder", member.tier))?;
        if tiers.window != WindowKind::Rolling12Months {
            return Ok(());
        }
        let today = now.date_naive();
        let from = today - Days::new(365);
        // Returns take back their order's share of its qualifying spend, rounded down.
        let mut returned: BTreeMap<String, i64> = BTreeMap::new();
        for entry in entries {
            if let Source::Return {
                order_id, amount, ..
            } = &entry.source
            {
                *returned.entry(order_id.as_str().to_owned()).or_default() += amount.minor;
            }
        }
        let qualifying: i64 = entries
            .iter()
            .filter_map(|e| {
                let (order, paid) = amount_of(e)?;
                let day = e.occurred_at.min(e.recorded_at).date_naive();
                if day < from || day > today {
                    return None;
                }
                let back = returned.get(&order).copied().unwrap_or(0);
                self.accepted.get(&(id.to_owned(), order)).map(|p| {
                    let spend = model::qualifying_spend(program, p);
                    spend - (i128::from(spend) * i128::from(back) / i128::from(paid.max(1))) as i64
                })
            })
            .sum();
        let earned = tiers
            .levels
            .iter()
            .rposition(|l| l.threshold <= qualifying)
            .unwrap_or(0);
        let floor = [
            &member.tier_state.manual_floor,
            &member.tier_state.plan_floor,
        ]
        .into_iter()
        .flatten()
        .filter(|f| f.until > now)
        .filter_map(|f| tiers.rank(&f.tier))
        .max()
        .unwrap_or(0);
        if rank < earned.max(floor) {
            return fail(format!(
                "{id}: tier {} but qualifying {qualifying} earns {} (floor rank {floor})",
                member.tier, tiers.levels[earned].tier_id
            ));
        }
        Ok(())
    }

    /// After a tier evaluation of everyone: a member above the tier they earn is in grace.
    pub fn check_grace<S: Store>(
        &self,
        world: &World<S>,
        id: &str,
        member: &Member,
    ) -> Result<(), Violation> {
        let program = self.program()?;
        let tiers = &program.document.tiers;
        let entries = self.ledgers.get(id).cloned().unwrap_or_default();
        let now = world.now();
        let today = now.date_naive();
        let rank = tiers.rank(&member.tier).unwrap_or(0);
        let from = today - Days::new(365);
        let qualifying: i64 = entries
            .iter()
            .filter_map(|e| {
                let (order, _) = amount_of(e)?;
                let day = e.occurred_at.min(e.recorded_at).date_naive();
                (day >= from && day <= today)
                    .then(|| self.accepted.get(&(id.to_owned(), order)))
                    .flatten()
                    .map(|p| model::qualifying_spend(program, p))
            })
            .sum();
        let earned = tiers
            .levels
            .iter()
            .rposition(|l| l.threshold <= qualifying)
            .unwrap_or(0);
        let floor = [
            &member.tier_state.manual_floor,
            &member.tier_state.plan_floor,
        ]
        .into_iter()
        .flatten()
        .filter(|f| f.until > now)
        .filter_map(|f| tiers.rank(&f.tier))
        .max()
        .unwrap_or(0);
        if rank > earned.max(floor) {
            let grace = u64::from(tiers.levels[rank].grace_days);
            let in_grace = member
                .tier_state
                .below_since
                .is_some_and(|since| since == today || today < since + Days::new(grace));
            if !in_grace {
                return fail(format!(
                    "{id}: holds {} after evaluation though qualifying {qualifying} earns {} and grace is over (below since {:?})",
                    member.tier, tiers.levels[earned].tier_id, member.tier_state.below_since
                ));
            }
        }
        Ok(())
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn campaign_ids(&self) -> Vec<String> {
        self.campaigns.iter().cloned().collect()
    }

    /// At the end: every referral is settled the way its members' ledgers say it should be.
    pub async fn check_referrals<S: Store>(&self, world: &World<S>) -> Result<(), Violation> {
        let program = self.program()?;
        let policy = &program.document.referrals;
        for (id, member) in &self.members {
            if member.referred_by.is_none() {
                continue;
            }
            let referral_id =
                loyalty_core::referrals::referral_id(&member.member_id, member.enrolled_at);
            let record = world
                .inner_store()
                .record(loyalty_core::referrals::KIND, &referral_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{id} was referred but has no referral record"))?;
            let referral: Referral = record.parse().map_err(|e| e.to_string())?;
            let referrer = referral.referrer_id.as_str().to_owned();
            let paid = |who: &str, role: &str| {
                self.has_entry(who, &format!("referral:{referral_id}:{role}"))
            };
            let rewarded = referral.status == ReferralStatus::Rewarded;
            // Each side's bonus exists exactly when the referral was rewarded (and pays points).
            let consistent = |paid: bool, points: i64| paid == (rewarded && points > 0);
            if !consistent(paid(&referrer, "referrer"), policy.referrer_points)
                || !consistent(paid(id, "referee"), policy.referee_points)
            {
                return fail(format!(
                    "referral {referral_id} is {:?} but its bonuses say otherwise",
                    referral.status
                ));
            }
            // The order a referee enrols on may be stamped a moment before the enrolment.
            let grace_start = member.enrolled_at - CHECKOUT_GRACE;
            let first = self.ledgers.get(id).into_iter().flatten().find(|e| {
                matches!(&e.source, Source::Order { amount, .. } if policy.qualifies(amount))
                    && e.occurred_at >= grace_start
            });
            let qualified = first.is_some_and(|e| e.recorded_at <= referral.expires_at);
            let same_email = match (
                self.emails.get(id).cloned().flatten(),
                self.emails.get(&referrer).cloned().flatten(),
            ) {
                (Some(a), Some(b)) => normalise(&a) == normalise(&b),
                _ => false,
            };
            let justified = match (referral.status, referral.reason) {
                (ReferralStatus::Rewarded, _) => qualified && !same_email,
                (ReferralStatus::Rejected, Some(RejectReason::SelfReferral)) => same_email,
                (
                    ReferralStatus::Rejected,
                    Some(RejectReason::MonthlyCapReached | RejectReason::DailyVelocityExceeded),
                ) => qualified && self.referrer_capped(&referrer, &referral),
                (ReferralStatus::Expired, _) => !qualified,
                (ReferralStatus::Pending, _) => false,
                _ => false,
            };
            if !justified {
                return fail(format!(
                    "referral {referral_id} ({referrer} → {id}) ended {:?} {:?}; qualifying purchase: {:?}",
                    referral.status,
                    referral.reason,
                    first.map(|e| (&e.entry_id, e.occurred_at, e.recorded_at, member.enrolled_at))
                ));
            }
        }
        Ok(())
    }

    fn referrer_capped(&self, referrer: &str, referral: &Referral) -> bool {
        let Some(decided) = referral.decided_at else {
            return false;
        };
        let Some(program) = self.program.as_ref() else {
            return false;
        };
        let policy = &program.document.referrals;
        let rewards: Vec<&LedgerEntry> = self
            .ledgers
            .get(referrer)
            .into_iter()
            .flatten()
            .filter(|e| matches!(&e.source, Source::Referral { role, .. } if role == "referrer"))
            .filter(|e| e.occurred_at <= decided)
            .collect();
        let month = rewards
            .iter()
            .filter(|e| {
                e.occurred_at.format("%Y-%m").to_string() == decided.format("%Y-%m").to_string()
            })
            .count() as u32;
        let day = rewards
            .iter()
            .filter(|e| e.occurred_at.date_naive() == decided.date_naive())
            .count() as u32;
        month >= policy.monthly_cap || day >= policy.daily_velocity
    }

    /// At the end, with every queue drained: a dispatched campaign has an outcome for each member
    /// it targeted, and skipped members only when the budget could not pay them.
    pub async fn check_campaigns<S: Store>(&self, world: &World<S>) -> Result<(), Violation> {
        for id in &self.campaigns {
            let c = ops::campaign(&world.envs[0], id)
                .await
                .map_err(|e| e.message)?;
            let number = |field: &str| c[field].as_i64().unwrap_or(0);
            if c["status"] != "dispatched" {
                return fail(format!(
                    "campaign {id} is {} after every queue drained",
                    c["status"]
                ));
            }
            if number("granted") + number("skipped") + number("failed") != number("targeted") {
                return fail(format!(
                    "campaign {id}: outcomes do not add up to its audience: {c}"
                ));
            }
            if number("skipped") > 0
                && c["budget_points"]
                    .as_i64()
                    .is_none_or(|b| number("points_granted") + number("points") <= b)
            {
                return fail(format!(
                    "campaign {id} skipped members with budget left: {c}"
                ));
            }
        }
        Ok(())
    }
}

/// How late an event may be reported (issue 12's `late_events_days`, default 30) and how long
/// before enrolment the order a member enrols on may be stamped (the checkout grace, 5 minutes).
const LATE_EVENTS: Duration = Duration::days(30);
const CHECKOUT_GRACE: Duration = Duration::minutes(5);

/// An accrual outside the lateness window should have been refused with
/// `occurred_at_out_of_range`.
fn check_lateness(id: &str, prior: &Member, entry: &LedgerEntry) -> Result<(), Violation> {
    if entry.occurred_at < entry.recorded_at - LATE_EVENTS
        || entry.occurred_at < prior.enrolled_at - CHECKOUT_GRACE
    {
        return fail(format!(
            "{id}: {} dated {} was paid on {} (enrolled {}); it is outside the late-events window",
            entry.entry_id, entry.occurred_at, entry.recorded_at, prior.enrolled_at
        ));
    }
    Ok(())
}

fn normalise(email: &str) -> String {
    let email = email.trim().to_lowercase();
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split('+').next().unwrap_or(local).replace('.', "");
            format!("{local}@{domain}")
        }
        None => email,
    }
}

/// No order gives back more than it earned: per order and rule, what its returns took back
/// (a forgiven part under `cap_at_balance` included) never exceeds what the line earned.
fn check_returns(id: &str, entries: &[LedgerEntry]) -> Result<(), Violation> {
    let mut earned: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut taken: BTreeMap<(String, String), i64> = BTreeMap::new();
    for entry in entries {
        match &entry.source {
            Source::Order { order_id, .. } => {
                for line in &entry.breakdown {
                    *earned
                        .entry((order_id.as_str().to_owned(), line.rule.clone()))
                        .or_default() += line.points;
                }
            }
            Source::Return { order_id, .. } => {
                for line in entry.breakdown.iter().filter(|l| {
                    !l.rule.starts_with("return_policy:") && !l.rule.starts_with("referral:")
                }) {
                    *taken
                        .entry((order_id.as_str().to_owned(), line.rule.clone()))
                        .or_default() -= line.points;
                }
            }
            _ => {}
        }
    }
    for (line, back) in &taken {
        let paid = earned.get(line).copied().unwrap_or(0);
        if *back > paid || *back < 0 {
            return fail(format!(
                "{id}: order {} took back {back} on {} which earned {paid}",
                line.0, line.1
            ));
        }
    }
    Ok(())
}

/// Every transfer has exactly one side in each of its two members' ledgers, each naming the
/// other, and the two sides sum to zero: transfers move points, never make or lose them.
fn check_transfers_conserve(
    transfers: &BTreeMap<String, Vec<(String, String, i64)>>,
) -> Result<(), Violation> {
    for (transfer_id, sides) in transfers {
        let paired = match sides.as_slice() {
            [(a, a_other, a_points), (b, b_other, b_points)] => {
                a == b_other && b == a_other && a != b && a_points + b_points == 0
            }
            _ => false,
        };
        if !paired {
            return fail(format!(
                "transfer {transfer_id} does not conserve points: sides {sides:?}"
            ));
        }
    }
    Ok(())
}

/// The expired bucket is the sum of the expire entries, and (every point of a run being dated:
/// its program expires points from the start) the lots are the available balance, few and
/// each positive.
fn check_expiry(id: &str, member: &Member, entries: &[LedgerEntry]) -> Result<(), Violation> {
    let expired: i64 = -entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Expire)
        .map(|e| e.points)
        .sum::<i64>();
    if member.balance.expired != expired {
        return fail(format!(
            "{id}: the expired bucket is {} but its expire entries sum to {expired}",
            member.balance.expired
        ));
    }
    let lots = member.expiry.total();
    if lots != member.balance.available.max(0) {
        return fail(format!(
            "{id}: lots {:?} sum to {lots}, the available balance is {}",
            member.expiry.lots, member.balance.available
        ));
    }
    if let Some((month, lot)) = member.expiry.lots.iter().find(|(_, lot)| lot.points <= 0) {
        return fail(format!("{id}: lot {month} holds {} points", lot.points));
    }
    // One month's expiry: the current month's lot, last month's, and one a run may not have
    // reached yet; as many for campaign bonuses.
    if member.expiry.lots.len() > 6 {
        return fail(format!("{id}: {} lots", member.expiry.lots.len()));
    }
    Ok(())
}

fn check_balances(id: &str, member: &Member, entries: &[LedgerEntry]) -> Result<(), Violation> {
    // Pending points (earned inside a return window) are in the ledger's points but not yet in
    // `available`: each entry says how much of it moved the pending bucket.
    let sum: i64 = entries.iter().map(LedgerEntry::available_change).sum();
    let pending: i64 = entries
        .iter()
        .filter_map(|e| e.pending)
        .map(|p| p.points)
        .sum();
    if member.balance.pending != pending || member.pending_lots.total() != pending || pending < 0 {
        return fail(format!(
            "{id}: pending bucket {} and lots {:?} do not match the ledger's pending moves {pending}",
            member.balance.pending, member.pending_lots
        ));
    }
    let earned: i64 = entries
        .iter()
        .filter(|e| matches!(e.entry_type, EntryType::Earn | EntryType::Bonus))
        .map(|e| e.points)
        .sum();
    // Redemptions given back (canceled, released, refunded) are no longer redeemed.
    let given_back: i64 = entries
        .iter()
        .filter(|e| matches!(e.source, Source::RedemptionReversal { .. }))
        .map(|e| e.points)
        .sum();
    let redeemed: i64 = -entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Redeem)
        .map(|e| e.points)
        .sum::<i64>()
        - given_back;
    let balance = member.balance;
    // Held points are already out of `available` and are part of what was redeemed: a hold is
    // never spendable twice, and its reservation never outlives it.
    if balance.reserved < 0 || balance.reserved > balance.lifetime_redeemed {
        return fail(format!(
            "{id}: reserved {} outside 0..=lifetime_redeemed {}",
            balance.reserved, balance.lifetime_redeemed
        ));
    }
    // Each redemption is given back at most once, and only one that was made.
    let mut reversed = std::collections::BTreeSet::new();
    for entry in entries {
        if let Source::RedemptionReversal { redemption_id, .. } = &entry.source {
            let redeemed_for = entries.iter().find(
                |e| matches!(&e.source, Source::Redemption { redemption_id: r, .. } if r == redemption_id),
            );
            if !reversed.insert(redemption_id.clone())
                || redeemed_for.is_none_or(|r| r.points != -entry.points)
            {
                return fail(format!(
                    "{id}: redemption {redemption_id} given back twice or not as redeemed"
                ));
            }
        }
    }
    if balance.available != sum
        || balance.lifetime_earned != earned
        || balance.lifetime_redeemed != redeemed
        || entries.last().map_or(0, |e| e.balance_after) != sum
        || member.last_seq != entries.len() as u64
    {
        return fail(format!(
            "{id}: balance {balance:?} (last_seq {}) does not match its ledger: sum {sum}, earned {earned}, redeemed {redeemed}, {} entries",
            member.last_seq,
            entries.len()
        ));
    }
    if let Some(negative) = entries.iter().find(|e| e.balance_after < 0) {
        return fail(format!(
            "{id}: balance went negative at {}",
            negative.entry_id
        ));
    }
    Ok(())
}

/// Nothing committed goes unannounced: once the outbox has relayed the whole change feed, every
/// ledger entry has its `points.*` event and every tier-history line its `tier.changed` event,
/// whatever crashed between a commit and the outbox. Redelivery repeats an event with its id,
/// never with other content.
pub async fn check_announced<S: Store>(world: &World<S>, members: &[String]) -> Result<(), String> {
    let mut announced: BTreeMap<String, String> = BTreeMap::new();
    for body in world.events.sent() {
        let event: Value =
            serde_json::from_str(&body).map_err(|e| format!("an event is not JSON: {e}"))?;
        let id = event["event_id"]
            .as_str()
            .ok_or_else(|| format!("an event without an id: {body}"))?
            .to_owned();
        if let Some(earlier) = announced.get(&id) {
            if *earlier != body {
                return Err(format!(
                    "event {id} was sent with two contents:\n  {earlier}\n  {body}"
                ));
            }
        }
        announced.insert(id, body);
    }
    let app = &world.envs[0];
    for id in members {
        let member = member_id(id);
        for entry in app.audited_ledger(&member).await? {
            let event_id = format!("entry:{id}:{}", entry.entry_id);
            if !announced.contains_key(&event_id) {
                return Err(format!(
                    "{id}: entry {} ({:?}) was committed but never announced",
                    entry.entry_id, entry.entry_type
                ));
            }
        }
        let mut cursor: Option<String> = None;
        loop {
            let page = app
                .tier_history(&member, Some(100), cursor.as_deref())
                .await
                .map_err(|e| e.message)?;
            for change in &page.changes {
                let event_id = format!(
                    "tier:{id}:{}:{}",
                    change.to_tier,
                    change.evaluated_at.timestamp_millis()
                );
                if !announced.contains_key(&event_id) {
                    return Err(format!(
                        "{id}: tier change {} → {} at {} was committed but never announced",
                        change.from_tier, change.to_tier, change.evaluated_at
                    ));
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(())
}
