//! Every bad input gets a 4xx with a stable code and writes nothing: checked by counting the
//! table's items and the member's state before and after each request.

use loyalty_http::{handle, Function};
use loyalty_tests::events::{error_code, ApiRequest};
use loyalty_tests::*;
use serde_json::json;

struct Case {
    name: &'static str,
    function: Function,
    request: ApiRequest,
    status: u16,
    code: &'static str,
}

fn purchase_with(amount: serde_json::Value) -> serde_json::Value {
    json!({ "kind": "purchase", "order_id": "o-1", "amount": amount })
}

fn usd(minor: serde_json::Value) -> serde_json::Value {
    json!({ "minor": minor, "currency": "USD" })
}

fn cases(m: &str) -> Vec<Case> {
    let accruals = format!("/v1/members/{m}/accruals");
    let redemptions = format!("/v1/members/{m}/redemptions");
    let accrual = |body: serde_json::Value| ApiRequest::post(&accruals, body).key("k-bad");
    let raw = |body: &str| {
        ApiRequest::new("POST", &accruals)
            .raw_body(body)
            .key("k-bad")
    };
    let case = |name, function, request, status, code| Case {
        name,
        function,
        request,
        status,
        code,
    };
    use Function::*;
    vec![
        case(
            "malformed json",
            Accrue,
            raw("{\"kind\":"),
            400,
            "invalid_json",
        ),
        case("array body", Accrue, raw("[1,2]"), 400, "invalid_json"),
        case("empty body", Accrue, raw(""), 400, "invalid_json"),
        case(
            "string amount",
            Accrue,
            accrual(purchase_with(usd(json!("12")))),
            400,
            "validation_error",
        ),
        case(
            "fractional amount",
            Accrue,
            accrual(purchase_with(usd(json!(12.5)))),
            400,
            "validation_error",
        ),
        case(
            "negative amount",
            Accrue,
            accrual(purchase_with(usd(json!(-100)))),
            400,
            "validation_error",
        ),
        case(
            "zero amount",
            Accrue,
            accrual(purchase_with(usd(json!(0)))),
            400,
            "validation_error",
        ),
        case(
            "overflowing amount",
            Accrue,
            raw(
                r#"{"kind":"purchase","order_id":"o","amount":{"minor":99999999999999999999,"currency":"USD"}}"#,
            ),
            400,
            "validation_error",
        ),
        case(
            "amount over the maximum",
            Accrue,
            accrual(purchase_with(usd(json!(10_000_000_000_001_i64)))),
            400,
            "validation_error",
        ),
        case(
            "non-ISO currency",
            Accrue,
            accrual(purchase_with(json!({ "minor": 100, "currency": "ZZZ" }))),
            400,
            "validation_error",
        ),
        case(
            "lower-case currency",
            Accrue,
            accrual(purchase_with(json!({ "minor": 100, "currency": "usd" }))),
            400,
            "validation_error",
        ),
        case(
            "other currency",
            Accrue,
            accrual(purchase_with(json!({ "minor": 100, "currency": "EUR" }))),
            422,
            "currency_mismatch",
        ),
        case(
            "unknown field",
            Accrue,
            accrual(
                json!({ "kind": "purchase", "order_id": "o", "amount": usd(json!(100)), "points": 1_000_000 }),
            ),
            400,
            "validation_error",
        ),
        case(
            "unknown kind",
            Accrue,
            accrual(json!({ "kind": "refund", "order_id": "o" })),
            400,
            "validation_error",
        ),
        case(
            "missing kind",
            Accrue,
            accrual(json!({ "order_id": "o", "amount": usd(json!(100)) })),
            400,
            "validation_error",
        ),
        case(
            "oversized order id",
            Accrue,
            accrual(
                json!({ "kind": "purchase", "order_id": "o".repeat(129), "amount": usd(json!(100)) }),
            ),
            400,
            "validation_error",
        ),
        case(
            "oversized body",
            Accrue,
            raw(&format!(
                r#"{{"kind":"purchase","order_id":"o","amount":{{"minor":1,"currency":"USD"}},"pad":"{}"}}"#,
                "x".repeat(70_000)
            )),
            413,
            "payload_too_large",
        ),
        case(
            "items over amount",
            Accrue,
            accrual(
                json!({ "kind": "purchase", "order_id": "o", "amount": usd(json!(100)), "items": [{ "sku": "s", "category": "coffee", "amount": usd(json!(101)), "quantity": 1 }] }),
            ),
            400,
            "validation_error",
        ),
        case(
            "zero quantity",
            Accrue,
            accrual(
                json!({ "kind": "purchase", "order_id": "o", "amount": usd(json!(100)), "items": [{ "sku": "s", "category": "coffee", "amount": usd(json!(10)), "quantity": 0 }] }),
            ),
            400,
            "validation_error",
        ),
        case(
            "future occurred_at",
            Accrue,
            accrual(
                json!({ "kind": "purchase", "order_id": "o", "amount": usd(json!(100)), "occurred_at": "2999-01-01T00:00:00Z" }),
            ),
            400,
            "validation_error",
        ),
        case(
            "unknown action",
            Accrue,
            accrual(json!({ "kind": "action", "action": "skydiving", "reference": "r" })),
            422,
            "unknown_action",
        ),
        case(
            "missing key",
            Accrue,
            ApiRequest::post(&accruals, purchase_with(usd(json!(100)))),
            400,
            "missing_idempotency_key",
        ),
        case(
            "oversized key",
            Accrue,
            ApiRequest::post(&accruals, purchase_with(usd(json!(100)))).key(&"k".repeat(256)),
            400,
            "invalid_idempotency_key",
        ),
        case(
            "bad dry_run",
            Accrue,
            accrual(purchase_with(usd(json!(100)))).query("dry_run", "maybe"),
            400,
            "validation_error",
        ),
        case(
            "unknown query parameter",
            Accrue,
            accrual(purchase_with(usd(json!(100)))).query("dryrun", "true"),
            400,
            "validation_error",
        ),
        case(
            "not json content type",
            Accrue,
            accrual(purchase_with(usd(json!(100)))).header("content-type", "text/plain"),
            415,
            "unsupported_media_type",
        ),
        case(
            "bad member id",
            Accrue,
            ApiRequest::post(
                "/v1/members/bad!id/accruals",
                purchase_with(usd(json!(100))),
            )
            .key("k"),
            400,
            "validation_error",
        ),
        case(
            "oversized member id",
            Accrue,
            ApiRequest::post(
                &format!("/v1/members/{}/accruals", "m".repeat(65)),
                purchase_with(usd(json!(100))),
            )
            .key("k"),
            400,
            "validation_error",
        ),
        case(
            "unknown member",
            Accrue,
            ApiRequest::post(
                "/v1/members/nobody-here/accruals",
                purchase_with(usd(json!(100))),
            )
            .key("k"),
            404,
            "member_not_found",
        ),
        case(
            "redeem without key",
            Redeem,
            ApiRequest::post(&redemptions, json!({ "reward_id": "free-coffee" })),
            400,
            "missing_idempotency_key",
        ),
        case(
            "unknown reward",
            Redeem,
            ApiRequest::post(&redemptions, json!({ "reward_id": "yacht" })).key("r"),
            404,
            "reward_not_found",
        ),
        case(
            "bad reward id",
            Redeem,
            ApiRequest::post(&redemptions, json!({ "reward_id": "free coffee" })).key("r"),
            400,
            "validation_error",
        ),
        case(
            "not enough points",
            Redeem,
            ApiRequest::post(&redemptions, json!({ "reward_id": "gift-card-25" })).key("r"),
            409,
            "insufficient_points",
        ),
        case(
            "enrol bad id",
            Members,
            ApiRequest::post("/v1/members", json!({ "member_id": "a b" })),
            400,
            "validation_error",
        ),
        case(
            "enrol with a tier",
            Members,
            ApiRequest::post("/v1/members", json!({ "tier": "platinum" })),
            400,
            "validation_error",
        ),
        case(
            "enrol bad email",
            Members,
            ApiRequest::post("/v1/members", json!({ "email": "not-an-email" })),
            400,
            "validation_error",
        ),
        case(
            "enrol existing",
            Members,
            ApiRequest::post("/v1/members", json!({ "member_id": m })),
            409,
            "member_exists",
        ),
        case(
            "enrol unknown referral",
            Members,
            ApiRequest::post("/v1/members", json!({ "referral_code": "ZZZZ2222" })),
            404,
            "referral_code_not_found",
        ),
        case(
            "enrol malformed referral",
            Members,
            ApiRequest::post("/v1/members", json!({ "referral_code": "nope" })),
            400,
            "validation_error",
        ),
        case(
            "ledger bad cursor",
            Members,
            ApiRequest::get(&format!("/v1/members/{m}/ledger")).query("cursor", "garbage"),
            400,
            "invalid_cursor",
        ),
        case(
            "ledger zero limit",
            Members,
            ApiRequest::get(&format!("/v1/members/{m}/ledger")).query("limit", "0"),
            400,
            "validation_error",
        ),
        case(
            "ledger huge limit",
            Members,
            ApiRequest::get(&format!("/v1/members/{m}/ledger")).query("limit", "101"),
            400,
            "validation_error",
        ),
        case(
            "ledger text limit",
            Members,
            ApiRequest::get(&format!("/v1/members/{m}/ledger")).query("limit", "ten"),
            400,
            "validation_error",
        ),
        case(
            "unknown member read",
            Members,
            ApiRequest::get("/v1/members/nobody-here"),
            404,
            "member_not_found",
        ),
        case(
            "wrong method",
            Members,
            ApiRequest::new("DELETE", &format!("/v1/members/{m}")),
            405,
            "method_not_allowed",
        ),
        case(
            "unknown route",
            Members,
            ApiRequest::get("/v1/unknown"),
            404,
            "route_not_found",
        ),
        case(
            "route of another function",
            Members,
            ApiRequest::post(&accruals, purchase_with(usd(json!(100)))).key("k"),
            404,
            "route_not_found",
        ),
        case(
            "invalid program",
            Rewards,
            ApiRequest::new("PUT", "/v1/admin/program").raw_body(r#"{"name":"x"}"#),
            422,
            "invalid_program",
        ),
        case(
            "reward missing value",
            Rewards,
            ApiRequest::post(
                "/v1/admin/rewards",
                json!({ "reward_id": "ten-off", "name": "$10 off", "kind": "fixed_discount", "points_cost": 900 }),
            ),
            400,
            "validation_error",
        ),
        case(
            "reward exists",
            Rewards,
            ApiRequest::post(
                "/v1/admin/rewards",
                json!({ "reward_id": "free-coffee", "name": "Coffee", "kind": "free_shipping", "points_cost": 1 }),
            ),
            409,
            "reward_exists",
        ),
    ]
}

#[tokio::test]
async fn bad_inputs_get_stable_4xx_codes_and_write_nothing() {
    let TestApp { app, store } = test_app().await;
    let m = unique("m");
    let member = enrol(&app, &m).await;
    let before = member_state(&app, &member).await;
    let items = item_count(&store).await;
    let program = app.program().await.expect("program").version;

    for case in cases(&m) {
        let response = handle(&app, case.function, case.request.request()).await;
        assert_eq!(
            response.status().as_u16(),
            case.status,
            "{}: status",
            case.name
        );
        assert_eq!(error_code(&response), case.code, "{}: code", case.name);
        assert_eq!(
            item_count(&store).await,
            items,
            "{}: wrote to the table",
            case.name
        );
        assert_eq!(
            member_state(&app, &member).await,
            before,
            "{}: changed the member",
            case.name
        );
    }
    assert_eq!(
        app.program().await.expect("program").version,
        program,
        "a rejected program must not replace the active one"
    );
}
