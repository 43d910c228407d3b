//! Child processes of the run: spawning a Claude instance in its own process group,
//! signalling that whole group, reaping it (and whatever it left behind) so that no zombie
//! or orphan survives, and reading its output without line limits or pipe deadlocks.
//!
//! No accounting and no policy live here; the dispatcher decides when to terminate and
//! this module makes termination thorough.
//!
//! Unix only. Everything async must run inside a Tokio runtime with I/O, time and signal
//! drivers enabled (`Builder::enable_all`).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::runtime::procfs;

pub use libc::{SIGKILL, SIGTERM};

/// The read end of an instance's stdout pipe.
pub type ChildStdout = tokio::net::unix::pipe::Receiver;
/// The read end of an instance's stderr pipe.
pub type ChildStderr = tokio::net::unix::pipe::Receiver;

/// What to run: no shell is involved, `args` reach the program verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// Added to (or overriding) the orchestrator's own environment.
    pub env: Vec<(String, String)>,
}

pub use crate::core::exit::{signal_name, ExitInfo};

fn exit_info(status: ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    ExitInfo {
        code: status.code(),
        signal: status.signal(),
    }
}

/// Sends `sig` to every process in group `pgid`.
///
/// Low level: once a group has died its number can be reused by an unrelated group, so
/// prefer [`GroupHandle`], which stops signalling as soon as the leader is reaped.
pub fn kill_group(pgid: u32, sig: i32) -> io::Result<()> {
    let pgid = checked_pgid(pgid)?;
    // SAFETY: plain syscall; a negative pid addresses the process group.
    if unsafe { libc::kill(-pgid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether any process (zombies included: they still hold the group) is in group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = checked_pgid(pgid) else {
        return false;
    };
    // SAFETY: signal 0 only checks existence and permission.
    if unsafe { libc::kill(-pgid, 0) } == 0 {
        return true;
    }
    // EPERM means the group exists but belongs to someone else.
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Signals the process groups of `root`'s descendants that left its group.
///
/// Claude Code runs each Bash tool in a session of its own, so a signal to Claude's group
/// does not reach it (and Claude does not pass SIGTERM on). While `root` is alive (the
/// caller holds its unreaped pid), its descendants are still found through their parent
/// links, so each foreign group is signalled directly. Linux only (`/proc`); elsewhere a
/// no-op.
fn signal_detached_descendants(root: u32, sig: i32) {
    let Ok(root) = i32::try_from(root) else {
        return;
    };
    let table = procfs::table();
    // SAFETY: getpgrp cannot fail.
    let own = unsafe { libc::getpgrp() };
    let mut frontier = vec![root];
    let mut groups = Vec::new();
    while let Some(parent) = frontier.pop() {
        for p in table.iter().filter(|p| p.ppid == parent) {
            frontier.push(p.pid);
            if p.pgid != root && p.pgid != own && !groups.contains(&p.pgid) {
                groups.push(p.pgid);
            }
        }
    }
    for pgid in groups.into_iter().filter_map(|g| u32::try_from(g).ok()) {
        let _ = kill_group(pgid, sig);
    }
}

/// Pid 0 and 1 as a group would address our own group or every process; refuse them so a
/// bug upstream can never turn into `kill(-1, SIGKILL)`.
fn checked_pgid(pgid: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(pgid) {
        Ok(p) if p > 1 => Ok(p),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        )),
    }
}

/// Makes this process the reaper of orphaned descendants (Linux `PR_SET_CHILD_SUBREAPER`).
///
/// Without it, tool processes that outlive Claude are re-parented to pid 1, which in many
/// containers never reaps them, so killed grandchildren linger as zombies and their group
/// stays visible. With it, [`Child::wait`] reaps every member of the child's group.
/// Call once at start-up; a no-op returning `Ok` on other systems.
pub fn become_child_subreaper() -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SIGKILLs and reaps every remaining child of this process; returns how many there were.
///
/// For the end of a run, when every instance has been reaped: what is left are processes
/// that left their instance's group (`setsid`, daemons) and were re-parented to us as the
/// subreaper after their parent died — no group signal reaches them. They are our own
/// unreaped children, so their pids cannot have been reused: signalling them is safe.
/// `keep` are children this process had before the run (inherited across an `exec`, e.g.
/// `sleep 9 & exec orchestrator …`): they are not ours to kill. Linux only (reads
/// `/proc`); elsewhere it finds nothing.
pub fn kill_leftover_children(keep: &[libc::pid_t]) -> usize {
    let mut killed = 0;
    // Reaping one leftover re-parents its own children to us; a few passes catch them.
    for _ in 0..8 {
        let pids: Vec<libc::pid_t> = own_children()
            .into_iter()
            .filter(|p| !keep.contains(p))
            .collect();
        if pids.is_empty() {
            break;
        }
        for &pid in &pids {
            // SAFETY: plain syscalls on a child of ours (see above). `-pid` reaches the
            // group it may lead (after `setsid`); while it is unreaped, that group id
            // cannot belong to anyone else.
            unsafe {
                libc::kill(-pid, SIGKILL);
                libc::kill(pid, SIGKILL);
            }
        }
        let deadline = Instant::now() + GROUP_REAP_LIMIT;
        for &pid in &pids {
            while let Ok(None) = wait_child(pid, libc::WNOHANG) {
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        killed += pids.len();
    }
    killed
}

/// Pids whose parent is this process, from `/proc/*/stat` (empty without `/proc`).
pub fn own_children() -> Vec<libc::pid_t> {
    let me = std::process::id();
    procfs::table()
        .into_iter()
        .filter(|p| u32::try_from(p.ppid) == Ok(me) && p.pid > 1)
        .map(|p| p.pid)
        .collect()
}

#[derive(Debug, Default)]
struct GroupState {
    /// Set (under the lock) just before the leader is reaped. While the leader is
    /// unreaped — running or a zombie — its pid, and so the group id, cannot be reused,
    /// which is what makes signalling the group safe.
    leader_reaped: bool,
}

/// A cloneable, thread-safe way to signal one child's process group, usable while
/// another task is awaiting [`Child::wait`].
#[derive(Debug, Clone)]
pub struct GroupHandle {
    pgid: u32,
    state: Arc<Mutex<GroupState>>,
}

impl GroupHandle {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // A panic elsewhere while holding this lock leaves only plain flags behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// SIGTERM to the whole group (escalating to [`GroupHandle::kill`] after the grace is
    /// the run state's decision). Returns whether a signal was sent.
    pub fn terminate(&self) -> bool {
        let st = self.lock();
        if st.leader_reaped {
            return false;
        }
        signal_detached_descendants(self.pgid, SIGTERM);
        let sent = kill_group(self.pgid, SIGTERM).is_ok();
        // A stopped process (SIGSTOP, SIGTTIN, Ctrl-Z of a tool) acts on SIGTERM only
        // once continued; without SIGCONT it would sit out the whole grace period.
        signal_detached_descendants(self.pgid, libc::SIGCONT);
        let _ = kill_group(self.pgid, libc::SIGCONT);
        sent
    }

    /// Whether the group leader (Claude) is stopped by a signal (`T` in
    /// `/proc/PID/stat`; Linux only, elsewhere never).
    pub fn stopped(&self) -> bool {
        if self.lock().leader_reaped {
            return false;
        }
        let stat = i32::try_from(self.pgid).ok().and_then(procfs::stat);
        matches!(stat.map(|s| s.state), Some('T' | 't'))
    }

    /// SIGKILL to the whole group. Returns whether a signal was sent.
    pub fn kill(&self) -> bool {
        let st = self.lock();
        if st.leader_reaped {
            return false;
        }
        signal_detached_descendants(self.pgid, SIGKILL);
        kill_group(self.pgid, SIGKILL).is_ok()
    }

    /// Called once the leader has exited but before it is reaped: whatever is left of the
    /// group (tool processes, possibly holding our stdout pipe open) is killed now, while
    /// the zombie leader still pins the group id.
    fn kill_rest_and_mark_reaped(&self) {
        let mut st = self.lock();
        if st.leader_reaped {
            return;
        }
        // ESRCH (nothing left) is the normal case.
        let _ = kill_group(self.pgid, SIGKILL);
        st.leader_reaped = true;
        crate::runtime::watchdog::reaped(self.pgid);
    }
}

/// A spawned child leading its own process group.
///
/// [`wait`](Child::wait) for it. If it is dropped unwaited (an error path), its group is
/// SIGKILLed and, inside a Tokio runtime, reaped by a background task.
#[derive(Debug)]
pub struct Child {
    /// `None` only after `Drop` handed it to the background reaper.
    proc: Option<Proc>,
    group: GroupHandle,
    exit: Option<ExitInfo>,
    /// Its stdout pipe was enlarged.
    stdout_boost: Option<PipeBoost>,
}

/// What a stdout pipe is enlarged to: with the run loop polling every 50 ms
/// (`runtime::pacer`), a 64 KiB pipe fills before it is read when Claude writes more than
/// about 1.3 MB/s, and Claude then waits; 256 KiB holds 5 MB/s.
pub const PIPE_BOOST: usize = 256 * 1024;
/// The most capacity the enlarged pipes add at once. A user's pipes share a budget
/// (`/proc/sys/fs/pipe-user-pages-soft`, 64 MiB by default) past which every new pipe of
/// that user, Claude's own included, gets two pages: the orchestrator takes at most an
/// eighth of it, the first 42 instances running at once.
const PIPE_BOOST_TOTAL: usize = 8 * 1024 * 1024;
static PIPE_BOOSTED: AtomicUsize = AtomicUsize::new(0);

/// One enlarged pipe's share of [`PIPE_BOOST_TOTAL`], given back when dropped.
#[derive(Debug)]
struct PipeBoost(&'static AtomicUsize);

impl PipeBoost {
    const EXTRA: usize = PIPE_BOOST - PIPE_CAPACITY;

    /// Enlarges the pipe behind `fd` when the budget allows and the kernel agrees.
    fn try_on(fd: &impl AsRawFd) -> Option<PipeBoost> {
        Self::try_counted(fd, &PIPE_BOOSTED)
    }

    fn try_counted(fd: &impl AsRawFd, boosted: &'static AtomicUsize) -> Option<PipeBoost> {
        if boosted.fetch_add(Self::EXTRA, Relaxed) + Self::EXTRA > PIPE_BOOST_TOTAL {
            boosted.fetch_sub(Self::EXTRA, Relaxed);
            return None;
        }
        // SAFETY: F_SETPIPE_SZ on a descriptor we own; it only resizes the pipe's buffer
        // (or fails, leaving it as it was).
        let size = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BOOST as i32) };
        if usize::try_from(size).is_ok_and(|s| s >= PIPE_BOOST) {
            return Some(PipeBoost(boosted));
        }
        boosted.fetch_sub(Self::EXTRA, Relaxed);
        None
    }
}

impl Drop for PipeBoost {
    fn drop(&mut self) {
        self.0.fetch_sub(Self::EXTRA, Relaxed);
    }
}

/// The parts needed to wait for and reap a child, movable into a background task.
#[derive(Debug)]
struct Proc {
    group: GroupHandle,
    /// The leader's exit once it is reaped (or could not be): a wait cancelled after
    /// that, while the rest of the group is reaped, must neither reap its pid again (it
    /// may be someone else's by then) nor lose the status.
    collected: Option<ExitInfo>,
    /// A pidfd for the leader (Linux 5.3 and later): readable once it has exited, so
    /// waiting costs nothing until then. Without one, every SIGCHLD wakes every waiting
    /// instance to check its leader, which with 500 instances is 500 checks per exit.
    exited: Option<AsyncFd<OwnedFd>>,
    /// SIGCHLD notifications, registered only when needed: without a pidfd, or while
    /// reaping group members.
    sigchld: Option<Signal>,
}

/// How often to re-check for an exit if a SIGCHLD notification were ever missed.
const FALLBACK_POLL: Duration = Duration::from_millis(500);
/// How long to wait for SIGKILLed group members to be reaped before giving up on them.
const GROUP_REAP_LIMIT: Duration = Duration::from_secs(5);

/// Starts `spec` with stdin from `/dev/null` and stdout/stderr piped, as the leader of a
/// new process group. Errors name the program (or the missing working directory).
/// Must be called from within a Tokio runtime.
pub fn spawn(spec: &LaunchSpec) -> io::Result<(Child, ChildStdout, ChildStderr)> {
    let program = spec.program.display();
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(format!(
            "cannot run {program}: no async runtime to supervise it"
        )));
    }
    if !spec.cwd.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "cannot run {program}: working directory {} does not exist or is not a directory",
                spec.cwd.display()
            ),
        ));
    }
    // A session of its own (which also makes it the leader of a new process group, so
    // group signalling is unchanged) and so no controlling terminal: an instance that
    // opens /dev/tty gets ENXIO instead of being stopped by SIGTTIN/SIGTTOU for good, and
    // Ctrl-C at the terminal reaches only the orchestrator, which decides.
    //
    // If the orchestrator itself dies without cleaning up (SIGKILL, the OOM killer),
    // Claude must not go on spending with no budget watching: the kernel sends it
    // SIGTERM. With a watchdog, SIGSTOP instead: the instance freezes with its children
    // still attached, and the watchdog kills the whole tree (see runtime::watchdog).
    let death_signal = if crate::runtime::watchdog::active() {
        libc::SIGSTOP
    } else {
        libc::SIGTERM
    };
    let started =
        crate::runtime::spawn::start(spec, death_signal).map_err(|e| spawn_error(spec, e))?;
    let pid = started.pid;
    crate::runtime::watchdog::started(pid);
    let stdout_boost = PipeBoost::try_on(&started.stdout);
    let group = GroupHandle {
        pgid: pid,
        state: Arc::default(),
    };
    let proc = Proc {
        group: group.clone(),
        collected: None,
        exited: exit_notifier(pid),
        sigchld: None,
    };
    // Tracked from here on: should a pipe not register with the runtime, dropping the
    // child kills and reaps it.
    let child = Child {
        proc: Some(proc),
        group,
        exit: None,
        stdout_boost,
    };
    let stdout = ChildStdout::from_owned_fd(started.stdout);
    let stderr = ChildStderr::from_owned_fd(started.stderr);
    let (Ok(stdout), Ok(stderr)) = (stdout, stderr) else {
        return Err(io::Error::other(format!(
            "cannot run {program}: its pipes could not be watched"
        )));
    };
    Ok((child, stdout, stderr))
}

