//! The per-operation table (units, latency, process CPU, throughput, dollars), contention on one hot member, and how queue workers are measured.

use std::fmt::Write as _;

use super::format::{dollars, fmt_units};
use super::Report;
use crate::ops;
use crate::stats::{ms, summarize};

impl Report {
    pub(super) fn operations(&self, w: &mut String) {
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
    }
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
