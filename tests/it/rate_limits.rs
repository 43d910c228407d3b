//! Rate limits and usage limits, as a user meets them with `--simulate`: a 429/529
//! storm pauses launches and lowers parallelism for the whole fleet and both recover; a
//! usage limit stops the instance or is waited out and the conversation resumed with
//! `--resume`, its totals adding up over both processes; a spend cap stops launching.

use crate::common::{instance, orchestrator, run, stderr, tempdir};
use orchestrator::core::usage::Usd;
use orchestrator::simulate::expected_totals;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// The `--json` events, each checked against schema/events.schema.json, and the report.
fn events(o: &Output) -> Vec<Value> {
    let ev = crate::common::events(o);
    crate::scripting::schemas().check_report(report(&ev));
    ev
}

fn of<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event"] == kind).collect()
}

fn report(ev: &[Value]) -> &Value {
    ev.last()
        .filter(|e| e["event"] == "run_finished")
        .expect("run_finished last")
}

fn cost(v: &Value) -> Usd {
    Usd::from_dollars(v["usage"]["cost_usd"].as_f64().expect("cost"))
}

/// A simulated run with `--json` events.
fn simulated(dir: &Path) -> Command {
    let mut c = orchestrator(dir);
    c.args(["--simulate", "--json"]);
    c
}

/// Wait for a usage limit's reset (up to a minute), then resume.
const WAIT_FOR_THE_RESET: [&str; 4] = ["--on-usage-limit", "wait", "--max-wait", "60"];

#[test]
fn a_retry_storm_pauses_launches_and_lowers_parallelism_which_recovers() {
    let dir = tempdir();
    let mut c = simulated(dir.path());
    // Four at once; the first wave gets 429s and 529s (1 s retry delays), the rest not.
    c.args(["-j", "4", "--backoff-quiet", "0.5"])
        .env("ORCHESTRATOR_SIMULATE_PACE", "0.05")
        .args(["/a #429=3", "/b #529=2", "/c #429=1", "/d"])
        .args(["/e", "/f", "/g", "/h"]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ev = events(&out);
    let paused = of(&ev, "launches_paused");
    assert!(!paused.is_empty(), "no pause");
    assert!(
        paused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("429 from ") || r.starts_with("529 from ")),
        "{}",
        paused[0]
    );
    assert!(!of(&ev, "launches_resumed").is_empty());
    let changes = of(&ev, "parallelism_changed");
    let lowered = changes
        .iter()
        .find(|e| e["reduced"] == true)
        .expect("parallelism lowered");
    assert!(
        lowered["parallelism"].as_u64().is_some_and(|p| p < 4),
        "{lowered}"
    );
    assert_eq!(
        changes
            .last()
            .map(|e| (e["reduced"].clone(), e["parallelism"].clone())),
        Some((Value::Bool(false), Value::from(4))),
        "parallelism recovers to --max-parallel: {changes:?}"
    );
    // Nothing was launched during a pause: every launch after the first wave comes
    // after the pause that preceded it ended.
    let mut paused_now = false;
    for e in &ev {
        match e["event"].as_str() {
            Some("launches_paused") => paused_now = true,
            Some("launches_resumed") => paused_now = false,
            Some("instance_started") => assert!(!paused_now, "launched while paused: {e}"),
            _ => {}
        }
    }
    assert_eq!(report(&ev)["exit_code"], 0);
}

