//! Bonus campaigns on DynamoDB Local: a 10,000-member campaign through dispatcher and worker
//! with counters that add up and a ledger that agrees; duplicate deliveries; a budget under
//! parallel workers; poison messages counted as failed.

use std::sync::Arc;

use loyalty_core::campaigns::DispatchMessage;
use loyalty_core::clock::SystemClock;
use loyalty_core::events::MemoryQueue;
use loyalty_core::ports::MessageQueue as _;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_http::{handle, Function};
use loyalty_tests::events::{error_code, json_of, ApiRequest};
use loyalty_tests::stream_relay::StreamRelay;
use loyalty_tests::*;
use serde_json::{json, Value};

struct CampaignApp {
    app: Arc<App<DynamoStore>>,
    dispatch: Arc<MemoryQueue>,
    grants: MemoryQueue,
    /// A new campaign's first dispatch step comes from the table's stream.
    outbox: Option<StreamRelay>,
}

async fn campaign_app() -> CampaignApp {
    let store = streaming_store().await;
    let outbox = StreamRelay::of(&store).await;
    campaign_app_on(store, Some(outbox))
}

fn campaign_app_on(store: DynamoStore, outbox: Option<StreamRelay>) -> CampaignApp {
    let dispatch = Arc::new(MemoryQueue::default());
    let app = App::new(
        store,
        Arc::new(SystemClock),
        AppConfig {
            max_attempts: 200,
            ..AppConfig::default()
        },
    )
    .with_campaign_dispatch(dispatch.clone());
    CampaignApp {
        app: Arc::new(app),
        dispatch,
        grants: MemoryQueue::default(),
        outbox,
    }
}

impl CampaignApp {
    /// Relays the table's stream, if this app's table has one.
    async fn relay(&self) {
        if let Some(outbox) = &self.outbox {
            outbox.relay(&self.app).await;
        }
    }
}

fn sqs(bodies: &[String], receive_count: u32) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({ "messageId": format!("m-{i}"), "body": body, "eventSource": "aws:sqs",
                    "attributes": { "ApproximateReceiveCount": receive_count.to_string() } })
        })
        .collect();
    json!({ "Records": records })
}

