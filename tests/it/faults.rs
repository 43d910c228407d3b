//! Fault injection at the binary level: fake `claude` scripts that crash, hang, flood,
//! fork and misbehave, and an orchestrator that is itself signalled mid-run.
//!
//! Every scenario checks the same four things (see docs/hardening.md):
//! 1. the run finishes (a hang guard fails the test instead of hanging CI; it never
//!    asserts speed);
//! 2. accounting is exact for the lines that were fully written;
//! 3. no process is left: every process group from an `instance_started` event is gone
//!    (`kill(-pgid, 0)` fails with ESRCH — zombies would still count);
//! 4. the `--report` file is written, is valid JSON and matches the `run_finished` event.

use crate::common::{call, init, tempdir, wait_ready, FakeClaude, HANG_GUARD};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The orchestrator with fast, quiet defaults, a fake claude, `--json` and a report file.
fn orchestrator(dir: &Path, claude: &Path) -> Command {
    let mut c = crate::common::orchestrator(dir);
    c.arg("--claude-path")
        .arg(claude)
        .arg("--json")
        .arg("--report")
        .arg(report_path(dir));
    c
}

fn report_path(dir: &Path) -> PathBuf {
    dir.join("report.json")
}

// ---------------------------------------------------------------- fake claude

fn result(input: u64, output: u64, cost: f64, text: &str) -> String {
    crate::common::result(input, output, cost, false, text)
}

// ---------------------------------------------------------------- running and checking

/// A running orchestrator whose `--json` events are read as they come.
struct Run {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stderr: std::thread::JoinHandle<String>,
}

/// What a finished run left behind.
struct Finished {
    status: ExitStatus,
    events: Vec<Value>,
    stderr: String,
    report: Value,
}

impl Run {
    fn start(cmd: &mut Command) -> Run {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn orchestrator");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stderr.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        Run {
            child,
            events,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Reads events until one matches `pred`.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("never saw {what}; events: {:?}", self.seen);
                }
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0, "could not signal the orchestrator");
    }

    /// Waits for the exit (killing it and failing past the hang guard), then checks that
    /// the report file is valid and matches the `run_finished` event.
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + HANG_GUARD;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.seen.extend(self.events.try_iter());
                panic!(
                    "orchestrator hung; events so far: {:?}",
                    self.seen.iter().map(|e| &e["event"]).collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut events = self.seen;
        events.extend(self.events.iter());
        let stderr = self.stderr.join().unwrap_or_default();
        let last = events.last().cloned().unwrap_or(Value::Null);
        assert_eq!(last["event"], "run_finished", "stderr: {stderr}");
        assert_eq!(last["exit_code"].as_i64(), status.code().map(i64::from));
        Finished {
            status,
            events,
            stderr,
            report: last,
        }
    }
}

