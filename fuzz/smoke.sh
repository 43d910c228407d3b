#!/bin/sh
# Short fuzz run for CI or before a commit: seeds the corpora, then runs each target for
# ${FUZZ_SECONDS:-30} seconds. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz passes (see
# docs/hardening.md). Exits non-zero on the first crash; the input is in fuzz/artifacts/.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${FUZZ_SECONDS:-30}
"$root/fuzz/seed.sh"
cd "$root"
RUSTC_BOOTSTRAP=1 cargo fuzz run stream_accounting -- \
    -max_total_time="$secs" -max_len=2048 -dict="$root/fuzz/stream.dict"
RUSTC_BOOTSTRAP=1 cargo fuzz run config_parse -- \
    -max_total_time="$secs" -dict="$root/fuzz/config.dict"