async fn create(app: &App<DynamoStore>, body: Value) -> String {
    let response = handle(
        app,
        Function::Rewards,
        ApiRequest::post("/v1/admin/campaigns", body)
            .key(&unique("campaign"))
            .request(),
    )
    .await;
    assert_eq!(response.status(), 202, "{}", json_of(&response));
    assert_eq!(json_of(&response)["status"], "dispatching");
    json_of(&response)["campaign_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Runs the dispatcher until the audience is walked, as SQS would feed it, from the first step
/// the outbox sends for the stored campaign.
async fn dispatch_all(c: &CampaignApp) {
    c.relay().await;
    loop {
        let steps = c.dispatch.take();
        if steps.is_empty() {
            return;
        }
        let response = campaign_dispatch::handle(&c.app, &*c.dispatch, &c.grants, sqs(&steps, 1))
            .await
            .expect("dispatched");
        assert_eq!(response["batchItemFailures"], json!([]));
    }
}

async fn counters(app: &App<DynamoStore>, id: &str) -> Value {
    let response = handle(
        app,
        Function::Rewards,
        ApiRequest::get(&format!("/v1/admin/campaigns/{id}")).request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    json_of(&response)
}

async fn enrol_many(app: &Arc<App<DynamoStore>>, prefix: &str, count: usize) -> Vec<String> {
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:05}")).collect();
    let tasks: Vec<_> = ids
        .chunks(count.div_ceil(16))
        .map(|chunk| {
            let app = Arc::clone(app);
            let chunk = chunk.to_vec();
            tokio::spawn(async move {
                for id in chunk {
                    enrol(&app, &id).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("enrolled");
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_members_granted_once_with_counters_that_add_up() {
    // This test is the walk and the grants at scale, on a table without a stream (DynamoDB
    // Local's per-write stream cost grows with the records a stream holds): the first dispatch
    // step is the one the outbox sends for a stored campaign, which the other tests take from
    // the stream.
    let c = campaign_app_on(dynamo_store().await, None);
    let ids = enrol_many(&c.app, &unique("crowd"), 10_000).await;
    let id = create(&c.app, json!({ "name": "Thank you", "points": 25, "audience": { "tier": "bronze" }, "reason": "Winter thank-you" })).await;
    let first = DispatchMessage {
        campaign_id: id.clone(),
        page: 0,
        cursor: None,
    };
    c.dispatch
        .send(vec![serde_json::to_string(&first).expect("a step")])
        .await
        .expect("queued");
    dispatch_all(&c).await;
    let grants = c.grants.take();
    assert_eq!(grants.len(), 100, "10,000 members in grant messages of 100");

    // Four workers take the batches as SQS would hand them out.
    let batches: Vec<Vec<String>> = grants.chunks(10).map(<[String]>::to_vec).collect();
    let lanes: Vec<_> = (0..4)
        .map(|lane| {
            let app = Arc::clone(&c.app);
            let mine: Vec<Vec<String>> = batches.iter().skip(lane).step_by(4).cloned().collect();
            tokio::spawn(async move {
                for batch in mine {
                    let response = campaign_worker::handle(&app, 5, sqs(&batch, 1))
                        .await
                        .expect("granted");
                    assert_eq!(response["batchItemFailures"], json!([]));
                }
            })
        })
        .collect();
    for lane in lanes {
        lane.await.expect("lane");
    }

    let campaign = counters(&c.app, &id).await;
    assert_eq!(campaign["status"], "dispatched");
    assert_eq!(
        (campaign["targeted"].clone(), campaign["granted"].clone()),
        (json!(10_000), json!(10_000))
    );
    assert_eq!(
        (campaign["skipped"].clone(), campaign["failed"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(campaign["points_granted"], 250_000);
    // The ledger agrees, member by member.
    let mut total = 0;
    for raw in &ids {
        let state = member_state(&c.app, &member_id(raw)).await;
        assert_eq!(state.balance.available, 125, "{raw}");
        total += state.balance.available - 100;
    }
    assert_eq!(total, 250_000);
}

#[tokio::test]
async fn every_message_delivered_twice_still_grants_each_member_once() {
    let c = campaign_app().await;
    let ids = enrol_many(&c.app, &unique("dup"), 250).await;
    let id = create(&c.app, json!({ "name": "Hello", "points": 10, "audience": { "member_ids": ids }, "reason": "Welcome back" })).await;
    // The dispatch step is delivered twice as well.
    c.relay().await;
    let steps = c.dispatch.take();
    c.dispatch
        .send_now(steps.iter().chain(steps.iter()).cloned().collect())
        .await;
    dispatch_all(&c).await;
    let grants = c.grants.take();
    for delivery in [1, 2] {
        for batch in grants.chunks(10) {
            let response = campaign_worker::handle(&c.app, 5, sqs(batch, delivery))
                .await
                .expect("granted");
            assert_eq!(response["batchItemFailures"], json!([]));
        }
    }
    let campaign = counters(&c.app, &id).await;
    assert_eq!(
        (campaign["targeted"].clone(), campaign["granted"].clone()),
        (json!(250), json!(250))
    );
    for raw in ids.iter().take(20) {
        let ledger = audited_ledger(&c.app, &member_id(raw)).await;
        assert_eq!(
            ledger
                .iter()
                .filter(|e| e.entry_id == format!("campaign:{id}"))
                .count(),
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_workers_never_overspend_the_budget() {
    let c = campaign_app().await;
    let ids = enrol_many(&c.app, &unique("budget"), 300).await;
    let id = create(
        &c.app,
        json!({ "name": "First 100", "points": 50, "budget_points": 5_000, "audience": { "member_ids": ids }, "reason": "Launch" }),
    )
    .await;
    dispatch_all(&c).await;
    let grants = c.grants.take();
    let lanes: Vec<_> = grants
        .into_iter()
        .map(|message| {
            let app = Arc::clone(&c.app);
            tokio::spawn(async move {
                campaign_worker::handle(&app, 5, sqs(&[message], 1))
                    .await
                    .expect("granted")
            })
        })
        .collect();
    for lane in lanes {
        assert_eq!(lane.await.expect("lane")["batchItemFailures"], json!([]));
    }
    let campaign = counters(&c.app, &id).await;
    assert_eq!(campaign["points_granted"], 5_000);
    assert_eq!(
        (campaign["granted"].clone(), campaign["skipped"].clone()),
        (json!(100), json!(200))
    );
    let mut granted = 0;
    for raw in &ids {
        if member_state(&c.app, &member_id(raw))
            .await
            .balance
            .available
            == 150
        {
            granted += 1;
        }
    }
    assert_eq!(granted, 100, "the ledger agrees with the counters");
}

#[tokio::test]
async fn a_poison_message_is_retried_then_counted_as_failed_and_cancel_stops_grants() {
    let c = campaign_app().await;
    let ids = enrol_many(&c.app, &unique("poison"), 3).await;
    let id = create(
        &c.app,
        json!({ "name": "P", "points": 5, "audience": { "member_ids": ids }, "reason": "r" }),
    )
    .await;
    dispatch_all(&c).await;
    let poison = json!({ "campaign_id": id, "member_ids": ["not a member!"] }).to_string();
    for delivery in 1..=5 {
        let response =
            campaign_worker::handle(&c.app, 5, sqs(std::slice::from_ref(&poison), delivery))
                .await
                .expect("handled");
        assert_eq!(
            response["batchItemFailures"],
            json!([{ "itemIdentifier": "m-0" }]),
            "delivery {delivery}"
        );
    }
    assert_eq!(
        counters(&c.app, &id).await["failed"],
        1,
        "counted once, on the last delivery"
    );
    let garbage = campaign_worker::handle(&c.app, 5, sqs(&["{oops".to_owned()], 1))
        .await
        .expect("handled");
    assert_eq!(
        garbage["batchItemFailures"],
        json!([{ "itemIdentifier": "m-0" }])
    );

    let canceled = handle(
        &c.app,
        Function::Rewards,
        ApiRequest::new("POST", &format!("/v1/admin/campaigns/{id}/cancel")).request(),
    )
    .await;
    assert_eq!(json_of(&canceled)["status"], "canceled");
    for batch in c.grants.take() {
        campaign_worker::handle(&c.app, 5, sqs(&[batch], 1))
            .await
            .expect("handled");
    }
    let campaign = counters(&c.app, &id).await;
    assert_eq!(
        (campaign["granted"].clone(), campaign["skipped"].clone()),
        (json!(0), json!(3))
    );
    let unknown = handle(
        &c.app,
        Function::Rewards,
        ApiRequest::get("/v1/admin/campaigns/nope").request(),
    )
    .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn a_campaign_create_needs_a_key_and_its_retry_answers_the_first_response() {
    let c = campaign_app().await;
    let members = enrol_many(&c.app, "keyed", 2).await;
    let body = json!({ "name": "Keyed", "points": 5, "audience": { "member_ids": members }, "reason": "retry" });
    let send = |key: Option<&str>, body: Value| {
        let mut request = ApiRequest::post("/v1/admin/campaigns", body);
        if let Some(key) = key {
            request = request.key(key);
        }
        handle(&c.app, Function::Rewards, request.request())
    };
    let missing = send(None, body.clone()).await;
    assert_eq!(missing.status(), 400);
    assert_eq!(error_code(&missing), "missing_idempotency_key");

    let first = send(Some("create-once"), body.clone()).await;
    assert_eq!(first.status(), 202, "{}", json_of(&first));
    assert!(first.headers().get("idempotent-replayed").is_none());
    let again = send(Some("create-once"), body.clone()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(
        json_of(&again),
        json_of(&first),
        "the first response, again"
    );
    let mut other = body.clone();
    other["points"] = json!(6);
    let reused = send(Some("create-once"), other).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(error_code(&reused), "idempotency_key_reused");
    // One campaign, so one first dispatch step: the outbox sends it from the stored campaign,
    // whichever attempt's reply the client got.
    let id = json_of(&first)["campaign_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        c.dispatch.sent().is_empty(),
        "the request itself sends nothing"
    );
    c.relay().await;
    let sent = c.dispatch.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains(&format!("\"campaign_id\":\"{id}\"")));
}

#[tokio::test]
async fn an_enrolment_range_of_years_is_walked_in_bounded_steps_to_its_last_member() {
    use chrono::{Days, Utc};
    use loyalty_core::campaigns::AudienceQuery;
    use loyalty_core::ports::AudienceStore;

    let store = dynamo_store().await;
    let app = App::new(store.clone(), Arc::new(SystemClock), AppConfig::default());
    let today = Utc::now().date_naive();
    let member = enrol(&app, &unique("late-joiner")).await;
    // 1,001 empty-but-one day partitions: one dispatcher step must not read them all.
    let audience = AudienceQuery::EnrolledBetween(today - Days::new(1000), today);
    let (mut found, mut cursor, mut steps) = (Vec::new(), None, 0);
    loop {
        let (members, next) = store
            .audience_page(&audience, cursor, 1_000)
            .await
            .expect("a page");
        steps += 1;
        found.extend(members);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(steps <= 16, "the walk does not end");
    }
    assert_eq!(found, vec![member]);
    assert_eq!(steps, 16, "64 day partitions per step");
}
