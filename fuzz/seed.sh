#!/bin/sh
# Seeds the fuzz corpora (git-ignored) from the transcripts and example configs.
# Usage: fuzz/seed.sh   (from anywhere)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
acc="$root/fuzz/corpus/stream_accounting"
cfg="$root/fuzz/corpus/config_parse"
mkdir -p "$acc" "$cfg"
for f in "$root"/tests/fixtures/*.jsonl; do
    [ -f "$f" ] && cp "$f" "$acc/"
done
for f in "$root"/examples/*.json; do
    [ -f "$f" ] && cp "$f" "$cfg/"
done
# Each transcript line on its own too: short inputs mutate faster than whole transcripts.
for f in "$root"/tests/fixtures/*.jsonl; do
    base=$(basename "$f" .jsonl)
    n=0
    while IFS= read -r line; do
        n=$((n + 1))
        printf '%s\n' "$line" > "$acc/$base-line$n.jsonl"
    done < "$f"
done
echo "corpora now hold $(ls "$acc" | wc -l) stream inputs and $(ls "$cfg" | wc -l) configs"
