//! The simulator in every test run: 512 seeds on the in-memory store with faults injected, split
//! in two halves so the two halves run side by side. A failure names the seed and the step; replay
//! it with `make simulate SEED=<n>`.

use loyalty_sim::faults::FaultCounts;
use loyalty_sim::{run_seed, Config, CI_SEEDS};

fn run_seeds(seeds: std::ops::Range<u64>) {
    let config = Config::default();
    let mut faults = FaultCounts::default();
    let (mut steps, mut priced) = (0, 0);
    for seed in seeds.clone() {
        match run_seed(seed, &config) {
            Ok(report) => {
                faults.add(&report.faults);
                steps += report.steps;
                priced += report.priced;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    assert!(
        priced > 0,
        "the model priced no accrual: the workload does not reach the ledger"
    );
    assert!(faults.total() > 0, "no fault was injected");
    println!("seeds {seeds:?}: {steps} steps, {priced} accruals priced, faults {faults:?}");
}

#[test]
fn the_first_half_of_the_ci_seeds_keeps_every_invariant() {
    run_seeds(0..CI_SEEDS / 2);
}

#[test]
fn the_second_half_of_the_ci_seeds_keeps_every_invariant() {
    run_seeds(CI_SEEDS / 2..CI_SEEDS);
}

#[test]
fn one_seed_is_one_run() {
    let config = Config::default();
    for seed in [3, 41, 77] {
        let first = run_seed(seed, &config).expect("seed passes");
        let second = run_seed(seed, &config).expect("seed passes");
        assert_eq!(first, second, "seed {seed} ran differently the second time");
    }
}