impl Finished {
    fn instance(&self, name: &str) -> &Value {
        self.report["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name))
            .unwrap_or_else(|| panic!("no instance {name} in {}", self.report))
    }

    /// Process groups of every started instance.
    fn pgids(&self) -> Vec<i32> {
        self.events
            .iter()
            .filter(|e| e["event"] == "instance_started")
            .map(|e| e["pid"].as_i64().expect("pid") as i32)
            .collect()
    }

    /// The four promises of this file, beyond the per-scenario accounting.
    fn assert_clean(&self, dir: &Path, started: usize) {
        let pgids = self.pgids();
        assert_eq!(pgids.len(), started, "instances started");
        for pgid in pgids {
            assert!(pgid > 1);
            // SAFETY: signal 0 only probes; a negative pid names the group.
            let r = unsafe { libc::kill(-pgid, 0) };
            let err = std::io::Error::last_os_error().raw_os_error();
            assert!(
                r == -1 && err == Some(libc::ESRCH),
                "process group {pgid} is still there (kill: {r}, {err:?})"
            );
        }
        let text = std::fs::read(report_path(dir)).expect("report file written");
        let file: Value = serde_json::from_slice(&text).expect("report is valid JSON");
        assert_eq!(file["event"], "run_finished");
        for key in ["exit_code", "exit_reason", "totals", "budgets", "instances"] {
            assert_eq!(file[key], self.report[key], "report {key}");
        }
        // Totals are the sum of the instances.
        let sum: u64 = self.report["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| i["usage"]["total_tokens"].as_u64().expect("total"))
            .sum();
        assert_eq!(self.report["totals"]["total_tokens"].as_u64(), Some(sum));
    }
}

fn tokens(inst: &Value) -> u64 {
    inst["usage"]["total_tokens"]
        .as_u64()
        .expect("total_tokens")
}

// ---------------------------------------------------------------- children misbehaving

/// Half a JSON line, then SIGKILL: the complete lines count, the half line is one
/// malformed line, and the instance fails naming the signal.
#[test]
fn child_crashing_mid_line() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .sh(r#"printf '{"type":"assistant","message":{"id":"m2","model":"claude-sonnet-4-5","usage":{"input_tokens":5000,"outp'"#)
        .sh("kill -9 $$")
        .write(dir.path(), "claude-crash");
    let run = Run::start(orchestrator(dir.path(), &claude).arg("/crash"));
    let f = run.finish();
    assert_eq!(f.status.code(), Some(1), "{}", f.stderr);
    let inst = f.instance("crash");
    assert_eq!(inst["status"], "failed");
    assert_eq!(inst["signal"], 9);
    assert!(
        inst["reason"].as_str().unwrap_or("").contains("SIGKILL"),
        "{inst}"
    );
    assert_eq!(tokens(inst), 1200);
    assert_eq!(inst["malformed_lines"], 1);
    f.assert_clean(dir.path(), 1);
}

/// stdout closed but the process keeps running. EOF on stdout does not end an instance:
/// the process may still be working, so the orchestrator waits for it to exit, and
/// `--timeout` is what bounds that wait (SIGTERM, then SIGKILL after the grace).
#[test]
fn child_closing_stdout_but_running_on_is_ended_by_the_timeout() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .sh("exec 1>&-")
        .hang()
        .write(dir.path(), "claude-mute");
    let run = Run::start(orchestrator(dir.path(), &claude).args([
        "--timeout",
        "1",
        "--kill-grace",
        "1",
        "/mute",
    ]));
    let f = run.finish();
    assert_eq!(f.status.code(), Some(1), "{}", f.stderr);
    let inst = f.instance("mute");
    assert_eq!(inst["status"], "timed_out");
    assert_eq!(tokens(inst), 1200);
    f.assert_clean(dir.path(), 1);
}

/// Same, without a timeout: the run waits for the process to exit, and then reports it
/// by its exit (here: no `result` line).
#[test]
fn child_closing_stdout_is_waited_for_without_a_timeout() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .sh("exec 1>&-")
        .sleep(0.5)
        .stderr("finished late")
        .write(dir.path(), "claude-mute");
    let f = Run::start(orchestrator(dir.path(), &claude).arg("/mute")).finish();
    assert_eq!(f.status.code(), Some(1), "{}", f.stderr);
    let inst = f.instance("mute");
    assert_eq!(inst["status"], "failed");
    let reason = inst["reason"].as_str().unwrap_or("");
    // The stderr written after stdout closed was still collected: the exit was awaited.
    assert!(
        reason.contains("without a result") && reason.contains("finished late"),
        "{reason}"
    );
    assert_eq!(tokens(inst), 1200);
    f.assert_clean(dir.path(), 1);
}

/// A block-mode budget is crossed by a child that ignores SIGTERM: it is SIGKILLed after
/// the grace, and every line it wrote — including those after the SIGTERM — counts.
#[test]
fn child_ignoring_sigterm_after_a_budget_crossing() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .ignore_sigterm()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .lines(call("m2", 1000, 200))
        .lines(call("m3", 1000, 200))
        .hang()
        .write(dir.path(), "claude-stubborn");
    let f = Run::start(orchestrator(dir.path(), &claude).args([
        "--budget-enforcement-mode",
        "block",
        "--overall-token-budget",
        "2000",
        "--kill-grace",
        "0.5",
        "/stubborn",
    ]))
    .finish();
    assert_eq!(f.status.code(), Some(3), "{}", f.stderr);
    let inst = f.instance("stubborn");
    assert_eq!(inst["status"], "terminated");
    assert_eq!(inst["signal"], 9, "{inst}");
    assert_eq!(tokens(inst), 3600);
    assert!(f
        .events
        .iter()
        .any(|e| e["event"] == "instance_terminated" && e["reason"] == "budget"));
    f.assert_clean(dir.path(), 1);
}

/// Tool processes that inherited stdout/stderr and outlive Claude: the instance still
/// ends when Claude exits (its group is SIGKILLed, which closes the pipes).
#[test]
fn grandchildren_holding_the_pipes_after_the_child_exits() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .line(&result(1000, 200, 0.006, "done"))
        .sh("sleep 1000 &")
        .sh("(sleep 1000; echo never) &")
        .exit(0)
        .write(dir.path(), "claude-forks");
    let f = Run::start(orchestrator(dir.path(), &claude).args(["/a", "/b"])).finish();
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    for name in ["a", "b"] {
        let inst = f.instance(name);
        assert_eq!(inst["status"], "completed");
        assert_eq!(tokens(inst), 1200);
    }
    f.assert_clean(dir.path(), 2);
}

