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

/// What one accrual (order `probe-<order>`) and one coffee redemption cost at `history` entries.
async fn probe(
    app: &loyalty_core::App<loyalty_dynamo::DynamoStore>,
    store: &loyalty_dynamo::DynamoStore,
    member: &loyalty_core::ids::MemberId,
    order: u64,
    history: u64,
) -> (Capacity, Capacity) {
    let accrual = measured(store, async {
        accrue(
            app,
            member,
            &format!("probe-{order}"),
            purchase(&format!("probe-{order}"), 2_599),
        )
        .await
        .expect("accrued");
    })
    .await;
    let redemption = measured(store, async {
        app.redeem(
            member,
            key(&format!("redeem-{history}")),
            &json!({ "reward_id": "free-coffee" }),
        )
        .await
        .expect("redeemed");
    })
    .await;
    (accrual, redemption)
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
        costs.push(probe(&app, &store, &member, next_order, history).await);
    }
    let (early, late) = (costs[0], costs[1]);
    assert_eq!(early, late, "cost grew with history: {early:?} vs {late:?}");
    let (accrual, redemption) = early;
    // One read round trip (member + key) and one transaction.
    assert_eq!(accrual.round_trips, 2);
    assert_eq!(redemption.round_trips, 2);
    println!("accrual: {accrual:?}; redemption: {redemption:?}");
}

/// With expiry on, the member item carries its lots; they are bounded by the policy (12 months:
/// at most 13 once the daily run removes what expired), not by history. A member earning every
/// month for years costs the same at entry 20, when it first holds a full set of lots, as at
/// entry 400.
#[tokio::test]
async fn with_a_full_set_of_lots_accrue_and_redeem_cost_the_same_at_entry_20_and_entry_400() {
    use chrono::{Months, TimeZone};
    use loyalty_core::clock::Clock;
    let config = AppConfig {
        program_cache_ttl: Duration::from_secs(3600),
        ..AppConfig::default()
    };
    let start = chrono::Utc
        .with_ymd_and_hms(2026, 1, 5, 12, 0, 0)
        .single()
        .expect("instant");
    let clock = Arc::new(loyalty_core::clock::ManualClock::new(start));
    let TestApp { app, store } = test_app_with(clock.clone(), config).await;
    let member = enrol(&app, &unique("lots")).await;
    let program = app.program().await.expect("program");
    assert!(
        !matches!(
            program.document.expiry.mode,
            loyalty_core::expiry::ExpiryMode::None
        ),
        "the shipped program expires points"
    );

    let mut costs = Vec::new();
    let mut next_order = 0u64;
    let mut months = 0u32;
    // One large order a month at first, so the member holds a year of lots by entry 20; then
    // thirty small ones a month.
    for (history, per_month, minor) in [(20, 1, 20_000), (400, 30, 1_000)] {
        while member_state(&app, &member).await.last_seq < history {
            next_order += 1;
            accrue(
                &app,
                &member,
                &format!("seed-{next_order}"),
                purchase(&format!("seed-{next_order}"), minor),
            )
            .await
            .expect("seeded");
            if next_order.is_multiple_of(per_month) {
                months += 1;
                let next_month = start + Months::new(months);
                // The daily run, on each day it has work for this member until next month.
                while let Some(due) = member_state(&app, &member).await.expiry.due {
                    let run_at = due.and_hms_opt(3, 30, 0).expect("time").and_utc();
                    if run_at > next_month {
                        break;
                    }
                    clock.set(run_at.max(clock.now()));
                    app.run_expiry().await.expect("expiry run");
                }
                clock.set(next_month);
            }
        }
        let state = member_state(&app, &member).await;
        let lots = state.expiry.lots.len();
        println!(
            "entry {history}: member {} bytes as JSON, of which lots {} and qualifying days {}",
            serde_json::to_string(&state).expect("json").len(),
            serde_json::to_string(&state.expiry).expect("json").len(),
            serde_json::to_string(&state.qualifying)
                .expect("json")
                .len(),
        );
        // Twelve months behind, and this month's once it has earned.
        assert!(
            (12..=13).contains(&lots),
            "a full set of lots at entry {history}: {lots}"
        );
        next_order += 1;
        costs.push(probe(&app, &store, &member, next_order, history).await);
    }
    let (early, late) = (costs[0], costs[1]);
    assert_eq!(early, late, "cost grew with history: {early:?} vs {late:?}");
    assert_eq!(early.0.round_trips, 2);
    assert_eq!(early.1.round_trips, 2);
    println!(
        "with 13 lots: accrual {:?}; redemption {:?}",
        early.0, early.1
    );
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
