//! The usage ledger as a user meets it: real SQLite files written by real orchestrator
//! processes, read back with `orchestrator usage`; crashes, concurrent writers, history
//! estimates and every kind of bad ledger.

use crate::common::{
    call, init, orchestrator, result, run, stderr, stdout, tempdir, wait_for, wait_ready,
    FakeClaude,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn nanos(dollars: &Value) -> i64 {
    (dollars.as_f64().expect("dollars") * 1e9).round() as i64
}

const CLASSES: [&str; 5] = [
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "total_tokens",
];

/// `orchestrator usage --json` on `ledger`, with extra arguments.
fn usage_json(dir: &Path, ledger: &Path, extra: &[&str]) -> Value {
    let o = run(orchestrator_usage(dir, ledger).args(extra).arg("--json"));
    assert_eq!(o.status.code(), Some(0), "usage failed: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&o)))
}

fn orchestrator_usage(dir: &Path, ledger: &Path) -> Command {
    crate::common::helper(dir, "usage", ledger)
}

/// A simulated run recorded in `ledger`, its report returned.
fn simulated_run(dir: &Path, ledger: &Path, n: usize, prompts: &[&str]) -> Value {
    let report = dir.join(format!("report-{n}.json"));
    let o = run(orchestrator(dir)
        .args(["--simulate", "-q", "--project", "proj", "--ledger"])
        .arg(ledger)
        .arg("--report")
        .arg(&report)
        .args(prompts));
    // A `#fail` instance fails its run (exit 1); it is recorded all the same.
    let want = i32::from(prompts.iter().any(|p| p.contains("#fail")));
    assert_eq!(o.status.code(), Some(want), "run: {}", stderr(&o));
    let text = std::fs::read_to_string(&report).expect("report");
    serde_json::from_str(&text).expect("report JSON")
}

fn assert_usage_eq(got: &Value, want: &Value, what: &str) {
    for k in CLASSES {
        assert_eq!(got[k], want[k], "{what}: {k}: {got} vs {want}");
    }
    assert_eq!(
        nanos(&got["cost_usd"]),
        nanos(&want["cost_usd"]),
        "{what}: cost"
    );
}

#[test]
fn sums_equal_the_reports_over_many_runs() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let prompt_sets: [&[&str]; 4] = [
        &["/review", "/test --unit"],
        &["/review src", "fix the flaky test"],
        &["/lint", "/review", "/test", "explain the design"],
        &["/deploy #fail", "/review"],
    ];
    let mut reports = Vec::new();
    for (n, prompts) in prompt_sets.iter().cycle().take(10).enumerate() {
        reports.push(simulated_run(dir.path(), &ledger, n, prompts));
    }
    let by_run = usage_json(dir.path(), &ledger, &["--by", "run"]);
    let groups = by_run["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), reports.len());
    let by_id: HashMap<&str, &Value> = groups
        .iter()
        .map(|g| (g["key"].as_str().expect("key"), g))
        .collect();
    let (mut tokens, mut cost) = ([0u64; 5], 0i64);
    for r in &reports {
        let id = r["run_id"].as_str().expect("run_id in the report");
        let g = by_id
            .get(id)
            .unwrap_or_else(|| panic!("run {id} not in the ledger"));
        assert_usage_eq(&g["usage"], &r["totals"], id);
        assert_eq!(g["status"], "finished");
        assert_eq!(g["exit_code"], r["exit_code"]);
        assert_eq!(
            g["instances"].as_u64(),
            r["instances"].as_array().map(|a| a.len() as u64)
        );
        for (t, k) in tokens.iter_mut().zip(CLASSES) {
            *t += r["totals"][k].as_u64().expect("count");
        }
        cost += nanos(&r["totals"]["cost_usd"]);
    }
    // Every grouping adds up to the same totals, to the nanodollar.
    for by in [
        "run", "command", "model", "day", "week", "month", "project", "instance",
    ] {
        let v = usage_json(dir.path(), &ledger, &["--by", by]);
        for (t, k) in tokens.iter().zip(CLASSES) {
            assert_eq!(v["totals"][k].as_u64(), Some(*t), "--by {by}: {k}");
        }
        assert_eq!(nanos(&v["totals"]["cost_usd"]), cost, "--by {by}: cost");
        let group_cost: i64 = v["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| nanos(&g["usage"]["cost_usd"]))
            .sum();
        // Each group's dollars are exact nanodollars too.
        assert_eq!(group_cost, cost, "--by {by}: the groups' dollars");
    }
    // Free text groups under (prompt); `--project` and `--run` filter.
    let by_command = usage_json(dir.path(), &ledger, &["--by", "command"]);
    let keys: Vec<&str> = by_command["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["key"].as_str().expect("key"))
        .collect();
    assert_eq!(
        keys,
        vec!["(prompt)", "/deploy", "/lint", "/review", "/test"]
    );
    let review = &by_command["groups"][3];
    assert_eq!(review["runs"], 10);
    assert!(review["p50_tokens"].as_u64() <= review["p75_tokens"].as_u64());
    assert!(review["p75_tokens"].as_u64() <= review["p95_tokens"].as_u64());
    let rate = review["cache_hit_rate"].as_f64().expect("rate");
    assert!((0.0..=1.0).contains(&rate));
    let none = usage_json(dir.path(), &ledger, &["--project", "other"]);
    assert_eq!(none["groups"], serde_json::json!([]));
    let first = reports[0]["run_id"].as_str().expect("id");
    let one = usage_json(dir.path(), &ledger, &["--run", first]);
    assert_usage_eq(&one["totals"], &reports[0]["totals"], "--run");
    // Nothing started in the future.
    let later = usage_json(dir.path(), &ledger, &["--since", "2999-01-01"]);
    assert_eq!(later["groups"], serde_json::json!([]));
}

#[test]
fn run_id_project_and_efficiency_are_in_the_events_and_the_report() {
    let dir = tempdir();
    let o = run(orchestrator(dir.path()).args([
        "--simulate",
        "--json",
        "--no-ledger",
        "--project",
        "acme",
        "/review",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let started = &events[0];
    let finished = events.last().expect("events");
    assert_eq!(started["event"], "run_started");
    let id = started["run_id"].as_str().expect("run_id");
    assert_eq!(id.len(), 36);
    assert_eq!(finished["run_id"], id);
    assert_eq!(started["project"], "acme");
    assert_eq!(finished["project"], "acme");
    let e = &finished["efficiency"];
    let t = &finished["totals"];
    let prompt = t["input_tokens"].as_f64().unwrap_or(0.0)
        + t["cache_creation_input_tokens"].as_f64().unwrap_or(0.0)
        + t["cache_read_input_tokens"].as_f64().unwrap_or(0.0);
    let want = t["cache_read_input_tokens"].as_f64().unwrap_or(0.0) / prompt;
    assert!((e["cache_hit_rate"].as_f64().expect("rate") - want).abs() < 1e-12);
    assert_eq!(e["cost_per_completed_usd"], t["cost_usd"]);
    assert!(
        stderr(&o).contains("efficiency: cache hit "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_sigkilled_run_shows_as_abandoned_with_its_usage() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        .ready()
        .hang()
        .write(dir.path(), "claude-hang");
    let mut child = orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .arg("--ledger")
        .arg(&ledger)
        .args(["-q", "/review"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Claude has printed its usage once it is ready; the ledger has it within a second
    // after that.
    let claude_pid = wait_ready(dir.path(), 1, &mut child)[0];
    let recorded = wait_for("the usage recorded in the ledger", &mut child, |_| {
        let v = usage_json(dir.path(), &ledger, &["--by", "run"]);
        let g = v["groups"].get(0)?.clone();
        (g["usage"]["total_tokens"].as_u64()? > 0).then_some(g)
    });
    assert_eq!(recorded["status"], "running");
    // SAFETY: plain kill(2) calls on processes this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    unsafe {
        libc::kill(-claude_pid, libc::SIGKILL);
        libc::kill(claude_pid, libc::SIGKILL);
    }
    // With the staleness threshold at zero the run is abandoned at once (30 s by default).
    let o = run(orchestrator_usage(dir.path(), &ledger)
        .args(["--by", "run", "--json"])
        .env("ORCHESTRATOR_LEDGER_STALE_MS", "0"));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let g = &v["groups"][0];
    assert_eq!(g["status"], "abandoned");
    assert_eq!(g["exit_code"], Value::Null);
    assert_eq!(g["usage"]["input_tokens"], 1000);
    assert_eq!(g["usage"]["output_tokens"], 200);
    assert_eq!(g["completed"], 0);
    let table = run(orchestrator_usage(dir.path(), &ledger)
        .args(["--by", "run"])
        .env("ORCHESTRATOR_LEDGER_STALE_MS", "0"));
    assert!(stdout(&table).contains("abandoned"), "{}", stdout(&table));
}

#[test]
fn six_orchestrators_writing_one_ledger_lose_nothing() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let children: Vec<(PathBuf, std::process::Child)> = (0..6)
        .map(|n| {
            let report = dir.path().join(format!("r{n}.json"));
            let child = orchestrator(dir.path())
                .args(["--simulate", "-q", "--ledger"])
                .arg(&ledger)
                .arg("--report")
                .arg(&report)
                .args(["/review", "/test", "/lint", "fix it", "/review x", "/docs"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            (report, child)
        })
        .collect();
    let mut reports = Vec::new();
    for (report, child) in children {
        let o: Output = child.wait_with_output().expect("wait");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(!stderr(&o).contains("locked"), "{}", stderr(&o));
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(report).expect("report")).expect("JSON");
        reports.push(v);
    }
    let v = usage_json(dir.path(), &ledger, &["--by", "run"]);
    let groups = v["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 6);
    for r in &reports {
        let g = groups
            .iter()
            .find(|g| g["key"] == r["run_id"])
            .expect("every run recorded");
        assert_usage_eq(&g["usage"], &r["totals"], "run");
        assert_eq!(g["instances"], 6);
        assert_eq!(g["completed"], 6);
        assert_eq!(g["status"], "finished");
    }
}

#[test]
fn the_dry_run_estimates_from_history() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let dry = |extra: &[&str]| -> Value {
        let o = run(orchestrator(dir.path())
            .args([
                "--simulate",
                "--dry-run",
                "--json",
                "--project",
                "proj",
                "--ledger",
            ])
            .arg(&ledger)
            .args(extra));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).expect("plan JSON")
    };
    // No history yet (and the dry run does not create the ledger).
    let p = dry(&["/review"]);
    assert_eq!(p["instances"][0]["estimate_source"], "default");
    assert_eq!(p["instances"][0]["estimate"]["tokens"], 1000);
    assert!(!ledger.exists(), "a dry run must not write the ledger");

    let mut totals = Vec::new();
    for n in 0..4 {
        let r = simulated_run(dir.path(), &ledger, n, &[&format!("/review variant {n}")]);
        totals.push(
            r["instances"][0]["usage"]["total_tokens"]
                .as_u64()
                .expect("t"),
        );
    }
    totals.sort_unstable();
    // Nearest rank: the 3rd of 4.
    let p75 = totals[2];
    let p = dry(&["/review", "/other", "free text"]);
    assert_eq!(p["instances"][0]["estimate_source"], "p75 of 4 runs");
    assert_eq!(p["instances"][0]["estimate"]["tokens"], p75);
    assert_eq!(p["instances"][1]["estimate_source"], "default");
    assert_eq!(p["instances"][2]["estimate_source"], "default");
    // Another model or another project has no history.
    let p = dry(&["--model", "opus", "/review"]);
    assert_eq!(p["instances"][0]["estimate_source"], "default");
    let o = run(orchestrator(dir.path())
        .args([
            "--simulate",
            "--dry-run",
            "--project",
            "elsewhere",
            "--ledger",
        ])
        .arg(&ledger)
        .arg("/review"));
    assert!(stdout(&o).contains("(default)"), "{}", stdout(&o));
    // --estimate pins it.
    let p = dry(&["--estimate", "777", "/review"]);
    assert_eq!(p["instances"][0]["estimate_source"], "--estimate");
    assert_eq!(p["instances"][0]["estimate"]["tokens"], 777);
    // The human dry run names the source.
    let o = run(orchestrator(dir.path())
        .args(["--simulate", "--dry-run", "--project", "proj", "--ledger"])
        .arg(&ledger)
        .arg("/review"));
    assert!(
        stdout(&o).contains(&format!("estimate:  {p75} tokens"))
            && stdout(&o).contains("(p75 of 4 runs)"),
        "{}",
        stdout(&o)
    );
}

/// Runs with an explicit `--ledger` and asserts the one-line exit-2 error.
fn assert_bad_explicit(dir: &Path, ledger: &Path, want: &str) {
    let o = run(orchestrator(dir)
        .args(["--simulate", "--json", "--ledger"])
        .arg(ledger)
        .arg("/review"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&ledger.display().to_string()), "{err}");
    assert!(err.contains(want), "{err}");
    assert!(err.contains("--no-ledger"), "{err}");
    assert!(stdout(&o).is_empty(), "nothing may run: {}", stdout(&o));
}

#[test]
fn an_explicit_ledger_that_cannot_be_used_is_a_usage_error() {
    let dir = tempdir();
    let corrupt = dir.path().join("corrupt.sqlite");
    std::fs::write(&corrupt, vec![b'#'; 8192]).expect("write");
    assert_bad_explicit(dir.path(), &corrupt, "not a usable ledger");

    let newer = dir.path().join("newer.sqlite");
    let c = rusqlite::Connection::open(&newer).expect("sqlite");
    c.execute_batch("CREATE TABLE x(y); PRAGMA user_version = 99;")
        .expect("bump");
    drop(c);
    assert_bad_explicit(dir.path(), &newer, "newer orchestrator");
    // Never written: still version 99, no tables of ours.
    let c = rusqlite::Connection::open(&newer).expect("sqlite");
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, 99);

    assert_bad_explicit(
        dir.path(),
        &dir.path().join("missing-dir/ledger.sqlite"),
        "does not exist",
    );
    // Not even root can create a file in /proc.
    assert_bad_explicit(
        dir.path(),
        Path::new("/proc/orchestrator-test-ledger.sqlite"),
        "cannot be used",
    );
    // The environment variable is as explicit as the flag.
    let o = run(orchestrator(dir.path())
        .env("ORCHESTRATOR_LEDGER", &corrupt)
        .args(["--simulate", "/review"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // --no-ledger is the way out.
    let o = run(orchestrator(dir.path())
        .env("ORCHESTRATOR_LEDGER", &corrupt)
        .args(["--simulate", "-q", "--no-ledger", "/review"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // `usage` names the file too.
    let o = run(&mut orchestrator_usage(dir.path(), &corrupt));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&corrupt.display().to_string()),
        "{}",
        stderr(&o)
    );
}

/// A fake `claude` that completes at once with a little usage.
fn quick_claude(dir: &Path) -> PathBuf {
    FakeClaude::new()
        .line(&init())
        .lines(call("m1", 300, 50))
        .line(&result(300, 50, 0.002, false, "ok"))
        .write(dir, "claude-quick")
}

#[test]
fn the_default_ledger_records_real_runs_but_not_simulated_ones() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let default = data.join("orchestrator/ledger.sqlite");
    let o = run(orchestrator(dir.path())
        .env("XDG_DATA_HOME", &data)
        .env_remove("ORCHESTRATOR_LEDGER")
        .args(["--simulate", "-q", "/review"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !default.exists(),
        "a simulated run must not touch the default ledger"
    );

    let claude = quick_claude(dir.path());
    let o = run(orchestrator(dir.path())
        .env("XDG_DATA_HOME", &data)
        .env_remove("ORCHESTRATOR_LEDGER")
        .arg("--claude-path")
        .arg(&claude)
        .args(["-q", "/review"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = usage_json(dir.path(), &default, &[]);
    assert_eq!(v["totals"]["input_tokens"], 300);
    assert_eq!(v["totals"]["output_tokens"], 50);
    assert_eq!(nanos(&v["totals"]["cost_usd"]), 2_000_000);
    // `usage` without --ledger reads the same default.
    let o = run(Command::new(crate::common::bin())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", &data)
        .env_remove("ORCHESTRATOR_LEDGER")
        .args(["usage", "--json"]));
    let w: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(w["totals"], v["totals"]);
}

#[test]
fn a_default_ledger_that_fails_is_one_warning_and_the_run_goes_on() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let default = data.join("orchestrator/ledger.sqlite");
    std::fs::create_dir_all(default.parent().expect("parent")).expect("mkdir");
    std::fs::write(&default, vec![b'#'; 8192]).expect("corrupt");
    let claude = quick_claude(dir.path());
    let o = run(orchestrator(dir.path())
        .env("XDG_DATA_HOME", &data)
        .env_remove("ORCHESTRATOR_LEDGER")
        .arg("--claude-path")
        .arg(&claude)
        .args(["-q", "/review"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{}", stderr(&o));
    assert!(
        warnings[0].contains(&default.display().to_string()),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("not recorded"), "{}", warnings[0]);
}

#[test]
fn usage_rejects_a_bad_time_and_reads_a_missing_ledger_as_empty() {
    let dir = tempdir();
    let missing = dir.path().join("none.sqlite");
    let o = run(orchestrator_usage(dir.path(), &missing).args(["--since", "last tuesday"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--since"), "{}", stderr(&o));
    let o = run(orchestrator_usage(dir.path(), &missing).args(["--by", "fortnight"]));
    assert_eq!(o.status.code(), Some(2));
    let v = usage_json(dir.path(), &missing, &[]);
    assert_eq!(v["groups"], serde_json::json!([]));
    assert_eq!(v["totals"]["total_tokens"], 0);
    assert!(!missing.exists());
}
