//! The process table as Linux's `/proc/PID/stat` shows it: read by the run loop (to find
//! an instance's detached descendants, its stopped leader, the orchestrator's own
//! children) and by the watchdog (to freeze and kill what a dead orchestrator left).
//! Elsewhere than Linux there is no `/proc`: every lookup finds nothing.

/// The fields of one process's `/proc/PID/stat` that this program uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// `R`, `S`, `T` (stopped by a signal), `t` (stopped by a tracer), `Z`, …
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Start time in clock ticks after boot: with the pid, it names one process even
    /// after the pid is reused.
    pub start: u64,
}

impl Stat {
    /// Parses the text of `/proc/PID/stat`. The command name (field 2) may hold spaces
    /// and parentheses, so fields are counted after the last `)`.
    pub fn parse(text: &str) -> Option<Stat> {
        let pid = text.split_ascii_whitespace().next()?.parse().ok()?;
        let mut f = text[text.rfind(')')? + 1..].split_ascii_whitespace();
        let state = f.next()?.chars().next()?;
        let ppid = f.next()?.parse().ok()?;
        let pgid = f.next()?.parse().ok()?;
        let sid = f.next()?.parse().ok()?;
        // Fields 7 to 21 are not used; field 22 is the start time.
        let start = f.nth(15)?.parse().ok()?;
        Some(Stat {
            pid,
            state,
            ppid,
            pgid,
            sid,
            start,
        })
    }
}

/// `pid`'s entry, or `None` when it is gone (or there is no `/proc`).
pub fn stat(pid: i32) -> Option<Stat> {
    Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process's entry (empty without `/proc`).
pub fn table() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(stat)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_the_last_parenthesis() {
        // A command name may be anything up to 15 bytes, `) 1 2 3 (` included.
        let text = "4242 (a) 1 2 3 (x) T 17 4242 4240 34816 4242 4194560 90 0 0 0 3 1 0 0 20 0 1 0 123456 2326528 96 18446744073709551615\n";
        assert_eq!(
            Stat::parse(text),
            Some(Stat {
                pid: 4242,
                state: 'T',
                ppid: 17,
                pgid: 4242,
                sid: 4240,
                start: 123456,
            })
        );
        assert_eq!(Stat::parse("4242 (cut) S 1 2"), None);
        assert_eq!(Stat::parse(""), None);
    }

    #[test]
    fn our_own_entry_is_in_the_table() {
        let me = i32::try_from(std::process::id()).expect("pid");
        let own = stat(me).expect("own stat");
        // SAFETY: getppid, getpgrp and getsid(0) cannot fail.
        let (ppid, pgid, sid) = unsafe { (libc::getppid(), libc::getpgrp(), libc::getsid(0)) };
        assert_eq!(
            (own.pid, own.ppid, own.pgid, own.sid),
            (me, ppid, pgid, sid)
        );
        assert!(own.start > 0);
        let listed = table().into_iter().find(|p| p.pid == me);
        assert_eq!(listed.map(|p| p.start), Some(own.start));
    }

    #[test]
    fn a_stopped_process_shows_t() {
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(c.id()).expect("pid");
        // SAFETY: plain syscalls on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        // waitpid(WUNTRACED) returns once the child has stopped.
        let mut status = 0;
        // SAFETY: as above.
        unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
        let state = stat(pid).map(|s| s.state);
        let _ = c.kill();
        let _ = c.wait();
        assert!(libc::WIFSTOPPED(status), "{status:#x}");
        assert_eq!(state, Some('T'));
    }
}
