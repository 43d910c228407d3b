//! Issue 10 through the binary: block mode holds for every instance (including
//! `output_format: "json"` ones), a budget crossed by an instance's own final result does
//! not turn its success into `terminated`, and eight parallel instances under a block-mode
//! cost budget overshoot it by at most one API call each, at Claude's own prices.

use crate::common::{instance, orchestrator, run, stderr, tempdir, FakeClaude};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

fn finished(o: &Output) -> Value {
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .expect("no events");
    assert_eq!(last["event"], "run_finished", "last event: {last}");
    last
}

/// A fake `claude` that records that it ran in `ran-claude`.
fn fake() -> FakeClaude {
    FakeClaude::new().marker("ran-claude")
}

/// Claude Code's one-object `--output-format json` answer: $0.225 at Sonnet 5's $3/$15.
fn json_answer() -> String {
    json!({"type": "result", "subtype": "success", "is_error": false, "num_turns": 10,
           "result": "fixed", "session_id": "s", "total_cost_usd": 0.225,
           "usage": {"input_tokens": 5000, "output_tokens": 500},
           "modelUsage": {"claude-sonnet-5": {"inputTokens": 50_000, "outputTokens": 5_000,
               "cacheReadInputTokens": 0, "cacheCreationInputTokens": 0, "webSearchRequests": 0,
               "costUSD": 0.225}}})
    .to_string()
}

fn config(dir: &Path, instance: Value) -> PathBuf {
    let path = dir.join("c.json");
    let c = json!({"instances": [instance],
                   "budget": {"overall_cost_usd": 0.05, "enforcement_mode": "block"}});
    std::fs::write(&path, c.to_string()).expect("write config");
    path
}

#[test]
fn json_instance_without_its_own_cap_is_refused_under_a_block_cost_budget() {
    let dir = tempdir();
    let claude = fake().line(&json_answer()).write(dir.path(), "claude");
    for (inst, names) in [
        (
            json!({"command": "/fix x", "output_format": "json"}),
            vec![
                "instances[0]",
                "json",
                "max_cost_usd",
                "overall cost budget",
                "$0.0500",
            ],
        ),
        (
            json!({"command": "/fix x", "output_format": "json", "max_cost_usd": 0.06}),
            vec![
                "instances[0]",
                "json",
                "max_cost_usd $0.0600",
                "larger",
                "$0.0500",
            ],
        ),
    ] {
        let cfg = config(dir.path(), inst);
        let out = run(orchestrator(dir.path())
            .arg("--claude-path")
            .arg(&claude)
            .arg("-c")
            .arg(&cfg));
        assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        for n in names {
            assert!(err.contains(n), "{n:?} missing: {err}");
        }
        assert!(!dir.path().join("ran-claude").exists(), "nothing launched");
    }
    // Under a block-mode token budget a json instance cannot be bounded at all.
    let out = run(orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args([
            "--output-format",
            "json",
            "--budget-enforcement-mode",
            "block",
        ])
        .args(["--overall-token-budget", "1000", "/fix y"]));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("PROMPT #1") && stderr(&out).contains("stream-json"));
    assert!(!dir.path().join("ran-claude").exists(), "nothing launched");
}

#[test]
fn json_instance_whose_result_crosses_the_budget_is_completed() {
    let dir = tempdir();
    let claude = fake().line(&json_answer()).write(dir.path(), "claude");
    let cfg = config(
        dir.path(),
        json!({"name": "fix", "command": "/fix x", "output_format": "json", "max_cost_usd": 0.05}),
    );
    let out = run(orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--json", "-c"])
        .arg(&cfg));
    let report = finished(&out);
    let inst = instance(&report, "fix");
    assert_eq!(inst["status"], "completed", "{inst}");
    assert_eq!(inst["exit_code"], 0);
    assert_eq!(inst["usage"]["cost_usd"], 0.225);
    assert_eq!(inst["usage"]["total_tokens"], 55_000);
    // No live counting at all: everything arrived with the result.
    assert_eq!(inst["live_difference"]["tokens"], -55_000);
    assert_eq!(report["budgets"][0]["state"], "exceeded");
}

