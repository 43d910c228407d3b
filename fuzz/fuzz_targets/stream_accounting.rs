//! Arbitrary bytes, split at `\n` like the line reader does, fed to
//! `accounting::Tracker::observe`. Checks what the dispatcher and the budgets rely on:
//! - no panic (overflow checks are on in fuzz builds, so arithmetic overflow panics too);
//! - the deltas of every observation sum to `total_tokens()` / `cost()` at every moment,
//!   and the token total never goes down; `usage().total()` equals `total_tokens()`;
//! - a negative cost delta only comes from a `result` line;
//! - feeding every line twice in a row gives the same totals as feeding it once (replayed
//!   stream-json events, e.g. an `assistant` event repeated, must not count twice).
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::core::accounting::Tracker;
use orchestrator::core::pricing::Pricing;
use std::sync::{Arc, OnceLock};

fn pricing() -> Arc<Pricing> {
    static P: OnceLock<Arc<Pricing>> = OnceLock::new();
    P.get_or_init(|| Arc::new(Pricing::builtin())).clone()
}

fuzz_target!(|data: &[u8]| {
    let mut once = Tracker::new(pricing());
    let mut twice = Tracker::new(pricing());
    let mut tokens: u128 = 0;
    let mut cost: i128 = 0;
    let mut last_total = 0u64;
    for line in data.split(|&b| b == b'\n') {
        let o = once.observe(line);
        tokens += u128::from(o.tokens_delta);
        cost += i128::from(o.cost_delta.0);
        assert_eq!(tokens, u128::from(once.total_tokens()), "token deltas");
        assert_eq!(cost, i128::from(once.cost().0), "cost deltas");
        assert!(once.total_tokens() >= last_total, "token total went down");
        last_total = once.total_tokens();
        assert_eq!(once.usage().total(), once.total_tokens(), "usage vs total");
        assert!(
            o.cost_delta.0 >= 0 || o.result,
            "negative cost delta from a non-result line"
        );

        twice.observe(line);
        twice.observe(line);
        assert_eq!(once.usage(), twice.usage(), "replayed line changed usage");
        assert_eq!(once.total_tokens(), twice.total_tokens());
        assert_eq!(once.cost(), twice.cost(), "replayed line changed cost");
        assert_eq!(
            once.tool_uses(),
            twice.tool_uses(),
            "replayed line changed tools"
        );
    }
});
