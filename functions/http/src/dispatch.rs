//! One dispatcher per function: each binary links the use cases of its own routes and no
//! other (see [`Routes`]).

// `Routes::dispatch` takes the crate's `Principal`, which only `authorize` makes: outside this
// crate the trait can name a function's routes (for `run`) but neither call nor implement a
// dispatcher, so no caller can skip authorisation.
#![allow(private_interfaces)]

use super::*;

/// The routes one Lambda function serves, as a type: `run` is generic over it, so a function's
/// binary references only its own dispatcher and whole-program LTO drops every other use case
/// (and what only they use) from it.
pub trait Routes: Send + Sync + 'static {
    const FUNCTION: Function;

    fn dispatch<'a, S: Store>(
        app: &'a App<S>,
        route: Route,
        principal: &'a Principal,
        request: &'a Request,
    ) -> impl std::future::Future<Output = Result<Response<Body>, ApiError>> + Send + 'a;
}

/// A function's marker type and its [`Routes`], dispatching to `$dispatcher`.
macro_rules! function_routes {
    ($(#[$doc:meta])* $name:ident => $dispatcher:ident) => {
        $(#[$doc])*
        pub struct $name;

        impl Routes for $name {
            const FUNCTION: Function = Function::$name;

            fn dispatch<'a, S: Store>(
                app: &'a App<S>,
                route: Route,
                principal: &'a Principal,
                request: &'a Request,
            ) -> impl std::future::Future<Output = Result<Response<Body>, ApiError>> + Send + 'a
            {
                $dispatcher(app, route, principal, request)
            }
        }
    };
}

function_routes! {
    /// The `members` function: members, their ledger, tiers, subscriptions and referrals.
    Members => members
}

function_routes! {
    /// The `accrue` function: accruals and returns.
    Accrue => accrue
}

function_routes! {
    /// The `redeem` function: redemptions, reward codes and transfers.
    Redeem => redeem
}

function_routes! {
    /// The `rewards` function: the catalog, the program and the admin of promotions, campaigns
    /// and webhooks.
    Rewards => rewards
}

/// What a keyed write on a member's path carries, checked in this order: no query string, the
/// member id, the `Idempotency-Key`, the JSON body.
fn keyed_member_write(
    request: &Request,
    principal: &Principal,
    id: &str,
) -> Result<(MemberId, Option<IdempotencyKey>, Value), ApiError> {
    query(request, &[])?;
    let member = MemberId::parse(id)?;
    let key = idempotency_key(request, principal)?;
    let body = json_body(request, DEFAULT_BODY_LIMIT)?;
    Ok((member, key, body))
}

/// A route that reached the wrong dispatcher; `handle` checks [`Function::serves`] first, so
/// only a route table out of step with the dispatchers gets here.
fn not_served(function: Function, route: &Route) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("{function:?} does not serve {}", route.operation()),
    )
}

