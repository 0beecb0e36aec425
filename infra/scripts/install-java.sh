#!/usr/bin/env bash
# Ensure a Java runtime >= 17 is on PATH (needed by DynamoDB Local).
# Idempotent: does nothing if a suitable java is already present.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIN_JAVA=17

java_major() {
  # `java -version` prints e.g. 'openjdk version "17.0.15" 2025-04-15' (or "1.8.0_x" for Java 8).
  local v
  v="$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  [[ -n "$v" ]] || { echo 0; return; }
  if [[ "$v" == 1.* ]]; then
    v="${v#1.}"
  fi
  echo "${v%%[.+-]*}"
}

if have java; then
  major="$(java_major)"
  if [[ "$major" =~ ^[0-9]+$ ]] && (( major >= MIN_JAVA )); then
    say "java $major found ($(command -v java)); nothing to do"
    exit 0
  fi
  say "java found but version '$major' < $MIN_JAVA"
fi

if [[ "$(id -u)" -ne 0 ]]; then
  die "Java >= $MIN_JAVA is required for DynamoDB Local. Install it, e.g.:
    sudo apt-get update && sudo apt-get install -y openjdk-17-jre-headless
  (or any JDK/JRE >= $MIN_JAVA on PATH), then re-run."
fi
have apt-get || die "Java >= $MIN_JAVA is required and apt-get is not available; install a JRE >= $MIN_JAVA manually."

say "installing openjdk-17-jre-headless with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends openjdk-17-jre-headless
hash -r
have java || die "java still not on PATH after installing openjdk-17-jre-headless"
say "installed: $(java -version 2>&1 | head -n1)"
