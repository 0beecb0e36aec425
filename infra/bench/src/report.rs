//! BENCHMARKS.md and the JSON results, from one run's measurements. The prose that explains the
//! figures lives here too, so a re-run regenerates a consistent document.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cold::ColdRun;
use crate::cost::{billed_ms, per_million, Cost, Usage, PRICES};
use crate::ops::{self, Load, Op, Sequential};
use crate::process::Window;
use crate::stats::{ms, round1, round3, summarize, Summary};
use crate::{Args, Plan};

/// The simulator section (`make simulate`), appended to every BENCHMARKS.md.
const SIMULATOR: &str = include_str!("../simulator.md");

pub struct OpRow {
    pub op: Op,
    pub sequential: Option<Sequential>,
    pub loads: Vec<Load>,
    /// Queue workers (called as services in the bench process): the bench process's CPU over
    /// the sequential calls.
    pub service_cpu: Option<std::time::Duration>,
}

/// Process CPU of an HTTP operation's function binary at c=1 and c=8.
pub struct ProcessRow {
    pub op: Op,
    pub windows: Vec<Result<Window, String>>,
}

/// Another build of accrue and redeem, measured in the same run: c=1 per round, and c=8 once.
pub struct VariantRow {
    pub label: String,
    pub dir: std::path::PathBuf,
    /// Per round: [accrue, redeem] at c=1.
    pub rounds: Vec<Vec<Result<Window, String>>>,
    /// [accrue, redeem] at c=8.
    pub c8: Vec<Result<Window, String>>,
}

/// A perf profile of an accrual (c=1) of one build: the window and `(dso + symbol, share %)`.
pub struct ProfileRow {
    pub label: String,
    pub result: Result<(Window, Vec<(String, f64)>), String>,
}

pub struct FlatRow {
    pub history: u64,
    pub accrue: Sequential,
    pub redeem: Sequential,
}

#[derive(Debug, Default)]
pub struct Spends {
    pub attempts: usize,
    pub opening_balance: i64,
    pub succeeded: usize,
    pub insufficient: usize,
    pub other: Vec<String>,
    pub closing_balance: i64,
    pub ledger_entries: usize,
    pub elapsed: Duration,
    pub capacity: loyalty_dynamo::Capacity,
}

pub struct CpuRow {
    pub name: &'static str,
    pub summary: Summary,
}

pub struct ColdRow {
    pub function: &'static str,
    pub route: String,
    pub size_native: Option<u64>,
    pub size_arm64: Option<u64>,
    pub runs: Vec<ColdRun>,
    pub error: Option<String>,
}

impl ColdRow {
    /// Medians of (ready ms, first invocation ms, peak RSS KiB).
    pub fn median(&self) -> Option<(f64, f64, u64)> {
        if self.runs.is_empty() {
            return None;
        }
        let med = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ready = med(self
            .runs
            .iter()
            .map(|r| r.ready.as_secs_f64() * 1e3)
            .collect());
        let first = med(self
            .runs
            .iter()
            .map(|r| r.first_invocation.as_secs_f64() * 1e3)
            .collect());
        let rss = med(self.runs.iter().map(|r| r.peak_rss_kib as f64).collect()) as u64;
        Some((ready, first, rss))
    }
}

pub struct Report {
    pub command_line: String,
    pub quick: bool,
    pub plan: Plan,
    pub memory_mb: u32,
    pub date: String,
    pub ops: Vec<OpRow>,
    pub hot: Option<Load>,
    pub flat: Vec<FlatRow>,
    pub spends: Option<Spends>,
    pub cpu: Vec<CpuRow>,
    pub cold: Vec<ColdRow>,
    pub process: Vec<ProcessRow>,
    pub variants: Vec<VariantRow>,
    pub profiles: Vec<ProfileRow>,
    pub elapsed: Duration,
    /// `/proc/loadavg` when the run started: the machine may be shared.
    pub load_at_start: String,
}

/// The criterion benches in `functions/core/benches/core.rs`, by their ids.
const CRITERION: [(&str, &str); 6] = [
    (
        "earning/evaluate_purchase_20_items",
        "earning rules: `evaluate_purchase`, 20-item order",
    ),
    (
        "earning/evaluate_action",
        "earning rules: `evaluate_action` (capped action)",
    ),
    (
        "tiers/evaluate_member_400_days",
        "tier evaluation: `tiers::evaluate`, 400 days of qualifying activity",
    ),
    (
        "parse/accrual_request_json",
        "request parsing: JSON text → `AccrualRequest` (20 items)",
    ),
    (
        "parse/program_document",
        "`ProgramDocument::parse` of infra/program.default.json (parse + validate)",
    ),
    (
        "accrue/memory_store",
        "whole `App::accrue` path on `MemoryStore` (no I/O)",
    ),
];

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores ({model}), {:.0} GiB RAM, Linux {} {}, {rustc}, bench built {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        std::env::consts::ARCH,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    )
}

fn criterion_estimate(id: &str) -> Option<(f64, f64, f64)> {
    let path = ops::repo_root()
        .join("target/criterion")
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let mean = &v["mean"];
    Some((
        mean["point_estimate"].as_f64()?,
        mean["confidence_interval"]["lower_bound"].as_f64()?,
        mean["confidence_interval"]["upper_bound"].as_f64()?,
    ))
}

fn ns(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} ms", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} µs", x / 1e3)
    } else {
        format!("{x:.0} ns")
    }
}

fn size(bytes: Option<u64>) -> String {
    bytes.map_or("—".into(), |b| {
        format!("{:.2} MiB", b as f64 / 1024.0 / 1024.0)
    })
}

fn dollars(x: f64) -> String {
    if x < 0.01 {
        format!("{x:.4}")
    } else {
        format!("{x:.3}")
    }
}

impl Report {
    pub fn new(args: &Args, plan: Plan) -> Self {
        Self {
            command_line: args.command_line.clone(),
            quick: args.quick,
            plan,
            memory_mb: 256,
            date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
            ops: Vec::new(),
            hot: None,
            flat: Vec::new(),
            spends: None,
            cpu: Vec::new(),
            cold: Vec::new(),
            process: Vec::new(),
            variants: Vec::new(),
            profiles: Vec::new(),
            elapsed: Duration::ZERO,
            load_at_start: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        }
    }

