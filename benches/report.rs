//! Rendering the human reports for 500 instances: `report::render_status` (redrawn every
//! `--status-report-interval` while the run goes on) and `report::render_summary` (once at
//! the end), plain and coloured, with an overall budget and 20 command budgets.

use criterion::{criterion_group, criterion_main, Criterion};
use orchestrator::core::budget::BudgetState;
use orchestrator::core::plan::{Mode, Status};
use orchestrator::core::usage::{Usage, Usd};
use orchestrator::output::report::{self, BudgetLine, InstanceLine, Snapshot};
use orchestrator::output::style::Styles;
use std::hint::black_box;
use std::time::Duration;

const INSTANCES: usize = 500;
const WIDTH: usize = 160;
const MAX_LINE: usize = 500;

struct Texts {
    names: Vec<String>,
    activities: Vec<String>,
    results: Vec<String>,
}

fn texts() -> Texts {
    Texts {
        names: (0..INSTANCES).map(|i| format!("instance-{i:04}")).collect(),
        activities: (0..INSTANCES)
            .map(|i| format!("Bash: cargo test --package crate-{i} -- --nocapture"))
            .collect(),
        results: (0..INSTANCES)
            .map(|i| {
                format!(
                    "Done. I worked through `/scale {i}` in 6 steps; the code is consistent \
                     and the checks pass. {}",
                    "Details follow. ".repeat(i % 40)
                )
            })
            .collect(),
    }
}

fn snapshot(t: &Texts) -> Snapshot<'_> {
    let statuses = [
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Terminated,
        Status::Waiting,
    ];
    let instances = (0..INSTANCES)
        .map(|i| {
            let status = statuses[i % statuses.len()];
            let n = i as u64;
            InstanceLine {
                name: &t.names[i],
                status,
                model: Some("claude-sonnet-4-5"),
                duration: Some(Duration::from_millis(1_000 + 37 * n)),
                usage: Usage {
                    input_tokens: 12_000 + n,
                    output_tokens: 3_000 + n,
                    cache_creation_input_tokens: 4_000,
                    cache_read_input_tokens: 90_000 + 11 * n,
                },
                cost: Usd(200_000_000 + 1_000 * i as i64),
                tools: n % 17,
                budget_percent: Some((n % 130) as f64),
                activity: Some(&t.activities[i]),
                result: (status == Status::Completed).then_some(t.results[i].as_str()),
                reason: (status == Status::Failed).then(|| "claude exited with code 1".to_string()),
                ended_ago: status.is_final().then(|| Duration::from_millis(n)),
            }
        })
        .collect();
    let mut budgets = vec![BudgetLine {
        label: "overall".into(),
        unit_is_usd: false,
        limit: 80_000_000.0,
        used: 55_000_000.0,
        state: BudgetState::Ok,
    }];
    budgets.extend((0..20).map(|c| BudgetLine {
        label: format!("/cmd{c}"),
        unit_is_usd: c % 2 == 1,
        limit: if c % 2 == 1 { 25.0 } else { 4_000_000.0 },
        used: if c % 2 == 1 {
            c as f64
        } else {
            200_000.0 * c as f64
        },
        state: if c > 15 {
            BudgetState::Warned
        } else {
            BudgetState::Ok
        },
    }));
    Snapshot {
        elapsed: Duration::from_secs(754),
        mode: Mode::Block,
        totals: Usage {
            input_tokens: 6_000_000,
            output_tokens: 1_500_000,
            cache_creation_input_tokens: 2_000_000,
            cache_read_input_tokens: 45_000_000,
        },
        total_cost: Usd::from_dollars(101.25),
        budgets,
        instances,
        visuals: true,
        starts_in: None,
        launches: None,
    }
}

fn bench(c: &mut Criterion) {
    let t = texts();
    let s = snapshot(&t);
    let mut g = c.benchmark_group("report_500");
    for (name, styles) in [("plain", Styles::plain()), ("color", Styles::colored())] {
        let status = report::render_status(&s, &styles, WIDTH, MAX_LINE);
        assert!(status.lines().count() > INSTANCES, "one row per instance");
        g.bench_function(format!("render_status_{name}"), |b| {
            b.iter(|| report::render_status(black_box(&s), &styles, WIDTH, MAX_LINE))
        });
        g.bench_function(format!("render_summary_{name}"), |b| {
            b.iter(|| {
                report::render_summary(
                    black_box(&s),
                    &styles,
                    WIDTH,
                    MAX_LINE,
                    3,
                    "a budget stopped instances: 100 terminated",
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
