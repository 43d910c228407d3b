//! Every real Claude Code transcript in tests/fixtures, fed line by line, must give the
//! totals tests/fixtures/README.md lists: live before the `result` line, final after it.

use orchestrator::core::accounting::Tracker;
use orchestrator::core::pricing::Pricing;
use orchestrator::core::usage::{Usage, Usd};
use std::path::Path;
use std::sync::Arc;

struct Run {
    before_result: Usage,
    cost_before_result: Usd,
    /// The last activity any line reported.
    last_activity: Option<String>,
    tracker: Tracker,
}

fn run(name: &str) -> Run {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut t = Tracker::new(Arc::new(Pricing::builtin()));
    let (mut tokens, mut cost) = (0i64, Usd::ZERO);
    let mut before = None;
    let mut last_activity = None;
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let snapshot = (t.usage(), t.cost());
        let o = t.observe(line);
        assert!(
            o.warning.is_none(),
            "{name}: unexpected warning {:?}",
            o.warning
        );
        if o.activity.is_some() {
            last_activity = o.activity.clone();
        }
        if o.result && before.is_none() {
            before = Some(snapshot);
        }
        tokens += o.tokens_delta;
        cost += o.cost_delta;
        assert_eq!(
            tokens,
            t.total_tokens() as i64,
            "{name}: deltas sum to the total"
        );
        assert_eq!(cost, t.cost(), "{name}: cost deltas sum to the cost");
    }
    assert_eq!(t.malformed_lines(), 0, "{name}");
    let (before_result, cost_before_result) = before.unwrap_or((t.usage(), t.cost()));
    Run {
        before_result,
        cost_before_result,
        last_activity,
        tracker: t,
    }
}

/// Live cost of Opus 4.8 at $5 / $25 / $6.25 / $0.50 per Mtok, in nanodollars.
fn opus_4_8(u: Usage) -> Usd {
    let nanos = u.input_tokens * 5_000
        + u.output_tokens * 25_000
        + u.cache_creation_input_tokens * 6_250
        + u.cache_read_input_tokens * 500;
    Usd(nanos as i64)
}

#[test]
fn single_turn_cache() {
    let r = run("single-turn-cache.jsonl");
    assert_eq!(r.before_result, Usage::new(1200, 1, 300, 4000));
    assert_eq!(r.before_result.total(), 5501);
    assert_eq!(r.cost_before_result, opus_4_8(r.before_result));
    let t = &r.tracker;
    assert_eq!(t.usage(), Usage::new(1200, 57, 300, 4000));
    assert_eq!(t.total_tokens(), 5557);
    assert_eq!(t.cost(), Usd::from_dollars(0.0113));
    assert_eq!(t.model(), Some("claude-opus-4-8[1m]"));
    assert_eq!(t.session_id(), Some("bc5f971c-8691-4277-af44-497fdf1b3861"));
    let res = t.result().expect("result");
    assert_eq!(res.subtype, "success");
    assert!(!res.is_error);
    assert_eq!(res.text.as_deref(), Some("turn 1 of 1."));
    assert_eq!(res.num_turns, Some(1));
}

#[test]
fn multi_turn_tools() {
    let r = run("multi-turn-tools.jsonl");
    assert_eq!(r.before_result, Usage::new(6000, 3, 0, 0));
    assert_eq!(r.before_result.total(), 6003);
    assert_eq!(r.cost_before_result, opus_4_8(r.before_result));
    let t = &r.tracker;
    assert_eq!(t.usage(), Usage::new(6000, 900, 0, 0));
    assert_eq!(t.total_tokens(), 6900);
    assert_eq!(t.cost(), Usd::from_dollars(0.0525));
    assert_eq!(t.tool_uses(), 2);
    assert_eq!(r.last_activity.as_deref(), Some("Bash: echo step2"));
}

#[test]
fn multi_turn_partial() {
    let r = run("multi-turn-partial.jsonl");
    assert_eq!(r.before_result, Usage::new(7500, 1260, 0, 4500));
    assert_eq!(r.before_result.total(), 13260);
    assert_eq!(r.cost_before_result, opus_4_8(r.before_result));
    let t = &r.tracker;
    assert_eq!(t.usage(), Usage::new(7500, 1260, 0, 4500));
    assert_eq!(t.total_tokens(), 13260);
    assert_eq!(t.cost(), Usd::from_dollars(0.07125));
    assert_eq!(t.result().map(|r| r.num_turns), Some(Some(3)));
}

#[test]
fn killed_midway_has_only_live_numbers() {
    let r = run("killed-midway.jsonl");
    let t = &r.tracker;
    assert!(t.result().is_none());
    assert_eq!(t.usage(), Usage::new(6000, 601, 0, 0));
    assert_eq!(t.total_tokens(), 6601);
    // 6000 × $5/M + 601 × $25/M.
    assert_eq!(t.cost(), Usd(45_025_000));
    assert_eq!(t.tool_uses(), 3);
    assert_eq!(r.last_activity.as_deref(), Some("Bash: echo step3"));
}
