//! A deterministic simulator that tries to break the ledger.
//!
//! # Layout
//! - [`workload`]: the steps of a seed (batches of concurrent requests, admin and scheduled
//!   calls, clock jumps), drawn from one seeded PRNG, with a switch per abuse pattern.
//! - [`ops`]: each operation and the only calls into the application's use cases.
//! - [`sched`]: the seeded scheduler that interleaves a batch's requests at their port calls.
//! - [`faults`]: the port wrappers that inject conflicts, lost responses, throttling, queue
//!   duplicates/delays/reordering, crashes after a commit, killed workers and payment timeouts.
//! - [`world`]: the deployment under test: store, environments, queues, payments, clock.
//! - [`model`]: the earning rules written again, independently of the engine.
//! - [`check`]: the invariants checked after every step and the audit at the end of a seed.
//!
//! A failure names the seed and the step; [`run_steps`] replays any list of steps, and
//! [`shrink`] cuts a failing run down to the steps that still make it fail.

pub mod check;
pub mod faults;
pub mod model;
pub mod ops;
pub mod sched;
pub mod workload;
pub mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use loyalty_core::memory::MemoryStore;
use loyalty_core::ports::Store;

use crate::check::Checker;
use crate::faults::{FaultCounts, FaultRates, QueueName};
use crate::ops::{member_id, Op};
use crate::sched::Task;
use crate::workload::{Abuse, Shape, Step};
use crate::world::{ChangeFeed, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub shape: Shape,
    pub abuse: Abuse,
    pub rates: FaultRates,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            shape: Shape {
                steps: 40,
                max_batch: 6,
                environments: 2,
            },
            abuse: Abuse::DEFAULT,
            rates: FaultRates::DEFAULT,
        }
    }
}

/// What one seed did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub steps: usize,
    pub requests: usize,
    pub faults: FaultCounts,
    /// Accruals whose earnings the reference model checked.
    pub priced: u64,
    /// A hash of every write the store applied, in order (ids minted at random left out): two
    /// runs of one seed must agree on it.
    pub fingerprint: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub seed: u64,
    /// The step after which an invariant broke (`steps` for the final audit).
    pub step: usize,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed after step {}: {}\n  replay: make simulate SEED={}",
            self.seed, self.step, self.message, self.seed
        )
    }
}

/// Runs seed `seed` on the in-memory store.
pub fn run_seed(seed: u64, config: &Config) -> Result<SeedReport, Failure> {
    let steps = workload::generate(seed, config.shape, config.abuse);
    run_steps_in_memory(seed, config, &steps)
}

/// Runs `steps` for `seed` on a fresh in-memory store, on a paused clock.
pub fn run_steps_in_memory(
    seed: u64,
    config: &Config,
    steps: &[Step],
) -> Result<SeedReport, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| Failure {
            seed,
            step: 0,
            message: format!("runtime: {e}"),
        })?;
    let store = Arc::new(MemoryStore::with_change_feed());
    runtime.block_on(run_steps(store.clone(), store, seed, config, steps, true))
}

/// Runs `steps` for `seed` against `store` (the in-memory store, or DynamoDB Local with
/// `paused` false), its outbox relaying what `feed` reports committed.
pub async fn run_steps<S: Store>(
    store: Arc<S>,
    feed: Arc<dyn ChangeFeed>,
    seed: u64,
    config: &Config,
    steps: &[Step],
    paused: bool,
) -> Result<SeedReport, Failure> {
    let start = workload::start_time(seed);
    let world = World::new(
        store,
        feed,
        seed,
        config.rates,
        config.shape.environments,
        start,
        paused,
    );
    let failure = |step: usize| {
        move |message: String| Failure {
            seed,
            step,
            message,
        }
    };
    let mut checker = Checker::new(config.abuse);
    let mut report = SeedReport::default();
    ops::publish_program(&world.envs[0])
        .await
        .map_err(|e| failure(0)(e.message))?;
    checker.refresh(&world).await.map_err(failure(0))?;
    let trace = std::env::var_os("SIM_TRACE").is_some();
    for (index, step) in steps.iter().enumerate() {
        if trace {
            eprintln!("step {index} at {}: {step:?}", world.now());
        }
        run_step(&world, &mut checker, config, step, &mut report)
            .await
            .map_err(failure(index))?;
        checker.check_writes(&world).map_err(failure(index))?;
        checker.check_state(&world).await.map_err(failure(index))?;
        report.steps += 1;
    }
    audit(&world, &mut checker)
        .await
        .map_err(failure(steps.len()))?;
    report.faults = world.faults.counts();
    report.priced = checker.entries_checked;
    report.fingerprint = fingerprint(&world.faults.log_since(0));
    Ok(report)
}

