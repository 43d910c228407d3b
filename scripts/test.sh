#!/usr/bin/env bash
# The test command (README, "Run the tests"; CI runs exactly this): the PostgreSQL
# ledger's tests start a real server of their own from the Debian package's binaries,
# so the package is installed first where it is missing (as root, or with sudo), then
# `cargo test` runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [ -z "${ORCHESTRATOR_TEST_PG_BIN:-}" ]; then
  echo "== apt-get install postgresql (the PostgreSQL ledger's tests start a server of their own)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

cargo test "$@"
