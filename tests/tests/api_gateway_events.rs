//! The HTTP contract, driven by real API Gateway v2 events through the generic handlers and a
//! DynamoDB Local store.

use loyalty_http::{handle, Function, REPLAYED_HEADER};
use loyalty_tests::events::{error_code, json_of, ApiRequest};
use loyalty_tests::*;
use serde_json::json;

#[tokio::test]
async fn a_member_enrols_earns_pages_and_redeems() {
    let TestApp { app, .. } = test_app().await;

    let enrolled = handle(
        &app,
        Function::Members,
        ApiRequest::post(
            "/v1/members",
            json!({ "email": "ada@example.com", "name": "Ada" }),
        )
        .request(),
    )
    .await;
    assert_eq!(enrolled.status(), 201);
    let member = json_of(&enrolled);
    let id = member["member_id"]
        .as_str()
        .expect("generated id")
        .to_owned();
    assert!(id.starts_with("mem_"));
    assert_eq!(
        member["balance"],
        json!({ "available": 100, "pending": 0, "lifetime_earned": 100, "lifetime_redeemed": 0, "expired": 0, "reserved": 0 })
    );
    assert_eq!(member["tier"], "bronze");
    assert_eq!(member["referral_code"].as_str().map(str::len), Some(8));

    // A referred friend: codes are case-insensitive.
    let code = member["referral_code"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    let friend = handle(
        &app,
        Function::Members,
        ApiRequest::post(
            "/v1/members",
            json!({ "member_id": unique("friend"), "referral_code": code }),
        )
        .request(),
    )
    .await;
    assert_eq!(friend.status(), 201, "{}", json_of(&friend));

    let accruals = format!("/v1/members/{id}/accruals");
    let order = json!({
        "kind": "purchase", "order_id": "pos-77", "amount": { "minor": 5_250, "currency": "USD" },
        "items": [
            { "sku": "LATTE", "category": "coffee", "amount": { "minor": 450, "currency": "USD" }, "quantity": 2 },
            { "sku": "GC-25", "category": "gift_card", "amount": { "minor": 2_500, "currency": "USD" }, "quantity": 1 }
        ]
    });
    let simulated = handle(
        &app,
        Function::Accrue,
        ApiRequest::post(&accruals, order.clone())
            .query("dry_run", "true")
            .request(),
    )
    .await;
    assert_eq!(simulated.status(), 200);
    let preview = json_of(&simulated);
    // 900 coffee + 1850 unitemised earn 27 base; coffee doubles its 9; the gift card earns nothing.
    assert_eq!(preview["points"], 36);
    assert_eq!(preview["breakdown"].as_array().map(Vec::len), Some(2));

    let accrued = handle(
        &app,
        Function::Accrue,
        ApiRequest::post(&accruals, order.clone())
            .key("till-1-77")
            .request(),
    )
    .await;
    assert_eq!(accrued.status(), 201);
    assert_eq!(json_of(&accrued)["points"], preview["points"]);
    assert_eq!(json_of(&accrued)["entry_id"], "order:pos-77");
    assert_eq!(json_of(&accrued)["balance"]["available"], 136);

    let replayed = handle(
        &app,
        Function::Accrue,
        ApiRequest::post(&accruals, order)
            .key("till-1-77")
            .request(),
    )
    .await;
    assert_eq!(replayed.status(), 201);
    assert_eq!(
        replayed
            .headers()
            .get(REPLAYED_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(json_of(&replayed), json_of(&accrued));

    for i in 0..3 {
        let body = json!({ "kind": "purchase", "order_id": format!("web-{i}"), "amount": { "minor": 10_000, "currency": "USD" } });
        let response = handle(
            &app,
            Function::Accrue,
            ApiRequest::post(&accruals, body)
                .key(&format!("web-{i}"))
                .request(),
        )
        .await;
        assert_eq!(response.status(), 201);
    }

    let rewards = handle(
        &app,
        Function::Rewards,
        ApiRequest::get("/v1/rewards").request(),
    )
    .await;
    let catalog = json_of(&rewards);
    let tote = catalog["rewards"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["reward_id"] == "tote-bag"))
        .cloned();
    assert_eq!(tote.map(|t| t["stock_remaining"].clone()), Some(json!(250)));

    let redeemed = handle(
        &app,
        Function::Redeem,
        ApiRequest::post(
            &format!("/v1/members/{id}/redemptions"),
            json!({ "reward_id": "free-coffee" }),
        )
        .key("app-redeem-1")
        .request(),
    )
    .await;
    assert_eq!(redeemed.status(), 201);
    let receipt = json_of(&redeemed);
    assert_eq!(receipt["points"], 150);
    assert_eq!(receipt["balance"]["available"], 436 - 150);
    assert!(receipt["code"].as_str().is_some_and(|c| c.len() == 14));

    // Six entries, two per page, newest first, then no cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = ApiRequest::get(&format!("/v1/members/{id}/ledger")).query("limit", "2");
        if let Some(c) = &cursor {
            request = request.query("cursor", c);
        }
        let page = json_of(&handle(&app, Function::Members, request.request()).await);
        for entry in page["entries"].as_array().expect("entries") {
            seen.push(entry["entry_id"].as_str().unwrap_or_default().to_owned());
            for field in [
                "entry_id",
                "type",
                "points",
                "balance_after",
                "reason",
                "breakdown",
                "source",
                "program_version",
                "occurred_at",
                "recorded_at",
            ] {
                assert!(entry.get(field).is_some(), "entry lacks {field}");
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    assert!(seen[0].starts_with("redemption:"));
    assert_eq!(seen[5], "welcome");

    let read = json_of(
        &handle(
            &app,
            Function::Members,
            ApiRequest::get(&format!("/v1/members/{id}")).request(),
        )
        .await,
    );
    assert_eq!(read["balance"]["available"], 286);
    assert_eq!(read["balance"]["lifetime_redeemed"], 150);
}

#[tokio::test]
async fn the_program_is_versioned_and_a_bad_one_never_replaces_it() {
    let TestApp { app, .. } = test_app().await;
    let current = json_of(
        &handle(
            &app,
            Function::Rewards,
            ApiRequest::get("/v1/program").request(),
        )
        .await,
    );
    assert_eq!(current["version"], 1);

    let mut next = current.clone();
    for field in ["version", "published_at"] {
        next.as_object_mut().map(|o| o.remove(field));
    }
    next["earning"]["points_per_unit"] = json!(2);
    let published = handle(
        &app,
        Function::Rewards,
        ApiRequest::new("PUT", "/v1/admin/program")
            .raw_body(&next.to_string())
            .request(),
    )
    .await;
    assert_eq!(published.status(), 200, "{}", json_of(&published));
    assert_eq!(json_of(&published)["version"], 2);

    next["earning"]["points_per_unit"] = json!(0);
    let rejected = handle(
        &app,
        Function::Rewards,
        ApiRequest::new("PUT", "/v1/admin/program")
            .raw_body(&next.to_string())
            .request(),
    )
    .await;
    assert_eq!(rejected.status(), 422);
    assert_eq!(error_code(&rejected), "invalid_program");
    assert!(json_of(&rejected)["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("points_per_unit")));

    // New events earn under version 2, and the entry says so.
    let member = enrol(&app, &unique("m")).await;
    let outcome = accrue(&app, &member, "k", purchase("o", 1_000))
        .await
        .expect("accrued");
    assert_eq!(body(&outcome)["points"], 20);
    assert_eq!(body(&outcome)["program_version"], 2);

    let reward = json!({ "reward_id": "birthday-cake", "name": "Birthday cake", "kind": "free_product", "sku": "CAKE", "points_cost": 400, "stock": 2 });
    let created = handle(
        &app,
        Function::Rewards,
        ApiRequest::post("/v1/admin/rewards", reward).request(),
    )
    .await;
    assert_eq!(created.status(), 201);
    let program = json_of(
        &handle(
            &app,
            Function::Rewards,
            ApiRequest::get("/v1/program").request(),
        )
        .await,
    );
    assert_eq!(program["version"], 3);
    assert!(program["rewards"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["reward_id"] == "birthday-cake")));
}

#[tokio::test]
async fn limited_stock_and_per_member_limits_hold() {
    let TestApp { app, .. } = test_app().await;
    let reward = json!({ "reward_id": "signed-poster", "name": "Signed poster", "kind": "merchandise", "points_cost": 10, "stock": 2 });
    assert_eq!(
        handle(
            &app,
            Function::Rewards,
            ApiRequest::post("/v1/admin/rewards", reward).request()
        )
        .await
        .status(),
        201
    );
    let redeem = |member: &str, key: &str, reward: &str| {
        ApiRequest::post(
            &format!("/v1/members/{member}/redemptions"),
            json!({ "reward_id": reward }),
        )
        .key(key)
        .request()
    };
    let (a, b) = (unique("a"), unique("b"));
    enrol(&app, &a).await;
    enrol(&app, &b).await;
    assert_eq!(
        handle(&app, Function::Redeem, redeem(&a, "1", "signed-poster"))
            .await
            .status(),
        201
    );
    assert_eq!(
        handle(&app, Function::Redeem, redeem(&b, "1", "signed-poster"))
            .await
            .status(),
        201
    );
    let sold_out = handle(&app, Function::Redeem, redeem(&a, "2", "signed-poster")).await;
    assert_eq!(
        (sold_out.status().as_u16(), error_code(&sold_out)),
        (409, "reward_unavailable".to_owned())
    );
    // Nothing was taken from the member whose redemption failed.
    assert_eq!(
        member_state(&app, &member_id(&a)).await.balance.available,
        90
    );

    accrue(&app, &member_id(&a), "fund", purchase("o", 200_000))
        .await
        .expect("funded");
    assert_eq!(
        handle(&app, Function::Redeem, redeem(&a, "tote-1", "tote-bag"))
            .await
            .status(),
        201
    );
    let limited = handle(&app, Function::Redeem, redeem(&a, "tote-2", "tote-bag")).await;
    assert_eq!(
        (limited.status().as_u16(), error_code(&limited)),
        (409, "reward_unavailable".to_owned())
    );
}
