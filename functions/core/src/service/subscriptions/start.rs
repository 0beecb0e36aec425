//! Starting a subscription: Stripe's saved-card flow. The member's customer is created at the
//! provider (once, by a key derived from the member) and stored on the subscription; the first
//! payment is taken on session and asks the provider to keep the card for off-session renewals.
//! A first payment that needs 3-D Secure leaves the subscription `incomplete` and hands the app
//! the PaymentIntent's client secret; the subscription activates when the provider reports
//! success (the same request retried with its key, or the provider's webhook).

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::benefits::with_paid_period;
use super::collect::{Collected, Collection};
use super::{
    charge_write, commit_failed, log_rejected, parse_payment_method, plan_not_found, retryable,
    subscription_write, SubscriptionView, Versioned,
};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{fingerprint, IdempotencyRecord, IdempotencyScope, Operation};
use crate::ids::{IdempotencyKey, MemberId};
use crate::member::Member;
use crate::ports::{Commit, CommitError, RecordWrite, Store};
use crate::program::ActiveProgram;
use crate::service::{member_not_found, missing_key, parse_body, to_json, App, Attempt, Outcome};
use crate::subscriptions::payments::{CustomerRequest, PaymentOutcome, Presence};
use crate::subscriptions::renewal::activate;
use crate::subscriptions::{AttemptStatus, OperatorFlag, Plan, Subscription, SubscriptionStatus};

/// An incomplete subscription whose first payment has waited this long on the member's
/// authentication is abandoned: a new subscription may replace it.
pub const ABANDONED_AFTER: Duration = Duration::days(1);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    plan_id: String,
    payment_method: String,
}

