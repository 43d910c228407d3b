//! Batch habits from GNU parallel, through the binary: `--retries N` relaunches a failed
//! instance (its spend adding up over the attempts), `--fail-fast` launches nothing more
//! after the first failure.

use crate::common::{events, instance, orchestrator, run, stderr, tempdir};
use orchestrator::core::usage::Usd;
use orchestrator::simulate::expected_totals;
use serde_json::Value;

#[test]
fn retries_relaunch_a_failing_instance_and_count_every_attempt() {
    let dir = tempdir();
    let out = run(orchestrator(dir.path()).args([
        "--simulate",
        "--json",
        "--retries",
        "2",
        "/deploy #fail",
        "/test",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ev = events(&out);
    let retrying: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event"] == "instance_retrying")
        .collect();
    assert_eq!(retrying.len(), 2);
    assert_eq!(retrying[0]["attempt"], 2);
    assert_eq!(retrying[1]["attempt"], 3);
    assert!(retrying[0]["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("claude reported an error")));
    let started = ev
        .iter()
        .filter(|e| e["event"] == "instance_started" && e["name"] == "deploy-fail")
        .count();
    assert_eq!(started, 3);
    let report = ev.last().expect("run_finished");
    let d = instance(report, "deploy-fail");
    assert_eq!(d["status"], "failed");
    let (u, c) = expected_totals("/deploy #fail", None);
    assert_eq!(d["usage"]["total_tokens"], 3 * u.total());
    assert_eq!(
        Usd::from_dollars(d["usage"]["cost_usd"].as_f64().unwrap()),
        c + c + c
    );
    assert_eq!(instance(report, "test")["status"], "completed");
}

#[test]
fn fail_fast_stops_launching_after_the_first_failure() {
    let dir = tempdir();
    let out = run(orchestrator(dir.path()).args([
        "--simulate",
        "--json",
        "-j",
        "1",
        "--fail-fast",
        "/deploy #fail",
        "/test",
        "/lint",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ev = events(&out);
    let report = ev.last().expect("run_finished");
    assert_eq!(instance(report, "deploy-fail")["status"], "failed");
    for name in ["test", "lint"] {
        let i = instance(report, name);
        assert_eq!(i["status"], "interrupted");
        assert_eq!(
            i["reason"],
            "not started: --fail-fast after deploy-fail failed"
        );
    }
}
