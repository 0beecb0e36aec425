//! Referrals on DynamoDB Local, with the referral worker fed real SQS and EventBridge event
//! JSON: the happy path, self-referral, an existing member, the monthly cap and the daily
//! velocity, a farming run of 50 scripted sign-ups, duplicate and out-of-order messages, and the
//! expiry sweep run twice.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use loyalty_core::clock::{Clock, ManualClock};
use loyalty_core::commands::EnrolRequest;
use loyalty_core::ids::MemberId;
use loyalty_core::ledger::Source;
use loyalty_core::ports::{Expect, MemberStore, Record, RecordStore, RecordWrite};
use loyalty_core::referrals::{referral_id, Referral, KIND};
use loyalty_core::service::{parse_body, AppConfig};
use loyalty_core::{App, ErrorCode};
use loyalty_dynamo::DynamoStore;
use loyalty_http::{handle, Function};
use loyalty_tests::events::{error_code, json_of, ApiRequest};
use loyalty_tests::stream_relay::RelayedQueue;
use loyalty_tests::*;
use serde_json::{json, Value};

/// The shipped default policy: referrer 500, referee 250, first purchase ≥ 25.00 USD, 10 per
/// month, 3 per day, 30 days to qualify.
const REFERRER: i64 = 500;
const REFEREE: i64 = 250;
const WELCOME: i64 = 100;

struct RefApp {
    app: Arc<App<DynamoStore>>,
    clock: Arc<ManualClock>,
    /// A referee's first qualifying purchase reaches the worker from the table's stream,
    /// never from the accrual itself.
    queue: RelayedQueue,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap()
}

async fn ref_app() -> RefApp {
    let clock = Arc::new(ManualClock::new(start()));
    let store = streaming_store().await;
    let queue = RelayedQueue::of(&store).await;
    let app =
        App::new(store, clock.clone(), AppConfig::default()).with_referral_queue(queue.queue());
    RefApp {
        app: Arc::new(app),
        clock,
        queue,
    }
}

/// Publishes the default program with `referrals` fields overridden.
async fn set_policy(app: &App<DynamoStore>, overrides: Value) {
    publish_default_program_with(app, |document| {
        for (field, value) in overrides.as_object().expect("object") {
            document["referrals"][field] = value.clone();
        }
    })
    .await;
}

async fn enrol_with(
    app: &App<DynamoStore>,
    body: Value,
) -> Result<MemberId, loyalty_core::ApiError> {
    let request: EnrolRequest = parse_body(&body)?;
    Ok(app.enrol(request).await?.member_id)
}

async fn referral_code(app: &App<DynamoStore>, id: &MemberId) -> String {
    member_state(app, id)
        .await
        .referral_code
        .as_str()
        .to_owned()
}

/// Enrols a fresh referrer and returns it with its code.
async fn referrer(app: &App<DynamoStore>, email: &str) -> (MemberId, String) {
    let id = enrol_with(app, json!({ "member_id": unique("ref"), "email": email }))
        .await
        .expect("referrer enrolled");
    let code = referral_code(app, &id).await;
    (id, code)
}

async fn referee(app: &App<DynamoStore>, code: &str) -> MemberId {
    enrol_with(app, json!({ "member_id": unique("friend"), "email": format!("{}@example.org", unique("f")), "referral_code": code }))
        .await
        .expect("referee enrolled")
}

fn sqs_event(bodies: &[(String, String)]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1773133200000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1773133200001"
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ReferralQueue",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn scheduled_event(at: DateTime<Utc>) -> Value {
    json!({
        "version": "0", "id": unique("ev"), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": at.to_rfc3339(), "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/DailyReferralSweep"], "detail": {}
    })
}

/// Delivers `bodies` as one SQS batch and returns the ids of the records reported failed.
async fn deliver(app: &App<DynamoStore>, bodies: &[String]) -> Vec<String> {
    let messages: Vec<(String, String)> =
        bodies.iter().map(|b| (unique("msg"), b.clone())).collect();
    deliver_messages(app, &messages).await
}

