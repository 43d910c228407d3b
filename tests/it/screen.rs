//! The live view as a person sees it: the binary runs in a pseudo-terminal of a given
//! size, and a terminal emulator (`vt100`) keeps the screen. Frames are checked where
//! each redraw begins (the cursor-up + clear that starts every frame), i.e. the screen
//! exactly as the previous frame left it.

use crate::common::{bin, tempdir};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A child process on the slave side of a new pty, and the master side.
struct PtyRun {
    child: Child,
    master: OwnedFd,
    bytes: mpsc::Receiver<Vec<u8>>,
}

fn winsize(cols: u16, rows: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// `orchestrator --simulate --startup-delay 0 ARGS` on the slave side of a new `cols` x
/// `rows` pty, each simulated turn taking `pace` seconds, with `env` on top of a clean
/// terminal environment.
fn simulate_in_pty(
    dir: &Path,
    pace: &str,
    args: &[&str],
    env: &[(&str, &str)],
    cols: u16,
    rows: u16,
) -> PtyRun {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let ws = winsize(cols, rows);
    // SAFETY: openpty writes two descriptors; the name and termios pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .env_remove("ORCHESTRATOR_CLAUDE_PATH")
        // The ledger defaults under HOME; the runner's own choice must not leak in.
        .env_remove("ORCHESTRATOR_LEDGER")
        .env_remove("XDG_DATA_HOME")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("COLUMNS")
        .env_remove("LINES")
        .env("HOME", dir)
        .env("TERM", "xterm-256color")
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_CTYPE")
        .env("ORCHESTRATOR_SIMULATE_PACE", pace)
        .args(["--simulate", "--startup-delay", "0"])
        .args(args)
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            // A session of its own with the pty as controlling terminal, so that a
            // resize sends it SIGWINCH.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn in pty");
    drop(cmd); // closes our copies of the slave side, so reads end when the child exits
    let mut reader = std::fs::File::from(master.try_clone().expect("dup master"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO once the last slave descriptor closes
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    PtyRun {
        child,
        master,
        bytes: rx,
    }
}

impl PtyRun {
    fn resize(&self, cols: u16, rows: u16) {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads the struct we pass.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0, "TIOCSWINSZ");
    }

    /// Everything the child writes until it exits (the reader ends at EOF/EIO), and its
    /// exit code. `on_chunk` sees each chunk as it arrives.
    fn finish(mut self, mut on_chunk: impl FnMut(&[u8], &PtyRun)) -> (Vec<u8>, i32) {
        let mut all = Vec::new();
        while let Ok(chunk) = self.bytes.recv_timeout(Duration::from_secs(120)) {
            on_chunk(&chunk, &self);
            all.extend_from_slice(&chunk);
        }
        let status = self.child.wait().expect("wait");
        (all, status.code().unwrap_or(-1))
    }
}

/// Positions in `bytes` where a frame redraw begins: `ESC [ n A ESC [ J`.
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == 0x1b && bytes[i + 1] == b'[' {
            let mut j = i + 2;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            if j > i + 2 && bytes[j..].starts_with(b"A\x1b[J") {
                out.push(i);
            }
        }
        i += 1;
    }
    out
}

/// Replays `bytes` through a `cols` x `rows` terminal and returns the screen text at
/// every frame start (the previous frame, complete) and at the end. `resize_at` resizes
/// the emulator at a byte offset, as the real terminal was resized then.
fn frames(
    bytes: &[u8],
    cols: u16,
    rows: u16,
    resize_at: Option<(usize, u16, u16)>,
) -> (Vec<String>, String) {
    let mut parser = vt100::Parser::new(rows, cols, 0);
    let mut cuts: Vec<usize> = frame_starts(bytes);
    if let Some((at, ..)) = resize_at {
        cuts.push(at);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut pos = 0;
    for cut in cuts {
        parser.process(&bytes[pos..cut]);
        pos = cut;
        if let Some((at, c, r)) = resize_at {
            if at == cut {
                parser.set_size(r, c);
                continue;
            }
        }
        out.push(parser.screen().contents());
    }
    parser.process(&bytes[pos..]);
    (out, parser.screen().contents())
}

fn count(screen: &str, needle: &str) -> usize {
    screen.lines().filter(|l| l.contains(needle)).count()
}

const HEADER: &str = "=== orchestrator status";

#[test]
fn sixty_instances_on_80x24_keep_header_and_bars_in_every_frame() {
    let dir = tempdir();
    let prompts: Vec<String> = (0..60).map(|i| format!("task number {i}")).collect();
    let mut args = vec![
        "-j",
        "8",
        "--overall-token-budget",
        "50M",
        "--command-budget",
        "/x=1K",
        "--",
    ];
    args.extend(prompts.iter().map(String::as_str));
    let run = simulate_in_pty(dir.path(), "0.05", &args, &[], 80, 24);
    let (bytes, code) = run.finish(|_, _| {});
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&bytes));
    let (frames, last) = frames(&bytes, 80, 24, None);
    assert!(
        frames.len() >= 3,
        "expected several live frames, got {}",
        frames.len()
    );
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(
            count(f, HEADER),
            1,
            "frame {i}: header not exactly once:\n{f}"
        );
        assert!(f.contains("/60 done"), "frame {i}: no progress:\n{f}");
        assert!(f.contains("BUDGET STATUS"), "frame {i}:\n{f}");
        assert_eq!(count(f, "  overall  ["), 1, "frame {i}: overall bar:\n{f}");
        assert_eq!(count(f, "  /x  "), 1, "frame {i}: /x bar:\n{f}");
        assert!(f.lines().count() <= 24);
    }
    // Some frame had to cut the table.
    assert!(
        frames.iter().any(|f| f.contains(" more")),
        "no '… N more' line"
    );
    // No frame is left behind: the final screen has the summary and no live region.
    assert_eq!(count(&last, HEADER), 0, "stale live region:\n{last}");
    assert!(
        last.contains("exit code 0: all 60 instances completed"),
        "{last}"
    );
}

