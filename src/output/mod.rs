//! What people and scripts see. One stream of [`RunEvent`]s feeds every output: the
//! console and live region ([`terminal`], reacting in [`human`], rendered by [`report`]),
//! and the `--json` events and report file ([`events`]). The dry run ([`dryrun`]) renders
//! a plan instead of a run.

pub mod budget;
pub mod dryrun;
pub mod events;
pub mod human;
pub mod report;
pub mod style;
pub mod terminal;
pub mod trace;
pub mod usage;

use crate::core::run::{RunEvent, RunState};
use std::time::Instant;

/// Every output of a run, fed the same events in the same order.
pub struct Outputs {
    pub console: terminal::Console,
    pub events: events::EventSink,
    /// The usage ledger, when the run is recorded (`runtime::recorder`).
    pub recorder: Option<crate::runtime::recorder::RecorderHandle>,
}

impl Outputs {
    pub fn emit(&mut self, event: &RunEvent, run: &RunState, now: Instant) {
        trace::log_event(event, run);
        self.events.on_event(event, run, now);
        self.console.on_event(event, run, now);
        if let Some(r) = &self.recorder {
            r.on_event(event, run, now);
        }
    }

    /// The periodic status report (every `--status-report-interval`): the console's
    /// report and the `--json` `status` event.
    pub fn status(&mut self, run: &RunState, now: Instant) {
        let snapshot = human::snapshot(run, now);
        self.console.status(&snapshot);
        self.events.status(&run.ledger, &snapshot);
    }

    /// The live view's fast refresh on a terminal (every `terminal::LIVE_REFRESH` while
    /// [`terminal::Console::is_live`]); `resized` after SIGWINCH redraws at once.
    pub fn live_tick(&mut self, run: &RunState, now: Instant, resized: bool) {
        let snapshot = human::snapshot(run, now);
        if resized {
            self.console.resized(&snapshot);
        } else {
            self.console.tick(&snapshot, now);
        }
    }
}
