//! Helpers shared by the integration tests that run the binary: the orchestrator with
//! fast test defaults, output accessors, lines of a fake Claude Code transcript and the
//! fake `claude` that prints them (with the one way to wait for it).
#![allow(dead_code)] // each test module uses its own subset

mod fake_claude;
pub use fake_claude::{
    gone, parent_pid, proc_state, wait_exit, wait_for, wait_ready, FakeClaude, HANG_GUARD,
};

pub mod pg_server;
pub use pg_server::PgServer;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("orchestrator")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The orchestrator with fast, quiet defaults, run in `dir` with `dir` as HOME (so the
/// user's own ~/.claude never leaks into a test) and an instant simulated Claude.
pub fn orchestrator(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .env_remove("ORCHESTRATOR_CLAUDE_PATH")
        // The ledger defaults under HOME; the runner's own choice must not leak in.
        .env_remove("ORCHESTRATOR_LEDGER")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", dir)
        .env("ORCHESTRATOR_SIMULATE_PACE", "0")
        .env("NO_COLOR", "1")
        .args(["--startup-delay", "0", "--status-report-interval", "0"])
        .stdin(Stdio::null());
    c
}

/// A helper command (`orchestrator usage`, `orchestrator budget`) run in `dir` on
/// `ledger`, with `dir` as HOME and neither a ledger nor colour from the environment.
pub fn helper(dir: &Path, name: &str, ledger: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .env("HOME", dir)
        .env_remove("XDG_DATA_HOME")
        .env_remove("ORCHESTRATOR_LEDGER")
        .env("NO_COLOR", "1")
        .arg(name)
        .arg("--ledger")
        .arg(ledger)
        .stdin(Stdio::null());
    c
}

pub fn run(c: &mut Command) -> Output {
    c.output().expect("run orchestrator")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON file at `path`.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names of the files in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The `--json` events of a finished run, each checked against
/// schema/events.schema.json.
pub fn events(o: &Output) -> Vec<Value> {
    let schemas = crate::scripting::schemas();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| checked_event(&schemas, l))
        .collect()
}

/// One `--json` line, parsed and checked against the events schema.
pub fn checked_event(schemas: &crate::scripting::Schemas, line: &str) -> Value {
    let v = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    schemas.check_event(&v);
    v
}

/// The instance called `name` in a `run_finished` object.
pub fn instance<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no instance {name} in {report}"))
}

// ---------------------------------------------------------------- fake transcripts

/// Claude Code's `system/init` line.
pub fn init() -> String {
    json!({"type":"system","subtype":"init","model":"claude-sonnet-4-5","session_id":"s"})
        .to_string()
}

/// One API call of `input` + `output` tokens as Claude Code streams it (four lines).
pub fn call(id: &str, input: u64, output: u64) -> Vec<String> {
    let usage = |o: u64| json!({"input_tokens":input,"output_tokens":o,"cache_creation_input_tokens":0,"cache_read_input_tokens":0});
    vec![
        json!({"type":"stream_event","event":{"type":"message_start","message":{"id":id,"model":"claude-sonnet-4-5","usage":usage(1)}},"parent_tool_use_id":null}).to_string(),
        json!({"type":"assistant","message":{"id":id,"model":"claude-sonnet-4-5","content":[{"type":"text","text":"working"}],"usage":usage(1)},"parent_tool_use_id":null}).to_string(),
        json!({"type":"stream_event","event":{"type":"message_delta","usage":{"output_tokens":output}},"parent_tool_use_id":null}).to_string(),
        json!({"type":"stream_event","event":{"type":"message_stop"},"parent_tool_use_id":null}).to_string(),
    ]
}

/// A `result` line whose `modelUsage` says `input` + `output` tokens and `cost` dollars.
pub fn result(input: u64, output: u64, cost: f64, is_error: bool, text: &str) -> String {
    json!({"type":"result","subtype":"success","is_error":is_error,"result":text,"total_cost_usd":cost,
        "usage":{"input_tokens":input,"output_tokens":output},
        "modelUsage":{"claude-sonnet-4-5":{"inputTokens":input,"outputTokens":output,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"costUSD":cost}}})
    .to_string()
}