#[test]
fn warnings_print_above_the_live_view_without_blanking_it() {
    let dir = tempdir();
    // A small budget so that warnings come while instances still run.
    let args = [
        "-j",
        "4",
        "--overall-token-budget",
        "30K",
        "/a",
        "/b",
        "/c",
        "/d",
        "/e",
        "/f",
    ];
    let run = simulate_in_pty(dir.path(), "0.1", &args, &[], 100, 40);
    let (bytes, _code) = run.finish(|_, _| {});
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("warning:"), "no warning in this run:\n{text}");
    let (frames, _) = frames(&bytes, 100, 40, None);
    let mut saw_warning_with_view = false;
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(count(f, HEADER), 1, "frame {i}:\n{f}");
        if f.contains("warning:") {
            saw_warning_with_view = true;
            // The warning sits above the region, not inside or below it.
            let w = f.lines().position(|l| l.contains("warning:")).unwrap_or(0);
            let h = f.lines().position(|l| l.contains(HEADER)).unwrap_or(0);
            assert!(w < h, "frame {i}: warning below the header:\n{f}");
        }
    }
    assert!(
        saw_warning_with_view,
        "never saw a warning and the view together"
    );
}

#[test]
fn a_resize_mid_run_leaves_no_junk() {
    let dir = tempdir();
    let prompts: Vec<String> = (0..12)
        .map(|i| format!("a rather long prompt text number {i} for width"))
        .collect();
    let mut args = vec!["-j", "4", "--overall-token-budget", "50M", "--"];
    args.extend(prompts.iter().map(String::as_str));
    let run = simulate_in_pty(dir.path(), "0.1", &args, &[], 160, 50);
    let mut seen = 0usize;
    let mut resized_at = None;
    let (bytes, code) = run.finish(|chunk, pty| {
        seen += chunk.len();
        // Shrink once a few frames are on screen.
        if resized_at.is_none() && seen > 8000 {
            pty.resize(70, 50);
            resized_at = Some(seen);
        }
    });
    assert_eq!(code, 0);
    let at = resized_at.expect("the run was too short to resize");
    let (frames, last) = frames(&bytes, 160, 50, Some((at, 70, 50)));
    for (i, f) in frames.iter().enumerate() {
        assert!(count(f, HEADER) <= 1, "frame {i}: stale header:\n{f}");
    }
    assert_eq!(count(&last, HEADER), 0, "stale live region:\n{last}");
    assert_eq!(
        count(&last, "BUDGET STATUS"),
        0,
        "stale budget section:\n{last}"
    );
    assert!(last.contains("exit code 0"), "{last}");
}

#[test]
fn json_lines_on_a_terminal_all_stay_visible() {
    let dir = tempdir();
    let args = [
        "--json",
        "-j",
        "2",
        "--status-report-interval",
        "1",
        "/a",
        "/b",
        "/c",
    ];
    let run = simulate_in_pty(dir.path(), "0.1", &args, &[], 200, 500);
    let (bytes, code) = run.finish(|_, _| {});
    assert_eq!(code, 0);
    assert!(
        frame_starts(&bytes).is_empty(),
        "the cursor moved over the JSON lines"
    );
    let mut parser = vt100::Parser::new(500, 200, 0);
    parser.process(&bytes);
    let screen = parser.screen().contents();
    let text = String::from_utf8_lossy(&bytes);
    let events = text.matches("{\"event\":").count();
    assert!(events >= 8, "{text}");
    // Every event line written is still on the screen (wide enough not to wrap… or
    // wrapped, so compare by event name counts).
    for name in [
        "run_started",
        "instance_started",
        "instance_finished",
        "run_finished",
    ] {
        let written = text.matches(&format!("\"event\":\"{name}\"")).count();
        let shown = screen.matches(&format!("\"event\":\"{name}\"")).count();
        assert_eq!(shown, written, "{name}: {shown} of {written} on screen");
    }
}

#[test]
fn dumb_terminals_get_no_cursor_movement_and_no_colour() {
    let dir = tempdir();
    let args = [
        "--status-report-interval",
        "0.2",
        "--overall-token-budget",
        "1M",
        "/a",
        "/b",
    ];
    let run = simulate_in_pty(
        dir.path(),
        "0.1",
        &args,
        &[("TERM", "dumb"), ("LANG", "C")],
        100,
        40,
    );
    let (bytes, code) = run.finish(|_, _| {});
    assert_eq!(code, 0);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains('\x1b'),
        "escape codes on a dumb terminal:\n{text}"
    );
    assert!(
        text.contains(HEADER),
        "plain status blocks expected:\n{text}"
    );
    assert!(!text.contains('█') && !text.contains('░'), "{text}");
    assert!(
        text.contains("  overall  [-") || text.contains("  overall  [#"),
        "ASCII bars:\n{text}"
    );
}
