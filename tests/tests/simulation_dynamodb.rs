//! The simulator against DynamoDB Local: fewer seeds than the in-memory run, so that the
//! adapter's conditions (not only `MemoryStore`'s) face concurrent requests and injected faults.

use std::sync::Arc;

use loyalty_sim::{run_steps, workload, Config};
use loyalty_tests::stream_relay::StreamFeed;
use loyalty_tests::streaming_store;

/// Seeds run against DynamoDB Local in every test run, in lanes that run at once: each seed has
/// its own table, and most of a seed's time is spent waiting on DynamoDB Local and its stream.
const SEEDS: u64 = 16;
const LANES: u64 = 4;

/// Runs `seeds` one after the other; what the model priced.
async fn lane(seeds: impl Iterator<Item = u64>, config: &Config) -> u64 {
    let mut priced = 0;
    for seed in seeds {
        let store = Arc::new(streaming_store().await);
        let steps = workload::generate(seed, config.shape, config.abuse);
        let feed = Arc::new(StreamFeed::of(&store).await);
        let report = run_steps(store, feed, seed, config, &steps, false)
            .await
            .unwrap_or_else(|failure| panic!("on DynamoDB Local: {failure}"));
        priced += report.priced;
    }
    priced
}

#[tokio::test]
async fn sixteen_seeds_keep_every_invariant_on_dynamodb_local() {
    let mut config = Config::default();
    config.shape.steps = 8;
    let of_lane = |n: u64| (0..SEEDS).filter(move |seed| seed % LANES == n);
    let (a, b, c, d) = tokio::join!(
        lane(of_lane(0), &config),
        lane(of_lane(1), &config),
        lane(of_lane(2), &config),
        lane(of_lane(3), &config),
    );
    assert!(a + b + c + d > 0, "the model priced no accrual");
}
