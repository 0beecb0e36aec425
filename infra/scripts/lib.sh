# shellcheck shell=bash
# Common helpers for infra/scripts/*.sh. Source this file; do not execute it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Everything these scripts install or run lives under $LOCAL_DIR (<repo>/.local),
# which is git-ignored and safe to delete (`make clean-local`).

set -euo pipefail

if [[ -z "${REPO:-}" ]]; then
  REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi
export REPO
LOCAL_DIR="$REPO/.local"
RUN_DIR="$LOCAL_DIR/run"
VENV_DIR="$LOCAL_DIR/venv"
DYNAMODB_DIR="$LOCAL_DIR/dynamodb"
SCRIPTS_DIR="$REPO/infra/scripts"
export LOCAL_DIR RUN_DIR VENV_DIR DYNAMODB_DIR SCRIPTS_DIR

# say MESSAGE...  -- log a line to stderr, prefixed with the calling script's name.
say() {
  printf '[%s] %s\n' "$(basename "${0}")" "$*" >&2
}

# die MESSAGE...  -- log and exit 1.
die() {
  say "ERROR: $*"
  exit 1
}

# have CMD  -- true if CMD is on PATH.
have() {
  command -v "$1" >/dev/null 2>&1
}

# free_port [PREFERRED]  -- print PREFERRED if it is free on 127.0.0.1, else any free port.
free_port() {
  local preferred="${1:-0}"
  python3 - "$preferred" <<'PY'
import socket, sys
pref = int(sys.argv[1])
def try_bind(p):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
port = try_bind(pref) if pref else None
if port is None:
    port = try_bind(0)
print(port)
PY
}

# use_local_aws_env  -- dummy credentials/region for DynamoDB Local (never real AWS).
use_local_aws_env() {
  export AWS_ACCESS_KEY_ID=test
  export AWS_SECRET_ACCESS_KEY=test
  export AWS_REGION=us-east-1
  export AWS_DEFAULT_REGION=us-east-1
  # Keep the SDK from looking for real profiles / IMDS.
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_SESSION_TOKEN || true
}

# activate_venv  -- put the project venv's bin first on PATH (no-op if it doesn't exist).
activate_venv() {
  if [[ -d "$VENV_DIR/bin" ]]; then
    export PATH="$VENV_DIR/bin:$PATH"
  fi
}

# ensure_arm64_target  -- the Rust standard library for arm64 Lambda (provided.al2023 on
# Graviton), which `cargo lambda build --arm64` and `sam build` compile against.
ensure_arm64_target() {
  local target=aarch64-unknown-linux-gnu
  have rustup || die "rustup not found: the arm64 build needs 'rustup target add $target'"
  if ! rustup target list --installed | grep -qx "$target"; then
    say "rustup target add $target"
    rustup target add "$target"
  fi
}
