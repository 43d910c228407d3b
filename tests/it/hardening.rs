//! Issue 13 ("Hardening"): one binary-level test (or a few) per fault, each failing
//! before its fix. See docs/hardening.md for the fault table.

use crate::common::{
    call, file_names, gone, init, orchestrator, parent_pid, read_json, result, stderr, tempdir,
    wait_exit, wait_for, wait_ready, FakeClaude, HANG_GUARD,
};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn read_all(r: Option<impl Read>) -> String {
    let mut s = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut s);
    }
    String::from_utf8_lossy(&s).into_owned()
}

// ---------------------------------------------------------------- 2: special report files

/// A new FIFO, `dir/report.fifo`.
fn make_fifo(dir: &Path) -> PathBuf {
    let fifo = dir.join("report.fifo");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf-8 path")).expect("path");
    // SAFETY: mkfifo only reads the path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    fifo
}

/// `--report` naming a FIFO writes the report into it; the FIFO stays a FIFO.
#[test]
fn report_into_a_fifo_is_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempdir();
    let fifo = make_fifo(dir.path());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let text = std::fs::read_to_string(&reader_path).unwrap_or_default();
        let _ = tx.send(text);
    });
    let out = orchestrator(dir.path())
        .args(["--simulate", "--report"])
        .arg(&fifo)
        .arg("/x")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kind = std::fs::symlink_metadata(&fifo).expect("stat").file_type();
    assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
    let text = rx
        .recv_timeout(HANG_GUARD)
        .expect("the FIFO reader got nothing");
    let report: Value = serde_json::from_str(&text).expect("report JSON");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["instances"][0]["status"], "completed");
}

/// A FIFO nobody reads is refused with a clear error instead of blocking the end of the
/// run for good; it is still not replaced.
#[test]
fn report_into_a_fifo_without_reader_is_an_error_not_a_hang() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempdir();
    let fifo = make_fifo(dir.path());
    let mut child = orchestrator(dir.path())
        .args(["--simulate", "--report"])
        .arg(&fifo)
        .arg("/x")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child);
    let err = read_all(child.stderr.take());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("a FIFO with no reader"), "{err}");
    assert!(std::fs::symlink_metadata(&fifo)
        .expect("stat")
        .file_type()
        .is_fifo());
}

// ---------------------------------------------------------------- 10: a failed report write

/// A report that cannot be written (here: into /dev/full, through a symlink) makes the
/// run exit 1 and says so in the summary and in the `run_finished` event.
#[test]
fn failed_report_write_is_an_error_in_exit_code_summary_and_event() {
    let dir = tempdir();
    let link = dir.path().join("r.json");
    std::os::unix::fs::symlink("/dev/full", &link).expect("symlink");
    let out = orchestrator(dir.path())
        .args(["--simulate", "--json", "--report", "r.json", "/x"])
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write --report") && err.contains("r.json: No space left on device"),
        "{err}"
    );
    let last: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a last event");
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["exit_code"], 1);
    assert!(
        last["exit_reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot write --report")),
        "{last}"
    );
    // /dev/full is still the device, and the link still points at it.
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        PathBuf::from("/dev/full")
    );
}

// ---------------------------------------------------------------- 7: a stalled --json reader

/// `orchestrator --json FLAGS` on a prompt long enough that the first events alone
/// overflow a pipe's buffer, its stdout a pipe nobody reads yet and its Claude a fake
/// that gets ready and then sleeps (as a single process). Returns once that Claude is
/// ready, with its pid.
fn start_with_a_stalled_json_reader(dir: &Path, flags: &[&str], stderr: Stdio) -> (Child, i32) {
    let claude = FakeClaude::new()
        .ready()
        .hang()
        .write(dir, "claude-sleeper");
    let huge_prompt = format!("explain {}", "x".repeat(100_000));
    let mut child = orchestrator(dir)
        .arg("--claude-path")
        .arg(&claude)
        .arg("--json")
        .args(flags)
        .arg(huge_prompt)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn");
    let pid = wait_ready(dir, 1, &mut child)[0];
    (child, pid)
}

