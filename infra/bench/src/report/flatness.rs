//! Cost against the member's history: accrue and redeem at a short and a long ledger.

use std::fmt::Write as _;

use super::format::{both, fmt_units};
use super::Report;
use crate::ops;
use crate::stats::{ms, summarize};

impl Report {
    pub(super) fn flatness(&self, w: &mut String) {
        let p = &self.plan;
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
    }
}
