//! Cold start of each HTTP function binary on the local Lambda Runtime API.

use std::fmt::Write as _;

use super::format::size;
use super::Report;

impl Report {
    pub(super) fn cold_start(&self, w: &mut String) {
        let p = &self.plan;
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
    }
}