fn subscription_id(member: &MemberId, key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(format!("{member}\n{}", key.as_str()).as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("sub_{hex}")
}

/// The provider idempotency key of a member's customer: one customer per member.
fn customer_key(member: &MemberId) -> String {
    format!("loyalty:customer:{member}")
}

fn declined(code: &str) -> ApiError {
    ApiError::new(ErrorCode::PaymentDeclined, "the payment was declined")
        .with_details(json!({ "decline_code": code }))
}

/// The writes that activate a subscription after its first payment (the stream consumer
/// announces `subscription.started` and any `tier.changed` from them).
pub(crate) struct Activation {
    pub commit: Commit,
    pub writes: Vec<RecordWrite>,
}

/// Activates `sub` whose first payment `collected` succeeded: period 1's benefits for `member`,
/// and, for a request with a key, the key's stored response.
pub(crate) fn activation(
    member: &Member,
    program: &ActiveProgram,
    sub: &Versioned<Subscription>,
    plan: &Plan,
    collected: &Collected,
    idempotency: Option<IdempotencyRecord>,
    now: DateTime<Utc>,
) -> Result<Activation, ApiError> {
    let active = activate(&sub.value, now);
    let paid = with_paid_period(member, program, &active, plan, 1, now)?;
    let writes = vec![
        subscription_write(&active, Some(sub.version))?,
        charge_write(&collected.charge.value, Some(collected.charge.version))?,
    ];
    Ok(Activation {
        commit: paid.commit(member.version, idempotency),
        writes,
    })
}

impl<S: Store> App<S> {
    /// `POST /v1/members/{id}/subscription`: starts a subscription and takes the first payment.
    /// Answers the active subscription, or an `incomplete` one with the client secret the app
    /// needs to finish 3-D Secure (retry the same request, same key, once it is done).
    pub async fn start_subscription(
        &self,
        member_id: &MemberId,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let key = key.ok_or_else(|| missing_key("starting a subscription needs"))?;
        let request: StartRequest = parse_body(body)?;
        let method = parse_payment_method(&request.payment_method)?;
        let scope = IdempotencyScope {
            operation: Operation::Subscription,
            key: key.clone(),
        };
        let fingerprint = fingerprint(Operation::Subscription, body);
        let sub_id = subscription_id(member_id, &key);
        let (key, scope, fingerprint, sub_id) = (&key, &scope, &fingerprint, &sub_id);
        let (request, method) = (&request, &method);
        // A payment the provider already answered is not asked for again by a later attempt;
        // each attempt holds it for its whole run.
        let known = &tokio::sync::Mutex::new(None);
        self.retrying(|| async move {
            let mut known = known.lock().await;
            let snapshot = self.store().snapshot(member_id, Some(scope)).await?;
            if let Some(record) = snapshot.replay {
                return Ok(Attempt::Done(Outcome::Replayed(
                    record.replay(fingerprint)?,
                )));
            }
            let member = snapshot.member.ok_or_else(|| member_not_found(member_id))?;
            let program = self.program().await?;
            let plan = program
                .plan(&request.plan_id)
                .ok_or_else(|| plan_not_found(&program, &request.plan_id))?
                .clone();
            let now = self.now();

            let sub = match self.subscription_record(member_id).await? {
                Some(sub) if sub.value.subscription_id == *sub_id => {
                    if sub.value.status != SubscriptionStatus::Incomplete {
                        return Ok(Attempt::Done(Outcome::Replayed(to_json(
                            &SubscriptionView::of(&sub.value),
                        )?)));
                    }
                    Some(sub)
                }
                Some(other) => {
                    if self.holds_member(&other.value, now).await? {
                        return Err(ApiError::new(ErrorCode::SubscriptionConflict, "the member already has a subscription; change its plan instead")
                            .with_details(json!({ "subscription_id": other.value.subscription_id, "status": other.value.status })));
                    }
                    self.new_subscription(member_id, sub_id, &plan, method, now, Some(&other))
                        .await?
                }
                None => {
                    self.new_subscription(member_id, sub_id, &plan, method, now, None)
                        .await?
                }
            };
            // The subscription record may have lost a race; start over from the reads.
            let Some(sub) = sub else {
                return Ok(Attempt::Retry);
            };
            let Some(sub) = self.with_customer(sub).await? else {
                return Ok(Attempt::Retry);
            };
            let customer = sub.value.customer.clone().ok_or_else(ApiError::internal)?;
            let what = Collection {
                sub: &sub.value,
                customer: &customer,
                plan: &plan,
                period: 1,
                attempt: 1,
                presence: Presence::OnSession,
            };
            let collected = match self.collect(what, &mut known).await {
                Ok(collected) => collected,
                Err(error) if error.code == ErrorCode::ConcurrentModification => {
                    return Ok(Attempt::Retry)
                }
                Err(error) => return Err(error),
            };
            let charge = charge_write(&collected.charge.value, Some(collected.charge.version))?;
            // What the first payment's outcome writes, and what the caller hears once it is
            // written.
            let (commits, writes, answer) = match &collected.outcome {
                PaymentOutcome::Declined { code } => (Vec::new(), vec![charge], Err(declined(code))),
                PaymentOutcome::RequiresAction { client_secret } => {
                    let mut view = SubscriptionView::of(&sub.value);
                    view.client_secret = Some(client_secret.clone());
                    (Vec::new(), vec![charge], Ok(Outcome::Created(to_json(&view)?)))
                }
                PaymentOutcome::Rejected { error_type, code } => {
                    log_rejected(&collected.charge.value.charge_id, 1, error_type, code);
                    let mut flagged = sub.value.clone();
                    flagged.operator_flag = Some(OperatorFlag {
                        charge_id: collected.charge.value.charge_id.clone(),
                        attempt: collected.attempt,
                        error_type: error_type.clone(),
                        code: code.clone(),
                        at: now,
                    });
                    let writes = vec![subscription_write(&flagged, Some(sub.version))?, charge];
                    (Vec::new(), writes, Err(ApiError::internal()))
                }
                PaymentOutcome::Succeeded => {
                    let response = SubscriptionView::of(&activate(&sub.value, now));
                    let view = to_json(&response)?;
                    let idempotency = IdempotencyRecord {
                        operation: Operation::Subscription,
                        key: key.as_str().to_owned(),
                        fingerprint: fingerprint.clone(),
                        status: 201,
                        response: view.clone(),
                        entry_id: format!("subscription:{sub_id}:1"),
                        created_at: now,
                    };
                    let done = activation(
                        &member,
                        &program,
                        &sub,
                        &plan,
                        &collected,
                        Some(idempotency),
                        now,
                    )?;
                    (vec![done.commit], done.writes, Ok(Outcome::Created(view)))
                }
            };
            match self.store().transact(commits, writes).await {
                Ok(()) => answer.map(Attempt::Done),
                // Only the activation stores the key: a racing request with the same key
                // activated first, and its answer is this one's.
                Err(CommitError::IdempotencyKeyTaken) => {
                    match self.store().idempotency_record(member_id, scope).await? {
                        Some(record) => Ok(Attempt::Done(Outcome::Replayed(
                            record.replay(fingerprint)?,
                        ))),
                        None => Ok(Attempt::Retry),
                    }
                }
                Err(e) if retryable(&e) => Ok(Attempt::Retry),
                Err(e) => Err(commit_failed(e)),
            }
        })
        .await
    }

    /// Whether `other`, the member's current subscription, keeps a new one from starting: it is
    /// active or in dunning, or its first payment is still under way.
    async fn holds_member(
        &self,
        other: &Subscription,
        now: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        Ok(match other.status {
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => true,
            SubscriptionStatus::Incomplete => {
                let charge = self.charge_record(&other.charge_id(1)).await?;
                charge.is_some_and(|c| {
                    c.value.last().is_some_and(|a| match a.status {
                        AttemptStatus::Declined | AttemptStatus::Rejected => false,
                        AttemptStatus::RequiresAction => now - a.at < ABANDONED_AFTER,
                        AttemptStatus::Pending | AttemptStatus::Succeeded => true,
                    })
                })
            }
            SubscriptionStatus::Canceled | SubscriptionStatus::Lapsed => false,
        })
    }

    /// Writes a fresh, incomplete subscription over nothing or over an ended one (keeping the
    /// member's customer). `None` if another request wrote first.
    async fn new_subscription(
        &self,
        member_id: &MemberId,
        sub_id: &str,
        plan: &Plan,
        payment_method: &str,
        now: DateTime<Utc>,
        previous: Option<&Versioned<Subscription>>,
    ) -> Result<Option<Versioned<Subscription>>, ApiError> {
        let sub = Subscription {
            subscription_id: sub_id.to_owned(),
            member_id: member_id.clone(),
            plan_id: plan.plan_id.clone(),
            next_plan_id: None,
            status: SubscriptionStatus::Incomplete,
            payment_method: payment_method.to_owned(),
            customer: previous.and_then(|p| p.value.customer.clone()),
            anchor: now.date_naive(),
            period: 0,
            cancel_at_period_end: false,
            dunning: None,
            operator_flag: None,
            created_at: now,
            updated_at: now,
        };
        let version = previous.map(|p| p.version);
        match self
            .store()
            .transact(Vec::new(), vec![subscription_write(&sub, version)?])
            .await
        {
            Ok(()) => Ok(Some(Versioned {
                value: sub,
                version: version.map_or(1, |v| v + 1),
            })),
            Err(e) if retryable(&e) => Ok(None),
            Err(e) => Err(commit_failed(e)),
        }
    }

    /// `sub` with the member's customer at the provider, created now if it has none. The
    /// provider key makes a repeated creation answer the same customer. `None` if the
    /// subscription changed under us.
    pub(crate) async fn with_customer(
        &self,
        sub: Versioned<Subscription>,
    ) -> Result<Option<Versioned<Subscription>>, ApiError> {
        if sub.value.customer.is_some() {
            return Ok(Some(sub));
        }
        let request = CustomerRequest {
            idempotency_key: customer_key(&sub.value.member_id),
            member_id: sub.value.member_id.as_str().to_owned(),
        };
        let customer = self
            .payments()
            .create_customer(&request)
            .await
            .map_err(|error| {
                tracing::warn!(%error, member_id = %sub.value.member_id, "creating the customer failed");
                ApiError::new(
                    ErrorCode::PaymentProviderUnavailable,
                    "the payment provider is unavailable; retry",
                )
            })?;
        let mut next = sub.value.clone();
        next.customer = Some(customer);
        match self
            .store()
            .transact(
                Vec::new(),
                vec![subscription_write(&next, Some(sub.version))?],
            )
            .await
        {
            Ok(()) => Ok(Some(Versioned {
                value: next,
                version: sub.version + 1,
            })),
            Err(e) if retryable(&e) => Ok(None),
            Err(e) => Err(commit_failed(e)),
        }
    }
}
