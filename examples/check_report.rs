//! Checks a `--report` file of a `--simulate` run against what the simulated Claude is
//! known to spend (`simulate::expected_totals`): every instance completed, no malformed
//! line, and its four token counts and its cost exactly right; the run totals the sum.
//! Used by benches/scale.sh.
//!
//! Usage: cargo run --release --example check_report -- REPORT.json
//! Exit 0 when everything is exact, 1 on any difference, 2 on a bad report.

use orchestrator::core::usage::{Usage, Usd};
use orchestrator::simulate::expected_totals;
use serde_json::Value;

fn usage_of(v: &Value) -> Option<(Usage, Usd)> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let usage = Usage {
        input_tokens: n("input_tokens")?,
        output_tokens: n("output_tokens")?,
        cache_creation_input_tokens: n("cache_creation_input_tokens")?,
        cache_read_input_tokens: n("cache_read_input_tokens")?,
    };
    Some((usage, Usd::from_dollars(v.get("cost_usd")?.as_f64()?)))
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check_report REPORT.json");
        std::process::exit(2);
    };
    let report: Value = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("check_report: {path}: {e}");
            std::process::exit(2);
        }
    };
    let instances = report["instances"].as_array().cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    let mut sum = Usage::default();
    let mut sum_cost = Usd::ZERO;
    for inst in &instances {
        let name = inst["name"].as_str().unwrap_or("?");
        let command = inst["command"].as_str().unwrap_or("");
        let model = inst["model"].as_str();
        let want = expected_totals(command, model);
        let got = usage_of(&inst["usage"]);
        if let Some((u, c)) = got {
            sum += u;
            sum_cost += c;
        }
        let status = inst["status"].as_str().unwrap_or("?");
        let malformed = inst["malformed_lines"].as_u64().unwrap_or(u64::MAX);
        if got != Some(want) || status != "completed" || malformed != 0 {
            wrong.push(format!(
                "{name}: status {status}, malformed {malformed}, got {got:?}, want {want:?}"
            ));
        }
    }
    let totals_ok = usage_of(&report["totals"]) == Some((sum, sum_cost));
    let tokens = sum.total();
    println!(
        "exact: {}/{} instances, run totals {} ({tokens} tokens, {sum_cost})",
        instances.len() - wrong.len(),
        instances.len(),
        if totals_ok { "match" } else { "DIFFER" },
    );
    for w in wrong.iter().take(10) {
        println!("  {w}");
    }
    if !wrong.is_empty() || !totals_ok || instances.is_empty() {
        std::process::exit(1);
    }
}
