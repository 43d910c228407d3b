//! Runs `Tracker::observe` over the inputs of benches/stream_parse.rs
//! (benches/common/stream_inputs.rs), for instruction counts, which stay exact on a busy machine where
//! criterion's times do not:
//!
//! ```text
//! cargo build --release --example observe_lines
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*Tracker*observe*' \
//!     target/release/examples/observe_lines fixtures 100     # or: big 1, big_last 1
//! ```
//!
//! Without valgrind it prints the throughput. `OBSERVE_ONLY=text` keeps only the lines
//! that contain `text`, to see what one kind of line costs.
use orchestrator::core::accounting::Tracker;
use orchestrator::core::pricing::Pricing;
use std::hint::black_box;
use std::sync::Arc;

#[path = "../benches/common/stream_inputs.rs"]
mod stream_inputs;
use stream_inputs::{fixture_lines, jsonl_lines, synthetic_lines, type_last};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "fixtures".into());
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let lines = match which.as_str() {
        "fixtures" => fixture_lines(),
        "big" => synthetic_lines(12, 4 << 20),
        "big_last" => type_last(&synthetic_lines(12, 4 << 20)),
        f if f.starts_with("file:") => jsonl_lines(&std::fs::read(&f[5..]).expect("read the file")),
        _ => panic!("fixtures | big | big_last | file:PATH"),
    };
    let lines: Vec<Vec<u8>> = match std::env::var("OBSERVE_ONLY") {
        Ok(only) => lines
            .into_iter()
            .filter(|l| l.windows(only.len()).any(|w| w == only.as_bytes()))
            .collect(),
        Err(_) => lines,
    };
    let pricing = Arc::new(Pricing::builtin());
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut total = 0;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        let mut tr = Tracker::new(pricing.clone());
        for l in &lines {
            black_box(tr.observe(black_box(l)));
        }
        assert_eq!(tr.malformed_lines(), 0);
        total += tr.total_tokens();
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "{which}: {} lines, {bytes} bytes x {reps}: {:.1} MiB/s (tokens {total})",
        lines.len(),
        (bytes * reps) as f64 / secs / (1 << 20) as f64
    );
}