fn spawn_error(spec: &LaunchSpec, e: io::Error) -> io::Error {
    let program = spec.program.display();
    let hint = match e.kind() {
        io::ErrorKind::NotFound => " (not found: check the path or PATH)",
        io::ErrorKind::PermissionDenied => " (permission denied: is it an executable file?)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("cannot run {program}: {e}{hint}"))
}

impl Child {
    /// What its stdout pipe holds when full.
    pub fn stdout_capacity(&self) -> usize {
        if self.stdout_boost.is_some() {
            PIPE_BOOST
        } else {
            PIPE_CAPACITY
        }
    }

    pub fn pid(&self) -> u32 {
        self.group.pgid
    }

    /// A handle for signalling this child's group from elsewhere.
    pub fn group(&self) -> GroupHandle {
        self.group.clone()
    }

    /// SIGTERM to the group; see [`GroupHandle::terminate`].
    pub fn terminate(&self) -> bool {
        self.group.terminate()
    }

    /// SIGKILL to the group; see [`GroupHandle::kill`].
    pub fn kill(&self) -> bool {
        self.group.kill()
    }

    /// The exit status, once [`Child::wait`] has returned.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        self.exit
    }

    /// Waits for the child to exit, then SIGKILLs whatever is left in its group (so the
    /// stdout reader reaches EOF even if a tool process inherited the pipe), reaps the
    /// leader and, when this process is a subreaper, the rest of the group too.
    ///
    /// Cancel-safe; calling it again after it returned gives the same answer.
    pub async fn wait(&mut self) -> ExitInfo {
        if let Some(e) = self.exit {
            return e;
        }
        let Some(proc) = self.proc.as_mut() else {
            return ExitInfo::default();
        };
        let exit = proc.wait().await;
        self.exit = Some(exit);
        exit
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        self.group.kill();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                proc.wait().await;
            });
        }
        // Without a runtime `proc` drops here and its own Drop does what it can.
    }
}