/// stdout is a pipe nobody reads: `--timeout` still ends the instance, and the run ends
/// after a bounded wait for the reader, saying that events were not delivered.
#[test]
fn stalled_json_reader_does_not_stop_the_timeout() {
    let dir = tempdir();
    let (mut child, pid) = start_with_a_stalled_json_reader(
        dir.path(),
        &["--timeout", "2", "--kill-grace", "1"],
        Stdio::piped(),
    );
    wait_for(
        &format!("the timed-out instance {pid} ended"),
        &mut child,
        |_| gone(pid).then_some(()),
    );
    // Still nobody reads stdout: the run ends anyway.
    let status = wait_exit(&mut child);
    let err = read_all(child.stderr.take());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("has read nothing"), "{err}");
    // What the pipe holds is the start of the event stream.
    let out = read_all(child.stdout.take());
    assert!(
        out.starts_with("{\"event\":\"run_started\""),
        "{}",
        &out[..80.min(out.len())]
    );
}

/// stdout is a pipe nobody reads: SIGINT is still acted on (the instance is terminated)
/// and every event is delivered once the reader reads.
#[test]
fn stalled_json_reader_does_not_stop_sigint() {
    let dir = tempdir();
    let (mut child, pid) =
        start_with_a_stalled_json_reader(dir.path(), &["--kill-grace", "1"], Stdio::null());
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    wait_for(
        &format!("SIGINT acted on: instance {pid} ended"),
        &mut child,
        |_| gone(pid).then_some(()),
    );
    // Now read: everything arrives, ending with run_finished.
    let out = read_all(child.stdout.take());
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(130));
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(names.first(), Some(&"run_started"));
    assert_eq!(names.last(), Some(&"run_finished"));
    assert!(names.contains(&"instance_finished"), "{names:?}");
}

// ---------------------------------------------------------------- 9: the open-file limit

/// The orchestrator under `sh -c 'ulimit …; exec orchestrator …'`, 40 simulated
/// instances at once with `--log-dir`.
fn forty_under_ulimit(dir: &Path, ulimit: &str) -> std::process::Output {
    let mut c = orchestrator(dir);
    let mut args: Vec<String> = vec![
        "-c".into(),
        format!("ulimit {ulimit} && exec \"$0\" \"$@\""),
        crate::common::bin().to_string_lossy().into_owned(),
    ];
    // `orchestrator(dir)` set the fast defaults as arguments of the binary; keep them.
    args.extend(c.get_args().map(|a| a.to_string_lossy().into_owned()));
    args.extend(["--simulate", "--report", "r.json", "--log-dir", "logs"].map(String::from));
    args.extend((1..=40).map(|i| format!("prompt {i}")));
    let envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = c
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let mut sh = std::process::Command::new("sh");
    sh.current_dir(dir).args(&args).stdin(Stdio::null());
    for (k, v) in envs {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    c = sh;
    c.output().expect("run")
}

fn completed_count(dir: &Path) -> usize {
    read_json(&dir.join("r.json"))["instances"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["status"] == "completed").count())
        .unwrap_or(0)
}

/// A hard limit of 64 open files cannot carry 40 instances with logs at once: fewer run
/// at a time (one warning) and every instance completes, each with both log files.
#[test]
fn low_open_file_limit_queues_instead_of_failing() {
    let dir = tempdir();
    let out = forty_under_ulimit(dir.path(), "-n 64");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(completed_count(dir.path()), 40, "{err}");
    assert_eq!(
        err.matches("the open-file limit (64) allows").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("Too many open files"), "{err}");
    let logs = std::fs::read_dir(dir.path().join("logs"))
        .expect("logs")
        .count();
    assert_eq!(logs, 80);
}

/// A low soft limit under a high hard one is simply raised: no warning, no queueing.
#[test]
fn low_soft_open_file_limit_is_raised() {
    let dir = tempdir();
    let out = forty_under_ulimit(dir.path(), "-Sn 64");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(completed_count(dir.path()), 40, "{err}");
    assert!(!err.contains("open-file limit"), "{err}");
}

