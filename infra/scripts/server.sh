# shellcheck shell=bash
# Start/stop for the Python servers the local stack and tests run from .local/venv (moto_server,
# localstripe). Sourced by their scripts, which define:
#   SERVER      the executable's name in .local/venv/bin (also what its pid must be running)
#   answers     a function that succeeds once the server answers on $ENDPOINT
#   launch      a function that starts it on $port in the foreground (its output goes to the log)
# and then call `server_main "$@"` with `start|stop PORT`.

server_main() {
  [[ $# -eq 2 && "$2" =~ ^[0-9]+$ ]] || die "usage: $(basename "$0") start|stop PORT"
  port="$2"
  PID_FILE="$RUN_DIR/$SERVER-$port.pid"
  LOG_FILE="$RUN_DIR/$SERVER-$port.log"
  ENDPOINT="http://127.0.0.1:$port"
  case "$1" in
    start) server_start ;;
    stop) server_stop ;;
    *) die "usage: $(basename "$0") start|stop PORT" ;;
  esac
}

# The pid in the pid file, if that process is still our server (pids get reused).
server_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$SERVER" || return 1
  echo "$pid"
}

server_stop() {
  local pid
  if ! pid="$(server_pid)"; then
    rm -f "$PID_FILE"
    return 0
  fi
  say "stopping $SERVER (pid $pid) on port $port"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

server_start() {
  if server_pid >/dev/null && answers; then
    say "$SERVER already running on port $port"
    return 0
  fi
  if answers; then
    die "port $port is already in use by another server; pick another port"
  fi
  [[ -x "$VENV_DIR/bin/$SERVER" ]] || die "$SERVER not installed; run infra/scripts/install-python-tools.sh"
  mkdir -p "$RUN_DIR"
  : >"$LOG_FILE"
  launch </dev/null >>"$LOG_FILE" 2>&1 &
  local pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + 30))
  while (( SECONDS < deadline )); do
    if answers; then
      say "$SERVER is up at $ENDPOINT (pid $pid)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG_FILE" >&2; rm -f "$PID_FILE"; die "$SERVER exited during startup"; }
    sleep 0.25
  done
  tail -n 20 "$LOG_FILE" >&2
  server_stop
  die "$SERVER did not answer on $ENDPOINT within 30s"
}
