//! The abuse table (`loyalty_tests::abuse`) on DynamoDB Local: every row on its own table, two
//! environments per row (admin and edge, each with its own program cache), all rows at once.

use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_tests::abuse::{rows, Row, World};
use loyalty_tests::streaming_store;

async fn run(row: Row) -> Result<(), String> {
    let store = streaming_store().await;
    // Twenty orders racing on one member need more than the default attempts to all land.
    let config = AppConfig {
        max_attempts: 200,
        ..AppConfig::default()
    };
    let stream = loyalty_tests::stream_relay::StreamRelay::of(&store).await;
    let world = World::new(
        |clock| App::new(store.clone(), clock, config.clone()),
        stream,
    );
    world.run(&row).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_abuse_row_gets_its_answers_and_moves_only_what_the_rules_allow() {
    let mut runs = tokio::task::JoinSet::new();
    for row in rows() {
        runs.spawn(run(row));
    }
    let mut failures = Vec::new();
    while let Some(result) = runs.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => failures.push(failure),
            Err(panic) => failures.push(format!("a row panicked: {panic}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_covers_every_problem_of_the_issue() {
    let names: Vec<&str> = rows().iter().map(|row| row.name).collect();
    for needed in [
        "backdated actions do not bypass a cap",
        "an ended promotion pays at most its limit",
        "one order earns for one member",
        "the order a referee enrols on is their first purchase",
        "a reward created a moment ago is redeemable at once",
        "a retried campaign pays its audience once",
        "a daily cap holds for late events",
        "a weekly cap holds for late events",
        "a monthly cap holds for late events",
        "a yearly cap holds for late events",
        "a lifetime cap holds for late events",
        "a future occurred_at is refused",
        "a promotion limit holds against 20 parallel orders",
        "a retried enrolment creates one member",
    ] {
        assert!(names.contains(&needed), "missing row: {needed}");
    }
}
