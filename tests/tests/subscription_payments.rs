//! Stripe's saved-card flow, end to end on DynamoDB Local with the in-memory provider: one
//! customer per member, the first payment on session, 3-D Secure answered 202 `incomplete` with
//! the client secret, activation by a signed webhook or by the retried request, renewals off
//! session on the saved card, a replaced card, refunds and disputes by webhook (the bonus taken
//! back once, the subscription ended), refused requests that end the attempt, and the charge
//! history.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use loyalty_core::clock::{Clock, ManualClock};
use loyalty_core::events::MemoryQueue;
use loyalty_core::ids::MemberId;
use loyalty_core::ledger::EntryType;
use loyalty_core::service::{AppConfig, BillingResult, Outcome};
use loyalty_core::subscriptions::payments::{MemoryPayments, Presence, MEMORY_WEBHOOK_SECRET};
use loyalty_core::subscriptions::signature::sign;
use loyalty_core::subscriptions::{AttemptStatus, SubscriptionStatus};
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_http::{handle, Function};
use loyalty_tests::events::{json_of, ApiRequest};
use loyalty_tests::*;
use serde_json::{json, Value};

struct PayApp {
    app: Arc<App<DynamoStore>>,
    clock: Arc<ManualClock>,
    payments: Arc<MemoryPayments>,
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).unwrap()
}

async fn pay_app(start: DateTime<Utc>) -> PayApp {
    let clock = Arc::new(ManualClock::new(start));
    let payments = Arc::new(MemoryPayments::default());
    let app = App::new(dynamo_store().await, clock.clone(), AppConfig::default())
        .with_events(Arc::new(MemoryQueue::default()))
        .with_payments(payments.clone());
    PayApp {
        app: Arc::new(app),
        clock,
        payments,
    }
}

fn start_body(method: &str) -> Value {
    json!({ "plan_id": "plus", "payment_method": method })
}

/// A webhook delivery as Stripe sends it, signed now with the in-memory provider's secret.
fn delivery(p: &PayApp, event: &Value) -> ApiRequest {
    let body = event.to_string();
    let t = p.clock.now().timestamp();
    ApiRequest::post("/v1/webhooks/stripe", event.clone())
        .anonymous()
        .header(
            "Stripe-Signature",
            &format!(
                "t={t},v1={}",
                sign(MEMORY_WEBHOOK_SECRET, t, body.as_bytes())
            ),
        )
}

fn intent_event(event_id: &str, kind: &str, intent: &str, charge_id: &str, attempt: u32) -> Value {
    json!({
        "id": event_id, "object": "event", "type": kind,
        "data": { "object": {
            "id": intent, "object": "payment_intent",
            "metadata": { "charge_id": charge_id, "attempt": attempt.to_string() }
        } }
    })
}

fn refund_event(event_id: &str, kind: &str, intent: &str, reference: &str) -> Value {
    let object = if kind == "charge.refunded" {
        json!({ "id": "ch_1", "object": "charge", "payment_intent": intent,
                "refunds": { "data": [ { "id": reference } ] } })
    } else {
        json!({ "id": reference, "object": "dispute", "charge": "ch_1", "payment_intent": intent })
    };
    json!({ "id": event_id, "object": "event", "type": kind, "data": { "object": object } })
}

async fn webhook(p: &PayApp, event: &Value) -> (u16, Value) {
    let response = handle(&p.app, Function::Members, delivery(p, event).request()).await;
    (response.status().as_u16(), json_of(&response))
}

async fn started(p: &PayApp, member: &MemberId) -> Value {
    let outcome = p
        .app
        .start_subscription(member, key(&unique("start")), &start_body("pm_card_visa"))
        .await
        .expect("started");
    body(&outcome).clone()
}

#[tokio::test]
async fn the_first_payment_saves_the_card_on_session_and_renewals_charge_it_off_session() {
    let p = pay_app(at(2027, 1, 15)).await;
    let member = enrol(&p.app, &unique("m")).await;
    let view = started(&p, &member).await;
    assert_eq!(view["status"], "active");

    p.clock.set(at(2027, 2, 15));
    assert_eq!(
        p.app.bill_subscription(&member).await.expect("billed"),
        BillingResult::Renewed
    );
    let payments = p.payments.payments();
    assert_eq!(payments.len(), 2);
    let (first, renewal) = (&payments[0].0, &payments[1].0);
    assert_eq!(first.presence, Presence::OnSession);
    assert_eq!(renewal.presence, Presence::OffSession);
    assert!(first.customer.starts_with("cus_"), "{first:?}");
    assert_eq!(renewal.customer, first.customer, "one customer per member");
    assert_eq!(renewal.payment_method, first.payment_method);
    assert_ne!(first.idempotency_key, renewal.idempotency_key);
    assert_eq!(p.payments.customers(), 1);
}

