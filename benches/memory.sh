#!/usr/bin/env bash
# Per-instance memory must not grow with output size (SPEC section 10): one simulated
# instance streams 2, 20 and 200 MiB (about 100 KB lines; `#mb=N` adds turns, not longer
# lines) as fast as it can (ORCHESTRATOR_SIMULATE_PACE=0), and the orchestrator's own
# peak RSS (getrusage at exit, via ORCHESTRATOR_RUSAGE) is printed for each, with the
# exactness check of examples/check_report.rs.
#
# Usage: benches/memory.sh [MiB ...]   (default: 2 20 200)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --quiet --bin orchestrator --example check_report
bin=$root/target/release/orchestrator
check=$root/target/release/examples/check_report
dir=${MEMORY_DIR:-$(mktemp -d /tmp/orchestrator-memory.XXXXXX)}
mkdir -p "$dir"

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2 20 200)
printf '%8s  %9s  %8s  %s\n' "stream" "peak RSS" "CPU" "totals"
for mb in "${sizes[@]}"; do
    ORCHESTRATOR_RUSAGE=1 ORCHESTRATOR_SIMULATE_PACE=0 "$bin" --simulate --quiet \
        --report "$dir/report-$mb.json" "/memory #mb=$mb" >/dev/null 2>"$dir/stderr-$mb.txt" || true
    ru=$(grep '^orchestrator rusage:' "$dir/stderr-$mb.txt")
    rss=$(sed -n 's/.* max_rss_kb=\([0-9]*\).*/\1/p' <<<"$ru")
    cpu=$(awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); t[kv[1]] = kv[2] } }
               END { printf "%.2f s", t["user_s"] + t["sys_s"] }' <<<"$ru")
    exact=$("$check" "$dir/report-$mb.json" | head -1)
    printf '%5s MiB  %5.1f MiB  %8s  %s\n' "$mb" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')" \
        "$cpu" "$exact"
done
