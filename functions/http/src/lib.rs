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
pub mod dispatch;
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
pub use dispatch::Routes;
pub use routes::{Access, Function, Route};

use authorize::{authorize, forbidden, Principal};

use body::{json_body, query, raw_body, DEFAULT_BODY_LIMIT, PROGRAM_BODY_LIMIT};

/// Stripe event objects are larger than our requests (a charge with its refunds).
const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Serves one function's routes (`R`, e.g. [`dispatch::Accrue`]) on the Lambda runtime. `app`
/// is built once by the caller and lives for the whole execution environment.
pub async fn run<S: Store, R: Routes>(app: App<S>, _routes: R) -> Result<(), lambda_http::Error> {
    let app = Arc::new(app);
    let claim = member_id_claim();
    lambda_http::run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(handle_routes::<S, R>(&app, claim, request).await) }
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
    match function {
        Function::Members => handle_routes::<S, dispatch::Members>(app, claim, request).await,
        Function::Accrue => handle_routes::<S, dispatch::Accrue>(app, claim, request).await,
        Function::Redeem => handle_routes::<S, dispatch::Redeem>(app, claim, request).await,
        Function::Rewards => handle_routes::<S, dispatch::Rewards>(app, claim, request).await,
    }
}

/// [`handle_with_claim`] for the function whose routes are `R`.
async fn handle_routes<S: Store, R: Routes>(
    app: &App<S>,
    claim: &str,
    request: Request,
) -> Response<Body> {
    let function = R::FUNCTION;
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let caller = Caller::of_request(&request, claim);
    let subject = caller.as_ref().map(|c| c.subject.clone());
    let result = match Route::resolve(&method, &path) {
        Ok(route) if function.serves(&route) => match authorize(&route, caller, claim) {
            Ok(principal) => use_case::<S, R>(app, route, &principal, &request).await,
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
async fn use_case<S: Store, R: Routes>(
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
    let result = R::dispatch(app, route, principal, request)
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

/// Query parameters as API Gateway parsed them (last value wins).
pub(crate) fn query_parameters(request: &Request) -> Vec<(String, String)> {
    let params = request.query_string_parameters();
    params
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