impl Proc {
    async fn wait(&mut self) -> ExitInfo {
        if self.collected.is_none() {
            let exit = self.wait_for_leader().await;
            self.collected = Some(exit);
        }
        self.reap_group_members().await;
        self.collected.unwrap_or_default()
    }

    /// Waits for the leader to exit, kills the rest of its group and reaps it.
    async fn wait_for_leader(&mut self) -> ExitInfo {
        let pid = self.group.pgid;
        // Stops once the leader has exited, or is no longer ours to ask about (then the
        // reaping below reports what it can).
        while let Ok(false) = leader_exited(pid) {
            match &self.exited {
                Some(fd) => match fd.readable().await {
                    // Readable means exited, and stays so: the check above ends the loop.
                    // Should it still say otherwise, wait for the next event instead of
                    // spinning (an event newer than this one is not cleared).
                    Ok(mut ready) => {
                        if let Ok(false) = leader_exited(pid) {
                            ready.clear_ready();
                        }
                    }
                    Err(e) => {
                        tracing::debug!(pid, error = %e, "pidfd unusable; waiting on SIGCHLD");
                        self.exited = None;
                    }
                },
                None => {
                    if !self.register_sigchld() {
                        self.next_sigchld().await;
                    }
                }
            }
        }
        self.group.kill_rest_and_mark_reaped();
        match reap_leader(pid) {
            Ok(status) => exit_info(status),
            Err(e) => {
                tracing::warn!(pid, error = %e, "could not collect the exit status of a child");
                ExitInfo::default()
            }
        }
    }

    /// Registers for SIGCHLD if not yet registered; `true` when it just was. The caller
    /// then checks again before waiting: an exit before the registration is not signalled.
    /// A failed registration answers `false`, so the caller waits (on a timer) instead of
    /// trying again at once.
    fn register_sigchld(&mut self) -> bool {
        if self.sigchld.is_some() {
            return false;
        }
        self.sigchld = signal(SignalKind::child()).ok();
        self.sigchld.is_some()
    }

