//! The pure core: from a stdout line to a budget decision. Nothing here does I/O, spawns,
//! sleeps or reads the clock, and nothing here uses another module of the crate.

pub mod accounting;
pub mod budget;
pub mod credit;
pub mod efficiency;
pub mod estimate;
pub mod exit;
pub mod period;
pub mod plan;
pub mod predict;
pub mod pricing;
pub mod run;
pub mod signal;
pub mod stream;
pub mod text;
pub mod usage;