async fn members<S: Store>(
    app: &App<S>,
    route: Route,
    principal: &Principal,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    match route {
        Route::Enrol => {
            query(request, &[])?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            let enrolment = enrolment_for(principal, loyalty_core::service::parse_body(&body)?)?;
            Ok(outcome(app.enrol_with_key(enrolment, key).await?))
        }
        Route::GetMember(id) => {
            query(request, &[])?;
            let member = app.member_view(&MemberId::parse(&id)?).await?;
            Ok(respond(200, &to_json(&member)?))
        }
        Route::Ledger(id) => {
            let params = query(request, &["limit", "cursor"])?;
            let limit = body::limit(&params)?;
            let page = app
                .ledger_page(
                    &MemberId::parse(&id)?,
                    limit,
                    params.get("cursor").map(String::as_str),
                )
                .await?;
            Ok(respond(200, &to_json(&page)?))
        }
        Route::TierHistory(id) => {
            let params = query(request, &["limit", "cursor"])?;
            let limit = body::limit(&params)?;
            let page = app
                .tier_history(
                    &MemberId::parse(&id)?,
                    limit,
                    params.get("cursor").map(String::as_str),
                )
                .await?;
            Ok(respond(200, &to_json(&page)?))
        }
        Route::Referrals(id) => {
            let params = query(request, &["limit"])?;
            let limit = body::limit(&params)?;
            let list = app.member_referrals(&MemberId::parse(&id)?, limit).await?;
            Ok(respond(200, &to_json(&list)?))
        }
        Route::EvaluateTier(id) => {
            query(request, &[])?;
            let evaluation = app.evaluate_tier(&MemberId::parse(&id)?).await?;
            Ok(respond(200, &to_json(&evaluation)?))
        }
        Route::GrantTier(id) => {
            query(request, &[])?;
            let member = MemberId::parse(&id)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            let grant = loyalty_core::service::parse_body(&body)?;
            Ok(respond(
                200,
                &to_json(&app.grant_tier(actor(principal)?, &member, grant).await?)?,
            ))
        }
        Route::Adjust(id) => {
            let (member, key, body) = keyed_member_write(request, principal, &id)?;
            Ok(outcome(
                app.adjust(actor(principal)?, &member, key, &body).await?,
            ))
        }
        Route::StartSubscription(id) => {
            let (member, key, body) = keyed_member_write(request, principal, &id)?;
            let started = app.start_subscription(&member, key, &body).await?;
            // A first payment waiting on 3-D Secure: accepted, not yet created.
            let waiting =
                matches!(&started, Outcome::Created(view) if view["status"] == "incomplete");
            Ok(outcome_with(started, if waiting { 202 } else { 201 }))
        }
        Route::ReplaceSubscriptionCard(id) => {
            query(request, &[])?;
            let member = MemberId::parse(&id)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(respond(
                200,
                &to_json(&app.replace_subscription_card(&member, &body).await?)?,
            ))
        }
        Route::SubscriptionCharges(id) => {
            query(request, &[])?;
            Ok(respond(
                200,
                &to_json(&app.subscription_charges(&MemberId::parse(&id)?).await?)?,
            ))
        }
        Route::StripeWebhook => {
            query(request, &[])?;
            let signature = request
                .headers()
                .get(loyalty_core::subscriptions::signature::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok());
            let body = raw_body(request, WEBHOOK_BODY_LIMIT)?;
            Ok(respond(
                200,
                &to_json(&app.receive_payment_webhook(signature, body).await?)?,
            ))
        }
        Route::GetSubscription(id) => {
            query(request, &[])?;
            Ok(respond(
                200,
                &to_json(&app.subscription_view(&MemberId::parse(&id)?).await?)?,
            ))
        }
        Route::CancelSubscription(id) => {
            query(request, &[])?;
            Ok(respond(
                200,
                &to_json(&app.cancel_subscription(&MemberId::parse(&id)?).await?)?,
            ))
        }
        Route::ChangeSubscriptionPlan(id) => {
            query(request, &[])?;
            let member = MemberId::parse(&id)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(respond(
                200,
                &to_json(&app.change_subscription_plan(&member, &body).await?)?,
            ))
        }
        other => Err(not_served(Function::Members, &other)),
    }
}

async fn accrue<S: Store>(
    app: &App<S>,
    route: Route,
    principal: &Principal,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    match route {
        Route::Accrue(id) => {
            let params = query(request, &["dry_run"])?;
            let dry_run = match params.get("dry_run").map(String::as_str) {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => {
                    return Err(ApiError::invalid(
                        "dry_run",
                        "dry_run must be true or false",
                    ))
                }
            };
            let member = MemberId::parse(&id)?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(outcome(app.accrue(&member, key, &body, dry_run).await?))
        }
        Route::Return(id) => {
            let (member, key, body) = keyed_member_write(request, principal, &id)?;
            Ok(outcome(app.return_order(&member, key, &body).await?))
        }
        other => Err(not_served(Function::Accrue, &other)),
    }
}

