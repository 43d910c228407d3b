#!/usr/bin/env bash
# Scale run (SPEC section 10): N simulated instances at once, each streaming about MB MiB
# of stream-json over about SECS seconds, through the release binary. Prints the
# orchestrator's own CPU time and peak RSS (ORCHESTRATOR_RUSAGE: getrusage(RUSAGE_SELF)
# at exit plus its watchdog process's CPU, so the N simulator processes are not
# counted), the wall time, and whether
# every instance's totals are exact (examples/check_report.rs against
# simulate::expected_totals).
#
# Usage: benches/scale.sh [N=500] [MB=2] [SECS=20]
# Targets: CPU under 25% of one core on average, peak RSS under 64 MB, every total exact.
# Keeps its files in $SCALE_DIR (default: a fresh temporary directory) for inspection.
# ORCHESTRATOR_BIN=path runs another build of the orchestrator (to compare versions).
# SCALE_LEDGER=path records the run in that usage ledger (default: --no-ledger), to
# measure what recording costs; with SCALE_PERIODIC=1 the run also has a daily token
# budget (never reached), shared through that ledger (a share every 250 ms, claims in
# batches before the launches), to measure the shared path (issue 12); with a ledger the
# ledger thread's own CPU is printed too. SCALE_JSON=1 adds --json (events to a
# file) and SCALE_LOGS=1 adds --log-dir (raw output of every instance under
# $SCALE_DIR/logs, about 1.1 GB at the defaults, deleted before each run).
# What the kernel charges for those logs depends on the machine as much as on the
# orchestrator (docs/performance.md, "Seventh round"): in a VM whose free memory the
# host has taken back, page cache grown into it costs about 2 s of sys per GiB (0.2 s
# into memory just freed, as by deleting the last run's logs); on ext4 without a journal,
# each file created within minutes of deleting many others scans past them (about
# 0.3 s for 1000 files after 1000 deletions; the script notes when SCALE_DIR is on such
# a file system). A SCALE_DIR on a journaled file system (an ext4 image on a loop
# device will do) avoids the second.
set -euo pipefail

n=${1:-500}
mb=${2:-2}
secs=${3:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo build --release --quiet --bin orchestrator --example check_report
bin=${ORCHESTRATOR_BIN:-$root/target/release/orchestrator}
check=$root/target/release/examples/check_report

dir=${SCALE_DIR:-$(mktemp -d /tmp/orchestrator-scale.XXXXXX)}
mkdir -p "$dir"
cfg=$dir/config.json
{
    echo '{"instances": ['
    for ((i = 1; i <= n; i++)); do
        sep=$([ "$i" -lt "$n" ] && echo , || true)
        # Distinct prompts, so the instances differ in turns and tokens.
        printf '{"name": "i%04d", "command": "/scale %d #mb=%s #secs=%s"}%s\n' \
            "$i" "$i" "$mb" "$secs" "$sep"
    done
    # Budgets in play (ledger decisions on every usage delta) but never reached.
    echo '], "budget": {"overall_tokens": 100000000000, "commands": {"/scale": 100000000000},'
    echo '  "enforcement_mode": "block"}}'
} >"$cfg"

# Many pipes and processes at once.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -n "${SCALE_LEDGER:-}" ]; then
    ledger_args=(--ledger "$SCALE_LEDGER")
    if [ -n "${SCALE_PERIODIC:-}" ]; then
        ledger_args+=(--daily-token-budget 100000000000)
    fi
else
    ledger_args=(--no-ledger)
fi
extra_args=()
if [ -n "${SCALE_JSON:-}" ]; then
    extra_args+=(--json)
fi
if [ -n "${SCALE_LOGS:-}" ]; then
    rm -rf "$dir/logs"
    extra_args+=(--log-dir "$dir/logs")
    dev=$(basename "$(df --output=source "$dir" | tail -1)")
    if [ -d "/proc/fs/ext4/$dev" ] && ! compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null; then
        echo "note: $dir is on ext4 without a journal: creating the logs costs more within minutes of deleting others (see the top of this script)"
    fi
fi
echo "scale run: $n instances x ~${mb} MiB over ~${secs} s; files in $dir"
echo "options: ${ledger_args[*]} ${extra_args[*]+${extra_args[*]}}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
set +e
ORCHESTRATOR_RUSAGE=1 ORCHESTRATOR_SIMULATE_PACE=1 "$bin" --config "$cfg" --simulate \
    --max-parallel 0 --startup-delay 0 --report "$dir/report.json" \
    "${ledger_args[@]}" ${extra_args[@]+"${extra_args[@]}"} \
    >"$dir/events.jsonl" 2>"$dir/stderr.txt"
code=$?
set -e
end=$(date +%s.%N)
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"

ru=$(grep '^orchestrator rusage:' "$dir/stderr.txt" || true)
if [ -z "$ru" ]; then
    echo "no rusage line in $dir/stderr.txt (exit code $code)" >&2
    exit 1
fi
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$ru"; }
user=$(field user_s)
sys=$(field sys_s)
rss=$(field max_rss_kb)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
bytes=$(awk -v n="$n" -v mb="$mb" 'BEGIN { printf "%.0f", n * mb }')
awk -v u="$user" -v s="$sys" -v w="$wall" -v r="$rss" -v c="$code" -v m="$bytes" 'BEGIN {
    printf "exit code:      %d\n", c
    printf "wall time:      %.2f s\n", w
    printf "orchestrator:   user %.2f s + sys %.2f s = %.2f s CPU\n", u, s, u + s
    printf "average CPU:    %.1f%% of one core (target < 25%%)\n", 100 * (u + s) / w
    printf "peak RSS:       %.1f MiB (target < 64 MB)\n", r / 1024
    printf "stream read:    ~%d MiB, %.1f MiB/s\n", m, m / w
}'
lt=$(grep '^ledger thread rusage:' "$dir/stderr.txt" || true)
if [ -n "$lt" ]; then
    awk -v u="$(sed -n 's/.* user_s=\([^ ]*\).*/\1/p' <<<"$lt")" \
        -v s="$(sed -n 's/.* sys_s=\([^ ]*\).*/\1/p' <<<"$lt")" \
        'BEGIN { printf "ledger thread:  user %.2f s + sys %.2f s = %.2f s CPU\n", u, s, u + s }'
fi
if [ -n "${SCALE_JSON:-}" ]; then
    grep -c '"event":"usage"' "$dir/events.jsonl" | sed 's/^/usage events:   /'
fi
if [ -n "${SCALE_LOGS:-}" ]; then
    du -sm "$dir/logs" | awk '{ print "raw logs:       " $1 " MiB" }'
fi
"$check" "$dir/report.json"
