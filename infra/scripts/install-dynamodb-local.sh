#!/usr/bin/env bash
# Install DynamoDB Local into <repo>/.local/dynamodb.
#
# DynamoDB Local is taken from the npm package amplify-dynamodb-simulator, which ships
# the DynamoDBLocal.jar + DynamoDBLocal_lib/ under package/emulator/. The tarball is
# pinned by version and by the registry's sha512 integrity; the script aborts on mismatch.
# Idempotent: skips when the stamp file records the pinned version.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKG_NAME="amplify-dynamodb-simulator"
PKG_VERSION="2.9.30"
# `npm view amplify-dynamodb-simulator@2.9.30 dist.integrity`
PKG_INTEGRITY="sha512-xTeeRLvzEfqyd5lh3bH4c0kHvSHHmmhD5ZDsHFKAQ5g2Zl6JqlFdutaQhCLHzxEp6Ry1o7TB6niIoXuQAnSewQ=="

STAMP="$DYNAMODB_DIR/.installed-$PKG_NAME"
WANT_STAMP="$PKG_NAME@$PKG_VERSION $PKG_INTEGRITY"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT_STAMP" \
      && -f "$DYNAMODB_DIR/DynamoDBLocal.jar" && -d "$DYNAMODB_DIR/DynamoDBLocal_lib" ]]; then
  say "DynamoDB Local ($PKG_NAME@$PKG_VERSION) already installed in $DYNAMODB_DIR; skipping"
  exit 0
fi

have npm || die "npm is required to fetch $PKG_NAME@$PKG_VERSION (install Node.js/npm)"
have openssl || die "openssl is required to verify the tarball checksum"
have tar || die "tar is required"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/dynamodb-local.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

say "fetching $PKG_NAME@$PKG_VERSION with npm pack"
(cd "$tmp" && npm pack --silent "$PKG_NAME@$PKG_VERSION" >/dev/null 2>"$tmp/npm.err") \
  || { cat "$tmp/npm.err" >&2; die "npm pack $PKG_NAME@$PKG_VERSION failed"; }
tgz="$tmp/$PKG_NAME-$PKG_VERSION.tgz"
[[ -f "$tgz" ]] || die "expected tarball $tgz not found after npm pack"

got="sha512-$(openssl dgst -sha512 -binary "$tgz" | openssl base64 -A)"
if [[ "$got" != "$PKG_INTEGRITY" ]]; then
  die "checksum mismatch for $PKG_NAME@$PKG_VERSION:
    expected $PKG_INTEGRITY
    got      $got"
fi
say "checksum OK ($PKG_INTEGRITY)"

mkdir -p "$tmp/x"
tar -xzf "$tgz" -C "$tmp/x" package/emulator
[[ -f "$tmp/x/package/emulator/DynamoDBLocal.jar" && -d "$tmp/x/package/emulator/DynamoDBLocal_lib" ]] \
  || die "tarball does not contain package/emulator/DynamoDBLocal.jar and DynamoDBLocal_lib/"

# Replace any previous install atomically-ish: build next to it, then swap.
mkdir -p "$LOCAL_DIR"
staging="$LOCAL_DIR/.dynamodb.new"
rm -rf "$staging"
mv "$tmp/x/package/emulator" "$staging"
printf '%s\n' "$WANT_STAMP" >"$staging/.installed-$PKG_NAME"
rm -rf "$DYNAMODB_DIR"
mv "$staging" "$DYNAMODB_DIR"
say "installed DynamoDB Local into $DYNAMODB_DIR"
