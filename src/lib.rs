//! orchestrator: run many Claude Code instances in parallel inside token and dollar budgets.
//!
//! The crate is laid out as the pipeline a run goes through (README, "Architecture"):
//!
//! - [`config`]: the command line and config files, validated into a [`core::plan::Plan`];
//! - [`core`]: pure logic — stream parsing, accounting, prices, budgets and the run state
//!   machine. No tokio, no file system, no clock: time is a parameter. `core` depends on
//!   nothing else in the crate;
//! - [`runtime`]: the async shell that executes the run state's effects — spawning,
//!   signalling and reading child processes;
//! - [`output`]: everything people and scripts see — console, live region, `--json`
//!   events, the report file and the dry run;
//! - [`store`]: where usage is kept beyond the run (the `UsageStore` seam);
//! - [`simulate`]: the built-in simulated Claude Code behind `--simulate`.

pub mod app;
pub mod config;
pub mod core;
pub mod output;
pub mod runtime;
pub mod simulate;
pub mod store;

pub use app::main_with_args;