    async fn next_sigchld(&mut self) {
        match &mut self.sigchld {
            Some(sig) => {
                let ended = tokio::select! {
                    r = sig.recv() => r.is_none(),
                    _ = tokio::time::sleep(FALLBACK_POLL) => false,
                };
                if ended {
                    self.sigchld = None;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }

    /// Reaps group members re-parented to us (only possible as a subreaper). Members are
    /// SIGKILLed already, so this normally takes a few milliseconds; it gives up after
    /// `GROUP_REAP_LIMIT` rather than hang on a process stuck in the kernel.
    async fn reap_group_members(&mut self) {
        let Ok(pgid) = checked_pgid(self.group.pgid) else {
            return;
        };
        let deadline = Instant::now() + GROUP_REAP_LIMIT;
        loop {
            // -pgid: only members of this child's group, whose leader is already reaped,
            // so never another instance's leader.
            match wait_child(-pgid, libc::WNOHANG) {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                // ECHILD: none of our children is left in the group.
                Err(_) => return,
            }
            if Instant::now() >= deadline {
                tracing::warn!(pgid, "processes of a finished instance are still not gone");
                return;
            }
            if !self.register_sigchld() {
                self.next_sigchld().await;
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.collected.is_some() {
            return;
        }
        // Dropped before its leader was reaped (runtime gone or task cancelled). The
        // unreaped leader pins the group id, so this SIGKILL cannot hit anyone else;
        // afterwards the handle must stay silent. The leader is reaped here if it is
        // already gone, else by the end of the run (`kill_leftover_children`) or, past
        // that, by whoever inherits it when this process exits.
        self.group.kill_rest_and_mark_reaped();
        if let Ok(pid) = checked_pgid(self.group.pgid) {
            let _ = wait_child(pid, libc::WNOHANG);
        }
    }
}

/// Reaps `pid`, which has exited, and gives its status. Never blocks: a leader that
/// has not exited after all is an error.
fn reap_leader(pid: u32) -> io::Result<ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    match wait_child(checked_pgid(pid)?, libc::WNOHANG)? {
        Some(w) => Ok(ExitStatus::from_raw(w.status)),
        None => Err(io::Error::other("it has not exited")),
    }
}

/// A child reaped by [`wait_child`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waited {
    /// The wait status, as `waitpid` gives it.
    pub status: libc::c_int,
    /// Its resource use over its life.
    pub usage: libc::rusage,
}

/// `wait4(pid, flags)` (`pid` a child of ours, or `-pgid` for any of ours in that group),
/// retried when a signal interrupts it: the child reaped, `None` when there is none to
/// reap yet (with `WNOHANG`), an error when there is none of ours (ECHILD).
pub(crate) fn wait_child(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<Waited>> {
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 only writes into it and `status`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall; it reaps only a child of ours.
        let got = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if got > 0 {
            return Ok(Some(Waited { status, usage }));
        }
        if got == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// A pidfd for `pid` registered with the runtime, readable once `pid` has exited; `None`
/// where pidfds do not exist (then SIGCHLD is the news of an exit).
fn exit_notifier(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let pid = checked_pgid(pid).ok()?;
        // SAFETY: plain syscall; on success it returns a new descriptor that we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = libc::c_int::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: the AsyncFd owns the OwnedFd, which keeps returning this open descriptor
        // until the AsyncFd drops it.
        unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = pid;
        None
    }
}

/// Whether `pid` has exited, without reaping it (`WNOWAIT`), so that its zombie keeps the
/// group id reserved while we kill the rest of the group.
fn leader_exited(pid: u32) -> io::Result<bool> {
    let pid = checked_pgid(pid)?;
    loop {
        // SAFETY: zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        if r == 0 {
            // With WNOHANG, si_pid stays 0 while the child is still running.
            // SAFETY: waitid filled (or left zeroed) the structure.
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Reads lines of any length as raw bytes (invalid UTF-8 is the parser's business), in
/// bounded memory.
///
/// A line of up to [`LINE_CAP`] bytes is returned verbatim. A longer line is never held
/// whole: it is scanned as it arrives and returned *shortened*: every JSON string value in
/// it is cut to its first [`LONG_LINE_STRING_KEEP`] bytes (at a character and escape
/// boundary, the closing quote kept), so a stream-json line that is long because of a
/// huge text, tool input or tool result stays valid JSON with its `type`, `id`, `model`
/// and `usage` intact — usage in long lines is still counted. If even the shortened line
/// exceeds [`LONG_LINE_CAP`] (a huge structure of non-strings, or not JSON at all), only
/// its first `LONG_LINE_CAP` bytes are returned, which do not parse: the line counts as
/// one malformed line. Memory per reader is bounded by about `LINE_CAP + LONG_LINE_CAP`
/// whatever the input.
///
/// One buffer is reused across lines; after an unusually long line it is given back to
/// the allocator. Reads land in the buffer's spare capacity, so growing it never
/// zero-fills memory (with 500 instances streaming 100 KB lines that zeroing was a
/// visible share of the orchestrator's CPU time).
#[derive(Debug)]
pub struct LineReader<R> {
    reader: R,
    /// `buf[start..]` holds unread bytes.
    buf: Vec<u8>,
    start: usize,
    /// Bytes in `buf[start..scanned]` are known to contain no newline.
    scanned: usize,
    eof: bool,
    /// The line being read is longer than `LINE_CAP`: its bytes so far, shortened.
    long: Option<Shortener>,
    /// The last shortened line returned.
    long_line: Vec<u8>,
    last_shortened: bool,
    /// Bytes taken by the reads since the last one that left room in the buffer (the
    /// pipe was empty after it).
    drained: usize,
    /// What the pipe holds when full.
    pipe_capacity: usize,
}

/// A pipe's capacity unless resized (Linux's default): a drain of this much found the
/// pipe full, so the writer may have been waiting for room.
const PIPE_CAPACITY: usize = 64 * 1024;

/// Lines up to this length are returned verbatim.
pub const LINE_CAP: usize = 4 * 1024 * 1024;
/// In a line longer than [`LINE_CAP`], each JSON string keeps this many bytes.
pub const LONG_LINE_STRING_KEEP: usize = 64 * 1024;
/// A shortened line is cut off (and so malformed) beyond this length.
pub const LONG_LINE_CAP: usize = 1024 * 1024;

/// Starting size of the buffer; typical stream-json lines are well under this.
const LINE_BUF_INITIAL: usize = 8 * 1024;
/// Buffers larger than this are large: pooled when given back, moved out of once a line
/// longer than the pool's buffers is consumed, and not kept for shortened lines.
const LINE_BUF_RETAIN: usize = 64 * 1024;
/// A buffer that outgrows [`LINE_BUF_INITIAL`] grows at once to at least this: a read can
/// then take a full pipe (64 KiB) and a typical long line (a tool result) fits whole.
const LINE_BUF_LARGE: usize = 256 * 1024;
/// Never issue a read into less free space than this.
const MIN_READ: usize = 4 * 1024;
/// Reads while scanning an over-long line.
const LONG_READ: usize = 64 * 1024;

/// Copies a JSON text while cutting every string value to `keep` bytes, in one pass over
/// chunks of any size; anything beyond `cap` output bytes is dropped.
#[derive(Debug)]
struct Shortener {
    out: Vec<u8>,
    keep: usize,
    cap: usize,
    in_string: bool,
    /// Bytes of the current escape sequence still to come (`\` then 1, or `\u` then 4).
    escape: u8,
    /// Just after a backslash: the next byte says which escape it is.
    after_backslash: bool,
    /// Bytes of the current string kept so far.
    kept: usize,
    /// The rest of the current string is being dropped.
    dropping: bool,
    /// The current string is an object key: never cut, so the structure stays.
    key: bool,
    /// Open containers, innermost last: `true` for an object (bounded depth; deeper
    /// strings count as values).
    stack: Vec<bool>,
    /// In an object, after `{` or `,`: the next string is a key.
    expect_key: bool,
}

/// Containers tracked for telling keys from values.
const SHORTENER_DEPTH: usize = 256;

impl Shortener {
    fn new(keep: usize, cap: usize) -> Shortener {
        Shortener {
            out: Vec::with_capacity(LINE_BUF_INITIAL),
            keep,
            cap,
            in_string: false,
            escape: 0,
            after_backslash: false,
            kept: 0,
            dropping: false,
            key: false,
            stack: Vec::new(),
            expect_key: false,
        }
    }

    /// Tracks structure outside strings.
    fn structural(&mut self, b: u8) {
        match b {
            b'{' | b'[' => {
                if self.stack.len() < SHORTENER_DEPTH {
                    self.stack.push(b == b'{');
                }
                self.expect_key = b == b'{';
            }
            b'}' | b']' => {
                self.stack.pop();
                self.expect_key = false;
            }
            b',' => self.expect_key = self.stack.last() == Some(&true),
            b':' => self.expect_key = false,
            _ => {}
        }
    }

    fn push(&mut self, b: u8) {
        if self.out.len() < self.cap {
            self.out.push(b);
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            if !self.in_string {
                // Outside strings everything is kept (up to the cap); copy up to the next
                // quote at once.
                let n = memchr::memchr(b'"', bytes).map_or(bytes.len(), |i| i + 1);
                let room = self.cap.saturating_sub(self.out.len());
                self.out.extend_from_slice(&bytes[..n.min(room)]);
                for &c in &bytes[..n] {
                    self.structural(c);
                }
                if bytes[n - 1] == b'"' {
                    self.in_string = true;
                    self.kept = 0;
                    self.dropping = false;
                    self.key = self.expect_key;
                    self.expect_key = false;
                }
                bytes = &bytes[n..];
                continue;
            }
            if self.after_backslash {
                self.after_backslash = false;
                self.escape = if b == b'u' { 4 } else { 0 };
                if !self.dropping {
                    self.push(b);
                }
                bytes = rest;
                continue;
            }
            if self.escape > 0 {
                self.escape -= 1;
                if !self.dropping {
                    self.push(b);
                }
                bytes = rest;
                continue;
            }
            if self.dropping {
                // Skip to the next quote or backslash at once.
                match memchr::memchr2(b'"', b'\\', bytes) {
                    Some(i) => {
                        let c = bytes[i];
                        bytes = &bytes[i + 1..];
                        if c == b'"' {
                            self.in_string = false;
                            self.push(b'"');
                        } else {
                            self.after_backslash = true;
                        }
                    }
                    None => bytes = &[],
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = false;
                    self.push(b);
                }
                // A continuation byte belongs to the character being kept.
                _ if b & 0xC0 == 0x80 => self.push(b),
                _ if self.kept >= self.keep && !self.key => {
                    self.dropping = true;
                    continue; // this byte is dropped by the dropping branch
                }
                b'\\' => {
                    self.after_backslash = true;
                    self.kept += 1;
                    self.push(b);
                }
                _ => {
                    self.kept += 1;
                    self.push(b);
                }
            }
            bytes = rest;
        }
    }
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader of a pipe of `capacity` bytes (see [`Child::stdout_capacity`]).
    pub fn of_pipe(reader: R, capacity: usize) -> Self {
        let mut r = LineReader::new(reader);
        r.pipe_capacity = capacity;
        r
    }

    pub fn new(reader: R) -> Self {
        LineReader {
            reader,
            buf: Vec::with_capacity(LINE_BUF_INITIAL),
            start: 0,
            scanned: 0,
            eof: false,
            long: None,
            long_line: Vec::new(),
            last_shortened: false,
            drained: 0,
            pipe_capacity: PIPE_CAPACITY,
        }
    }

    /// Current buffer size in bytes (for tests and diagnostics).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity() + self.long_line.capacity()
    }

    /// Whether the last line returned was longer than [`LINE_CAP`] and so shortened.
    pub fn last_line_shortened(&self) -> bool {
        self.last_shortened
    }

    /// Whether a whole line is already read: the next [`LineReader::next_line`] returns
    /// it without reading.
    pub fn has_line(&mut self) -> bool {
        match memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            Some(i) => {
                // Nothing before the newline holds one: the next search starts at it.
                self.scanned += i;
                true
            }
            None => {
                self.scanned = self.buf.len();
                false
            }
        }
    }

    /// The next line without its `\n`; a last line without newline is returned too.
    /// `Ok(None)` at end of input. Lines longer than [`LINE_CAP`] come back shortened
    /// (see the type's documentation).
    pub async fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        self.shrink_if_oversized();
        self.last_shortened = false;
        if self.long_line.capacity() > LINE_BUF_RETAIN {
            self.long_line = Vec::new();
        }
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
                let line_start = self.start;
                let nl = self.scanned + i;
                self.start = nl + 1;
                self.scanned = self.start;
                if let Some(mut long) = self.long.take() {
                    long.feed(&self.buf[line_start..nl]);
                    return Ok(Some(self.finish_long(long)));
                }
                return Ok(Some(&self.buf[line_start..nl]));
            }
            self.scanned = self.buf.len();
            if self.long.is_some() || self.buf.len() - self.start > LINE_CAP {
                // Too long to keep: scan it through the shortener instead.
                let long = self
                    .long
                    .get_or_insert_with(|| Shortener::new(LONG_LINE_STRING_KEEP, LONG_LINE_CAP));
                long.feed(&self.buf[self.start..]);
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
            }
            if self.eof {
                if let Some(long) = self.long.take() {
                    return Ok(Some(self.finish_long(long)));
                }
                if self.start == self.buf.len() {
                    return Ok(None);
                }
                let line_start = self.start;
                self.start = self.buf.len();
                return Ok(Some(&self.buf[line_start..]));
            }
            if self.read().await? == 0 {
                self.eof = true;
            }
        }
    }

    /// One read into the buffer's free space; the bytes read. While nothing can be read,
    /// a buffer with nothing in it goes back to the pool, so an instance waiting for
    /// output holds no large buffer. A read that leaves room ends a drain of the pipe:
    /// when the drain took a full pipe, the writer may have been waiting, and the next
    /// poll is hurried.
    async fn read(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            if self.long.is_some() {
                if self.buf.capacity() < LONG_READ {
                    self.buf.reserve(LONG_READ);
                }
            } else {
                self.make_room();
            }
            let room = self.buf.capacity() - self.buf.len();
            let mut free = tokio::io::ReadBuf::uninit(self.buf.spare_capacity_mut());
            match std::pin::Pin::new(&mut self.reader).poll_read(cx, &mut free) {
                std::task::Poll::Ready(Ok(())) => {
                    let n = free.filled().len();
                    // SAFETY: `poll_read` initialised the first `n` bytes of the spare
                    // capacity (`ReadBuf::filled`).
                    unsafe { self.buf.set_len(self.buf.len() + n) };
                    self.drained += n;
                    if n < room {
                        if self.drained >= self.pipe_capacity {
                            crate::runtime::pacer::hurry();
                        }
                        self.drained = 0;
                    }
                    std::task::Poll::Ready(Ok(n))
                }
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => {
                    if self.buf.is_empty() {
                        spare::give(std::mem::take(&mut self.buf));
                    }
                    std::task::Poll::Pending
                }
            }
        })
        .await
    }

