//! Every call has a caller, checked by the function itself: API Gateway v2 events carrying
//! `requestContext.authorizer.jwt` as the JWT authorizer sends it, through the generic handlers
//! and DynamoDB Local. Every refusal is checked to have written nothing (the table's items are
//! counted before and after).

use std::sync::Arc;

use chrono::{Duration, Utc};
use loyalty_core::clock::SystemClock;
use loyalty_core::events::MemoryQueue;
use loyalty_core::ports::ProgramStore;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_dynamo::DynamoStore;
use loyalty_http::{handle, handle_with_claim, Function, REPLAYED_HEADER};
use loyalty_tests::events::{
    error_code, json_of, ApiRequest, ADMIN, MEMBER, POS, REPORTS, SUPPORT,
};
use loyalty_tests::*;
use serde_json::{json, Value};

async fn app() -> (Arc<App<DynamoStore>>, DynamoStore) {
    let store = dynamo_store().await;
    let app = App::new(store.clone(), Arc::new(SystemClock), AppConfig::default())
        .with_campaign_dispatch(Arc::new(MemoryQueue::default()));
    (Arc::new(app), store)
}

/// Sends `request` and checks it is refused with `status`/`code` and leaves the table as it was.
async fn refused(
    app: &App<DynamoStore>,
    store: &DynamoStore,
    function: Function,
    request: ApiRequest,
    status: u16,
    code: &str,
) {
    let before = item_count(store).await;
    let response = handle(app, function, request.request()).await;
    assert_eq!(response.status(), status, "{}", json_of(&response));
    assert_eq!(error_code(&response), code);
    assert_eq!(item_count(store).await, before, "a refused request wrote");
}

async fn ok(app: &App<DynamoStore>, function: Function, request: ApiRequest) -> Value {
    let response = handle(app, function, request.request()).await;
    assert!(
        response.status().is_success(),
        "{} {}",
        response.status(),
        json_of(&response)
    );
    json_of(&response)
}

#[tokio::test]
async fn a_member_token_acts_on_its_own_member() {
    let (app, _) = app().await;
    let ada = unique("ada");
    // Enrolling itself: the member id comes from the token when the body leaves it out.
    let enrolled = ok(
        &app,
        Function::Members,
        ApiRequest::post("/v1/members", json!({ "name": "Ada" })).as_member(&ada),
    )
    .await;
    assert_eq!(enrolled["member_id"], ada.as_str());
    ok(
        &app,
        Function::Accrue,
        ApiRequest::post(
            &format!("/v1/members/{ada}/accruals"),
            purchase("o-1", 20_000),
        )
        .caller("till-1", &[POS])
        .key("o-1"),
    )
    .await;

    let member = ok(
        &app,
        Function::Members,
        ApiRequest::get(&format!("/v1/members/{ada}")).as_member(&ada),
    )
    .await;
    assert_eq!(member["balance"]["available"], 300);
    let redeemed = ok(
        &app,
        Function::Redeem,
        ApiRequest::post(
            &format!("/v1/members/{ada}/redemptions"),
            json!({ "reward_id": "free-coffee" }),
        )
        .as_member(&ada)
        .key("app-1"),
    )
    .await;
    assert!(
        redeemed["code"].is_string(),
        "the owner sees its reward code"
    );
    let ledger = ok(
        &app,
        Function::Members,
        ApiRequest::get(&format!("/v1/members/{ada}/ledger")).as_member(&ada),
    )
    .await;
    assert_eq!(ledger["entries"].as_array().map(Vec::len), Some(3));
    for path in ["tier-history", "referrals"] {
        ok(
            &app,
            Function::Members,
            ApiRequest::get(&format!("/v1/members/{ada}/{path}")).as_member(&ada),
        )
        .await;
    }
    let evaluated = ok(
        &app,
        Function::Members,
        ApiRequest::post(&format!("/v1/members/{ada}/tier-evaluation"), json!({})).as_member(&ada),
    )
    .await;
    assert_eq!(evaluated["member_id"], ada.as_str());
}

