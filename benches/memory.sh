#!/usr/bin/env bash
# Per-instance memory must not grow with output size (SPEC section 10): one simulated
# instance streams 2, 20 and 200 MiB (about 100 KB lines; `#mb=N` adds turns, not longer
# lines) as fast as it can (ORCHESTRATOR_SIMULATE_PACE=0), and the orchestrator's own
# peak RSS (getrusage at exit, via ORCHESTRATOR_RUSAGE) is printed for each, with the
# exactness check of examples/check_report.rs.
#
# Then the memory an idle instance costs (issue 16: at most 64 KiB): peak RSS with
# MEMORY_IDLE_FEW (default 20) and MEMORY_IDLE_MANY (default 520) simulated instances
# that print a few lines and then mostly sleep (`#mb=0.01 #secs=10`, all running at once),
# divided over the difference in instances.
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

few=${MEMORY_IDLE_FEW:-20}
many=${MEMORY_IDLE_MANY:-520}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
idle_rss() {
    local n=$1 args=()
    for ((i = 1; i <= n; i++)); do args+=("/idle $i #mb=0.01 #secs=10"); done
    ORCHESTRATOR_RUSAGE=1 "$bin" --simulate --quiet --no-ledger --max-parallel 0 \
        --startup-delay 0 --report "$dir/report-idle-$n.json" "${args[@]}" \
        >/dev/null 2>"$dir/stderr-idle-$n.txt" || true
    "$check" "$dir/report-idle-$n.json" | head -1 >&2
    sed -n 's/.* max_rss_kb=\([0-9]*\).*/\1/p' "$dir/stderr-idle-$n.txt"
}
rss_few=$(idle_rss "$few")
rss_many=$(idle_rss "$many")
awk -v a="$rss_few" -v b="$rss_many" -v f="$few" -v m="$many" 'BEGIN {
    printf "idle instances: %d -> %.1f MiB, %d -> %.1f MiB peak RSS: %.1f KiB per instance (target <= 64 KiB)\n",
        f, a / 1024, m, b / 1024, (b - a) / (m - f) }'
