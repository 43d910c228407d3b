//! Bad command lines and bad config files, as a user would write them, run through the
//! real binary: each must exit 2 with exactly one line on stderr that names the offending
//! flag, key or path, never panic, and never launch anything.

use crate::common::FakeClaude;
use orchestrator::config::cli::parse_args;
use orchestrator::config::file::build_plan;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the binary in `dir`; returns its stderr after checking exit code 2, no panic and
/// nothing launched.
fn error_for(dir: &Path, args: &[&str]) -> String {
    // A fake claude that leaves a marker if it is ever started.
    let claude = FakeClaude::new()
        .marker("launched")
        .write(dir, "claude-marker");
    let out = Command::new(assert_cmd::cargo::cargo_bin("orchestrator"))
        .current_dir(dir)
        .env("ORCHESTRATOR_CLAUDE_PATH", claude)
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run orchestrator");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr:?}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(
        !dir.join("launched").exists(),
        "{args:?} launched claude despite the error"
    );
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    stderr
}

struct Case {
    args: &'static [&'static str],
    /// Written to `c.json` in the temp dir when set.
    config: Option<&'static str>,
    needles: &'static [&'static str],
}

const fn flag(args: &'static [&'static str], needles: &'static [&'static str]) -> Case {
    Case {
        args,
        config: None,
        needles,
    }
}

