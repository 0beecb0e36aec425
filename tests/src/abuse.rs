//! The abuse table: scripted attempts to mint points at the ledger's edges (late events, reused
//! orders, retried creates, a stale catalog), each a [`Row`] of [`Step`]s with the status and
//! code every step must get and what every member's ledger may have moved by the end.
//!
//! Rows are data, run by [`World::run`] against any store: `tests/tests/abuse.rs` runs them on
//! DynamoDB Local, and the simulator can replay them as workloads (through its fault-injecting
//! ports) since a row names only members, keys, bodies and instants.
//!
//! A [`World`] is two execution environments over one store — `admin` (the rewards function:
//! admin creates) and `edge` (members, accrue, redeem) — each with its own program cache, as
//! deployed Lambda functions have; a manual clock; and in-memory queues for campaign dispatch,
//! campaign grants and referrals, drained by steps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use loyalty_core::campaigns::{DispatchMessage, GrantMessage};
use loyalty_core::clock::{Clock, ManualClock};
use loyalty_core::commands::EnrolRequest;
use loyalty_core::events::MemoryQueue;
use loyalty_core::ids::{IdempotencyKey, MemberId};
use loyalty_core::ports::{MessageQueue, Store, StoreError};
use loyalty_core::service::{parse_body, Outcome};
use loyalty_core::{ApiError, App, Points};
use serde_json::{json, Value};

/// What a step must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Written now (201, or 202 for a campaign).
    Created,
    /// The first response again, with `Idempotent-Replayed: true`.
    Replayed,
    /// Refused with this status and error code; nothing written.
    Refused(u16, &'static str),
}

/// One scripted request or event. Members are named by alias; an enrolment without a member id
/// binds its alias to the id the engine chose.
#[derive(Debug, Clone)]
pub enum Step {
    /// Moves the clock to an RFC 3339 instant.
    At(&'static str),
    /// Sets a top-level program field (e.g. `late_events_days`) by publishing a new version.
    Setting(&'static str, Value),
    /// Adds an action rule to the program.
    AddAction {
        action: &'static str,
        points: Points,
        cap: u32,
        per: &'static str,
    },
    Enrol {
        alias: &'static str,
        /// The member id to ask for; `None` lets the engine choose (or derive it from the key).
        member_id: Option<&'static str>,
        referred_by: Option<&'static str>,
        email: Option<&'static str>,
        key: Option<&'static str>,
        expect: Expect,
    },
    Purchase {
        member: &'static str,
        key: &'static str,
        order: &'static str,
        minor: i64,
        at: Option<&'static str>,
        expect: Expect,
    },
    Action {
        member: &'static str,
        key: &'static str,
        action: &'static str,
        reference: &'static str,
        at: Option<&'static str>,
        expect: Expect,
    },
    Redeem {
        member: &'static str,
        key: &'static str,
        reward: &'static str,
        expect: Expect,
    },
    /// Returns `minor` of `order` (the rest of it when `None`).
    Return {
        member: &'static str,
        key: &'static str,
        order: &'static str,
        return_id: &'static str,
        minor: Option<i64>,
        expect: Expect,
    },
    /// Customer service adjusts a member's points; `reason: None` sends none.
    Adjust {
        member: &'static str,
        key: &'static str,
        points: Points,
        reason: Option<&'static str>,
        expect: Expect,
    },
    /// A two-phase redemption: the points are held until the till uses the code.
    Hold {
        member: &'static str,
        key: &'static str,
        reward: &'static str,
        expect: Expect,
    },
    /// The till uses the code of the redemption made under `redemption` (its key).
    UseCode {
        redemption: &'static str,
        expect: Expect,
    },
    /// Cancels the code of the redemption made under `redemption`; `by` a member token of that
    /// alias, or staff when `None`.
    CancelCode {
        redemption: &'static str,
        by: Option<&'static str>,
        expect: Expect,
    },
    /// The code sweep runs once: plans from the due index and settles every batch.
    SweepCodes,
    /// `from` gives `points` to `to`.
    Transfer {
        from: &'static str,
        to: &'static str,
        key: &'static str,
        points: Points,
        expect: Expect,
    },
    CreatePromotion {
        key: Option<&'static str>,
        body: Value,
        expect: Expect,
    },
    CreateReward {
        key: Option<&'static str>,
        body: Value,
        expect: Expect,
    },
    CreateCampaign {
        key: Option<&'static str>,
        members: Vec<&'static str>,
        points: Points,
        expect: Expect,
    },
    /// The next send to the campaign dispatch queue fails (the message is lost).
    LoseNextDispatch,
    /// Runs every queued campaign dispatch step and grant message until both queues are empty.
    DeliverCampaigns,
    /// Hands every queued referral message to the referral worker.
    DeliverReferrals,
    /// The edge environment reads (and caches) the program and the promotion list now.
    WarmEdgeCaches,
    /// Runs the steps concurrently.
    Parallel(Vec<Step>),
}

/// A scripted attempt and what the rules allow it.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    pub steps: Vec<Step>,
    /// Every member's ledger total at the end (welcome bonus included): the sum of its entries,
    /// which must also be its available balance.
    pub moved: Vec<(&'static str, Points)>,
}

/// A campaign dispatch queue whose next sends can be made to fail.
#[derive(Debug, Default)]
pub struct LossyQueue {
    pub inner: MemoryQueue,
    lose: AtomicU32,
}

impl LossyQueue {
    pub fn lose_next(&self) {
        self.lose.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl MessageQueue for LossyQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), StoreError> {
        let lost = self
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(StoreError("injected: the dispatch message was lost".into()));
        }
        self.inner.send(bodies).await
    }
}

/// Two environments over one store, a manual clock and in-memory queues.
pub struct World<S> {
    pub admin: App<S>,
    pub edge: App<S>,
    /// The outbox function's environment: what the others commit is announced from here.
    outbox: App<S>,
    stream: crate::stream_relay::StreamRelay,
    pub clock: Arc<ManualClock>,
    pub dispatch: Arc<LossyQueue>,
    pub grants: Arc<MemoryQueue>,
    pub referrals: Arc<MemoryQueue>,
    aliases: Mutex<BTreeMap<&'static str, MemberId>>,
    /// The code each redemption key got.
    codes: Mutex<BTreeMap<&'static str, String>>,
}

/// The instant rows start at unless they move the clock first.
pub const START: &str = "2026-11-20T12:00:00Z";

fn instant(raw: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(raw)
        .unwrap_or_else(|e| panic!("row instant '{raw}': {e}"))
        .with_timezone(&Utc)
}

fn idempotency_key(raw: &str) -> IdempotencyKey {
    IdempotencyKey::parse(raw).unwrap_or_else(|e| panic!("row key '{raw}': {e}"))
}

/// What a step got back, as the HTTP layer would answer it.
fn got(result: &Result<Outcome, ApiError>) -> Expect {
    match result {
        Ok(Outcome::Created(_) | Outcome::Simulated(_)) => Expect::Created,
        Ok(Outcome::Replayed(_)) => Expect::Replayed,
        Err(error) => Expect::Refused(error.status(), error.code.as_str()),
    }
}

impl<S: Store> World<S> {
    /// `environment` builds one App over the shared store with the given clock; it is called
    /// twice (admin, edge).
    pub fn new(
        environment: impl Fn(Arc<dyn Clock>) -> App<S>,
        stream: crate::stream_relay::StreamRelay,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(instant(START)));
        let dispatch = Arc::new(LossyQueue::default());
        let grants = Arc::new(MemoryQueue::default());
        let referrals = Arc::new(MemoryQueue::default());
        let admin = environment(clock.clone()).with_campaign_dispatch(dispatch.clone());
        let edge = environment(clock.clone()).with_referral_queue(referrals.clone());
        let outbox = environment(clock.clone())
            .with_campaign_dispatch(dispatch.clone())
            .with_referral_queue(referrals.clone());
        Self {
            admin,
            edge,
            outbox,
            stream,
            clock,
            dispatch,
            grants,
            referrals,
            aliases: Mutex::new(BTreeMap::new()),
            codes: Mutex::new(BTreeMap::new()),
        }
    }

