//! The integration tests, one crate so they build and link once. Each module runs the
//! real binary or library the way a user or script would; `common` has the one way to run
//! the orchestrator, build a fake `claude` and read what it printed.

mod common;

mod accounting_fixtures;
mod batch;
mod budget;
mod cli;
mod cli_errors;
mod faults;
mod fidelity;
mod fidelity_run;
mod hardening;
mod ledger;
mod periodic;
mod process_faults;
mod rate_limits;
mod real_claude;
mod run;
mod screen;
mod scripting;
mod shared;