#[tokio::test]
async fn a_first_payment_needing_3d_secure_answers_202_incomplete_and_a_signed_webhook_activates_it_once(
) {
    let p = pay_app(at(2027, 3, 1)).await;
    let id = unique("m");
    let member = enrol(&p.app, &id).await;
    p.payments.require_action("pm_card_threeDSecure2Required");
    let path = format!("/v1/members/{id}/subscription");
    let request = ApiRequest::post(&path, start_body("pm_card_threeDSecure2Required")).key("k1");
    let response = handle(&p.app, Function::Members, request.request()).await;
    let answer = json_of(&response);
    assert_eq!(response.status(), 202, "{answer}");
    assert_eq!(answer["status"], "incomplete");
    let secret = answer["client_secret"].as_str().expect("client secret");
    let intent = p.payments.payments()[0].1.id.clone();
    assert!(secret.starts_with(&intent), "{secret}");
    let before = member_state(&p.app, &member).await.balance.available;

    // The member finishes 3-D Secure in the app; Stripe reports the success.
    p.payments.complete_action(&intent, true);
    let sub_id = answer["subscription_id"].as_str().expect("id");
    let succeeded = intent_event(
        &unique("evt"),
        "payment_intent.succeeded",
        &intent,
        &format!("{sub_id}:1"),
        1,
    );
    let (status, receipt) = webhook(&p, &succeeded).await;
    assert_eq!((status, receipt["result"].clone()), (200, json!("applied")));
    let view = p.app.subscription_view(&member).await.expect("view");
    assert_eq!(view.status, SubscriptionStatus::Active);
    let after = member_state(&p.app, &member).await;
    assert_eq!(after.balance.available, before + 250);
    assert_eq!(after.tier, "gold");

    // Stripe delivers again: nothing more happens.
    let (status, receipt) = webhook(&p, &succeeded).await;
    assert_eq!(
        (status, receipt["result"].clone()),
        (200, json!("duplicate"))
    );
    assert_eq!(
        member_state(&p.app, &member).await.balance.available,
        before + 250
    );
    // The app retries its request with the same key: the active subscription, no new charge.
    let replay = handle(&p.app, Function::Members, request.request()).await;
    assert_eq!(json_of(&replay)["status"], "active");
    assert_eq!(p.payments.payments().len(), 1);
}

#[tokio::test]
async fn retrying_the_start_after_3d_secure_activates_from_the_providers_answer() {
    let p = pay_app(at(2027, 3, 2)).await;
    let member = enrol(&p.app, &unique("m")).await;
    p.payments.require_action("pm_3ds");
    let first = p
        .app
        .start_subscription(&member, key("k"), &start_body("pm_3ds"))
        .await
        .expect("incomplete");
    assert_eq!(body(&first)["status"], "incomplete");
    // Asked again before the member finished: still waiting, the same payment.
    let waiting = p
        .app
        .start_subscription(&member, key("k"), &start_body("pm_3ds"))
        .await
        .expect("still incomplete");
    assert_eq!(
        body(&waiting)["client_secret"],
        body(&first)["client_secret"]
    );
    assert_eq!(p.payments.payments().len(), 1);

    p.payments
        .complete_action(&p.payments.payments()[0].1.id, true);
    let done = p
        .app
        .start_subscription(&member, key("k"), &start_body("pm_3ds"))
        .await
        .expect("active");
    assert!(matches!(done, Outcome::Created(_)));
    assert_eq!(body(&done)["status"], "active");
    assert_eq!(p.payments.payments().len(), 1, "no second charge");
}

#[tokio::test]
async fn a_refund_by_webhook_takes_the_bonus_back_once_and_ends_the_subscription() {
    let p = pay_app(at(2027, 4, 1)).await;
    let member = enrol(&p.app, &unique("m")).await;
    let view = started(&p, &member).await;
    let sub_id = view["subscription_id"].as_str().expect("id").to_owned();
    let intent = p.payments.payments()[0].1.id.clone();
    let before = member_state(&p.app, &member).await;
    assert_eq!(before.balance.available, 350);

    let refund_id = unique("re");
    let refunded = refund_event(&unique("evt"), "charge.refunded", &intent, &refund_id);
    let (status, receipt) = webhook(&p, &refunded).await;
    assert_eq!((status, receipt["result"].clone()), (200, json!("applied")));
    let after = member_state(&p.app, &member).await;
    assert_eq!(after.balance.available, 100, "the 250 bonus is reversed");
    assert!(after.plan.is_none(), "the plan's benefits end");
    let view = p.app.subscription_view(&member).await.expect("view");
    assert_eq!(view.status, SubscriptionStatus::Canceled);
    let ledger = audited_ledger(&p.app, &member).await;
    let reversal = ledger
        .iter()
        .find(|e| e.entry_type == EntryType::Reverse)
        .expect("a reverse entry");
    assert_eq!(reversal.points, -250);
    assert_eq!(
        reversal.entry_id,
        format!("subscription_refund:{refund_id}")
    );

    // The same refund again, under a new event id (Stripe's charge.refunded after a dispute
    // closes, say): the charge is already taken back.
    let again = refund_event(&unique("evt"), "charge.refunded", &intent, &refund_id);
    let (_, receipt) = webhook(&p, &again).await;
    assert_eq!(receipt["result"], "ignored");
    assert_eq!(member_state(&p.app, &member).await.balance.available, 100);
    let charge = p
        .app
        .subscription_charge(&sub_id, 1)
        .await
        .expect("read")
        .expect("charge");
    assert_eq!(
        charge.refund.map(|r| r.reference),
        Some(refund_id),
        "the charge records the refund"
    );
}

