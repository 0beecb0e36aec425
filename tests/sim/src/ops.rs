//! The operations a simulated client, admin or scheduler performs, and the one place that calls
//! the application's methods. When a use case's signature changes (an actor for admin writes, an
//! `Idempotency-Key` for creates), this file is the one to adapt.

use chrono::{DateTime, NaiveDate, Utc};
use loyalty_core::campaigns::{DispatchMessage, GrantMessage};
use loyalty_core::commands::EnrolRequest;
use loyalty_core::ids::{IdempotencyKey, MemberId, ReferralCode};
use loyalty_core::ledger::LedgerEntry;
use loyalty_core::ports::Store;
use loyalty_core::service::Outcome;
use loyalty_core::{ApiError, App, ErrorCode};
use serde_json::{json, Value};

use crate::faults::{QueueName, SimStore};
use crate::world::World;

/// The program manager every simulated admin request acts as (recorded as `created_by`).
const ADMIN: &str = "sim-admin";

/// How many times SQS delivers a message before it goes to the dead-letter queue (the
/// template's `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;
/// How often a client retries a request that failed with a retryable error.
const CLIENT_RETRIES: u32 = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub sku: String,
    pub category: String,
    pub unit_minor: i64,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub member: String,
    pub key: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub items: Vec<Item>,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub member: String,
    pub key: String,
    pub action: String,
    pub reference: String,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Enrol {
        member: String,
        /// Enrol with this member's referral code.
        referrer: Option<String>,
        email: Option<String>,
    },
    Purchase(Purchase),
    Action(Action),
    Redeem {
        member: String,
        key: String,
        reward: String,
        /// Two-phase: the points are held until the till uses the code.
        hold: bool,
    },
    /// The till uses the `nth` of the member's codes (by code order), if there is one.
    UseCode {
        member: String,
        nth: usize,
    },
    /// The `nth` of the member's codes is canceled, by the member itself or by the till.
    CancelCode {
        member: String,
        nth: usize,
        by_member: bool,
    },
    /// Returns `minor` of an order (the rest of it when `None`).
    Return {
        member: String,
        key: String,
        order_id: String,
        return_id: String,
        minor: Option<i64>,
    },
    /// Customer service gives (or takes) points.
    Adjust {
        member: String,
        key: String,
        points: i64,
    },
    /// `member` gives `points` to `to`.
    Transfer {
        member: String,
        key: String,
        to: String,
        points: i64,
    },
    StartSubscription {
        member: String,
        key: String,
        plan: String,
        method: String,
    },
    CancelSubscription {
        member: String,
    },
    /// The member's card starts or stops declining.
    SetDeclining {
        method: String,
        declining: bool,
    },
    EvaluateTier {
        member: String,
    },
    /// A worker takes up to `max` messages from a queue.
    Drain {
        queue: QueueName,
        max: usize,
    },
    CreatePromotion(Value),
    /// Cancels the `nth` promotion (by id order) if there is one.
    CancelPromotion {
        nth: usize,
    },
    CreateReward(Value),
    CreateCampaign(Value),
    RunSeasons,
    PlanTierReviews,
    PlanBilling,
    SweepReferrals,
    /// The code sweep: plans from the due index and settles every batch at once.
    SweepCodes,
    /// The daily points-expiry run.
    RunExpiry,
}

/// What the caller finally saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Created(Value),
    Replayed(Value),
    Failed(ErrorCode, String),
    /// A worker or admin call that completed (its details are in the store).
    Done(Value),
}

impl Reply {
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Reply::Failed(code, _) => Some(*code),
            _ => None,
        }
    }

    pub fn body(&self) -> Option<&Value> {
        match self {
            Reply::Created(v) | Reply::Replayed(v) | Reply::Done(v) => Some(v),
            Reply::Failed(..) => None,
        }
    }
}

/// Every answer one request got, retries included.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub replies: Vec<Reply>,
}

impl Answered {
    pub fn last(&self) -> Option<&Reply> {
        self.replies.last()
    }
}

fn retryable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Internal
            | ErrorCode::ConcurrentModification
            | ErrorCode::PaymentProviderUnavailable
    )
}

fn reply(result: Result<Outcome, ApiError>) -> Reply {
    match result {
        Ok(Outcome::Created(v)) => Reply::Created(v),
        Ok(Outcome::Replayed(v)) => Reply::Replayed(v),
        Ok(Outcome::Simulated(v)) => Reply::Done(v),
        Err(e) => Reply::Failed(e.code, e.message),
    }
}