async fn deliver_messages(app: &App<DynamoStore>, messages: &[(String, String)]) -> Vec<String> {
    let response = referral_worker::handle(app, sqs_event(messages))
        .await
        .expect("batch handled");
    response["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("id").to_owned())
        .collect()
}

/// The referral id of a referee, from the member item as the accrual derives it.
async fn rid(app: &App<DynamoStore>, referee: &MemberId) -> String {
    referral_id(referee, member_state(app, referee).await.enrolled_at)
}

async fn referral(app: &App<DynamoStore>, referee: &MemberId) -> Referral {
    let id = rid(app, referee).await;
    referral_by_id(app, &id).await
}

async fn referral_by_id(app: &App<DynamoStore>, id: &str) -> Referral {
    app.store()
        .record(KIND, id)
        .await
        .expect("store")
        .expect("referral recorded")
        .parse()
        .expect("referral")
}

async fn referral_entries(app: &App<DynamoStore>, id: &MemberId) -> Vec<(String, i64)> {
    audited_ledger(app, id)
        .await
        .into_iter()
        .filter(|e| matches!(e.source, Source::Referral { .. }))
        .map(|e| (e.entry_id, e.points))
        .collect()
}

async fn list(app: &App<DynamoStore>, id: &MemberId) -> Value {
    let response = handle(
        app,
        Function::Members,
        ApiRequest::get(&format!("/v1/members/{id}/referrals")).request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    json_of(&response)
}

#[tokio::test]
async fn happy_path_rewards_both_sides_once_after_a_qualifying_first_purchase() {
    let RefApp { app, queue, .. } = ref_app().await;
    let (alice, code) = referrer(&app, "alice@example.com").await;
    // Codes are case-insensitive.
    let bob = referee(&app, &code.to_lowercase()).await;
    assert_eq!(
        member_state(&app, &bob).await.referred_by.as_ref(),
        Some(&alice)
    );

    let pending = list(&app, &alice).await;
    assert_eq!(pending["referrals"][0]["status"], "pending");
    assert_eq!(pending["referrals"][0]["referee_id"], bob.as_str());
    assert_eq!(pending["points_earned"], 0);

    // Below the minimum: nothing is announced.
    accrue(&app, &bob, "b1", purchase("b-1", 1_000))
        .await
        .expect("accrued");
    assert!(queue.take(&app).await.is_empty());
    accrue(&app, &bob, "b2", purchase("b-2", 3_000))
        .await
        .expect("accrued");
    // A retried request is replayed and announces nothing more; a later purchase neither.
    accrue(&app, &bob, "b2", purchase("b-2", 3_000))
        .await
        .expect("replayed");
    accrue(&app, &bob, "b3", purchase("b-3", 9_000))
        .await
        .expect("accrued");
    let messages = queue.take(&app).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&messages[0]).expect("json"),
        json!({ "referral_id": rid(&app, &bob).await })
    );

    assert!(deliver(&app, &messages).await.is_empty());
    let decided = referral(&app, &bob).await;
    assert_eq!(
        decided.status,
        loyalty_core::referrals::ReferralStatus::Rewarded
    );
    assert_eq!(
        decided.order_id.as_ref().map(|o| o.as_str().to_owned()),
        Some("b-2".to_owned())
    );

    let bob_referral = rid(&app, &bob).await;
    assert_eq!(
        referral_entries(&app, &alice).await,
        vec![(format!("referral:{bob_referral}:referrer"), REFERRER)]
    );
    assert_eq!(
        referral_entries(&app, &bob).await,
        vec![(format!("referral:{bob_referral}:referee"), REFEREE)]
    );
    assert_eq!(
        member_state(&app, &alice).await.balance.available,
        WELCOME + REFERRER
    );
    assert_eq!(
        member_state(&app, &bob).await.balance.available,
        WELCOME + 10 + 30 + 90 + REFEREE
    );

    let listed = list(&app, &alice).await;
    assert_eq!(listed["referrals"][0]["status"], "rewarded");
    assert_eq!(listed["referrals"][0]["points"], REFERRER);
    assert_eq!(listed["points_earned"], REFERRER);
    let bobs = list(&app, &bob).await;
    assert_eq!(bobs["referrals"], json!([]));
    assert_eq!(bobs["referred_by"]["referrer_id"], alice.as_str());
    assert_eq!(bobs["points_earned"], REFEREE);

    // Unknown member and bad parameters on the route.
    let missing = handle(
        &app,
        Function::Members,
        ApiRequest::get("/v1/members/nobody-here/referrals").request(),
    )
    .await;
    assert_eq!(
        (missing.status().as_u16(), error_code(&missing)),
        (404, "member_not_found".to_owned())
    );
    let bad = handle(
        &app,
        Function::Members,
        ApiRequest::get(&format!("/v1/members/{alice}/referrals"))
            .query("limit", "0")
            .request(),
    )
    .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn self_referral_by_the_same_email_is_rejected_with_its_reason() {
    let RefApp { app, queue, .. } = ref_app().await;
    let (alice, code) = referrer(&app, "alice.smith@example.com").await;
    let alias = enrol_with(&app, json!({ "member_id": unique("alias"), "email": "Alice.Smith+2@example.com", "referral_code": code }))
        .await
        .expect("enrolled");
    accrue(&app, &alias, "a1", purchase("a-1", 5_000))
        .await
        .expect("accrued");
    assert!(deliver(&app, &queue.take(&app).await).await.is_empty());

    let decided = referral(&app, &alias).await;
    assert_eq!(serde_json::to_value(decided.status).unwrap(), "rejected");
    assert_eq!(
        serde_json::to_value(decided.reason).unwrap(),
        "self_referral"
    );
    assert!(referral_entries(&app, &alice).await.is_empty());
    assert!(referral_entries(&app, &alias).await.is_empty());
    let listed = list(&app, &alice).await;
    assert_eq!(
        (
            listed["referrals"][0]["status"].clone(),
            listed["referrals"][0]["reason"].clone()
        ),
        (json!("rejected"), json!("self_referral"))
    );
    assert_eq!(listed["points_earned"], 0);
}

#[tokio::test]
async fn an_existing_member_cannot_be_referred() {
    let RefApp { app, clock, .. } = ref_app().await;
    let (alice, code) = referrer(&app, "alice@example.com").await;
    let old = enrol(&app, &unique("old")).await;

    // Enrolling again with a code: the member exists, and no referral is recorded.
    let again = enrol_with(
        &app,
        json!({ "member_id": old.as_str(), "referral_code": code }),
    )
    .await;
    assert_eq!(again.expect_err("exists").code, ErrorCode::MemberExists);
    assert_eq!(list(&app, &alice).await["referrals"], json!([]));
    let would_be = referral_id(&old, member_state(&app, &old).await.enrolled_at);
    assert!(app
        .store()
        .record(KIND, &would_be)
        .await
        .expect("store")
        .is_none());

    // A referral naming a member who was enrolled before it (written directly, as a forged or
    // replayed record would be) is rejected on its first message.
    clock.advance(Duration::hours(1));
    let forged = Referral::pending(
        &alice,
        &old,
        &app.program().await.expect("program").document.referrals,
        clock.now(),
    );
    let record = Record {
        kind: KIND.into(),
        id: forged.referral_id.clone(),
        owner: Some(alice.as_str().into()),
        version: 1,
        due: Some(forged.due()),
        body: serde_json::to_value(&forged).unwrap(),
    };
    app.store()
        .transact(
            Vec::new(),
            vec![RecordWrite {
                record,
                expect: Expect::Absent,
            }],
        )
        .await
        .expect("written");
    accrue(&app, &old, "o1", purchase("o-1", 5_000))
        .await
        .expect("accrued");
    let message = json!({ "referral_id": forged.referral_id }).to_string();
    assert!(deliver(&app, &[message]).await.is_empty());
    let decided = referral_by_id(&app, &forged.referral_id).await;
    assert_eq!(
        serde_json::to_value(decided.reason).unwrap(),
        "referee_not_new"
    );
    assert!(referral_entries(&app, &alice).await.is_empty());
}

#[tokio::test]
async fn monthly_cap_and_daily_velocity_per_referrer() {
    let RefApp { app, clock, queue } = ref_app().await;
    set_policy(&app, json!({ "monthly_cap": 4, "daily_velocity": 3 })).await;
    let (alice, code) = referrer(&app, "alice@example.com").await;

    let mut friends = Vec::new();
    for _ in 0..4 {
        friends.push(referee(&app, &code).await);
    }
    for (i, friend) in friends.iter().enumerate() {
        accrue(
            &app,
            friend,
            &format!("k{i}"),
            purchase(&format!("o{i}"), 2_500),
        )
        .await
        .expect("accrued");
    }
    assert!(deliver(&app, &queue.take(&app).await).await.is_empty());
    let mut reasons = Vec::new();
    for friend in &friends {
        let r = referral(&app, friend).await;
        reasons.push(serde_json::to_value(r.reason).unwrap());
    }
    assert_eq!(
        reasons,
        vec![
            Value::Null,
            Value::Null,
            Value::Null,
            json!("daily_velocity_exceeded")
        ]
    );

    // The next day: one more is rewarded (4 this month), the one after is over the cap.
    clock.advance(Duration::days(1));
    let (fifth, sixth) = (referee(&app, &code).await, referee(&app, &code).await);
    accrue(&app, &fifth, "k5", purchase("o5", 2_500))
        .await
        .expect("accrued");
    accrue(&app, &sixth, "k6", purchase("o6", 2_500))
        .await
        .expect("accrued");
    assert!(deliver(&app, &queue.take(&app).await).await.is_empty());
    assert_eq!(
        serde_json::to_value(referral(&app, &fifth).await.status).unwrap(),
        "rewarded"
    );
    assert_eq!(
        serde_json::to_value(referral(&app, &sixth).await.reason).unwrap(),
        "monthly_cap_reached"
    );

    // A new month resets the cap.
    clock.set(Utc.with_ymd_and_hms(2026, 4, 1, 8, 0, 0).unwrap());
    let april = referee(&app, &code).await;
    accrue(&app, &april, "k7", purchase("o7", 2_500))
        .await
        .expect("accrued");
    assert!(deliver(&app, &queue.take(&app).await).await.is_empty());
    assert_eq!(
        serde_json::to_value(referral(&app, &april).await.status).unwrap(),
        "rewarded"
    );

    assert_eq!(referral_entries(&app, &alice).await.len(), 5);
    assert_eq!(
        member_state(&app, &alice).await.balance.available,
        WELCOME + 5 * REFERRER
    );
    let listed = list(&app, &alice).await;
    assert_eq!(listed["referrals"].as_array().map(Vec::len), Some(7));
    assert_eq!(listed["points_earned"], 5 * REFERRER);
    // Newest first, and `limit` keeps the newest.
    assert_eq!(listed["referrals"][0]["referee_id"], april.as_str());
    let newest = handle(
        &app,
        Function::Members,
        ApiRequest::get(&format!("/v1/members/{alice}/referrals"))
            .query("limit", "1")
            .request(),
    )
    .await;
    assert_eq!(
        json_of(&newest)["referrals"][0]["referee_id"],
        april.as_str()
    );
    assert_eq!(
        json_of(&newest)["referrals"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn a_farming_run_of_50_sign_ups_is_rewarded_only_up_to_the_cap() {
    let RefApp { app, queue, .. } = ref_app().await;
    // Velocity out of the way, so the monthly cap is what stops the run.
    set_policy(&app, json!({ "monthly_cap": 10, "daily_velocity": 1000 })).await;
    let (farmer, code) = referrer(&app, "farmer@example.com").await;
    let mut bots = Vec::new();
    for i in 0..50 {
        let bot = referee(&app, &code).await;
        accrue(
            &app,
            &bot,
            &format!("bot-{i}"),
            purchase(&format!("bot-order-{i}"), 2_500),
        )
        .await
        .expect("accrued");
        bots.push(bot);
    }
    let messages = queue.take(&app).await;
    assert_eq!(messages.len(), 50);

    // Five batches of ten, two workers at a time, then every message delivered again.
    let batches: Vec<&[String]> = messages.chunks(10).collect();
    for pair in batches.chunks(2) {
        let runs: Vec<_> = pair.iter().map(|batch| deliver(&app, batch)).collect();
        for failed in futures_join(runs).await {
            assert!(failed.is_empty(), "{failed:?}");
        }
    }
    assert!(deliver(&app, &messages).await.is_empty());

    let mut rewarded = 0;
    let mut capped = 0;
    for bot in &bots {
        let r = referral(&app, bot).await;
        match serde_json::to_value(r.status).unwrap().as_str() {
            Some("rewarded") => rewarded += 1,
            Some("rejected") => {
                assert_eq!(
                    serde_json::to_value(r.reason).unwrap(),
                    "monthly_cap_reached"
                );
                capped += 1
            }
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert_eq!((rewarded, capped), (10, 40));
    assert_eq!(referral_entries(&app, &farmer).await.len(), 10);
    let state = member_state(&app, &farmer).await;
    assert_eq!(state.balance.available, WELCOME + 10 * REFERRER);
    assert_eq!(state.referral_counts.month_rewarded, 10);
}

/// Runs the deliveries concurrently on this task.
async fn futures_join<F: std::future::Future<Output = Vec<String>>>(
    runs: Vec<F>,
) -> Vec<Vec<String>> {
    let mut runs = runs.into_iter();
    match (runs.next(), runs.next()) {
        (Some(a), Some(b)) => {
            let (a, b) = tokio::join!(a, b);
            vec![a, b]
        }
        (Some(a), None) => vec![a.await],
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn duplicate_and_out_of_order_messages_reward_exactly_once() {
    let RefApp { app, queue, clock } = ref_app().await;
    let (alice, code) = referrer(&app, "alice@example.com").await;
    let carol = member_id(&unique("carol"));
    // Carol will enrol at the clock's current time, which names her referral.
    let carol_referral = referral_id(&carol, clock.now());
    let early = (
        unique("early"),
        json!({ "referral_id": carol_referral }).to_string(),
    );

    // The message overtakes the enrolment: that record fails (SQS redelivers it), the poison
    // one fails too, and a good one in the same batch is unaffected.
    let dora = referee(&app, &code).await;
    accrue(&app, &dora, "d1", purchase("d-1", 2_500))
        .await
        .expect("accrued");
    let dora_message = (unique("dora"), queue.take(&app).await.remove(0));
    let poison = (unique("poison"), "{not json".to_owned());
    let failed =
        deliver_messages(&app, &[early.clone(), dora_message.clone(), poison.clone()]).await;
    assert_eq!(failed, vec![early.0.clone(), poison.0.clone()]);
    assert_eq!(
        serde_json::to_value(referral(&app, &dora).await.status).unwrap(),
        "rewarded"
    );

    // Enrolled but not yet qualified: still failed, still not dropped.
    enrol_with(
        &app,
        json!({ "member_id": carol.as_str(), "referral_code": code }),
    )
    .await
    .expect("enrolled");
    assert_eq!(
        deliver_messages(&app, std::slice::from_ref(&early)).await,
        vec![early.0.clone()]
    );

    // Qualified: the redelivered early message succeeds, the accrual's own message and every
    // further duplicate (also within one batch) change nothing.
    accrue(&app, &carol, "c1", purchase("c-1", 4_000))
        .await
        .expect("accrued");
    let own = (unique("own"), queue.take(&app).await.remove(0));
    assert!(deliver_messages(&app, std::slice::from_ref(&early))
        .await
        .is_empty());
    assert!(deliver_messages(
        &app,
        &[
            own.clone(),
            own.clone(),
            early.clone(),
            dora_message.clone()
        ]
    )
    .await
    .is_empty());

    assert_eq!(
        referral_entries(&app, &carol).await,
        vec![(format!("referral:{carol_referral}:referee"), REFEREE)]
    );
    let alices = referral_entries(&app, &alice).await;
    assert_eq!(
        alices,
        vec![
            (
                format!("referral:{}:referrer", rid(&app, &dora).await),
                REFERRER
            ),
            (format!("referral:{carol_referral}:referrer"), REFERRER)
        ]
    );
    assert_eq!(
        member_state(&app, &alice).await.balance.available,
        WELCOME + 2 * REFERRER
    );
    assert_eq!(
        member_state(&app, &carol).await.balance.available,
        WELCOME + 40 + REFEREE
    );
}

#[tokio::test]
async fn the_expiry_sweep_expires_once_and_settles_lost_messages() {
    let RefApp { app, clock, queue } = ref_app().await;
    let (alice, code) = referrer(&app, "alice@example.com").await;
    let idle = referee(&app, &code).await;
    let lost = referee(&app, &code).await;
    let late = referee(&app, &code).await;
    accrue(&app, &lost, "l1", purchase("l-1", 2_500))
        .await
        .expect("accrued");
    queue.take(&app).await; // the message is lost

    // Nothing is due yet.
    let report = referral_worker::handle(&app, scheduled_event(clock.now()))
        .await
        .expect("sweep");
    assert_eq!(report["examined"], 0);

    // 31 days on: the idle and late referrals expired, the lost one is decided.
    clock.advance(Duration::days(31));
    let first = referral_worker::handle(&app, scheduled_event(clock.now()))
        .await
        .expect("sweep");
    assert_eq!(
        (
            first["examined"].clone(),
            first["expired"].clone(),
            first["decided"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    let second = referral_worker::handle(&app, scheduled_event(clock.now()))
        .await
        .expect("sweep");
    assert_eq!(
        (second["expired"].clone(), second["decided"].clone()),
        (json!(0), json!(0))
    );

    assert_eq!(
        serde_json::to_value(referral(&app, &idle).await.status).unwrap(),
        "expired"
    );
    assert_eq!(
        serde_json::to_value(referral(&app, &lost).await.status).unwrap(),
        "rewarded"
    );

    // A purchase after expiry: its message finds the referral expired and does nothing.
    accrue(&app, &late, "t1", purchase("t-1", 5_000))
        .await
        .expect("accrued");
    assert!(deliver(&app, &queue.take(&app).await).await.is_empty());
    assert_eq!(
        serde_json::to_value(referral(&app, &late).await.status).unwrap(),
        "expired"
    );
    assert!(referral_entries(&app, &late).await.is_empty());

    assert_eq!(referral_entries(&app, &alice).await.len(), 1);
    let listed = list(&app, &alice).await;
    let statuses: Vec<&str> = listed["referrals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "expired").count(), 2);
    assert_eq!(listed["points_earned"], REFERRER);
}

#[tokio::test]
async fn member_state_is_readable_through_the_store_trait() {
    // The referee's mark and the referrer's counters round-trip through DynamoDB.
    let RefApp { app, queue, .. } = ref_app().await;
    let (alice, code) = referrer(&app, "alice@example.com").await;
    let bob = referee(&app, &code).await;
    accrue(&app, &bob, "b", purchase("b", 2_500))
        .await
        .expect("accrued");
    assert!(deliver(&app, &queue.take(&app).await).await.is_empty());
    let bob_state = MemberStore::member(app.store(), &bob)
        .await
        .expect("store")
        .expect("bob");
    assert_eq!(
        bob_state.referral_purchase.map(|p| p.amount.minor),
        Some(2_500)
    );
    let alice_state = member_state(&app, &alice).await;
    assert_eq!(
        (
            alice_state.referral_counts.month_rewarded,
            alice_state.referral_counts.day_rewarded
        ),
        (1, 1)
    );
}
