//! The async shell: launches instances, reads their output, delivers signals, and carries
//! out what the run state decides. It only moves bytes and signals.

pub mod dispatcher;
pub mod launch;
pub mod limits;
pub mod logs;
pub mod pacer;
pub mod process;
pub mod procfs;
pub mod recorder;
pub mod spawn;
pub mod watchdog;
