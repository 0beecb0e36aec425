//! The engine's figures against the targets of issue 8.

use std::fmt::Write as _;

use super::format::{both, fmt_units, size};
use super::Report;
use crate::ops::{self, Op, Sequential};

impl Report {
    pub(super) fn targets(&self, w: &mut String) {
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
    }
}
