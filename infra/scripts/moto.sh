#!/usr/bin/env bash
# Manage a local SQS endpoint: moto_server (moto[server], pinned in requirements-dev.txt and
# installed into .local/venv by install-python-tools.sh), bound to 127.0.0.1 only.
#
#   moto.sh start PORT   start on 127.0.0.1:PORT and wait until it answers
#   moto.sh stop  PORT   stop the instance started by `start PORT` (no-op if none)
#
# pid file: <repo>/.local/run/moto_server-PORT.pid, log: <repo>/.local/run/moto_server-PORT.log
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SCRIPTS_DIR/server.sh"

SERVER=moto_server
answers() { curl -s -o /dev/null --max-time 2 "$ENDPOINT/moto-api/" 2>/dev/null; }
# exec, so the recorded pid is moto_server's own.
launch() { exec "$VENV_DIR/bin/moto_server" -H 127.0.0.1 -p "$port"; }

server_main "$@"
