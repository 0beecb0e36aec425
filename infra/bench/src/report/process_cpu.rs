//! Process CPU per operation (the real function binaries), per change, and the profile of an
//! accrual by cost centre.

use std::fmt::Write as _;

use super::format::{cpu_cell, median_range};
use super::{OpRow, ProfileRow, Report};
use crate::process::Window;

impl Report {
    /// The two process CPU cells of the per-operation table.
    pub(super) fn process_cpu_cells(&self, row: &OpRow) -> String {
        if let Some(p) = self.process.iter().find(|p| p.op == row.op) {
            return format!(
                "{} | {}",
                cpu_cell(p.windows.first()),
                cpu_cell(p.windows.get(1))
            );
        }
        match (row.service_cpu, &row.sequential) {
            (Some(cpu), Some(seq)) => format!(
                "{:.3} (bench process, per member) | —",
                cpu.as_secs_f64() * 1e3
                    / (seq.latencies.len() * row.op.members_per_call()).max(1) as f64
            ),
            _ => "— | —".to_owned(),
        }
    }

    pub(super) fn process_section(&self, w: &mut String) {
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
                m.map_or("—".to_owned(), |(m, lo, hi)| {
                    format!("{m:.3} ({lo:.3}–{hi:.3})")
                })
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

    pub(super) fn profile_section(&self, w: &mut String) {
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
        let ok: Vec<(&ProfileRow, crate::profile::Shares, &Window)> = self
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
