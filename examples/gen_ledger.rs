//! Writes a synthetic usage ledger for benchmarks (benches/usage.sh): RUNS runs of
//! PER_RUN instances each, started over the last 30 days, across 5 projects, 20 slash
//! commands plus free text, and 3 models; about 90% of instances completed.
//!
//! Usage: cargo run --release --example gen_ledger -- PATH [RUNS=10000] [PER_RUN=100]

use orchestrator::core::usage::{Usage, Usd};
use orchestrator::store::sqlite::SqliteStore;
use orchestrator::store::{now_ms, InstanceRecord, RunEnd, RunRecord, UsageStore};

/// A small deterministic generator (xorshift64*), so every ledger is the same.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: gen_ledger PATH [RUNS] [PER_RUN]");
        std::process::exit(2);
    };
    let runs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let per_run: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut store = match SqliteStore::open(std::path::Path::new(path)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gen_ledger: {path}: {e}");
            std::process::exit(1);
        }
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let now = now_ms();
    let models = ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"];
    for r in 0..runs {
        let started_ms = now - i64::try_from(rng.below(30 * 86_400_000)).unwrap_or(0);
        let run = RunRecord {
            run_id: format!("{:08x}-0000-4000-8000-{:012x}", r, rng.below(1 << 48)),
            project: format!("project-{}", rng.below(5)),
            host: "bench".into(),
            started_ms,
            mode: "warn".into(),
            budgets_json: "[]".into(),
            simulated: false,
            version: "bench".into(),
        };
        let instances: Vec<InstanceRecord> = (0..per_run)
            .map(|i| {
                let c = rng.below(21);
                let command = if c == 20 {
                    "fix the bug".to_string()
                } else {
                    format!("/cmd{c} arg")
                };
                let model = models[rng.below(3) as usize].to_string();
                let input = 1000 + rng.below(20_000);
                let output = 200 + rng.below(5000);
                let write = rng.below(10_000);
                let read = rng.below(60_000);
                let completed = rng.below(10) != 0;
                InstanceRecord {
                    index: i,
                    name: format!("i{i:03}"),
                    base_command: orchestrator::core::plan::base_command(&command)
                        .map(str::to_string),
                    command,
                    configured_model: Some(model.clone()),
                    model: Some(model),
                    status: if completed { "completed" } else { "failed" }.into(),
                    usage: Usage::new(input, output, write, read),
                    cost: Usd(i64::try_from(rng.below(500_000_000)).unwrap_or(0)),
                    duration_ms: rng.below(600_000),
                    tool_calls: rng.below(40),
                    ended_ms: Some(started_ms + 60_000),
                    ..InstanceRecord::default()
                }
            })
            .collect();
        let end = RunEnd {
            ended_ms: started_ms + 600_000,
            exit_code: 0,
            exit_reason: "all completed".into(),
        };
        if let Err(e) = store
            .begin_run(&run, &instances)
            .and_then(|()| store.finish_run(&run.run_id, &end))
        {
            eprintln!("gen_ledger: {path}: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "{path}: {runs} runs, {} instance records",
        runs * u64::from(per_run)
    );
}