fn done<T: serde::Serialize>(result: Result<T, ApiError>) -> Reply {
    match result {
        Ok(value) => Reply::Done(serde_json::to_value(value).unwrap_or(Value::Null)),
        Err(e) => Reply::Failed(e.code, e.message),
    }
}

pub fn member_id(raw: &str) -> MemberId {
    MemberId::parse(raw).unwrap_or_else(|_| panic!("the workload makes valid member ids: {raw}"))
}

fn key(raw: &str) -> Option<IdempotencyKey> {
    IdempotencyKey::parse(raw).ok()
}

pub fn purchase_body(p: &Purchase) -> Value {
    let items: Vec<Value> = p
        .items
        .iter()
        .map(|i| {
            json!({ "sku": i.sku, "category": i.category,
                    "amount": { "minor": i.unit_minor, "currency": "USD" }, "quantity": i.quantity })
        })
        .collect();
    let mut body = json!({ "kind": "purchase", "order_id": p.order_id,
                           "amount": { "minor": p.amount_minor, "currency": "USD" }, "items": items });
    if let Some(at) = p.occurred_at {
        body["occurred_at"] = json!(at);
    }
    body
}

pub fn action_body(a: &Action) -> Value {
    let mut body = json!({ "kind": "action", "action": a.action, "reference": a.reference });
    if let Some(at) = a.occurred_at {
        body["occurred_at"] = json!(at);
    }
    body
}

/// Retries a keyed request with the same key while the answer is retryable, as a client would.
async fn keyed<F, Fut>(mut call: F) -> Answered
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut replies = Vec::new();
    for _ in 0..CLIENT_RETRIES {
        let answer = call().await;
        let again = answer.code().is_some_and(retryable);
        replies.push(answer);
        if !again {
            break;
        }
    }
    Answered { replies }
}