// ---------------------------------------------------------------- 11: no controlling terminal

/// Run under a pseudo-terminal (`script`), an instance cannot open /dev/tty: it has no
/// controlling terminal, so it can never be stopped by SIGTTIN/SIGTTOU.
#[test]
fn instances_have_no_controlling_terminal() {
    if !command_exists("script") {
        eprintln!("skipped: no `script` (util-linux) to provide a terminal");
        return;
    }
    let dir = tempdir();
    let claude = FakeClaude::new()
        .sh("if (exec 3</dev/tty) 2>/dev/null; then echo has-tty; else echo no-tty; fi > \"$(dirname \"$0\")/tty-result\"")
        .line(&result(10, 5, 0.0, false, "ok"))
        .write(dir.path(), "claude-tty");
    let orch = crate::common::bin();
    let cmd = format!(
        "'{}' --startup-delay 0 --status-report-interval 0 --claude-path '{}' --report r.json /x",
        orch.display(),
        claude.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let seen = std::fs::read_to_string(dir.path().join("tty-result")).expect("tty-result");
    assert_eq!(seen.trim(), "no-tty");
    let report = read_json(&dir.path().join("r.json"));
    assert_eq!(report["instances"][0]["status"], "completed");
}

fn command_exists(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A fake claude that stops itself with SIGSTOP.
fn self_stopping_claude(dir: &Path) -> PathBuf {
    FakeClaude::new()
        .sh("kill -STOP $$")
        .hang()
        .write(dir, "claude-stopper")
}

/// A stopped instance is ended by `--timeout` with SIGTERM (it is continued so that it
/// can act on it), not left for SIGKILL after the whole grace period.
#[test]
fn stopped_instance_is_ended_by_the_timeout() {
    let dir = tempdir();
    let claude = self_stopping_claude(dir.path());
    let out = orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args([
            "--timeout",
            "1",
            "--kill-grace",
            "60",
            "--report",
            "r.json",
            "/x",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = read_json(&dir.path().join("r.json"));
    let inst = &report["instances"][0];
    assert_eq!(inst["status"], "timed_out");
    assert_eq!(inst["signal"], libc::SIGTERM, "{inst}");
}

/// The status report shows a stopped instance as stopped.
#[test]
fn stopped_instance_is_shown_as_stopped() {
    use std::io::BufRead;
    let dir = tempdir();
    let claude = self_stopping_claude(dir.path());
    // Not `orchestrator()`: that one turns the status report off.
    let mut child = Command::new(crate::common::bin())
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--status-report-interval", "0.2", "--startup-delay", "0"])
        .args(["--kill-grace", "60", "/x"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if line.contains("stopped by a signal") {
                let _ = tx.send(line);
                break;
            }
        }
    });
    let shown = rx.recv_timeout(HANG_GUARD);
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_exit(&mut child);
    assert!(
        shown.is_ok(),
        "the stopped instance was never shown as stopped"
    );
    assert_eq!(status.code(), Some(130));
}

// ---------------------------------------------------------------- 8: a 1 GiB line

/// A 1 GiB tool-result line without a newline until its end, then calls with usage: the
/// orchestrator's peak memory stays far below the line's size, usage is exact and the
/// long line is not malformed (it is read shortened, see `LineReader`).
#[test]
fn gigabyte_line_costs_bounded_memory_and_usage_still_counts() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .sh(r#"printf '%s' '{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"'"#)
        .sh(r"head -c 1073741824 /dev/zero | tr '\0' x")
        .sh(r#"printf '%s\n' '"}]}}'"#)
        // An assistant line of 8 MB (over LINE_CAP) whose usage must count.
        .sh(r#"printf '%s' '{"type":"assistant","message":{"id":"big","model":"claude-sonnet-4-5","content":[{"type":"text","text":"'"#)
        .sh(r"head -c 8000000 /dev/zero | tr '\0' y")
        .sh(r#"printf '%s\n' '"}],"usage":{"input_tokens":300,"output_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}'"#)
        .lines(call("m1", 1000, 200))
        .line(&result(1300, 207, 0.01, false, "done"))
        .write(dir.path(), "claude-huge");
    let out = orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--report", "r.json", "/x"])
        .env("ORCHESTRATOR_RUSAGE", "1")
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let max_rss_kb: u64 = err
        .split("max_rss_kb=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no max_rss_kb in {err}"));
    eprintln!("orchestrator peak RSS with a 1 GiB line: {max_rss_kb} KiB");
    assert!(
        max_rss_kb < 128 * 1024,
        "peak RSS {max_rss_kb} KiB for a 1 GiB line"
    );
    let report = read_json(&dir.path().join("r.json"));
    let inst = &report["instances"][0];
    assert_eq!(inst["status"], "completed");
    assert_eq!(inst["malformed_lines"], 0);
    assert_eq!(inst["usage"]["total_tokens"], 1200 + 307);
}

// ---------------------------------------------------------------- 3, 4: log files

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `args` as user `nobody` (setpriv), or `None` when that is not possible here.
fn as_nobody(args: &[&str]) -> Option<bool> {
    if !is_root() || !command_exists("setpriv") {
        return None;
    }
    let ok = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .args(args)
        .status()
        .ok()?
        .success();
    Some(ok)
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A world-writable log directory without the sticky bit is refused: anyone could swap
/// the log files for links. Nothing is launched.
#[test]
fn log_dir_others_can_write_is_refused() {
    let dir = tempdir();
    let logs = dir.path().join("shared");
    std::fs::create_dir(&logs).expect("mkdir");
    chmod(&logs, 0o777);
    let out = orchestrator(dir.path())
        .args(["--simulate", "--log-dir", "shared", "/x"])
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not sticky"), "{err}");
    assert_eq!(std::fs::read_dir(&logs).expect("ls").count(), 0);
}

/// Another user plants `a.jsonl -> victim` in a sticky shared log directory: the run is
/// refused with the file named; the victim is neither written nor chmodded. A directory
/// another user owns is refused too.
#[test]
fn planted_log_symlink_is_never_followed() {
    let dir = tempdir();
    chmod(dir.path(), 0o755);
    let logs = dir.path().join("shared");
    std::fs::create_dir(&logs).expect("mkdir");
    chmod(&logs, 0o1777);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").expect("victim");
    chmod(&victim, 0o644);
    let link = logs.join("a.jsonl");
    let link_s = link.to_string_lossy().into_owned();
    let victim_s = victim.to_string_lossy().into_owned();
    let planted = match as_nobody(&["ln", "-s", &victim_s, &link_s]) {
        Some(true) => true,
        _ => {
            eprintln!("skipped the other-user part: not root or no `nobody`/setpriv here; planting the link ourselves");
            std::os::unix::fs::symlink(&victim, &link).expect("symlink");
            false
        }
    };
    let config = dir.path().join("c.json");
    std::fs::write(&config, r#"{"instances":[{"name":"a","command":"/x"}]}"#).expect("config");
    let out = orchestrator(dir.path())
        .args(["--simulate", "--log-dir", "shared", "-c", "c.json"])
        .output()
        .expect("run");
    let err = stderr(&out);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    assert_eq!(
        std::fs::metadata(&victim)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    if planted {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("a.jsonl exists and is not a file of ours"),
            "{err}"
        );
        // A directory owned by another user is refused as well.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        let c = std::ffi::CString::new(theirs.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: chown only reads the path; 65534 is nobody.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        let out = orchestrator(dir.path())
            .args(["--simulate", "--log-dir", "theirs", "/x"])
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("owned by another user"), "{err}");
    } else {
        // Our own link from an earlier run is simply removed; the victim stays intact.
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(!std::fs::symlink_metadata(&link)
            .expect("a.jsonl")
            .file_type()
            .is_symlink());
    }
}

/// Names whose file names used to collide (`a b` was logged as `a_b-2`, the legal name
/// of another instance) each get their own files, with their own output.
#[test]
fn every_instance_gets_its_own_log_files() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"instances":[{"name":"a_b-2","command":"first prompt"},{"name":"a b","command":"second prompt"},{"name":"A","command":"third"},{"name":"a","command":"fourth"}]}"#,
    )
    .expect("config");
    let out = orchestrator(dir.path())
        .args(["--simulate", "--log-dir", "logs", "-c", "c.json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        file_names(&dir.path().join("logs")),
        [
            "A.jsonl",
            "A.stderr",
            "a_b-2.jsonl",
            "a_b-2.stderr",
            "a_b~2.jsonl",
            "a_b~2.stderr",
            "a~4.jsonl",
            "a~4.stderr"
        ]
    );
    let first = std::fs::read_to_string(dir.path().join("logs/a_b-2.jsonl")).expect("log");
    let second = std::fs::read_to_string(dir.path().join("logs/a_b~2.jsonl")).expect("log");
    assert!(first.contains("first prompt") && !first.contains("second prompt"));
    assert!(second.contains("second prompt") && !second.contains("first prompt"));
}

/// Unmounts a tmpfs when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The log disk fills up: the instance still completes, and the incomplete log is
/// reported once — a warning, the report's `log_error`, the `instance_finished` event and
/// the exit reason. The earlier run's file at that name is gone, not left beside.
#[test]
fn full_log_disk_is_reported_once_per_instance() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    chmod(&logs, 0o700);
    let mounted = is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(&logs)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let _guard = Mounted(logs.clone());
    std::fs::write(logs.join("x.jsonl"), "STALE from an earlier run\n").expect("stale");
    // ~300 KB of stdout: 300 lines of 1 KB, then a result.
    let pad = "p".repeat(1000);
    let claude = FakeClaude::new()
        .sh(&format!(
            "i=0\nwhile [ $i -lt 300 ]; do printf '%s\\n' '{{\"type\":\"system\",\"subtype\":\"note\",\"pad\":\"{pad}\"}}'; i=$((i+1)); done"
        ))
        .line(&result(10, 5, 0.0, false, "ok"))
        .write(dir.path(), "claude-loud");
    let out = orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--json", "--report", "r.json", "--log-dir", "logs", "x"])
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("its log is incomplete").count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let report = read_json(&dir.path().join("r.json"));
    let inst = &report["instances"][0];
    assert_eq!(inst["status"], "completed");
    assert!(
        inst["log_error"]
            .as_str()
            .is_some_and(|e| e.contains("x.jsonl") && e.contains("No space left")),
        "{inst}"
    );
    assert!(
        report["exit_reason"]
            .as_str()
            .is_some_and(|r| r.contains("incomplete --log-dir logs: x")),
        "{report}"
    );
    let finished: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "instance_finished")
        .collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["log_error"], inst["log_error"]);
    let kept = std::fs::read_to_string(logs.join("x.jsonl")).unwrap_or_default();
    assert!(
        !kept.contains("STALE"),
        "the earlier run's log is still there"
    );
}

// ---------------------------------------------------------------- 5: orchestrator killed

/// Pids of live (not zombie) processes whose command line contains `marker`.
fn live_with_marker(marker: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
                && !gone(pid)
        })
        .collect()
}

