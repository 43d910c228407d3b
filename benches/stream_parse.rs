//! Throughput of `accounting::Tracker::observe` (parsing included), in bytes of stdout.
//!
//! SPEC §10 asks for ≥ 300 MB/s on one core. Three inputs:
//! - `fixtures`: the real transcripts in tests/fixtures, concatenated;
//! - `big_tool_results`: a synthetic session whose `user` lines carry multi-MB tool results
//!   (twice, as Claude Code does: `message.content` and `tool_use_result`), plus a large
//!   `Write` tool input, which is where a naive parser spends its time;
//! - `big_tool_results_type_last`: the same with `"type"` moved to the end of every line,
//!   which defeats the fast type sniff and takes the generic path.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use orchestrator::core::accounting::Tracker;
use orchestrator::core::pricing::Pricing;
use std::hint::black_box;
use std::sync::Arc;

#[path = "common/stream_inputs.rs"]
mod stream_inputs;
use stream_inputs::{fixture_lines, synthetic_lines, type_last};

fn bench(c: &mut Criterion) {
    let pricing = Arc::new(Pricing::builtin());
    let inputs = {
        let synthetic = synthetic_lines(12, 4 << 20);
        let last = type_last(&synthetic);
        assert_eq!(
            last.len(),
            synthetic.len(),
            "every synthetic line rewritten"
        );
        [
            ("fixtures", fixture_lines()),
            ("big_tool_results", synthetic),
            ("big_tool_results_type_last", last),
        ]
    };
    let mut g = c.benchmark_group("observe");
    for (name, lines) in &inputs {
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut t = Tracker::new(pricing.clone());
                for l in lines {
                    black_box(t.observe(black_box(l)));
                }
                assert_eq!(t.malformed_lines(), 0);
                t.total_tokens()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
