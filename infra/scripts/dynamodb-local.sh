#!/usr/bin/env bash
# Manage a DynamoDB Local instance (installed by install-dynamodb-local.sh).
#
#   dynamodb-local.sh start  PORT   start in-memory on PORT (no-op if ours is already up there)
#   dynamodb-local.sh wait   PORT   wait until something answers DynamoDB requests on 127.0.0.1:PORT
#   dynamodb-local.sh stop   PORT   stop the instance started by `start PORT` (no-op if none)
#   dynamodb-local.sh status PORT   exit 0 if it answers, 1 otherwise
#
# pid file: <repo>/.local/run/dynamodb-PORT.pid, log: <repo>/.local/run/dynamodb-PORT.log
#
# Binding: DynamoDB Local (1.25.x) has no option to choose the listen address; its
# Jetty server listens on PORT on all interfaces. We only ever *reach* it through
# 127.0.0.1, and it is started with -disableTelemetry so it makes no outbound calls.
# -sharedDb makes every credential/region see the same tables (the SDK clients in
# tests and in loyalty-local use dummy credentials; this avoids surprises when they differ).
#
# Env: DYNAMODB_WAIT_SECONDS (default 30), DYNAMODB_JAVA_OPTS (extra JVM flags, default -Xmx3g).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: $(basename "$0") start|stop|wait|status PORT"; }

[[ $# -eq 2 ]] || usage
cmd="$1"
port="$2"
if ! [[ "$port" =~ ^[0-9]+$ ]] || (( port < 1 || port > 65535 )); then
  die "invalid port '$port'"
fi

PID_FILE="$RUN_DIR/dynamodb-$port.pid"
LOG_FILE="$RUN_DIR/dynamodb-$port.log"
WAIT_SECONDS="${DYNAMODB_WAIT_SECONDS:-30}"
ENDPOINT="http://127.0.0.1:$port"

# answers: true if an HTTP server answers a DynamoDB ListTables request on the port.
# Any HTTP status (even 400 for the unsigned request) counts as "up".
answers() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H 'Content-Type: application/x-amz-json-1.0' \
    --data '{}' "$ENDPOINT/" 2>/dev/null || true)"
  [[ -n "$code" && "$code" != "000" ]]
}

# our_pid: print the pid from the pid file if that process is alive and is DynamoDB Local.
our_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: the process must be DynamoDB Local.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'DynamoDBLocal.jar' || return 1
  echo "$pid"
}

log_tail() {
  if [[ -f "$LOG_FILE" ]]; then
    say "last lines of $LOG_FILE:"
    tail -n 30 "$LOG_FILE" >&2 || true
  fi
}

# do_wait [STARTED_PID]: wait until the port answers. With STARTED_PID (an instance this
# invocation just launched), fail fast if it dies or logs a fatal startup error, and kill it
# on failure: DynamoDB Local's JVM keeps running after e.g. a bind error in its main thread.
do_wait() {
  local started="${1:-}"
  local deadline=$((SECONDS + WAIT_SECONDS))
  local reason=""
  while (( SECONDS < deadline )); do
    if answers; then
      say "DynamoDB Local is up at $ENDPOINT"
      return 0
    fi
    if [[ -n "$started" ]]; then
      if ! kill -0 "$started" 2>/dev/null; then
        reason="DynamoDB Local (pid $started) exited during startup"
        break
      fi
      if grep -q -E 'Exception in thread "main"|Failed to bind' "$LOG_FILE" 2>/dev/null; then
        reason="DynamoDB Local failed to start on port $port (see log)"
        break
      fi
    fi
    sleep 0.25
  done
  [[ -n "$reason" ]] || reason="DynamoDB Local did not answer on $ENDPOINT within ${WAIT_SECONDS}s"
  log_tail
  if [[ -n "$started" ]]; then
    do_stop
  fi
  die "$reason"
}

do_start() {
  if pid="$(our_pid)"; then
    if answers; then
      say "DynamoDB Local already running on port $port (pid $pid)"
      return 0
    fi
    say "DynamoDB Local pid $pid exists but does not answer yet; waiting"
    do_wait "$pid"
    return 0
  fi
  rm -f "$PID_FILE"
  if answers; then
    die "port $port is already in use by another server (not started by this script); pick another port"
  fi

  have java || die "java not found; run infra/scripts/install-java.sh"
  [[ -f "$DYNAMODB_DIR/DynamoDBLocal.jar" ]] \
    || die "DynamoDB Local not installed; run infra/scripts/install-dynamodb-local.sh"

  mkdir -p "$RUN_DIR"
  : >"$LOG_FILE"
  # shellcheck disable=SC2086  # DYNAMODB_JAVA_OPTS is intentionally word-split
  (
    cd "$DYNAMODB_DIR"
    exec java ${DYNAMODB_JAVA_OPTS:--Xmx3g} \
      -Djava.library.path=./DynamoDBLocal_lib \
      -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -disableTelemetry -port "$port"
  ) </dev/null >>"$LOG_FILE" 2>&1 &
  local pid=$!
  echo "$pid" >"$PID_FILE"
  say "started DynamoDB Local (pid $pid) on port $port; log: $LOG_FILE"
  do_wait "$pid"
}

do_stop() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$PID_FILE"
    say "no DynamoDB Local started by this script on port $port"
    return 0
  fi
  say "stopping DynamoDB Local (pid $pid) on port $port"
  kill -TERM "$pid" 2>/dev/null || true
  local _
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid did not exit after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  wait) do_wait ;;
  status) if answers; then say "up at $ENDPOINT"; else say "not answering at $ENDPOINT"; exit 1; fi ;;
  *) usage ;;
esac