#[tokio::test]
async fn a_refund_takes_back_what_the_period_granted_even_after_the_plan_bonus_changed() {
    let p = pay_app(at(2027, 4, 3)).await;
    let member = enrol(&p.app, &unique("m")).await;
    started(&p, &member).await;
    let intent = p.payments.payments()[0].1.id.clone();
    assert_eq!(member_state(&p.app, &member).await.balance.available, 350);

    // The merchant doubles the plan's bonus after this period was granted 250.
    let mut document = p.app.program().await.expect("program").document.clone();
    for plan in &mut document.plans {
        plan.monthly_bonus_points *= 2;
    }
    let body = serde_json::to_vec(&document).expect("document");
    p.app
        .replace_program("test-admin", &body)
        .await
        .expect("program replaced");

    let refunded = refund_event(&unique("evt"), "charge.refunded", &intent, &unique("re"));
    let (status, _) = webhook(&p, &refunded).await;
    assert_eq!(status, 200);
    assert_eq!(
        member_state(&p.app, &member).await.balance.available,
        100,
        "the 250 granted are taken back, not today's 500"
    );
}

#[tokio::test]
async fn a_dispute_by_webhook_ends_the_subscription_and_reverses_the_bonus() {
    let p = pay_app(at(2027, 4, 2)).await;
    let member = enrol(&p.app, &unique("m")).await;
    started(&p, &member).await;
    let intent = p.payments.payments()[0].1.id.clone();
    assert_eq!(member_state(&p.app, &member).await.balance.available, 350);
    let disputed = refund_event(
        &unique("evt"),
        "charge.dispute.created",
        &intent,
        &unique("dp"),
    );
    let (status, receipt) = webhook(&p, &disputed).await;
    assert_eq!((status, receipt["result"].clone()), (200, json!("applied")));
    let after = member_state(&p.app, &member).await;
    assert_eq!(after.balance.available, 100);
    assert_eq!(
        p.app.subscription_view(&member).await.expect("view").status,
        SubscriptionStatus::Canceled
    );
}

