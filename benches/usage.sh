#!/usr/bin/env bash
# `orchestrator usage` over a large ledger: generates RUNS x PER_RUN instance records
# (examples/gen_ledger.rs; default 10,000 x 100 = 1,000,000) once, then times each
# grouping, best of 5 wall-clock runs (release build).
#
# Usage: benches/usage.sh [RUNS=10000] [PER_RUN=100]
# Target: every `--by` answers in under 300 ms over 1,000,000 instance records.
# Keeps the ledger in $USAGE_DIR (default: /tmp/orchestrator-usage-bench) for reuse.
set -euo pipefail

runs=${1:-10000}
per_run=${2:-100}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --quiet --bin orchestrator --example gen_ledger
bin=$root/target/release/orchestrator
dir=${USAGE_DIR:-/tmp/orchestrator-usage-bench}
mkdir -p "$dir"
ledger=$dir/ledger-$runs-$per_run.sqlite
if [ ! -f "$ledger" ]; then
    start=$(date +%s.%N)
    "$root/target/release/examples/gen_ledger" "$ledger" "$runs" "$per_run"
    echo "generated in $(echo "$(date +%s.%N) - $start" | bc) s ($(du -h "$ledger" | cut -f1))"
fi
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for by in command model project day week month run instance; do
    best=
    for _ in 1 2 3 4 5; do
        s=$(date +%s%N)
        "$bin" usage --ledger "$ledger" --by "$by" --json >/dev/null
        ms=$(( ($(date +%s%N) - s) / 1000000 ))
        if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    done
    echo "usage --by $by: best of 5 ${best} ms"
done
