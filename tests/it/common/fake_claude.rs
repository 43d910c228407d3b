//! The one way to write a fake `claude` (or any small child process) and to wait for it.
//!
//! A [`FakeClaude`] is a `/bin/sh` script built step by step: lines to print, pauses,
//! a hang, an exit code, marker files, signal traps and, for tests that must act while
//! it runs, a ready-file handshake that [`wait_ready`] waits for. Files it writes go next
//! to the script (`$(dirname "$0")`), which is the test's temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use orchestrator::runtime::procfs;

/// Only catches hangs: every wait normally ends in a few seconds; none asserts speed.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// Prefix of the handshake files that [`FakeClaude::ready`] writes (`ready-PID`).
const READY: &str = "ready-";

/// A fake `claude`: a shell script written by [`FakeClaude::write`].
pub struct FakeClaude {
    script: String,
}

impl Default for FakeClaude {
    fn default() -> FakeClaude {
        FakeClaude {
            script: "#!/bin/sh\n".into(),
        }
    }
}

/// `s` as one single-quoted shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `name` in the script's own directory, as a shell word.
fn beside(name: &str) -> String {
    format!("\"$(dirname \"$0\")\"/{}", quote(name))
}

impl FakeClaude {
    pub fn new() -> FakeClaude {
        FakeClaude::default()
    }

    /// Raw shell, for what the other steps do not say.
    pub fn sh(mut self, raw: &str) -> FakeClaude {
        self.script.push_str(raw);
        self.script.push('\n');
        self
    }

    /// Prints `line` and a newline on stdout, byte for byte.
    pub fn line(self, line: &str) -> FakeClaude {
        let step = format!("printf '%s\\n' {}", quote(line));
        self.sh(&step)
    }

    pub fn lines<S: AsRef<str>>(self, lines: impl IntoIterator<Item = S>) -> FakeClaude {
        lines.into_iter().fold(self, |s, l| s.line(l.as_ref()))
    }

    /// Prints `line` and a newline on stderr.
    pub fn stderr(self, line: &str) -> FakeClaude {
        let step = format!("printf '%s\\n' {} >&2", quote(line));
        self.sh(&step)
    }

    /// Pauses (as an API call would) before the next step.
    pub fn sleep(self, seconds: f64) -> FakeClaude {
        self.sh(&format!("sleep {seconds}"))
    }

    /// Runs on until a signal ends it (same pid; an ignored SIGTERM stays ignored).
    pub fn hang(self) -> FakeClaude {
        self.sh("exec sleep 1000")
    }

    pub fn exit(self, code: i32) -> FakeClaude {
        self.sh(&format!("exit {code}"))
    }

    /// Ignores SIGTERM from here on (so does everything it starts), so that only SIGKILL
    /// ends it.
    pub fn ignore_sigterm(self) -> FakeClaude {
        self.sh("trap '' TERM")
    }

    /// Creates the file `name` next to the script: proof that it ran this far.
    pub fn marker(self, name: &str) -> FakeClaude {
        let step = format!("touch {}", beside(name));
        self.sh(&step)
    }

    /// Writes its arguments, one a line, to the file `name` next to the script.
    pub fn record_argv(self, name: &str) -> FakeClaude {
        let step = format!(
            "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > {}",
            beside(name)
        );
        self.sh(&step)
    }

    /// The handshake: tells [`wait_ready`] that everything before this step is done (all
    /// lines before it written), and its pid.
    pub fn ready(self) -> FakeClaude {
        let step = format!("touch \"$(dirname \"$0\")/{READY}$$\"");
        self.sh(&step)
    }

    /// Writes the script, executable, to `dir/name`.
    pub fn write(self, dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, self.script).expect("write fake claude");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

/// Polls (every 20 ms, only to let a scenario reach its state) until `check` gives a
/// value; `check` may look at `orchestrator` itself. Past [`HANG_GUARD`] it fails naming
/// `what`, and first kills and reaps `orchestrator` (when it still runs) so that a
/// failing test leaves nothing running.
pub fn wait_for<T>(
    what: &str,
    orchestrator: &mut Child,
    mut check: impl FnMut(&mut Child) -> Option<T>,
) -> T {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(v) = check(orchestrator) {
            return v;
        }
        if Instant::now() >= deadline {
            let _ = orchestrator.kill();
            let _ = orchestrator.wait();
            panic!("never: {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until `n` fake claudes in `dir` have passed their [`FakeClaude::ready`] step;
/// returns their pids.
pub fn wait_ready(dir: &Path, n: usize, orchestrator: &mut Child) -> Vec<i32> {
    let what = format!("{n} fake claudes ready in {}", dir.display());
    wait_for(&what, orchestrator, |_| {
        let pids: Vec<i32> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix(READY)?
                    .parse()
                    .ok()
            })
            .collect();
        (pids.len() >= n).then_some(pids)
    })
}

/// Waits for `orchestrator` to exit (killing it and failing past [`HANG_GUARD`]).
pub fn wait_exit(orchestrator: &mut Child) -> ExitStatus {
    wait_for("the orchestrator exited", orchestrator, |o| {
        o.try_wait().expect("wait")
    })
}

/// The state letter of a process in /proc (`T` stopped, `S` sleeping, `Z` zombie …);
/// `None`: no such process.
pub fn proc_state(pid: i32) -> Option<char> {
    procfs::stat(pid).map(|s| s.state)
}

/// The parent pid of a process in /proc.
pub fn parent_pid(pid: i32) -> Option<i32> {
    procfs::stat(pid).map(|s| s.ppid)
}

/// A process that exited counts as gone even while it is a zombie: whoever inherited it
/// (pid 1 in a container may never reap) decides when it disappears.
pub fn gone(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// The builder itself: lines come out byte for byte whatever they hold, the exit code
/// and argv are what was asked, and the handshake names the script's pid.
#[test]
fn fake_claude_prints_verbatim_and_shakes_hands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let odd = r#"it's $HOME, `date`, %s \n "quoted" \\"#;
    let claude = FakeClaude::new()
        .record_argv("argv.txt")
        .line(odd)
        .stderr(odd)
        .marker("ran")
        .ready()
        .sleep(0.01)
        .exit(7)
        .write(dir.path(), "claude");
    // Through `sh`: exec'ing a file just written here can fail with ETXTBSY (see
    // process_faults::start); the orchestrator's own exec comes much later.
    let mut child = std::process::Command::new("sh")
        .arg(&claude)
        .args(["-p", "two words"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pids = wait_ready(dir.path(), 1, &mut child);
    assert_eq!(pids, [child.id() as i32]);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(out.stdout, format!("{odd}\n").into_bytes());
    assert_eq!(out.stderr, format!("{odd}\n").into_bytes());
    assert!(dir.path().join("ran").exists());
    let argv = std::fs::read_to_string(dir.path().join("argv.txt")).expect("argv");
    assert_eq!(argv, "-p\ntwo words\n");
}