#[tokio::test]
async fn a_member_token_on_another_member_is_forbidden_and_writes_nothing() {
    let (app, store) = app().await;
    let ada = enrol(&app, &unique("ada")).await;
    let eve = unique("eve");
    let ada_path = format!("/v1/members/{ada}");
    let eve_token = |request: ApiRequest| request.as_member(&eve);

    for path in [
        "",
        "/ledger",
        "/tier-history",
        "/referrals",
        "/subscription",
    ] {
        refused(
            &app,
            &store,
            Function::Members,
            eve_token(ApiRequest::get(&format!("{ada_path}{path}"))),
            403,
            "forbidden",
        )
        .await;
    }
    refused(
        &app,
        &store,
        Function::Redeem,
        eve_token(
            ApiRequest::post(
                &format!("{ada_path}/redemptions"),
                json!({ "reward_id": "free-coffee" }),
            )
            .key("steal-1"),
        ),
        403,
        "forbidden",
    )
    .await;
    refused(
        &app,
        &store,
        Function::Members,
        eve_token(
            ApiRequest::new("PATCH", &format!("{ada_path}/subscription"))
                .raw_body(r#"{"plan_id":"plus"}"#),
        ),
        403,
        "forbidden",
    )
    .await;
    refused(
        &app,
        &store,
        Function::Members,
        eve_token(ApiRequest::post(
            &format!("{ada_path}/tier-evaluation"),
            json!({}),
        )),
        403,
        "forbidden",
    )
    .await;
    // Enrolling someone else under a member token.
    refused(
        &app,
        &store,
        Function::Members,
        eve_token(ApiRequest::post(
            "/v1/members",
            json!({ "member_id": unique("mallory") }),
        )),
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn a_member_token_cannot_accrue_not_even_for_itself() {
    let (app, store) = app().await;
    let ada = enrol(&app, &unique("ada")).await;
    refused(
        &app,
        &store,
        Function::Accrue,
        ApiRequest::post(
            &format!("/v1/members/{ada}/accruals"),
            purchase("o-1", 1_000_000),
        )
        .as_member(ada.as_str())
        .key("o-1"),
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn a_request_without_a_caller_is_unauthorized_on_every_protected_route() {
    let (app, store) = app().await;
    let ada = enrol(&app, &unique("ada")).await;
    let member = format!("/v1/members/{ada}");
    let cases = [
        (
            Function::Members,
            ApiRequest::post("/v1/members", json!({})),
        ),
        (Function::Members, ApiRequest::get(&member)),
        (
            Function::Accrue,
            ApiRequest::post(&format!("{member}/accruals"), purchase("o-1", 1_000)).key("k"),
        ),
        (
            Function::Redeem,
            ApiRequest::post(
                &format!("{member}/redemptions"),
                json!({ "reward_id": "free-coffee" }),
            )
            .key("k"),
        ),
        (
            Function::Rewards,
            ApiRequest::post("/v1/admin/promotions", json!({ "name": "x" })),
        ),
        (Function::Rewards, ApiRequest::get("/v1/admin/promotions")),
    ];
    for (function, request) in cases {
        refused(
            &app,
            &store,
            function,
            request.anonymous(),
            401,
            "unauthorized",
        )
        .await;
    }
    // The catalogue and the program are public by design.
    ok(
        &app,
        Function::Rewards,
        ApiRequest::get("/v1/rewards").anonymous(),
    )
    .await;
    ok(
        &app,
        Function::Rewards,
        ApiRequest::get("/v1/program").anonymous(),
    )
    .await;
}

#[tokio::test]
async fn pos_accrues_and_reads_any_member_but_support_cannot_accrue() {
    let (app, store) = app().await;
    let ada = enrol(&app, &unique("ada")).await;
    let accruals = format!("/v1/members/{ada}/accruals");
    let accrued = ok(
        &app,
        Function::Accrue,
        ApiRequest::post(&accruals, purchase("o-1", 5_000))
            .caller("till-1", &[POS])
            .key("o-1"),
    )
    .await;
    assert_eq!(accrued["points"], 50);
    ok(
        &app,
        Function::Members,
        ApiRequest::get(&format!("/v1/members/{ada}/ledger")).caller("till-1", &[POS]),
    )
    .await;
    refused(
        &app,
        &store,
        Function::Accrue,
        ApiRequest::post(&accruals, purchase("o-2", 5_000))
            .caller("agent-7", &[SUPPORT])
            .key("o-2"),
        403,
        "forbidden",
    )
    .await;
    // Admin and reports scopes reach no member route.
    for scopes in [[ADMIN], [REPORTS]] {
        refused(
            &app,
            &store,
            Function::Members,
            ApiRequest::get(&format!("/v1/members/{ada}")).caller("ops-1", &scopes),
            403,
            "forbidden",
        )
        .await;
    }
}

#[tokio::test]
async fn reports_read_admin_routes_but_cannot_write_them() {
    let (app, store) = app().await;
    let analyst = |request: ApiRequest| request.caller("analyst-1", &[REPORTS]);
    ok(
        &app,
        Function::Rewards,
        analyst(ApiRequest::get("/v1/admin/promotions")),
    )
    .await;
    let starts = Utc::now() + Duration::days(1);
    let promotion = json!({ "name": "Double", "multiplier": 2,
        "starts_at": starts, "ends_at": starts + Duration::days(2) });
    let writes = [
        ApiRequest::post("/v1/admin/promotions", promotion),
        ApiRequest::new("PUT", "/v1/admin/program").raw_body(
            &std::fs::read_to_string(repo_root().join("infra/program.default.json"))
                .expect("default program"),
        ),
        ApiRequest::post(
            "/v1/admin/rewards",
            json!({ "reward_id": "cake", "name": "Cake", "kind": "free_product",
                    "sku": "CAKE", "points_cost": 400 }),
        ),
        ApiRequest::post(
            "/v1/admin/campaigns",
            json!({ "name": "Thanks", "points": 10, "audience": { "tier": "gold" },
                    "reason": "thanks" }),
        ),
    ];
    for request in writes {
        refused(
            &app,
            &store,
            Function::Rewards,
            analyst(request),
            403,
            "forbidden",
        )
        .await;
    }
    let ada = enrol(&app, &unique("ada")).await;
    refused(
        &app,
        &store,
        Function::Members,
        analyst(ApiRequest::new("PUT", &format!("/v1/admin/members/{ada}/tier")).raw_body(
            &json!({ "tier": "gold", "reason": "vip", "until": Utc::now() + Duration::days(30) })
                .to_string(),
        )),
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn admin_writes_record_their_actor() {
    let (app, _) = app().await;
    let admin = |request: ApiRequest| request.caller("ops-ada", &[ADMIN]);

    let program = ok(
        &app,
        Function::Rewards,
        admin(
            ApiRequest::new("PUT", "/v1/admin/program").raw_body(
                &std::fs::read_to_string(repo_root().join("infra/program.default.json"))
                    .expect("default program"),
            ),
        ),
    )
    .await;
    assert_eq!(program["created_by"], "ops-ada");
    let public = ok(
        &app,
        Function::Rewards,
        ApiRequest::get("/v1/program").anonymous(),
    )
    .await;
    assert_eq!(public["version"], program["version"]);
    assert!(
        public.get("created_by").is_none(),
        "staff ids stay off public routes"
    );

    let reward = ok(
        &app,
        Function::Rewards,
        admin(ApiRequest::post(
            "/v1/admin/rewards",
            json!({ "reward_id": "cake", "name": "Cake", "kind": "free_product",
                    "sku": "CAKE", "points_cost": 400 }),
        )),
    )
    .await;
    assert_eq!(reward["created_by"], "ops-ada");
    // The reward is a new program version, stored with its author.
    let active = app
        .store()
        .active_program()
        .await
        .expect("store answers")
        .expect("a program");
    assert_eq!(active.created_by.as_deref(), Some("ops-ada"));

    let starts = Utc::now() + Duration::days(1);
    let promotion = ok(
        &app,
        Function::Rewards,
        admin(ApiRequest::post(
            "/v1/admin/promotions",
            json!({ "name": "Double", "multiplier": 2,
                    "starts_at": starts, "ends_at": starts + Duration::days(2) }),
        )),
    )
    .await;
    assert_eq!(promotion["created_by"], "ops-ada");
    let id = promotion["promotion_id"].as_str().expect("id").to_owned();
    let canceled = ok(
        &app,
        Function::Rewards,
        ApiRequest::post(&format!("/v1/admin/promotions/{id}/cancel"), json!({}))
            .caller("ops-bob", &[ADMIN]),
    )
    .await;
    assert_eq!(canceled["created_by"], "ops-ada");
    assert_eq!(canceled["canceled_by"], "ops-bob");
    let listed = ok(
        &app,
        Function::Rewards,
        ApiRequest::get("/v1/admin/promotions").caller("analyst-1", &[REPORTS]),
    )
    .await;
    assert!(listed["promotions"].as_array().is_some_and(|list| list
        .iter()
        .any(|p| p["promotion_id"] == id.as_str() && p["created_by"] == "ops-ada")));

    let campaign = ok(
        &app,
        Function::Rewards,
        admin(
            ApiRequest::post(
                "/v1/admin/campaigns",
                json!({ "name": "Thanks", "points": 10, "audience": { "tier": "gold" },
                        "reason": "thanks" }),
            )
            .key("thanks-1"),
        ),
    )
    .await;
    assert_eq!(campaign["created_by"], "ops-ada");
    let id = campaign["campaign_id"].as_str().expect("id").to_owned();
    let read = ok(
        &app,
        Function::Rewards,
        ApiRequest::get(&format!("/v1/admin/campaigns/{id}")).caller("analyst-1", &[REPORTS]),
    )
    .await;
    assert_eq!(read["created_by"], "ops-ada");

    // Support grants tiers too; the change and the history name who did it.
    let ada = enrol(&app, &unique("ada")).await;
    let granted = ok(
        &app,
        Function::Members,
        ApiRequest::new("PUT", &format!("/v1/admin/members/{ada}/tier"))
            .raw_body(
                &json!({ "tier": "gold", "reason": "service recovery",
                         "until": Utc::now() + Duration::days(30) })
                .to_string(),
            )
            .caller("agent-7", &[SUPPORT]),
    )
    .await;
    assert_eq!(granted["actor"], "agent-7");
    assert_eq!(granted["change"]["actor"], "agent-7");
    let history = ok(
        &app,
        Function::Members,
        ApiRequest::get(&format!("/v1/members/{ada}/tier-history")).as_member(ada.as_str()),
    )
    .await;
    assert_eq!(history["changes"][0]["actor"], "agent-7");
    assert_eq!(history["changes"][0]["to_tier"], "gold");
}

#[tokio::test]
async fn two_callers_sending_the_same_idempotency_key_do_not_collide() {
    let (app, _) = app().await;
    let ada = enrol(&app, &unique("ada")).await;
    let accruals = format!("/v1/members/{ada}/accruals");
    let send = |till: &str, order: &str| {
        ApiRequest::post(&accruals, purchase(order, 10_000))
            .caller(till, &[POS])
            .key("1")
            .request()
    };

    let first = handle(&app, Function::Accrue, send("till-1", "o-1")).await;
    let second = handle(&app, Function::Accrue, send("till-2", "o-2")).await;
    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 201, "{}", json_of(&second));
    assert!(!second.headers().contains_key(REPLAYED_HEADER));
    assert_eq!(json_of(&second)["entry_id"], "order:o-2");
    assert_eq!(json_of(&second)["balance"]["available"], 300);

    // The same caller retrying is still a replay with one effect.
    let retried = handle(&app, Function::Accrue, send("till-1", "o-1")).await;
    assert_eq!(retried.status(), 201);
    assert!(retried.headers().contains_key(REPLAYED_HEADER));
    assert_eq!(json_of(&retried), json_of(&first));
    // And the business key still holds across callers: an order earns once.
    let again = handle(&app, Function::Accrue, send("till-3", "o-1")).await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_code(&again), "duplicate_order");
    assert_eq!(audited_ledger(&app, &ada).await.len(), 3);
}

#[tokio::test]
async fn a_token_with_a_member_scope_and_a_staff_scope_acts_as_staff() {
    let (app, _) = app().await;
    let ada = enrol(&app, &unique("ada")).await;
    let read = ok(
        &app,
        Function::Members,
        ApiRequest::get(&format!("/v1/members/{ada}")).caller("agent-7", &[MEMBER, SUPPORT]),
    )
    .await;
    assert_eq!(read["member_id"], ada.as_str());
}

#[tokio::test]
async fn a_member_id_in_a_custom_claim_names_the_member_not_the_subject() {
    let (app, store) = app().await;
    let ada = enrol(&app, &unique("ada")).await;
    let claim = "custom:member_id";
    let token = |request: ApiRequest| {
        request
            .caller("0b6f1c7e-6a0d-4c1e-9a43-2f1d7d1c9e55", &[MEMBER])
            .claim(claim, ada.as_str())
    };
    let own = handle_with_claim(
        &app,
        Function::Members,
        claim,
        token(ApiRequest::get(&format!("/v1/members/{ada}"))).request(),
    )
    .await;
    assert_eq!(own.status(), 200, "{}", json_of(&own));
    let before = item_count(&store).await;
    let other = handle_with_claim(
        &app,
        Function::Members,
        claim,
        token(ApiRequest::post(
            "/v1/members",
            json!({ "member_id": "0b6f1c7e-6a0d-4c1e-9a43-2f1d7d1c9e55" }),
        ))
        .request(),
    )
    .await;
    assert_eq!(other.status(), 403, "{}", json_of(&other));
    assert_eq!(error_code(&other), "forbidden");
    assert_eq!(item_count(&store).await, before);
}

#[tokio::test]
async fn webhooks_are_the_admins_alone_reads_included_and_record_who_changed_them() {
    let (app, store) = app().await;
    let create = || {
        ApiRequest::post(
            "/v1/admin/webhooks",
            json!({ "url": "https://hooks.example.com/loyalty", "event_types": ["points.*"] }),
        )
    };
    for scopes in [&[REPORTS][..], &[SUPPORT], &[POS], &[MEMBER]] {
        refused(
            &app,
            &store,
            Function::Rewards,
            create().caller("someone", scopes),
            403,
            "forbidden",
        )
        .await;
        refused(
            &app,
            &store,
            Function::Rewards,
            ApiRequest::get("/v1/admin/webhooks").caller("someone", scopes),
            403,
            "forbidden",
        )
        .await;
    }
    refused(
        &app,
        &store,
        Function::Rewards,
        ApiRequest::post(
            "/v1/admin/webhooks",
            json!({ "url": "http://hooks.example.com/loyalty", "event_types": ["*"] }),
        )
        .caller("ops-ada", &[ADMIN]),
        400,
        "validation_error",
    )
    .await;

    let response = handle(
        &app,
        Function::Rewards,
        create().caller("ops-ada", &[ADMIN]).request(),
    )
    .await;
    assert_eq!(response.status(), 201);
    let created = json_of(&response);
    assert_eq!(created["created_by"], "ops-ada");
    assert!(created["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("whsec_")));
    let id = created["webhook_id"].as_str().expect("id").to_owned();

    let listed = ok(
        &app,
        Function::Rewards,
        ApiRequest::get("/v1/admin/webhooks").caller("ops-bob", &[ADMIN]),
    )
    .await;
    assert_eq!(listed["webhooks"][0]["webhook_id"], id.as_str());
    assert!(listed["webhooks"][0].get("secret").is_none());
    let disabled = ok(
        &app,
        Function::Rewards,
        ApiRequest::post(&format!("/v1/admin/webhooks/{id}/disable"), json!({}))
            .caller("ops-bob", &[ADMIN]),
    )
    .await;
    assert_eq!(disabled["updated_by"], "ops-bob");
    assert_eq!(disabled["status"], "disabled");
    refused(
        &app,
        &store,
        Function::Rewards,
        ApiRequest::get("/v1/admin/webhooks/wh_none/deliveries").caller("ops-bob", &[ADMIN]),
        404,
        "webhook_not_found",
    )
    .await;
    let deleted = ok(
        &app,
        Function::Rewards,
        ApiRequest::new("DELETE", &format!("/v1/admin/webhooks/{id}"))
            .caller("ops-carol", &[ADMIN]),
    )
    .await;
    assert_eq!(deleted["updated_by"], "ops-carol");
}