    /// Dollars per million of `op` (per member for queue workers). HTTP operations: one Lambda
    /// invocation and one HTTP API request each, duration = p50 rounded up to the ms. Queue
    /// workers: the invocation and the message's SQS requests are shared by the members of one
    /// message; the duration is the member's share of the measured call (an invocation handles
    /// many members and is rounded up once), except one-member messages (referrals), rounded up.
    fn cost(&self, seq: &Sequential, op: Op) -> Cost {
        let (_, rru, wru) = ops::per_member(op, seq);
        let summary = summarize(seq.latencies.clone());
        let shared = op.members_per_message() > 1;
        per_million(
            Usage {
                billed_ms: if shared {
                    summary.p50_us / 1000.0 / op.members_per_call() as f64
                } else {
                    billed_ms(summary.p50_us)
                },
                rru,
                wru_billed: ops::billed_wru_for(op, wru),
                lambda_requests: 1.0 / op.members_per_message() as f64,
                http_requests: if op.http() { 1.0 } else { 0.0 },
                sqs_requests: op.sqs_requests(),
            },
            self.memory_mb,
        )
    }

    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let w = &mut m;
        let p = &self.plan;
        let _ = writeln!(w, "# Benchmarks: what each operation costs, measured\n");
        let _ = writeln!(
            w,
            "Generated by `loyalty-bench` (`infra/bench`) on {} in {:.0} s{}. Reproduce with \
             `make bench` (builds the release binaries, runs the criterion benches, starts DynamoDB \
             Local and runs the command below). Everything here is **reported, never asserted**.\n",
            self.date,
            self.elapsed.as_secs_f64(),
            if self.quick { " — **quick mode** (small samples)" } else { "" }
        );
        let criterion_args = std::env::var("CRITERION_ARGS").unwrap_or_default();
        if let Ok(via) = std::env::var("BENCH_VIA") {
            let _ = writeln!(
                w,
                "This run: `{}{}{via}` (what `make bench` runs: release build, criterion, DynamoDB Local on a \
                 loopback port, then the command below).\n",
                std::env::var("DYNAMODB_PORT")
                    .map(|p| format!("DYNAMODB_PORT={p} "))
                    .unwrap_or_default(),
                if criterion_args.is_empty() {
                    String::new()
                } else {
                    format!("CRITERION_ARGS=\"{criterion_args}\" ")
                },
            );
        }
        let _ = writeln!(w, "```sh\n{}\n```\n", self.command_line);
        let _ = writeln!(
            w,
            "- Machine: {}; load average (1/5/15 min) when the run started: {} — the cores were \
             shared with other work, so latencies and throughput are pessimistic and noisy.",
            machine(),
            self.load_at_start
        );
        let _ = writeln!(
            w,
            "- **DynamoDB Local is not DynamoDB.** Request units and round trips are what DynamoDB Local \
             reports through `ReturnConsumedCapacity` (`DynamoStore::meter()`). It follows DynamoDB's \
             accounting except for transactions: it counts a transactional write at 1 WRU per KB where AWS \
             bills 2, so the tables add a **WRU billed on AWS** column and the cost model uses it (see \
             \"Why an accrual costs what it costs\"). Latencies and \
             throughput are of a JVM on the same 2 cores as the benchmark, over loopback, and say nothing \
             about DynamoDB's own latency (typically single-digit ms per call in-region). Use them to compare \
             operations and runs, not as production figures."
        );
        let _ = writeln!(
            w,
            "- Latency is measured through the handler: the API Gateway v2 event text for the route in \
             `infra/template.yaml` → `lambda_http` request → `loyalty_http::handle` → response, with the \
             DynamoDB adapter (SDK client, one shared \"execution environment\"). The program document is \
             cached for the run (in production it is re-read every 30 s: one extra 0.5–1 RRU GetItem per \
             environment per 30 s, not per request)."
        );
        let _ = writeln!(
            w,
            "- Samples: {} sequential calls per operation (units are per call, averaged; p50/p99 nearest-rank); \
             throughput runs {:.1} s per level with each worker on its own member.\n",
            p.samples, p.load_seconds
        );

