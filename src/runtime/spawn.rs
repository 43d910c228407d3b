//! Starting an instance's process without copying the orchestrator's memory.
//!
//! `fork` copies the parent's page tables, and until the child calls `exec` every page
//! the parent writes takes a copy-on-write fault. With 500 instances starting at once
//! that was a quarter of the orchestrator's CPU in a run whose instances print little,
//! and about a tenth in the 500-instance scale run (docs/performance.md). `posix_spawn`
//! avoids the copy (`clone` with `CLONE_VM | CLONE_VFORK`: the child borrows the parent's
//! memory until it execs, while the calling thread waits) but cannot set a parent-death
//! signal, which `runtime::watchdog` relies on. So [`start`] does what `posix_spawn`
//! does, with that step added:
//!
//! - everything the child needs (argv, environment, the program's candidate paths, the
//!   descriptors) is prepared in the parent, so the child only makes system calls: no
//!   allocation, no lock, nothing that could panic;
//! - all signals are blocked around the `clone`. The child leaves the orchestrator's
//!   session first, then resets every signal that has a handler to its default (through
//!   "ignored", which drops one already pending, such as a Ctrl-C that reached the
//!   orchestrator's group in between) before unblocking, so no handler of the
//!   orchestrator ever runs on the borrowed memory; it leaves SIGPIPE at its default as
//!   `std` does (Rust ignores SIGPIPE; Claude's tools expect the default);
//! - the program is looked up as `execvp` does: on the child's `PATH`, and a file that
//!   is not an executable format (a script without `#!`) is run by `/bin/sh`;
//! - a step that fails stores its `errno` where the parent reads it once the child has
//!   gone (`_exit(127)`), so a missing program is an error at once, not an exit status.
//!
//! The calling thread (the run loop) waits while the child sets itself up and execs,
//! about as long as `fork` took to copy. A working directory on a filesystem that hangs
//! would stall it, but `process::spawn` checks that directory from the run loop first
//! anyway.
//!
//! Elsewhere than Linux the standard library's `fork` path is used.

// The helpers below serve the Linux path.
#![cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::process::LaunchSpec;

/// A started child: its pid (it leads its own session and process group) and the read
/// ends of its stdout and stderr pipes (close-on-exec, blocking).
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Starts `spec` with stdin from `/dev/null` and stdout and stderr piped, in a new
/// session; the kernel sends it `death_signal` when the calling thread dies (Linux).
/// The error is the raw OS error of the step that failed (the caller names the program).
pub fn start(spec: &LaunchSpec, death_signal: libc::c_int) -> io::Result<Started> {
    imp::start(spec, death_signal)
}

/// Where `exec` looks for `program`, in order: the program itself when it names a path
/// (has a `/`), otherwise each directory of `path` (`PATH` as the child will see it; an
/// empty entry is the working directory), as `execvp` does.
fn candidates(program: &OsStr, path: Option<&OsStr>) -> Vec<OsString> {
    let bytes = program.as_bytes();
    if bytes.is_empty() {
        return Vec::new();
    }
    if bytes.contains(&b'/') {
        return vec![program.to_os_string()];
    }
    // glibc's default when PATH is unset.
    let path = path.unwrap_or(OsStr::new("/bin:/usr/bin"));
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let mut full = if dir.is_empty() {
                b".".to_vec()
            } else {
                dir.to_vec()
            };
            full.push(b'/');
            full.extend_from_slice(bytes);
            OsString::from_vec(full)
        })
        .collect()
}

/// The child's environment: this process's, with `overrides` replacing or adding
/// variables (the last of the same name wins), one entry per name in name order, as
/// `std::process::Command` gives it.
fn environment(overrides: &[(String, String)]) -> Vec<OsString> {
    let mut vars: std::collections::BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    vars.extend(overrides.iter().map(|(k, v)| (k.into(), v.into())));
    vars.into_iter()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect()
}

/// `PATH` as the child will see it.
fn child_path(overrides: &[(String, String)]) -> Option<OsString> {
    match overrides.iter().rev().find(|(k, _)| k == "PATH") {
        Some((_, v)) => Some(v.into()),
        None => std::env::var_os("PATH"),
    }
}