async fn run_step<S: Store>(
    world: &World<S>,
    checker: &mut Checker,
    config: &Config,
    step: &Step,
    report: &mut SeedReport,
) -> Result<(), String> {
    match step {
        Step::Jump(by) => {
            // The scheduled jobs look back a week for runs they missed; they run at least every
            // six days of a long jump, as the daily schedule would.
            let mut left = *by;
            while left > chrono::Duration::zero() {
                let chunk = left.min(chrono::Duration::days(6));
                let day = world.now().date_naive();
                world.advance(chunk).await;
                left -= chunk;
                if world.now().date_naive() != day {
                    daily_jobs(world, checker).await?;
                }
            }
            Ok(())
        }
        Step::Admin(env, op) => {
            report.requests += 1;
            let ops = vec![(*env, op.clone())];
            run_batch(world, checker, &ops, config.abuse.retried_creates).await?;
            if !config.abuse.fresh_catalog {
                world.expire_caches().await;
            }
            checker.refresh(world).await
        }
        Step::Batch(ops) => {
            report.requests += ops.len();
            run_batch(world, checker, ops, true).await
        }
    }
}

/// The scheduled jobs of a new day: seasons, the referral sweep, the tier review and billing
/// fan-outs (their messages are drained by workers in later steps).
async fn daily_jobs<S: Store>(world: &World<S>, checker: &mut Checker) -> Result<(), String> {
    for job in [
        Op::RunSeasons,
        Op::SweepReferrals,
        Op::SweepCodes,
        Op::PlanTierReviews,
        Op::PlanBilling,
        Op::RunExpiry,
    ] {
        run_batch(world, checker, &[(0, job)], false).await?;
    }
    world.expire_caches().await;
    checker.refresh(world).await
}

async fn run_batch<S: Store>(
    world: &World<S>,
    checker: &mut Checker,
    ops: &[(usize, Op)],
    faults: bool,
) -> Result<(), String> {
    checker.expect(ops);
    checker.note_relayed(world);
    let before: BTreeSet<String> = checker.member_ids().into_iter().collect();
    let now = world.now();
    let mut kill = BTreeMap::new();
    if faults {
        let rates = world.faults.rates();
        for (index, (_, op)) in ops.iter().enumerate() {
            if matches!(op, Op::Drain { .. }) && world.faults.draw(1000) < rates.kill_worker {
                kill.insert(index, world.faults.draw(12));
            }
        }
    }
    let environments = world.envs.len();
    let tasks: Vec<Task<'_, ops::Answered>> = ops
        .iter()
        .map(|(env, op)| {
            let app = &world.envs[env % environments];
            Box::pin(op.execute(world, app)) as Task<'_, ops::Answered>
        })
        .collect();
    let killed_before = world.sched.counts().0;
    world.faults.set_enabled(faults);
    let answers = match tokio::time::timeout(BATCH_TIME_LIMIT, world.sched.run(tasks, kill)).await {
        Ok(answers) => answers,
        Err(_) => {
            world.faults.set_enabled(false);
            return Err(format!(
                "a batch did not finish within {BATCH_TIME_LIMIT:?} of simulated time ({})\n  requests: {ops:?}",
                world.sched.describe()
            ));
        }
    };
    if std::env::var_os("SIM_TRACE").is_some() {
        for ((_, op), answer) in ops.iter().zip(&answers) {
            eprintln!("    {op:?}\n      -> {answer:?}");
        }
    }
    // The outbox's turn, under the batch's faults (its sends may fail, the consumer may be
    // killed mid-turn): what it did not relay waits on the stream for the next turn.
    let mut kill_outbox = BTreeMap::new();
    if faults && world.faults.draw(1000) < world.faults.rates().kill_worker {
        kill_outbox.insert(0, world.faults.draw(12));
    }
    let relay: Task<'_, Result<usize, String>> = Box::pin(world.relay());
    let relayed = world.sched.run(vec![relay], kill_outbox).await;
    world.faults.set_enabled(false);
    if let Some(Err(error)) = relayed.into_iter().next().flatten() {
        return Err(error);
    }
    world
        .faults
        .count_killed(world.sched.counts().0 - killed_before);
    for name in QueueName::ALL {
        world.queue(name).expire_inflight();
    }
    checker.check_writes(world)?;
    checker.check_answers(ops, &answers, &before, now)
}

