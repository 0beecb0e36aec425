//! BENCHMARKS.md and the JSON results, from one run's measurements. The prose that explains the
//! figures lives here too, so a re-run regenerates a consistent document: one module per
//! section of the document, in the order [`Report::markdown`] writes them.

use std::time::Duration;

use crate::cold::ColdRun;
use crate::cost::{billed_ms, per_million, Cost, Usage};
use crate::ops::{self, Load, Op, Sequential};
use crate::process::Window;
use crate::stats::{summarize, Summary};
use crate::{Args, Plan};

mod cold_start;
mod cost_model;
mod flatness;
mod format;
mod handler_cpu;
mod header;
mod json;
mod operations;
mod outbox;
mod process_cpu;
mod side_by_side;
mod targets;

/// The simulator section (`make simulate`), appended to every BENCHMARKS.md.
const SIMULATOR: &str = include_str!("../../simulator.md");
/// The arm64 artefact sizes and release-profile measurements (`make build`), likewise.
const ARTIFACTS: &str = include_str!("../../artifacts.md");

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
    /// Events per second through the outbox (`None` until measured).
    pub outbox: Option<Result<crate::outbox::OutboxRun, String>>,
    pub elapsed: Duration,
    /// `/proc/loadavg` when the run started: the machine may be shared.
    pub load_at_start: String,
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
            outbox: None,
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
        self.header(&mut m);
        self.operations(&mut m);
        self.cost_model(&mut m);
        self.flatness(&mut m);
        self.side_by_side(&mut m);
        self.handler_cpu(&mut m);
        self.process_section(&mut m);
        self.profile_section(&mut m);
        self.cold_start(&mut m);
        self.outbox_section(&mut m);
        self.targets(&mut m);
        // The simulator's figures come from `make simulate`, not from this run; kept in
        // infra/bench/simulator.md so a benchmark run does not drop them; the same for the arm64
        // artefact sizes (`make build`, infra/bench/artifacts.md).
        m.push_str(ARTIFACTS);
        m.push_str(SIMULATOR);
        m
    }
}