        // Per-operation table.
        let _ = writeln!(w, "## Per operation\n");
        let _ = writeln!(
            w,
            "| operation | function | round trips | RRU | WRU (DynamoDB Local) | WRU billed on AWS | p50 ms | p99 ms | process CPU ms/op c=1 | process CPU ms/op c=8 | ops/s c=1 | ops/s c=8 | ops/s c=32 | $ / million |"
        );
        let _ = writeln!(
            w,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &self.ops {
            let Some(seq) = &row.sequential else {
                let _ = writeln!(
                    w,
                    "| {} | — | not yet built | | | | | | | | | | | |",
                    row.op.name()
                );
                continue;
            };
            let (rt, rru, wru) = ops::per_member(row.op, seq);
            let s = summarize(seq.latencies.clone());
            let function = if row.op.http() {
                row.op.binary().to_owned()
            } else {
                format!("{} (service call)", row.op.binary())
            };
            let mut tput: Vec<String> = row
                .loads
                .iter()
                .map(|l| {
                    let mut t = format!("{:.0}", l.ops_per_sec());
                    if l.unexpected > 0 {
                        t.push_str(&format!(" ({} failed)", l.unexpected));
                    }
                    t
                })
                .collect();
            tput.resize(3, "—".to_owned());
            let per_call = row.op.members_per_call();
            let latency_note = if per_call > 1 {
                format!(" (per {per_call}-member message)")
            } else {
                String::new()
            };
            let _ = writeln!(
                w,
                "| {} | {} | {}{} | {} | {} | **{}** | {}{latency_note} | {}{latency_note} | {} | {} | ${} |",
                row.op.name(),
                function,
                fmt_units(rt),
                if seq.constant { "" } else { " (varied)" },
                fmt_units(rru),
                fmt_units(wru),
                fmt_units(ops::billed_wru_for(row.op, wru)),
                ms(s.p50_us),
                ms(s.p99_us),
                self.process_cpu_cells(row),
                tput.join(" | "),
                dollars(self.cost(seq, row.op).total()),
            );
            if seq.unexpected > 0 {
                let _ =
                    writeln!(
                    w,
                    "|  ↳ {} of {} calls answered unexpectedly, first: `{}` | | | | | | | | | | | | | |",
                    seq.unexpected,
                    seq.latencies.len(),
                    seq.first_unexpected.clone().unwrap_or_default().replace('|', "\\|")
                );
            }
        }
        if let Some(hot) = &self.hot {
            let s = summarize(hot.latencies.clone());
            let (rt, rru, wru) = ops::per_op(hot.capacity, hot.completed);
            let _ = writeln!(
                w,
                "\n**Contention (one hot member, accrue, concurrency 8):** {:.0} ops/s, p50 {} ms, p99 {} ms, \
                 {:.2} round trips / {:.2} RRU / {:.2} WRU per accrual (vs 2 / 1 / 4 uncontended, as DynamoDB Local counts: the surplus \
                 is lost races re-read and retried with jittered backoff), {} of {} failed. Every write to one \
                 member is serialised by the member item's `version` condition, by design: this is the price \
                 of an exact `balance_after` and of never overdrawing.\n",
                hot.ops_per_sec(),
                ms(s.p50_us),
                ms(s.p99_us),
                rt,
                rru,
                wru,
                hot.unexpected,
                hot.completed
            );
        }
        let _ = writeln!(w, "{WORKERS}");

        // Cost model.
        let _ = writeln!(
            w,
            "## Cost model (dollars per million operations, {})\n",
            PRICES.region
        );
        let _ = writeln!(
            w,
            "Prices as of {}:\n\n\
             - Lambda arm64: ${} per GB-second, ${:.2} per million requests; billed in 1 ms steps; memory \
             {} MB (`Globals.Function.MemorySize` in infra/template.yaml).\n\
             - API Gateway HTTP API: ${:.2} per million requests (first 300 million a month).\n\
             - DynamoDB on-demand (after the November 2024 price cut): ${} per million write request units, \
             ${} per million read request units. **Priced on the WRU billed on AWS**, i.e. twice what \
             DynamoDB Local reports: every write this engine makes is a `TransactWriteItems`, which AWS bills \
             at 2 WRU per item-KB and DynamoDB Local counts at 1. Reads are priced as measured (no \
             `TransactGetItems` is used).\n\
             - SQS standard: ${:.2} per million requests. HTTP operations send none. A queue worker's message is \
             sent, received and deleted (3 requests), shared by the members it carries: 50 per tier-review \
             message, 24 per measured campaign grant message (the dispatcher packs up to 100), 25 per billing \
             message, 1 per referral. The Lambda invocation is shared the same way (conservatively one \
             message per invocation, though the event source mappings deliver batches of 5–10); queue \
             workers have no HTTP API charge. The payment provider's fee and call (billing) and the outbound \
             events (EventBridge/SQS) are not priced.\n\
             - Free tiers, data transfer, CloudWatch Logs (one JSON log line per request) and storage \
             ($0.25/GB-month; a ledger entry + its guard + its idempotency record are ≈1.5 KB) are left out.\n\n\
             Duration is the measured warm p50 through the handler against DynamoDB Local, rounded up to the \
             next ms. On AWS the DynamoDB round trips dominate the duration (figure ~5–10 ms per \
             accrual on 2 round trips); at 256 MB each billed ms costs ${:.4} per million, so the Lambda \
             compute column moves by cents, while DynamoDB units and the two per-request charges are \
             exact and do not depend on where the benchmark ran.\n",
            PRICES.as_of,
            PRICES.lambda_arm64_gb_second,
            PRICES.lambda_per_million_requests,
            self.memory_mb,
            PRICES.http_api_per_million,
            PRICES.dynamodb_per_million_wru,
            PRICES.dynamodb_per_million_rru,
            PRICES.sqs_per_million,
            f64::from(self.memory_mb) / 1024.0 * PRICES.lambda_arm64_gb_second / 1000.0 * 1e6,
        );
        let _ = writeln!(
            w,
            "| operation | billed ms | Lambda compute | Lambda requests | HTTP API | DynamoDB (billed WRU) | SQS | total $ / million |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in &self.ops {
            let Some(seq) = &row.sequential else {
                let _ = writeln!(w, "| {} | not measured | | | | | | |", row.op.name());
                continue;
            };
            let c = self.cost(seq, row.op);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | **{}** |",
                row.op.name(),
                fmt_units(c.billed_ms),
                dollars(c.lambda_compute),
                dollars(c.lambda_requests),
                dollars(c.http_api),
                dollars(c.dynamodb),
                dollars(c.sqs),
                dollars(c.total())
            );
        }
        let _ = writeln!(w);

        // Flatness.
        let _ = writeln!(w, "## Flatness: cost against the member's history\n");
        let _ = writeln!(
            w,
            "One member, history written through the accrue service one request at a time (a real, audited \
             ledger: after the run the whole ledger is walked through the paging API and checked gap-free with \
             `balance_after` chained). Then {} accruals and {} redemptions are measured through the handler at \
             each history length.\n",
            p.flat_samples, p.flat_samples
        );
        let _ = writeln!(
            w,
            "| prior entries | accrue RT | accrue RRU | accrue WRU (Local → billed) | accrue p50 ms | accrue p99 ms | redeem RT | redeem RRU | redeem WRU (Local → billed) | redeem p50 ms | redeem p99 ms |"
        );
        let _ = writeln!(
            w,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &self.flat {
            let (art, arru, awru) = ops::per_op(row.accrue.capacity, row.accrue.latencies.len());
            let (rrt, rrru, rwru) = ops::per_op(row.redeem.capacity, row.redeem.latencies.len());
            let a = summarize(row.accrue.latencies.clone());
            let r = summarize(row.redeem.latencies.clone());
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.history,
                fmt_units(art),
                fmt_units(arru),
                both(awru),
                ms(a.p50_us),
                ms(a.p99_us),
                fmt_units(rrt),
                fmt_units(rrru),
                both(rwru),
                ms(r.p50_us),
                ms(r.p99_us)
            );
        }
        let _ = writeln!(w);

