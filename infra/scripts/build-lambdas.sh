#!/usr/bin/env bash
# Build every Lambda function the template deploys for arm64 (provided.al2023), the way
# `sam build` does (BuildMethod: rust-cargolambda → cargo-lambda cross-compiling through zig),
# in one cargo invocation. Output: target/lambda/<binary>/bootstrap and bootstrap.zip.
#
#   infra/scripts/build-lambdas.sh           # every function in infra/template.yaml
#   infra/scripts/build-lambdas.sh accrue    # just these binaries
#
# cargo-lambda and zig come from the dev venv (requirements-dev.txt), the aarch64 target from
# rustup; both are installed here if missing, so this works with or without SAM installed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

"$SCRIPTS_DIR/install-python-tools.sh"
activate_venv
ensure_arm64_target

if (( $# > 0 )); then
  binaries=("$@")
else
  # The template is the list of what is deployed: every `Binary:` of a rust-cargolambda build.
  mapfile -t binaries < <(awk '$1 == "Binary:" { print $2 }' infra/template.yaml)
fi
(( ${#binaries[@]} > 0 )) || die "no Binary: entries in infra/template.yaml"

args=()
for binary in "${binaries[@]}"; do args+=(--bin "$binary"); done
say "cargo lambda build --release --arm64 for ${binaries[*]}"
started=$SECONDS
cargo lambda build --release --arm64 --output-format zip "${args[@]}"
say "built ${#binaries[@]} functions in $((SECONDS - started)) s"

# What is deployed, per function: the stripped bootstrap inside the zip, and the zip.
printf '%-22s %12s %12s\n' function bootstrap zip
for binary in "${binaries[@]}"; do
  zip="target/lambda/$binary/bootstrap.zip"
  [[ -f "$zip" ]] || die "$zip was not produced"
  unpacked=$(python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("bootstrap").file_size)' "$zip")
  printf '%-22s %12s %12s\n' "$binary" "$unpacked" "$(stat -c %s "$zip")"
done
