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

#[test]
fn dry_run_json_names_the_overall_budget_null_like_events_and_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = orchestrator()
        .current_dir(dir.path())
        .args([
            "--dry-run",
            "--simulate",
            "--json",
            "--overall-token-budget",
            "5K",
        ])
        .args(["--command-budget", "/a=1,000", "/a"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let budgets = v["budgets"].as_array().expect("budgets");
    let overall = budgets
        .iter()
        .find(|b| b["scope"] == "overall")
        .expect("overall");
    assert!(overall["key"].is_null(), "{overall}");
    assert_eq!(overall["limit"], 5000);
    let a = budgets
        .iter()
        .find(|b| b["scope"] == "command")
        .expect("/a");
    assert_eq!(
        (a["key"].as_str(), a["limit"].as_u64()),
        (Some("/a"), Some(1000))
    );
}

#[test]
fn every_number_and_duration_form_reaches_the_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = orchestrator()
        .current_dir(dir.path())
        .args(["--dry-run", "--simulate", "--json"])
        .args([
            "--overall-token-budget",
            "1.5M",
            "--overall-cost-budget",
            "$5",
        ])
        .args([
            "--command-budget",
            "/a=50K,/b=5,000",
            "--command-budget",
            "/c=5_000",
        ])
        .args(["--command-cost-budget", "/a=$1,/b=0.25"])
        .args([
            "--timeout",
            "10m",
            "--startup-delay",
            "500ms",
            "--kill-grace",
            "1m30s",
        ])
        .args(["/a", "/b", "/c"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let limit = |scope: &str, key: Option<&str>, unit: &str| -> Value {
        v["budgets"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|b| b["scope"] == scope && b["key"].as_str() == key && b["unit"] == unit)
            })
            .map(|b| b["limit"].clone())
            .unwrap_or_else(|| panic!("no {scope} {key:?} {unit} in {v}"))
    };
    assert_eq!(limit("overall", None, "tokens"), 1_500_000);
    assert_eq!(limit("overall", None, "usd"), 5.0);
    assert_eq!(limit("command", Some("/a"), "tokens"), 50_000);
    assert_eq!(limit("command", Some("/b"), "tokens"), 5_000);
    assert_eq!(limit("command", Some("/c"), "tokens"), 5_000);
    assert_eq!(limit("command", Some("/a"), "usd"), 1.0);
    assert_eq!(limit("command", Some("/b"), "usd"), 0.25);
}

#[test]
fn zen_generate_example_and_list_examples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = orchestrator().arg("--list-examples").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    for kind in [
        "data_analysis",
        "code_review",
        "content_creation",
        "testing_workflow",
        "migration_workflow",
        "debugging_workflow",
    ] {
        assert!(list.contains(kind), "{list}");
        let out = orchestrator()
            .args(["--generate-example", kind])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{kind}");
        // What it prints is a config this tool runs.
        let path = dir.path().join(format!("{kind}.json"));
        std::fs::write(&path, &out.stdout).expect("write");
        orchestrator()
            .current_dir(dir.path())
            .args(["--dry-run", "--simulate", "--config"])
            .arg(&path)
            .assert()
            .success();
    }
    orchestrator()
        .args(["--generate-example", "nope"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--generate-example nope")
                .and(predicate::str::contains("code_review")),
        );
}

#[test]
fn zen_invocation_runs_unchanged() {
    // A zen command line: direct command with its name, description, session, log level,
    // console lines and budget flags.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = orchestrator()
        .current_dir(dir.path())
        .env("ORCHESTRATOR_SIMULATE_PACE", "0")
        .args(["--simulate", "--json", "--startup-delay", "0"])
        .args([
            "--instance-name",
            "analyzer",
            "--instance-description",
            "Direct run",
        ])
        .args(["--session-id", "3f1c2b4a-0000-4000-8000-00000000abcd"])
        .args([
            "--log-level",
            "concise",
            "--max-console-lines",
            "3",
            "--clear-history",
        ])
        .args([
            "--budget-parameter-type",
            "tokens",
            "--overall-token-budget",
            "100000",
        ])
        .arg("/analyze-code")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let started = text
        .lines()
        .find(|l| l.starts_with("{\"event\":\"instance_started\""))
        .expect("instance_started");
    let v: Value = serde_json::from_str(started).expect("json");
    assert_eq!(v["name"], "analyzer");
    let argv: Vec<&str> = v["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let i = argv
        .iter()
        .position(|a| *a == "--session-id")
        .expect("--session-id in argv");
    assert_eq!(argv[i + 1], "3f1c2b4a-0000-4000-8000-00000000abcd");
}

#[test]
fn verbose_shows_argv_admission_ledger_and_endings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |flag: &str| {
        let out = orchestrator()
            .current_dir(dir.path())
            .env("ORCHESTRATOR_SIMULATE_PACE", "0")
            .env_remove("RUST_LOG")
            .args(["--simulate", "--startup-delay", "0", "-j", "1", flag])
            .args(["--overall-token-budget", "1M", "/a", "/b"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let v = run("-v");
    for needle in [
        "launched instance=a",
        "\"--output-format\", \"stream-json\"",
        "admission: waiting instance=b reason=waiting for a free slot (--max-parallel 1)",
        "finished instance=a status=\"completed\" exit_code=Some(0)",
        "run finished exit_code=0",
    ] {
        assert!(v.contains(needle), "-v lacks {needle:?}:\n{v}");
    }
    assert!(!v.contains("ledger:"), "ledger writes are -vv:\n{v}");
    let vv = run("-vv");
    assert!(
        vv.contains("ledger: usage counted instance=a delta="),
        "-vv lacks ledger writes:\n{vv}"
    );
    // zen's --log-level detailed is -v.
    let detailed = run("--log-level=detailed");
    assert!(detailed.contains("launched instance=a"), "{detailed}");
}