#[test]
fn a_usage_limit_with_stop_leaves_the_instance_rate_limited_and_exit_1() {
    let dir = tempdir();
    let mut c = simulated(dir.path());
    c.args(["-j", "1"])
        .args(["/test #usage-limit=3600", "/lint"]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ev = events(&out);
    let r = report(&ev);
    let t = instance(r, "test-usage-limit-3600");
    assert_eq!(t["status"], "rate_limited");
    assert!(
        t["reason"]
            .as_str()
            .is_some_and(|s| s.starts_with("usage limit reached; resets ")),
        "{t}"
    );
    let lint = instance(r, "lint");
    assert_eq!(lint["status"], "rate_limited");
    assert!(lint["reason"]
        .as_str()
        .is_some_and(|s| s.starts_with("not started: usage limit reached")));
    assert_eq!(of(&ev, "launches_stopped").len(), 1);
    // What the limited process spent is its result's, exactly.
    let (usage, usd) = expected_totals("/test #usage-limit=3600", None);
    assert_eq!(t["usage"]["total_tokens"], usage.total());
    assert_eq!(cost(t), usd);
    assert!(stderr(&out).contains("rate limited"), "{}", stderr(&out));
}

#[test]
fn a_usage_limit_with_wait_resumes_the_conversation_and_adds_up_both_processes() {
    let dir = tempdir();
    let mut c = simulated(dir.path());
    c.args(WAIT_FOR_THE_RESET).arg("/test #usage-limit=1");
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ev = events(&out);
    let started = of(&ev, "instance_started");
    assert_eq!(started.len(), 2, "one process, then the resumed one");
    let argv = |e: &Value| -> Vec<String> {
        e["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let first = argv(started[0]);
    let second = argv(started[1]);
    assert_eq!(
        first.last().map(String::as_str),
        Some("/test #usage-limit=1")
    );
    let at = second
        .iter()
        .position(|a| a == "--resume")
        .expect("--resume");
    let session = &second[at + 1];
    assert!(!session.is_empty());
    assert_eq!(second.last().map(String::as_str), Some("continue"));
    // The same flags otherwise.
    let flags = |v: &[String]| -> Vec<String> {
        v.iter()
            .take_while(|a| *a != "--")
            .filter(|a| *a != "--resume" && *a != session)
            .cloned()
            .collect()
    };
    assert_eq!(flags(&first), flags(&second));
    let waiting = of(&ev, "instance_waiting");
    assert!(waiting.iter().any(|e| e["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("usage limit reached"))));
    let t = instance(report(&ev), "test-usage-limit-1");
    assert_eq!(t["status"], "completed");
    let (u1, c1) = expected_totals("/test #usage-limit=1", None);
    let (u2, c2) = expected_totals("continue", None);
    assert_eq!(t["usage"]["total_tokens"], u1.total() + u2.total());
    assert_eq!(
        t["usage"]["output_tokens"],
        u1.output_tokens + u2.output_tokens
    );
    assert_eq!(cost(t), c1 + c2);
    // The usage events' deltas add up to the total over both processes.
    let deltas: u64 = of(&ev, "usage")
        .iter()
        .map(|e| e["delta"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(deltas, u1.total() + u2.total());
}

#[test]
fn budgets_hold_across_a_resume() {
    let dir = tempdir();
    let (u1, _) = expected_totals("/test #usage-limit=1", None);
    let (u2, _) = expected_totals("continue", None);
    // Room for the first process and about half of the resumed one.
    let limit = u1.total() + u2.total() / 2;
    let mut c = simulated(dir.path());
    c.args(WAIT_FOR_THE_RESET)
        .args(["--budget-enforcement-mode", "block", "--estimate", "1"])
        .args(["--overall-token-budget", &limit.to_string()])
        .env("ORCHESTRATOR_SIMULATE_PACE", "0.05")
        .arg("/test #usage-limit=1");
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let ev = events(&out);
    assert_eq!(of(&ev, "instance_started").len(), 2);
    let t = instance(report(&ev), "test-usage-limit-1");
    assert_eq!(t["status"], "terminated");
    let total = t["usage"]["total_tokens"].as_u64().unwrap();
    assert!(
        total > limit && total < u1.total() + u2.total(),
        "{total} vs {limit}"
    );
}

#[test]
fn a_spend_cap_stops_launching_and_lets_the_others_finish() {
    let dir = tempdir();
    let mut c = simulated(dir.path());
    // b runs about twenty times longer than a takes to hit the cap, so c's slot can only
    // come from a, whose cap is known before its exit frees the slot.
    c.args(["-j", "2"])
        .env("ORCHESTRATOR_SIMULATE_PACE", "0.1")
        .args(["/a #spend-cap", "/b #secs=20", "/c"]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ev = events(&out);
    let r = report(&ev);
    assert_eq!(instance(r, "a-spend-cap")["status"], "failed");
    assert_eq!(
        instance(r, "b-secs-20")["status"],
        "completed",
        "not terminated"
    );
    let c = instance(r, "c");
    assert_eq!(c["status"], "failed");
    assert!(c["reason"]
        .as_str()
        .is_some_and(|s| s.starts_with("not started: organisation spend cap reached")));
    assert!(of(&ev, "launches_stopped")[0]["reason"]
        .as_str()
        .is_some_and(|s| s.contains("enforced_spend_limit_reached")));
}

/// A simulated run of `project` recorded in `ledger`, with `--json` events.
fn in_project(dir: &Path, ledger: &Path, project: &str) -> Command {
    let mut c = simulated(dir);
    c.args(["--project", project, "--ledger"]).arg(ledger);
    c
}

/// The pauses the ledger holds (what other runs of the project will read).
fn published_pauses(ledger: &Path) -> i64 {
    rusqlite::Connection::open(ledger)
        .and_then(|c| c.query_row("SELECT count(*) FROM pauses", [], |r| r.get(0)))
        .unwrap_or(0)
}

#[test]
fn a_usage_limit_met_by_one_run_stops_the_next_run_of_the_project_before_it_launches() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let first = run(in_project(dir.path(), &ledger, "p").arg("/test #usage-limit=3600"));
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    assert_eq!(published_pauses(&ledger), 1);
    let out = run(in_project(dir.path(), &ledger, "p").args(["/lint", "/review"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ev = events(&out);
    assert!(of(&ev, "instance_started").is_empty(), "nothing launched");
    let r = report(&ev);
    for name in ["lint", "review"] {
        let i = instance(r, name);
        assert_eq!(i["status"], "rate_limited");
        assert!(
            i["reason"].as_str().is_some_and(
                |s| s.contains("usage limit reached by another run of the project; resets ")
            ),
            "{i}"
        );
    }
    // Another project's runs are not held.
    let other = run(in_project(dir.path(), &ledger, "q").arg("/lint"));
    assert_eq!(other.status.code(), Some(0), "{}", stderr(&other));
}

#[test]
fn with_wait_the_next_run_of_the_project_waits_for_the_reset_another_run_met() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let mut first = in_project(dir.path(), &ledger, "p")
        .args(WAIT_FOR_THE_RESET)
        .arg("/test #usage-limit=4")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    crate::common::wait_for(
        "the first run published its usage limit",
        &mut first,
        |_| (published_pauses(&ledger) > 0).then_some(()),
    );
    let out = run(in_project(dir.path(), &ledger, "p")
        .args(WAIT_FOR_THE_RESET)
        .arg("/lint"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ev = events(&out);
    let paused = of(&ev, "launches_paused");
    assert_eq!(paused.len(), 1, "{ev:?}");
    assert!(
        paused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("usage limit reached by another run of the project")),
        "{}",
        paused[0]
    );
    // It launched only once the pause was over.
    let ts = |e: &Value| e["ts"].as_str().unwrap_or("").to_string();
    let started = of(&ev, "instance_started");
    assert_eq!(started.len(), 1);
    assert!(ts(started[0]) >= ts(of(&ev, "launches_resumed")[0]));
    assert_eq!(instance(report(&ev), "lint")["status"], "completed");
    assert_eq!(crate::common::wait_exit(&mut first).code(), Some(0));
}
