//! The floor under the orchestrator's CPU on a fleet: start the same commands, read
//! their stdout pipes and find the line ends, nothing else (no parsing, no accounting).
//! Pipes are enlarged as the orchestrator enlarges them and polled at its pace in a run
//! no budget can stop (`pacer::WAKE_EVERY_RELAXED`), so what is left is what the kernel
//! charges the reader for the bytes: the copy out of the pipe and freeing its pages.
//! benches/zen_compare.sh runs it beside the orchestrator.
//!
//! ```text
//! pipe_floor N PROGRAM ARGS...     # "{i}" in ARGS becomes 1..=N
//! ```
//!
//! Prints one line on stderr: bytes, lines, and its own CPU, `getrusage(RUSAGE_SELF)`.
//!
//! With `PIPE_FLOOR_TRACK=1` it also hands every complete line to a `Tracker` of its
//! instance, as the orchestrator does, and prints the fleet's tokens: the floor of an
//! orchestrator reduced to one thread that reads, parses and accounts, with no tasks,
//! channels, events, budgets or watchdog.
use orchestrator::core::{accounting::Tracker, pricing::Pricing};
use orchestrator::runtime::{pacer::WAKE_EVERY_RELAXED, process::PIPE_BOOST};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: pipe_floor N PROGRAM ARGS...   (\"{{i}}\" in ARGS becomes 1..=N)");
        std::process::exit(2);
    }
    let n: usize = args[0].parse().expect("N: a number of instances");
    let track = std::env::var_os("PIPE_FLOOR_TRACK").is_some();
    let pricing = Arc::new(Pricing::builtin());
    let mut children = Vec::new();
    for i in 1..=n {
        let argv: Vec<String> = args[2..]
            .iter()
            .map(|a| a.replace("{i}", &i.to_string()))
            .collect();
        let mut child = Command::new(&args[1])
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the program");
        let out = child.stdout.take().expect("stdout is piped");
        // SAFETY: fcntl on a pipe this process owns; a failed resize leaves the default.
        unsafe {
            libc::fcntl(
                out.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BOOST as libc::c_int,
            );
            libc::fcntl(out.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        }
        let tracker = track.then(|| (Tracker::new(pricing.clone()), Vec::new()));
        children.push((child, Some(out), tracker));
    }
    let mut buf = vec![0u8; PIPE_BOOST];
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let mut fds: Vec<libc::pollfd> = children
            .iter()
            .filter_map(|(_, out, _)| out.as_ref())
            .map(|o| libc::pollfd {
                fd: o.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if fds.is_empty() {
            break;
        }
        // SAFETY: `fds` is a valid array of its length for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        for (_, out, tracker) in children.iter_mut().filter(|(_, o, _)| o.is_some()) {
            let fd = out.as_ref().expect("filtered").as_raw_fd();
            if !fds.iter().any(|p| p.fd == fd && p.revents != 0) {
                continue;
            }
            loop {
                // SAFETY: reads into `buf`, which is valid for its length.
                let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if got == 0 {
                    *out = None;
                }
                if got <= 0 {
                    break; // the end, or nothing more for now (EAGAIN)
                }
                let got_bytes = &buf[..got as usize];
                bytes += got as u64;
                match tracker {
                    Some((tracker, partial)) => lines += observe(tracker, partial, got_bytes),
                    None => lines += memchr::memchr_iter(b'\n', got_bytes).count() as u64,
                }
                if (got as usize) < buf.len() {
                    break;
                }
            }
        }
        std::thread::sleep(WAKE_EVERY_RELAXED);
    }
    let mut tokens = 0;
    for (mut child, _, tracker) in children {
        let _ = child.wait();
        if let Some((mut tracker, partial)) = tracker {
            if !partial.is_empty() {
                tracker.observe(&partial);
                lines += 1;
            }
            tokens += tracker.total_tokens();
        }
    }
    let (ru, user, sys) = orchestrator::app::rusage(libc::RUSAGE_SELF).expect("getrusage");
    let tokens = if track {
        format!(" tokens={tokens}")
    } else {
        String::new()
    };
    eprintln!(
        "pipe_floor rusage: bytes={bytes} lines={lines}{tokens} user_s={user:.3} sys_s={sys:.3} max_rss_kb={}",
        ru.ru_maxrss
    );
}

/// Hands each line completed by `got` to `tracker`, joining it with the start kept in
/// `partial` from earlier reads; keeps the unfinished end. Returns the lines completed.
fn observe(tracker: &mut Tracker, partial: &mut Vec<u8>, mut got: &[u8]) -> u64 {
    let mut lines = 0;
    while let Some(end) = memchr::memchr(b'\n', got) {
        if partial.is_empty() {
            tracker.observe(&got[..end]);
        } else {
            partial.extend_from_slice(&got[..end]);
            tracker.observe(partial);
            partial.clear();
        }
        got = &got[end + 1..];
        lines += 1;
    }
    partial.extend_from_slice(got);
    lines
}
