//! A watchdog that outlives the orchestrator only to kill what it leaves behind.
//!
//! At the start of a run the orchestrator re-executes itself as `orchestrator
//! __watchdog` in a session of its own (so Ctrl-C at the terminal or a signal to the
//! orchestrator's group does not reach it), holding the read end of a pipe whose write
//! end only the orchestrator has (`O_CLOEXEC`: no instance inherits it). The orchestrator
//! writes `+PID START` when an instance starts and `-PID` once it is reaped, and `bye`
//! at a normal end. When the pipe reaches EOF without `bye`, the orchestrator died —
//! by any signal, SIGKILL and the OOM killer included — and the watchdog kills every
//! instance's whole process tree at once:
//!
//! - instances are started with `PR_SET_PDEATHSIG = SIGSTOP` while a watchdog runs, so
//!   at the orchestrator's death the kernel freezes each Claude: its children keep their
//!   parent links and it cannot start anything new;
//! - the watchdog collects the recorded instances (pid and start time checked, so a
//!   reused pid is never hit), everything descending from them by parent links, every
//!   member of their process groups and sessions, and the orchestrator's other children
//!   (processes that escaped with `setsid` and whose parent died, re-parented to the
//!   orchestrator as the subreaper; it keeps a list of those, refreshed every
//!   [`SNAPSHOT_EVERY`]), SIGSTOPs them round after round until no new process appears,
//!   then SIGKILLs them all.
//!
//! Linux only (`/proc`, `prctl`); elsewhere no watchdog is started and instances get
//! SIGTERM when the orchestrator dies, as before.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use crate::runtime::process::wait_child;
use crate::runtime::procfs;

/// The hidden first argument that runs the watchdog.
pub const SUBCOMMAND: &str = "__watchdog";

/// How often the watchdog refreshes its list of the orchestrator's children.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(200);

/// The orchestrator's end of the pipe, once a watchdog runs.
static PIPE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Whether a watchdog is watching (instances then get SIGSTOP as their death signal).
pub fn active() -> bool {
    PIPE.lock().map(|p| p.is_some()).unwrap_or(false)
}

fn send(line: &str) {
    let Ok(mut pipe) = PIPE.lock() else { return };
    if let Some(f) = pipe.as_mut() {
        // Non-blocking: a watchdog that stopped reading must not stall the run; a lost
        // record only weakens the cleanup after a crash.
        if f.write_all(line.as_bytes()).is_err() {
            tracing::debug!("the watchdog is not reading; records lost");
        }
    }
}

/// Records an instance that just started (its pid leads its group and session).
pub fn started(pid: u32) {
    let stat = i32::try_from(pid).ok().and_then(procfs::stat);
    if let Some(start) = stat.map(|s| s.start) {
        send(&format!("+{pid} {start}\n"));
    }
}

/// Records an instance whose leader was reaped.
pub fn reaped(pid: u32) {
    send(&format!("-{pid}\n"));
}

/// A running watchdog, from the orchestrator's side.
pub struct Watchdog {
    child: std::process::Child,
}

impl Watchdog {
    /// Starts `exe __watchdog` watching this process. `None` (with a debug line) when it
    /// cannot be started: the run goes on with the kernel's SIGTERM as the only cleanup.
    pub fn start(exe: &std::path::Path) -> Option<Watchdog> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "no watchdog: pipe");
            return None;
        }
        // SAFETY: both descriptors were just created and are owned here only.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut cmd = std::process::Command::new(exe);
        cmd.arg(SUBCOMMAND)
            .arg(std::process::id().to_string())
            .stdin(std::process::Stdio::from(read))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "no watchdog: spawn");
                return None;
            }
        };
        drop(cmd);
        let write = std::fs::File::from(write);
        // SAFETY: fcntl on our own descriptor.
        unsafe {
            let fd = write.as_raw_fd();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        if let Ok(mut p) = PIPE.lock() {
            *p = Some(write);
        }
        Some(Watchdog { child })
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// The run ended normally: tells the watchdog so and reaps it. Returns the
    /// watchdog's resource use (its CPU is part of what the run cost; `ORCHESTRATOR_RUSAGE`
    /// adds it in), `None` if it could not be reaped.
    pub fn finish(mut self) -> Option<libc::rusage> {
        send("bye\n");
        if let Ok(mut p) = PIPE.lock() {
            *p = None;
        }
        let pid = self.pid();
        for _ in 0..200 {
            match wait_child(pid, libc::WNOHANG) {
                Ok(Some(w)) => return Some(w.usage),
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                // Not our child any more (reaped elsewhere): never signal its pid again.
                Err(_) => return None,
            }
        }
        let _ = self.child.kill();
        wait_child(pid, 0).ok().flatten().map(|w| w.usage)
    }
}

// ---------------------------------------------------------------- the watchdog process

