#!/usr/bin/env bash
# Create <repo>/.local/venv and install the pinned dev tools from requirements-dev.txt
# (cfn-lint, moto, localstripe, schemathesis, cargo-lambda + zig), plus the Rust aarch64 target
# the arm64 Lambda build needs.
# Idempotent: skips pip when the requirements file has not changed since the last install.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQ="$SCRIPTS_DIR/requirements-dev.txt"
STAMP="$VENV_DIR/.requirements-dev.sha256"

have python3 || die "python3 is required"
# cargo-lambda and zig (below) cross-compile the Lambda functions; they need this target too.
ensure_arm64_target

if [[ ! -x "$VENV_DIR/bin/python" ]]; then
  say "creating venv $VENV_DIR"
  mkdir -p "$LOCAL_DIR"
  python3 -m venv "$VENV_DIR" \
    || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install -y python3-venv)"
fi

want="$(sha256sum "$REQ" | awk '{print $1}')"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$VENV_DIR/bin/python" -m pip check >/dev/null 2>&1; then
  say "python tools up to date in $VENV_DIR; skipping"
  exit 0
fi

say "installing $(grep -Ev '^\s*(#|$)' "$REQ" | tr '\n' ' ')into $VENV_DIR"
"$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
printf '%s\n' "$want" >"$STAMP"
say "cfn-lint $("$VENV_DIR/bin/cfn-lint" --version 2>&1 | awk '{print $NF}') ready"
