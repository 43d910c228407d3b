//! What people and scripts see: the console and live region ([`terminal`], rendered by
//! [`report`]), `--json` events and the report file ([`events`]), and the dry run
//! ([`dryrun`]).

pub mod dryrun;
pub mod events;
pub mod report;
pub mod style;
pub mod terminal;
pub mod usage;
