#!/usr/bin/env bash
# Run the real Claude Code CLI once against scripts/fake-anthropic-api.py, isolated from the
# user's config (temp HOME, temp project dir), and print its stdout (stream-json) to stdout.
#
#   scripts/run-claude-fake.sh [SERVER FLAGS…] -- [CLAUDE ARGS…]
#
# Claude args default to: -p --output-format stream-json --verbose --include-partial-messages -- hello
# Environment:
#   CLAUDE      Claude Code binary (default: /work/tools/claude/node_modules/.bin/claude, else `claude`)
#   KEEP=DIR    keep HOME, project dir, server log and claude stderr under DIR
#   PROJECT=DIR run claude in DIR instead of an empty temp dir
# Exit status: claude's (128+N when it died of signal N). Server log and claude stderr are
# printed to stderr after the run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
server_args=()
while [[ $# -gt 0 && $1 != "--" ]]; do server_args+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
claude_args=("$@")
if [[ ${#claude_args[@]} -eq 0 ]]; then
  claude_args=(-p --output-format stream-json --verbose --include-partial-messages -- hello)
fi

CLAUDE=${CLAUDE:-/work/tools/claude/node_modules/.bin/claude}
[[ -x $CLAUDE ]] || CLAUDE=$(command -v claude)

work=${KEEP:-$(mktemp -d)}
mkdir -p "$work/home" "$work/project"
rm -f "$work/port"  # a stale port from an earlier KEEP run would point claude at a dead server
project=${PROJECT:-$work/project}

python3 "$here/fake-anthropic-api.py" --port 0 --port-file "$work/port" --log "$work/api.log" \
  "${server_args[@]}" >"$work/server.out" 2>&1 &
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.05; done
port=$(cat "$work/port")

set +e
(cd "$project" && env HOME="$work/home" \
  ANTHROPIC_BASE_URL="http://127.0.0.1:$port" ANTHROPIC_API_KEY=test \
  DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
  "$CLAUDE" "${claude_args[@]}" </dev/null 2>"$work/claude.stderr")
rc=$?
set -e
{
  echo "--- claude exit status: $rc"
  echo "--- claude stderr:"; cat "$work/claude.stderr"
  echo "--- api log:"; cut -c1-300 "$work/api.log"
} >&2
exit "$rc"
