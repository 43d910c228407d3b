//! orchestrator: run many Claude Code instances in parallel inside token and dollar budgets.
//!
//! The pure core (`stream`, `accounting`, `pricing`, `budget`, `config`, `dryrun`,
//! `report`) does no I/O; the async shell (`process`, `dispatcher`) only moves bytes and
//! signals; `app` ties them to the command line.

pub mod accounting;
pub mod app;
pub mod budget;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dispatcher;
pub mod dryrun;
pub mod events;
pub mod launch;
pub mod logs;
pub mod plan;
pub mod pricing;
pub mod process;
pub mod report;
pub mod simulate;
pub mod stream;
pub mod style;
pub mod terminal;
pub mod usage;

pub use app::main_with_args;
