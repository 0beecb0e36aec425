//! `loyalty-bench`: what each loyalty operation costs, measured. See BENCHMARKS.md for what it
//! reports and how to run it.
//!
//!   loyalty-bench --dynamodb http://127.0.0.1:PORT [--quick] [--out BENCHMARKS.md]
//!                 [--json infra/bench/results/latest.json] [--bin-dir target/release]
//!                 [--arm64-dir target/lambda] [--no-cold-start]
//!                 [--cpu-variant LABEL=DIR]... [--profile LABEL=DIR]...

mod cold;
mod cost;
mod ops;
mod outbox;
mod process;
mod profile;
mod report;
mod services;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loyalty_core::clock::SystemClock;
use loyalty_core::memory::MemoryStore;
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use loyalty_http::Function;

use ops::{invoke, Bench, Op};
use report::{ColdRow, CpuRow, FlatRow, OpRow, ProcessRow, ProfileRow, Report, Spends, VariantRow};

#[derive(Debug, Clone)]
pub struct Args {
    pub dynamodb: String,
    pub quick: bool,
    pub out: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub bin_dir: PathBuf,
    pub arm64_dir: PathBuf,
    pub cold_start: bool,
    pub command_line: String,
    /// Other builds of the functions whose process CPU is measured in the same run, in order
    /// (before/after a change): `LABEL=DIR`.
    pub cpu_variants: Vec<(String, PathBuf)>,
    /// Builds with symbols (`cargo build --profile profiling`) to profile an accrual of.
    pub profiles: Vec<(String, PathBuf)>,
    /// Overrides of the plan's process CPU window and rounds.
    pub process_seconds: Option<f64>,
    pub outbox_members: Option<usize>,
    pub process_rounds: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub samples: usize,
    pub load_seconds: f64,
    pub flat_small: u64,
    pub flat_large: u64,
    pub flat_samples: usize,
    pub cpu_iterations: usize,
    pub cold_runs: usize,
    /// Process CPU windows: seconds each, and alternating rounds over the variants.
    pub process_seconds: f64,
    pub process_rounds: usize,
    /// Members enrolled and funded on the streaming table whose stream the outbox relays.
    pub outbox_members: usize,
}

impl Plan {
    fn for_mode(quick: bool) -> Self {
        if quick {
            Plan {
                samples: 20,
                load_seconds: 0.5,
                flat_small: 10,
                flat_large: 200,
                flat_samples: 10,
                cpu_iterations: 10_000,
                cold_runs: 1,
                process_seconds: 0.5,
                process_rounds: 1,
                outbox_members: 50,
            }
        } else {
            Plan {
                samples: 200,
                load_seconds: 3.0,
                flat_small: 10,
                flat_large: 10_000,
                flat_samples: 50,
                cpu_iterations: 100_000,
                cold_runs: 5,
                process_seconds: 3.0,
                process_rounds: 3,
                outbox_members: 1_000,
            }
        }
    }
}

const USAGE: &str =
    "usage: loyalty-bench --dynamodb http://127.0.0.1:PORT [--quick] [--out FILE.md] \
[--json FILE.json] [--bin-dir DIR] [--arm64-dir DIR] [--no-cold-start]
[--cpu-variant LABEL=DIR]... [--profile LABEL=DIR]... [--process-seconds S] [--process-rounds N]
[--outbox-members N]
  --dynamodb     DynamoDB Local endpoint (default: $LOYALTY_TEST_DYNAMODB)
  --quick        small samples, flatness 10 vs 200, no cold start (CI)
  --bin-dir      where the release function binaries are (default: target/release)
  --arm64-dir    cargo-lambda output, for arm64 sizes (default: target/lambda)
  --cpu-variant  another build of accrue/redeem to measure process CPU of, in this run
  --profile      a build with symbols whose accrual is profiled with perf (when installed)
  --process-seconds, --process-rounds  process CPU window length and rounds over the variants
  --outbox-members  members whose stream the outbox relays (default: 50 quick, 1000 full)";

