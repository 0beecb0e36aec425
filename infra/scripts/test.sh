#!/usr/bin/env bash
# Run every check and test: cfn-lint, cargo fmt --check, clippy (-D warnings), cargo test.
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

stop_dynamodb() { "$SCRIPTS_DIR/dynamodb-local.sh" stop "$PORT" || true; }
trap stop_dynamodb EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$SCRIPTS_DIR/dynamodb-local.sh" start "$PORT"

use_local_aws_env
export LOYALTY_TEST_DYNAMODB="http://127.0.0.1:$PORT"
say "LOYALTY_TEST_DYNAMODB=$LOYALTY_TEST_DYNAMODB"

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

step cfn-lint cfn-lint infra/template.yaml
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
TEST_LOG="$LOCAL_DIR/run/cargo-test.log"
mkdir -p "$(dirname "$TEST_LOG")"
run_tests() { cargo test --workspace "$@" 2>&1 | tee "$TEST_LOG"; }
step test run_tests "$@"

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
say "all checks OK (cfn-lint, fmt, clippy, test)"
echo "tests: $totals"
