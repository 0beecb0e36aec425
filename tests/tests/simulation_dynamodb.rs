//! The simulator against DynamoDB Local: fewer seeds than the in-memory run, so that the
//! adapter's conditions (not only `MemoryStore`'s) face concurrent requests and injected faults.

use std::sync::Arc;

use loyalty_sim::{run_steps, workload, Config};
use loyalty_tests::stream_relay::StreamFeed;
use loyalty_tests::streaming_store;

/// Seeds run against DynamoDB Local in every test run.
const SEEDS: u64 = 16;

#[tokio::test]
async fn sixteen_seeds_keep_every_invariant_on_dynamodb_local() {
    let mut config = Config::default();
    config.shape.steps = 8;
    let mut priced = 0;
    for seed in 0..SEEDS {
        let store = Arc::new(streaming_store().await);
        let steps = workload::generate(seed, config.shape, config.abuse);
        let feed = Arc::new(StreamFeed::of(&store).await);
        let report = run_steps(store, feed, seed, &config, &steps, false)
            .await
            .unwrap_or_else(|failure| panic!("on DynamoDB Local: {failure}"));
        priced += report.priced;
    }
    assert!(priced > 0, "the model priced no accrual");
}
