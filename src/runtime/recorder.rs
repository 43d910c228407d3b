//! Writes the run into the ledger while it happens, on a thread of its own (SQLite is
//! blocking; the run loop never waits for the disk).
//!
//! The recorder is one more output of the run ([`crate::output::Outputs`]): every
//! [`RunEvent`] that changes an instance's usage or status hands that instance's state
//! over ([`RecorderHandle::on_event`], non-blocking). The thread keeps the newest values
//! of every instance and writes those that changed: at once when an instance ended, and
//! otherwise at most one second after the first unwritten change — so a run killed with
//! SIGKILL loses at most its last second. Every write renews the run's heartbeat, and a
//! write (a share, below) happens at least every [`WRITE_EVERY`] whether anything changed
//! or not; a run whose heartbeat is older than 30 s reads as `abandoned`
//! (`store::STALE_AFTER_MS`).
//! [`Recorder::finish`] writes what is left and the run's end.
//!
//! A write that fails mid-run (disk full, …) is logged once and retried with the next
//! write; the run itself never stops for the ledger.
//!
//! The thread is also the run's link to the project's other runs ([`Sharing`], issues 12
//! and 14): every [`Sharing::every`] (250 ms with periodic budgets, else one second) it
//! tells the ledger this run's use,
//! renews its holds (its instances' reservations, leased for [`Sharing::lease`]) and
//! sends the other runs' figures back to the run as [`Input::Shared`], all in one
//! transaction. The instance rows themselves are still written every [`WRITE_EVERY`]
//! (and when an instance or the run ends); in between, the use they do not show yet goes
//! as [`Unflushed`] totals per base command, which the same transaction replaces when
//! it writes the rows — 500 running instances cost a few rows every 250 ms, not 500. A
//! batch of claims ([`RecorderHandle::claim`]) is carried out at once, in one
//! transaction, and answered as [`Input::Claimed`]. While the ledger cannot be reached
//! the run is told so and every change stays pending (values are absolute), so nothing
//! is lost when it comes back.

use crate::core::budget::{saturating_i64, Amount, BudgetKey};
use crate::core::plan::{InstanceId, Plan, Status};
use crate::core::run::{ClaimOf, Input, Instance, OtherRuns, RunEvent, RunState, SharedPause};
use crate::core::usage::{Usage, Usd};
use crate::store::{
    self, now_ms, Claim, Elsewhere, FleetPause, Hold, InstanceRecord, RunEnd, RunRecord,
    ShareRequest, SharedBudget, StoreError, Unflushed, UsageStore,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Changes are written at most this long after they happen.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// With budgets shared with other runs, their figures are exchanged this often.
pub const SHARE_EVERY: Duration = Duration::from_millis(250);
/// A run's holds expire this long after their last renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// Hidden: overrides [`LEASE`] (milliseconds), so tests see a killed run's holds expire
/// without waiting 30 s.
pub const LEASE_ENV: &str = "ORCHESTRATOR_LEASE_MS";

/// What a run shares with the other runs through the ledger: its periodic budgets (when
/// it has some) and its project's launch pauses.
pub struct Sharing {
    pub project: String,
    /// Each shared budget: the run's key for it and the ledger's (may be none).
    pub budgets: Vec<(BudgetKey, SharedBudget)>,
    pub lease: Duration,
    pub every: Duration,
    /// Where the run hears the ledger's answers.
    pub news: tokio::sync::mpsc::UnboundedSender<Input>,
}

/// What changes about an instance during a run.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceUpdate {
    pub index: u32,
    pub status: Status,
    pub reason: Option<String>,
    pub usage: Usage,
    pub cost: Usd,
    pub model: Option<String>,
    pub tools: u64,
    pub duration_ms: u64,
    pub session_id: Option<String>,
    pub exit_code: Option<i32>,
}

impl InstanceUpdate {
    /// The update for instance `id` in state `s` at `now`.
    pub fn of(id: InstanceId, s: &Instance, now: Instant) -> InstanceUpdate {
        let mut u = InstanceUpdate {
            index: u32::try_from(id).unwrap_or(u32::MAX),
            status: s.status(),
            reason: s.reason(),
            usage: Usage::default(),
            cost: Usd::ZERO,
            model: None,
            tools: 0,
            duration_ms: 0,
            session_id: None,
            exit_code: None,
        };
        u.refresh(s, now);
        u
    }