    fn member(&self, alias: &str) -> MemberId {
        self.aliases
            .lock()
            .map(|a| a.get(alias).cloned())
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no member enrolled as '{alias}'"))
    }

    /// Runs `row` and checks it: every step's answer, then every member's ledger. The error
    /// names the row, the step and what differed.
    pub async fn run(&self, row: &Row) -> Result<(), String> {
        for (i, step) in row.steps.iter().enumerate() {
            // What the last step committed is announced first, as the stream would by now.
            self.relay()
                .await
                .map_err(|why| format!("{}: before step {i}: {why}", row.name))?;
            self.step(step)
                .await
                .map_err(|why| format!("{}: step {i} ({step:?}): {why}", row.name))?;
        }
        self.relay().await?;
        self.audit(row).await
    }

    /// The outbox relays the table's stream (a failed record is delivered again).
    async fn relay(&self) -> Result<(), String> {
        self.stream
            .relay_retrying(&self.outbox, 5)
            .await
            .map(|_| ())
    }

    async fn audit(&self, row: &Row) -> Result<(), String> {
        let aliases = self.aliases.lock().map(|a| a.clone()).unwrap_or_default();
        let expected: BTreeMap<&str, Points> = row.moved.iter().copied().collect();
        for (alias, id) in &aliases {
            let Some(want) = expected.get(alias) else {
                return Err(format!("{}: member '{alias}' is not in `moved`", row.name));
            };
            let entries = self.edge.audited_ledger(id).await?;
            let total: Points = entries.iter().map(|e| e.points).sum();
            let member = self
                .edge
                .store()
                .member(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("member '{alias}' vanished"))?;
            if total != *want || member.balance.available != *want {
                return Err(format!(
                    "{}: '{alias}' ledger moved {total} (balance {}), the rules allow {want}",
                    row.name, member.balance.available
                ));
            }
        }
        for alias in expected.keys() {
            if !aliases.contains_key(alias) {
                return Err(format!("{}: '{alias}' was never enrolled", row.name));
            }
        }
        Ok(())
    }

    fn code(&self, redemption: &str) -> String {
        self.codes
            .lock()
            .map(|c| c.get(redemption).cloned())
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no code redeemed under '{redemption}'"))
    }

    /// Remembers the code a redemption made under `key` got.
    fn keep_code(&self, key: &'static str, result: &Result<Outcome, ApiError>) {
        if let Ok(Outcome::Created(body) | Outcome::Replayed(body)) = result {
            if let (Some(code), Ok(mut codes)) = (body["code"].as_str(), self.codes.lock()) {
                codes.insert(key, code.to_owned());
            }
        }
    }

    /// A code route's answer, as a keyed write's would be (an answered 200 is `Created`).
    fn check_code<T: std::fmt::Debug>(
        want: Expect,
        result: Result<T, ApiError>,
    ) -> Result<(), String> {
        let answer = match &result {
            Ok(_) => Expect::Created,
            Err(error) => Expect::Refused(error.status(), error.code.as_str()),
        };
        if answer == want {
            Ok(())
        } else {
            Err(format!("expected {want:?}, got {answer:?}: {result:?}"))
        }
    }

    fn check(want: Expect, result: &Result<Outcome, ApiError>) -> Result<(), String> {
        let answer = got(result);
        if answer == want {
            Ok(())
        } else {
            Err(format!("expected {want:?}, got {answer:?}: {result:?}"))
        }
    }

