#!/usr/bin/env bash
# Run every check and test: cfn-lint, cargo fmt --check, clippy (-D warnings), cargo test, the
# arm64 Lambda build, the demo and contract run, the quick benchmark.
#
#   infra/scripts/test.sh [extra cargo test args...]
#
# Installs its prerequisites (Java, DynamoDB Local, Python tools) under .local/ if needed,
# starts an in-memory DynamoDB Local on a free loopback port for the duration of the run
# and stops it on exit. Tests reach it through:
#   LOYALTY_TEST_DYNAMODB=http://127.0.0.1:PORT  (+ dummy AWS_* credentials, AWS_REGION=us-east-1)
#
# Env: DYNAMODB_PORT   use this port instead of picking a free one (default: 8765 if free)
#      FAIL_FAST=1     stop at the first failing step (default: run all steps, then report)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

have cargo || die "cargo not found on PATH (install Rust via rustup)"

"$SCRIPTS_DIR/install-java.sh"
"$SCRIPTS_DIR/install-dynamodb-local.sh"
"$SCRIPTS_DIR/install-python-tools.sh"
activate_venv

PORT="${DYNAMODB_PORT:-$(free_port 8765)}"
SQS_PORT="${SQS_PORT:-$(free_port 4766)}"
STRIPE_PORT="${STRIPE_PORT:-$(free_port 8420)}"

stop_dynamodb() {
  "$SCRIPTS_DIR/moto.sh" stop "$SQS_PORT" || true
  "$SCRIPTS_DIR/localstripe.sh" stop "$STRIPE_PORT" || true
  "$SCRIPTS_DIR/dynamodb-local.sh" stop "$PORT" || true
}
trap stop_dynamodb EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$SCRIPTS_DIR/dynamodb-local.sh" start "$PORT"
"$SCRIPTS_DIR/moto.sh" start "$SQS_PORT"
"$SCRIPTS_DIR/localstripe.sh" start "$STRIPE_PORT"

use_local_aws_env
export LOYALTY_TEST_DYNAMODB="http://127.0.0.1:$PORT"
export LOYALTY_TEST_SQS="http://127.0.0.1:$SQS_PORT"
export LOYALTY_TEST_STRIPE="http://127.0.0.1:$STRIPE_PORT"
say "LOYALTY_TEST_DYNAMODB=$LOYALTY_TEST_DYNAMODB LOYALTY_TEST_SQS=$LOYALTY_TEST_SQS"

failed=()
step() {
  local name="$1"
  shift
  say "==> $name: $*"
  if "$@"; then
    say "<== $name: OK"
  else
    local rc=$?
    say "<== $name: FAILED (exit $rc)"
    failed+=("$name")
    if [[ "${FAIL_FAST:-0}" == "1" ]]; then
      die "stopping after first failure ($name)"
    fi
  fi
}

# The template lints clean with the serverless rules too (cfn-lint-serverless); the two rules
# it leaves off are explained in the template's Metadata.
step cfn-lint cfn-lint --append-rules cfn_lint_serverless.rules -- infra/template.yaml
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
TEST_LOG="$LOCAL_DIR/run/cargo-test.log"
mkdir -p "$(dirname "$TEST_LOG")"
run_tests() { cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$TEST_LOG"; }
step test run_tests "$@"

# The deploy build: every function for arm64 through cargo-lambda + zig (what `sam build` runs),
# one cargo invocation, so a change that breaks the artefacts fails CI. Sizes go to the log.
step build-arm64 "$SCRIPTS_DIR/build-lambdas.sh"

# Smoke test: the whole local stack (its own DynamoDB Local and moto on free ports, every
# function binary), then the demo against it, then the schemathesis contract run
# (infra/scripts/contract.sh; reported as its own failed step), then Ctrl-C-equivalent shutdown.
demo_smoke() {
  local api_port ddb_port sqs_port stripe_port log pid status=0
  api_port="$(free_port 0)"; ddb_port="$(free_port 0)"; sqs_port="$(free_port 0)"; stripe_port="$(free_port 0)"
  log="$RUN_DIR/demo-stack.log"
  DYNAMODB_PORT="$ddb_port" SQS_PORT="$sqs_port" STRIPE_PORT="$stripe_port" LOYALTY_LISTEN="127.0.0.1:$api_port" \
    "$SCRIPTS_DIR/run-local.sh" >"$log" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 600))
  until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$api_port/v1/program"; do
    if ! kill -0 "$pid" 2>/dev/null || (( SECONDS > deadline )); then
      say "the local stack did not come up; last lines of $log:"
      tail -n 40 "$log" >&2
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 1
  done
  "$REPO/target/debug/loyalty-local" demo --api "http://127.0.0.1:$api_port" || status=$?
  # The contract run (docs/openapi.yaml) against the same stack, before it stops.
  local started=$SECONDS
  if "$SCRIPTS_DIR/contract.sh" "http://127.0.0.1:$api_port"; then
    say "contract: OK in $((SECONDS - started)) s"
  else
    say "contract: FAILED after $((SECONDS - started)) s (report in $RUN_DIR/contract)"
    failed+=("contract")
  fi
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if (( status != 0 )); then
    say "demo failed; last lines of $log:"
    tail -n 40 "$log" >&2
  fi
  return "$status"
}
step demo demo_smoke

# Benchmark harness, quick mode (issue 8): figures are reported, never asserted; output goes to
# .local/run, not to the committed BENCHMARKS.md / infra/bench/results.
step bench-quick cargo run -q -p loyalty_bench -- --quick --dynamodb "$LOYALTY_TEST_DYNAMODB" --out "$LOCAL_DIR/run/bench-quick.md" --json "$LOCAL_DIR/run/bench-quick.json"

stop_dynamodb
trap - EXIT

# cargo prints one "test result" line per test binary, the last often a doc-test run with no
# tests; one total line at the end says what the whole run did.
totals=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
              END { printf "%d passed, %d failed", p, f }' "$TEST_LOG" 2>/dev/null || echo "0 passed, 1 failed")
if (( ${#failed[@]} > 0 )); then
  say "failed steps: ${failed[*]}"
  echo "tests: $totals"
  exit 1
fi
say "all checks OK (cfn-lint, fmt, clippy, test, build-arm64, demo, contract)"
echo "tests: $totals"