/// The end of a seed: with faults off, every queue is drained, the referral sweep runs past
/// every expiry, everyone's tier is evaluated, and the whole state is audited once more.
async fn audit<S: Store>(world: &World<S>, checker: &mut Checker) -> Result<(), String> {
    drain_all(world, checker).await?;
    for _ in 0..6 {
        world.advance(chrono::Duration::days(7)).await;
        run_batch(world, checker, &[(0, Op::SweepReferrals)], false).await?;
        run_batch(world, checker, &[(0, Op::SweepCodes)], false).await?;
        run_batch(world, checker, &[(0, Op::RunExpiry)], false).await?;
        drain_all(world, checker).await?;
    }
    checker.check_writes(world)?;
    checker.check_state(world).await?;
    checker.check_referrals(world).await?;
    checker.check_campaigns(world).await?;
    check::check_announced(world, &checker.member_ids()).await?;
    for id in checker.member_ids() {
        run_batch(
            world,
            checker,
            &[(0, Op::EvaluateTier { member: id.clone() })],
            false,
        )
        .await?;
        let member = world
            .inner_store()
            .member(&member_id(&id))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{id} disappeared"))?;
        checker.check_grace(world, &id, &member)?;
    }
    checker.check_state(world).await
}

async fn drain_all<S: Store>(world: &World<S>, checker: &mut Checker) -> Result<(), String> {
    for _ in 0..40 {
        world.relay().await?;
        let busy: Vec<(usize, Op)> = QueueName::ALL
            .iter()
            .filter(|q| !world.queue(**q).is_empty())
            .map(|q| {
                (
                    0,
                    Op::Drain {
                        queue: *q,
                        max: 100,
                    },
                )
            })
            .collect();
        if busy.is_empty() && world.unrelayed_changes() == 0 {
            return Ok(());
        }
        run_batch(world, checker, &busy, false).await?;
    }
    Err("queues or the outbox still hold messages after 40 rounds of draining".into())
}

fn fingerprint(log: &[faults::Applied]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for applied in log {
        for commit in &applied.commits {
            commit.member.member_id.as_str().hash(&mut hasher);
            commit.member.version.hash(&mut hasher);
            commit.member.tier.hash(&mut hasher);
            commit.member.balance.available.hash(&mut hasher);
            if let Some(entry) = &commit.entry {
                // Campaign and promotion ids are ULIDs; the points and kinds are what matter.
                format!("{:?}", entry.entry_type).hash(&mut hasher);
                entry.points.hash(&mut hasher);
                entry.occurred_at.hash(&mut hasher);
            }
        }
        for write in &applied.records {
            write.record.kind.hash(&mut hasher);
            write.record.version.hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Cuts a failing run down: drops steps one at a time (from the end) while the run still fails,
/// within `budget` re-runs. Returns the smaller step list and its failure.
pub fn shrink(
    seed: u64,
    config: &Config,
    failure: &Failure,
    budget: usize,
) -> (Vec<Step>, Failure) {
    let all = workload::generate(seed, config.shape, config.abuse);
    let mut steps: Vec<Step> = all[..(failure.step + 1).min(all.len())].to_vec();
    let mut best = failure.clone();
    let mut runs = 0;
    let mut index = steps.len().saturating_sub(1);
    while index > 0 && runs < budget {
        index -= 1;
        let mut candidate = steps.clone();
        candidate.remove(index);
        runs += 1;
        if let Err(f) = run_steps_in_memory(seed, config, &candidate) {
            candidate.truncate(f.step + 1);
            steps = candidate;
            best = f;
            index = index.min(steps.len().saturating_sub(1));
        }
    }
    (steps, best)
}

/// Simulated time a batch may take before the run is declared stuck.
const BATCH_TIME_LIMIT: Duration = Duration::from_secs(3_600);

/// The default number of seeds for CI, and how long a seed may take there.
pub const CI_SEEDS: u64 = 512;
pub const SEED_TIME_LIMIT: Duration = Duration::from_secs(30);