    fn step<'a>(&'a self, step: &'a Step) -> StepFuture<'a>
    where
        S: Send + Sync,
    {
        Box::pin(async move {
            match step {
                Step::At(at) => {
                    self.clock.set(instant(at));
                    Ok(())
                }
                Step::Setting(field, value) => {
                    self.edit_program(|doc| doc[*field] = value.clone()).await
                }
                Step::AddAction {
                    action,
                    points,
                    cap,
                    per,
                } => {
                    let rule = json!({
                        "action": action, "points": points, "description": format!("{action} (abuse table)"),
                        "cap": { "count": cap, "per": per },
                    });
                    self.edit_program(|doc| {
                        if let Some(actions) = doc["actions"].as_array_mut() {
                            actions.push(rule.clone());
                        }
                    })
                    .await
                }
                Step::Enrol {
                    alias,
                    member_id,
                    referred_by,
                    email,
                    key,
                    expect,
                } => {
                    let mut body = json!({});
                    if let Some(id) = member_id {
                        body["member_id"] = json!(id);
                    }
                    if let Some(email) = email {
                        body["email"] = json!(email);
                    }
                    if let Some(referrer) = referred_by {
                        let referrer = self.member(referrer);
                        let code = self
                            .edge
                            .store()
                            .member(&referrer)
                            .await
                            .map_err(|e| e.to_string())?
                            .ok_or("referrer vanished")?
                            .referral_code;
                        body["referral_code"] = json!(code.as_str());
                    }
                    let request: EnrolRequest = parse_body(&body).map_err(|e| e.to_string())?;
                    let result = self
                        .edge
                        .enrol_with_key(request, key.map(idempotency_key))
                        .await;
                    Self::check(*expect, &result)?;
                    if let Ok(Outcome::Created(view) | Outcome::Replayed(view)) = &result {
                        let id = view["member_id"]
                            .as_str()
                            .and_then(|raw| MemberId::parse(raw).ok())
                            .ok_or("enrolment answered no member id")?;
                        let mut aliases = self.aliases.lock().map_err(|e| e.to_string())?;
                        if let Some(known) = aliases.get(alias) {
                            if known != &id {
                                return Err(format!(
                                    "'{alias}' was {known}, the retry answered {id}"
                                ));
                            }
                        }
                        aliases.insert(alias, id);
                    }
                    Ok(())
                }
                Step::Purchase {
                    member,
                    key,
                    order,
                    minor,
                    at,
                    expect,
                } => {
                    let mut body = json!({
                        "kind": "purchase", "order_id": order,
                        "amount": { "minor": minor, "currency": "USD" },
                    });
                    if let Some(at) = at {
                        body["occurred_at"] = json!(at);
                    }
                    let result = self
                        .edge
                        .accrue(
                            &self.member(member),
                            Some(idempotency_key(key)),
                            &body,
                            false,
                        )
                        .await;
                    Self::check(*expect, &result)
                }
                Step::Action {
                    member,
                    key,
                    action,
                    reference,
                    at,
                    expect,
                } => {
                    let mut body =
                        json!({ "kind": "action", "action": action, "reference": reference });
                    if let Some(at) = at {
                        body["occurred_at"] = json!(at);
                    }
                    let result = self
                        .edge
                        .accrue(
                            &self.member(member),
                            Some(idempotency_key(key)),
                            &body,
                            false,
                        )
                        .await;
                    Self::check(*expect, &result)
                }
                Step::Redeem {
                    member,
                    key,
                    reward,
                    expect,
                } => {
                    let result = self
                        .edge
                        .redeem(
                            &self.member(member),
                            Some(idempotency_key(key)),
                            &json!({ "reward_id": reward }),
                        )
                        .await;
                    self.keep_code(key, &result);
                    Self::check(*expect, &result)
                }
                Step::Hold {
                    member,
                    key,
                    reward,
                    expect,
                } => {
                    let result = self
                        .edge
                        .redeem(
                            &self.member(member),
                            Some(idempotency_key(key)),
                            &json!({ "reward_id": reward, "hold": true }),
                        )
                        .await;
                    self.keep_code(key, &result);
                    Self::check(*expect, &result)
                }
                Step::UseCode { redemption, expect } => {
                    let result = self.edge.use_code(&self.code(redemption)).await;
                    Self::check_code(*expect, result)
                }
                Step::CancelCode {
                    redemption,
                    by,
                    expect,
                } => {
                    let owner = by.map(|alias| self.member(alias));
                    let result = self
                        .edge
                        .cancel_code(&self.code(redemption), owner.as_ref())
                        .await;
                    Self::check_code(*expect, result)
                }
                Step::SweepCodes => {
                    let queue = MemoryQueue::default();
                    self.edge
                        .plan_code_sweep(&queue)
                        .await
                        .map_err(|e| format!("code sweep: {e:?}"))?;
                    for body in queue.take() {
                        self.edge
                            .settle_code_batch(&body)
                            .await
                            .map_err(|e| format!("code batch {body}: {e:?}"))?;
                    }
                    Ok(())
                }
                Step::Return {
                    member,
                    key,
                    order,
                    return_id,
                    minor,
                    expect,
                } => {
                    let mut body = json!({ "order_id": order, "return_id": return_id });
                    if let Some(minor) = minor {
                        body["amount"] = json!({ "minor": minor, "currency": "USD" });
                    }
                    let result = self
                        .edge
                        .return_order(&self.member(member), Some(idempotency_key(key)), &body)
                        .await;
                    Self::check(*expect, &result)
                }
                Step::Adjust {
                    member,
                    key,
                    points,
                    reason,
                    expect,
                } => {
                    let mut body = json!({ "points": points });
                    if let Some(reason) = reason {
                        body["reason"] = json!(reason);
                    }
                    let result = self
                        .admin
                        .adjust(
                            ADMIN,
                            &self.member(member),
                            Some(idempotency_key(key)),
                            &body,
                        )
                        .await;
                    Self::check(*expect, &result)
                }
                Step::Transfer {
                    from,
                    to,
                    key,
                    points,
                    expect,
                } => {
                    let result = self
                        .edge
                        .transfer(
                            &self.member(from),
                            Some(idempotency_key(key)),
                            &json!({ "to_member_id": self.member(to), "points": points }),
                        )
                        .await;
                    Self::check(*expect, &result)
                }
                Step::CreatePromotion { key, body, expect } => {
                    let result = self
                        .admin
                        .create_promotion(ADMIN, key.map(idempotency_key), body)
                        .await;
                    Self::check(*expect, &result)
                }
                Step::CreateReward { key, body, expect } => {
                    let result = self
                        .admin
                        .create_reward(ADMIN, key.map(idempotency_key), body)
                        .await;
                    Self::check(*expect, &result)
                }
                Step::CreateCampaign {
                    key,
                    members,
                    points,
                    expect,
                } => {
                    let ids: Vec<String> =
                        members.iter().map(|m| self.member(m).to_string()).collect();
                    let body = json!({
                        "name": "Abuse table campaign", "points": points,
                        "audience": { "member_ids": ids }, "reason": "abuse table",
                    });
                    let result = self
                        .admin
                        .create_campaign(ADMIN, key.map(idempotency_key), &body)
                        .await;
                    Self::check(*expect, &result)
                }
                Step::LoseNextDispatch => {
                    self.dispatch.lose_next();
                    Ok(())
                }
                Step::DeliverCampaigns => self.deliver_campaigns().await,
                Step::DeliverReferrals => {
                    for body in self.referrals.take() {
                        self.edge
                            .handle_referral_message(&body)
                            .await
                            .map_err(|e| format!("referral message {body}: {e:?}"))?;
                    }
                    Ok(())
                }
                Step::WarmEdgeCaches => {
                    self.edge.program().await.map_err(|e| e.to_string())?;
                    Ok(())
                }
                Step::Parallel(steps) => {
                    let results =
                        futures_join(steps.iter().map(|step| self.step(step)).collect()).await;
                    results.into_iter().collect()
                }
            }
        })
    }

