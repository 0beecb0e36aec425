#!/usr/bin/env bash
# Full benchmark run (issue 8), as `make bench` runs it:
#   1. release builds of the function binaries (cold start, sizes) and of loyalty-bench;
#   2. arm64 builds through cargo-lambda when it is installed (sizes only; skipped otherwise);
#   3. criterion benches of the core (handler CPU without I/O);
#   4. a DynamoDB Local on a free loopback port, loyalty-bench against it, and stop it again.
# Writes BENCHMARKS.md and infra/bench/results/latest.json. Env: BENCH_ARGS (extra flags to
# loyalty-bench), CRITERION_ARGS (extra flags to criterion, e.g. "--warm-up-time 1
# --measurement-time 2" on a busy machine), DYNAMODB_PORT (default: a free port from 8790).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO"

"$SCRIPTS_DIR/install-java.sh"
"$SCRIPTS_DIR/install-dynamodb-local.sh"

say "building release binaries"
cargo build --release -p members -p accrue -p redeem -p rewards -p loyalty_bench
if cargo lambda --version >/dev/null 2>&1; then
  say "building arm64 artefacts with cargo lambda (sizes)"
  cargo lambda build --release --arm64 --bin members --bin accrue --bin redeem --bin rewards \
    || say "cargo lambda arm64 build failed; sizes will be native only"
fi
say "criterion benches"
# shellcheck disable=SC2086
cargo bench -p loyalty_core --bench core -- ${CRITERION_ARGS:-}

PORT="${DYNAMODB_PORT:-$(free_port 8790)}"
stop() { "$SCRIPTS_DIR/dynamodb-local.sh" stop "$PORT" || true; }
trap stop EXIT
"$SCRIPTS_DIR/dynamodb-local.sh" start "$PORT"
use_local_aws_env
export BENCH_VIA="infra/bench/run.sh" DYNAMODB_PORT="$PORT" CRITERION_ARGS="${CRITERION_ARGS:-}"
# shellcheck disable=SC2086
target/release/loyalty-bench --dynamodb "http://127.0.0.1:$PORT" \
  --out BENCHMARKS.md --json infra/bench/results/latest.json ${BENCH_ARGS:-}