/// A grandchild that leaves the instance's process group (`setsid`), keeps stdout open
/// and has a child of its own. Group signals cannot reach them; the orchestrator stops
/// reading a pipe that stays open after its instance exited (instead of hanging forever,
/// which it did before), and kills such leftovers before it exits.
#[test]
fn grandchild_escaping_the_group_with_the_pipes_open() {
    let dir = tempdir();
    let pidfile = dir.path().join("escaped.pid");
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .line(&result(1000, 200, 0.006, "done"))
        .sh(&format!(
            "setsid sh -c 'sleep 1000 & echo $! > {}; wait' &",
            pidfile.display()
        ))
        .sh("while [ ! -s \"$(dirname \"$0\")/escaped.pid\" ]; do sleep 0.05; done")
        .exit(0)
        .write(dir.path(), "claude-escapes");
    let f = Run::start(orchestrator(dir.path(), &claude).arg("/escape")).finish();
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    let inst = f.instance("escape");
    assert_eq!(inst["status"], "completed");
    assert_eq!(tokens(inst), 1200);
    f.assert_clean(dir.path(), 1);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: probe only.
    let r = unsafe { libc::kill(pid, 0) };
    assert_eq!(r, -1, "escaped grandchild {pid} is still running");
}

/// Same, but the escaped process keeps writing lines (never quiet for a second): reading
/// stops at the post-exit limit (10 s after the exit) instead of following it forever.
#[test]
fn grandchild_escaping_the_group_and_writing_on() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .line(&result(1000, 200, 0.006, "done"))
        .sh("setsid sh -c 'echo $$ > noisy.pid; while :; do echo noise; sleep 0.1; done' &")
        .sleep(0.3)
        .exit(0)
        .write(dir.path(), "claude-noisy");
    let f = Run::start(orchestrator(dir.path(), &claude).arg("/noisy")).finish();
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    let inst = f.instance("noisy");
    assert_eq!(inst["status"], "completed");
    assert_eq!(tokens(inst), 1200);
    assert!(inst["malformed_lines"].as_u64().unwrap_or(0) >= 1, "{inst}");
    assert!(f.stderr.contains("stopped reading"), "{}", f.stderr);
    f.assert_clean(dir.path(), 1);
    let pid: i32 = std::fs::read_to_string(dir.path().join("noisy.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: probe only; the escaped writer led its own group.
    assert_eq!(
        unsafe { libc::kill(-pid, 0) },
        -1,
        "escaped writer {pid} survived"
    );
}

/// A 100 MB line that carries usage: it is read whole and counted, alongside the rest.
#[test]
fn hundred_megabyte_line_with_usage() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .sh(r#"printf '{"type":"assistant","message":{"id":"m2","model":"claude-sonnet-4-5","usage":{"input_tokens":300,"output_tokens":7},"content":[{"type":"text","text":"'"#)
        .sh("head -c 100000000 /dev/zero | tr '\\0' a")
        .sh(r#"printf '"}]}}\n'"#)
        .line(&result(1300, 207, 0.01, "big"))
        .write(dir.path(), "claude-huge");
    let f = Run::start(orchestrator(dir.path(), &claude).arg("/huge")).finish();
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    let inst = f.instance("huge");
    assert_eq!(inst["status"], "completed");
    assert_eq!(tokens(inst), 1507);
    assert_eq!(inst["malformed_lines"], 0);
    f.assert_clean(dir.path(), 1);
}

/// Invalid UTF-8 inside strings (usage still counts), a line of pure garbage (skipped,
/// counted as malformed), and invalid UTF-8 in the result text and on stderr: the report
/// stays valid JSON.
#[test]
fn invalid_utf8_everywhere() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .sh(r#"printf '{"type":"assistant","message":{"id":"m2","model":"claude-sonnet-4-5","content":[{"type":"text","text":"bad \377\376 bytes"}],"usage":{"input_tokens":10,"output_tokens":5}}}\n'"#)
        .sh(r#"printf '\377\376\375 not json at all \300\n'"#)
        .sh(r#"printf '\377 stderr garbage\n' >&2"#)
        .sh(r#"printf '{"type":"result","subtype":"success","is_error":false,"result":"ok \377 end","total_cost_usd":0.01,"modelUsage":{"claude-sonnet-4-5":{"inputTokens":1010,"outputTokens":205}}}\n'"#)
        .write(dir.path(), "claude-utf8");
    let f = Run::start(orchestrator(dir.path(), &claude).arg("/utf8")).finish();
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    let inst = f.instance("utf8");
    assert_eq!(inst["status"], "completed");
    assert_eq!(tokens(inst), 1215);
    assert_eq!(inst["malformed_lines"], 1);
    assert_eq!(inst["result"], "ok \u{FFFD} end");
    f.assert_clean(dir.path(), 1);
}

/// 50 MB of stderr while stdout is being written: no deadlock, exact accounting, the
/// whole stderr in the (private) log and only a tail in memory.
#[test]
fn stderr_flood_while_writing_stdout() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    let mut s = FakeClaude::new()
        .line(&init())
        .sh("head -c 50000000 /dev/zero | tr '\\0' e >&2 &");
    for i in 0..20 {
        s = s.lines(call(&format!("m{i}"), 100, 20));
    }
    let claude = s
        .sh("wait")
        .stderr("last words")
        .line(&result(2000, 400, 0.01, "loud"))
        .write(dir.path(), "claude-loud");
    let f = Run::start(
        orchestrator(dir.path(), &claude)
            .arg("--log-dir")
            .arg(&logs)
            .arg("/loud"),
    )
    .finish();
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    let inst = f.instance("loud");
    assert_eq!(inst["status"], "completed");
    assert_eq!(tokens(inst), 2400);
    let entries: Vec<PathBuf> = std::fs::read_dir(&logs)
        .expect("log dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let err_log = entries
        .iter()
        .find(|p| p.extension().is_some_and(|x| x == "stderr"))
        .unwrap_or_else(|| panic!("no stderr log in {entries:?}"));
    let len = std::fs::metadata(err_log).expect("stderr log").len();
    assert_eq!(len, 50_000_000 + "last words\n".len() as u64);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&logs), 0o700);
    assert_eq!(mode(err_log), 0o600);
    f.assert_clean(dir.path(), 1);
}

// ---------------------------------------------------------------- the orchestrator signalled

/// Two instances running (each wrote 1200 tokens, then sleeps with a grandchild), a third
/// queued behind `--max-parallel 2`; the orchestrator gets `sig`.
fn signalled_mid_run(sig: i32, code: i32, describe: &str) {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .sh("sleep 1000 &")
        .ready()
        .sh("wait")
        .write(dir.path(), "claude-long");
    let mut run = Run::start(orchestrator(dir.path(), &claude).args([
        "--max-parallel",
        "2",
        "/one",
        "/two",
        "/three",
    ]));
    wait_ready(dir.path(), 2, &mut run.child);
    run.signal(sig);
    let f = run.finish();
    assert_eq!(f.status.code(), Some(code), "{}", f.stderr);
    assert!(
        f.report["exit_reason"]
            .as_str()
            .unwrap_or("")
            .contains(describe),
        "{}",
        f.report["exit_reason"]
    );
    for name in ["one", "two"] {
        let inst = f.instance(name);
        assert_eq!(inst["status"], "interrupted");
        assert_eq!(tokens(inst), 1200, "{name}");
    }
    let three = f.instance("three");
    assert_eq!(three["status"], "interrupted");
    assert_eq!(tokens(three), 0);
    assert!(three["reason"]
        .as_str()
        .unwrap_or("")
        .contains("not started"));
    assert_eq!(
        f.events
            .iter()
            .filter(|e| e["event"] == "instance_terminated" && e["reason"] == "interrupt")
            .count(),
        2
    );
    f.assert_clean(dir.path(), 2);
}

#[test]
fn sigint_mid_run_exits_130() {
    signalled_mid_run(libc::SIGINT, 130, "SIGINT");
}

#[test]
fn sigterm_mid_run_exits_143() {
    signalled_mid_run(libc::SIGTERM, 143, "SIGTERM");
}

#[test]
fn sighup_mid_run_exits_129() {
    signalled_mid_run(libc::SIGHUP, 129, "SIGHUP");
}

/// The first SIGINT sends SIGTERM, which the child ignores; with an hour of grace only the
/// second SIGINT can end it, and does so at once (SIGKILL to the group).
#[test]
fn second_sigint_kills_at_once() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .ignore_sigterm()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .ready()
        .hang()
        .write(dir.path(), "claude-stubborn");
    let mut run =
        Run::start(orchestrator(dir.path(), &claude).args(["--kill-grace", "3600", "/stubborn"]));
    wait_ready(dir.path(), 1, &mut run.child);
    run.signal(libc::SIGINT);
    run.wait_for("the first SIGINT handled", |e| {
        e["event"] == "instance_terminated" && e["reason"] == "interrupt"
    });
    run.signal(libc::SIGINT);
    let f = run.finish();
    assert_eq!(f.status.code(), Some(130), "{}", f.stderr);
    let inst = f.instance("stubborn");
    assert_eq!(inst["status"], "interrupted");
    assert_eq!(inst["signal"], 9);
    assert_eq!(tokens(inst), 1200);
    assert!(f.stderr.contains("second interrupt"), "{}", f.stderr);
    f.assert_clean(dir.path(), 1);
}
