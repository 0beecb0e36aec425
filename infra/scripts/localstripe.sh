#!/usr/bin/env bash
# Manage a local Stripe API: localstripe (PyPI, pinned in requirements-dev.txt and installed into
# .local/venv by install-python-tools.sh), for the payment adapter and subscription tests.
#
#   localstripe.sh start PORT   start on PORT (from scratch) and wait until it answers
#   localstripe.sh stop  PORT   stop the instance started by `start PORT` (no-op if none)
#
# localstripe has no option for the listen address (it binds every interface); it is only ever
# reached through 127.0.0.1 and accepts any sk_test_ key. It ignores Idempotency-Key headers.
# pid file: <repo>/.local/run/localstripe-PORT.pid, log: <repo>/.local/run/localstripe-PORT.log
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SCRIPTS_DIR/server.sh"

SERVER=localstripe
answers() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -u sk_test_local: "$ENDPOINT/v1/customers" 2>/dev/null || true)"
  [[ "$code" == "200" ]]
}
launch() { cd "$RUN_DIR" && exec "$VENV_DIR/bin/localstripe" --port "$port" --from-scratch; }

server_main "$@"