fn parse_args() -> Result<Args, String> {
    let raw: Vec<String> = std::env::args().collect();
    let mut args = Args {
        dynamodb: std::env::var("LOYALTY_TEST_DYNAMODB").unwrap_or_default(),
        quick: false,
        out: None,
        json: None,
        bin_dir: ops::repo_root().join("target/release"),
        arm64_dir: ops::repo_root().join("target/lambda"),
        cold_start: true,
        cpu_variants: Vec::new(),
        profiles: Vec::new(),
        process_seconds: None,
        outbox_members: None,
        process_rounds: None,
        command_line: format!(
            "cargo run --release -p loyalty_bench -- {}",
            raw[1..].join(" ")
        ),
    };
    let mut it = raw.into_iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--dynamodb" => args.dynamodb = value()?,
            "--quick" => args.quick = true,
            "--out" => args.out = Some(value()?.into()),
            "--json" => args.json = Some(value()?.into()),
            "--bin-dir" => args.bin_dir = value()?.into(),
            "--arm64-dir" => args.arm64_dir = value()?.into(),
            "--no-cold-start" => args.cold_start = false,
            "--cpu-variant" => args.cpu_variants.push(labelled(&value()?)?),
            "--profile" => args.profiles.push(labelled(&value()?)?),
            "--outbox-members" => {
                args.outbox_members = Some(value()?.parse().map_err(|_| USAGE.to_owned())?)
            }
            "--process-seconds" => {
                args.process_seconds = Some(value()?.parse().map_err(|_| USAGE.to_owned())?)
            }
            "--process-rounds" => {
                args.process_rounds = Some(value()?.parse().map_err(|_| USAGE.to_owned())?)
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    if args.dynamodb.is_empty() {
        return Err(format!(
            "no DynamoDB Local endpoint: pass --dynamodb or set LOYALTY_TEST_DYNAMODB\n{USAGE}"
        ));
    }
    if args.quick {
        args.cold_start = false;
    }
    Ok(args)
}

/// `LABEL=DIR`.
fn labelled(raw: &str) -> Result<(String, PathBuf), String> {
    raw.split_once('=')
        .map(|(label, dir)| (label.to_owned(), PathBuf::from(dir)))
        .ok_or(format!("'{raw}' is not LABEL=DIR\n{USAGE}"))
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let mut plan = Plan::for_mode(args.quick);
    plan.process_seconds = args.process_seconds.unwrap_or(plan.process_seconds);
    plan.process_rounds = args.process_rounds.unwrap_or(plan.process_rounds);
    plan.outbox_members = args.outbox_members.unwrap_or(plan.outbox_members);
    let started = Instant::now();
    say(format!(
        "{} mode against {}",
        if args.quick { "quick" } else { "full" },
        args.dynamodb
    ));
    let bench = Arc::new(Bench::new(&args.dynamodb).await);
    say(format!("table {}", bench.table));

    let mut report = Report::new(&args, plan);
    report.memory_mb = template_memory_mb();

    // Worker members, each with points to spend, so throughput is not a contention test.
    say("enrolling and funding 32 worker members + 1 hot member");
    for w in 0..32 {
        bench
            .member_with_balance(&format!("pool-{w}"), 1_000_000_000)
            .await;
    }
    bench.member_with_balance("hot", 1_000_000_000).await;

    // Sequential: per-operation units and latency on pool-0.
    for op in Op::ALL {
        if !op.built() {
            report.ops.push(OpRow {
                op,
                sequential: None,
                loads: Vec::new(),
                service_cpu: None,
            });
            continue;
        }
        let seq = if op.http() {
            ops::sequential(
                &bench,
                op,
                "pool-0",
                &format!("seq-{}", op.id()),
                plan.samples,
            )
            .await
        } else {
            // A grant call covers 24 members: a tenth as many calls still grants more members.
            let calls = if op.members_per_call() > 1 {
                (plan.samples / 10).max(2)
            } else {
                plan.samples
            };
            services::measure(&bench, op, calls).await
        };
        let service_cpu = (!op.http()).then_some(seq.cpu);
        let (rt, rru, wru) = ops::per_member(op, &seq);
        say(format!(
            "{:<18} {rt:.2} round trips, {rru:.2} RRU, {wru:.2} WRU (Local), p50 {} ms{}",
            op.name(),
            stats::ms(stats::summarize(seq.latencies.clone()).p50_us),
            if seq.unexpected > 0 {
                format!(
                    ", {} unexpected: {:?}",
                    seq.unexpected, seq.first_unexpected
                )
            } else {
                String::new()
            }
        ));
        report.ops.push(OpRow {
            op,
            sequential: Some(seq),
            loads: Vec::new(),
            service_cpu,
        });
    }

    // Throughput at concurrency 1, 8, 32 on distinct members.
    let duration = Duration::from_secs_f64(plan.load_seconds);
    for row in report
        .ops
        .iter_mut()
        .filter(|r| r.op.built() && r.op.http())
    {
        for concurrency in [1, 8, 32] {
            let load = ops::load(
                &bench,
                row.op,
                concurrency,
                duration,
                None,
                &format!("load{concurrency}-{}", row.op.id()),
            )
            .await;
            say(format!(
                "{:<18} c={concurrency:<2} {:.0} ops/s ({} unexpected)",
                row.op.name(),
                load.ops_per_sec(),
                load.unexpected
            ));
            row.loads.push(load);
        }
    }
    // One hot member, 8 workers: contention made visible.
    let hot = ops::load(&bench, Op::Accrue, 8, duration, Some("hot"), "hot").await;
    say(format!(
        "hot member accrue c=8: {:.0} ops/s, {:.2} round trips/op, {} unexpected",
        hot.ops_per_sec(),
        hot.capacity.round_trips as f64 / hot.completed.max(1) as f64,
        hot.unexpected
    ));
    report.hot = Some(hot);

    report.flat = flatness(&bench, plan).await;
    report.spends = Some(spends(&bench).await);
    report.cpu = cpu(plan.cpu_iterations).await;
    let outbox_members = plan.outbox_members;
    say(format!(
        "outbox: relaying the stream of {outbox_members} enrolled and funded members"
    ));
    report.outbox = Some(outbox::measure(&args.dynamodb, outbox_members).await);
    process_cpu(&args, &bench, plan, &mut report).await;

    if args.cold_start {
        report.cold = cold_starts(&args, &bench, plan.cold_runs).await;
    }

    report.elapsed = started.elapsed();
    let markdown = report.markdown();
    let json = report.json();
    match &args.out {
        Some(path) => {
            std::fs::write(path, &markdown).expect("write markdown");
            say(format!("wrote {}", path.display()));
        }
        None => println!("{markdown}"),
    }
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, serde_json::to_string_pretty(&json).expect("json"))
            .expect("write json");
        say(format!("wrote {}", path.display()));
    }
    say(format!("done in {:.1} s", report.elapsed.as_secs_f64()));
}