#[test]
fn result_is_the_authority_downward_and_the_difference_is_reported() {
    let dir = tempdir();
    // The real Claude Code transcript of a streamed call that failed and was re-issued.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fidelity/sse-retry-sonnet.jsonl");
    let text = std::fs::read_to_string(&fixture).expect("fixture");
    let lines: Vec<&str> = text.lines().collect();
    let (result_line, stream) = lines.split_last().expect("lines");
    // A result that counts fewer tokens than the stream showed (as after an interrupted
    // call), at a price the table does not know (Claude charges $0.02 for what the table
    // prices at $0.015).
    let mut r: Value = serde_json::from_str(result_line).expect("result");
    r["modelUsage"]["claude-sonnet-5"]["inputTokens"] = json!(3000);
    r["modelUsage"]["claude-sonnet-5"]["costUSD"] = json!(0.02);
    r["total_cost_usd"] = json!(0.02);
    let claude = fake()
        .lines(stream)
        .line(&r.to_string())
        .write(dir.path(), "claude");
    let out = run(orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--json", "--model", "sonnet", "/fix z"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report = finished(&out);
    let inst = instance(&report, "fix-z");
    assert_eq!(inst["usage"]["input_tokens"], 3000);
    assert_eq!(inst["usage"]["output_tokens"], 400);
    assert_eq!(inst["usage"]["cost_usd"], 0.02);
    // Live counted 4000 + 400 tokens and $0.018 (the failed attempt left out).
    assert_eq!(inst["live_difference"]["tokens"], 1000);
    let over = inst["live_difference"]["cost_usd"]
        .as_f64()
        .expect("number");
    assert!((over + 0.002).abs() < 1e-12, "{over}");
    assert_eq!(report["live_difference"]["tokens"], 1000);
    assert_eq!(report["totals"]["total_tokens"], 3400);
    // The table disagrees with this result: one warning naming the model, both prices
    // and --pricing.
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("price table")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    for s in ["claude-sonnet-5", "$0.0200", "$0.0150", "--pricing"] {
        assert!(warnings[0].contains(s), "{s:?} missing: {}", warnings[0]);
    }
}

#[test]
fn eight_parallel_instances_overshoot_a_block_cost_budget_by_at_most_one_call_each() {
    let dir = tempdir();
    // Each instance: up to 12 calls of 2000 in / 200 out on Sonnet 5, one every 0.3 s
    // (the API's latency); $0.009 each at Claude's $3/$15.
    let mut body = String::from("i=0\nwhile [ $i -lt 12 ]; do\n  i=$((i+1))\n");
    let u = |o: u64| json!({"input_tokens":2000,"output_tokens":o,"cache_creation_input_tokens":0,"cache_read_input_tokens":0});
    for l in [
        json!({"type":"stream_event","event":{"type":"message_start","message":{"id":"IDm","model":"claude-sonnet-5","usage":u(1)}},"parent_tool_use_id":null}),
        json!({"type":"assistant","message":{"id":"IDm","model":"claude-sonnet-5","content":[{"type":"text","text":"working"}],"usage":u(1)},"parent_tool_use_id":null}),
        json!({"type":"stream_event","event":{"type":"message_delta","usage":{"output_tokens":200}},"parent_tool_use_id":null}),
    ] {
        let l = l.to_string().replace("IDm", "m$$-$i");
        body.push_str(&format!(
            "  printf '%s\\n' \"{}\"\n",
            l.replace('"', "\\\"")
        ));
    }
    body.push_str("  sleep 0.3\ndone");
    let claude = fake()
        .line(
            &json!({"type":"system","subtype":"init","model":"claude-sonnet-5","session_id":"s"})
                .to_string(),
        )
        .sh(&body)
        .line(&json!({"type":"result","subtype":"success","is_error":false,"result":"done",
            "total_cost_usd":0.108,"modelUsage":{"claude-sonnet-5":{"inputTokens":24000,"outputTokens":2400,
            "cacheReadInputTokens":0,"cacheCreationInputTokens":0,"costUSD":0.108}}}).to_string())
        .write(dir.path(), "claude");
    let limit = 0.30;
    let call = 2000.0 * 3e-6 + 200.0 * 15e-6;
    let prompts: Vec<String> = (0..8).map(|i| format!("/fix part {i}")).collect();
    let out = run(orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--json", "--model", "sonnet", "--max-parallel", "8"])
        .args(["--budget-enforcement-mode", "block", "--kill-grace", "1"])
        .args(["--command-cost-budget", "/fix=0.30", "--estimate", "1000"])
        .args(&prompts));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let report = finished(&out);
    let insts = report["instances"].as_array().expect("instances");
    assert_eq!(insts.len(), 8);
    // Spend at Claude's own prices, from the tokens each instance reports.
    let mut spent = 0.0;
    for i in insts {
        assert_eq!(i["status"], "terminated", "{i}");
        let u = &i["usage"];
        let tokens = |k: &str| u[k].as_f64().unwrap_or(0.0);
        spent += tokens("input_tokens") * 3e-6 + tokens("output_tokens") * 15e-6;
    }
    assert!(spent > limit, "the budget was crossed: {spent}");
    let overshoot_calls = (spent - limit) / call;
    eprintln!("spent ${spent:.4} of ${limit}: overshoot {overshoot_calls:.2} calls");
    assert!(
        overshoot_calls <= 8.0,
        "overshoot {overshoot_calls:.1} calls for 8 running instances (spent ${spent:.4})"
    );
    // The orchestrator's own dollars are Claude's.
    let believed = report["totals"]["cost_usd"].as_f64().expect("cost");
    assert!((believed - spent).abs() < 1e-9, "{believed} vs {spent}");
}
