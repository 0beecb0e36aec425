//! API Gateway (HTTP API, payload 2.0) in front of the core services. Each Lambda function serves
//! a subset of the routes; [`handle`] is generic over the store, so the same code runs on Lambda,
//! in the local runner and in tests fed with real API Gateway events.
//!
//! A request goes `routes` (which route, which function, which scopes) → `caller` (the JWT
//! claims API Gateway verified) → `authorize` (the route's scopes, a member token's own member)
//! → `body` (limits, JSON, query) → the core services. Nothing is read or written before
//! `authorize` has admitted the caller.

mod authorize;
mod body;
mod caller;
mod routes;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use lambda_http::{service_fn, Body, Request, RequestExt, Response};
use loyalty_core::commands::EnrolRequest;
use loyalty_core::ids::{IdempotencyKey, MemberId};
use loyalty_core::ports::Store;
use loyalty_core::service::Outcome;
use loyalty_core::{ApiError, App, ErrorCode};
use loyalty_metrics::{self as metrics, Metric};
use serde_json::{json, Value};
use tracing::Instrument;

pub use caller::{
    member_id_claim, Caller, Scope, Scopes, DEFAULT_MEMBER_ID_CLAIM, MEMBER_ID_CLAIM_ENV,
};
pub use routes::{Access, Function, Route};

use authorize::{authorize, forbidden, Principal};

use body::{json_body, query, raw_body, DEFAULT_BODY_LIMIT, PROGRAM_BODY_LIMIT};

/// Stripe event objects are larger than our requests (a charge with its refunds).
const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Serves `function`'s routes on the Lambda runtime. `app` is built once by the caller and lives
/// for the whole execution environment.
pub async fn run<S: Store>(app: App<S>, function: Function) -> Result<(), lambda_http::Error> {
    let app = Arc::new(app);
    lambda_http::run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(handle(&app, function, request).await) }
    }))
    .await
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn outcome(outcome: Outcome) -> Response<Body> {
    outcome_with(outcome, 201)
}

/// A keyed write's response; `created` is the status of a write that happened (201, or 202
/// for work accepted to run later), and a replay answers with the same status.
fn outcome_with(outcome: Outcome, created: u16) -> Response<Body> {
    match outcome {
        Outcome::Created(body) => respond(created, &body),
        Outcome::Simulated(body) => respond(200, &body),
        Outcome::Replayed(body) => {
            let mut response = respond(created, &body);
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, http::HeaderValue::from_static("true"));
            response
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|_| ApiError::internal())
}

/// The request's `Idempotency-Key`, in the caller's own namespace: keys are chosen by clients,
/// and two clients choosing the same one must not replay each other's responses.
fn idempotency_key(
    request: &Request,
    principal: &Principal,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let subject = actor(principal)?;
    request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .map(|value| {
            let text = value.to_str().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidIdempotencyKey,
                    "Idempotency-Key must be printable ASCII",
                )
            })?;
            Ok(IdempotencyKey::parse(text)?.scoped_to(subject))
        })
        .transpose()
}

/// Who acts on a protected route: the token's `sub`, recorded on what admins write.
fn actor(principal: &Principal) -> Result<&str, ApiError> {
    principal.subject().ok_or_else(|| {
        // Only public routes have no subject, and they neither write nor take keys.
        tracing::error!("a protected route reached dispatch without a caller");
        ApiError::internal()
    })
}

/// Handles one request for `function`. Every failure becomes a JSON error with a stable code;
/// nothing a client sends can make this panic or return a 5xx. A member token's member id is
/// read from the claim `MEMBER_ID_CLAIM` names (see [`member_id_claim`]).
pub async fn handle<S: Store>(
    app: &App<S>,
    function: Function,
    request: Request,
) -> Response<Body> {
    handle_with_claim(app, function, member_id_claim(), request).await
}

/// [`handle`], with the member id claim given rather than read from the environment (for a
/// host that serves several stacks in one process, such as the local runner).
pub async fn handle_with_claim<S: Store>(
    app: &App<S>,
    function: Function,
    claim: &str,
    request: Request,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let caller = Caller::of_request(&request, claim);
    let subject = caller.as_ref().map(|c| c.subject.clone());
    let result = match Route::resolve(&method, &path) {
        Ok(route) if function.serves(&route) => match authorize(&route, caller, claim) {
            Ok(principal) => use_case(app, route, &principal, &request).await,
            Err(error) => Err(error),
        },
        Ok(_) => Err(ApiError::new(
            ErrorCode::RouteNotFound,
            format!("{function:?} does not serve {method} {path}"),
        )),
        Err(error) => Err(error),
    };
    let response = result.unwrap_or_else(|error| respond(error.status(), &error.body()));
    tracing::info!(
        function = ?function,
        %method,
        %path,
        caller = subject.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Runs the route's use case in a span naming the operation and the member (every log line
/// inside carries both), and counts what the metrics track at this edge: replayed keyed writes
/// and refused redemptions.
async fn use_case<S: Store>(
    app: &App<S>,
    route: Route,
    principal: &Principal,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let operation = route.operation();
    let span = tracing::info_span!(
        "use_case",
        operation,
        member_id = route.member_in_path().unwrap_or("-"),
    );
    let refusals_counted = matches!(route, Route::Redeem(_));
    let result = dispatch(app, route, principal, request)
        .instrument(span)
        .await;
    match &result {
        Ok(response) if response.headers().contains_key(REPLAYED_HEADER) => {
            metrics::emit(Metric::IdempotentReplay { operation }, 1)
        }
        Err(error) if refusals_counted => metrics::emit(
            Metric::RedemptionRefused {
                code: error.code.as_str(),
            },
            1,
        ),
        _ => {}
    }
    result
}

/// What a member token may enrol: itself, named by its claim whether or not the body says so.
fn enrolment_for(
    principal: &Principal,
    mut enrolment: EnrolRequest,
) -> Result<EnrolRequest, ApiError> {
    if let Some(own) = principal.own_member() {
        match &enrolment.member_id {
            None => enrolment.member_id = Some(own.clone()),
            Some(named) if named == own => {}
            Some(_) => {
                return Err(forbidden(
                    "a member token enrols only itself: member_id must equal its member id claim",
                ))
            }
        }
    }
    Ok(enrolment)
}

async fn dispatch<S: Store>(
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
        Route::Redeem(id) => {
            query(request, &[])?;
            let member = MemberId::parse(&id)?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
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
            query(request, &[])?;
            let member = MemberId::parse(&id)?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(outcome(app.transfer(&member, key, &body).await?))
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
            query(request, &[])?;
            let member = MemberId::parse(&id)?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(outcome(
                app.adjust(actor(principal)?, &member, key, &body).await?,
            ))
        }
        Route::Return(id) => {
            query(request, &[])?;
            let member = MemberId::parse(&id)?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
            Ok(outcome(app.return_order(&member, key, &body).await?))
        }
        Route::StartSubscription(id) => {
            query(request, &[])?;
            let member = MemberId::parse(&id)?;
            let key = idempotency_key(request, principal)?;
            let body = json_body(request, DEFAULT_BODY_LIMIT)?;
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
    }
}

/// Query parameters as API Gateway parsed them (last value wins).
pub(crate) fn query_parameters(request: &Request) -> Vec<(String, String)> {
    let params = request.query_string_parameters();
    params
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
