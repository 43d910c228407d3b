#!/bin/sh
# Run one orchestrator per work item, read its --json events, and act on its exit code.
#
#   examples/work-items.sh                       # the built-in demo items, simulated
#   examples/work-items.sh "/test --unit" "/lint src"
#   SIMULATE=0 examples/work-items.sh "/review"  # real Claude Code, real tokens
#
# Environment:
#   ORCHESTRATOR  the orchestrator binary (default: orchestrator on PATH)
#   SIMULATE      1 (default): the built-in simulated Claude, nothing spent; 0: real claude
#   BUDGET        token budget per item, held in block mode (default 30000)
#   OUT           directory for each item's events and report (default: a temporary one)
#   USE_JQ        0: parse with grep/sed even when jq is installed
#   ORCHESTRATOR_SIMULATE_PACE=0 makes simulated runs instant.
#
# Exit status: 0 when every item completed or was stopped by its budget (that is
# reported, not fatal), 1 when an item failed, 2 on a usage/config error, 130/143 when
# interrupted. Uses jq when it is installed, plain grep/sed otherwise.

set -u

ORCHESTRATOR=${ORCHESTRATOR:-orchestrator}
SIMULATE=${SIMULATE:-1}
BUDGET=${BUDGET:-30000}
if [ -z "${OUT:-}" ]; then
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/work-items.XXXXXX") || exit 1
fi

if [ "$#" -eq 0 ]; then
    set -- "/review src/parser.rs" "/test --unit" "/lint src" "write the release notes for 1.4"
fi

sim=""
[ "$SIMULATE" = 1 ] && sim="--simulate"

have_jq=0
if [ "${USE_JQ:-1}" = 1 ] && command -v jq >/dev/null 2>&1; then have_jq=1; fi

# Prints "NAME STATUS TOTAL_TOKENS" for every instance_finished event in file $1.
finished_lines() {
    if [ "$have_jq" = 1 ]; then
        jq -r 'select(.event == "instance_finished")
               | "\(.name) \(.status) \(.usage.total_tokens)"' "$1"
    else
        # Each line starts with {"event":"...", so grep can pick events out; the
        # greedy sed keeps the last "total_tokens", which is the one in "usage".
        grep '^{"event":"instance_finished"' "$1" | while IFS= read -r line; do
            name=$(printf '%s\n' "$line" | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')
            status=$(printf '%s\n' "$line" | sed -n 's/.*"status":"\([^"]*\)".*/\1/p')
            tokens=$(printf '%s\n' "$line" | sed -n 's/.*"total_tokens":\([0-9]*\).*/\1/p')
            printf '%s %s %s\n' "$name" "$status" "$tokens"
        done
    fi
}

# The reason of the first budget_exceeded event in file $1, if any.
budget_message() {
    if [ "$have_jq" = 1 ]; then
        jq -r 'select(.event == "budget_exceeded") | .message' "$1" | head -n 1
    else
        grep '^{"event":"budget_exceeded"' "$1" | head -n 1 |
            sed -n 's/.*"message":"\([^"]*\)".*/\1/p'
    fi
}

done_count=0 over_budget=0 failed=0 n=0
for item in "$@"; do
    n=$((n + 1))
    events="$OUT/item-$n.jsonl"
    report="$OUT/item-$n.report.json"
    # stdout carries the JSON events; the human summary goes to stderr (kept quiet here).
    # $sim is deliberately unquoted: it is empty or one word.
    # shellcheck disable=SC2086
    "$ORCHESTRATOR" $sim --json --quiet --color never \
        --overall-token-budget "$BUDGET" --budget-enforcement-mode block \
        --report "$report" -- "$item" >"$events" 2>"$OUT/item-$n.stderr"
    code=$?

    case $code in
        0)
            done_count=$((done_count + 1))
            finished_lines "$events" | while read -r name status tokens; do
                echo "ok       $item -> $name: $status, $tokens tokens"
            done
            ;;
        3)
            over_budget=$((over_budget + 1))
            echo "budget   $item: stopped by its budget: $(budget_message "$events")"
            ;;
        1)
            failed=$((failed + 1))
            finished_lines "$events" | while read -r name status tokens; do
                echo "FAILED   $item -> $name: $status"
            done
            ;;
        2)
            echo "error    $item: orchestrator refused the call:" >&2
            cat "$OUT/item-$n.stderr" >&2
            exit 2
            ;;
        130 | 143)
            echo "interrupted at item $n; report kept in $report" >&2
            exit "$code"
            ;;
        *)
            failed=$((failed + 1))
            echo "FAILED   $item: unexpected exit code $code" >&2
            ;;
    esac
done

echo "items: $n, completed: $done_count, over budget: $over_budget, failed: $failed (events and reports in $OUT)"
[ "$failed" -eq 0 ]
