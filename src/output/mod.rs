//! What people and scripts see. One stream of [`RunEvent`]s feeds every output: the
//! console and live region ([`terminal`], reacting in [`human`], rendered by [`report`]),
//! and the `--json` events and report file ([`events`]). The dry run ([`dryrun`]) renders
//! a plan instead of a run.

pub mod dryrun;
pub mod events;
pub mod human;
pub mod report;
pub mod style;
pub mod terminal;

use crate::core::run::{RunEvent, RunState};
use std::time::Instant;

/// Every output of a run, fed the same events in the same order.
pub struct Outputs {
    pub console: terminal::Console,
    pub events: events::EventSink,
}

impl Outputs {
    pub fn emit(&mut self, event: &RunEvent, run: &RunState, now: Instant) {
        self.events.on_event(event, run, now);
        self.console.on_event(event, run, now);
    }

    /// The periodic status report.
    pub fn status(&mut self, run: &RunState, now: Instant) {
        self.console.status(&human::snapshot(run, now));
    }
}