    fn finish_long(&mut self, long: Shortener) -> &[u8] {
        self.long_line = long.out;
        self.last_shortened = true;
        &self.long_line
    }

    fn make_room(&mut self) {
        if self.start == self.buf.len() {
            // Everything read was consumed: start over at the front for free.
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        }
        if self.buf.capacity() - self.buf.len() >= MIN_READ {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            // At least doubles, so a long line costs amortised O(1) copies per byte; the
            // buffer never grows far past LINE_CAP (beyond it the line is scanned).
            let len = self.buf.len();
            let target = (2 * len)
                .clamp(LINE_BUF_LARGE, LINE_CAP + LONG_READ)
                .max(len + MIN_READ);
            let mut larger = spare::take(target).unwrap_or_else(|| Vec::with_capacity(target));
            larger.extend_from_slice(&self.buf);
            spare::give(std::mem::replace(&mut self.buf, larger));
        }
    }

    /// Moves what is left after a line longer than the pool's buffers into a small
    /// buffer. A buffer of the pool's size stays: it goes back whole while nothing comes
    /// ([`LineReader::read`]), and moving a partial line to a small buffer that the next
    /// read outgrows again was a third of the reader's own time.
    fn shrink_if_oversized(&mut self) {
        let pending = self.buf.len() - self.start;
        if self.buf.capacity() <= LINE_BUF_LARGE || pending > LINE_BUF_RETAIN / 2 {
            return;
        }
        let mut fresh =
            Vec::with_capacity(LINE_BUF_INITIAL.max((pending + MIN_READ).next_power_of_two()));
        fresh.extend_from_slice(&self.buf[self.start..]);
        spare::give(std::mem::replace(&mut self.buf, fresh));
        self.scanned -= self.start;
        self.start = 0;
    }
}

impl<R> Drop for LineReader<R> {
    fn drop(&mut self) {
        spare::give(std::mem::take(&mut self.buf));
    }
}

/// Large line buffers that readers gave back once their long line was consumed, kept for
/// the next reader whose line outgrows its small buffer. With hundreds of instances
/// printing 100 KB tool results, allocating a fresh buffer per long line (and dropping it
/// after) meant page faults on fresh memory and copies at every doubling, a tenth of the
/// orchestrator's CPU time. Readers run on the run loop's one thread, so the pool is
/// thread-local; it keeps at most [`SPARE_BYTES`] whatever the number of instances.
mod spare {
    use std::cell::RefCell;

    use super::LINE_BUF_RETAIN;

    /// The most the pool keeps, in buffer capacity.
    pub const SPARE_BYTES: usize = 8 * 1024 * 1024;

    #[derive(Debug, Default)]
    pub struct Pool {
        buffers: Vec<Vec<u8>>,
        bytes: usize,
    }

