//! Wake-up pacing for the run loop.
//!
//! With hundreds of instances streaming, output arrives on some pipe nearly all the time,
//! and a loop that polls again as soon as it is done wakes thousands of times a second,
//! each time for a few lines. Every wake-up costs a sleep and a reschedule in the kernel
//! (on a virtual machine, an interrupt to a halted vCPU), which was most of the
//! orchestrator's CPU time in the 500-instance scale run. The pacer makes the loop wait,
//! just before it would poll for more, until its interval has passed since it last
//! polled: output then accumulates in the pipes and one wake-up handles many lines.
//!
//! A loop that was idle for longer than that polls at once, so a lone event (a line from
//! a quiet instance, a signal, a timer) is handled as quickly as before; only a busy loop
//! is paced. How long it waits depends on what a late line can cost:
//! - [`WAKE_EVERY`] (4 ms) when a budget can stop instances (block mode): at most that is
//!   added to a budget decision (the crossing → SIGTERM bar is 10 ms;
//!   `benches/latency.sh` measures it);
//! - [`WAKE_EVERY_RELAXED`] (50 ms) otherwise: nothing is decided on a line then, and
//!   what a person or a script sees changes no faster (the live view redraws every
//!   200 ms, `--json` usage events come at most every 100 ms).
//!
//! So that Claude does not wait meanwhile, stdout pipes are enlarged (`process::spawn`),
//! and a reader that finds its pipe was full calls [`hurry`]: the writer may be blocked
//! on it, so the next poll comes at once.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one poll for new output per this interval while the loop is busy, when a
/// budget can stop instances.
pub const WAKE_EVERY: Duration = Duration::from_millis(4);
/// The same when no budget can stop an instance.
pub const WAKE_EVERY_RELAXED: Duration = Duration::from_millis(50);

thread_local! {
    /// Set by [`hurry`]; the run loop and its readers share one thread.
    static HURRY: Cell<bool> = const { Cell::new(false) };
}

/// The next poll on this thread comes without a pause: a pipe was found full, so its
/// writer may be waiting for room.
pub fn hurry() {
    HURRY.with(|h| h.set(true));
}

/// Whether [`hurry`] was called on this thread since the last time this was asked.
pub fn take_hurry() -> bool {
    HURRY.with(|h| h.replace(false))
}

/// How long to wait before polling, given the time since the last poll.
pub fn pause_before_poll(since_last_poll: Duration, every: Duration) -> Option<Duration> {
    every.checked_sub(since_last_poll).filter(|d| !d.is_zero())
}

/// The run loop's pacer: call [`Pacer::before_poll`] each time the loop is about to park
/// (Tokio's `on_thread_park`).
#[derive(Debug)]
pub struct Pacer {
    every: Duration,
    origin: Instant,
    /// When the loop last polled, in nanoseconds since `origin`.
    last_poll_ns: AtomicU64,
}

impl Pacer {
    pub fn new(every: Duration) -> Pacer {
        Pacer {
            every,
            origin: Instant::now(),
            last_poll_ns: AtomicU64::new(0),
        }
    }

    pub fn before_poll(&self) {
        let last = Duration::from_nanos(self.last_poll_ns.load(Ordering::Relaxed));
        let since = self.origin.elapsed().saturating_sub(last);
        let hurried = take_hurry();
        if let Some(pause) = pause_before_poll(since, self.every).filter(|_| !hurried) {
            std::thread::sleep(pause);
        }
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_poll_ns.store(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_millis(4);

    #[test]
    fn a_busy_loop_waits_out_the_rest_of_the_interval() {
        let ms = Duration::from_millis;
        assert_eq!(pause_before_poll(ms(0), EVERY), Some(ms(4)));
        assert_eq!(pause_before_poll(ms(1), EVERY), Some(ms(3)));
        assert_eq!(
            pause_before_poll(Duration::from_micros(3_999), EVERY),
            Some(Duration::from_micros(1))
        );
    }

    #[test]
    fn a_loop_idle_for_the_interval_or_longer_polls_at_once() {
        let ms = Duration::from_millis;
        assert_eq!(pause_before_poll(ms(4), EVERY), None);
        assert_eq!(pause_before_poll(ms(5), EVERY), None);
        assert_eq!(pause_before_poll(Duration::from_secs(3600), EVERY), None);
    }

    #[test]
    fn a_hurry_is_taken_once() {
        assert!(!take_hurry());
        hurry();
        hurry();
        assert!(take_hurry());
        assert!(!take_hurry());
    }

    #[test]
    fn zero_interval_never_pauses() {
        assert_eq!(pause_before_poll(Duration::ZERO, Duration::ZERO), None);
    }
}