const fn file(config: &'static str, needles: &'static [&'static str]) -> Case {
    Case {
        args: &["-c", "c.json"],
        config: Some(config),
        needles,
    }
}

const CASES: &[Case] = &[
    // --- input files that are not small regular files
    flag(
        &["-c", "/dev/zero", "/x"],
        &["--config /dev/zero", "not a regular file"],
    ),
    flag(
        &["--pricing", "/dev/zero", "/x"],
        &["--pricing", "/dev/zero", "not a regular file"],
    ),
    flag(&["-c", ".", "/x"], &["--config .", "not a regular file"]),
    // --- outputs that cannot be written, also caught by a dry run
    flag(&["--report", ".", "/x"], &["--report", "is a directory"]),
    flag(
        &["--dry-run", "--report", "/nonexistent/r.json", "/x"],
        &["--report /nonexistent/r.json", "does not exist"],
    ),
    flag(
        &["--log-dir", "claude-marker", "/x"],
        &["--log-dir", "claude-marker", "not a directory"],
    ),
    // --- numbers, durations, zen flags and profiles (issue 15)
    flag(
        &["--warn-at", "0.8", "/x"],
        &["--warn-at", "0.8", "write 80", "0.8%"],
    ),
    flag(
        &["--overall-token-budget", "1.2345K", "/x"],
        &["--overall-token-budget", "whole number"],
    ),
    flag(
        &["--overall-token-budget", "1,5", "/x"],
        &["--overall-token-budget", "'1,5'", "5,000"],
    ),
    flag(
        &["--overall-cost-budget", "$-1", "/x"],
        &["--overall-cost-budget", "greater than 0"],
    ),
    flag(&["--timeout", "10d", "/x"], &["--timeout", "'10d'", "10m"]),
    flag(&["--timeout", "0s", "/x"], &["--timeout", "greater than 0"]),
    flag(&["--start-at", "45", "/x"], &["--start-at", "needs a unit"]),
    flag(
        &["--command-budget", "/a=5,00", "/a"],
        &["--command-budget", "/a=5,00"],
    ),
    flag(
        &["--log-level", "loud", "/x"],
        &["--log-level", "silent, concise or detailed"],
    ),
    flag(
        &["--max-console-lines", "-1", "/x"],
        &["--max-console-lines", "-1"],
    ),
    flag(
        &["--session-id", "abc", "/x"],
        &["--session-id", "not a UUID"],
    ),
    flag(
        &["--instance-name", "a", "/x", "/y"],
        &["--instance-name describes the one PROMPT", "2 PROMPTs"],
    ),
    flag(
        &["--instance-name", "../etc", "/x"],
        &["--instance-name", "not a usable name"],
    ),
    flag(
        &["--budget-parameter-type", "gold", "/x"],
        &["--budget-parameter-type", "tokens, cost or mixed"],
    ),
    flag(
        &["--generate-example", "nope"],
        &["--generate-example nope", "--list-examples"],
    ),
    flag(&["--profile", "ci", "/x"], &["--profile ci", "--config"]),
    flag(&["--retries", "101", "/x"], &["--retries", "0 to 100"]),
    flag(
        &["--rerun-failed", "nope.json", "/x"],
        &["--rerun-failed nope.json", "cannot read"],
    ),
    Case {
        args: &["-c", "c.json", "--profile", "producton"],
        config: Some(
            r#"{"instances": [{"command": "/x"}], "profiles": {"production": {"overall_tokens": "5K"}}}"#,
        ),
        needles: &["--profile producton", "did you mean production?"],
    },
    file(
        r#"{"instances": [{"command": "/x", "timeout": "soon"}]}"#,
        &["c.json: instances[0].timeout", "not a duration", "soon"],
    ),
    // --- flags
    flag(
        &["--command-budget", "test", "/test"],
        &["--command-budget", "'test'", "CMD=N"],
    ),
    flag(
        &["--command-budget", "/test=abc", "/test"],
        &["--command-budget", "/test=abc"],
    ),
    flag(
        &["--command-budget", "/test=-5", "/test"],
        &["--command-budget", "/test=-5"],
    ),
    flag(
        &["--command-budget", "/test=0", "/test"],
        &["--command-budget", "/test=0"],
    ),
    flag(
        &["--command-budget", "/test=1,/lint", "/test"],
        &["--command-budget", "'/lint'"],
    ),
    flag(
        &["--command-cost-budget", "/test=$$", "/test"],
        &["--command-cost-budget", "/test=$$"],
    ),
    flag(
        &["--overall-token-budget", "0", "/test"],
        &["--overall-token-budget", "'0'"],
    ),
    flag(
        &["--overall-token-budget", "-100", "/test"],
        &["--overall-token-budget", "-100"],
    ),
    flag(
        &["--overall-token-budget", "lots", "/test"],
        &["--overall-token-budget", "lots"],
    ),
    flag(
        &["--overall-cost-budget", "0", "/test"],
        &["--overall-cost-budget", "'0'"],
    ),
    flag(
        &["--overall-cost-budget", "-2.5", "/test"],
        &["--overall-cost-budget", "-2.5"],
    ),
    flag(&["--start-at", "25:99", "/test"], &["--start-at", "25:99"]),
    flag(
        &["--start-at", "tomorrow", "/test"],
        &["--start-at", "tomorrow"],
    ),
    flag(
        &["--budget-enforcement-mode", "hard", "/test"],
        &["--budget-enforcement-mode", "hard"],
    ),
    flag(&["--warn-at", "0", "/test"], &["--warn-at", "'0'"]),
    flag(&["--warn-at", "150", "/test"], &["--warn-at", "150"]),
    flag(&["--timeout", "-1", "/test"], &["--timeout", "-1"]),
    flag(&["--kill-grace", "NaN", "/test"], &["--kill-grace", "NaN"]),
    flag(
        &["--status-report-interval", "-5", "/test"],
        &["--status-report-interval", "-5"],
    ),
    flag(
        &["--output-format", "text", "/test"],
        &["--output-format", "text"],
    ),
    flag(
        &["--color", "sometimes", "/test"],
        &["--color", "sometimes"],
    ),
    flag(
        &["--max-parallel", "many", "/test"],
        &["--max-parallel", "many"],
    ),
    flag(
        &["--permission-mode", "bypass", "/test"],
        &["--permission-mode", "bypass"],
    ),
    flag(&["--overall-budget", "5", "/test"], &["--overall-budget"]),
    flag(&[], &["nothing to run", "PROMPT"]),
    flag(
        &["-w", "no/such/dir", "/test"],
        &["--workspace", "no/such/dir"],
    ),
    flag(
        &["-c", "missing.json", "/test"],
        &["--config", "missing.json", "No such file"],
    ),
    flag(
        &["--command-budget", "/a=1", "--command-budget", "/a=2", "/a"],
        &["--command-budget", "/a"],
    ),
    flag(&["  ", "/test"], &["PROMPT #1"]),
    // --- config files
    file(
        "{\"instances\": [\n  {\"command\": \"/a\"}\n  {\"command\": \"/b\"}\n]}",
        &["c.json:3:", "invalid JSON"],
    ),
    file(
        r#"{"instances": [{"command": "/a"}, {"command": "/b"}, {"command": "/c", "permision_mode": "plan"}]}"#,
        &[
            "c.json",
            "instances[2].permision_mode",
            "\"permission_mode\"",
        ],
    ),
    file(
        r#"{"instance": []}"#,
        &["c.json", "instance", "\"instances\""],
    ),
    file(
        r#"{"budget": {"overall_token": 5}}"#,
        &["budget.overall_token", "\"overall_tokens\""],
    ),
    file(
        r#"{"instances": [{"command": "/a", "max_tokens_per_command": -5}]}"#,
        &["instances[0].max_tokens_per_command", "-5"],
    ),
    file(
        r#"{"instances": [{"command": "/a", "timeout": true}]}"#,
        &["instances[0].timeout", "seconds", "15m"],
    ),
    file(
        r#"{"instances": [{"command": "/a", "session_id": "abc"}]}"#,
        &["instances[0].session_id", "UUID"],
    ),
    file(
        r#"{"instances": [{"name": "x", "command": "/a"}, {"name": "x", "command": "/b"}]}"#,
        &["instances[1].name", "instances[0]", "\"x\""],
    ),
    file(
        r#"{"instances": [{"command": "/a", "workspace": "nope"}]}"#,
        &["instances[0].workspace", "nope"],
    ),
    file(
        r#"{"instances": [{"description": "no command"}]}"#,
        &["instances[0]", "command"],
    ),
    file(
        r#"{"budget": {"commands": {"/test": 0}}}"#,
        &["budget.commands[\"/test\"]", "greater than 0"],
    ),
    file(
        r#"{"budget": {"enforcement_mode": "strict"}}"#,
        &["budget.enforcement_mode", "strict"],
    ),
    file(
        r#"{"budget": {"overall_cost_usd": "five"}}"#,
        &["budget.overall_cost_usd", "dollars", "five"],
    ),
    file(
        r#"{"instances": [{"command": "/a", "env": {"API_KEY": 42}}]}"#,
        &["instances[0].env.API_KEY", "value not shown"],
    ),
    file(
        r#"{"instances": [{"command": "/a", "allowed_tools": {"Read": true}}]}"#,
        &["instances[0].allowed_tools", "array"],
    ),
    file(r#"["/test"]"#, &["c.json", "JSON object"]),
];

#[test]
fn every_bad_input_fails_with_one_line_naming_the_culprit() {
    assert!(CASES.len() >= 25);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for case in CASES {
        if let Some(text) = case.config {
            std::fs::write(dir.path().join("c.json"), text).expect("write config");
        }
        let msg = error_for(dir.path(), case.args);
        let body = msg.trim_end();
        if body.lines().count() != 1 {
            failures.push(format!("{:?}: not one line: {msg:?}", case.args));
        }
        for n in case.needles {
            if !body.contains(n) {
                failures.push(format!(
                    "{:?} {:?}: {body:?} lacks {n:?}",
                    case.args, case.config
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn env_values_from_a_config_never_reach_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"instances": [{"command": "/a", "env": {"TOKEN": "s3cr3t-value", "BAD": ["s3cr3t-list"]}}]}"#,
    )
    .expect("write config");
    let msg = error_for(dir.path(), &["-c", "c.json"]);
    assert!(msg.contains("env.BAD"), "{msg}");
    assert!(!msg.contains("s3cr3t"), "{msg}");
}

#[test]
fn a_valid_command_line_still_builds_a_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let argv: Vec<OsString> = [
        "orchestrator",
        "--overall-token-budget",
        "5000",
        "--command-budget",
        "/test=1000",
        "--budget-enforcement-mode",
        "block",
        "/test",
        "/lint src",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let cli = parse_args(argv).expect("parses");
    let plan = build_plan(&cli, dir.path()).expect("builds");
    assert_eq!(plan.instances.len(), 2);
    assert_eq!(plan.instances[1].name, "lint-src");
}
