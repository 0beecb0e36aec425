//! A member's changes to a running subscription: cancelling (at the end of the paid period, or
//! at once in dunning), changing plan for the next period, and replacing the card renewals are
//! charged to.

use serde::Deserialize;
use serde_json::{json, Value};

use super::benefits::{member_only_commit, without_plan};
use super::{
    commit_failed, parse_payment_method, plan_not_found, retryable, subscription_write,
    SubscriptionView,
};
use crate::error::{ApiError, ErrorCode};
use crate::ids::MemberId;
use crate::ports::{Commit, Store};
use crate::service::{parse_body, App, Attempt};
use crate::subscriptions::payments::CardSaved;
use crate::subscriptions::{Subscription, SubscriptionStatus};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    pub plan_id: String,
}

/// `PUT /v1/members/{id}/subscription/payment-method`: the card the next charges use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardChange {
    pub payment_method: String,
}

impl<S: Store> App<S> {
    /// `DELETE /v1/members/{id}/subscription`: an active subscription ends with its paid period
    /// (benefits last until then); one in dunning ends now. Cancelling twice changes nothing.
    pub async fn cancel_subscription(
        &self,
        member_id: &MemberId,
    ) -> Result<SubscriptionView, ApiError> {
        self.retrying(|| async move {
            let now = self.now();
            let Some(stored) = self.subscription_record(member_id).await? else {
                return self.subscription_view(member_id).await.map(Attempt::Done);
            };
            let sub = &stored.value;
            let mut next = sub.clone();
            next.updated_at = now;
            let mut commits = Vec::new();
            match sub.status {
                SubscriptionStatus::Active if sub.cancel_at_period_end => {
                    return Ok(Attempt::Done(SubscriptionView::of(sub)))
                }
                SubscriptionStatus::Canceled => {
                    return Ok(Attempt::Done(SubscriptionView::of(sub)))
                }
                SubscriptionStatus::Active => {
                    next.cancel_at_period_end = true;
                    next.next_plan_id = None;
                }
                SubscriptionStatus::PastDue => {
                    next.status = SubscriptionStatus::Canceled;
                    next.dunning = None;
                    if let Some(member) = self.store().member(member_id).await? {
                        if let Some(ended) = without_plan(&member, sub, now.date_naive()) {
                            commits.push(member_only_commit(ended, member.version));
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
            // The stream consumer announces `subscription.canceled` from the stored record.
            self.write_subscription(commits, &next, stored.version)
                .await
        })
        .await
    }

    /// `PATCH /v1/members/{id}/subscription`: the new plan is billed and applies from the next
    /// period; choosing the current plan withdraws a pending change.
    pub async fn change_subscription_plan(
        &self,
        member_id: &MemberId,
        body: &Value,
    ) -> Result<SubscriptionView, ApiError> {
        let change: PlanChange = parse_body(body)?;
        let change = &change;
        self.retrying(|| async move {
            let program = self.program().await?;
            if program.plan(&change.plan_id).is_none() {
                return Err(plan_not_found(&program, &change.plan_id));
            }
            let Some(stored) = self.subscription_record(member_id).await? else {
                return self.subscription_view(member_id).await.map(Attempt::Done);
            };
            let sub = &stored.value;
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
            if next == *sub {
                return Ok(Attempt::Done(SubscriptionView::of(sub)));
            }
            next.updated_at = self.now();
            self.write_subscription(Vec::new(), &next, stored.version).await
        })
        .await
    }

    /// `PUT /v1/members/{id}/subscription/payment-method`: saves the new card on the member's
    /// customer at the provider, then charges renewals (and the next dunning retry) to it.
    /// Saving the same card twice is harmless.
    pub async fn replace_subscription_card(
        &self,
        member_id: &MemberId,
        body: &Value,
    ) -> Result<SubscriptionView, ApiError> {
        let change: CardChange = parse_body(body)?;
        let method = &parse_payment_method(&change.payment_method)?;
        self.retrying(|| async move {
            let Some(stored) = self.subscription_record(member_id).await? else {
                return self.subscription_view(member_id).await.map(Attempt::Done);
            };
            if !matches!(
                stored.value.status,
                SubscriptionStatus::Active | SubscriptionStatus::PastDue
            ) {
                return Err(ApiError::new(
                    ErrorCode::SubscriptionConflict,
                    "only a running subscription has a card to replace",
                )
                .with_details(json!({ "status": stored.value.status })));
            }
            if stored.value.payment_method == *method {
                return Ok(Attempt::Done(SubscriptionView::of(&stored.value)));
            }
            let Some(stored) = self.with_customer(stored).await? else {
                return Ok(Attempt::Retry);
            };
            let customer = stored
                .value
                .customer
                .clone()
                .ok_or_else(ApiError::internal)?;
            let saved = self
                .payments()
                .save_card(&customer, method)
                .await
                .map_err(|error| {
                    tracing::warn!(%error, %member_id, "saving the card failed");
                    ApiError::new(
                        ErrorCode::PaymentProviderUnavailable,
                        "the payment provider is unavailable; retry",
                    )
                })?;
            if let CardSaved::Refused { code } = saved {
                return Err(
                    ApiError::new(ErrorCode::PaymentDeclined, "the card was refused")
                        .with_details(json!({ "decline_code": code })),
                );
            }
            let mut next = stored.value.clone();
            next.payment_method = method.clone();
            next.updated_at = self.now();
            self.write_subscription(Vec::new(), &next, stored.version)
                .await
        })
        .await
    }

    /// One attempt at writing `next` over the subscription read at `version`, with `commits`.
    async fn write_subscription(
        &self,
        commits: Vec<Commit>,
        next: &Subscription,
        version: u64,
    ) -> Result<Attempt<SubscriptionView>, ApiError> {
        match self
            .store()
            .transact(commits, vec![subscription_write(next, Some(version))?])
            .await
        {
            Ok(()) => Ok(Attempt::Done(SubscriptionView::of(next))),
            Err(e) if retryable(&e) => Ok(Attempt::Retry),
            Err(e) => Err(commit_failed(e)),
        }
    }
}