    /// Brings everything but the index, status and reason up to `s` at `now`, reusing
    /// this update's strings where they are unchanged.
    fn refresh(&mut self, s: &Instance, now: Instant) {
        let p = &s.progress;
        self.usage = p.usage;
        self.cost = p.cost;
        self.tools = p.tools;
        self.duration_ms = s
            .duration(now)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.exit_code = s.exit.and_then(|e| e.code);
        if self.model != p.model {
            self.model.clone_from(&p.model);
        }
        if self.session_id != p.session_id {
            self.session_id.clone_from(&p.session_id);
        }
    }
}

/// What the run loop hands to the writer thread: the newest update of each instance
/// (a newer one replaces an unwritten older one), and the end of the run.
#[derive(Default)]
struct Pending {
    updates: Vec<Option<InstanceUpdate>>,
    /// An instance ended: write now rather than at the next tick.
    urgent: bool,
    finish: Option<RunEnd>,
    /// The recorder was dropped without `finish`: write what is left and stop.
    stop: bool,
    /// This run's newest holds in the shared budgets.
    holds: Option<Vec<(BudgetKey, i128)>>,
    /// Batches of claims to carry out, in order (one transaction each).
    claims: Vec<Vec<(InstanceId, Vec<ClaimOf>)>>,
    /// A pause to tell the project's other runs about.
    pause: Option<SharedPause>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The sending side, for the run loop. An update never blocks on the disk and wakes the
/// writer only when an instance ended: the writer's own one-second tick picks up the
/// rest, so thousands of usage updates a second cost no thread switches.
#[derive(Clone)]
pub struct RecorderHandle {
    shared: Arc<Shared>,
}

impl RecorderHandle {
    /// The ledger as one more output of the run: every event that changes an instance's
    /// usage or status sends that instance's state.
    pub fn on_event(&self, event: &RunEvent, run: &RunState, now: Instant) {
        let id = match event {
            RunEvent::InstanceStarted { id, .. }
            | RunEvent::Usage { id, .. }
            | RunEvent::InstanceBlocked { id }
            | RunEvent::InstanceTerminated { id }
            | RunEvent::InstanceFinished { id } => *id,
            _ => return,
        };
        let Some(s) = run.instances.get(id) else {
            return;
        };
        // A running instance's usage, most events: the unwritten update of the same
        // instance is brought up to date in place (no strings built and dropped per
        // event).
        if matches!(event, RunEvent::Usage { .. }) && s.status() == Status::Running {
            let Ok(mut p) = self.shared.pending.lock() else {
                return;
            };
            if let Some(Some(u)) = p.updates.get_mut(id) {
                if u.status == Status::Running && u.reason.is_none() && s.reason().is_none() {
                    u.refresh(s, now);
                    return;
                }
            }
        }
        self.update(InstanceUpdate::of(id, s, now));
    }

    /// This run's holds in the shared budgets, renewed with every share.
    pub fn set_holds(&self, holds: Vec<(BudgetKey, i128)>) {
        if let Ok(mut p) = self.shared.pending.lock() {
            p.holds = Some(holds);
        }
    }

    /// Carries out a batch of claims now, in one transaction; the answer comes back as
    /// [`Input::Claimed`].
    pub fn claim(&self, batch: Vec<(InstanceId, Vec<ClaimOf>)>) {
        if let Ok(mut p) = self.shared.pending.lock() {
            p.claims.push(batch);
            p.urgent = true;
            self.shared.wake.notify_one();
        }
    }

    /// Tells the project's other runs about a pause with the next share.
    pub fn publish_pause(&self, pause: SharedPause) {
        if let Ok(mut p) = self.shared.pending.lock() {
            p.pause = Some(pause);
        }
    }

