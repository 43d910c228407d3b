#!/usr/bin/env bash
# What the kernel charges any program for writing the bytes `--log-dir` keeps: 1 GiB
# (about what `SCALE_LOGS=1 benches/scale.sh` writes) into one new file, in writes of
# 8 KiB (the log buffer) and 64 KiB, as plain writes and with RWF_DONTCACHE (pages
# dropped once written back: Linux 6.14+, not tmpfs), ROUNDS times each. Prints the
# writer's sys time for each: the floor under the log part of the scale run's CPU on
# this machine and file system, and how much it moves from one run to the next
# (docs/performance.md, "Sixth round").
#
# Usage: benches/write_floor.sh [DIR=a fresh directory under /tmp] [ROUNDS=3]
set -euo pipefail
dir=${1:-$(mktemp -d /tmp/orchestrator-write-floor.XXXXXX)}
rounds=${2:-3}
mkdir -p "$dir"
echo "file system: $(df -T "$dir" | awk 'NR == 2 {print $2}'), kernel $(uname -r)"
for ((r = 1; r <= rounds; r++)); do
    for bs in 8192 65536; do
        for flags in 0 128; do
            rm -f "$dir/f"
            sync
            python3 - "$dir/f" "$bs" "$flags" <<'PY'
import os, resource, sys
path, bs, flags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = b"x" * bs
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
for _ in range((1 << 30) // bs):
    if os.pwritev(fd, [buf], -1, flags) != bs:
        sys.exit("short write")
os.close(fd)
sys_s = resource.getrusage(resource.RUSAGE_SELF).ru_stime - before
mode = "RWF_DONTCACHE" if flags else "plain"
print(f"1 GiB in {bs // 1024:>2} KiB writes, {mode:<13}: sys {sys_s:.2f} s")
PY
        done
    done
done
rm -f "$dir/f"
