//! What the user asked for: the command line ([`cli`]), the JSON config file ([`file`]),
//! and slash-command discovery ([`commands`]), merged into a validated `Plan`.

pub mod cli;
pub mod commands;
pub mod units;
pub mod file;
