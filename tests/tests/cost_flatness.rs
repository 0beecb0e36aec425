//! The cost of an accrual and a redemption does not grow with the member's history. Measured in
//! DynamoDB round trips and the capacity units DynamoDB Local reports — counts, not timings.

use std::sync::Arc;
use std::time::Duration;

use loyalty_core::clock::SystemClock;
use loyalty_core::service::AppConfig;
use loyalty_dynamo::Capacity;
use loyalty_tests::*;
use serde_json::json;

async fn measured<F: std::future::Future>(
    store: &loyalty_dynamo::DynamoStore,
    work: F,
) -> Capacity {
    let before = store.meter().snapshot();
    work.await;
    store.meter().snapshot() - before
}

#[tokio::test]
async fn accrue_and_redeem_cost_the_same_at_entry_10_and_entry_400() {
    // The program stays cached for the whole test, so only ledger work is measured.
    let config = AppConfig {
        program_cache_ttl: Duration::from_secs(3600),
        ..AppConfig::default()
    };
    let TestApp { app, store } = test_app_with(Arc::new(SystemClock), config).await;
    let member = enrol(&app, &unique("m")).await;
    let _ = app.program().await;

    let mut costs = Vec::new();
    let mut next_order = 0;
    for history in [10, 400] {
        while member_state(&app, &member).await.last_seq < history {
            next_order += 1;
            accrue(
                &app,
                &member,
                &format!("seed-{next_order}"),
                purchase(&format!("seed-{next_order}"), 1_000),
            )
            .await
            .expect("seeded");
        }
        next_order += 1;
        let accrual = measured(&store, async {
            accrue(
                &app,
                &member,
                &format!("probe-{next_order}"),
                purchase(&format!("probe-{next_order}"), 2_599),
            )
            .await
            .expect("accrued");
        })
        .await;
        let redemption = measured(&store, async {
            app.redeem(
                &member,
                key(&format!("redeem-{history}")),
                &json!({ "reward_id": "free-coffee" }),
            )
            .await
            .expect("redeemed");
        })
        .await;
        costs.push((accrual, redemption));
    }
    let (early, late) = (costs[0], costs[1]);
    assert_eq!(early, late, "cost grew with history: {early:?} vs {late:?}");
    let (accrual, redemption) = early;
    // One read round trip (member + key) and one transaction.
    assert_eq!(accrual.round_trips, 2);
    assert_eq!(redemption.round_trips, 2);
    println!("accrual: {accrual:?}; redemption: {redemption:?}");
}

/// The campaign worker reads a message's members with one `BatchGetItem`: a message of one
/// transaction's worth of members (`GRANTS_PER_WRITE`, 24) is the campaign read, the member read
/// and the transaction (it was 26 with one `GetItem` each).
#[tokio::test]
async fn a_grant_message_of_one_transaction_costs_three_round_trips() {
    let config = AppConfig {
        program_cache_ttl: Duration::from_secs(3600),
        ..AppConfig::default()
    };
    let store = dynamo_store().await;
    let app = loyalty_core::App::new(store.clone(), Arc::new(SystemClock), config)
        .with_campaign_dispatch(Arc::new(loyalty_core::events::MemoryQueue::default()));
    let mut members = Vec::new();
    for i in 0..loyalty_core::campaigns::GRANTS_PER_WRITE {
        members.push(enrol(&app, &format!("grant-{i}")).await.to_string());
    }
    let created = app
        .create_campaign(
            "test-admin",
            key("round-trips"),
            &json!({ "name": "Round trips", "points": 5, "audience": { "member_ids": members }, "reason": "cost" }),
        )
        .await
        .expect("campaign created");
    let campaign_id = body(&created)["campaign_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let _ = app.program().await;
    let message = loyalty_core::campaigns::GrantMessage {
        campaign_id,
        member_ids: members.clone(),
    };
    let cost = measured(&store, async {
        app.grant_campaign(&message, false).await.expect("granted");
    })
    .await;
    println!("{}-member grant message: {cost:?}", members.len());
    assert_eq!(cost.round_trips, 3, "{cost:?}");
    for member in &members {
        assert_eq!(
            member_state(&app, &member_id(member))
                .await
                .balance
                .available,
            105
        );
    }
}
