//! The launch gate: when the next instance may start. It combines `--start-at` and
//! `--startup-delay` spacing, `--max-parallel`, fleet backoff after 429/529 answers
//! (pauses, a lowered parallelism restored step by step), a usage-limit hold and a stop;
//! budget admission is the ledger's. Pure: time is a parameter.

use super::{RunEvent, WaitReason};
use crate::core::plan::RunOptions;
use crate::core::signal::PauseReason;
use std::time::{Duration, Instant};

/// When launches may happen: `--start-at`, `--startup-delay` spacing, `--max-parallel`.
/// Budget admission is the ledger's.
#[derive(Debug, Clone)]
pub(super) struct LaunchGate {
    pub(super) next_launch_at: Instant,
    pub(super) spacing: Duration,
    pub(super) max_parallel: usize,
    /// Fleet backoff: at most this many at once while the API pushes back.
    pub(super) limit: Option<usize>,
    /// The last backoff signal, and the last change of `limit`.
    pub(super) last_backoff: Option<Instant>,
    pub(super) last_change: Option<Instant>,
    /// Launches paused until then (429/529 retry delays).
    pub(super) pause: Option<(Instant, PauseReason)>,
    /// Launches held until the usage limit resets (its Unix time when known).
    pub(super) hold: Option<(Instant, Option<i64>)>,
    /// Nothing more launches (spend cap, usage limit with `stop`).
    pub(super) stopped: Option<String>,
    /// How long the fleet must see no 429/529 before parallelism goes up one step; also
    /// the shortest time between two halvings (`--backoff-quiet`).
    pub(super) quiet: Duration,
}

/// A usage limit whose reset time Claude did not give is tried again this often.
pub const PROBE: Duration = Duration::from_secs(300);
/// Resuming waits this long past a reset, so the first call is not early.
pub const RESET_MARGIN: Duration = Duration::from_secs(2);

impl LaunchGate {
    pub(super) fn new(o: &RunOptions, now: Instant) -> LaunchGate {
        LaunchGate {
            next_launch_at: now,
            spacing: o.startup_delay,
            max_parallel: o.max_parallel,
            limit: None,
            last_backoff: None,
            last_change: None,
            pause: None,
            hold: None,
            stopped: None,
            quiet: o.backoff_quiet,
        }
    }

    /// Fleet backoff (additive increase, multiplicative decrease): a 429/529 from
    /// instance `name` pauses launches for its retry `delay` and halves how many may run
    /// at once (of `running` when no --max-parallel is set), at most once per quiet
    /// interval; an `allowed_warning` (no delay) only halves.
    pub(super) fn backoff(
        &mut self,
        name: &str,
        cause: String,
        delay: Option<Duration>,
        running: usize,
        now: Instant,
    ) -> Vec<RunEvent> {
        let mut events = Vec::new();
        self.last_backoff = Some(now);
        if let Some(delay) = delay.filter(|d| !d.is_zero()) {
            let until = now + delay;
            match &mut self.pause {
                Some((t, r)) if *t > now => {
                    *t = (*t).max(until);
                    if !r.from.iter().any(|n| n == name) {
                        r.from.push(name.to_string());
                    }
                }
                _ => {
                    let reason = PauseReason {
                        cause: cause.clone(),
                        from: vec![name.to_string()],
                    };
                    events.push(RunEvent::LaunchesPaused {
                        reason: reason.to_string(),
                        until,
                    });
                    self.pause = Some((until, reason));
                }
            }
        }
        if self.limit.is_some() && self.last_change.is_some_and(|t| now < t + self.quiet) {
            return events;
        }
        let current = match self.allowed() {
            0 => running.max(1),
            n => n,
        };
        let halved = (current / 2).max(1);
        if self.limit != Some(halved) {
            self.limit = Some(halved);
            self.last_change = Some(now);
            events.push(RunEvent::Parallelism {
                limit: Some(halved),
                reason: format!("{cause} from {name}"),
            });
        }
        events
    }

    /// Pauses and holds ending; parallelism coming back one step per quiet interval, up
    /// to --max-parallel (or the `instances` of the plan when there is none).
    pub(super) fn tick(&mut self, now: Instant, instances: usize) -> Vec<RunEvent> {
        let mut events = Vec::new();
        if let Some((until, reason)) = &self.pause {
            if *until <= now {
                events.push(RunEvent::LaunchesResumed {
                    reason: reason.to_string(),
                });
                self.pause = None;
            }
        }
        if self.hold.is_some_and(|(until, _)| until <= now) {
            self.hold = None;
            events.push(RunEvent::LaunchesResumed {
                reason: "usage limit reset".into(),
            });
        }
        if let Some(limit) = self.limit {
            let quiet_since = self.last_backoff.max(self.last_change);
            if quiet_since.is_some_and(|t| now >= t + self.quiet) {
                let ceiling = match self.max_parallel {
                    0 => instances,
                    m => m,
                };
                self.limit = (limit + 1 < ceiling).then_some(limit + 1);
                self.last_change = Some(now);
                events.push(RunEvent::Parallelism {
                    limit: self.limit,
                    reason: "no 429/529 for a while".into(),
                });
            }
        }
        events
    }

    /// How many may run at once now; 0 = no limit.
    pub(super) fn allowed(&self) -> usize {
        match (self.limit, self.max_parallel) {
            (Some(l), 0) => l,
            (Some(l), m) => l.min(m),
            (None, m) => m,
        }
    }

    /// `Ok` if a launch may happen now; else what it waits for.
    pub(super) fn check(&self, now: Instant, running: usize) -> Result<(), GateWait> {
        if let Some((until, resets_at)) = self.hold {
            return Err(GateWait::Hold(until, WaitReason::UsageLimit { resets_at }));
        }
        if let Some((until, reason)) = &self.pause {
            if now < *until {
                return Err(GateWait::Hold(*until, WaitReason::Backoff(reason.clone())));
            }
        }
        if now < self.next_launch_at {
            return Err(GateWait::Until(self.next_launch_at));
        }
        let allowed = self.allowed();
        if allowed != 0 && running >= allowed {
            return Err(GateWait::Slot(allowed));
        }
        Ok(())
    }

    pub(super) fn launched(&mut self, now: Instant) {
        self.next_launch_at = now + self.spacing;
    }

    /// When the gate itself needs a tick: a pause or hold ending, a restore step.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let restore = self
            .limit
            .and(self.last_backoff.max(self.last_change))
            .map(|t| t + self.quiet);
        [
            self.pause.as_ref().map(|p| p.0),
            self.hold.map(|h| h.0),
            restore,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

pub(super) enum GateWait {
    Until(Instant),
    /// Paused or held until then: queued instances show why.
    Hold(Instant, WaitReason),
    Slot(usize),
}
