#!/usr/bin/env bash
# Contract run: schemathesis (pinned in requirements-dev.txt) against a running local stack,
# with docs/openapi.yaml as the contract. Passes when no request makes a function answer 5xx and
# every answer (status, content type, body) is one the document allows.
#
#   infra/scripts/contract.sh [API base URL, default http://127.0.0.1:3000] [extra `st run` args]
#
# One token with all five scopes is minted at the runner's POST /_local/tokens. Generation is
# deterministic and bounded (--max-examples per operation); the positive-data acceptance check is
# left out because most routes need a member that random data does not name. Reports (JUnit) and
# schemathesis' own files go to .local/run/contract/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

API="${1:-${API:-http://127.0.0.1:3000}}"
shift || true
"$SCRIPTS_DIR/install-python-tools.sh" >/dev/null
activate_venv

scopes='["loyalty/member", "loyalty/pos", "loyalty/support", "loyalty/admin", "loyalty/reports"]'
token="$(curl -sf -X POST "$API/_local/tokens" -d "{\"sub\": \"contract-run\", \"scopes\": $scopes}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')" \
  || die "could not mint a token at $API/_local/tokens (is \`make run\` up?)"

out="$RUN_DIR/contract"
mkdir -p "$out"
cd "$out"   # schemathesis and hypothesis keep their caches in the working directory
# One worker: hypothesis parses lambdas with `ast`, which is not thread-safe on Python 3.11.
st run "$REPO/docs/openapi.yaml" --url "$API" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${CONTRACT_MAX_EXAMPLES:-10}" --generation-deterministic \
  --workers 1 --request-timeout 30 \
  --report junit --report-dir "$out" \
  "$@"