    impl Pool {
        /// An empty buffer of at least `min` bytes' capacity, if one is kept.
        pub fn take(&mut self, min: usize) -> Option<Vec<u8>> {
            let i = self.buffers.iter().position(|b| b.capacity() >= min)?;
            let buffer = self.buffers.swap_remove(i);
            self.bytes -= buffer.capacity();
            Some(buffer)
        }

        /// Keeps `buffer` if it is large and there is room; small buffers are not worth
        /// keeping (the allocator reuses them cheaply).
        pub fn give(&mut self, mut buffer: Vec<u8>) {
            let size = buffer.capacity();
            if size <= LINE_BUF_RETAIN || self.bytes + size > SPARE_BYTES {
                return;
            }
            buffer.clear();
            self.bytes += size;
            self.buffers.push(buffer);
        }

        #[cfg(test)]
        pub fn bytes(&self) -> usize {
            self.bytes
        }
    }

    thread_local! {
        static POOL: RefCell<Pool> = RefCell::default();
    }

    pub fn take(min: usize) -> Option<Vec<u8>> {
        POOL.with(|p| p.borrow_mut().take(min))
    }

    pub fn give(buffer: Vec<u8>) {
        // During thread teardown the pool may be gone: the buffer is simply freed.
        let _ = POOL.try_with(|p| p.borrow_mut().give(buffer));
    }
}

/// The last `capacity` bytes written to it, for showing the end of a child's stderr.
#[derive(Debug, Clone)]
pub struct TailBuffer {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Whether anything has been dropped from the front.
    truncated: bool,
}

/// Tail kept for the summary by default.
pub const STDERR_TAIL_BYTES: usize = 8 * 1024;

impl TailBuffer {
    pub fn new(capacity: usize) -> Self {
        TailBuffer {
            bytes: VecDeque::with_capacity(capacity.min(STDERR_TAIL_BYTES)),
            capacity,
            truncated: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= self.capacity {
            self.truncated |= !self.bytes.is_empty() || bytes.len() > self.capacity;
            self.bytes.clear();
            self.bytes.extend(&bytes[bytes.len() - self.capacity..]);
            return;
        }
        let overflow = (self.bytes.len() + bytes.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            self.bytes.drain(..overflow);
            self.truncated = true;
        }
        self.bytes.extend(bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether earlier bytes were dropped to stay within the capacity.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The kept bytes as text (invalid UTF-8 replaced). When the front was cut off, the
    /// text starts after the first newline if there is one, else at the next character
    /// boundary, so it never opens with half a line or half a character.
    pub fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(self.bytes.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        let mut from = 0;
        if self.truncated {
            match memchr::memchr(b'\n', &all) {
                Some(i) if i + 1 < all.len() => from = i + 1,
                _ => {
                    // Skip UTF-8 continuation bytes (10xxxxxx) of a cut character.
                    from = all
                        .iter()
                        .take(3)
                        .take_while(|&&c| c & 0xC0 == 0x80)
                        .count();
                }
            }
        }
        String::from_utf8_lossy(&all[from..]).into_owned()
    }
}

/// Reads `reader` (a child's stderr) to the end, keeping its last `capacity` bytes and, if
/// `log` is given, copying everything to it. A failing log stops being written (the
/// draining goes on: an undrained pipe would block the child); its first error is
/// returned.
pub async fn drain_stderr<R>(
    mut reader: R,
    capacity: usize,
    mut log: Option<crate::runtime::logs::LogFile>,
) -> (TailBuffer, Option<String>)
where
    R: AsyncRead + Unpin,
{
    let mut tail = TailBuffer::new(capacity);
    let mut chunk = vec![0u8; 8 * 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "reading a child's stderr failed");
                break;
            }
        };
        let bytes = &chunk[..n];
        tail.push(bytes);
        if let Some(w) = log.as_mut() {
            w.write(&[bytes]);
        }
    }
    let log_error = log.and_then(crate::runtime::logs::LogFile::finish);
    (tail, log_error)
}

