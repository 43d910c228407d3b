//! Issue 10 ("Fidelity"): transcripts of the real Claude Code 2.1.197 against
//! `scripts/fake-anthropic-api.py`, one per case (tests/fixtures/fidelity/README.md says how
//! each was made). For each: the final tokens per class and dollars are exactly Claude's
//! `result` (`modelUsage`, `total_cost_usd`), and the last live figure before the result is
//! within 0.1% of Claude's dollars.

use orchestrator::core::accounting::Tracker;
use orchestrator::core::pricing::Pricing;
use orchestrator::core::usage::{Usage, Usd};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Case {
    /// Live numbers just before the (last) `result` line.
    live: Usage,
    live_cost: Usd,
    /// What Claude's `result` says.
    claude: Usage,
    claude_cost: Usd,
    tracker: Tracker,
    warnings: Vec<String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fidelity")
}

fn feed(name: &str) -> Case {
    let path = dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut t = Tracker::new(Arc::new(Pricing::builtin()));
    let (mut tokens, mut cost) = (0i64, Usd::ZERO);
    let mut live = (Usage::default(), Usd::ZERO);
    let mut claude = None;
    let mut warnings = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let before = (t.usage(), t.cost());
        let o = t.observe(line);
        warnings.extend(o.warning.clone());
        tokens += o.tokens_delta;
        cost += o.cost_delta;
        assert_eq!(tokens, t.total_tokens() as i64, "{name}: token deltas sum");
        assert_eq!(cost, t.cost(), "{name}: cost deltas sum");
        if o.result {
            live = before;
            let v: Value = serde_json::from_slice(line).expect("result is JSON");
            let mut u = Usage::default();
            for m in v["modelUsage"].as_object().expect("modelUsage").values() {
                let n = |k: &str| m[k].as_u64().unwrap_or(0);
                u += Usage::new(
                    n("inputTokens"),
                    n("outputTokens"),
                    n("cacheCreationInputTokens"),
                    n("cacheReadInputTokens"),
                );
            }
            let c = Usd::from_dollars(v["total_cost_usd"].as_f64().expect("cost"));
            claude = Some((u, c));
        }
    }
    assert_eq!(t.malformed_lines(), 0, "{name}");
    let (claude, claude_cost) = claude.unwrap_or_else(|| panic!("{name}: no result line"));
    Case {
        live: live.0,
        live_cost: live.1,
        claude,
        claude_cost,
        tracker: t,
        warnings,
    }
}

/// |live − claude| ≤ 0.1% of claude.
fn within_a_thousandth(live: Usd, claude: Usd) -> bool {
    (live.0 - claude.0).abs() * 1000 <= claude.0
}

/// Final = Claude's result exactly; last live figure within 0.1% in dollars.
fn check(name: &str) -> Case {
    let c = feed(name);
    let t = &c.tracker;
    assert_eq!(t.usage(), c.claude, "{name}: final tokens per class");
    assert_eq!(t.cost(), c.claude_cost, "{name}: final dollars");
    assert!(
        within_a_thousandth(c.live_cost, c.claude_cost),
        "{name}: live {} vs Claude {}",
        c.live_cost,
        c.claude_cost
    );
    let r = t.result().expect("result");
    assert_eq!(
        r.live_tokens_over,
        c.live.total() as i64 - c.claude.total() as i64,
        "{name}: reported live over/undershoot"
    );
    assert_eq!(r.live_cost_over, Usd(c.live_cost.0 - c.claude_cost.0));
    assert!(
        c.warnings.is_empty() || name == "unknown-model.jsonl",
        "{name}: {:?}",
        c.warnings
    );
    c
}

#[test]
fn failed_streamed_attempt_is_not_counted() {
    let c = check("sse-retry-sonnet.jsonl");
    // Two calls of 2000 in / 200 out; the failed attempt (2000 in) is not among them.
    assert_eq!(c.live, Usage::new(4000, 400, 0, 0));
    assert_eq!(c.claude, Usage::new(4000, 400, 0, 0));
    assert_eq!(c.claude_cost, Usd::from_dollars(0.018));
    assert_eq!(c.live_cost, c.claude_cost);
}

#[test]
fn sonnet_is_priced_at_three_and_fifteen() {
    let c = check("sonnet-multi-turn.jsonl");
    assert_eq!(c.live_cost, c.claude_cost);
    assert_eq!(c.claude_cost, Usd::from_dollars(0.04275));
}

#[test]
fn web_search_requests_cost_a_cent_each() {
    let c = check("web-search.jsonl");
    // 2 calls × (1000 × $3/M + 100 × $15/M + 3 × $0.01).
    assert_eq!(c.claude_cost, Usd::from_dollars(0.069));
    assert_eq!(c.live_cost, c.claude_cost);
}

#[test]
fn fast_mode_multiplies_by_the_models_factor() {
    let c = check("fast-opus-4-8.jsonl");
    assert_eq!(c.claude_cost, Usd::from_dollars(0.057));
    assert_eq!(c.live_cost, c.claude_cost);
    let c = check("fast-opus-4-6.jsonl");
    assert_eq!(c.claude_cost, Usd::from_dollars(0.0855));
    assert_eq!(c.live_cost, c.claude_cost);
}

#[test]
fn one_hour_cache_writes() {
    let c = check("cache-1h.jsonl");
    assert_eq!(c.claude_cost, Usd::from_dollars(0.102));
    assert_eq!(c.live_cost, c.claude_cost);
}

#[test]
fn message_delta_input_replaces_message_start_input() {
    let c = check("delta-input.jsonl");
    assert_eq!(c.live, Usage::new(1000, 200, 0, 0));
    assert_eq!(c.live_cost, c.claude_cost);
}

#[test]
fn subagent_on_another_model_is_counted_live_from_its_tool_result() {
    let c = check("subagent-haiku.jsonl");
    // Sonnet: 2 × (2000 in, 200 out); the Haiku subagent's only message (3000 in, 300
    // out) appears only in the Task tool's `tool_use_result.usage`.
    assert_eq!(c.live, Usage::new(7000, 700, 0, 0));
    assert_eq!(c.live_cost, c.claude_cost);
}

#[test]
fn every_model_of_the_table() {
    for name in [
        "default-model.jsonl",
        "unknown-model.jsonl",
        "opus-4-1.jsonl",
        "fable-5-1.jsonl",
        "haiku-3-5.jsonl",
        "opus-5-5.jsonl",
        "sonnet-5-5.jsonl",
        "opusplan.jsonl",
    ] {
        let c = check(name);
        assert_eq!(c.live_cost, c.claude_cost, "{name}");
        assert_eq!(c.live, c.claude, "{name}");
    }
}

#[test]
fn every_fixture_is_checked() {
    // A new capture dropped into the directory is covered too.
    for e in std::fs::read_dir(dir()).expect("fixture dir") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") {
            check(&name);
        }
    }
}
