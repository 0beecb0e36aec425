//! Dollars per million operations: the prices and the per-operation breakdown.

use std::fmt::Write as _;

use super::format::{dollars, fmt_units};
use super::Report;
use crate::cost::PRICES;

impl Report {
    pub(super) fn cost_model(&self, w: &mut String) {
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
    }
}