/// [`drain_stderr`] without a log.
pub async fn drain_to_tail<R: AsyncRead + Unpin>(reader: R, capacity: usize) -> TailBuffer {
    drain_stderr(reader, capacity, None).await.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its data in small pieces, like a pipe does.
    struct Chunked {
        data: Vec<u8>,
        pos: usize,
        chunk: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let n = self
                .chunk
                .min(buf.remaining())
                .min(self.data.len() - self.pos);
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    async fn all_lines(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut r = LineReader::new(Chunked {
            data: data.to_vec(),
            pos: 0,
            chunk,
        });
        let mut out = Vec::new();
        while let Some(line) = r.next_line().await.ok().flatten() {
            out.push(line.to_vec());
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_across_any_read_boundaries() {
        let data = b"one\ntwo\n\nthree\r\nlast-without-newline";
        let expected: Vec<Vec<u8>> = vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"".to_vec(),
            b"three\r".to_vec(),
            b"last-without-newline".to_vec(),
        ];
        for chunk in [1, 2, 3, 7, 4096] {
            assert_eq!(all_lines(data, chunk).await, expected, "chunk size {chunk}");
        }
    }

    #[tokio::test]
    async fn has_line_tells_whether_the_next_line_is_already_read() {
        let mut r = LineReader::new(Chunked {
            data: b"one\ntwo\nthr".to_vec(),
            pos: 0,
            chunk: 11,
        });
        assert!(
            !r.has_line(),
            "nothing is read before the first line is asked for"
        );
        assert_eq!(r.next_line().await.unwrap(), Some(&b"one"[..]));
        assert!(r.has_line());
        assert!(r.has_line(), "asking twice changes nothing");
        assert_eq!(r.next_line().await.unwrap(), Some(&b"two"[..]));
        assert!(!r.has_line(), "`thr` has no newline yet");
        assert_eq!(r.next_line().await.unwrap(), Some(&b"thr"[..]));
        assert_eq!(r.next_line().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_drain_that_found_the_pipe_full_hurries_the_next_poll() {
        let _ = crate::runtime::pacer::take_hurry();
        // 40 KiB in one read, then the pipe is empty: the writer never waited.
        let mut line = vec![b'x'; 40 * 1024];
        line.push(b'\n');
        let mut r = LineReader::new(Chunked {
            data: line,
            pos: 0,
            chunk: PIPE_CAPACITY,
        });
        r.next_line().await.unwrap();
        assert!(!crate::runtime::pacer::take_hurry());
        // A full pipe's worth (in reads that each filled the buffer, then a short one).
        let big = [vec![b'y'; 3 * PIPE_CAPACITY], b"\n".to_vec()].concat();
        let mut r = LineReader::new(Chunked {
            data: big,
            pos: 0,
            chunk: PIPE_CAPACITY,
        });
        assert_eq!(
            r.next_line().await.unwrap().map(<[u8]>::len),
            Some(3 * PIPE_CAPACITY)
        );
        assert!(crate::runtime::pacer::take_hurry());
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `pipe` writes two new descriptors into `fds`, which we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: both were just created and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn pipe_size(fd: &OwnedFd) -> usize {
        // SAFETY: F_GETPIPE_SZ only reads the size of a pipe we own.
        usize::try_from(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) }).unwrap()
    }

    #[test]
    fn pipes_are_enlarged_within_their_budget_and_give_it_back() {
        static BOOSTED: AtomicUsize = AtomicUsize::new(0);
        let fits = PIPE_BOOST_TOTAL / PipeBoost::EXTRA;
        let pipes: Vec<_> = (0..=fits).map(|_| pipe()).collect();
        let boosts: Vec<_> = pipes
            .iter()
            .map(|(r, _)| PipeBoost::try_counted(r, &BOOSTED))
            .collect();
        assert!(boosts[..fits].iter().all(Option::is_some));
        assert!(boosts[fits].is_none(), "over the budget");
        assert_eq!(pipe_size(&pipes[0].0), PIPE_BOOST);
        assert_eq!(pipe_size(&pipes[fits].0), PIPE_CAPACITY);
        assert_eq!(BOOSTED.load(Relaxed), fits * PipeBoost::EXTRA);
        drop(boosts);
        assert_eq!(BOOSTED.load(Relaxed), 0, "every share given back");
        assert!(PipeBoost::try_counted(&pipes[fits].0, &BOOSTED).is_some());
    }

    #[tokio::test]
    async fn empty_input_has_no_lines_and_trailing_newline_adds_none() {
        assert!(all_lines(b"", 16).await.is_empty());
        assert_eq!(all_lines(b"a\n", 16).await, vec![b"a".to_vec()]);
    }

    #[tokio::test]
    async fn invalid_utf8_passes_through_unchanged() {
        let data = b"{\"t\":\"\xff\xfe\xc3\"}\nok\n";
        let lines = all_lines(data, 5).await;
        assert_eq!(lines[0], b"{\"t\":\"\xff\xfe\xc3\"}".to_vec());
        assert_eq!(lines[1], b"ok".to_vec());
    }

    #[tokio::test]
    async fn long_line_is_whole_and_buffer_shrinks_afterwards() {
        let mut data = vec![b'x'; 3 * 1024 * 1024 + 17];
        data.extend_from_slice(b"\nsmall\nlast");
        let mut r = LineReader::new(Chunked {
            data,
            pos: 0,
            chunk: 65536,
        });
        let first = r.next_line().await.ok().flatten().map(<[u8]>::len);
        assert_eq!(first, Some(3 * 1024 * 1024 + 17));
        assert!(r.buffer_capacity() > 3 * 1024 * 1024);
        assert_eq!(r.next_line().await.ok().flatten(), Some(&b"small"[..]));
        assert!(
            r.buffer_capacity() <= LINE_BUF_RETAIN,
            "{}",
            r.buffer_capacity()
        );
        assert_eq!(r.next_line().await.ok().flatten(), Some(&b"last"[..]));
        assert_eq!(r.next_line().await.ok().flatten(), None);
    }

    fn shorten(text: &[u8], keep: usize, chunk: usize) -> Vec<u8> {
        let mut s = Shortener::new(keep, usize::MAX);
        for c in text.chunks(chunk.max(1)) {
            s.feed(c);
        }
        s.out
    }

    #[test]
    fn shortener_keeps_json_valid_and_usage_intact() {
        let text = format!(
            "{}\"quoted\" \\ \u{e9} {}",
            "é".repeat(50),
            "x".repeat(5000)
        );
        let line = serde_json::json!({
            "type": "assistant",
            "message": {"id": "m1", "content": [{"type": "text", "text": text}],
                        "usage": {"input_tokens": 5, "output_tokens": 7}}
        })
        .to_string();
        for keep in [0, 1, 3, 10, 51, 60, 100_000] {
            for chunk in [1, 2, 3, 7, 4096, usize::MAX] {
                let out = shorten(line.as_bytes(), keep, chunk);
                let v: serde_json::Value = serde_json::from_slice(&out)
                    .unwrap_or_else(|e| panic!("keep {keep} chunk {chunk}: {e}"));
                assert_eq!(v["message"]["usage"]["output_tokens"], 7);
                assert!("assistant".starts_with(v["type"].as_str().unwrap_or("?")));
                let got = v["message"]["content"][0]["text"].as_str().unwrap_or("?");
                let want: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let full = want["message"]["content"][0]["text"].as_str().unwrap_or("");
                assert!(full.starts_with(got), "keep {keep}: {got:?}");
                assert!(got.len() <= keep * 6, "keep {keep}: {} bytes", got.len());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn shortened_json_parses_and_strings_are_prefixes(
            strings in proptest::collection::vec(".{0,40}", 1..6),
            keep in 0usize..12,
            chunk in 1usize..9,
        ) {
            let obj: serde_json::Map<String, serde_json::Value> = strings
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("k{i}"), serde_json::json!([s, i])))
                .collect();
            let text = serde_json::Value::Object(obj.clone()).to_string();
            let out = shorten(text.as_bytes(), keep, chunk);
            let v: serde_json::Value = serde_json::from_slice(&out)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
            for (i, s) in strings.iter().enumerate() {
                let got = v[format!("k{i}")][0].as_str().unwrap_or("\u{0}?");
                proptest::prop_assert!(s.starts_with(got), "{:?} vs {:?}", got, s);
                proptest::prop_assert_eq!(&v[format!("k{i}")][1], &serde_json::json!(i));
            }
        }
    }

    #[tokio::test]
    async fn over_long_lines_come_back_shortened_in_bounded_memory() {
        let huge = "y".repeat(3 * LINE_CAP);
        let mut data = serde_json::json!({"type": "user", "content": huge, "usage": {"n": 1}})
            .to_string()
            .into_bytes();
        data.push(b'\n');
        data.extend(std::iter::repeat_n(b'a', 2 * LINE_CAP));
        data.extend_from_slice(b"\nsmall\n");
        let mut r = LineReader::new(Chunked {
            data,
            pos: 0,
            chunk: 65536,
        });
        let first = r.next_line().await.ok().flatten().map(<[u8]>::to_vec);
        assert!(r.last_line_shortened());
        let v: serde_json::Value =
            serde_json::from_slice(&first.unwrap_or_default()).expect("shortened JSON");
        assert_eq!(v["usage"]["n"], 1);
        assert_eq!(
            v["content"].as_str().map(str::len),
            Some(LONG_LINE_STRING_KEEP)
        );
        assert!(
            r.buffer_capacity() <= 2 * LINE_CAP,
            "{}",
            r.buffer_capacity()
        );
        // Not JSON: cut at LONG_LINE_CAP, so it does not parse.
        let second = r.next_line().await.ok().flatten().map(<[u8]>::len);
        assert_eq!(second, Some(LONG_LINE_CAP));
        assert!(
            r.buffer_capacity() <= 2 * LINE_CAP,
            "{}",
            r.buffer_capacity()
        );
        assert_eq!(r.next_line().await.ok().flatten(), Some(&b"small"[..]));
        assert!(!r.last_line_shortened());
        assert_eq!(r.next_line().await.ok().flatten(), None);
    }

    #[tokio::test]
    async fn many_lines_keep_the_buffer_small() {
        let mut data = Vec::new();
        for i in 0..20_000 {
            data.extend_from_slice(
                format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "p".repeat(i % 300)).as_bytes(),
            );
        }
        let mut r = LineReader::new(Chunked {
            data,
            pos: 0,
            chunk: 65536,
        });
        let mut n = 0;
        while let Some(line) = r.next_line().await.ok().flatten() {
            assert!(line.starts_with(b"{\"line\":") && line.ends_with(b"\"}"));
            n += 1;
        }
        assert_eq!(n, 20_000);
        assert!(r.buffer_capacity() <= LINE_BUF_RETAIN);
    }

    #[test]
    fn tail_keeps_last_bytes_from_a_line_start() {
        let mut t = TailBuffer::new(16);
        t.push(b"first line\nsecond line\nthird\n");
        assert!(t.truncated());
        // Last 16 bytes are "ond line\nthird\n"-ish; rendering starts after the newline.
        assert_eq!(t.text(), "third\n");
    }

    #[test]
    fn tail_without_truncation_is_verbatim() {
        let mut t = TailBuffer::new(64);
        t.push(b"partial ");
        t.push(b"error: boom\n");
        assert!(!t.truncated());
        assert_eq!(t.text(), "partial error: boom\n");
    }

    #[test]
    fn tail_never_starts_inside_a_character() {
        let mut t = TailBuffer::new(7);
        // "é" is two bytes; keeping 7 bytes of "aéééé" cuts the first "é" in half.
        t.push("aéééé".as_bytes());
        assert_eq!(t.text(), "ééé");
    }

    #[test]
    fn tail_push_larger_than_capacity_keeps_the_end() {
        let mut t = TailBuffer::new(4);
        t.push(b"ab");
        t.push(b"0123456789");
        assert_eq!(t.text(), "6789");
        assert!(t.truncated());
    }

    #[tokio::test]
    async fn drain_copies_everything_to_the_log_and_keeps_the_tail() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("e.stderr");
        let log = crate::runtime::logs::LogFile::create(&path);
        let (tail, error) = drain_stderr(&data[..], 32, Some(log)).await;
        assert_eq!(error, None);
        assert_eq!(std::fs::read(&path).expect("log"), data);
        assert!(tail.text().ends_with("99999\n"));
    }

    #[test]
    fn exit_info_reads_like_a_sentence() {
        let code = ExitInfo {
            code: Some(2),
            signal: None,
        };
        let killed = ExitInfo {
            code: None,
            signal: Some(SIGKILL),
        };
        assert_eq!(code.to_string(), "exit code 2");
        assert_eq!(killed.to_string(), "killed by SIGKILL");
        assert!(!killed.success());
    }

    #[test]
    fn own_children_lists_a_running_child_and_forgets_a_reaped_one() {
        let mut c = match std::process::Command::new("sleep").arg("30").spawn() {
            Ok(c) => c,
            Err(e) => panic!("spawn sleep: {e}"),
        };
        let pid = c.id() as libc::pid_t;
        let listed = own_children().contains(&pid);
        let _ = c.kill();
        let _ = c.wait();
        assert!(listed, "child {pid} not found under /proc");
        assert!(!own_children().contains(&pid));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_pidfd_turns_readable_when_the_child_exits_and_leaves_it_unreaped() {
        let mut c = match std::process::Command::new("sleep").arg("30").spawn() {
            Ok(c) => c,
            Err(e) => panic!("spawn sleep: {e}"),
        };
        let Some(fd) = exit_notifier(c.id()) else {
            let _ = c.kill();
            let _ = c.wait();
            panic!("pidfd_open failed on Linux");
        };
        assert!(!leader_exited(c.id()).expect("ours"));
        let _ = c.kill();
        let ready = tokio::time::timeout(Duration::from_secs(10), fd.readable()).await;
        assert!(matches!(ready, Ok(Ok(_))), "pidfd never became readable");
        // Still a zombie: the group id stays reserved until we reap it.
        assert!(leader_exited(c.id()).expect("still ours"));
        assert!(c.wait().is_ok());
    }

    #[test]
    fn the_spare_pool_keeps_large_buffers_up_to_its_bound() {
        let mut pool = spare::Pool::default();
        pool.give(Vec::with_capacity(LINE_BUF_INITIAL));
        assert_eq!(pool.bytes(), 0, "small buffers are not kept");
        pool.give(Vec::with_capacity(LINE_BUF_LARGE));
        let kept = pool.bytes();
        assert!(kept >= LINE_BUF_LARGE);
        assert!(pool.take(kept + 1).is_none(), "none large enough");
        let taken = pool.take(LINE_BUF_LARGE).expect("kept");
        assert!(taken.capacity() >= LINE_BUF_LARGE && taken.is_empty());
        assert_eq!(pool.bytes(), 0);
        for _ in 0..2 * spare::SPARE_BYTES / LINE_BUF_LARGE {
            pool.give(Vec::with_capacity(LINE_BUF_LARGE));
        }
        assert!(pool.bytes() <= spare::SPARE_BYTES);
        assert!(pool.bytes() > spare::SPARE_BYTES - LINE_BUF_LARGE);
    }

    /// Hands out its data in one read, then has nothing more (and no end).
    struct Stalling(Vec<u8>);

    impl AsyncRead for Stalling {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if self.0.is_empty() {
                return std::task::Poll::Pending;
            }
            let n = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0.drain(..n);
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer() {
        let mut r = LineReader::new(Stalling([vec![b'x'; 50_000], b"\nab".to_vec()].concat()));
        assert_eq!(r.next_line().await.unwrap().map(<[u8]>::len), Some(50_000));
        // `ab` is a partial line: its buffer stays while the rest is awaited.
        let waiting = tokio::time::timeout(Duration::ZERO, r.next_line()).await;
        assert!(waiting.is_err(), "no more output yet");
        assert_eq!(r.buffer_capacity(), LINE_BUF_LARGE);
        let mut r = LineReader::new(Stalling(b"one\ntwo\n".to_vec()));
        assert_eq!(r.next_line().await.unwrap(), Some(&b"one"[..]));
        assert_eq!(r.next_line().await.unwrap(), Some(&b"two"[..]));
        assert!(tokio::time::timeout(Duration::ZERO, r.next_line())
            .await
            .is_err());
        assert_eq!(r.buffer_capacity(), 0, "nothing pending: nothing held");
    }

    #[tokio::test]
    async fn a_long_line_reuses_the_buffer_another_reader_gave_back() {
        let long = |c: u8| {
            let mut data = vec![c; 100_000];
            data.extend_from_slice(b"\nsmall\n");
            data
        };
        let mut first = LineReader::new(Chunked {
            data: long(b'a'),
            pos: 0,
            chunk: 65536,
        });
        assert_eq!(
            first.next_line().await.ok().flatten().map(<[u8]>::len),
            Some(100_000)
        );
        assert_eq!(first.next_line().await.ok().flatten(), Some(&b"small"[..]));
        assert_eq!(first.next_line().await.ok().flatten(), None);
        // A reader gives its large buffer to the pool when it is done (and while it
        // waits for output, `an_idle_reader_holds_no_buffer`).
        drop(first);
        let pooled = spare::take(LINE_BUF_LARGE).expect("given back");
        let address = pooled.as_ptr();
        spare::give(pooled);
        let mut second = LineReader::new(Chunked {
            data: long(b'b'),
            pos: 0,
            chunk: 65536,
        });
        let line = second.next_line().await.ok().flatten().map(<[u8]>::as_ptr);
        assert_eq!(
            line,
            Some(address),
            "the second long line landed in the pooled buffer"
        );
    }

    #[test]
    fn refuses_to_signal_special_groups() {
        assert!(kill_group(0, 0).is_err());
        assert!(kill_group(1, 0).is_err());
        assert!(!group_alive(0));
    }
}