/// `kill -9` of the orchestrator `child`, then every process with `marker` in its command
/// line must be gone (within [`HANG_GUARD`]; what is left is killed, and the test fails).
fn sigkill_leaves_nothing_running(child: &mut Child, marker: &str) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let deadline = Instant::now() + HANG_GUARD;
    let mut left = live_with_marker(marker);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = live_with_marker(marker);
    }
    for &pid in &left {
        // SAFETY: clean up after a failure; these are our test's processes.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "left running after kill -9: {left:?}");
}

/// Starts the orchestrator in `dir` with `claude` as Claude and `args`, its output
/// discarded.
fn start_quiet(dir: &Path, claude: &Path, args: impl IntoIterator<Item = String>) -> Child {
    orchestrator(dir)
        .arg("--claude-path")
        .arg(claude)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// `kill -9` of the orchestrator while three instances run tools — plain children, a
/// Claude and a tool that ignore SIGTERM, a tool that escaped with `setsid` — leaves
/// nothing running: the watchdog kills every instance's whole tree.
#[test]
fn sigkill_of_the_orchestrator_takes_every_process_tree_with_it() {
    let dir = tempdir();
    let marker = format!("9{}", std::process::id());
    let plain = FakeClaude::new()
        .sh(&format!("sleep {marker}1 &\nsleep {marker}2 &"))
        .ready()
        .sh("wait")
        .write(dir.path(), "claude-plain");
    let stubborn = FakeClaude::new()
        .ignore_sigterm()
        .sh(&format!("sh -c \"trap '' TERM; sleep {marker}3\" &"))
        .ready()
        .sh(&format!("while :; do sleep {marker}4; done"))
        .write(dir.path(), "claude-stubborn");
    let escaper = FakeClaude::new()
        .sh(&format!(
            "setsid sleep {marker}5 &\nsetsid sh -c 'sleep {marker}6 & wait' &"
        ))
        .ready()
        .sh("wait")
        .write(dir.path(), "claude-escaper");
    let dispatch = FakeClaude::new()
        .sh(&format!(
            "case \"$*\" in *plain*) exec '{}';; *stubborn*) exec '{}';; *) exec '{}';; esac",
            plain.display(),
            stubborn.display(),
            escaper.display()
        ))
        .write(dir.path(), "claude");
    let mut child = start_quiet(
        dir.path(),
        &dispatch,
        ["--kill-grace", "1", "plain", "stubborn", "escaper"].map(String::from),
    );
    wait_ready(dir.path(), 3, &mut child);
    assert!(live_with_marker(&marker).len() >= 6, "tools not running");
    sigkill_leaves_nothing_running(&mut child, &marker);
}

/// A tool that escaped with `setsid` and whose parent exited is adopted by the
/// orchestrator (a child subreaper) and belongs to no instance's tree any more; the
/// watchdog's periodic list of the orchestrator's children is what finds it after a
/// `kill -9`.
#[test]
fn sigkill_of_the_orchestrator_takes_the_processes_it_adopted_with_it() {
    adopted_tool_dies_with_the_orchestrator(0);
}

/// The same while other instances start and end all the time: the watchdog's list is
/// refreshed even though its pipe never stays quiet for a whole interval.
#[test]
fn processes_it_adopted_die_with_it_while_instances_come_and_go() {
    adopted_tool_dies_with_the_orchestrator(5000);
}

/// Runs an instance whose tool escapes and is adopted by the orchestrator, beside `churn`
/// instances that exit at once (one at a time), then `kill -9`s the orchestrator.
fn adopted_tool_dies_with_the_orchestrator(churn: usize) {
    let dir = tempdir();
    let marker = format!("8{}{churn}", std::process::id());
    let adopter = FakeClaude::new()
        .sh(&format!("sh -c 'setsid sleep {marker}1 &'"))
        .ready()
        .sh(&format!("sleep {marker}2"))
        .write(dir.path(), "claude-adopter");
    let claude = FakeClaude::new()
        .sh(&format!(
            "case \"$*\" in *adopter*) exec '{}';; esac",
            adopter.display()
        ))
        .write(dir.path(), "claude");
    let args = ["-j", "2", "adopter"].map(String::from);
    let churned = (0..churn).map(|i| format!("q{i}"));
    let mut child = start_quiet(dir.path(), &claude, args.into_iter().chain(churned));
    wait_ready(dir.path(), 1, &mut child);
    let orchestrator_pid = child.id() as i32;
    wait_for(
        "the escaped tool adopted by the orchestrator",
        &mut child,
        |_| {
            live_with_marker(&format!("{marker}1"))
                .into_iter()
                .find(|&pid| parent_pid(pid) == Some(orchestrator_pid))
        },
    );
    // The watchdog lists adopted processes every SNAPSHOT_EVERY (200 ms); five of those
    // is a wide margin.
    std::thread::sleep(Duration::from_secs(1));
    if churn > 0 {
        assert_eq!(
            child.try_wait().expect("wait"),
            None,
            "the churn ended too soon"
        );
    }
    sigkill_leaves_nothing_running(&mut child, &marker);
}

// ---------------------------------------------------------------- 12: text safety

/// The dry run prints no raw ESC, BEL or bidi control from prompts, models or extra args.
#[test]
fn dry_run_prints_no_terminal_controls() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"instances":[{"name":"evil","command":"fix \u001b[2J\u0007 it \u202e gnp.exe","model":"son\u001b]0;x\u0007net","extra_args":["--x\u0007","\u202eabc"]}]}"#,
    )
    .expect("config");
    let out = orchestrator(dir.path())
        .args(["--simulate", "--dry-run", "-c", "c.json"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.contains("gnp.exe"), "{text}");
    for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(!text.contains(bad), "{bad:?} in the dry run:\n{text:?}");
    }
}

