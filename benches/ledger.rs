//! Budget decisions per second: `Ledger::record` (every usage delta of every instance goes
//! through it, synchronously, before the next line is read) and `Ledger::admit` (before
//! each launch), on a run of 500 instances with an overall token and dollar budget and 20
//! command budgets, 25 instances per command.
//!
//! - `record`: a delta that decides nothing (the common case);
//! - `record_crossing`: the delta that crosses the overall budget in block mode and
//!   returns the terminate decision naming all 500 running instances;
//! - `admit_finish`: admitting an instance while 250 others run (every budget sums the
//!   reservations of its running members), then finishing it again.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use orchestrator::core::budget::{InstanceBudget, Ledger};
use orchestrator::core::plan::{BudgetConfig, Mode};
use orchestrator::core::usage::Usd;
use std::hint::black_box;

const INSTANCES: usize = 500;
const COMMANDS: usize = 20;

fn config(overall_tokens: u64) -> BudgetConfig {
    BudgetConfig {
        overall_tokens: Some(overall_tokens),
        overall_cost: Some(Usd::from_dollars(1e9)),
        command_tokens: (0..COMMANDS)
            .map(|c| (format!("/cmd{c}"), 1_000_000_000_000))
            .collect(),
        command_costs: Default::default(),
        mode: Mode::Block,
        warn_at_percent: 80.0,
        estimate_tokens: 1000,
        estimate_pinned: false,
    }
}

fn instances() -> Vec<InstanceBudget> {
    (0..INSTANCES)
        .map(|i| InstanceBudget {
            base_command: Some(format!("/cmd{}", i % COMMANDS)),
            max_tokens: None,
            max_cost: None,
            estimate_tokens: 1000,
            estimate_cost: Usd::from_dollars(0.01),
        })
        .collect()
}

/// A ledger with the first `running` instances admitted.
fn ledger(overall_tokens: u64, running: usize) -> Ledger {
    let mut l = Ledger::new(&config(overall_tokens), instances());
    for id in 0..running {
        black_box(l.admit(id));
    }
    l
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger");

    let mut l = ledger(1_000_000_000_000, INSTANCES);
    let mut id = 0;
    g.throughput(Throughput::Elements(1));
    g.bench_function("record", |b| {
        b.iter(|| {
            id = (id + 1) % INSTANCES;
            let d = l.record(black_box(id), 350, Usd(5_250_000));
            debug_assert!(d.is_empty());
            d
        })
    });

    // Overall budget one token short of its limit; the next delta crosses it.
    let limit = 10_000_000;
    let mut at_limit = ledger(limit, INSTANCES);
    black_box(at_limit.record(0, limit as i64, Usd(1)));
    g.bench_function("record_crossing", |b| {
        b.iter_batched_ref(
            || at_limit.clone(),
            |l| {
                let d = l.record(black_box(7), 1, Usd(1));
                assert_eq!(d.len(), 1, "one terminate decision");
                d
            },
            BatchSize::SmallInput,
        )
    });

    let mut half = ledger(1_000_000_000_000, INSTANCES / 2);
    let mut next = INSTANCES / 2;
    g.bench_function("admit_finish", |b| {
        b.iter(|| {
            next = if next + 1 < INSTANCES {
                next + 1
            } else {
                INSTANCES / 2
            };
            let a = half.admit(black_box(next));
            half.finish(next);
            a
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
