//! What the user asked for: the command line ([`cli`]), the JSON config file ([`file`]),
//! and slash-command discovery ([`commands`]), merged into a validated `Plan`; numbers
//! and durations as people write them ([`units`]); zen's example configs ([`examples`]).

pub mod cli;
pub mod commands;
pub mod examples;
pub mod file;
pub mod units;