/// A child's stderr that contains a configured `env` value is redacted in the report,
/// the events and the summary.
#[test]
fn env_values_are_redacted_from_captured_text() {
    let dir = tempdir();
    let secret = "sk-live-0123456789";
    std::fs::write(
        dir.path().join("c.json"),
        format!(
            r#"{{"instances":[{{"name":"leaky","command":"/x","env":{{"MY_TOKEN":"{secret}"}}}}]}}"#
        ),
    )
    .expect("config");
    let claude = FakeClaude::new()
        .sh("echo \"auth failed for token $MY_TOKEN\" >&2")
        .exit(1)
        .write(dir.path(), "claude-leaky");
    let out = orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--json", "--report", "r.json", "-c", "c.json"])
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let report = std::fs::read_to_string(dir.path().join("r.json")).expect("report");
    let events = String::from_utf8_lossy(&out.stdout);
    for (what, text) in [
        ("report", report.as_str()),
        ("events", &events),
        ("summary", &err),
    ] {
        assert!(
            !text.contains(secret),
            "the secret is in the {what}: {text}"
        );
    }
    assert!(
        report.contains("auth failed for token [redacted]"),
        "{report}"
    );
}

/// An `env` key that is really `NAME=value` is refused without echoing the value.
#[test]
fn env_key_with_a_value_is_not_echoed() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"instances":[{"command":"/x","env":{"MY_TOKEN=SECRETVALUE":"x"}}]}"#,
    )
    .expect("config");
    let out = orchestrator(dir.path())
        .args(["--simulate", "-c", "c.json"])
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("MY_TOKEN=…"), "{err}");
    assert!(!err.contains("SECRETVALUE"), "{err}");
}

/// A key given twice is an error naming its JSON path, not "last one wins".
#[test]
fn duplicate_config_keys_are_an_error_with_the_path() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"instances":[{"command":"/a"},{"command":"/b","timeout":5,"timeout":50}]}"#,
    )
    .expect("config");
    let out = orchestrator(dir.path())
        .args(["--simulate", "-c", "c.json"])
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("instances[1].timeout: duplicate key \"timeout\""),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Warnings about an instance name it (they used to say `instance=0`).
#[test]
fn warnings_name_the_instance() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&result(10, 5, 0.0, false, "ok"))
        // The escaped process holds stdout; the script waits until it has left the group.
        .sh("d=\"$(dirname \"$0\")\"\nsetsid sh -c \"touch '$d/escaped'; exec sleep 30\" &")
        .sh("while [ ! -e \"$d/escaped\" ]; do sleep 0.01; done")
        .exit(0)
        .write(dir.path(), "claude-escape");
    let out = orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .arg("first prompt")
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("stopped reading it"), "{err}");
    assert!(err.contains("instance=first-prompt"), "{err}");
    assert!(!err.contains("instance=0"), "{err}");
}
