#!/usr/bin/env bash
# Budget enforcement latency (SPEC section 10: crossing -> SIGTERM in under 10 ms).
#
# RUNS times, N instances of examples/latency_claude.rs run at once under the release
# orchestrator in block mode, each with its own cap (max_tokens_per_command: 1000000).
# Each streams background lines (one usage line every LATENCY_LINE_MS ms, default 20, and
# a 64 KB tool result every 50th), then crosses its cap 0.3-2.3 s after it started. The
# fake Claude records CLOCK_MONOTONIC just before writing the crossing line and in its
# SIGTERM handler; this script prints p50/p90/p99/max of the difference over all
# crossings (RUNS x N; default 10 x 100 = 1000).
#
# Usage: benches/latency.sh [N=100] [RUNS=10]
# ORCHESTRATOR_BIN=path measures another build of the orchestrator.
set -euo pipefail

n=${1:-100}
runs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo build --release --quiet --bin orchestrator --example latency_claude
bin=${ORCHESTRATOR_BIN:-$root/target/release/orchestrator}
fake=$root/target/release/examples/latency_claude

dir=${LATENCY_DIR:-$(mktemp -d /tmp/orchestrator-latency.XXXXXX)}
mkdir -p "$dir"
results=$dir/latency.txt
: >"$results"
cfg=$dir/config.json
{
    echo '{"instances": ['
    for ((i = 1; i <= n; i++)); do
        sep=$([ "$i" -lt "$n" ] && echo , || true)
        printf '{"name": "l%03d", "command": "/latency %d", "max_tokens_per_command": 1000000}%s\n' \
            "$i" "$i" "$sep"
    done
    echo '], "budget": {"enforcement_mode": "block"}}'
} >"$cfg"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "enforcement latency: $runs runs x $n instances; files in $dir"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= runs; r++)); do
    set +e
    LATENCY_OUT=$results "$bin" --config "$cfg" --claude-path "$fake" \
        --max-parallel 0 --startup-delay 0 --kill-grace 5 --json \
        --report "$dir/report-$r.json" >"$dir/events-$r.jsonl" 2>"$dir/stderr-$r.txt"
    code=$?
    set -e
    if [ "$code" -ne 3 ]; then
        echo "run $r: exit code $code, expected 3 (a budget terminated instances)" >&2
    fi
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"

awk '
    $2 == 0 { missed++; next }
    { print ($2 - $1) / 1e6 }
    END { if (missed) printf "%d crossings without a SIGTERM within 5 s\n", missed > "/dev/stderr" }
' "$results" | sort -g >"$dir/latency_ms.txt"
awk -v expected=$((n * runs)) '
    { v[NR] = $1; sum += $1 }
    END {
        if (NR == 0) { print "no measurements"; exit 1 }
        i50 = int(NR * 0.50 + 0.999999); i90 = int(NR * 0.90 + 0.999999)
        i99 = int(NR * 0.99 + 0.999999)
        printf "crossings:      %d measured of %d\n", NR, expected
        printf "latency (ms):   p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f\n",
            v[i50], v[i90], v[i99], v[NR], sum / NR
        printf "target:         p99 < 10 ms: %s\n", (v[i99] < 10 ? "met" : "MISSED")
    }
' "$dir/latency_ms.txt"
