#!/usr/bin/env python3
"""Send a signal to a running `claude -p` while it streams, and report how it ends.

    signal-claude.py SIG WAIT GROUP OUT -- CLAUDE_ARGV...

Starts CLAUDE_ARGV in its own session (as the orchestrator does), with stdin from /dev/null.
WAIT seconds after the first `message_start` line it sends SIG (TERM, INT, KILL, HUP…) to
the pid (GROUP=0) or to the process group (GROUP=1). Then it waits for the process, writes
its stdout to OUT and its stderr to OUT.err, and prints whether it exited or was killed by a
signal. A second later it lists any `sleep` processes still alive, because Claude Code runs
Bash tools in a session of their own, so they can outlive claude. Point the fake API at a
slow tool with `--tool-command "sleep 37"`.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time


def main():
    if len(sys.argv) < 7 or sys.argv[5] != "--":
        sys.exit(__doc__)
    sig = getattr(signal, "SIG" + sys.argv[1])
    wait_s = float(sys.argv[2])
    group = sys.argv[3] == "1"
    out = sys.argv[4]
    argv = sys.argv[6:]
    with open(out + ".err", "w") as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                             start_new_session=True)
    lines = []

    def reader():
        for line in p.stdout:
            lines.append(line)

    th = threading.Thread(target=reader)
    th.start()
    sent = None
    status = None
    deadline = time.time() + 120
    while time.time() < deadline:
        pid, st = os.waitpid(p.pid, os.WNOHANG)
        if pid:
            status = st
            break
        if sent is None and any(b'"message_start"' in line for line in lines):
            time.sleep(wait_s)
            sent = time.time()
            if group:
                os.killpg(p.pid, sig)
            else:
                os.kill(p.pid, sig)
        time.sleep(0.02)
    if status is None:
        os.killpg(p.pid, signal.SIGKILL)
        _, status = os.waitpid(p.pid, 0)
    ended = time.time()
    th.join()
    with open(out, "wb") as f:
        f.write(b"".join(lines))
    last = None
    if lines:
        try:
            last = json.loads(lines[-1]).get("type")
        except ValueError:
            last = "unparsable"
    how = ("killed by signal %d" % os.WTERMSIG(status)) if os.WIFSIGNALED(status) else (
        "exited with code %d" % os.WEXITSTATUS(status))
    print("%s; %.2fs after the signal; %d lines; last line type: %s" % (
        how, ended - (sent or ended), len(lines), last))
    time.sleep(1)
    alive = subprocess.run(["pgrep", "-a", "-x", "sleep"], capture_output=True, text=True).stdout.strip()
    print("sleep processes still alive: %s" % (alive or "none"))


if __name__ == "__main__":
    main()