fn c_string(s: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument, path or environment variable contains a NUL byte",
        )
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::ptr;
    use std::sync::atomic::{AtomicI32, Ordering};

    use super::{c_string, candidates, child_path, environment, LaunchSpec, Started};

    /// The child's stack until it execs. It makes a few system calls through libc, a
    /// few hundred bytes deep.
    const STACK: usize = 64 * 1024;

    /// What the child reads; all of it lives in the parent's memory, which the child
    /// borrows until it execs.
    struct ChildArgs {
        programs: Vec<CString>,
        argv: *const *const libc::c_char,
        /// `/bin/sh`, a slot for the program, then `argv[1..]`: how `execvp` runs a
        /// file that is not an executable format (a script without `#!`).
        sh_argv: *mut *const libc::c_char,
        envp: *const *const libc::c_char,
        cwd: CString,
        stdin: libc::c_int,
        stdout: libc::c_int,
        stderr: libc::c_int,
        death_signal: libc::c_int,
        parent: libc::pid_t,
        /// The highest signal number.
        last_signal: libc::c_int,
        /// The errno of the step that failed; 0 when the program was executed.
        error: AtomicI32,
    }

    pub(super) fn start(spec: &LaunchSpec, death_signal: libc::c_int) -> io::Result<Started> {
        let programs = candidates(spec.program.as_os_str(), child_path(&spec.env).as_deref())
            .into_iter()
            .map(|p| c_string(p.into_vec()))
            .collect::<io::Result<Vec<_>>>()?;
        let argv = std::iter::once(spec.program.as_os_str())
            .chain(spec.args.iter().map(|a| a.as_os_str()))
            .map(|a| c_string(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = environment(&spec.env)
            .into_iter()
            .map(|kv| c_string(kv.into_vec()))
            .collect::<io::Result<Vec<_>>>()?;
        let argv_ptrs = null_terminated(&argv);
        let envp_ptrs = null_terminated(&envp);
        let mut sh_argv_ptrs: Vec<*const libc::c_char> = [c"/bin/sh".as_ptr(), ptr::null()]
            .into_iter()
            .chain(argv_ptrs[1..].iter().copied())
            .collect();

        let stdin = above_stdio(dev_null()?)?;
        let (stdout, stdout_w) = pipe()?;
        let (stderr, stderr_w) = pipe()?;
        let args = ChildArgs {
            programs,
            argv: argv_ptrs.as_ptr(),
            sh_argv: sh_argv_ptrs.as_mut_ptr(),
            envp: envp_ptrs.as_ptr(),
            cwd: c_string(spec.cwd.as_os_str().as_bytes())?,
            stdin: stdin.as_raw_fd(),
            stdout: stdout_w.as_raw_fd(),
            stderr: stderr_w.as_raw_fd(),
            death_signal,
            // SAFETY: plain syscall.
            parent: unsafe { libc::getpid() },
            last_signal: libc::SIGRTMAX(),
            error: AtomicI32::new(0),
        };
        let mut stack: Vec<u8> = Vec::with_capacity(STACK);
        // The stack grows down from its end, 16-byte aligned as the ABI wants.
        let top = (stack.as_mut_ptr() as usize + STACK) & !15;

        // SAFETY: the child runs `child_main` on `stack` with the memory of this process,
        // while this thread is suspended (CLONE_VFORK) until it execs or exits; `args`,
        // the strings and the pointer arrays outlive it. Every signal is blocked across
        // the clone, so nothing of ours runs in the child before it resets its handlers.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::clone(
                child_main,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                &args as *const ChildArgs as *mut libc::c_void,
            );
            let clone_error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
            if pid < 0 {
                return Err(clone_error);
            }
            pid
        };
        drop(stack);
        match args.error.load(Ordering::Acquire) {
            0 => Ok(Started {
                pid: pid as u32,
                stdout,
                stderr,
            }),
            code => {
                // It exited before it could exec: reap it.
                let _ = crate::runtime::process::wait_child(pid, 0);
                Err(io::Error::from_raw_os_error(code))
            }
        }
    }

    /// The child: only system calls (see the module's comment), then `execve`.
    extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the parent's `ChildArgs`, alive until this child execs or
        // exits; the child writes only `error` and the program's slot in `sh_argv`.
        // Everything below is a system call wrapper that allocates nothing.
        unsafe {
            let a = &*(arg as *const ChildArgs);
            // A session of its own (see `process::spawn`), first: until then a signal
            // to the orchestrator's group (Ctrl-C) reaches this child too, and stays
            // pending while everything is blocked.
            if libc::setsid() < 0 {
                fail(a);
            }
            for sig in 1..=a.last_signal {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, ptr::null(), &mut old) != 0 {
                    continue; // glibc's own (32 and 33): not to be touched
                }
                let handled =
                    old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
                if handled || sig == libc::SIGPIPE {
                    // Ignoring a signal discards it if pending (such as that Ctrl-C),
                    // so it cannot take its default action once unblocked.
                    let mut set: libc::sigaction = std::mem::zeroed();
                    set.sa_sigaction = libc::SIG_IGN;
                    libc::sigaction(sig, &set, ptr::null_mut());
                    set.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(sig, &set, ptr::null_mut());
                }
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                a.death_signal as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                fail(a);
            }
            // The parent died before prctl took effect: no signal will come.
            if libc::getppid() != a.parent {
                libc::_exit(1);
            }
            for (fd, to) in [(a.stdin, 0), (a.stdout, 1), (a.stderr, 2)] {
                // All three are above 2 and close-on-exec; dup2 clears that on the copy.
                if libc::dup2(fd, to) < 0 {
                    fail(a);
                }
            }
            if libc::chdir(a.cwd.as_ptr()) != 0 {
                fail(a);
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, ptr::null_mut());
            // As execvp: a candidate that is not there is skipped, one that cannot be run
            // is remembered, any other error ends the search.
            let mut error = libc::ENOENT;
            let mut denied = false;
            for program in &a.programs {
                libc::execve(program.as_ptr(), a.argv, a.envp);
                error = errno();
                if error == libc::ENOEXEC {
                    *a.sh_argv.add(1) = program.as_ptr();
                    libc::execve(*a.sh_argv, a.sh_argv.cast_const(), a.envp);
                    error = errno();
                }
                match error {
                    libc::EACCES => denied = true,
                    libc::ENOENT
                    | libc::ENOTDIR
                    | libc::ESTALE
                    | libc::ENODEV
                    | libc::ETIMEDOUT => {}
                    _ => {
                        denied = false;
                        break;
                    }
                }
            }
            a.error
                .store(if denied { libc::EACCES } else { error }, Ordering::Release);
            libc::_exit(127)
        }
    }

    /// Ends a child whose step failed, telling the parent why.
    unsafe fn fail(a: &ChildArgs) -> ! {
        a.error.store(errno().max(1), Ordering::Release);
        // SAFETY: ends this child only.
        unsafe { libc::_exit(127) }
    }

    fn errno() -> libc::c_int {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }

    fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(ptr::null()))
            .collect()
    }

    /// A pipe: (read end, write end), both close-on-exec, the write end above stdio.
    fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills `fds` with two new descriptors on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just created and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((r, above_stdio(w)?))
    }

    fn dev_null() -> io::Result<OwnedFd> {
        // SAFETY: plain syscall; on success it returns a new descriptor that we own.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just opened, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `fd` moved above 2 if it is a standard descriptor's number (this process was
    /// started with one closed), so that the child's `dup2` onto 0, 1 and 2 cannot
    /// overwrite a descriptor it still has to copy.
    fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
        if fd.as_raw_fd() > 2 {
            return Ok(fd);
        }
        // SAFETY: plain syscall; on success it returns a new descriptor that we own.
        let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if moved < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just created, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(moved) })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::io;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::{LaunchSpec, Started};

    pub(super) fn start(spec: &LaunchSpec, _death_signal: libc::c_int) -> io::Result<Started> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        match (child.stdout.take(), child.stderr.take()) {
            (Some(out), Some(err)) => Ok(Started {
                pid: child.id(),
                stdout: out.into(),
                stderr: err.into(),
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other("its pipes were not set up"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::process::wait_child;
    use std::io::Read;
    use std::path::PathBuf;

    fn spec(program: &str, args: &[&str]) -> LaunchSpec {
        LaunchSpec {
            program: PathBuf::from(program),
            args: args.iter().map(OsString::from).collect(),
            cwd: PathBuf::from("/"),
            env: Vec::new(),
        }
    }

    /// Runs `spec` to its end: (stdout, exit status as waitpid gives it).
    fn run(spec: &LaunchSpec) -> (String, i32) {
        match start(spec, libc::SIGTERM) {
            Ok(started) => collect(started),
            Err(e) => panic!("start {}: {e}", spec.program.display()),
        }
    }

    /// Reads a started child's stdout to its end and reaps it: (stdout, exit status as
    /// waitpid gives it).
    fn collect(started: Started) -> (String, i32) {
        drop(started.stderr);
        let mut out = String::new();
        if let Err(e) = std::fs::File::from(started.stdout).read_to_string(&mut out) {
            panic!("read: {e}");
        }
        match wait_child(started.pid as libc::pid_t, 0) {
            Ok(Some(w)) => (out, w.status),
            other => panic!("wait: {other:?}"),
        }
    }

    fn status_field(status: &str, field: &str) -> u64 {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        u64::from_str_radix(line.trim(), 16).unwrap_or_else(|e| panic!("{field}: {e}"))
    }

    #[test]
    fn candidates_follow_execvp() {
        let c = |p: &str, path: Option<&str>| -> Vec<String> {
            candidates(OsStr::new(p), path.map(OsStr::new))
                .into_iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(c("/usr/bin/env", Some("/x")), ["/usr/bin/env"]);
        assert_eq!(c("./claude", Some("/x")), ["./claude"]);
        assert_eq!(c("claude", Some("/a:/b/c")), ["/a/claude", "/b/c/claude"]);
        assert_eq!(
            c("claude", Some("/a::/b")),
            ["/a/claude", "./claude", "/b/claude"]
        );
        assert_eq!(c("claude", None), ["/bin/claude", "/usr/bin/claude"]);
        assert!(c("", Some("/a")).is_empty());
    }

    #[test]
    fn the_environment_is_this_process_s_with_the_overrides() {
        let env = environment(&[
            ("PATH".into(), "/only/here".into()),
            ("ORCHESTRATOR_SPAWN_TEST".into(), "first".into()),
            ("ORCHESTRATOR_SPAWN_TEST".into(), "x=y".into()),
        ]);
        let env: Vec<String> = env
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(env.iter().filter(|v| v.starts_with("PATH=")).count(), 1);
        assert!(env.contains(&"PATH=/only/here".to_string()));
        let test_vars: Vec<&String> = env
            .iter()
            .filter(|v| v.starts_with("ORCHESTRATOR_SPAWN_TEST="))
            .collect();
        assert_eq!(test_vars, ["ORCHESTRATOR_SPAWN_TEST=x=y"]);
        if let Some(home) = std::env::var_os("HOME") {
            assert!(env.contains(&format!("HOME={}", home.to_string_lossy())));
        }
    }

    #[test]
    fn the_child_starts_with_no_signal_blocked_and_sigpipe_at_its_default() {
        // This test process ignores SIGPIPE (Rust's runtime does) and the parent blocks
        // every signal around the clone; neither may reach the program.
        let (status, code) = run(&spec("cat", &["/proc/self/status"]));
        assert_eq!(code, 0, "{status}");
        assert_eq!(status_field(&status, "SigBlk:"), 0, "{status}");
        let sigpipe = 1u64 << (libc::SIGPIPE - 1);
        assert_eq!(status_field(&status, "SigIgn:") & sigpipe, 0, "{status}");
    }

    #[test]
    fn the_child_leads_a_new_session_with_stdin_from_dev_null() {
        let (text, _) = run(&spec("cat", &["/proc/self/stat"]));
        let stat = crate::runtime::procfs::Stat::parse(&text).expect(&text);
        let me = i32::try_from(std::process::id()).expect("pid");
        assert_eq!(stat.ppid, me, "{text}");
        assert_eq!(stat.pgid, stat.pid, "group leader: {text}");
        assert_eq!(stat.sid, stat.pid, "session leader: {text}");
        let (link, _) = run(&spec("readlink", &["/proc/self/fd/0"]));
        assert_eq!(link.trim(), "/dev/null");
    }

    /// This process's descriptors that a child inherits (no close-on-exec): the test
    /// harness may pass some on (cargo's jobserver pipe).
    fn inheritable_fds() -> Vec<String> {
        let dir = std::fs::read_dir("/proc/self/fd").unwrap_or_else(|e| panic!("{e}"));
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|fd| {
                let Ok(n) = fd.parse::<libc::c_int>() else {
                    return false;
                };
                // SAFETY: F_GETFD only reads the flags (or fails for a closed descriptor).
                let flags = unsafe { libc::fcntl(n, libc::F_GETFD) };
                flags >= 0 && flags & libc::FD_CLOEXEC == 0
            })
            .collect()
    }

    #[test]
    fn the_child_holds_no_pipe_of_ours_but_its_stdout_and_stderr() {
        // Other children's pipes are open in this process meanwhile.
        let others: Vec<Started> = (0..4)
            .filter_map(|_| start(&spec("sleep", &["0.5"]), libc::SIGTERM).ok())
            .collect();
        let inherited = inheritable_fds();
        let (fds, code) = run(&spec("ls", &["-l", "/proc/self/fd"]));
        assert_eq!(code, 0, "{fds}");
        let pipes: Vec<&str> = fds
            .lines()
            .filter(|l| l.contains("pipe:"))
            .filter_map(|l| l.split(" -> ").next()?.rsplit(' ').next())
            .filter(|fd| !inherited.iter().any(|i| i == fd) || ["1", "2"].contains(fd))
            .collect();
        assert_eq!(
            pipes,
            ["1", "2"],
            "{fds}\ninherited from the harness: {inherited:?}"
        );
        for o in others {
            let _ = wait_child(o.pid as libc::pid_t, 0);
        }
    }

    #[test]
    fn the_program_is_found_on_the_path_the_child_gets() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let link = dir.path().join("orchestrator-test-echo");
        // A link, not a copy: a file just written here could still be open for writing
        // in a child another test forks, and exec would fail with ETXTBSY.
        std::os::unix::fs::symlink("/bin/echo", &link).unwrap_or_else(|e| panic!("{e}"));
        let mut s = spec("orchestrator-test-echo", &["found"]);
        let path = format!("/nonexistent:{}", dir.path().display());
        s.env.push(("PATH".into(), path));
        let (out, code) = run(&s);
        assert_eq!((out.as_str(), code), ("found\n", 0));
    }

    #[test]
    fn a_script_without_a_shebang_is_run_by_sh_as_execvp_does() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let script = dir.path().join("no-shebang");
        std::fs::write(&script, "echo ran-by-sh \"$@\"\n").unwrap_or_else(|e| panic!("{e}"));
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&script, mode).unwrap_or_else(|e| panic!("{e}"));
        let s = spec(&script.to_string_lossy(), &["a b", "c"]);
        // A child another test starts meanwhile may still hold the file open for
        // writing from before its exec (ETXTBSY): try again.
        for _ in 0..100 {
            match start(&s, libc::SIGTERM) {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("start: {e}"),
                Ok(started) => {
                    assert_eq!(collect(started), ("ran-by-sh a b c\n".to_string(), 0));
                    return;
                }
            }
        }
        panic!("the script stayed busy");
    }

    #[test]
    fn a_program_that_cannot_run_is_an_error_not_an_exit_status() {
        let kind = |s: &LaunchSpec| match start(s, libc::SIGTERM) {
            Ok(started) => panic!("started {} as {}", s.program.display(), started.pid),
            Err(e) => e.kind(),
        };
        assert_eq!(
            kind(&spec("/nonexistent/claude", &[])),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(&spec("no-such-program-anywhere", &[])),
            io::ErrorKind::NotFound
        );
        assert_eq!(kind(&spec("/tmp", &[])), io::ErrorKind::PermissionDenied);
        let mut missing_dir = spec("true", &[]);
        missing_dir.cwd = PathBuf::from("/nonexistent");
        assert_eq!(kind(&missing_dir), io::ErrorKind::NotFound);
        let mut nul = spec("true", &[]);
        nul.args.push(OsString::from("a\0b"));
        assert_eq!(kind(&nul), io::ErrorKind::InvalidInput);
    }
}
