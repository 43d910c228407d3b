//! The PostgreSQL ledger as a user meets it: real orchestrator processes recording into
//! a real PostgreSQL server (`common::PgServer`), read back with `orchestrator usage`; a
//! server that is not there, and one that goes away in the middle of a run.

use crate::common::{helper, orchestrator, run, stderr, stdout, tempdir, wait_for, PgServer};
use crate::ledger::{assert_usage_eq, simulated_run, usage_json};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Whether the database at `url` has the ledger's schema.
fn has_schema(url: &str) -> bool {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    c.query_one("SELECT to_regnamespace('orchestrator') IS NOT NULL", &[])
        .expect("query")
        .get(0)
}

#[test]
fn usage_sees_exactly_what_simulated_runs_recorded() {
    let dir = tempdir();
    let url = PgServer::shared().database();
    let ledger = Path::new(&url);
    // A dry run reads the ledger for its estimates and creates nothing.
    let o = run(orchestrator(dir.path())
        .args(["--simulate", "--dry-run", "--ledger", &url])
        .arg("/review"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!has_schema(&url), "a dry run must not write the ledger");
    let reports: Vec<Value> = [
        &["/review src", "fix the flaky test", "/test --unit"][..],
        &["/review", "/lint #fail"][..],
    ]
    .iter()
    .enumerate()
    .map(|(n, prompts)| simulated_run(dir.path(), ledger, n, prompts))
    .collect();
    let by_run = usage_json(dir.path(), ledger, &["--by", "run"]);
    let groups = by_run["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    let mut want = [0u64; 5];
    for r in &reports {
        let id = r["run_id"].as_str().expect("run_id");
        let g = groups
            .iter()
            .find(|g| g["key"] == id)
            .unwrap_or_else(|| panic!("run {id} not in the ledger: {by_run}"));
        assert_usage_eq(&g["usage"], &r["totals"], id);
        assert_eq!(g["status"], "finished");
        assert_eq!(g["exit_code"], r["exit_code"]);
        for (w, k) in want.iter_mut().zip(["input_tokens", "output_tokens"]) {
            *w += r["totals"][k].as_u64().expect("tokens");
        }
    }
    let by_command = usage_json(dir.path(), ledger, &["--by", "command"]);
    let keys: Vec<&str> = by_command["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, vec!["(prompt)", "/lint", "/review", "/test"]);
    assert_eq!(by_command["totals"]["input_tokens"].as_u64(), Some(want[0]));
    assert_eq!(
        by_command["totals"]["output_tokens"].as_u64(),
        Some(want[1])
    );
    // `orchestrator budget` reads the same: the day's use of the project.
    let tokens: u64 = reports
        .iter()
        .map(|r| r["totals"]["total_tokens"].as_u64().expect("total"))
        .sum();
    let o = run(helper(dir.path(), "budget", ledger).args([
        "--project",
        "proj",
        "--daily-token-budget",
        "100000000",
        "--json",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["budgets"][0]["used"], tokens, "{v}");
    assert_eq!(v["budgets"][0]["reserved"], 0, "{v}");
    // ORCHESTRATOR_LEDGER selects it too, for the run and for `orchestrator usage`.
    let o = run(orchestrator(dir.path())
        .env("ORCHESTRATOR_LEDGER", &url)
        .args(["--simulate", "-q", "--project", "env", "/docs"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(std::process::Command::new(crate::common::bin())
        .env("ORCHESTRATOR_LEDGER", &url)
        .args(["usage", "--json", "--project", "env", "--by", "project"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["groups"][0]["key"], "env", "{v}");
    assert_eq!(v["groups"][0]["runs"], 1, "{v}");
}

#[test]
fn an_unreachable_server_is_one_line_and_exit_2_without_the_password() {
    let dir = tempdir();
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("postgres://ci:hunter2secret@127.0.0.1:{port}/ledger");
    let report = dir.path().join("report.json");
    let o = run(orchestrator(dir.path())
        .args(["--simulate", "--json", "--ledger", &url, "--report"])
        .arg(&report)
        .arg("/review"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "--ledger postgres://ci:***@127.0.0.1:{port}/ledger"
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(stdout(&o).is_empty(), "nothing may launch: {}", stdout(&o));
    assert!(!report.exists(), "nothing may launch");
    let o = run(std::process::Command::new(crate::common::bin()).args(["usage", "--ledger", &url]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
}

/// The server stops while a run records into it and comes back before the run ends: the
/// writes that failed meanwhile are written then, and the ledger holds the run's exact
/// totals.
#[test]
fn a_server_that_goes_away_mid_run_loses_no_usage() {
    let dir = tempdir();
    let server = PgServer::new();
    let url = server.database();
    let ledger = Path::new(&url);
    let report = dir.path().join("report.json");
    let mut child = orchestrator(dir.path())
        .env("ORCHESTRATOR_SIMULATE_PACE", "1")
        // The recorder's warning shows the outage was met mid-run.
        .env("RUST_LOG", "warn")
        .args(["--simulate", "-q", "--project", "away", "--ledger", &url])
        .arg("--report")
        .arg(&report)
        .args(["/review #secs=6", "/test #secs=5", "fix it #secs=6"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Usage is being recorded…
    wait_for("usage recorded", &mut child, |_| {
        let v = usage_json(dir.path(), ledger, &["--by", "run"]);
        (v["groups"][0]["usage"]["total_tokens"].as_u64()? > 0).then_some(())
    });
    server.stop();
    // …the run goes on without its ledger for two seconds (the outage itself, not a
    // wait for something)…
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the run ended while the server was away: make it longer"
    );
    server.start();
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot write to the ledger"),
        "no write failed while the server was away: {}",
        stderr(&o)
    );
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    let v = usage_json(dir.path(), ledger, &["--by", "run"]);
    let g = &v["groups"][0];
    assert_eq!(g["key"], r["run_id"], "{v}");
    assert_usage_eq(&g["usage"], &r["totals"], "after the outage");
    assert_eq!(g["status"], "finished");
    assert_eq!(g["completed"], 3);
}

// ------------------------------------------- the shared-budget scenarios (`shared.rs`)

#[test]
fn pg_four_runs_at_once_hold_a_shared_daily_budget() {
    crate::shared::four_runs_at_once_hold_a_shared_daily_budget(&PgServer::shared().database());
}

#[test]
fn pg_two_runs_racing_for_the_last_headroom_never_both_get_it() {
    crate::shared::two_runs_racing_for_the_last_headroom_never_both_get_it(&|_| {
        PgServer::shared().database()
    });
}

#[test]
fn pg_a_killed_runs_holds_expire_with_their_lease() {
    crate::shared::a_killed_runs_holds_expire_with_their_lease(&PgServer::shared().database());
}

/// The server itself stops while the run shares its budget, and starts again.
#[test]
fn pg_a_ledger_that_goes_away_mid_run_loses_no_usage() {
    let server = PgServer::new();
    let url = server.database();
    let mut recorded = || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        let sum: i64 = c
            .query_one(
                "SELECT COALESCE(SUM(total_tokens), 0)::bigint FROM orchestrator.instances",
                &[],
            )
            .expect("sum")
            .get(0);
        sum as u64
    };
    crate::shared::a_ledger_that_goes_away_mid_run_loses_no_usage(
        &url,
        &mut || server.stop(),
        &mut || server.start(),
        &mut recorded,
    );
}