impl Op {
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Op::CreatePromotion(_)
                | Op::CancelPromotion { .. }
                | Op::CreateReward(_)
                | Op::CreateCampaign(_)
                | Op::RunSeasons
                | Op::PlanTierReviews
                | Op::PlanBilling
                | Op::SweepReferrals
                | Op::SweepCodes
                | Op::RunExpiry
        )
    }

    /// Runs the operation against `app` (one execution environment).
    pub async fn execute<S: Store>(&self, world: &World<S>, app: &App<SimStore<S>>) -> Answered {
        match self {
            Op::Enrol {
                member,
                referrer,
                email,
            } => {
                let code = match referrer {
                    Some(referrer) => Some(
                        match world.inner_store().member(&member_id(referrer)).await {
                            Ok(Some(m)) => m.referral_code,
                            _ => ReferralCode::parse("ZZZZZZZZ").expect("valid code"),
                        },
                    ),
                    None => None,
                };
                let request = EnrolRequest {
                    member_id: Some(member_id(member)),
                    email: email.clone(),
                    name: None,
                    referral_code: code,
                };
                keyed(|| async { done(app.enrol(request.clone()).await) }).await
            }
            Op::Purchase(p) => {
                let body = purchase_body(p);
                let id = member_id(&p.member);
                keyed(|| async { reply(app.accrue(&id, key(&p.key), &body, false).await) }).await
            }
            Op::Action(a) => {
                let body = action_body(a);
                let id = member_id(&a.member);
                keyed(|| async { reply(app.accrue(&id, key(&a.key), &body, false).await) }).await
            }
            Op::Redeem {
                member,
                key: k,
                reward,
                hold,
            } => {
                let body = json!({ "reward_id": reward, "hold": hold });
                let id = member_id(member);
                keyed(|| async { reply(app.redeem(&id, key(k), &body).await) }).await
            }
            Op::UseCode { member, nth } => match member_code(world, member, *nth).await {
                // The till tries again after an error it may retry, as a client would.
                Some(code) => keyed(|| async { done(app.use_code(&code).await) }).await,
                None => one(Reply::Done(Value::Null)),
            },
            Op::CancelCode {
                member,
                nth,
                by_member,
            } => match member_code(world, member, *nth).await {
                Some(code) => {
                    let owner = by_member.then(|| member_id(member));
                    keyed(|| async { done(app.cancel_code(&code, owner.as_ref()).await) }).await
                }
                None => one(Reply::Done(Value::Null)),
            },
            Op::Return {
                member,
                key: k,
                order_id,
                return_id,
                minor,
            } => {
                let mut body = json!({ "order_id": order_id, "return_id": return_id });
                if let Some(minor) = minor {
                    body["amount"] = json!({ "minor": minor, "currency": "USD" });
                }
                let id = member_id(member);
                keyed(|| async { reply(app.return_order(&id, key(k), &body).await) }).await
            }
            Op::Adjust {
                member,
                key: k,
                points,
            } => {
                let body =
                    json!({ "points": points, "reason": "Simulated goodwill or correction" });
                let id = member_id(member);
                keyed(|| async { reply(app.adjust(ADMIN, &id, key(k), &body).await) }).await
            }
            Op::Transfer {
                member,
                key: k,
                to,
                points,
            } => {
                let body = json!({ "to_member_id": to, "points": points });
                let id = member_id(member);
                keyed(|| async { reply(app.transfer(&id, key(k), &body).await) }).await
            }
            Op::StartSubscription {
                member,
                key: k,
                plan,
                method,
            } => {
                let body = json!({ "plan_id": plan, "payment_method": method });
                let id = member_id(member);
                keyed(|| async { reply(app.start_subscription(&id, key(k), &body).await) }).await
            }
            Op::CancelSubscription { member } => {
                let id = member_id(member);
                keyed(|| async { done(app.cancel_subscription(&id).await) }).await
            }
            Op::SetDeclining { method, declining } => {
                world.payments().set_declining(method, *declining);
                one(Reply::Done(Value::Null))
            }
            Op::EvaluateTier { member } => {
                let id = member_id(member);
                keyed(|| async { done(app.evaluate_tier(&id).await) }).await
            }
            Op::Drain { queue, max } => drain(world, app, *queue, *max).await,
            // An admin whose create timed out tries again, as the console would.
            Op::CreatePromotion(body) => {
                let k = create_key(body, "name");
                keyed(|| async { reply(app.create_promotion(ADMIN, key(&k), body).await) }).await
            }
            Op::CancelPromotion { nth } => {
                let listed = app.list_promotions().await.ok();
                let ids: Vec<String> = listed
                    .iter()
                    .flat_map(|l| l["promotions"].as_array().cloned().unwrap_or_default())
                    .filter_map(|p| p["promotion_id"].as_str().map(str::to_owned))
                    .collect();
                match ids.get(nth % ids.len().max(1)) {
                    // Cancelling is idempotent, and an admin who saw an error tries again.
                    Some(id) => {
                        keyed(|| async { done(app.cancel_promotion(ADMIN, id).await) }).await
                    }
                    None => one(Reply::Done(Value::Null)),
                }
            }
            Op::CreateReward(body) => {
                let k = create_key(body, "reward_id");
                keyed(|| async { reply(app.create_reward(ADMIN, key(&k), body).await) }).await
            }
            Op::CreateCampaign(body) => {
                let k = create_key(body, "name");
                keyed(|| async { reply(app.create_campaign(ADMIN, key(&k), body).await) }).await
            }
            // A failed scheduled run is invoked again, as Lambda retries a failed asynchronous
            // invocation (the template's EventInvokeConfig, MaximumRetryAttempts 2).
            Op::RunSeasons => keyed(|| async { done(app.run_seasons().await) }).await,
            Op::PlanTierReviews => one(done(
                app.plan_tier_reviews(world.queue(QueueName::TierReview))
                    .await
                    .map(|p| json!({ "members": p.members })),
            )),
            Op::PlanBilling => one(done(
                app.plan_subscription_billing(world.queue(QueueName::Billing))
                    .await
                    .map(|p| json!({ "subscriptions": p.subscriptions })),
            )),
            Op::SweepReferrals => one(done(app.sweep_referrals().await)),
            // A failed batch is delivered again, as SQS redelivers a reported failure.
            Op::SweepCodes => keyed(|| async { done(sweep_codes(app).await) }).await,
            // Like every scheduled run, a failed one is invoked again.
            Op::RunExpiry => keyed(|| async { done(app.run_expiry().await) }).await,
        }
    }
}

/// The code of the `nth` (by code order) of `member`'s redemptions, looked up as the till would
/// read it off the member's screen: outside the simulated ports.
async fn member_code<S: Store>(world: &World<S>, member: &str, nth: usize) -> Option<String> {
    let records = world
        .inner_store()
        .records_of(loyalty_core::redemptions::KIND, member, 100)
        .await
        .ok()?;
    records
        .get(nth % records.len().max(1))
        .map(|r| r.id.clone())
}

