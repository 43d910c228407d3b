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
use orchestrator::runtime::{pacer::WAKE_EVERY_RELAXED, process::PIPE_BOOST};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: pipe_floor N PROGRAM ARGS...   (\"{{i}}\" in ARGS becomes 1..=N)");
        std::process::exit(2);
    }
    let n: usize = args[0].parse().expect("N: a number of instances");
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
        children.push((child, Some(out)));
    }
    let mut buf = vec![0u8; PIPE_BOOST];
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let mut fds: Vec<libc::pollfd> = children
            .iter()
            .filter_map(|(_, out)| out.as_ref())
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
        for (_, out) in children.iter_mut().filter(|(_, o)| o.is_some()) {
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
                bytes += got as u64;
                lines += memchr::memchr_iter(b'\n', &buf[..got as usize]).count() as u64;
                if (got as usize) < buf.len() {
                    break;
                }
            }
        }
        std::thread::sleep(WAKE_EVERY_RELAXED);
    }
    for (mut child, _) in children {
        let _ = child.wait();
    }
    let (ru, user, sys) = orchestrator::app::rusage(libc::RUSAGE_SELF).expect("getrusage");
    eprintln!(
        "pipe_floor rusage: bytes={bytes} lines={lines} user_s={user:.3} sys_s={sys:.3} max_rss_kb={}",
        ru.ru_maxrss
    );
}
