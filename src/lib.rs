//! orchestrator: run many Claude Code instances in parallel inside token and dollar budgets.
//!
//! The pure core (`stream`, `accounting`, `pricing`, `budget`, `config`, `report`) does
//! no I/O; the async shell (`process`, `dispatcher`) only moves bytes and signals.

pub mod accounting;
pub mod plan;
pub mod pricing;
pub mod stream;
pub mod usage;

use std::ffi::OsString;

/// Entry point used by `main.rs`; returns the process exit code.
pub fn main_with_args(_args: Vec<OsString>) -> i32 {
    0
}
