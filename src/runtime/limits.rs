//! Open-file limit: raised as far as allowed at start, and the parallelism it still
//! cannot carry is queued instead of failing instances with "Too many open files".

use std::io;

/// Descriptors one running instance holds: its stdout and stderr pipes, the pidfd that
/// tells its exit, and one spare for the short-lived descriptors of a spawn.
pub const FDS_PER_INSTANCE: u64 = 4;
/// More per instance with `--log-dir`: its `.jsonl` and `.stderr` files.
pub const FDS_PER_LOGGED_INSTANCE: u64 = FDS_PER_INSTANCE + 2;
/// Kept free for everything else (report, config, the runtime, the event thread, spawns).
pub const FDS_RESERVE: u64 = 32;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// Descriptors this process has open now (from /proc/self/fd; 16 as a guess elsewhere).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(16)
}

/// How many instances may run at once within `limit` open files, `open` of which are
/// in use already; at least 1.
pub fn parallel_capacity(limit: u64, open: u64, logged: bool) -> usize {
    let per = if logged {
        FDS_PER_LOGGED_INSTANCE
    } else {
        FDS_PER_INSTANCE
    };
    let free = limit.saturating_sub(open).saturating_sub(FDS_RESERVE);
    usize::try_from(free / per).unwrap_or(usize::MAX).max(1)
}

/// The `--max-parallel` to use: `requested` (0 = unlimited) lowered to `capacity` when
/// `instances` could otherwise need more at once. `Some(new)` when it was lowered.
pub fn effective_parallelism(requested: usize, instances: usize, capacity: usize) -> Option<usize> {
    let wanted = if requested == 0 {
        instances
    } else {
        requested.min(instances)
    };
    (wanted > capacity).then_some(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_leaves_the_reserve_and_never_drops_to_zero() {
        assert_eq!(parallel_capacity(1024, 10, false), (1024 - 10 - 32) / 4);
        assert_eq!(parallel_capacity(1024, 10, true), (1024 - 10 - 32) / 6);
        assert_eq!(parallel_capacity(20, 10, false), 1);
        assert_eq!(parallel_capacity(0, 10, true), 1);
    }

    #[test]
    fn parallelism_is_lowered_only_when_it_could_be_exceeded() {
        assert_eq!(effective_parallelism(0, 500, 245), Some(245));
        assert_eq!(effective_parallelism(0, 100, 245), None);
        assert_eq!(effective_parallelism(300, 500, 245), Some(245));
        assert_eq!(effective_parallelism(200, 500, 245), None);
        assert_eq!(effective_parallelism(300, 100, 245), None);
        assert_eq!(effective_parallelism(0, 0, 1), None);
    }

    #[test]
    fn raising_keeps_or_raises_the_soft_limit() {
        let mut before: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: reads into our struct.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) },
            0
        );
        let now = raise_nofile_limit().expect("getrlimit");
        assert!(now >= before.rlim_cur as u64);
    }
}