    pub fn update(&self, u: InstanceUpdate) {
        let Ok(mut p) = self.shared.pending.lock() else {
            return;
        };
        let i = u.index as usize;
        if i >= p.updates.len() {
            p.updates.resize_with(i + 1, || None);
        }
        let ended = u.status.is_final();
        p.updates[i] = Some(u);
        if ended {
            p.urgent = true;
            self.shared.wake.notify_one();
        }
    }
}

pub struct Recorder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Every instance of `plan` as first recorded: pending, nothing spent. The prompt is
/// recorded as given; `env` values never are.
pub fn initial_records(plan: &Plan) -> Vec<InstanceRecord> {
    plan.instances
        .iter()
        .enumerate()
        .map(|(i, spec)| InstanceRecord {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            name: spec.name.clone(),
            command: spec.command.clone(),
            base_command: spec.base_command().map(str::to_string),
            configured_model: configured_model(spec.model.as_deref()),
            model: spec.model.clone(),
            status: Status::Pending.as_str().to_string(),
            ..InstanceRecord::default()
        })
        .collect()
}

/// The estimate key's model: the configured model after alias normalisation.
pub fn configured_model(model: Option<&str>) -> Option<String> {
    model
        .map(crate::core::pricing::normalize)
        .filter(|m| !m.is_empty())
}

/// The run's own record at its start.
pub fn run_record(plan: &Plan, budgets_json: String) -> RunRecord {
    RunRecord {
        run_id: plan.options.run_id.clone(),
        project: plan.options.project.clone(),
        host: crate::store::host_name(),
        started_ms: now_ms(),
        mode: plan.budgets.mode.as_str().into(),
        budgets_json,
        simulated: plan.options.simulate,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

impl Recorder {
    /// Records the run's start (synchronously, so a ledger that cannot be written is
    /// known before anything launches) and starts the writer thread.
    pub fn start(
        mut store: Box<dyn UsageStore>,
        run: RunRecord,
        instances: Vec<InstanceRecord>,
        sharing: Sharing,
    ) -> Result<Recorder, StoreError> {
        store.begin_run(&run, &instances)?;
        // Before anything launches, the run knows the other runs' figures and pauses.
        let first = share(
            store.as_mut(),
            &run.run_id,
            &sharing,
            &HashMap::new(),
            None,
            Rows::default(),
        );
        tell(&sharing, first);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || write_loop(store, run.run_id, instances, sharing, &theirs))
            .map_err(|e| StoreError::Unusable(format!("cannot start its writer thread: {e}")))?;
        Ok(Recorder {
            shared,
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> RecorderHandle {
        RecorderHandle {
            shared: self.shared.clone(),
        }
    }

    /// Writes what is left and how the run ended, and waits for the thread.
    pub fn finish(mut self, end: RunEnd) {
        if let Ok(mut p) = self.shared.pending.lock() {
            p.finish = Some(end);
        }
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            if let Ok(mut p) = self.shared.pending.lock() {
                p.stop = true;
            }
            self.shared.wake.notify_one();
            let _ = t.join();
        }
    }
}

fn apply(rec: &mut InstanceRecord, u: InstanceUpdate) {
    let ended = u.status.is_final();
    if rec.status != u.status.as_str() {
        rec.status = u.status.as_str().to_string();
    }
    rec.reason = u.reason;
    rec.usage = u.usage;
    rec.cost = u.cost;
    if u.model.is_some() {
        rec.model = u.model;
    }
    rec.tool_calls = u.tools;
    rec.duration_ms = u.duration_ms;
    if u.session_id.is_some() {
        rec.session_id = u.session_id;
    }
    rec.exit_code = u.exit_code;
    if ended && rec.ended_ms.is_none() {
        rec.ended_ms = Some(now_ms());
    }
}

fn write_loop(
    mut store: Box<dyn UsageStore>,
    run_id: String,
    mut records: Vec<InstanceRecord>,
    sharing: Sharing,
    shared: &Shared,
) {
    let every = sharing.every;
    let mut dirty: BTreeSet<usize> = BTreeSet::new();
    let mut holds: HashMap<BudgetKey, i64> = HashMap::new();
    let mut last_write = Instant::now();
    let mut last_rows = last_write;
    // Each instance's tokens and nanodollars as its row last has them.
    let mut written: Vec<(i64, i64)> = records.iter().map(totals).collect();
    let mut warned = false;
    loop {
        // Wait for the tick (or a claim, an instance's end, the run's), then take
        // everything.
        let (updates, new_holds, claims, pause, finish, stop) = {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if !p.urgent && p.finish.is_none() && !p.stop {
                // The next tick (a share every `every`, changed rows or not).
                let now = Instant::now();
                let next = last_write + every;
                p = match shared
                    .wake
                    .wait_timeout(p, next.saturating_duration_since(now))
                {
                    Ok((p, _)) => p,
                    Err(_) => return,
                };
            }
            p.urgent = false;
            let updates: Vec<InstanceUpdate> =
                p.updates.iter_mut().filter_map(Option::take).collect();
            (
                updates,
                p.holds.take(),
                std::mem::take(&mut p.claims),
                p.pause.take(),
                p.finish.take(),
                p.stop,
            )
        };
        let ended = updates.iter().any(|u| u.status.is_final());
        for u in updates {
            let i = u.index as usize;
            if let Some(rec) = records.get_mut(i) {
                apply(rec, u);
                dirty.insert(i);
            }
        }
        // Holds handed over before a claim are older than it: the claim's hold wins.
        for (key, amount) in new_holds.into_iter().flatten() {
            holds.insert(key, saturating_i64(amount));
        }
        for batch in claims {
            let answer = claim(store.as_mut(), &run_id, &sharing, &batch);
            if let Ok((granted, _)) = &answer {
                for c in batch.iter().take(*granted).flat_map(|(_, c)| c) {
                    holds.insert(c.key.clone(), saturating_i64(c.hold));
                }
            }
            let ids = batch.into_iter().map(|(id, _)| id).collect();
            let _ = sharing.news.send(Input::Claimed { ids, answer });
        }
        let now = Instant::now();
        let done = finish.is_some() || stop;
        // A claim alone writes nothing: the next tick does.
        let tick = now >= last_write + every;
        if !(done || ended || tick) {
            continue;
        }
        // Every changed instance row is written every WRITE_EVERY and at the end; an
        // instance that ended, at once. In between (budgets shared every 250 ms) the use
        // the rows do not show yet goes with the share, in the same transaction, so the
        // other runs see it at once.
        let rows = done || now >= last_rows + WRITE_EVERY;
        let to_write: Vec<usize> = dirty
            .iter()
            .copied()
            .filter(|&i| rows || records[i].ended_ms.is_some())
            .collect();
        let unflushed = if rows {
            Vec::new()
        } else {
            let rest: BTreeSet<usize> = dirty
                .iter()
                .copied()
                .filter(|&i| records[i].ended_ms.is_none())
                .collect();
            unflushed_of(&records, &written, &rest)
        };
        // Moved out for the write and back after it: no copy of each record per flush.
        let batch: Vec<InstanceRecord> = to_write
            .iter()
            .map(|&i| std::mem::take(&mut records[i]))
            .collect();
        let pause = pause.map(|p| FleetPause {
            project: sharing.project.clone(),
            kind: if p.usage_limit {
                "usage_limit"
            } else {
                "backoff"
            }
            .into(),
            until_ms: p.until_ms,
            reason: p.cause,
            run_id: run_id.clone(),
        });
        let result = share(
            store.as_mut(),
            &run_id,
            &sharing,
            &holds,
            pause.as_ref(),
            Rows {
                instances: &batch,
                unflushed: &unflushed,
            },
        );
        for (&i, rec) in to_write.iter().zip(batch) {
            if result.is_ok() {
                written[i] = totals(&rec);
                dirty.remove(&i);
            }
            records[i] = rec;
        }
        match &result {
            Ok(_) => {
                if rows {
                    last_rows = now;
                }
            }
            Err(e) => {
                // Kept dirty: retried with the next write.
                if !warned {
                    tracing::warn!("cannot write to the ledger ({e}); will retry");
                    warned = true;
                }
            }
        }
        last_write = now;
        tell(&sharing, result);
        if let Some(end) = finish {
            if let Err(e) = store.finish_run(&run_id, &end) {
                tracing::warn!("cannot record the end of the run in the ledger: {e}");
            }
        }
        if done {
            if std::env::var_os(crate::app::RUSAGE_ENV).is_some() {
                print_thread_rusage();
            }
            return;
        }
    }
}

/// With [`crate::app::RUSAGE_ENV`]: this thread's own CPU time at its end (benches/scale.sh
/// prints it next to the whole process's, so the ledger's share of the run is measured
/// rather than inferred from the difference of two noisy runs).
fn print_thread_rusage() {
    if let Some((_, user, sys)) = crate::app::rusage(libc::RUSAGE_THREAD) {
        eprintln!("ledger thread rusage: user_s={user:.3} sys_s={sys:.3}");
    }
}

/// An instance's total tokens and nanodollars as its row holds them.
fn totals(r: &InstanceRecord) -> (i64, i64) {
    (i64::try_from(r.usage.total()).unwrap_or(i64::MAX), r.cost.0)
}

/// This run's use that its instance rows do not show yet (`dirty` ones differ from what
/// was `written`), per base command.
fn unflushed_of(
    records: &[InstanceRecord],
    written: &[(i64, i64)],
    dirty: &BTreeSet<usize>,
) -> Vec<Unflushed> {
    let mut out: Vec<Unflushed> = Vec::new();
    for &i in dirty {
        let (Some(r), Some(&(wt, wn))) = (records.get(i), written.get(i)) else {
            continue;
        };
        let (t, n) = totals(r);
        let (dt, dn) = (t.saturating_sub(wt), n.saturating_sub(wn));
        if dt == 0 && dn == 0 {
            continue;
        }
        match out.iter_mut().find(|u| u.base_command == r.base_command) {
            Some(u) => {
                u.tokens = u.tokens.saturating_add(dt);
                u.nanos = u.nanos.saturating_add(dn);
            }
            None => out.push(Unflushed {
                base_command: r.base_command.clone(),
                tokens: dt,
                nanos: dn,
            }),
        }
    }
    out
}

/// What a share writes of the run's instances.
#[derive(Clone, Copy, Default)]
struct Rows<'a> {
    instances: &'a [InstanceRecord],
    unflushed: &'a [Unflushed],
}

fn lease_until(sharing: &Sharing) -> i64 {
    now_ms().saturating_add(i64::try_from(sharing.lease.as_millis()).unwrap_or(i64::MAX))
}

/// Hands the ledger's answer to a share to the run.
fn tell(sharing: &Sharing, news: Result<(Vec<OtherRuns>, Vec<SharedPause>), StoreError>) {
    match news {
        Ok((others, pauses)) => {
            let _ = sharing.news.send(Input::Shared(Ok(others)));
            if !pauses.is_empty() {
                let _ = sharing.news.send(Input::Paused {
                    pauses,
                    unix_now_ms: now_ms(),
                });
            }
        }
        Err(e) => {
            let _ = sharing.news.send(Input::Shared(Err(e.to_string())));
        }
    }
}

/// The store's figures for `keys`, as the run counts them.
fn others(keys: impl Iterator<Item = BudgetKey>, e: &[Elsewhere]) -> Vec<OtherRuns> {
    keys.zip(e)
        .map(|(key, e)| OtherRuns {
            used: Amount::from_raw(key.unit, i128::from(e.used)),
            reserved: Amount::from_raw(key.unit, i128::from(e.reserved)),
            key,
        })
        .collect()
}

/// Carries out one batch of claims: answers how many, from the first, were granted.
fn claim(
    store: &mut dyn UsageStore,
    run_id: &str,
    sharing: &Sharing,
    batch: &[(InstanceId, Vec<ClaimOf>)],
) -> Result<(usize, Vec<OtherRuns>), String> {
    // Only the claims the ledger knows are asked.
    let asked: Vec<Vec<Claim>> = batch
        .iter()
        .map(|(_, claims)| {
            claims
                .iter()
                .filter_map(|c| {
                    let (_, budget) = sharing.budgets.iter().find(|(k, _)| *k == c.key)?;
                    Some(Claim {
                        budget: budget.clone(),
                        mine: saturating_i64(c.mine),
                        hold: saturating_i64(c.hold),
                        limit: saturating_i64(c.limit),
                    })
                })
                .collect()
        })
        .collect();
    let (granted, e) = store
        .claim_many(run_id, now_ms(), lease_until(sharing), &asked)
        .map_err(|e| e.to_string())?;
    // The figures come per budget in the order `claimed_budgets` gives.
    let keys = store::claimed_budgets(&asked).into_iter().filter_map(|b| {
        let (key, _) = sharing.budgets.iter().find(|(_, s)| s.key == b.key)?;
        Some(key.clone())
    });
    Ok((granted, others(keys, &e)))
}

fn share(
    store: &mut dyn UsageStore,
    run_id: &str,
    sharing: &Sharing,
    holds: &HashMap<BudgetKey, i64>,
    pause: Option<&FleetPause>,
    rows: Rows,
) -> Result<(Vec<OtherRuns>, Vec<SharedPause>), StoreError> {
    let held: Vec<Hold> = sharing
        .budgets
        .iter()
        .filter_map(|(k, b)| {
            Some(Hold {
                key: b.key.clone(),
                amount: *holds.get(k)?,
            })
        })
        .collect();
    let budgets: Vec<SharedBudget> = sharing.budgets.iter().map(|(_, b)| b.clone()).collect();
    let got = store.share(&ShareRequest {
        run_id,
        project: &sharing.project,
        now_ms: now_ms(),
        lease_until_ms: lease_until(sharing),
        instances: rows.instances,
        unflushed: rows.unflushed,
        holds: &held,
        pause,
        budgets: &budgets,
    })?;
    let pauses = got
        .pauses
        .into_iter()
        .map(|p| SharedPause {
            usage_limit: p.kind == "usage_limit",
            until_ms: p.until_ms,
            cause: p.reason,
        })
        .collect();
    Ok((
        others(
            sharing.budgets.iter().map(|(k, _)| k.clone()),
            &got.elsewhere,
        ),
        pauses,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{GroupBy, UsageQuery};

    fn plan() -> Plan {
        let mut p = Plan::default();
        p.options.run_id = "run-1".into();
        p.options.project = "proj".into();
        for i in 0..3 {
            p.instances.push(crate::core::plan::InstanceSpec {
                name: format!("i{i}"),
                command: "/a".into(),
                ..Default::default()
            });
        }
        p
    }

    /// A recorder of `plan()`'s run into the SQLite ledger at `path`, sharing `budgets`
    /// every `every`.
    fn start(
        path: &std::path::Path,
        budgets: Vec<(BudgetKey, SharedBudget)>,
        every: Duration,
    ) -> Recorder {
        let p = plan();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let sharing = Sharing {
            project: "proj".into(),
            budgets,
            lease: LEASE,
            every,
            news: tx,
        };
        let store = SqliteStore::open(path).expect("open");
        Recorder::start(
            Box::new(store),
            run_record(&p, "[]".into()),
            initial_records(&p),
            sharing,
        )
        .expect("start")
    }

    /// With budgets shared every `every`, other runs see the use at the next share,
    /// before the instance rows are written (at most a second later); at the end the
    /// rows show all of it and nothing is counted twice.
    #[test]
    fn other_runs_see_shared_use_at_the_next_share() {
        use crate::core::budget::{Scope, Unit};
        use crate::core::period::{Period, PeriodScope};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.sqlite");
        let budget = SharedBudget {
            key: "tokens day proj".into(),
            since_ms: 0,
            until_ms: i64::MAX,
            project: Some("proj".into()),
            base_command: None,
            usd: false,
        };
        let key = BudgetKey {
            scope: Scope::Periodic(Period::Day, PeriodScope::Project),
            unit: Unit::Tokens,
        };
        let r = start(
            &path,
            vec![(key, budget.clone())],
            Duration::from_millis(20),
        );
        let h = r.handle();
        let mut other = SqliteStore::open(&path).expect("open");
        let used = |other: &mut SqliteStore| {
            other
                .elsewhere("other", now_ms(), std::slice::from_ref(&budget))
                .expect("elsewhere")[0]
                .used
        };
        for (step, tokens) in [(1u64, 40u64), (2, 90)] {
            h.update(InstanceUpdate {
                index: 1,
                status: Status::Running,
                reason: None,
                usage: Usage::new(tokens, step, 0, 0),
                cost: Usd(0),
                model: None,
                tools: 0,
                duration_ms: 0,
                session_id: None,
                exit_code: None,
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while used(&mut other) != i64::try_from(tokens + step).unwrap_or(0) {
                assert!(Instant::now() < deadline, "never seen: {tokens}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        r.finish(RunEnd {
            ended_ms: now_ms(),
            exit_code: 0,
            exit_reason: "ok".into(),
        });
        assert_eq!(used(&mut other), 92);
        let g = other
            .usage(&UsageQuery::everything(GroupBy::Run))
            .expect("usage");
        assert_eq!(g[0].usage.total(), 92);
    }

    #[test]
    fn records_updates_and_the_end_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.sqlite");
        // No periodic budgets: the run still shares (its project's pauses) every second.
        let r = start(&path, Vec::new(), WRITE_EVERY);
        let h = r.handle();
        for step in 1..=100u64 {
            h.update(InstanceUpdate {
                index: 1,
                status: if step == 100 {
                    Status::Completed
                } else {
                    Status::Running
                },
                reason: None,
                usage: Usage::new(step, step, 0, 0),
                cost: Usd(i64::try_from(step).unwrap_or(0)),
                model: None,
                tools: step,
                duration_ms: step,
                session_id: Some("s".into()),
                exit_code: None,
            });
        }
        r.finish(RunEnd {
            ended_ms: now_ms(),
            exit_code: 0,
            exit_reason: "ok".into(),
        });
        let mut s = SqliteStore::open(&path).expect("reopen");
        let g = s
            .usage(&UsageQuery::everything(GroupBy::Run))
            .expect("usage");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].key, "run-1");
        assert_eq!(g[0].instances, 3);
        assert_eq!(g[0].completed, 1);
        assert_eq!(g[0].usage, Usage::new(100, 100, 0, 0));
        assert_eq!(g[0].cost, Usd(100));
        let info = g[0].run.clone().expect("run info");
        assert!(info.ended);
        assert_eq!(info.exit_code, Some(0));
    }
}
