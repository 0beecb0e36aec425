#!/usr/bin/env bash
# Manage a local SQS endpoint: moto_server (moto[server], pinned in requirements-dev.txt and
# installed into .local/venv by install-python-tools.sh), bound to 127.0.0.1 only.
#
#   moto.sh start PORT   start on 127.0.0.1:PORT and wait until it answers
#   moto.sh stop  PORT   stop the instance started by `start PORT` (no-op if none)
#
# pid file: <repo>/.local/run/moto-PORT.pid, log: <repo>/.local/run/moto-PORT.log
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 2 && "$2" =~ ^[0-9]+$ ]] || die "usage: $(basename "$0") start|stop PORT"
cmd="$1"
port="$2"
PID_FILE="$RUN_DIR/moto-$port.pid"
LOG_FILE="$RUN_DIR/moto-$port.log"
ENDPOINT="http://127.0.0.1:$port"

answers() { curl -s -o /dev/null --max-time 2 "$ENDPOINT/moto-api/" 2>/dev/null; }

our_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'moto_server' || return 1
  echo "$pid"
}

do_stop() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$PID_FILE"
    return 0
  fi
  say "stopping moto_server (pid $pid) on port $port"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

do_start() {
  if our_pid >/dev/null && answers; then
    say "moto_server already running on port $port"
    return 0
  fi
  if answers; then
    die "port $port is already in use by another server; pick another port"
  fi
  [[ -x "$VENV_DIR/bin/moto_server" ]] || die "moto_server not installed; run infra/scripts/install-python-tools.sh"
  mkdir -p "$RUN_DIR"
  : >"$LOG_FILE"
  "$VENV_DIR/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >>"$LOG_FILE" 2>&1 &
  local pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + 30))
  while (( SECONDS < deadline )); do
    if answers; then
      say "moto_server (SQS) is up at $ENDPOINT (pid $pid)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG_FILE" >&2; rm -f "$PID_FILE"; die "moto_server exited during startup"; }
    sleep 0.25
  done
  tail -n 20 "$LOG_FILE" >&2
  do_stop
  die "moto_server did not answer on $ENDPOINT within 30s"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  *) die "usage: $(basename "$0") start|stop PORT" ;;
esac