/// Process CPU per operation of the real function binaries (see `process.rs`): every HTTP
/// operation at c=1 and c=8 from `--bin-dir` (accrue and redeem only in quick mode), then
/// accrue and redeem of each `--cpu-variant` in alternating rounds, then the perf profiles.
async fn process_cpu(args: &Args, bench: &Arc<Bench>, plan: Plan, report: &mut Report) {
    let template =
        loyalty_local::template::Template::load(&ops::repo_root().join("infra/template.yaml"))
            .expect("template");
    let api = Arc::new(ops::Api::new(&template));
    let env = process::function_env(&bench.table, &args.dynamodb);
    let target = |dir: &std::path::Path| process::Target {
        bin_dir: dir.to_owned(),
        env: env.clone(),
    };
    let window = Duration::from_secs_f64(plan.process_seconds);
    let current = target(&args.bin_dir);
    for op in Op::ALL.into_iter().filter(|op| op.http()) {
        if args.quick && !matches!(op, Op::Accrue | Op::Redeem) {
            continue;
        }
        let mut row = ProcessRow {
            op,
            windows: Vec::new(),
        };
        for concurrency in [1, 8] {
            let measured = process::measure(
                &current,
                &api,
                op,
                concurrency,
                window,
                &format!("proc{concurrency}-{}", op.id()),
            )
            .await;
            match &measured {
                Ok(w) => say(format!(
                    "{:<18} process CPU c={concurrency}: {:.3} ms/op over {} invocations{}",
                    op.name(),
                    w.cpu_ms_per_op(),
                    w.completed,
                    if w.unexpected > 0 {
                        format!(", {} unexpected: {:?}", w.unexpected, w.first_unexpected)
                    } else {
                        String::new()
                    }
                )),
                Err(e) => say(format!(
                    "{:<18} process CPU c={concurrency}: {e}",
                    op.name()
                )),
            }
            row.windows.push(measured);
        }
        report.process.push(row);
    }

    let mut variants: Vec<VariantRow> = args
        .cpu_variants
        .iter()
        .map(|(label, dir)| VariantRow {
            label: label.clone(),
            dir: dir.clone(),
            rounds: Vec::new(),
            c8: Vec::new(),
        })
        .collect();
    for round in 0..plan.process_rounds {
        for (index, variant) in variants.iter_mut().enumerate() {
            let target = target(&variant.dir);
            let mut measured = Vec::new();
            for op in [Op::Accrue, Op::Redeem] {
                let w = process::measure(
                    &target,
                    &api,
                    op,
                    1,
                    window,
                    // The index, not the label: tags become order ids and keys.
                    &format!("var{round}-{index}-{}", op.id()),
                )
                .await;
                say(format!(
                    "variant {} round {round} {}: {}",
                    variant.label,
                    op.name(),
                    w.as_ref()
                        .map(|w| format!("{:.3} ms/op", w.cpu_ms_per_op()))
                        .unwrap_or_else(|e| e.clone())
                ));
                measured.push(w);
            }
            variant.rounds.push(measured);
        }
    }
    for (index, variant) in variants.iter_mut().enumerate() {
        let target = target(&variant.dir);
        for op in [Op::Accrue, Op::Redeem] {
            let w = process::measure(
                &target,
                &api,
                op,
                8,
                window,
                &format!("var8-{index}-{}", op.id()),
            )
            .await;
            variant.c8.push(w);
        }
    }
    report.variants = variants;

    let perf_installed = std::process::Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    for (label, dir) in &args.profiles {
        let row = if perf_installed {
            let out =
                std::env::temp_dir().join(format!("loyalty-bench-{}-{label}", std::process::id()));
            process::perf_profile(
                &target(dir),
                &api,
                Op::Accrue,
                window,
                &format!("prof-{label}"),
                &out,
            )
            .await
        } else {
            Err("perf is not installed".to_owned())
        };
        match &row {
            Ok((w, entries)) => say(format!(
                "profile {label}: {} symbols over {} accruals ({:.3} ms/op)",
                entries.len(),
                w.completed,
                w.cpu_ms_per_op()
            )),
            Err(e) => say(format!("profile {label}: {e}")),
        }
        report.profiles.push(ProfileRow {
            label: label.clone(),
            result: row,
        });
    }
}