        // Side by side.
        let (first, last) = (self.flat.first(), self.flat.last());
        let accrue_wru = |row: Option<&FlatRow>| {
            row.map_or("—".to_owned(), |r| {
                let wru = ops::per_op(r.accrue.capacity, r.accrue.latencies.len()).2;
                format!(
                    "{} as DynamoDB Local counts it ({} billed on AWS)",
                    fmt_units(wru),
                    fmt_units(ops::billed_wru(wru))
                )
            })
        };
        let accrue_rt = first.map_or("—".to_owned(), |r| {
            fmt_units(ops::per_op(r.accrue.capacity, r.accrue.latencies.len()).0)
        });
        let _ = writeln!(
            w,
            "## Side by side with the widely copied sample (issue 8)\n"
        );
        let _ = writeln!(
            w,
            "The sample keeps a member's order ids inside the account item and rewrites the whole item on \
             every accrual; its figures below are the ones measured on DynamoDB Local and quoted in issue 8.\n"
        );
        let _ = writeln!(w, "| figure | sample design | this engine (measured) |");
        let _ = writeln!(w, "|---|---|---|");
        let _ = writeln!(
            w,
            "| WRU per accrual at {} prior entries | 1 (a plain PutItem: billed the same on AWS) | {} |",
            first.map_or(10, |r| r.history),
            accrue_wru(first)
        );
        let _ = writeln!(
            w,
            "| WRU per accrual at {} prior entries | 381 (at 10,000; PutItem, billed the same on AWS) | {} |",
            last.map_or(0, |r| r.history),
            accrue_wru(last)
        );
        let _ = writeln!(
            w,
            "| history limit | stops accruing at ≈10,500 orders (400 KB item limit) | none: the member item holds counters only; each entry is its own ≤1 KB item{} |",
            last.map_or(String::new(), |r| format!(
                " (this run accrued past {} entries at the same cost)",
                r.history
            ))
        );
        let _ = writeln!(
            w,
            "| DynamoDB round trips per accrual | 2 | {accrue_rt} (one BatchGetItem + one TransactWriteItems; see below) |"
        );
        if let Some(s) = &self.spends {
            let _ = writeln!(
                w,
                "| 50 concurrent spends on a balance covering 10 | 6–10 go through | {} went through, {} refused `insufficient_points`{}; balance {} → {}; ledger {} entries, audited |",
                s.succeeded,
                s.insufficient,
                if s.other.is_empty() {
                    String::new()
                } else {
                    format!(", other: {}", s.other.join(", "))
                },
                s.opening_balance,
                s.closing_balance,
                s.ledger_entries
            );
        }
        let _ = writeln!(w);
        let _ = writeln!(w, "{EXPLANATION}");

        // CPU.
        let _ = writeln!(w, "## Handler CPU, excluding I/O\n");
        let _ = writeln!(
            w,
            "Warm, one call at a time, {} timed iterations after {} warm-up, on `loyalty_core::memory::MemoryStore` \
             (in-memory: no network, so this is the handler's own CPU). The tracing subscriber is not installed \
             here; on Lambda each request also writes one JSON log line.\n",
            p.cpu_iterations,
            p.cpu_iterations / 10
        );
        let _ = writeln!(w, "| path | p50 µs | p99 µs | mean µs | max µs |");
        let _ = writeln!(w, "|---|---:|---:|---:|---:|");
        for row in &self.cpu {
            let s = row.summary;
            let _ = writeln!(
                w,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                row.name, s.p50_us, s.p99_us, s.mean_us, s.max_us
            );
        }
        let _ = writeln!(
            w,
            "\nCriterion (`cargo bench -p loyalty_core --bench core{}`, `functions/core/benches/core.rs`{}), mean with \
             95% confidence interval (criterion reports means, not percentiles; the p99 above is the tail figure):\n",
            if criterion_args.is_empty() {
                String::new()
            } else {
                format!(" -- {criterion_args}")
            },
            if criterion_args.is_empty() {
                ""
            } else {
                "; shortened warm-up and measurement because the machine was shared"
            }
        );
        let _ = writeln!(w, "| benchmark | mean | 95% CI |");
        let _ = writeln!(w, "|---|---:|---:|");
        for (id, what) in CRITERION {
            match criterion_estimate(id) {
                Some((mean, lo, hi)) => {
                    let _ = writeln!(
                        w,
                        "| {what} (`{id}`) | {} | {} – {} |",
                        ns(mean),
                        ns(lo),
                        ns(hi)
                    );
                }
                None => {
                    let _ = writeln!(
                        w,
                        "| {what} (`{id}`) | not run (no target/criterion results) | |"
                    );
                }
            }
        }
        let _ = writeln!(w);

        self.process_section(w);
        self.profile_section(w);

        // Cold start.
        let _ = writeln!(w, "## Cold start\n");
        if self.cold.is_empty() {
            let _ = writeln!(
                w,
                "Not measured in this run (quick mode or `--no-cold-start`).\n"
            );
        } else {
            let _ = writeln!(
                w,
                "Release binaries (opt-level s, thin LTO, stripped) from `target/release`, **native {}** (not the arm64 \
                 artefact Lambda runs; arm64 sizes from `cargo lambda build --release --arm64` are shown when \
                 `target/lambda/<fn>/bootstrap` exists). Each binary is started with `AWS_LAMBDA_RUNTIME_API` \
                 pointing at a Runtime API the bench serves on loopback: *ready* = process spawn → its first \
                 `GET …/invocation/next`; *first invocation* = event handed out → `POST …/response` (includes \
                 building the SDK client's first connection, reading the program from DynamoDB Local and the \
                 operation itself); peak RSS = `VmHWM` read before the process is killed. Median of {} runs. \
                 Lambda's own sandbox/INIT overhead (and downloading the code) is not included.\n",
                std::env::consts::ARCH,
                p.cold_runs
            );
            let _ = writeln!(
                w,
                "| function | event | binary (native, stripped) | binary (arm64) | ready ms | first invocation ms | peak RSS MiB |"
            );
            let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|");
            for row in &self.cold {
                match row.median() {
                    Some((ready, first, rss)) => {
                        let _ = writeln!(
                            w,
                            "| {} | `{}` | {} | {} | {:.1} | {:.1} | {:.1} |",
                            row.function,
                            row.route,
                            size(row.size_native),
                            size(row.size_arm64),
                            ready,
                            first,
                            rss as f64 / 1024.0
                        );
                    }
                    None => {
                        let _ = writeln!(
                            w,
                            "| {} | {} | {} | {} | failed: {} | | |",
                            row.function,
                            row.route,
                            size(row.size_native),
                            size(row.size_arm64),
                            row.error.clone().unwrap_or_default().replace('|', "\\|")
                        );
                    }
                }
            }
            let _ = writeln!(w);
        }

