//! Handler CPU without I/O (in-memory store) and the criterion benches of the core.

use std::fmt::Write as _;

use super::format::{criterion_estimate, ns, CRITERION};
use super::Report;

impl Report {
    pub(super) fn handler_cpu(&self, w: &mut String) {
        let p = &self.plan;
        let criterion_args = std::env::var("CRITERION_ARGS").unwrap_or_default();
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
    }
}