/// One run of the code sweep: the scheduled fan-out into a queue, then every message settled.
async fn sweep_codes<S: Store>(app: &App<SimStore<S>>) -> Result<Value, ApiError> {
    let queue = loyalty_core::events::MemoryQueue::default();
    app.plan_code_sweep(&queue).await?;
    let (mut released, mut expired) = (0, 0);
    for body in queue.take() {
        let report = app.settle_code_batch(&body).await?;
        released += report.released;
        expired += report.expired;
    }
    Ok(json!({ "released": released, "expired": expired }))
}

/// The program a run starts with: the shipped default with points expiring one month after the
/// month they were earned in (campaign bonuses in lots of their own), so lots expire within a
/// run's weeks and the expiry run has work, and purchases pending for a 3-day return window, so
/// the same run releases them and returns race the release.
pub async fn publish_program<S: Store>(app: &App<SimStore<S>>) -> Result<(), ApiError> {
    let mut document: Value =
        serde_json::from_str(include_str!("../../../infra/program.default.json"))
            .map_err(|_| ApiError::internal())?;
    document["expiry"] =
        json!({ "mode": "fixed", "months": 1, "warn_days": [14, 3], "campaign_months": 1 });
    document["earning"]["pending_days"] = json!(3);
    app.replace_program(ADMIN, document.to_string().as_bytes())
        .await
        .map(|_| ())
}

/// The `Idempotency-Key` of an admin create: one per thing the admin means to create, reused by
/// the admin's retries.
fn create_key(body: &Value, field: &str) -> String {
    format!("create-{}", body[field].as_str().unwrap_or("unnamed"))
}

fn one(reply: Reply) -> Answered {
    Answered {
        replies: vec![reply],
    }
}

/// One worker invocation: a batch of messages as SQS hands them over (duplicated, delayed and
/// out of order as the fault plan says). A failed message is left unacknowledged and comes back.
async fn drain<S: Store>(
    world: &World<S>,
    app: &App<SimStore<S>>,
    queue: QueueName,
    max: usize,
) -> Answered {
    let deliveries = world.queue(queue).receive(max);
    let mut replies = Vec::new();
    for (receipt, delivery) in deliveries {
        let last_attempt = delivery.receives >= MAX_RECEIVES;
        match handle(world, app, queue, &delivery.body, last_attempt).await {
            Ok(()) => {
                world.queue(queue).ack(receipt);
                replies.push(Reply::Done(Value::Null));
            }
            Err(error) => replies.push(Reply::Failed(error.code, error.message)),
        }
    }
    Answered { replies }
}

async fn handle<S: Store>(
    world: &World<S>,
    app: &App<SimStore<S>>,
    queue: QueueName,
    body: &str,
    last_attempt: bool,
) -> Result<(), ApiError> {
    let malformed = |e: serde_json::Error| ApiError::new(ErrorCode::ValidationError, e.to_string());
    match queue {
        QueueName::Referral => app
            .handle_referral_message(body)
            .await
            .map(|_| ())
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string())),
        QueueName::CampaignDispatch => {
            let message: DispatchMessage = serde_json::from_str(body).map_err(malformed)?;
            app.dispatch_campaign(
                &message,
                world.queue(QueueName::CampaignDispatch),
                world.queue(QueueName::CampaignGrant),
            )
            .await
            .map(|_| ())
        }
        QueueName::CampaignGrant => {
            let message: GrantMessage = serde_json::from_str(body).map_err(malformed)?;
            app.grant_campaign(&message, last_attempt).await
        }
        QueueName::TierReview => app.evaluate_review_batch(body).await.map(|_| ()),
        QueueName::Billing => app.bill_subscription_batch(body).await.map(|_| ()),
    }
}

/// The member's whole ledger, audited (gap-free `seq`, chained `balance_after`).
pub async fn audited_ledger<S: Store>(
    app: &App<S>,
    member: &MemberId,
) -> Result<Vec<LedgerEntry>, String> {
    app.audited_ledger(member).await
}

/// A campaign's record as the admin API shows it.
pub async fn campaign<S: Store>(app: &App<S>, id: &str) -> Result<Value, ApiError> {
    app.get_campaign(id)
        .await
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
}

/// The promotions as the admin API lists them.
pub async fn promotions<S: Store>(app: &App<S>) -> Result<Value, ApiError> {
    app.list_promotions().await
}

/// The day helper the workload uses for campaign audiences.
pub fn day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}