/// `Globals.Function.MemorySize` from the template (what Lambda bills), 256 if not found.
fn template_memory_mb() -> u32 {
    std::fs::read_to_string(ops::repo_root().join("infra/template.yaml"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix("MemorySize:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(256)
}

/// Accrue and redeem on one member at `flat_small` and at `flat_large` prior entries. The
/// history is written through the accrue service, one request at a time, so it is a real,
/// audited ledger (gap-free, `balance_after` chained), not items forged into the table.
async fn flatness(bench: &Arc<Bench>, plan: Plan) -> Vec<FlatRow> {
    let member = "flat";
    bench.member_with_balance(member, 0).await;
    let id = loyalty_core::ids::MemberId::parse(member).expect("id");
    let mut rows = Vec::new();
    let mut seeded = 0u64;
    for target in [plan.flat_small, plan.flat_large] {
        let started = Instant::now();
        // last_seq is not in the public view; read the stored member.
        let mut last_seq = loyalty_core::ports::MemberStore::member(&bench.store, &id)
            .await
            .expect("store answers")
            .expect("member exists")
            .last_seq;
        let before_seed = last_seq;
        while last_seq < target {
            seeded += 1;
            let order = format!("seed-{seeded}");
            // Large orders, so the member can pay for the redemptions measured below.
            let key = loyalty_core::ids::IdempotencyKey::parse(&order).ok();
            bench
                .app
                .accrue(&id, key, &ops::plain_purchase(&order, 100_000), false)
                .await
                .expect("seed accrual");
            last_seq += 1;
            if last_seq % 1000 == 0 {
                say(format!(
                    "seeding: {last_seq}/{target} entries ({:.0}/s)",
                    (last_seq - before_seed) as f64 / started.elapsed().as_secs_f64()
                ));
            }
        }
        let accrue = ops::sequential(
            bench,
            Op::Accrue,
            member,
            &format!("flat{target}"),
            plan.flat_samples,
        )
        .await;
        let redeem = ops::sequential(
            bench,
            Op::Redeem,
            member,
            &format!("flat{target}"),
            plan.flat_samples,
        )
        .await;
        let (art, arru, awru) = ops::per_op(accrue.capacity, accrue.latencies.len());
        let (rrt, rrru, rwru) = ops::per_op(redeem.capacity, redeem.latencies.len());
        say(format!(
            "flatness at {target} entries: accrue {art:.1} RT {arru:.1} RRU {awru:.1} WRU; redeem {rrt:.1} RT {rrru:.1} RRU {rwru:.1} WRU"
        ));
        rows.push(FlatRow {
            history: target,
            accrue,
            redeem,
        });
    }
    // The ledger is still an audited chain after all of that.
    let entries = audit(bench, &id).await;
    say(format!(
        "flat member ledger audited: {entries} entries, gap-free"
    ));
    rows
}

/// The ledger's length after checking it is a gap-free `balance_after` chain.
async fn audit(bench: &Bench, id: &loyalty_core::ids::MemberId) -> usize {
    bench
        .app
        .audited_ledger(id)
        .await
        .unwrap_or_else(|broken| panic!("{broken}"))
        .len()
}

/// 50 concurrent redemptions of a 150-point reward on a balance of exactly 1,500 points.
async fn spends(bench: &Arc<Bench>) -> Spends {
    let member = "spender";
    // 100 welcome + 1,400 from a $1,400.00 order = 1,500 = 10 × free-coffee (150).
    bench.member_with_balance(member, 140_000).await;
    let id = loyalty_core::ids::MemberId::parse(member).expect("id");
    let opening = bench.app.member_view(&id).await.expect("member");
    let opening_balance = serde_json::to_value(&opening).expect("view")["balance"]["available"]
        .as_i64()
        .unwrap_or(-1);
    let before = bench.meter();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let bench = Arc::clone(bench);
        tasks.push(tokio::spawn(async move {
            let (function, event) = Op::Redeem
                .event(&bench.api, member, &format!("spend-{i}"))
                .expect("redeem");
            let (status, body, _) = invoke(&bench.app, function, &event).await;
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }));
    }
    let mut out = Spends {
        attempts: 50,
        opening_balance,
        ..Spends::default()
    };
    for task in tasks {
        let (status, code) = task.await.expect("spend");
        match (status, code.as_str()) {
            (201, _) => out.succeeded += 1,
            (409, "insufficient_points") => out.insufficient += 1,
            (_, code) => out.other.push(format!("{status} {code}")),
        }
    }
    out.elapsed = started.elapsed();
    out.capacity = bench.meter() - before;
    let closing = bench.app.member_view(&id).await.expect("member");
    out.closing_balance = serde_json::to_value(&closing).expect("view")["balance"]["available"]
        .as_i64()
        .unwrap_or(-1);
    out.ledger_entries = audit(bench, &id).await;
    say(format!(
        "50 concurrent spends on {} points: {} succeeded, {} insufficient_points, other {:?}; closing balance {}",
        out.opening_balance, out.succeeded, out.insufficient, out.other, out.closing_balance
    ));
    out
}

/// Warm handler CPU with no I/O: the accrue route through `loyalty_http::handle` on the in-memory
/// store, and the accrue service alone, one call at a time.
async fn cpu(iterations: usize) -> Vec<CpuRow> {
    let config = AppConfig {
        program_cache_ttl: Duration::from_secs(24 * 3600),
        ..AppConfig::default()
    };
    let app = App::new(MemoryStore::new(), Arc::new(SystemClock), config);
    app.program().await.expect("program");
    let template =
        loyalty_local::template::Template::load(&ops::repo_root().join("infra/template.yaml"))
            .expect("template");
    let api = ops::Api::new(&template);
    // A member per 1,000 calls keeps each member's in-memory ledger small.
    let members = iterations.div_ceil(1000).max(1);
    for m in 0..members {
        let id = loyalty_core::ids::MemberId::parse(&format!("cpu-{m}")).expect("id");
        app.enrol(loyalty_core::commands::EnrolRequest {
            member_id: Some(id),
            email: None,
            name: None,
            referral_code: None,
        })
        .await
        .expect("enrol");
    }
    let mut rows = Vec::new();

    // Events are built before timing: Lambda hands the function the event text.
    let warmup = iterations / 10;
    let events: Vec<(Function, String)> = (0..iterations + warmup)
        .map(|i| {
            Op::Accrue
                .event(&api, &format!("cpu-{}", i % members), &format!("h{i}"))
                .expect("accrue")
        })
        .collect();
    let mut latencies = Vec::with_capacity(iterations);
    for (i, (function, event)) in events.iter().enumerate() {
        let (status, _, elapsed) = invoke(&app, *function, event).await;
        assert_eq!(status, 201, "in-memory accrue");
        if i >= warmup {
            latencies.push(elapsed);
        }
    }
    let summary = stats::summarize(latencies);
    say(format!(
        "in-memory accrue through the handler: p50 {:.1} µs, p99 {:.1} µs",
        summary.p50_us, summary.p99_us
    ));
    rows.push(CpuRow {
        name: "accrue through loyalty_http::handle (event text → response), MemoryStore",
        summary,
    });

    let mut latencies = Vec::with_capacity(iterations);
    for i in 0..iterations + warmup {
        let id = loyalty_core::ids::MemberId::parse(&format!("cpu-{}", i % members)).expect("id");
        let order = format!("s{i}");
        let body = ops::purchase(&order, 5_250);
        let key = loyalty_core::ids::IdempotencyKey::parse(&order).ok();
        let started = Instant::now();
        app.accrue(&id, key, &body, false).await.expect("accrue");
        if i >= warmup {
            latencies.push(started.elapsed());
        }
    }
    let summary = stats::summarize(latencies);
    say(format!(
        "in-memory accrue service only: p50 {:.1} µs, p99 {:.1} µs",
        summary.p50_us, summary.p99_us
    ));
    rows.push(CpuRow {
        name: "App::accrue alone (parsed body in, receipt out), MemoryStore",
        summary,
    });
    rows
}

async fn cold_starts(args: &Args, bench: &Arc<Bench>, runs: usize) -> Vec<ColdRow> {
    bench.member_with_balance("cold", 1_000_000_000).await;
    let env = process::function_env(&bench.table, &args.dynamodb);
    let mut rows = Vec::new();
    // The HTTP functions and the route each is started with (GET or POST, per the brief).
    type ColdTarget<'a> = (&'a str, &'a str, Option<(Function, String)>);
    let functions: [ColdTarget; 4] = [
        (
            "members",
            "GET /v1/members/{member_id}",
            Op::GetMember.event(&bench.api, "cold", "x"),
        ),
        ("accrue", "POST /v1/members/{member_id}/accruals", None),
        ("redeem", "POST /v1/members/{member_id}/redemptions", None),
        (
            "rewards",
            "GET /v1/rewards",
            Some(bench.api.event("GET", "/v1/rewards", "", &[], None)),
        ),
    ];
    for (name, route, fixed_event) in functions {
        let binary = args.bin_dir.join(name);
        let arm64 = args.arm64_dir.join(name).join("bootstrap");
        let mut row = ColdRow {
            function: name,
            size_native: std::fs::metadata(&binary).map(|m| m.len()).ok(),
            size_arm64: std::fs::metadata(&arm64).map(|m| m.len()).ok(),
            route: String::new(),
            runs: Vec::new(),
            error: None,
        };
        if row.size_native.is_none() {
            row.error = Some(format!(
                "{} not built (cargo build --release -p {name})",
                binary.display()
            ));
            rows.push(row);
            continue;
        }
        for i in 0..runs {
            // Writes get a fresh Idempotency-Key per run, so each run does the real work.
            let event = match name {
                "accrue" => Op::Accrue.event(&bench.api, "cold", &format!("cold{i}")),
                "redeem" => Op::Redeem.event(&bench.api, "cold", &format!("cold{i}")),
                _ => fixed_event.clone(),
            }
            .map(|(_, event)| event)
            .expect("an event for every function");
            row.route = route.to_owned();
            match cold::run_once(&binary, &env, event).await {
                Ok(run) => row.runs.push(run),
                Err(error) => {
                    row.error = Some(error);
                    break;
                }
            }
        }
        if let Some(run) = row.median() {
            say(format!(
                "cold start {name}: ready {:.1} ms, first invocation {:.1} ms, peak RSS {} KiB",
                run.0, run.1, run.2
            ));
        } else {
            say(format!("cold start {name}: {:?}", row.error));
        }
        rows.push(row);
    }
    rows
}
