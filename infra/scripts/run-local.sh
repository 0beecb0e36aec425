#!/usr/bin/env bash
# Start the whole system locally, as infra/template.yaml wires it: DynamoDB Local, moto_server
# (SQS), and `loyalty-local run`, which creates the tables and queues, runs every function's
# real binary against a local Lambda Runtime API, and invokes them from the HTTP API routes,
# the SQS event source mappings and the schedules.
#
#   infra/scripts/run-local.sh [extra loyalty-local run args, e.g. --now 2030-11-29T09:00:00Z]
#
# Env: DYNAMODB_PORT   DynamoDB Local port (default 8000)
#      SQS_PORT        moto_server port (default 4566)
#      LOYALTY_LISTEN  address the API listens on (default 127.0.0.1:3000)
#      LOYALTY_PROGRAM program file to load (default infra/program.default.json)
#      LOYALTY_RELEASE=1  build and run the release binaries
# Ctrl-C (or SIGTERM) stops the functions, the runner, moto_server and DynamoDB Local.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

have cargo || die "cargo not found on PATH (install Rust via rustup)"

"$SCRIPTS_DIR/install-java.sh"
"$SCRIPTS_DIR/install-dynamodb-local.sh"
"$SCRIPTS_DIR/install-python-tools.sh"
activate_venv

PORT="${DYNAMODB_PORT:-8000}"
SQS_PORT="${SQS_PORT:-4566}"
STRIPE_PORT="${STRIPE_PORT:-8420}"
LISTEN="${LOYALTY_LISTEN:-127.0.0.1:3000}"
PROGRAM="${LOYALTY_PROGRAM:-infra/program.default.json}"
TEMPLATE="infra/template.yaml"
[[ -f "$TEMPLATE" ]] || die "$TEMPLATE not found"
[[ -f "$PROGRAM" ]] || die "program file $PROGRAM not found"

child=""
# shellcheck disable=SC2329  # invoked via trap
cleanup() {
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  "$SCRIPTS_DIR/moto.sh" stop "$SQS_PORT" || true
  "$SCRIPTS_DIR/localstripe.sh" stop "$STRIPE_PORT" || true
  "$SCRIPTS_DIR/dynamodb-local.sh" stop "$PORT" || true
}
# shellcheck disable=SC2329  # invoked via trap
forward() {
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -"$1" "$child" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'forward INT' INT
trap 'forward TERM' TERM

"$SCRIPTS_DIR/dynamodb-local.sh" start "$PORT"
"$SCRIPTS_DIR/moto.sh" start "$SQS_PORT"
"$SCRIPTS_DIR/localstripe.sh" start "$STRIPE_PORT"
# The functions that take payments (members, subscription-billing) talk to localstripe: the
# runner takes template parameters from LOYALTY_PARAM_<Name>, as `sam deploy` takes overrides.
# Deployed, the keys come from Secrets Manager (StripeSecretName); locally the functions read
# them from the environment instead (STRIPE_SECRET_KEY set means no Secrets Manager call).
export LOYALTY_PARAM_StripeApiBase="http://127.0.0.1:$STRIPE_PORT" LOYALTY_PARAM_StripeDialect="localstripe"
export STRIPE_SECRET_KEY="${STRIPE_SECRET_KEY:-sk_test_local}" STRIPE_WEBHOOK_SECRET="${STRIPE_WEBHOOK_SECRET:-whsec_local}"
use_local_aws_env

profile=debug
build_flags=()
if [[ "${LOYALTY_RELEASE:-0}" == "1" ]]; then
  profile=release
  build_flags=(--release)
fi
say "building every function binary: cargo build --bins ${build_flags[*]}"
cargo build --bins "${build_flags[@]}"
target_dir="${CARGO_TARGET_DIR:-$REPO/target}"

say "starting loyalty-local on http://$LISTEN (DynamoDB Local 127.0.0.1:$PORT, SQS 127.0.0.1:$SQS_PORT); Ctrl-C to stop"
# Run in the background so the traps above can fire while we wait; restore default
# INT/TERM handling in the child (bash ignores SIGINT in background jobs otherwise).
(
  trap - INT TERM
  exec "$target_dir/$profile/loyalty-local" run --no-build \
    --bin-dir "$target_dir/$profile" \
    --template "$TEMPLATE" \
    --dynamodb "http://127.0.0.1:$PORT" \
    --sqs "http://127.0.0.1:$SQS_PORT" \
    --listen "$LISTEN" \
    --program "$PROGRAM" \
    "$@"
) &
child=$!

status=0
while true; do
  if wait "$child"; then status=0; else status=$?; fi
  # wait returns early (>128) when one of our traps ran; keep waiting while the child lives.
  kill -0 "$child" 2>/dev/null || break
done
child=""
exit "$status"