        // Targets.
        let _ = writeln!(w, "## Against the targets in issue 8\n");
        let _ = writeln!(w, "| target | measured | |");
        let _ = writeln!(w, "|---|---|---|");
        let accrue_seq = self
            .ops
            .iter()
            .find(|r| r.op == Op::Accrue)
            .and_then(|r| r.sequential.as_ref());
        let redeem_seq = self
            .ops
            .iter()
            .find(|r| r.op == Op::Redeem)
            .and_then(|r| r.sequential.as_ref());
        let rt = |s: Option<&Sequential>| {
            s.map_or(0.0, |s| ops::per_op(s.capacity, s.latencies.len()).0)
        };
        let _ = writeln!(
            w,
            "| 1 DynamoDB round trip per accrue and per redeem | accrue {}, redeem {} | **not met**: 2 (read, then transaction); see \"Why 2 round trips\" |",
            fmt_units(rt(accrue_seq)),
            fmt_units(rt(redeem_seq))
        );
        let flat_ok = self.flat.len() == 2 && {
            let a = ops::per_op(
                self.flat[0].accrue.capacity,
                self.flat[0].accrue.latencies.len(),
            );
            let b = ops::per_op(
                self.flat[1].accrue.capacity,
                self.flat[1].accrue.latencies.len(),
            );
            let c = ops::per_op(
                self.flat[0].redeem.capacity,
                self.flat[0].redeem.latencies.len(),
            );
            let d = ops::per_op(
                self.flat[1].redeem.capacity,
                self.flat[1].redeem.latencies.len(),
            );
            a == b && c == d
        };
        let _ = writeln!(
            w,
            "| request units flat from the 1st to the 10,000th entry | {} | {} |",
            self.flat
                .iter()
                .map(|r| format!(
                    "{} entries: accrue {} WRU, redeem {} WRU (Local → billed)",
                    r.history,
                    both(ops::per_op(r.accrue.capacity, r.accrue.latencies.len()).2),
                    both(ops::per_op(r.redeem.capacity, r.redeem.latencies.len()).2)
                ))
                .collect::<Vec<_>>()
                .join("; "),
            if flat_ok {
                "met (identical)"
            } else {
                "see flatness table"
            }
        );
        if let Some(cpu) = self.cpu.first() {
            let _ = writeln!(
                w,
                "| warm handler CPU p99 ≤ 1 ms | {:.0} µs (accrue through the handler, in-memory) | {} |",
                cpu.summary.p99_us,
                if cpu.summary.p99_us <= 1000.0 { "met" } else { "not met" }
            );
        }
        let readies: Vec<(f64, &str)> = self
            .cold
            .iter()
            .filter_map(|r| r.median().map(|m| (m.0, r.function)))
            .collect();
        if !readies.is_empty() {
            let worst = readies.iter().map(|r| r.0).fold(0.0, f64::max);
            let _ = writeln!(
                w,
                "| cold start to ready ≤ 30 ms | worst median {worst:.1} ms (native) | {} |",
                if worst <= 30.0 {
                    "met (locally; Lambda adds its own INIT)"
                } else {
                    "not met"
                }
            );
        }
        let sizes: Vec<u64> = self
            .cold
            .iter()
            .filter_map(|r| r.size_arm64.or(r.size_native))
            .collect();
        if let Some(max) = sizes.iter().max() {
            let _ = writeln!(
                w,
                "| each binary ≤ 8 MB stripped | largest {} ({}) | {} |",
                size(Some(*max)),
                if self.cold.iter().any(|r| r.size_arm64.is_some()) {
                    "arm64"
                } else {
                    "native"
                },
                if *max <= 8 * 1000 * 1000 {
                    "met"
                } else {
                    "not met"
                }
            );
        }
        let _ = writeln!(w);
        // The simulator's figures come from `make simulate`, not from this run; kept in
        // infra/bench/simulator.md so a benchmark run does not drop them.
        m.push_str(SIMULATOR);
        m
    }

    pub fn json(&self) -> Value {
        let ops: Vec<Value> = self
            .ops
            .iter()
            .map(|row| match &row.sequential {
                None => json!({ "operation": row.op.id(), "name": row.op.name(), "built": false }),
                Some(seq) => {
                    let (rt, rru, wru) = ops::per_member(row.op, seq);
                    let c = self.cost(seq, row.op);
                    json!({
                        "operation": row.op.id(),
                        "name": row.op.name(),
                        "built": true,
                        "function": row.op.binary(),
                        "measured_through": if row.op.http() { "handler (API Gateway v2 event → loyalty_http::handle)" } else { "App service call" },
                        "members_per_call": row.op.members_per_call(),
                        "latency_is_per": if row.op.members_per_call() > 1 { "message" } else { "operation" },
                        "round_trips": round3(rt),
                        "read_units": round3(rru),
                        "write_units": round3(wru),
                        "write_units_billed_on_aws": round3(ops::billed_wru_for(row.op, wru)),
                        "units_constant_across_samples": seq.constant,
                        "unexpected_responses": seq.unexpected,
                        "latency": summarize(seq.latencies.clone()).json(),
                        "throughput": row.loads.iter().map(load_json).collect::<Vec<_>>(),
                        "cost_per_million_usd": cost_json(&c),
                    })
                }
            })
            .collect();
        let flat: Vec<Value> = self
            .flat
            .iter()
            .map(|r| {
                json!({
                    "prior_entries": r.history,
                    "accrue": seq_json(&r.accrue),
                    "redeem": seq_json(&r.redeem),
                })
            })
            .collect();
        let cold: Vec<Value> = self
            .cold
            .iter()
            .map(|r| {
                let median = r.median();
                json!({
                    "function": r.function,
                    "event": r.route,
                    "binary_bytes_native": r.size_native,
                    "binary_bytes_arm64": r.size_arm64,
                    "arch": std::env::consts::ARCH,
                    "runs": r.runs.len(),
                    "ready_ms_median": median.map(|m| round3(m.0)),
                    "first_invocation_ms_median": median.map(|m| round3(m.1)),
                    "peak_rss_kib_median": median.map(|m| m.2),
                    "first_response_status": r.runs.first().and_then(|x| x.response_status),
                    "error": r.error,
                })
            })
            .collect();
        let criterion: Vec<Value> = CRITERION
            .iter()
            .map(|(id, _)| {
                let e = criterion_estimate(id);
                json!({ "id": id, "mean_ns": e.map(|e| round1(e.0)), "ci95_ns": e.map(|e| [round1(e.1), round1(e.2)]) })
            })
            .collect();
        json!({
            "generated": self.date,
            "command": self.command_line,
            "mode": if self.quick { "quick" } else { "full" },
            "machine": machine(),
            "load_average_at_start": self.load_at_start,
            "note": "DynamoDB Local, not DynamoDB: latencies are local; write_units are as DynamoDB Local reports them (transactional writes at 1 WRU/KB), write_units_billed_on_aws doubles them (every write is a TransactWriteItems) and the cost model uses the billed figure",
            "elapsed_seconds": round1(self.elapsed.as_secs_f64()),
            "prices": {
                "as_of": PRICES.as_of,
                "region": PRICES.region,
                "lambda_arm64_per_gb_second": PRICES.lambda_arm64_gb_second,
                "lambda_per_million_requests": PRICES.lambda_per_million_requests,
                "http_api_per_million": PRICES.http_api_per_million,
                "dynamodb_per_million_wru": PRICES.dynamodb_per_million_wru,
                "dynamodb_per_million_rru": PRICES.dynamodb_per_million_rru,
                "sqs_per_million": PRICES.sqs_per_million,
                "lambda_memory_mb": self.memory_mb,
            },
            "operations": ops,
            "hot_member_accrue_c8": self.hot.as_ref().map(load_json),
            "flatness": flat,
            "concurrent_spends": self.spends.as_ref().map(|s| json!({
                "attempts": s.attempts,
                "opening_balance": s.opening_balance,
                "succeeded": s.succeeded,
                "insufficient_points": s.insufficient,
                "other": s.other,
                "closing_balance": s.closing_balance,
                "ledger_entries": s.ledger_entries,
                "round_trips": s.capacity.round_trips,
                "read_units": round3(s.capacity.read_units),
                "write_units": round3(s.capacity.write_units),
                "elapsed_ms": round1(s.elapsed.as_secs_f64() * 1e3),
            })),
            "process_cpu": self.process.iter().map(|r| json!({
                "operation": r.op.id(),
                "function": r.op.binary(),
                "windows": r.windows.iter().map(window_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "process_cpu_variants": self.variants.iter().map(|v| json!({
                "label": v.label,
                "dir": v.dir.display().to_string(),
                "accrue_c1_ms_per_op": v.rounds.iter().map(|r| r.first().and_then(|w| w.as_ref().ok()).map(|w| round3(w.cpu_ms_per_op()))).collect::<Vec<_>>(),
                "redeem_c1_ms_per_op": v.rounds.iter().map(|r| r.get(1).and_then(|w| w.as_ref().ok()).map(|w| round3(w.cpu_ms_per_op()))).collect::<Vec<_>>(),
                "c8": v.c8.iter().map(window_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "accrual_profiles": self.profiles.iter().map(|p| match &p.result {
                Ok((window, entries)) => {
                    let (shares, top) = crate::profile::summarise(entries);
                    json!({
                        "label": p.label,
                        "window": window_json(&Ok(window.clone())),
                        "cost_centres_percent": shares.iter().map(|(c, s)| json!({ "centre": c, "share": round1(*s) })).collect::<Vec<_>>(),
                        "top_symbols_percent": top.iter().map(|(e, s)| json!({ "symbol": e, "share": round1(*s) })).collect::<Vec<_>>(),
                    })
                }
                Err(error) => json!({ "label": p.label, "error": error }),
            }).collect::<Vec<_>>(),
            "cpu_in_memory": self.cpu.iter().map(|r| json!({ "path": r.name, "latency": r.summary.json() })).collect::<Vec<_>>(),
            "criterion": criterion,
            "cold_start": cold,
            "sample_design_for_comparison": {
                "wru_per_accrual_at_10_orders": 1,
                "wru_per_accrual_at_10000_orders": 381,
                "stops_accruing_at_orders": 10500,
                "round_trips_per_accrual": 2,
                "concurrent_spends_through_of_50_on_balance_for_10": "6-10",
            },
        })
    }
}

fn window_json(w: &Result<Window, String>) -> Value {
    match w {
        Ok(w) => json!({
            "concurrency": w.concurrency,
            "invocations": w.completed,
            "unexpected_responses": w.unexpected,
            "process_cpu_ms": round3(w.cpu.as_secs_f64() * 1e3),
            "process_cpu_ms_per_op": round3(w.cpu_ms_per_op()),
            "elapsed_ms": round1(w.elapsed.as_secs_f64() * 1e3),
            "latency": summarize(w.latencies.clone()).json(),
        }),
        Err(error) => json!({ "error": error }),
    }
}

/// Median and range of `xs`, as "median (min–max)".
fn median_range(mut xs: Vec<f64>) -> Option<(f64, f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some((xs[xs.len() / 2], xs[0], xs[xs.len() - 1]))
}

fn cpu_cell(w: Option<&Result<Window, String>>) -> String {
    match w {
        Some(Ok(w)) if w.unexpected == 0 => format!("{:.3}", w.cpu_ms_per_op()),
        Some(Ok(w)) => format!("{:.3} ({} failed)", w.cpu_ms_per_op(), w.unexpected),
        Some(Err(e)) => format!("— ({})", e.replace('|', "\\|")),
        None => "—".to_owned(),
    }
}

impl Report {
    /// The two process CPU cells of the per-operation table.
    fn process_cpu_cells(&self, row: &OpRow) -> String {
        if let Some(p) = self.process.iter().find(|p| p.op == row.op) {
            return format!("{} | {}", cpu_cell(p.windows.first()), cpu_cell(p.windows.get(1)));
        }
        match (row.service_cpu, &row.sequential) {
            (Some(cpu), Some(seq)) => format!(
                "{:.3} (bench process, per member) | —",
                cpu.as_secs_f64() * 1e3 / (seq.latencies.len() * row.op.members_per_call()).max(1) as f64
            ),
            _ => "— | —".to_owned(),
        }
    }

    fn process_section(&self, w: &mut String) {
        let _ = writeln!(w, "## Process CPU per operation\n");
        let _ = writeln!(
            w,
            "The *process CPU* columns of the per-operation table: the release function binary from `--bin-dir` \
             runs as Lambda runs it, against the local runner's Lambda Runtime API (`infra/local/src/runtime.rs`), \
             one process per execution environment; `utime + stime` of each process is read from \
             `/proc/<pid>/stat` before and after a window of {:.1} s in which a known number of invocations \
             completed (after 20 warm-up invocations per process), and the sum is divided by that number. At \
             c=8 there are 8 processes, each fed back to back by its own caller on its own member. It includes \
             everything the process does for a request — Runtime API client, event parsing, logging to stdout \
             (discarded), the SDK, the tokio runtime — and nothing of the bench or of DynamoDB Local. The \
             resolution is one clock tick (10 ms) over the whole window. Queue workers have no such window: \
             their figure is the bench process's own CPU over their sequential service calls (the SDK call path \
             is the same; the Runtime API and event decoding are not in it).\n",
            self.plan.process_seconds
        );
        if self.variants.is_empty() {
            return;
        }
        let _ = writeln!(w, "### Process CPU per change, measured in this run\n");
        let _ = writeln!(
            w,
            "Each row is a build of the functions as of one change (`--cpu-variant LABEL=DIR`, in order), all \
             measured in this run against the same DynamoDB Local: accrue and redeem at c=1 in {} alternating \
             rounds (median, with the range over rounds), then c=8 once. The machine is shared with other \
             work; process CPU is far less sensitive to that than latency, and the rounds show how much it \
             still moves.\n",
            self.plan.process_rounds
        );
        let _ = writeln!(
            w,
            "| build | accrue c=1 ms/op | redeem c=1 ms/op | accrue c=8 ms/op | redeem c=8 ms/op | accrue c=1 saved vs previous row |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|");
        let mut previous: Option<f64> = None;
        for v in &self.variants {
            let column = |i: usize| {
                median_range(
                    v.rounds
                        .iter()
                        .filter_map(|r| r.get(i).and_then(|w| w.as_ref().ok()))
                        .map(Window::cpu_ms_per_op)
                        .collect(),
                )
            };
            let fmt = |m: Option<(f64, f64, f64)>| {
                m.map_or("—".to_owned(), |(m, lo, hi)| format!("{m:.3} ({lo:.3}–{hi:.3})"))
            };
            let accrue = column(0);
            let saved = match (previous, accrue) {
                (Some(p), Some((a, _, _))) => format!("{:+.3}", a - p),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {saved} |",
                v.label,
                fmt(accrue),
                fmt(column(1)),
                cpu_cell(v.c8.first()),
                cpu_cell(v.c8.get(1)),
            );
            previous = accrue.map(|a| a.0).or(previous);
        }
        let _ = writeln!(w);
    }

    fn profile_section(&self, w: &mut String) {
        if self.profiles.is_empty() {
            return;
        }
        let _ = writeln!(w, "### Where an accrual's CPU goes (profile)\n");
        let _ = writeln!(
            w,
            "`perf record -F 4999` attached to one accrue process (a build with symbols: `cargo build --profile \
             profiling`, the release profile unstripped) for a {:.1} s window at c=1, user and kernel samples; \
             `perf report --sort dso,sym`, each symbol assigned to the crate it names first \
             (`infra/bench/src/profile.rs`). Leaf frames only: code inlined into a caller counts for the caller's \
             crate. Shares are of all samples of the process.\n",
            self.plan.process_seconds
        );
        let ok: Vec<(&ProfileRow, Vec<(&'static str, f64)>, &Window)> = self
            .profiles
            .iter()
            .filter_map(|p| {
                p.result
                    .as_ref()
                    .ok()
                    .map(|(win, entries)| (p, crate::profile::summarise(entries).0, win))
            })
            .collect();
        for p in &self.profiles {
            if let Err(e) = &p.result {
                let _ = writeln!(w, "- {}: not profiled ({e})", p.label);
            }
        }
        if ok.is_empty() {
            let _ = writeln!(w);
            return;
        }
        let _ = write!(w, "| cost centre |");
        for (p, _, win) in &ok {
            let _ = write!(w, " {} ({:.3} ms/op) |", p.label, win.cpu_ms_per_op());
        }
        let _ = writeln!(w);
        let _ = writeln!(w, "|---|{}", "---:|".repeat(ok.len()));
        for (i, (centre, _)) in crate::profile::CENTRES.iter().enumerate() {
            let _ = write!(w, "| {centre} |");
            for (_, shares, win) in &ok {
                let share = shares[i].1;
                let _ = write!(
                    w,
                    " {share:.1}% ({:.3} ms) |",
                    share / 100.0 * win.cpu_ms_per_op()
                );
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(w);
        for (p, _, _) in &ok {
            if let Ok((_, entries)) = &p.result {
                let (_, top) = crate::profile::summarise(entries);
                let _ = writeln!(w, "Top symbols, {}:\n", p.label);
                for (entry, share) in top {
                    let _ = writeln!(w, "- {share:.1}% `{}`", entry.replace('`', "'"));
                }
                let _ = writeln!(w);
            }
        }
    }
}

/// "measured → billed" write units.
fn both(wru: f64) -> String {
    format!("{} → {}", fmt_units(wru), fmt_units(ops::billed_wru(wru)))
}

fn fmt_units(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn seq_json(s: &Sequential) -> Value {
    let (rt, rru, wru) = ops::per_op(s.capacity, s.latencies.len());
    json!({
        "round_trips": round3(rt),
        "read_units": round3(rru),
        "write_units": round3(wru),
        "write_units_billed_on_aws": round3(ops::billed_wru(wru)),
        "units_constant_across_samples": s.constant,
        "unexpected_responses": s.unexpected,
        "latency": summarize(s.latencies.clone()).json(),
    })
}

fn load_json(l: &Load) -> Value {
    let (rt, rru, wru) = ops::per_op(l.capacity, l.completed);
    json!({
        "concurrency": l.concurrency,
        "hot_member": l.hot,
        "completed": l.completed,
        "unexpected_responses": l.unexpected,
        "ops_per_second": round1(l.ops_per_sec()),
        "latency": summarize(l.latencies.clone()).json(),
        "round_trips_per_op": round3(rt),
        "read_units_per_op": round3(rru),
        "write_units_per_op": round3(wru),
    })
}

fn cost_json(c: &Cost) -> Value {
    json!({
        "billed_ms": round3(c.billed_ms),
        "lambda_compute": round3(c.lambda_compute * 1000.0) / 1000.0,
        "lambda_requests": c.lambda_requests,
        "http_api": c.http_api,
        "dynamodb": round3(c.dynamodb),
        "sqs": c.sqs,
        "total": round3(c.total()),
    })
}

const WORKERS: &str = "\
**Queue workers** (tier evaluation, campaign grant, referral reward, billing) are measured by calling the \
`App` service directly — `evaluate_tier`, `grant_campaign`, `handle_referral_message`, `bill_subscription` — \
on the same table and meter, not through an SQS event and the worker binary (which only decode the event and \
call the same function); their latency is the service call, and they have no throughput runs. Per member:

- *tier evaluation*: one member who earned the day before (a `ManualClock` is moved one day, so every call \
is a real evaluation, not the same-day no-op); distinct members.
- *campaign grant*: campaigns created with `App::create_campaign` (dispatch queue in memory), then \
`grant_campaign` with a `GrantMessage` of 24 members — one `TransactWriteItems` for the 24 members and the \
campaign's counters (97 items: member, ledger entry, entry guard and outcome marker per member + the campaign \
record), after one read of the campaign and one `BatchGetItem` of the 24 members: 3 round trips per message \
(it was 27 with one `GetItem` per member before issue 12). Units \
are divided by 24; the latency columns are of the whole 24-member message. A tenth as many messages as the \
other operations have calls (20 messages, 500 members, in a full run). Every member's balance is checked \
afterwards. **DynamoDB Local reports far fewer WRU for this 97-item transaction than its items** (the Local \
column); the billed column therefore uses the item count, 2 × (4 + 1/24) ≈ 8.08 WRU per member, not the \
measured figure × 2.
- *referral reward*: a referrer, a referee enrolled with its code and a qualifying first purchase (which \
queues the referral message), then the message handled: both bonus ledger entries, both member items and the \
referral record in one transaction. Each referral has its own referrer, so caps and velocity never refuse.
- *billing*: a monthly `plus` subscription started with the in-memory fake payment provider \
(`loyalty_core::subscriptions::payments::MemoryPayments`), the clock moved past the billing date, then \
`bill_subscription` renewing it. **DynamoDB cost only: the provider call is excluded** (in memory here; on AWS \
a payment-provider round trip and its fee).
";

const EXPLANATION: &str = "\
### Why an accrual costs what it costs

An accrual of a purchase is one `TransactWriteItems` of five puts (an action's, four), each item ≤ 1 KB:

| write | condition |
|---|---|
| member item (balances, counters, `version`) | `version = :read_version` |
| ledger entry `LEDGER#<seq>` | `attribute_not_exists` |
| entry guard `ENTRY#order:<order_id>` (an order earns once) | `attribute_not_exists` |
| idempotency record `IDEM#accrual#<key>` (a retry gets the first response) | `attribute_not_exists` |
| program-wide guard `UNIQUE#order:<order_id>` (an order earns once per program, whichever member) | `attribute_not_exists` |

A standard write of an item up to 1 KB is 1 WRU; a transactional write costs double, so 5 items × 2 = **10 WRU** \
(8 for an action, which has no program-wide guard). \
The read before it is one strongly consistent `BatchGetItem` of three keys under 4 KB (member, idempotency \
record, the member's shard of the program version stamp): 1 RRU each, **3 RRU** \
(a key that is not there, as the idempotency record usually is not, is still charged the minimum 1 RRU). A redemption is the same shape (plus a stock counter update, another 2 WRU, for limited rewards). None of \
the items grows with history: the member item holds balances and counters, never the list of orders; each ledger \
entry is its own item keyed by sequence number. That is why the units are identical at 10 and at 10,000 entries, \
where the sample's single growing item costs 1 WRU per KB rewritten.

**DynamoDB Local under-reports transactional writes.** It counts a `TransactWriteItems` item at the standard \
1 WRU per KB (it measures 4 WRU for an accrual); AWS bills transactional writes at 2 WRU per item-KB (and \
`TransactGetItems` at 2 RRU, which this engine does not use), so on AWS an accrual is **8 WRU**. Every write \
this engine makes goes through `TransactWriteItems` (all points movements, and every record write), so the \
\"WRU billed on AWS\" column is the measured figure × 2, and the cost model prices that column. Reads are \
priced as measured; DynamoDB Local also does not charge the missing idempotency key of the `BatchGetItem` \
(1 RRU measured where AWS may charge 2: at most $0.125 per million accruals, left out of the model).

What would make it cheaper, and what it would cost in guarantees: dropping the entry guard (−2 WRU) gives up \
\"an order earns once whatever Idempotency-Key carries it\"; folding the idempotency record into the ledger entry \
(−2 WRU) needs the entry's key to be derivable from the Idempotency-Key, which breaks the gap-free sequence key; \
a non-transactional write (−4 WRU) gives up all-or-nothing. We keep all four.

### Why 2 round trips (and what 1 would take)

1. A strongly consistent `BatchGetItem` of the member item and the request's idempotency record.
2. The `TransactWriteItems` above.

The read is needed because the ledger entry records `balance_after` and its sequence number, both functions of \
the prior state, and the transaction's `version` condition needs the version the entry was computed from. The \
idempotency record is read in the same call because a replay must be answered with the original response \
*before* business validation runs (a retried redemption must not be refused for the balance it already spent). \
The sample's 2 round trips are a read-modify-write of one item; ours are a read of two small items and one \
conditional transaction, so the count matches but the cost per round trip does not grow.

The 1-round-trip target needs the read to go: cache the member's state per execution environment (balance, \
`version`, `last_seq`, counters) after each commit and write optimistically with the cached `version` as the \
guard. A hit costs 1 round trip; a miss (another environment wrote the member meanwhile) fails the condition \
and costs the read plus a second transaction (3 round trips, and a cancelled transaction's units). The replay \
check then moves after the write: a cancelled transaction whose reason is the idempotency record reads the \
record (as `settle` already does). Members usually transact from one device at a time, and Lambda routes a \
member's consecutive requests to any warm environment, so the hit rate depends on traffic shape; it is worth \
measuring with this harness before adopting. The alternative, `UpdateItem` with `ReturnValues` on the member \
item alone, cannot write the ledger entry, guard and idempotency record atomically.
";