async fn redeem<S: Store>(
    app: &App<S>,
    route: Route,
    principal: &Principal,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    match route {
        Route::Redeem(id) => {
            let (member, key, body) = keyed_member_write(request, principal, &id)?;
            Ok(outcome(app.redeem(&member, key, &body).await?))
        }
        Route::GetRedemption(code) => {
            query(request, &[])?;
            let view = app.redemption_view(&code, principal.own_member()).await?;
            Ok(respond(200, &to_json(&view)?))
        }
        Route::UseRedemption(code) => {
            query(request, &[])?;
            Ok(respond(200, &to_json(&app.use_code(&code).await?)?))
        }
        Route::CancelRedemption(code) => {
            query(request, &[])?;
            let view = app.cancel_code(&code, principal.own_member()).await?;
            Ok(respond(200, &to_json(&view)?))
        }
        Route::Transfer(id) => {
            let (member, key, body) = keyed_member_write(request, principal, &id)?;
            Ok(outcome(app.transfer(&member, key, &body).await?))
        }
        other => Err(not_served(Function::Redeem, &other)),
    }
}

async fn rewards<S: Store>(
    app: &App<S>,
    route: Route,
    principal: &Principal,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    match route {
        Route::CreatePromotion => {
            query(request, &[])?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(outcome(
                app.create_promotion(actor(principal)?, key, &body).await?,
            ))
        }
        Route::ListPromotions => {
            query(request, &[])?;
            Ok(respond(200, &app.list_promotions().await?))
        }
        Route::CancelPromotion(id) => {
            query(request, &[])?;
            let promotion = app.cancel_promotion(actor(principal)?, &id).await?;
            Ok(respond(200, &to_json(&promotion)?))
        }
        Route::CreateCampaign => {
            query(request, &[])?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(outcome_with(
                app.create_campaign(actor(principal)?, key, &body).await?,
                202,
            ))
        }
        Route::GetCampaign(id) => {
            query(request, &[])?;
            Ok(respond(200, &to_json(&app.get_campaign(&id).await?)?))
        }
        Route::CancelCampaign(id) => {
            query(request, &[])?;
            let campaign = app.cancel_campaign(actor(principal)?, &id).await?;
            Ok(respond(200, &to_json(&campaign)?))
        }
        Route::CreateWebhook => {
            query(request, &[])?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(respond(
                201,
                &app.create_webhook(actor(principal)?, &body).await?,
            ))
        }
        Route::ListWebhooks => {
            query(request, &[])?;
            Ok(respond(200, &app.list_webhooks().await?))
        }
        Route::DisableWebhook(id) => {
            query(request, &[])?;
            Ok(respond(
                200,
                &app.disable_webhook(actor(principal)?, &id).await?,
            ))
        }
        Route::DeleteWebhook(id) => {
            query(request, &[])?;
            Ok(respond(
                200,
                &app.delete_webhook(actor(principal)?, &id).await?,
            ))
        }
        Route::WebhookDeliveries(id) => {
            let params = query(request, &["limit"])?;
            let limit = body::limit(&params)?;
            Ok(respond(200, &app.webhook_deliveries(&id, limit).await?))
        }
        Route::RetryWebhookDelivery(id, delivery) => {
            query(request, &[])?;
            let retried = app
                .retry_webhook_delivery(actor(principal)?, &id, &delivery)
                .await?;
            Ok(respond(202, &retried))
        }
        Route::ListRewards => {
            query(request, &[])?;
            let rewards = app.rewards().await?;
            Ok(respond(200, &json!({ "rewards": to_json(&rewards)? })))
        }
        Route::CreateReward => {
            query(request, &[])?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(outcome(
                app.create_reward(actor(principal)?, key, &body).await?,
            ))
        }
        Route::GetProgram => {
            query(request, &[])?;
            let mut program = to_json(&*app.program().await?)?;
            // A public route: who on the merchant's staff published the program is not public.
            if let Some(object) = program.as_object_mut() {
                object.remove("created_by");
            }
            Ok(respond(200, &program))
        }
        Route::PutProgram => {
            query(request, &[])?;
            let raw = raw_body(request, PROGRAM_BODY_LIMIT)?;
            let program = app.replace_program(actor(principal)?, raw).await?;
            Ok(respond(200, &to_json(&program)?))
        }
        other => Err(not_served(Function::Rewards, &other)),
    }
}