/// Direct children of `pid` (pid → start time) but those `skip` names, from
/// `/proc/PID/task/*/children` when the kernel has it, else from the whole table. With
/// that file, skipped pids are never read: the orchestrator's children are mostly its
/// instances, whose start times the watchdog already has, and reading each one's
/// `/proc/PID/stat` on every snapshot cost more CPU than the orchestrator itself at 500
/// instances. (Without it, every process is read each time, as before.)
fn children_of(pid: i32, skip: impl Fn(i32) -> bool) -> HashMap<i32, u64> {
    let mut kids = HashSet::new();
    let mut found_file = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(Result::ok) {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                found_file = true;
                kids.extend(
                    s.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    if found_file {
        kids.into_iter()
            .filter(|&p| !skip(p))
            .filter_map(procfs::stat)
            .map(|p| (p.pid, p.start))
            .collect()
    } else {
        procfs::table()
            .into_iter()
            .filter(|p| p.ppid == pid && !skip(p.pid))
            .map(|p| (p.pid, p.start))
            .collect()
    }
}

/// Runs the watchdog for orchestrator `args[0]` (a pid), reading records on stdin.
/// Returns the exit code.
pub fn run(args: &[std::ffi::OsString]) -> i32 {
    let Some(orch) = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse::<i32>().ok())
    else {
        eprintln!("orchestrator: error: {SUBCOMMAND} is internal: it needs the orchestrator's pid");
        return 2;
    };
    // Terminal and hang-up signals are the orchestrator's to act on.
    // SAFETY: setting dispositions to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGTSTP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut stdin = io::stdin().lock();
    let fd = stdin.as_raw_fd();
    let mut instances: HashMap<i32, u64> = HashMap::new();
    let mut orphans: HashMap<i32, u64> = HashMap::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next_snapshot = std::time::Instant::now() + SNAPSHOT_EVERY;
    loop {
        let now = std::time::Instant::now();
        if now >= next_snapshot {
            // The orchestrator's children that are not instances: escaped processes it
            // adopted as the subreaper. Due even while records keep coming.
            let me = std::process::id() as i32;
            orphans = children_of(orch, |pid| pid == me || instances.contains_key(&pid));
            next_snapshot = now + SNAPSHOT_EVERY;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // Rounded up, so that a wake-up never comes just before the snapshot is due.
        let wait_ms = next_snapshot
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, wait_ms as libc::c_int) };
        if r == 0 {
            continue;
        }
        if r < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if line == "bye" {
                return 0;
            }
            if let Some(rest) = line.strip_prefix('+') {
                let mut it = rest.split(' ');
                if let (Some(Ok(pid)), Some(Ok(start))) =
                    (it.next().map(str::parse), it.next().map(str::parse))
                {
                    instances.insert(pid, start);
                }
            } else if let Some(pid) = line.strip_prefix('-').and_then(|p| p.parse().ok()) {
                instances.remove(&pid);
            }
        }
    }
    // EOF without "bye": the orchestrator is gone.
    kill_everything(&instances, &orphans);
    0
}

/// Freezes (SIGSTOP) the recorded processes, their descendants and their groups' and
/// sessions' members round after round until nothing new appears, then SIGKILLs them.
fn kill_everything(instances: &HashMap<i32, u64>, orphans: &HashMap<i32, u64>) {
    let me = std::process::id() as i32;
    let mut roots: HashSet<i32> = HashSet::new();
    let mut groups: HashSet<i32> = HashSet::new();
    for (&pid, &start) in instances.iter().chain(orphans.iter()) {
        if procfs::stat(pid).is_some_and(|p| p.start == start) {
            roots.insert(pid);
        }
    }
    // An instance leads its own session and group (setsid); so may an escaped orphan.
    groups.extend(instances.keys().copied());
    groups.extend(roots.iter().copied());
    let mut frozen: HashSet<i32> = HashSet::new();
    for _round in 0..100 {
        let procs = procfs::table();
        let mut members: HashSet<i32> = procs
            .iter()
            .filter(|p| {
                roots.contains(&p.pid) || groups.contains(&p.pgid) || groups.contains(&p.sid)
            })
            .map(|p| p.pid)
            .collect();
        members.extend(frozen.iter().copied());
        // Descendants by parent links, to a fixed point.
        loop {
            let before = members.len();
            for p in &procs {
                if members.contains(&p.ppid) {
                    members.insert(p.pid);
                }
            }
            if members.len() == before {
                break;
            }
        }
        members.remove(&me);
        members.remove(&1);
        let new: Vec<i32> = members.difference(&frozen).copied().collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            // SAFETY: plain syscall; pids were checked to be the recorded processes or
            // their live descendants an instant ago.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            frozen.insert(pid);
        }
    }
    for &pid in &frozen {
        // SAFETY: as above; SIGKILL ends a stopped process too.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_lists_a_child() {
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id() as i32;
        let child = c.id() as i32;
        let listed = children_of(me, |_| false).contains_key(&child);
        let skipped = children_of(me, |p| p == child).contains_key(&child);
        let _ = c.kill();
        let _ = c.wait();
        assert!(listed);
        assert!(!skipped);
    }
}
