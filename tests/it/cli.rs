//! The command line as a newcomer meets it: help, version, the dry run.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn orchestrator() -> Command {
    let mut c = Command::cargo_bin("orchestrator").expect("binary");
    c.env("NO_COLOR", "1")
        .env_remove("ORCHESTRATOR_CLAUDE_PATH");
    c
}

#[test]
fn help_explains_flags_with_examples() {
    orchestrator()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--overall-token-budget"))
        .stdout(predicate::str::contains("--command-budget"))
        .stdout(predicate::str::contains("--budget-enforcement-mode"))
        .stdout(predicate::str::contains("--dry-run"))
        .stdout(predicate::str::contains("--simulate"))
        .stdout(predicate::str::contains("Examples").or(predicate::str::contains("EXAMPLES")));
}

#[test]
fn version_prints_the_crate_version() {
    orchestrator()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn dry_run_prints_the_plan_and_spawns_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = orchestrator()
        .current_dir(dir.path())
        .args(["--dry-run", "--claude-path", "/nonexistent/claude"])
        .args([
            "--overall-token-budget",
            "5000",
            "--command-budget",
            "/test=1000",
        ])
        .args([
            "--budget-enforcement-mode",
            "block",
            "/test --unit",
            "/lint src",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.contains("'/test --unit'"),
        "argv is shell-quoted: {text}"
    );
    assert!(text.contains("-- '/lint src'"), "{text}");
    assert!(text.contains("claude executable not found"), "{text}");
    assert!(text.contains("/lint not found"), "{text}");
}

#[test]
fn dry_run_json_is_one_object_and_strict_fails_on_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let assert = orchestrator()
        .current_dir(dir.path())
        .args([
            "--dry-run",
            "--json",
            "--simulate",
            "--command-budget",
            "/unused=10",
        ])
        .arg("/test")
        .assert()
        .success();
    let plan: Value = serde_json::from_slice(&assert.get_output().stdout).expect("JSON");
    assert!(plan.is_object());
    let warnings = plan["warnings"].as_array().expect("warnings array");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("/unused"))),
        "{warnings:?}"
    );
    orchestrator()
        .current_dir(dir.path())
        .args([
            "--dry-run",
            "--strict",
            "--simulate",
            "--command-budget",
            "/unused=10",
        ])
        .arg("/test")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--strict"));
}

#[test]
fn dry_run_flags_a_plan_that_cannot_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    orchestrator()
        .current_dir(dir.path())
        .args([
            "--dry-run",
            "--simulate",
            "--budget-enforcement-mode",
            "block",
        ])
        .args([
            "--overall-token-budget",
            "1500",
            "--estimate",
            "1000",
            "/a",
            "/b",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("CANNOT FIT (over by 500)"))
        .stdout(predicate::str::contains("would wait: b"));
}
