//! Periodic project budgets (`--daily-token-budget`, …; issue 12) as a user meets them:
//! a budget that counts every run of the project recorded in the ledger in the current
//! UTC day, week or month.

use crate::common::{instance, orchestrator, run, stderr, stdout, tempdir};
use serde_json::Value;
use std::path::Path;

/// A simulated run of `project` recorded in `ledger`, with `extra` flags; its exit code
/// and report.
pub(crate) fn simulated(
    dir: &Path,
    ledger: &Path,
    project: &str,
    extra: &[&str],
    n: usize,
) -> (i32, Value, String) {
    let report = dir.join(format!("report-{n}.json"));
    let o = run(orchestrator(dir)
        .args(["--simulate", "-q", "--project", project, "--ledger"])
        .arg(ledger)
        .arg("--report")
        .arg(&report)
        .args(extra));
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("report: {e}; stderr: {}", stderr(&o)));
    let v = serde_json::from_str(&text).expect("report JSON");
    (o.status.code().unwrap_or(-1), v, stderr(&o))
}

pub(crate) fn total_tokens(report: &Value) -> u64 {
    report["totals"]["total_tokens"]
        .as_u64()
        .expect("total_tokens")
}

#[test]
fn a_daily_budget_counts_earlier_runs_of_the_project() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let (code, first, err) = simulated(dir.path(), &ledger, "proj", &["/review", "/test"], 1);
    assert_eq!(code, 0, "{err}");
    let spent = total_tokens(&first);
    assert!(spent > 0);

    // The day's budget is exactly what the project already spent: nothing more fits.
    let limit = spent.to_string();
    let over_the_day = [
        "--budget-enforcement-mode",
        "block",
        "--daily-token-budget",
        &limit,
        "--estimate",
        "1",
        "/review",
    ];
    let (code, second, err) = simulated(dir.path(), &ledger, "proj", &over_the_day, 2);
    assert_eq!(code, 3, "{err}");
    let inst = &second["instances"][0];
    assert_eq!(inst["status"], "blocked", "{second}");
    let reason = inst["reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("daily budget"), "{inst}");
    // When it could fit again: the next UTC day (either side of a midnight that passed
    // while the test ran).
    let ends = |ago: i64| {
        let day = chrono::Utc::now() - chrono::Duration::minutes(ago) + chrono::Duration::days(1);
        format!("; the day ends {}", day.format("%Y-%m-%d 00:00 UTC"))
    };
    assert!(
        reason.ends_with(&ends(0)) || reason.ends_with(&ends(1)),
        "{inst}"
    );
    assert_eq!(total_tokens(&second), 0);
    assert_eq!(second["budgets"][0]["scope"], "periodic");
    assert_eq!(second["budgets"][0]["key"], "day");
    assert_eq!(second["budgets"][0]["used"], spent);

    // Another project's day is its own.
    let (code, _, err) = simulated(dir.path(), &ledger, "other", &over_the_day, 3);
    assert_eq!(code, 0, "{err}");

    // With room, the run goes ahead and its budget shows the project's use, its own
    // included.
    let roomy = (spent * 10).to_string();
    let (code, fourth, err) = simulated(
        dir.path(),
        &ledger,
        "proj",
        &[
            "--budget-enforcement-mode",
            "block",
            "--weekly-token-budget",
            &roomy,
            "/review",
        ],
        4,
    );
    assert_eq!(code, 0, "{err}");
    let week = &fourth["budgets"][0];
    assert_eq!(week["key"], "week");
    assert_eq!(week["used"], spent + total_tokens(&fourth), "{week}");
    assert_eq!(week["limit"], spent * 10);

    // The dry run counts the day's use too: a day that is spent leaves no room.
    let o = run(orchestrator(dir.path())
        .args(["--simulate", "--dry-run", "--json", "--project", "proj"])
        .args(["--budget-enforcement-mode", "block", "--ledger"])
        .arg(&ledger)
        .args(["--daily-token-budget", &limit, "/review"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dry: Value = serde_json::from_str(&stdout(&o)).expect("dry run JSON");
    assert_eq!(dry["budgets"][0]["key"], "day");
    // Its `fits` counts the day's use (runs 1 and 4): the estimate no longer fits.
    let today = spent + total_tokens(&fourth);
    assert_eq!(dry["budgets"][0]["used"], today, "{dry}");
    assert_eq!(dry["budgets"][0]["reserved"], 0, "{dry}");
    assert_eq!(dry["budgets"][0]["fits"], false, "{dry}");
    assert!(
        dry["warnings"]
            .to_string()
            .contains("used and 0 tokens reserved by other runs this period"),
        "{dry}"
    );
    assert_eq!(dry["budgets"][0]["blocked"][0], "review", "{dry}");
    assert_eq!(dry["instances"][0]["admission"], "blocked", "{dry}");
    let why = dry["instances"][0]["admission_reason"]
        .as_str()
        .unwrap_or("");
    assert!(why.contains("daily budget exceeded"), "{why}");

    // With room for the estimate on top of the day's use, it fits.
    let room = (today + 1000).to_string();
    let o = run(orchestrator(dir.path())
        .args(["--simulate", "--dry-run", "--json", "--project", "proj"])
        .args(["--estimate", "1000", "--ledger"])
        .arg(&ledger)
        .args(["--daily-token-budget", &room, "/review"]));
    let dry: Value = serde_json::from_str(&stdout(&o)).expect("dry run JSON");
    assert_eq!(dry["budgets"][0]["used"], today, "{dry}");
    assert_eq!(dry["budgets"][0]["fits"], true, "{dry}");
}

#[test]
fn a_periodic_budget_without_the_ledger_is_refused() {
    let dir = tempdir();
    let o = run(orchestrator(dir.path()).args([
        "--simulate",
        "--no-ledger",
        "--daily-token-budget",
        "100",
        "/review",
    ]));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--daily-token-budget") && err.contains("ledger"),
        "{err}"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn a_zone_counts_the_same_runs_of_today() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let (code, first, err) = simulated(dir.path(), &ledger, "proj", &["/review"], 1);
    assert_eq!(code, 0, "{err}");
    let spent = total_tokens(&first);
    // Whatever the zone, a run that just started is in today's window.
    for zone in ["Pacific/Kiritimati", "America/Adak", "local", "UTC"] {
        let limit = spent.to_string();
        let (code, r, err) = simulated(
            dir.path(),
            &ledger,
            "proj",
            &[
                "--budget-enforcement-mode",
                "block",
                "--budget-timezone",
                zone,
            ]
            .into_iter()
            .chain(["--daily-token-budget", &limit, "--estimate", "1", "/review"])
            .collect::<Vec<_>>(),
            2,
        );
        assert_eq!(code, 3, "{zone}: {err}");
        assert_eq!(r["budgets"][0]["used"], spent, "{zone}");
    }
}

#[test]
fn an_unknown_zone_is_refused() {
    let dir = tempdir();
    let o = run(orchestrator(dir.path()).args([
        "--simulate",
        "--budget-timezone",
        "Mars/Olympus",
        "--daily-token-budget",
        "100",
        "/review",
    ]));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("--budget-timezone") && err.contains("Europe/Berlin"),
        "{err}"
    );
    assert!(err.contains("Mars/Olympus"), "{err}");
}

/// Writes `json` to `dir/name`; its path, as an argument.
fn config(dir: &Path, name: &str, json: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, json).expect("config");
    path.to_string_lossy().into_owned()
}

#[test]
fn config_scopes_all_projects_and_one_command() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let (code, first, err) = simulated(dir.path(), &ledger, "a", &["/review", "/test"], 1);
    assert_eq!(code, 0, "{err}");
    let spent = total_tokens(&first);
    let review = instance(&first, "review")["usage"]["total_tokens"]
        .as_u64()
        .expect("review tokens");

    // Scope all: project b's run counts project a's use.
    let cfg = config(
        dir.path(),
        "all.json",
        &format!(
            r#"{{"budget": {{"enforcement_mode": "block",
                "periodic": [{{"period": "day", "scope": "all", "tokens": {spent}}}]}}}}"#
        ),
    );
    let (code, r, err) = simulated(
        dir.path(),
        &ledger,
        "b",
        &["--config", &cfg, "--estimate", "1", "/review"],
        2,
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(r["budgets"][0]["key"], "day all");
    assert_eq!(r["budgets"][0]["used"], spent);
    assert!(instance(&r, "review")["reason"]
        .as_str()
        .unwrap_or("")
        .contains("daily budget of all projects"));

    // Scope command: /review's day is spent, /test is not held by it.
    let cfg = config(
        dir.path(),
        "cmd.json",
        &format!(
            r#"{{"budget": {{"enforcement_mode": "block",
                "periodic": [{{"period": "day", "scope": "command", "command": "review", "tokens": {review}}}]}}}}"#
        ),
    );
    let (code, r, err) = simulated(
        dir.path(),
        &ledger,
        "a",
        &["--config", &cfg, "--estimate", "1", "/review", "/test"],
        3,
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(r["budgets"][0]["key"], "day /review");
    assert_eq!(instance(&r, "review")["status"], "blocked");
    assert_eq!(instance(&r, "test")["status"], "completed");
}

#[test]
fn bad_periodic_config_is_one_line_and_exit_2() {
    let dir = tempdir();
    let cases = [
        (
            r#"[{"period": "year", "tokens": 1}]"#,
            "expected day, week or month",
        ),
        (
            r#"[{"period": "day", "scope": "command", "tokens": 1}]"#,
            "needs \"command\"",
        ),
        (
            r#"[{"period": "day", "command": "/x", "tokens": 1}]"#,
            "only goes with",
        ),
        (r#"[{"period": "day"}]"#, "sets no limit"),
        (
            r#"[{"period": "day", "tokens": 1}, {"period": "day", "usd": 1}]"#,
            "already set",
        ),
        (
            r#"[{"period": "day", "tokens": 1, "limit": 2}]"#,
            "unknown key",
        ),
        (r#"{"period": "day"}"#, "expected an array"),
    ];
    for (periodic, want) in cases {
        let cfg = config(
            dir.path(),
            "bad.json",
            &format!(r#"{{"budget": {{"periodic": {periodic}}}}}"#),
        );
        let o = run(orchestrator(dir.path()).args(["--simulate", "--config", &cfg, "/x"]));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{periodic}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("budget.periodic") && err.contains(want),
            "{periodic}: {err}"
        );
    }
}
