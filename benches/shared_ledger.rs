//! The shared path of issue 12, on a real ledger file: how long a run waits for the
//! ledger when budgets are shared with other runs.
//!
//! - `claim`: an atomic admission (read every other run's use and holds in the period,
//!   check, write the hold) — once per launch of an instance counting toward a shared
//!   budget;
//! - `flush`: one 250 ms flush of a busy run — 50 changed instances written, the run's
//!   holds renewed and the other runs' figures read back.
//!
//! The ledger holds a day of history (200 runs × 25 instances) and 8 live runs with holds
//! on the same daily token and dollar budgets. `ORCHESTRATOR_BENCH_PG_URL` also measures a
//! PostgreSQL ledger (a database the benchmark may write into).

use criterion::{criterion_group, criterion_main, Criterion};
use orchestrator::core::usage::{Usage, Usd};
use orchestrator::store::postgres::PostgresStore;
use orchestrator::store::sqlite::SqliteStore;
use orchestrator::store::{
    Claim, Hold, InstanceRecord, RunRecord, ShareRequest, SharedBudget, UsageStore,
};

const DAY_MS: i64 = 86_400_000;

fn run(id: &str, started_ms: i64) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        project: "p".into(),
        host: "h".into(),
        started_ms,
        mode: "block".into(),
        budgets_json: "[]".into(),
        simulated: true,
        version: "bench".into(),
    }
}

fn instance(index: u32, tokens: u64) -> InstanceRecord {
    InstanceRecord {
        index,
        name: format!("i{index}"),
        command: format!("/cmd{} x", index % 5),
        base_command: Some(format!("/cmd{}", index % 5)),
        status: "completed".into(),
        usage: Usage::new(tokens, tokens / 10, 0, 0),
        cost: Usd(i64::try_from(tokens).unwrap_or(0) * 3000),
        ..InstanceRecord::default()
    }
}

fn budgets() -> Vec<SharedBudget> {
    [false, true]
        .into_iter()
        .map(|usd| SharedBudget {
            key: format!(
                "{} day:bench@UTC project=p",
                if usd { "usd" } else { "tokens" }
            ),
            since_ms: 0,
            until_ms: DAY_MS,
            project: Some("p".into()),
            base_command: None,
            usd,
        })
        .collect()
}

/// A day of history and 8 live runs holding reservations.
fn fill(store: &mut dyn UsageStore) {
    for r in 0..200 {
        let insts: Vec<InstanceRecord> = (0..25)
            .map(|i| instance(i, 40_000 + u64::from(i)))
            .collect();
        store
            .begin_run(&run(&format!("old{r}"), 1_000 + r), &insts)
            .expect("history");
    }
    for r in 0..8 {
        let id = format!("live{r}");
        store.begin_run(&run(&id, 50_000), &[]).expect("live");
        let holds: Vec<Hold> = budgets()
            .iter()
            .map(|b| Hold {
                key: b.key.clone(),
                amount: 10_000,
            })
            .collect();
        share(store, &id, &holds);
    }
    let insts: Vec<InstanceRecord> = (0..500).map(|i| instance(i, 0)).collect();
    store.begin_run(&run("me", 60_000), &insts).expect("me");
}

fn share(store: &mut dyn UsageStore, run_id: &str, holds: &[Hold]) {
    let b = budgets();
    store
        .share(&ShareRequest {
            run_id,
            project: "p",
            now_ms: 70_000,
            lease_until_ms: i64::MAX,
            instances: &[],
            unflushed: &[],
            holds,
            pause: None,
            budgets: &b,
        })
        .expect("share");
}

fn bench_store(c: &mut Criterion, name: &str, store: &mut dyn UsageStore) {
    fill(store);
    let mut g = c.benchmark_group(format!("shared_ledger/{name}"));
    let claims: Vec<Claim> = budgets()
        .into_iter()
        .map(|budget| Claim {
            budget,
            mine: 1,
            hold: 1,
            limit: i64::MAX,
        })
        .collect();
    g.bench_function("claim", |b| {
        b.iter(|| store.claim("me", 70_000, i64::MAX, &claims).expect("claim"))
    });
    let mut step = 0u64;
    let holds: Vec<Hold> = budgets()
        .iter()
        .map(|b| Hold {
            key: b.key.clone(),
            amount: 5_000,
        })
        .collect();
    g.bench_function("flush", |b| {
        b.iter(|| {
            step += 1;
            let batch: Vec<InstanceRecord> = (0..50)
                .map(|i| {
                    let mut r = instance(i * 10, step);
                    r.status = "running".into();
                    r
                })
                .collect();
            store.record("me", 70_000, &batch).expect("record");
            share(store, "me", &holds);
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sqlite = SqliteStore::open(&dir.path().join("ledger.sqlite")).expect("sqlite");
    bench_store(c, "sqlite", &mut sqlite);
    if let Some(url) = std::env::var("ORCHESTRATOR_BENCH_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        let mut pg = PostgresStore::open(&url).expect("postgres");
        bench_store(c, "postgres", &mut pg);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
