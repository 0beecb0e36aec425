//! The JSON results (`infra/bench/results/latest.json`): every figure of the document, unrounded
//! where it matters.

use serde_json::{json, Value};

use super::format::{criterion_estimate, machine, CRITERION};
use super::Report;
use crate::cost::{Cost, PRICES};
use crate::ops::{self, Load, Sequential};
use crate::process::Window;
use crate::stats::{round1, round3, summarize};

impl Report {
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
            "outbox": match &self.outbox {
                None => Value::Null,
                Some(Ok(run)) => json!({
                    "members": run.members,
                    "stream_records": run.records,
                    "batches": run.batches,
                    "events": run.events,
                    "stream_read_s": run.read.as_secs_f64(),
                    "relay_s": run.relay.as_secs_f64(),
                    "records_per_s": run.records_per_sec().round(),
                    "events_per_s": run.events_per_sec().round(),
                }),
                Some(Err(error)) => json!({ "error": error }),
            },
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
