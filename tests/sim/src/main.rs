//! `make simulate`: runs seeds of the simulator and reports what they did.
//!
//!   SEEDS=n     how many seeds (default 512), starting at FIRST_SEED (default 0)
//!   SEED=n      replay exactly this seed (and shrink it if it fails)
//!   STEPS=n     steps per seed (default 40)
//!   ABUSE=list  abuse patterns of issue 12 to generate (default: all;
//!               `none` for none): late_events, ended_promotions,
//!               shared_orders, checkout_referral, fresh_catalog, retried_creates, or all
//!   FAULTS=off  no injected faults
//!   KEEP_GOING=1  run every seed and list the failures instead of stopping at the first
//!   SIM_TRACE=1   print every step and every answer; SIM_TRACE_SCHED=1 also every gate turn

use std::time::Instant;

use loyalty_sim::faults::{FaultCounts, FaultRates};
use loyalty_sim::workload::Abuse;
use loyalty_sim::{run_seed, shrink, Config};

fn env_number(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}='{raw}' is not a number")),
        _ => Ok(None),
    }
}

fn config() -> Result<Config, String> {
    let mut config = Config::default();
    if let Some(steps) = env_number("STEPS")? {
        config.shape.steps = steps as usize;
    }
    if let Ok(list) = std::env::var("ABUSE") {
        config.abuse = Abuse::parse(&list)?;
    }
    if std::env::var("FAULTS").is_ok_and(|v| v == "off") {
        config.rates = FaultRates::NONE;
    }
    Ok(config)
}

fn main() {
    let outcome = (|| -> Result<bool, String> {
        let config = config()?;
        let seeds: Vec<u64> = match env_number("SEED")? {
            Some(seed) => vec![seed],
            None => {
                let first = env_number("FIRST_SEED")?.unwrap_or(0);
                let count = env_number("SEEDS")?.unwrap_or(loyalty_sim::CI_SEEDS);
                (first..first + count).collect()
            }
        };
        println!(
            "simulating {} seed(s), {} steps each, abuse {:?}",
            seeds.len(),
            config.shape.steps,
            config.abuse
        );
        let started = Instant::now();
        let keep_going = std::env::var_os("KEEP_GOING").is_some();
        let mut failed = 0usize;
        let mut faults = FaultCounts::default();
        let (mut steps, mut requests, mut priced) = (0usize, 0usize, 0u64);
        for seed in &seeds {
            match run_seed(*seed, &config) {
                Ok(report) => {
                    if seeds.len() == 1 {
                        println!(
                            "seed {seed}: fingerprint {:016x}, {:?}",
                            report.fingerprint, report.faults
                        );
                    }
                    faults.add(&report.faults);
                    steps += report.steps;
                    requests += report.requests;
                    priced += report.priced;
                }
                Err(failure) if keep_going => {
                    println!("{failure}");
                    failed += 1;
                }
                Err(failure) => {
                    println!("{failure}");
                    let (shrunk, last) = shrink(*seed, &config, &failure, 200);
                    println!(
                        "shrunk to {} step(s), failing with: {}",
                        shrunk.len(),
                        last.message
                    );
                    for (i, step) in shrunk.iter().enumerate() {
                        println!("  {i:>3}: {step:?}");
                    }
                    return Ok(false);
                }
            }
        }
        if failed > 0 {
            println!("{failed} seed(s) failed");
            return Ok(false);
        }
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let n = seeds.len() as f64;
        println!("faults injected: {faults:?}");
        println!(
            "simulation: {} seeds passed, {steps} steps, {requests} requests, {priced} accruals priced by the model, {} faults ({:.1} per seed); {:.2} seeds/s, {:.0} steps/s, {seconds:.1} s",
            seeds.len(),
            faults.total(),
            faults.total() as f64 / n,
            n / seconds,
            steps as f64 / seconds,
        );
        Ok(true)
    })();
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(message) => {
            eprintln!("loyalty-sim: {message}");
            std::process::exit(2);
        }
    }
}
