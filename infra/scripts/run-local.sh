#!/usr/bin/env bash
# Start the whole system locally: DynamoDB Local + the loyalty-local HTTP server, which
# creates the table described in infra/template.yaml, loads the default program and
# serves the same routes as the HTTP API.
#
#   infra/scripts/run-local.sh [extra loyalty-local serve args...]
#
# Env: DYNAMODB_PORT  DynamoDB Local port (default 8000)
#      LOYALTY_LISTEN address loyalty-local listens on (default 127.0.0.1:3000)
#      LOYALTY_PROGRAM program file to load (default infra/program.default.json)
# Ctrl-C (or SIGTERM) stops the server and then DynamoDB Local.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

have cargo || die "cargo not found on PATH (install Rust via rustup)"

"$SCRIPTS_DIR/install-java.sh"
"$SCRIPTS_DIR/install-dynamodb-local.sh"
"$SCRIPTS_DIR/install-python-tools.sh"
activate_venv

PORT="${DYNAMODB_PORT:-8000}"
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
use_local_aws_env

say "starting loyalty-local on http://$LISTEN (DynamoDB Local on 127.0.0.1:$PORT); Ctrl-C to stop"
# Run in the background so the traps above can fire while we wait; restore default
# INT/TERM handling in the child (bash ignores SIGINT in background jobs otherwise).
(
  trap - INT TERM
  exec cargo run --release -p loyalty_local --bin loyalty-local -- serve \
    --template "$TEMPLATE" \
    --dynamodb "http://127.0.0.1:$PORT" \
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
