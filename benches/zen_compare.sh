#!/usr/bin/env bash
# CPU of this orchestrator against zen (pip package netra-zen==1.4.2) on the same fleet:
# N instances (default 20), each streaming about MB MiB (default 8.4) of stream-json
# from the simulated Claude in lines of about 50 KB (zen cannot read lines over 64 KiB),
# measured in one run of this script, one after the other.
#
# Both orchestrators run the same zen-format config and the same fake `claude` (a
# script that runs this binary's simulated Claude), found first on PATH. Each one's own
# CPU (user + sys) is getrusage(RUSAGE_SELF) at its exit — the simulated Claude
# processes are not counted: ORCHESTRATOR_RUSAGE=1 here (which adds in the CPU of the
# orchestrator's watchdog process, part of its cost), and for zen a Python wrapper
# that runs zen in-process and prints resource.getrusage(RUSAGE_SELF) at exit.
#
# Usage: benches/zen_compare.sh [N=20] [MB=8.4] [SECS=10]
# Needs python3 with venv; installs netra-zen==1.4.2 into $ZEN_VENV (default
# /tmp/orchestrator-zen-venv) on first use. Files are kept in $ZEN_DIR (default: a
# fresh temporary directory). ORCHESTRATOR_BIN=path measures another build of the
# orchestrator; ZEN_SKIP=1 measures the orchestrator alone (to compare two builds in
# alternating runs without zen's two minutes each). ZEN_SAME_STREAM=1 has the fake
# `claude` drop --include-partial-messages, so that the orchestrator (and the floor) read
# the stream zen reads: a measurement only, since SPEC section 4's argv has the flag.
#
# With zen, a third run measures the floor under any orchestrator of this fleet:
# examples/pipe_floor.rs starts the same fake `claude` with the orchestrator's argv, reads
# the pipes at the orchestrator's pace and only finds line ends. The orchestrator's argv
# has --include-partial-messages (SPEC section 4) and zen's does not, so the orchestrator
# reads more bytes and about six times the lines.
# A fourth run, the same program with PIPE_FLOOR_TRACK=1, also hands every line to the
# orchestrator's Tracker: the floor of an orchestrator reduced to one thread that reads,
# parses and accounts (no tasks, channels, events, budgets or watchdog). Its total tokens
# should equal the report's.
set -euo pipefail

