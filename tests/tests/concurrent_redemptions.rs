//! 100 devices redeem at once against one balance: exactly ⌊B/a⌋ win, nobody overdraws.

use std::sync::Arc;

use loyalty_core::clock::SystemClock;
use loyalty_core::service::{AppConfig, Outcome};
use loyalty_core::ErrorCode;
use loyalty_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hundred_concurrent_redemptions_never_overdraw() {
    // Losing writers retry until the answer is definite; the test wants answers, not give-ups.
    let config = AppConfig {
        max_attempts: 500,
        ..AppConfig::default()
    };
    let TestApp { app, .. } = test_app_with(Arc::new(SystemClock), config).await;
    let member = enrol(&app, &unique("m")).await;
    // Welcome bonus 100 + 999 points for a 999.00 purchase = 1099 points.
    accrue(&app, &member, "fund", purchase("order-fund", 99_900))
        .await
        .expect("funded");
    let balance = member_of(&app, &member).await;
    assert_eq!(balance, 1099);
    let cost = 150; // free-coffee in the default program

    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let app = Arc::clone(&app);
            let member = member.clone();
            tokio::spawn(async move {
                app.redeem(
                    &member,
                    key(&format!("device-{i}")),
                    &json!({ "reward_id": "free-coffee" }),
                )
                .await
            })
        })
        .collect();
    let mut succeeded = 0;
    for task in tasks {
        match task.await.expect("task finished") {
            Ok(Outcome::Created(_)) => succeeded += 1,
            Ok(other) => panic!("unexpected outcome {other:?}"),
            Err(error) => assert_eq!(error.code, ErrorCode::InsufficientPoints, "{error}"),
        }
    }

    assert_eq!(succeeded, balance / cost);
    let after = member_state(&app, &member).await;
    assert_eq!(after.balance.available, balance - cost * (balance / cost));
    assert_eq!(after.balance.lifetime_redeemed, cost * (balance / cost));
    let ledger = audited_ledger(&app, &member).await;
    assert_eq!(
        ledger.iter().map(|e| e.points).sum::<i64>(),
        after.balance.available
    );
    assert_eq!(ledger.len() as i64, 2 + balance / cost);
}

async fn member_of(
    app: &loyalty_core::App<loyalty_dynamo::DynamoStore>,
    id: &loyalty_core::ids::MemberId,
) -> i64 {
    member_state(app, id).await.balance.available
}