#[tokio::test]
async fn a_webhook_without_a_valid_signature_is_refused_and_changes_nothing() {
    let p = pay_app(at(2027, 4, 3)).await;
    let event = intent_event(
        "evt_forged",
        "payment_intent.succeeded",
        "pi_1",
        "sub_x:1",
        1,
    );
    let unsigned = handle(
        &p.app,
        Function::Members,
        ApiRequest::post("/v1/webhooks/stripe", event.clone())
            .anonymous()
            .request(),
    )
    .await;
    assert_eq!(unsigned.status(), 400);
    let t = p.clock.now().timestamp();
    let forged = ApiRequest::post("/v1/webhooks/stripe", event.clone())
        .anonymous()
        .header(
            "Stripe-Signature",
            &format!(
                "t={t},v1={}",
                sign("whsec_guess", t, event.to_string().as_bytes())
            ),
        );
    let refused = handle(&p.app, Function::Members, forged.request()).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(json_of(&refused)["error"]["code"], "validation_error");
    assert_eq!(
        json_of(&refused)["error"]["details"]["field"],
        "Stripe-Signature"
    );
    // Signed five minutes and one second ago: a replay.
    let old = t - 301;
    let stale = ApiRequest::post("/v1/webhooks/stripe", event.clone())
        .anonymous()
        .header(
            "Stripe-Signature",
            &format!(
                "t={old},v1={}",
                sign(MEMORY_WEBHOOK_SECRET, old, event.to_string().as_bytes())
            ),
        );
    assert_eq!(
        handle(&p.app, Function::Members, stale.request())
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn a_refused_renewal_request_ends_the_attempt_flags_the_subscription_and_follows_dunning() {
    let p = pay_app(at(2027, 5, 1)).await;
    let member = enrol(&p.app, &unique("m")).await;
    let view = started(&p, &member).await;
    let sub_id = view["subscription_id"].as_str().expect("id").to_owned();
    p.payments.reject("pm_card_visa");
    p.clock.set(at(2027, 6, 1));
    assert_eq!(
        p.app.bill_subscription(&member).await.expect("billed"),
        BillingResult::PastDue
    );
    let charge = p
        .app
        .subscription_charge(&sub_id, 2)
        .await
        .expect("read")
        .expect("charge");
    assert_eq!(charge.attempts[0].status, AttemptStatus::Rejected);
    assert_eq!(
        charge.attempts[0].error_type.as_deref(),
        Some("invalid_request_error")
    );
    // Never an endless pending state: the same day's run finds nothing to do, and the
    // subscription reaches an end through dunning.
    assert_eq!(
        p.app.bill_subscription(&member).await.expect("again"),
        BillingResult::NotDue
    );
    for day in [2, 4, 8] {
        p.clock.set(at(2027, 6, day));
        p.app.bill_subscription(&member).await.expect("retried");
    }
    assert_eq!(
        p.app.subscription_view(&member).await.expect("view").status,
        SubscriptionStatus::Lapsed
    );
}

#[tokio::test]
async fn a_member_replaces_the_card_and_the_next_renewal_charges_it() {
    let p = pay_app(at(2027, 7, 1)).await;
    let id = unique("m");
    let member = enrol(&p.app, &id).await;
    started(&p, &member).await;
    let path = format!("/v1/members/{id}/subscription/payment-method");
    let replaced = handle(
        &p.app,
        Function::Members,
        ApiRequest::new("PUT", &path)
            .raw_body(r#"{"payment_method":"pm_card_mastercard"}"#)
            .as_member(&id)
            .request(),
    )
    .await;
    assert_eq!(replaced.status(), 200, "{}", json_of(&replaced));
    let first_customer = p.payments.payments()[0].0.customer.clone();
    assert_eq!(
        p.payments.saved_cards(),
        vec![(first_customer.clone(), "pm_card_mastercard".to_owned())]
    );
    p.payments.decline("pm_card_declined_here");
    let refused = handle(
        &p.app,
        Function::Members,
        ApiRequest::new("PUT", &path)
            .raw_body(r#"{"payment_method":"pm_card_declined_here"}"#)
            .as_member(&id)
            .request(),
    )
    .await;
    assert_eq!(refused.status(), 402);

    p.clock.set(at(2027, 8, 1));
    p.app.bill_subscription(&member).await.expect("billed");
    let renewal = p.payments.payments()[1].0.clone();
    assert_eq!(renewal.payment_method, "pm_card_mastercard");
    assert_eq!(renewal.customer, first_customer);
}

#[tokio::test]
async fn the_charge_history_shows_periods_attempts_amounts_and_outcomes_to_the_member_and_support()
{
    let p = pay_app(at(2027, 9, 1)).await;
    let id = unique("m");
    let member = enrol(&p.app, &id).await;
    started(&p, &member).await;
    p.payments.decline("pm_card_visa");
    p.clock.set(at(2027, 10, 1));
    p.app.bill_subscription(&member).await.expect("declined");
    p.payments.accept("pm_card_visa");
    p.clock.set(at(2027, 10, 2));
    p.app.bill_subscription(&member).await.expect("recovered");

    let path = format!("/v1/members/{id}/subscription/charges");
    let own = handle(
        &p.app,
        Function::Members,
        ApiRequest::get(&path).as_member(&id).request(),
    )
    .await;
    assert_eq!(own.status(), 200, "{}", json_of(&own));
    let history = json_of(&own);
    let periods = history["periods"].as_array().expect("periods");
    assert_eq!(periods.len(), 2);
    assert_eq!(periods[0]["period"], 2);
    assert_eq!(periods[0]["outcome"], "paid");
    assert_eq!(periods[0]["amount"]["minor"], 999);
    let attempts: Vec<&str> = periods[0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(attempts, ["declined", "succeeded"]);
    assert_eq!(periods[0]["attempts"][0]["decline_code"], "card_declined");
    assert_eq!(periods[1]["period"], 1);

    let support = handle(
        &p.app,
        Function::Members,
        ApiRequest::get(&path)
            .caller("agent-1", &["loyalty/support"])
            .request(),
    )
    .await;
    assert_eq!(support.status(), 200);
    let other = handle(
        &p.app,
        Function::Members,
        ApiRequest::get(&path).as_member("someone-else").request(),
    )
    .await;
    assert_eq!(other.status(), 403);
    let pos = handle(
        &p.app,
        Function::Members,
        ApiRequest::get(&path)
            .caller("till-1", &["loyalty/pos"])
            .request(),
    )
    .await;
    assert_eq!(pos.status(), 403);
}