n=${1:-20}
mb=${2:-8.4}
secs=${3:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --quiet --bin orchestrator --example pipe_floor
bin=${ORCHESTRATOR_BIN:-$root/target/release/orchestrator}

venv=${ZEN_VENV:-/tmp/orchestrator-zen-venv}
if [ -z "${ZEN_SKIP:-}" ] && [ ! -x "$venv/bin/zen" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q netra-zen==1.4.2
fi

dir=${ZEN_DIR:-$(mktemp -d /tmp/orchestrator-zen.XXXXXX)}
mkdir -p "$dir/bin" "$dir/work/.claude/commands"
if [ -n "${ZEN_SAME_STREAM:-}" ]; then
    # The stream zen reads: the fake claude drops --include-partial-messages.
    printf '#!/bin/sh\nfor a; do shift; [ "$a" = --include-partial-messages ] || set -- "$@" "$a"; done\nexec %q __simulated-claude "$@"\n' "$bin" >"$dir/bin/claude"
else
    printf '#!/bin/sh\nexec %q __simulated-claude "$@"\n' "$bin" >"$dir/bin/claude"
fi
chmod +x "$dir/bin/claude"
echo "Compare (simulated)." >"$dir/work/.claude/commands/cmp.md"
cfg=$dir/config.json
{
    echo '{"instances": ['
    for ((i = 1; i <= n; i++)); do
        sep=$([ "$i" -lt "$n" ] && echo , || true)
        printf '{"name": "c%02d", "command": "/cmp %d #mb=%s #kb=24 #secs=%s"}%s\n' "$i" "$i" "$mb" "$secs" "$sep"
    done
    echo ']}'
} >"$cfg"
cat >"$dir/zen_rusage.py" <<'EOF'
import atexit, resource, sys
def report():
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(f"zen rusage: user_s={r.ru_utime:.3f} sys_s={r.ru_stime:.3f} max_rss_kb={r.ru_maxrss}", file=sys.stderr)
atexit.register(report)
from zen_orchestrator import run
sys.argv = ["zen"] + sys.argv[1:]
sys.exit(run())
EOF

export PATH="$dir/bin:$PATH" ORCHESTRATOR_SIMULATE_PACE=1
echo "zen comparison: $n instances x ~${mb} MiB over ~${secs} s; files in $dir"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
run_one() { # label, rusage-line prefix, stderr file, command...
    local label=$1 prefix=$2 err=$3
    shift 3
    echo "load before $label: $(cut -d' ' -f1-3 /proc/loadavg)"
    local start end
    start=$(date +%s.%N)
    (cd "$dir/work" && "$@") >"$dir/$label.out" 2>"$err" || true
    end=$(date +%s.%N)
    local ru user sys rss
    ru=$(grep "^$prefix rusage:" "$err" | tail -1)
    user=$(field user_s "$ru")
    sys=$(field sys_s "$ru")
    rss=$(field max_rss_kb "$ru")
    awk -v l="$label" -v u="$user" -v s="$sys" -v r="$rss" -v a="$start" -v b="$end" 'BEGIN {
        printf "%-13s wall %6.2f s  CPU user %6.3f s + sys %6.3f s = %6.3f s  peak RSS %6.1f MiB\n",
            l, b - a, u, s, u + s, r / 1024 }'
    echo "$user $sys" >"$dir/$label.cpu"
}

if [ -z "${ZEN_SKIP:-}" ]; then
    run_one zen zen "$dir/zen.err" \
        "$venv/bin/python" "$dir/zen_rusage.py" --config "$cfg" --workspace "$dir/work" \
        --startup-delay 0 --log-level silent
fi
ORCHESTRATOR_RUSAGE=1 run_one orchestrator orchestrator "$dir/orchestrator.err" \
    "$bin" --config "$cfg" --claude-path "$dir/bin/claude" --startup-delay 0 \
    --max-parallel 0 --no-ledger --quiet --report "$dir/report.json"

sed -n '/"totals"/,/}/p' "$dir/report.json" | grep -o '"total_tokens": *[0-9]*' |
    sed 's/^/orchestrator report, the fleet: /'
[ -n "${ZEN_SKIP:-}" ] && exit 0
floor=("$root/target/release/examples/pipe_floor" "$n" "$dir/bin/claude"
    -p --output-format stream-json --verbose --include-partial-messages --
    "/cmp {i} #mb=$mb #kb=24 #secs=$secs")
run_one pipe_floor pipe_floor "$dir/pipe_floor.err" "${floor[@]}"
grep -o 'bytes=[0-9]* lines=[0-9]*' "$dir/pipe_floor.err" | sed 's/^/pipe_floor read: /'
PIPE_FLOOR_TRACK=1 run_one tracked_floor pipe_floor "$dir/tracked_floor.err" "${floor[@]}"
grep -o 'tokens=[0-9]*' "$dir/tracked_floor.err" | sed 's/^/tracked_floor total: /'
read -r zu zs <"$dir/zen.cpu"
ratio() { # label, the run measured, what it did
    local u s
    read -r u s <"$dir/$2.cpu"
    awk -v zu="$zu" -v zs="$zs" -v u="$u" -v s="$s" -v l="$1:" -v w="$3" 'BEGIN {
        z = zu + zs; o = u + s
        if (o > 0) printf "%-14s zen uses %.0fx the CPU of %s\n", l, z / o, w }'
}
ratio ratio orchestrator "this orchestrator"
ratio "floor ratio" pipe_floor "only reading these pipes"
ratio "tracked ratio" tracked_floor "one thread reading and accounting them"