    async fn deliver_campaigns(&self) -> Result<(), String> {
        loop {
            let steps = self.dispatch.inner.take();
            let grants = self.grants.take();
            if steps.is_empty() && grants.is_empty() {
                return Ok(());
            }
            for body in steps {
                let message: DispatchMessage =
                    serde_json::from_str(&body).map_err(|e| e.to_string())?;
                self.admin
                    .dispatch_campaign(&message, self.dispatch.as_ref(), self.grants.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            for body in grants {
                let message: GrantMessage =
                    serde_json::from_str(&body).map_err(|e| e.to_string())?;
                self.admin
                    .grant_campaign(&message, true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }

    async fn edit_program(&self, edit: impl FnOnce(&mut Value)) -> Result<(), String> {
        let current = self.admin.program().await.map_err(|e| e.to_string())?;
        let mut document = serde_json::to_value(&current.document).map_err(|e| e.to_string())?;
        edit(&mut document);
        self.admin
            .replace_program(ADMIN, document.to_string().as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A step running: boxed, because `Parallel` steps run steps.
type StepFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// Polls every future to completion, concurrently, on the current task.
async fn futures_join(futures: Vec<StepFuture<'_>>) -> Vec<Result<(), String>> {
    let mut set = futures;
    let mut results: Vec<Option<Result<(), String>>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, future) in set.iter_mut().enumerate() {
            if results[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(result) => results[i] = Some(result),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

// ---- the rows ------------------------------------------------------------------------------

/// The program manager the table's admin steps act as (recorded as `created_by`).
const ADMIN: &str = "abuse-admin";

const WELCOME: Points = 100;

fn enrol(alias: &'static str) -> Step {
    Step::Enrol {
        alias,
        member_id: Some(alias),
        referred_by: None,
        email: None,
        key: None,
        expect: Expect::Created,
    }
}

fn action(
    member: &'static str,
    key: &'static str,
    action: &'static str,
    at: &'static str,
    expect: Expect,
) -> Step {
    Step::Action {
        member,
        key,
        action,
        reference: key,
        at: Some(at),
        expect,
    }
}

fn purchase(
    member: &'static str,
    order: &'static str,
    minor: i64,
    at: Option<&'static str>,
    expect: Expect,
) -> Step {
    Step::Purchase {
        member,
        key: order,
        order,
        minor,
        at,
        expect,
    }
}

/// Leaks a generated string for the rows' `'static` fields (a row table is built once).
fn name(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

const LATE: Expect = Expect::Refused(422, "occurred_at_out_of_range");
const CAPPED: Expect = Expect::Refused(409, "action_limit_reached");

/// Every row of the table.
pub fn rows() -> Vec<Row> {
    vec![
        backdated_actions_do_not_bypass_a_cap(),
        events_before_enrolment_do_not_earn(),
        an_ended_promotion_pays_at_most_its_limit(),
        one_order_earns_for_one_member(),
        the_order_a_referee_enrols_on_is_their_first_purchase(),
        a_reward_created_a_moment_ago_is_redeemable_at_once(),
        a_promotion_created_a_moment_ago_applies_to_the_next_accrual(),
        a_retried_campaign_pays_its_audience_once(),
        a_lost_first_dispatch_is_recovered_by_the_retry(),
        a_retried_enrolment_creates_one_member(),
        retried_reward_and_promotion_creates_create_one_each(),
        a_daily_cap_holds_for_late_events(),
        a_weekly_cap_holds_for_late_events(),
        a_monthly_cap_holds_for_late_events(),
        a_yearly_cap_holds_for_late_events(),
        a_lifetime_cap_holds_for_late_events(),
        a_future_occurred_at_is_refused(),
        a_promotion_limit_holds_against_20_parallel_orders(),
        returns_never_take_back_more_than_an_order_earned(),
        a_return_after_spending_stops_at_zero(),
        an_adjustment_needs_a_reason_and_a_retry_pays_once(),
        a_transfer_moves_points_once_however_it_is_retried(),
        members_sending_to_each_other_at_once_neither_overdraw_nor_deadlock(),
        a_reward_code_is_used_once_or_canceled_once(),
        a_held_redemption_is_not_spendable_twice_and_a_lapsed_hold_is_released_once(),
        a_used_code_refuses_a_cancel_and_a_second_use_at_once(),
    ]
}

fn give_back(
    key: &'static str,
    order: &'static str,
    return_id: &'static str,
    minor: Option<i64>,
    expect: Expect,
) -> Step {
    Step::Return {
        member: "a",
        key,
        order,
        return_id,
        minor,
        expect,
    }
}

/// Issue 14: an order of 100 points returned in parts, over-returned, and a return id reused.
fn returns_never_take_back_more_than_an_order_earned() -> Row {
    Row {
        name: "returns never take back more than an order earned",
        steps: vec![
            enrol("a"),
            purchase("a", "o-back", 10_000, None, Expect::Created),
            give_back("r-1", "o-back", "rma-1", Some(6_000), Expect::Created),
            give_back(
                "r-2",
                "o-back",
                "rma-2",
                Some(6_000),
                Expect::Refused(409, "return_exceeds_order"),
            ),
            give_back(
                "r-3",
                "o-back",
                "rma-1",
                Some(1_000),
                Expect::Refused(409, "duplicate_return"),
            ),
            give_back("r-1", "o-back", "rma-1", Some(6_000), Expect::Replayed),
            give_back("r-4", "o-back", "rma-4", None, Expect::Created),
            give_back(
                "r-5",
                "o-never",
                "rma-5",
                None,
                Expect::Refused(404, "order_not_found"),
            ),
        ],
        moved: vec![("a", 100)],
    }
}

/// A return after the points were spent, under the default `cap_at_balance`: the balance stops
/// at zero and the ledger still adds up.
fn a_return_after_spending_stops_at_zero() -> Row {
    Row {
        name: "a return after spending stops at zero",
        steps: vec![
            enrol("a"),
            purchase("a", "o-spent", 50_000, None, Expect::Created),
            Step::Redeem {
                member: "a",
                key: "spend",
                reward: "five-off",
                expect: Expect::Created,
            },
            give_back("r-all", "o-spent", "rma-all", None, Expect::Created),
            Step::Redeem {
                member: "a",
                key: "spend-again",
                reward: "free-coffee",
                expect: Expect::Refused(409, "insufficient_points"),
            },
        ],
        moved: vec![("a", 0)],
    }
}

fn an_adjustment_needs_a_reason_and_a_retry_pays_once() -> Row {
    Row {
        name: "an adjustment needs a reason and a retry pays once",
        steps: vec![
            enrol("a"),
            Step::Adjust {
                member: "a",
                key: "adj-bare",
                points: 500,
                reason: None,
                expect: Expect::Refused(400, "validation_error"),
            },
            Step::Adjust {
                member: "a",
                key: "adj-1",
                points: 40,
                reason: Some("Goodwill"),
                expect: Expect::Created,
            },
            Step::Adjust {
                member: "a",
                key: "adj-1",
                points: 40,
                reason: Some("Goodwill"),
                expect: Expect::Replayed,
            },
            Step::Adjust {
                member: "a",
                key: "adj-2",
                points: -1_000,
                reason: Some("Correction"),
                expect: Expect::Created,
            },
        ],
        moved: vec![("a", 0)],
    }
}

/// Issue 12, problem 1: reviews in four months, then 20 dated years back.
fn backdated_actions_do_not_bypass_a_cap() -> Row {
    let mut steps = vec![Step::At("2026-06-01T10:00:00Z"), enrol("a")];
    for (month, at) in [
        ("07", "2026-07-10T10:00:00Z"),
        ("08", "2026-08-10T10:00:00Z"),
        ("09", "2026-09-10T10:00:00Z"),
        ("10", "2026-10-10T10:00:00Z"),
    ] {
        steps.push(Step::At(at));
        steps.push(action(
            "a",
            name(format!("review-{month}")),
            "review",
            at,
            Expect::Created,
        ));
    }
    steps.push(Step::At(START));
    for i in 0..20 {
        steps.push(action(
            "a",
            name(format!("old-review-{i}")),
            "review",
            "2020-01-15T10:00:00Z",
            LATE,
        ));
    }
    Row {
        name: "backdated actions do not bypass a cap",
        steps,
        moved: vec![("a", WELCOME + 4 * 50)],
    }
}

/// Issue 12, problem 1: actions and purchases dated before the member enrolled.
fn events_before_enrolment_do_not_earn() -> Row {
    Row {
        name: "events before enrolment do not earn",
        steps: vec![
            enrol("a"),
            action("a", "r-1", "review", "2026-11-18T10:00:00Z", LATE),
            purchase("a", "o-1", 5_000, Some("2026-11-20T11:50:00Z"), LATE),
            // Inside the checkout grace: the order the member enrolled on.
            purchase(
                "a",
                "o-2",
                5_000,
                Some("2026-11-20T11:58:00Z"),
                Expect::Created,
            ),
        ],
        moved: vec![("a", WELCOME + 50)],
    }
}

/// Issue 12, problem 2: an ended promotion with `per_member_limit` 1 and five late orders.
fn an_ended_promotion_pays_at_most_its_limit() -> Row {
    let mut steps = vec![
        Step::At("2026-09-15T10:00:00Z"),
        enrol("old"),
        Step::At("2026-10-01T00:00:00Z"),
        Step::CreatePromotion {
            key: Some("october-bonus"),
            body: json!({
                "name": "October bonus", "bonus_points": 500, "per_member_limit": 1,
                "starts_at": "2026-10-01T00:00:00Z", "ends_at": "2026-11-01T00:00:00Z",
            }),
            expect: Expect::Created,
        },
        Step::At(START),
        enrol("new"),
        Step::CreatePromotion {
            key: Some("already-over"),
            body: json!({
                "name": "Too late", "bonus_points": 500,
                "starts_at": "2026-10-01T00:00:00Z", "ends_at": "2026-11-01T00:00:00Z",
            }),
            expect: Expect::Refused(422, "promotion_already_ended"),
        },
    ];
    for i in 0..5 {
        steps.push(purchase(
            "new",
            name(format!("new-late-{i}")),
            1_000,
            Some("2026-10-20T10:00:00Z"),
            LATE,
        ));
        steps.push(purchase(
            "old",
            name(format!("old-late-{i}")),
            1_000,
            Some("2026-10-25T10:00:00Z"),
            Expect::Created,
        ));
    }
    Row {
        name: "an ended promotion pays at most its limit",
        steps,
        moved: vec![("new", WELCOME), ("old", WELCOME + 5 * 10 + 500)],
    }
}

/// Issue 12, problem 3: the same order sent for two members.
fn one_order_earns_for_one_member() -> Row {
    let duplicate = Expect::Refused(409, "duplicate_order");
    Row {
        name: "one order earns for one member",
        steps: vec![
            enrol("a"),
            enrol("b"),
            purchase("a", "o-1", 20_100, None, Expect::Created),
            Step::Purchase {
                member: "b",
                key: "b-o-1",
                order: "o-1",
                minor: 20_100,
                at: None,
                expect: duplicate,
            },
            purchase("a", "o-1", 20_100, None, Expect::Replayed),
            Step::Purchase {
                member: "a",
                key: "a-o-1-again",
                order: "o-1",
                minor: 20_100,
                at: None,
                expect: duplicate,
            },
            Step::Parallel(vec![
                purchase("a", "o-2", 1_000, None, Expect::Created),
                Step::Purchase {
                    member: "b",
                    key: "o-2",
                    order: "o-3",
                    minor: 1_000,
                    at: None,
                    expect: Expect::Created,
                },
            ]),
        ],
        moved: vec![("a", WELCOME + 201 + 10), ("b", WELCOME + 10)],
    }
}

/// Issue 12, problem 4: the purchase stamped in the same second as the enrolment.
fn the_order_a_referee_enrols_on_is_their_first_purchase() -> Row {
    Row {
        name: "the order a referee enrols on is their first purchase",
        steps: vec![
            enrol("referrer"),
            Step::At("2026-11-20T12:30:12.049Z"),
            Step::Enrol {
                alias: "friend",
                member_id: Some("friend"),
                referred_by: Some("referrer"),
                email: None,
                key: None,
                expect: Expect::Created,
            },
            purchase(
                "friend",
                "till-1",
                3_000,
                Some("2026-11-20T12:30:12Z"),
                Expect::Created,
            ),
            Step::DeliverReferrals,
        ],
        moved: vec![("referrer", WELCOME + 500), ("friend", WELCOME + 30 + 250)],
    }
}

/// Issue 12, problem 5: another environment's program cache predates the reward.
fn a_reward_created_a_moment_ago_is_redeemable_at_once() -> Row {
    Row {
        name: "a reward created a moment ago is redeemable at once",
        steps: vec![
            enrol("a"),
            purchase("a", "o-1", 5_000, None, Expect::Created),
            Step::WarmEdgeCaches,
            Step::CreateReward {
                key: Some("new-mug"),
                body: json!({ "reward_id": "new-mug", "name": "Mug", "kind": "merchandise", "points_cost": 120 }),
                expect: Expect::Created,
            },
            Step::Redeem {
                member: "a",
                key: "redeem-mug",
                reward: "new-mug",
                expect: Expect::Created,
            },
            Step::Redeem {
                member: "a",
                key: "redeem-nothing",
                reward: "no-such-reward",
                expect: Expect::Refused(404, "reward_not_found"),
            },
        ],
        moved: vec![("a", WELCOME + 50 - 120)],
    }
}

/// Issue 12, "read-your-writes": a promotion and the next accrual, in another environment.
fn a_promotion_created_a_moment_ago_applies_to_the_next_accrual() -> Row {
    Row {
        name: "a promotion created a moment ago applies to the next accrual",
        steps: vec![
            enrol("a"),
            purchase("a", "o-1", 1_000, None, Expect::Created),
            Step::CreatePromotion {
                key: Some("flash"),
                body: json!({
                    "name": "Flash bonus", "bonus_points": 77,
                    "starts_at": "2026-11-20T00:00:00Z", "ends_at": "2026-11-21T00:00:00Z",
                }),
                expect: Expect::Created,
            },
            purchase("a", "o-2", 1_000, None, Expect::Created),
        ],
        moved: vec![("a", WELCOME + 10 + 10 + 77)],
    }
}

/// Issue 12, problem 6: a campaign create retried after a timeout.
fn a_retried_campaign_pays_its_audience_once() -> Row {
    let campaign = |key, points, expect| Step::CreateCampaign {
        key,
        members: vec!["a", "b"],
        points,
        expect,
    };
    Row {
        name: "a retried campaign pays its audience once",
        steps: vec![
            enrol("a"),
            enrol("b"),
            campaign(Some("thanks-1"), 75, Expect::Created),
            campaign(Some("thanks-1"), 75, Expect::Replayed),
            campaign(
                Some("thanks-1"),
                80,
                Expect::Refused(422, "idempotency_key_reused"),
            ),
            campaign(None, 75, Expect::Refused(400, "missing_idempotency_key")),
            Step::DeliverCampaigns,
            campaign(Some("thanks-1"), 75, Expect::Replayed),
            Step::DeliverCampaigns,
        ],
        moved: vec![("a", WELCOME + 75), ("b", WELCOME + 75)],
    }
}

/// Issue 12, problem 6: the first dispatch message is lost; the retry sends it again.
fn a_lost_first_dispatch_is_recovered_by_the_retry() -> Row {
    let campaign = |expect| Step::CreateCampaign {
        key: Some("lost-step"),
        members: vec!["a"],
        points: 40,
        expect,
    };
    Row {
        name: "a lost first dispatch is recovered by the retry",
        steps: vec![
            enrol("a"),
            Step::LoseNextDispatch,
            // The request commits; the outbox's send of the first step is lost, and the stream
            // delivers the campaign record again.
            campaign(Expect::Created),
            Step::DeliverCampaigns,
            campaign(Expect::Replayed),
            Step::DeliverCampaigns,
        ],
        moved: vec![("a", WELCOME + 40)],
    }
}

/// Issue 12, problem 6: enrolment retried, with and without a member id.
fn a_retried_enrolment_creates_one_member() -> Row {
    let keyed = |alias, member_id, email, key, expect| Step::Enrol {
        alias,
        member_id,
        referred_by: None,
        email,
        key: Some(key),
        expect,
    };
    Row {
        name: "a retried enrolment creates one member",
        steps: vec![
            keyed(
                "anon",
                None,
                Some("anon@example.com"),
                "enrol-1",
                Expect::Created,
            ),
            keyed(
                "anon",
                None,
                Some("anon@example.com"),
                "enrol-1",
                Expect::Replayed,
            ),
            keyed(
                "anon",
                None,
                Some("other@example.com"),
                "enrol-1",
                Expect::Refused(422, "idempotency_key_reused"),
            ),
            keyed("named", Some("named"), None, "enrol-2", Expect::Created),
            keyed("named", Some("named"), None, "enrol-2", Expect::Replayed),
            Step::Enrol {
                alias: "named",
                member_id: Some("named"),
                referred_by: None,
                email: None,
                key: None,
                expect: Expect::Refused(409, "member_exists"),
            },
        ],
        moved: vec![("anon", WELCOME), ("named", WELCOME)],
    }
}

/// Issue 12, problem 6: reward and promotion creates retried.
fn retried_reward_and_promotion_creates_create_one_each() -> Row {
    let mug =
        json!({ "reward_id": "mug", "name": "Mug", "kind": "merchandise", "points_cost": 100 });
    let cup =
        json!({ "reward_id": "cup", "name": "Cup", "kind": "merchandise", "points_cost": 100 });
    let promotion = json!({
        "name": "Weekend bonus", "bonus_points": 40,
        "starts_at": "2026-11-20T00:00:00Z", "ends_at": "2026-11-23T00:00:00Z",
    });
    let reused = Expect::Refused(422, "idempotency_key_reused");
    Row {
        name: "retried reward and promotion creates create one each",
        steps: vec![
            enrol("a"),
            Step::CreateReward {
                key: Some("reward-1"),
                body: mug.clone(),
                expect: Expect::Created,
            },
            Step::CreateReward {
                key: Some("reward-1"),
                body: mug.clone(),
                expect: Expect::Replayed,
            },
            Step::CreateReward {
                key: Some("reward-1"),
                body: cup,
                expect: reused,
            },
            Step::CreateReward {
                key: Some("reward-2"),
                body: mug,
                expect: Expect::Refused(409, "reward_exists"),
            },
            Step::CreatePromotion {
                key: Some("promo-1"),
                body: promotion.clone(),
                expect: Expect::Created,
            },
            Step::CreatePromotion {
                key: Some("promo-1"),
                body: promotion,
                expect: Expect::Replayed,
            },
            Step::CreatePromotion {
                key: Some("promo-1"),
                body: json!({
                    "name": "Other", "bonus_points": 40,
                    "starts_at": "2026-11-20T00:00:00Z", "ends_at": "2026-11-23T00:00:00Z",
                }),
                expect: reused,
            },
            // One promotion, so one bonus; two would still pay one (the best applies), so the
            // limit of the replayed one is what shows: the order earns 10 + 40.
            purchase("a", "o-1", 1_000, None, Expect::Created),
            Step::Redeem {
                member: "a",
                key: "mug-1",
                reward: "mug",
                expect: Expect::Created,
            },
        ],
        moved: vec![("a", WELCOME + 10 + 40 - 100)],
    }
}

/// A daily cap (social_share, 3 a day): a late day's counter survives newer days.
fn a_daily_cap_holds_for_late_events() -> Row {
    let mut steps = vec![
        Step::At("2026-10-01T10:00:00Z"),
        enrol("a"),
        Step::At(START),
    ];
    for i in 0..3 {
        steps.push(action(
            "a",
            name(format!("late-share-{i}")),
            "social_share",
            "2026-10-31T10:00:00Z",
            Expect::Created,
        ));
    }
    for day in 1..=6 {
        steps.push(action(
            "a",
            name(format!("share-nov-{day}")),
            "social_share",
            name(format!("2026-11-{:02}T10:00:00Z", day + 10)),
            Expect::Created,
        ));
    }
    steps.push(action(
        "a",
        "late-share-again",
        "social_share",
        "2026-10-31T18:00:00Z",
        CAPPED,
    ));
    steps.push(action(
        "a",
        "too-late-share",
        "social_share",
        "2026-10-20T10:00:00Z",
        LATE,
    ));
    Row {
        name: "a daily cap holds for late events",
        steps,
        moved: vec![("a", WELCOME + 9 * 10)],
    }
}

/// A weekly cap (event_attended, 2 a week).
fn a_weekly_cap_holds_for_late_events() -> Row {
    let mut steps = vec![
        Step::At("2026-10-01T10:00:00Z"),
        enrol("a"),
        Step::At(START),
    ];
    for i in 0..2 {
        steps.push(action(
            "a",
            name(format!("late-event-{i}")),
            "event_attended",
            "2026-10-26T10:00:00Z",
            Expect::Created,
        ));
    }
    for (i, at) in [
        "2026-11-02T10:00:00Z",
        "2026-11-09T10:00:00Z",
        "2026-11-16T10:00:00Z",
        "2026-11-20T10:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        steps.push(action(
            "a",
            name(format!("event-{i}")),
            "event_attended",
            at,
            Expect::Created,
        ));
    }
    steps.push(action(
        "a",
        "late-event-again",
        "event_attended",
        "2026-10-27T10:00:00Z",
        CAPPED,
    ));
    steps.push(action(
        "a",
        "too-late-event",
        "event_attended",
        "2026-10-19T10:00:00Z",
        LATE,
    ));
    Row {
        name: "a weekly cap holds for late events",
        steps,
        moved: vec![("a", WELCOME + 6 * 150)],
    }
}

/// A monthly cap (review, 5 a month).
fn a_monthly_cap_holds_for_late_events() -> Row {
    let mut steps = vec![
        Step::At("2026-09-01T10:00:00Z"),
        enrol("a"),
        Step::At(START),
    ];
    for i in 0..5 {
        steps.push(action(
            "a",
            name(format!("october-review-{i}")),
            "review",
            "2026-10-25T10:00:00Z",
            Expect::Created,
        ));
    }
    steps.push(action(
        "a",
        "november-review",
        "review",
        "2026-11-19T10:00:00Z",
        Expect::Created,
    ));
    steps.push(action(
        "a",
        "october-review-again",
        "review",
        "2026-10-30T10:00:00Z",
        CAPPED,
    ));
    steps.push(action(
        "a",
        "september-review",
        "review",
        "2026-09-30T10:00:00Z",
        LATE,
    ));
    Row {
        name: "a monthly cap holds for late events",
        steps,
        moved: vec![("a", WELCOME + 6 * 50)],
    }
}

/// A yearly cap (a program action, once a year), across a year end.
fn a_yearly_cap_holds_for_late_events() -> Row {
    Row {
        name: "a yearly cap holds for late events",
        steps: vec![
            Step::At("2026-11-01T10:00:00Z"),
            Step::AddAction {
                action: "anniversary",
                points: 300,
                cap: 1,
                per: "year",
            },
            enrol("a"),
            Step::At("2027-01-10T10:00:00Z"),
            action(
                "a",
                "anniversary-2027",
                "anniversary",
                "2027-01-05T10:00:00Z",
                Expect::Created,
            ),
            action(
                "a",
                "anniversary-2026",
                "anniversary",
                "2026-12-20T10:00:00Z",
                Expect::Created,
            ),
            action(
                "a",
                "anniversary-2026-again",
                "anniversary",
                "2026-12-28T10:00:00Z",
                CAPPED,
            ),
            action(
                "a",
                "anniversary-november",
                "anniversary",
                "2026-11-30T10:00:00Z",
                LATE,
            ),
        ],
        moved: vec![("a", WELCOME + 2 * 300)],
    }
}

/// A lifetime cap (profile_completed, once).
fn a_lifetime_cap_holds_for_late_events() -> Row {
    Row {
        name: "a lifetime cap holds for late events",
        steps: vec![
            Step::At("2026-09-01T10:00:00Z"),
            enrol("a"),
            Step::At(START),
            action(
                "a",
                "profile",
                "profile_completed",
                "2026-11-19T10:00:00Z",
                Expect::Created,
            ),
            action(
                "a",
                "profile-late",
                "profile_completed",
                "2026-10-25T10:00:00Z",
                CAPPED,
            ),
            action(
                "a",
                "profile-too-late",
                "profile_completed",
                "2026-09-15T10:00:00Z",
                LATE,
            ),
        ],
        moved: vec![("a", WELCOME + 200)],
    }
}

/// The future-skew rule: a few minutes ahead is a clock; a day ahead is refused.
fn a_future_occurred_at_is_refused() -> Row {
    Row {
        name: "a future occurred_at is refused",
        steps: vec![
            enrol("a"),
            purchase(
                "a",
                "tomorrow",
                1_000,
                Some("2026-11-21T12:00:00Z"),
                Expect::Refused(400, "validation_error"),
            ),
            purchase(
                "a",
                "skewed",
                1_000,
                Some("2026-11-20T12:04:00Z"),
                Expect::Created,
            ),
        ],
        moved: vec![("a", WELCOME + 10)],
    }
}

/// `per_member_limit` 2 raced by 20 parallel orders of one member.
fn a_promotion_limit_holds_against_20_parallel_orders() -> Row {
    let orders = (0..20)
        .map(|i| purchase("a", name(format!("race-{i}")), 1_000, None, Expect::Created))
        .collect();
    Row {
        name: "a promotion limit holds against 20 parallel orders",
        steps: vec![
            Step::CreatePromotion {
                key: Some("twice"),
                body: json!({
                    "name": "Twice per member", "bonus_points": 100, "per_member_limit": 2,
                    "starts_at": "2026-11-20T00:00:00Z", "ends_at": "2026-11-27T00:00:00Z",
                }),
                expect: Expect::Created,
            },
            enrol("a"),
            Step::Parallel(orders),
        ],
        moved: vec![("a", WELCOME + 20 * 10 + 2 * 100)],
    }
}

fn transfer(
    from: &'static str,
    to: &'static str,
    key: &'static str,
    points: Points,
    expect: Expect,
) -> Step {
    Step::Transfer {
        from,
        to,
        key,
        points,
        expect,
    }
}

/// Issue 15: a transfer retried, reused with another amount, sent to oneself, over the
/// program's maximum and over the balance (the shipped program: 10 to 5,000 per transfer).
fn a_transfer_moves_points_once_however_it_is_retried() -> Row {
    Row {
        name: "a transfer moves points once however it is retried",
        steps: vec![
            enrol("a"),
            enrol("b"),
            purchase("a", "o-1", 1_000, None, Expect::Created),
            transfer("a", "b", "gift", 50, Expect::Created),
            transfer("a", "b", "gift", 50, Expect::Replayed),
            transfer(
                "a",
                "b",
                "gift",
                60,
                Expect::Refused(422, "idempotency_key_reused"),
            ),
            transfer(
                "a",
                "a",
                "self",
                10,
                Expect::Refused(422, "transfer_to_self"),
            ),
            transfer(
                "a",
                "b",
                "huge",
                5_001,
                Expect::Refused(422, "transfer_above_maximum"),
            ),
            transfer(
                "a",
                "b",
                "broke",
                61,
                Expect::Refused(409, "insufficient_points"),
            ),
        ],
        moved: vec![("a", WELCOME + 10 - 50), ("b", WELCOME + 50)],
    }
}

/// Issue 15: A→B and B→A at once, each affordable in any order: all land, nothing is lost.
fn members_sending_to_each_other_at_once_neither_overdraw_nor_deadlock() -> Row {
    Row {
        name: "members sending to each other at once neither overdraw nor deadlock",
        steps: vec![
            enrol("a"),
            enrol("b"),
            Step::Parallel(vec![
                transfer("a", "b", "a-1", 60, Expect::Created),
                transfer("b", "a", "b-1", 60, Expect::Created),
                transfer("a", "b", "a-2", 40, Expect::Created),
                transfer("b", "a", "b-2", 40, Expect::Created),
            ]),
        ],
        moved: vec![("a", WELCOME), ("b", WELCOME)],
    }
}

fn redeem(member: &'static str, key: &'static str, reward: &'static str, expect: Expect) -> Step {
    Step::Redeem {
        member,
        key,
        reward,
        expect,
    }
}

const ALREADY_USED: Expect = Expect::Refused(409, "code_already_used");
const NOT_USABLE: Expect = Expect::Refused(409, "code_not_usable");

/// Issue 14: a code is used once; a canceled code gives its points back once, however often it
/// is canceled, and cannot be used; a used code cannot be canceled; another member's code is not
/// found.
fn a_reward_code_is_used_once_or_canceled_once() -> Row {
    Row {
        name: "a reward code is used once or canceled once",
        steps: vec![
            enrol("a"),
            enrol("b"),
            purchase("a", "o-1", 100_000, None, Expect::Created),
            redeem("a", "r-five", "five-off", Expect::Created),
            Step::CancelCode {
                redemption: "r-five",
                by: Some("b"),
                expect: Expect::Refused(404, "redemption_not_found"),
            },
            Step::CancelCode {
                redemption: "r-five",
                by: Some("a"),
                expect: Expect::Created,
            },
            Step::CancelCode {
                redemption: "r-five",
                by: None,
                expect: Expect::Created,
            },
            Step::UseCode {
                redemption: "r-five",
                expect: NOT_USABLE,
            },
            redeem("a", "r-coffee", "free-coffee", Expect::Created),
            Step::UseCode {
                redemption: "r-coffee",
                expect: Expect::Created,
            },
            Step::UseCode {
                redemption: "r-coffee",
                expect: ALREADY_USED,
            },
            Step::CancelCode {
                redemption: "r-coffee",
                by: None,
                expect: ALREADY_USED,
            },
        ],
        moved: vec![("a", WELCOME + 1_000 - 150), ("b", WELCOME)],
    }
}

/// Issue 14: held points are out of `available` at once; a hold nobody confirms is released
/// once by the sweep, however often it runs, and its code is then refused at the till.
fn a_held_redemption_is_not_spendable_twice_and_a_lapsed_hold_is_released_once() -> Row {
    Row {
        name: "a held redemption is not spendable twice and a lapsed hold is released once",
        steps: vec![
            enrol("a"),
            purchase("a", "o-1", 50_000, None, Expect::Created),
            Step::Hold {
                member: "a",
                key: "h-five",
                reward: "five-off",
                expect: Expect::Created,
            },
            redeem(
                "a",
                "r-five",
                "five-off",
                Expect::Refused(409, "insufficient_points"),
            ),
            Step::SweepCodes,
            Step::At("2026-11-20T12:30:00Z"),
            Step::SweepCodes,
            Step::SweepCodes,
            Step::UseCode {
                redemption: "h-five",
                expect: NOT_USABLE,
            },
            Step::Hold {
                member: "a",
                key: "h-coffee",
                reward: "free-coffee",
                expect: Expect::Created,
            },
            Step::UseCode {
                redemption: "h-coffee",
                expect: Expect::Created,
            },
            Step::At("2026-11-20T13:00:00Z"),
            Step::SweepCodes,
        ],
        moved: vec![("a", WELCOME + 500 - 150)],
    }
}

/// Issue 14: once the till has used a code, a cancel and a second use arriving together are
/// both refused, and the ledger keeps the one redemption. (The open race, use against cancel,
/// is `tests/tests/codes.rs`.)
fn a_used_code_refuses_a_cancel_and_a_second_use_at_once() -> Row {
    Row {
        name: "a used code refuses a cancel and a second use at once",
        steps: vec![
            enrol("a"),
            purchase("a", "o-1", 50_000, None, Expect::Created),
            redeem("a", "r-coffee", "free-coffee", Expect::Created),
            Step::UseCode {
                redemption: "r-coffee",
                expect: Expect::Created,
            },
            // The use has landed; a cancel racing a second use both lose.
            Step::Parallel(vec![
                Step::CancelCode {
                    redemption: "r-coffee",
                    by: Some("a"),
                    expect: ALREADY_USED,
                },
                Step::UseCode {
                    redemption: "r-coffee",
                    expect: ALREADY_USED,
                },
            ]),
        ],
        moved: vec![("a", WELCOME + 500 - 150)],
    }
}
