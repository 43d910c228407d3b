//! Machine-readable output: `--json` events (one JSON object per line on stdout) and the
//! `run_finished` object that `--report FILE` writes atomically. Field names follow SPEC
//! section 7; every event and field is listed in README.md ("JSON events"), and the report's
//! JSON Schema is `schema/report.schema.json`.
//!
//! Every line starts with `{"event":"…","ts":"…",` so that even a script without a JSON
//! parser can pick events out with grep.

use crate::core::budget::{Amount, Decision, Scope, Warning, WarningKind};
use crate::core::efficiency::{efficiency, Efficiency};
use crate::core::plan::{InstanceId, InstanceSpec, Plan};
use crate::core::run::{Instance, Phase, RunEvent, RunState};
use crate::core::usage::{Usage, Usd};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::runtime::pacer::{self, pause_before_poll};

/// `usage` events are coalesced to at most one per instance per this interval.
pub const USAGE_EVERY: Duration = Duration::from_millis(100);

/// How long the end of a run waits for a `--json` reader that has stopped reading before
/// it gives up on the events still queued (the wait restarts whenever a line goes out).
pub const EVENTS_STALL_LIMIT: Duration = Duration::from_secs(5);

/// Exit code when the run itself would have exited 0 but `--report` could not be written
/// (SPEC section 6: 1 is "something went wrong at run time"; 2 means nothing was launched).
pub const EXIT_REPORT_FAILED: i32 = 1;

/// While events stream in, the event writer writes at most once per this interval, so
/// that one write (and one wake-up of its thread) carries many lines. No decision waits on
/// an event being read, and every event has its own `ts`; the end of a run does not wait
/// for it (see [`QueuedWriter::finish`]). A 4 ms pace (the run loop's in block mode) cost
/// the 500-instance scale run a fifth of its CPU in wake-ups.
pub const EVENTS_EVERY: Duration = pacer::WAKE_EVERY_RELAXED;

/// The most the event writer gathers from its queue at once.
const BATCH_BYTES: usize = 1024 * 1024;
/// The event writer writes a batch in slices of at most this, counting the lines each
/// completes: a slow reader is then seen to move ([`QueuedWriter::finish`]) whenever it
/// takes this much, and the lines counted are the lines delivered.
const WRITE_SLICE: usize = 4 * 1024;

/// Where event lines go.
enum Output {
    /// Written in the caller's thread (tests, and when no thread can be started).
    Direct(Box<dyn Write + Send>),
    /// Queued to a writer thread, so that a reader that stops reading blocks only that
    /// thread: never the run loop, its timers or its signal handling.
    Queued(QueuedWriter),
}

/// A writer thread fed by an unbounded queue: no event is ever dropped, and a send never
/// blocks. It writes what is queued in batches of up to [`BATCH_BYTES`], at most once per
/// [`EVENTS_EVERY`] while events stream in, so a stream of events costs one write and one
/// wake-up per interval, not one per event.
struct QueuedWriter {
    tx: Option<std::sync::mpsc::Sender<String>>,
    /// The writer thread, woken from its pause when the queue closes.
    thread: std::thread::Thread,
    closing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Lines written so far (progress of a slow reader).
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    queued: u64,
    done: std::sync::mpsc::Receiver<()>,
}

impl QueuedWriter {
    /// Starts the thread, writing at most once per `every` while lines stream in.
    fn start(
        out: Box<dyn Write + Send>,
        every: Duration,
    ) -> Result<QueuedWriter, Box<dyn Write + Send>> {
        use std::sync::atomic::Ordering;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = written.clone();
        let closing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closed = closing.clone();
        // The writer waits in this slot: the thread takes it, and if no thread can be
        // started (process limit) the caller takes it back and writes directly.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(out)));
        let thread_slot = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                let out = thread_slot.lock().ok().and_then(|mut s| s.take());
                let Some(mut out) = out else { return };
                let mut broken = false;
                let mut batch = Vec::with_capacity(64 * 1024);
                let mut last_write: Option<Instant> = None;
                while let Ok(line) = rx.recv() {
                    // While events stream in, wait out the rest of the interval, so that
                    // one write carries many lines; a closing queue ends the wait.
                    if let Some(pause) =
                        last_write.and_then(|t| pause_before_poll(t.elapsed(), every))
                    {
                        let until = Instant::now() + pause;
                        while !closed.load(Ordering::Relaxed) {
                            let left = until.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            std::thread::park_timeout(left);
                        }
                    }
                    let mut lines = 1;
                    batch.extend_from_slice(line.as_bytes());
                    batch.push(b'\n');
                    while batch.len() < BATCH_BYTES {
                        let Ok(line) = rx.try_recv() else { break };
                        batch.extend_from_slice(line.as_bytes());
                        batch.push(b'\n');
                        lines += 1;
                    }
                    // A closed stdout (`| head`) must not stop the run: the report still
                    // gets written. Later lines are dropped unwritten.
                    let mut delivered = 0;
                    if !broken {
                        (delivered, broken) = write_sliced(&mut out, &batch, &progress);
                    }
                    // Lines dropped unwritten are done with too.
                    progress.fetch_add(lines - delivered, Ordering::Relaxed);
                    // A full batch means the writer is behind: no pause before the next.
                    let full = batch.len() >= BATCH_BYTES;
                    batch.clear();
                    last_write = (!full).then(Instant::now);
                }
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(handle) => Ok(QueuedWriter {
                tx: Some(tx),
                thread: handle.thread().clone(),
                closing,
                written,
                queued: 0,
                done,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "cannot start the event writer thread; writing events directly");
                let out = slot.lock().ok().and_then(|mut s| s.take());
                Err(out.unwrap_or_else(|| Box::new(std::io::sink())))
            }
        }
    }

    fn send(&mut self, line: String) {
        if let Some(tx) = &self.tx {
            if tx.send(line).is_ok() {
                self.queued += 1;
            }
        }
    }

    /// Closes the queue and waits until every line was written, giving up when the reader
    /// has read nothing for `stall`.
    fn finish(&mut self, stall: Duration) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        drop(tx);
        self.closing.store(true, Ordering::Relaxed);
        self.thread.unpark();
        let mut seen = self.written.load(Ordering::Relaxed);
        loop {
            match self.done.recv_timeout(stall) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let now = self.written.load(Ordering::Relaxed);
                    if now == seen {
                        return Err(format!(
                            "the --json reader on stdout has read nothing for {} s; {} of {} events were not delivered",
                            stall.as_secs(),
                            self.queued.saturating_sub(now),
                            self.queued
                        ));
                    }
                    seen = now;
                }
            }
        }
    }
}

/// Writes `batch` to `out` in slices of at most [`WRITE_SLICE`], adding the lines each
/// slice completes to `progress`: the lines delivered, and whether `out` failed.
fn write_sliced(
    out: &mut dyn Write,
    batch: &[u8],
    progress: &std::sync::atomic::AtomicU64,
) -> (u64, bool) {
    let mut delivered = 0;
    for slice in batch.chunks(WRITE_SLICE) {
        if out.write_all(slice).is_err() {
            return (delivered, true);
        }
        let lines = memchr::memchr_iter(b'\n', slice).count() as u64;
        progress.fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
        delivered += lines;
    }
    (delivered, out.flush().is_err())
}

/// Where the events go and what is needed to word them.
pub struct EventSink {
    json: bool,
    out: Output,
    /// `--report FILE`, written by [`EventSink::write_report_file`].
    report_path: Option<std::path::PathBuf>,
    /// Instance names by id, so that instance-scope budgets are named, not numbered.
    names: Vec<String>,
    /// Per instance: when its last `usage` event went out, and the tokens counted since
    /// (held back by coalescing) that the next `usage` event must carry in its `delta`.
    usage_state: Vec<UsageCoalesce>,
    /// The `run_finished` object, once the run is over.
    pub finished: Option<Value>,
}

#[derive(Debug, Default)]
struct UsageCoalesce {
    last_sent: Option<Instant>,
    pending_delta: i64,
    /// The usage and cost of the newest update that was held back.
    pending: Option<(Usage, Usd)>,
}

pub fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One event line: `{"event":…,"ts":…,` then the body's own fields (sorted), no newline.
pub fn event_line(event: &str, ts: &str, body: &Value) -> String {
    let head = format!(
        "{{\"event\":{},\"ts\":{}",
        Value::from(event),
        Value::from(ts)
    );
    match body {
        Value::Object(map) => {
            let mut rest = if map.contains_key("event") || map.contains_key("ts") {
                Value::Object(
                    map.iter()
                        .filter(|(k, _)| *k != "event" && *k != "ts")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
                .to_string()
            } else {
                body.to_string()
            };
            if rest.len() > 2 {
                // `{...}` → `,...}` appended after the head.
                rest.replace_range(..1, ",");
                head + &rest
            } else {
                head + "}"
            }
        }
        _ => head + "}",
    }
}

impl EventSink {
    /// Events on stdout when `json` is set; nothing otherwise (the report still works).
    /// Lines go through a writer thread, so a stalled reader never blocks the run.
    pub fn new(json: bool) -> EventSink {
        let mut sink = EventSink::with_writer(json, Box::new(std::io::stdout()));
        if json {
            sink.out =
                match std::mem::replace(&mut sink.out, Output::Direct(Box::new(std::io::sink()))) {
                    Output::Direct(out) => match QueuedWriter::start(out, EVENTS_EVERY) {
                        Ok(q) => Output::Queued(q),
                        Err(out) => Output::Direct(out),
                    },
                    queued => queued,
                };
        }
        sink
    }

    /// Events written directly (synchronously) to `out`.
    pub fn with_writer(json: bool, out: Box<dyn Write + Send>) -> EventSink {
        EventSink {
            json,
            out: Output::Direct(out),
            report_path: None,
            names: Vec::new(),
            usage_state: Vec::new(),
            finished: None,
        }
    }

    /// `--report FILE`: [`EventSink::write_report_file`] writes the report there.
    pub fn set_report_path(&mut self, path: Option<std::path::PathBuf>) {
        self.report_path = path;
    }

    fn write_line(&mut self, line: String) {
        match &mut self.out {
            Output::Direct(out) => {
                // A closed stdout (`| head`) must not stop the run: the report still gets
                // written.
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Output::Queued(q) => q.send(line),
        }
    }

    /// Waits (bounded, see [`EVENTS_STALL_LIMIT`]) until every queued event is written;
    /// the error says how many were not.
    pub fn finish(&mut self, stall: Duration) -> Result<(), String> {
        match &mut self.out {
            Output::Direct(out) => {
                let _ = out.flush();
                Ok(())
            }
            Output::Queued(q) => q.finish(stall),
        }
    }

    fn emit(&mut self, event: &str, body: Value) {
        if !self.json {
            return;
        }
        let line = event_line(event, &now_ts(), &body);
        self.write_line(line);
    }

    fn instance_name(&self, id: usize) -> Value {
        match self.names.get(id) {
            Some(n) => json!(n),
            None => json!(id),
        }
    }

    /// `{"scope","key","unit"}` for a budget: key is null for overall, the base command
    /// for a command budget, the instance name for an instance cap.
    fn budget_key(&self, scope: &Scope, unit: &str) -> Value {
        let key = match scope {
            Scope::Instance(i) => self.instance_name(*i),
            _ => json!(scope.key_text()),
        };
        json!({"scope": scope.kind(), "key": key, "unit": unit})
    }

    /// Writes what `event` means for scripts, and keeps the `run_finished` object.
    pub fn on_event(&mut self, event: &RunEvent, run: &RunState, now: Instant) {
        let name = |id: usize| run.name(id).to_string();
        match event {
            RunEvent::RunStarted { .. } => self.run_started(&run.plan),
            RunEvent::InstanceStarted { id, pid, argv } => self.emit(
                "instance_started",
                json!({"name": name(*id), "pid": pid, "argv": argv}),
            ),
            RunEvent::Usage { id, tokens } => {
                let p = &run.instances[*id].progress;
                self.usage_update(*id, run.name(*id), &p.usage, p.cost, *tokens, now);
            }
            RunEvent::Notice { .. } | RunEvent::InstanceKilled { .. } => {}
            RunEvent::BudgetWarning { id, warning } => {
                self.budget_warning(id.map(name).as_deref(), warning)
            }
            RunEvent::BudgetExceeded { decision, reason } => self.budget_exceeded(decision, reason),
            RunEvent::InstanceWaiting { id } => self.emit(
                "instance_waiting",
                json!({"name": name(*id), "reason": run.instances[*id].reason()}),
            ),
            RunEvent::InstanceBlocked { id } => self.emit(
                "instance_blocked",
                json!({"name": name(*id), "reason": run.instances[*id].reason()}),
            ),
            RunEvent::InstanceTerminated { id } => {
                let inst = &run.instances[*id];
                let kind = match &inst.phase {
                    Phase::Running {
                        stopping: Some(s), ..
                    } => s.why.kind(),
                    _ => "budget",
                };
                self.emit(
                    "instance_terminated",
                    json!({"name": name(*id), "reason": kind, "message": inst.reason()}),
                );
            }
            RunEvent::InstanceFinished { id } => {
                let spec = &run.plan.instances[*id];
                self.flush_usage(*id, &spec.name);
                self.emit(
                    "instance_finished",
                    instance_json(spec, &run.instances[*id], now),
                );
            }
            RunEvent::Interrupted { .. } => {}
            RunEvent::LaunchesPaused { reason, until } => {
                let (parallelism, _) = run.parallelism();
                self.emit(
                    "launches_paused",
                    json!({
                        "reason": reason,
                        "seconds": until.saturating_duration_since(now).as_secs_f64(),
                        "parallelism": parallelism,
                    }),
                );
            }
            RunEvent::InstanceRetrying {
                id,
                attempt,
                reason,
            } => self.emit(
                "instance_retrying",
                json!({"name": name(*id), "attempt": attempt, "reason": reason}),
            ),
            RunEvent::LaunchesResumed { reason } => {
                self.emit("launches_resumed", json!({"reason": reason}))
            }
            RunEvent::LaunchesStopped { reason } => {
                self.emit("launches_stopped", json!({"reason": reason}))
            }
            RunEvent::Ledger {
                unreachable: Some(error),
            } => self.emit("ledger_unreachable", json!({"error": error})),
            RunEvent::Ledger { unreachable: None } => self.emit("ledger_restored", json!({})),
            RunEvent::Parallelism { limit, reason } => self.emit(
                "parallelism_changed",
                json!({"parallelism": limit.unwrap_or(run.plan.options.max_parallel), "reduced": limit.is_some(), "reason": reason}),
            ),
            RunEvent::RunFinished => self.run_finished(run, now),
        }
    }

    /// A budget with its use: key, `limit`, `used`, `percent`, `state`.
    fn budget_json(&self, b: &crate::core::budget::BudgetStatus) -> Value {
        let mut v = self.budget_key(&b.key.scope, b.key.unit.as_str());
        v["limit"] = serde_json::to_value(b.limit).unwrap_or(Value::Null);
        v["used"] = serde_json::to_value(b.used).unwrap_or(Value::Null);
        v["percent"] = json!(percent(b.used, b.limit));
        v["state"] = json!(b.state.as_str());
        v
    }

    fn run_started(&mut self, plan: &Plan) {
        self.names = plan.instances.iter().map(|i| i.name.clone()).collect();
        let instances: Vec<Value> = plan
            .instances
            .iter()
            .map(|i| json!({"name": i.name, "command": i.command}))
            .collect();
        let body = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "instances": instances,
            "budgets": configured_budgets(plan),
            "mode": plan.budgets.mode,
            "warn_at_percent": plan.budgets.warn_at_percent,
            "simulate": plan.options.simulate,
            "run_id": plan.options.run_id,
            "project": plan.options.project,
        });
        self.emit("run_started", body);
    }

    /// A usage update of instance `id`, named `name`. Coalesced: at most one event per
    /// instance per [`USAGE_EVERY`]; a held-back update's tokens are carried in the next
    /// event's `delta` (or flushed just before `instance_finished`), so the `delta`s of an
    /// instance always add up to its final `total_tokens`.
    pub fn usage_update(
        &mut self,
        id: InstanceId,
        name: &str,
        usage: &Usage,
        cost: Usd,
        delta: i64,
        now: Instant,
    ) {
        if !self.json {
            return;
        }
        if self.usage_state.len() <= id {
            self.usage_state.resize_with(id + 1, UsageCoalesce::default);
        }
        let st = &mut self.usage_state[id];
        st.pending_delta = st.pending_delta.saturating_add(delta);
        let due = st
            .last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= USAGE_EVERY);
        if !due {
            st.pending = Some((*usage, cost));
            return;
        }
        st.last_sent = Some(now);
        st.pending = None;
        let delta = std::mem::take(&mut st.pending_delta);
        self.write_line(usage_line(&now_ts(), name, usage, cost, delta));
    }

    /// Sends a held-back `usage` event of instance `id`, named `name`, if any.
    fn flush_usage(&mut self, id: InstanceId, name: &str) {
        let Some(st) = self.usage_state.get_mut(id) else {
            return;
        };
        if let Some((usage, cost)) = st.pending.take() {
            let delta = std::mem::take(&mut st.pending_delta);
            self.write_line(usage_line(&now_ts(), name, &usage, cost, delta));
        }
    }

    /// A budget crossed its warning threshold (or, in warn mode, its limit), or an
    /// instance was admitted although its estimate does not fit. `name` is the instance
    /// whose usage or launch caused it.
    fn budget_warning(&mut self, name: Option<&str>, w: &Warning) {
        let mut body = json!({
            "budget": self.budget_key(&w.budget.scope, w.budget.unit.as_str()),
            "used": w.used,
            "limit": w.limit,
            "percent": percent(w.used, w.limit),
            "kind": match w.kind {
                WarningKind::WarnAt { .. } => "warn_at",
                WarningKind::Exceeded => "exceeded",
                WarningKind::WontFit { .. } => "wont_fit",
            },
            "message": w.to_string(),
        });
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        self.emit("budget_warning", body);
    }

    /// Block mode: a budget went past its limit; `instances` are being terminated.
    fn budget_exceeded(&mut self, d: &Decision, reason: &str) {
        if let Decision::Terminate {
            budget,
            used,
            limit,
            instances,
        } = d
        {
            let names: Vec<Value> = instances.iter().map(|&i| self.instance_name(i)).collect();
            let body = json!({
                "budget": self.budget_key(&budget.scope, budget.unit.as_str()),
                "used": used,
                "limit": limit,
                "percent": percent(*used, *limit),
                "instances": names,
                "message": reason,
            });
            self.emit("budget_exceeded", body);
        }
    }

    /// The `status` event, every `--status-report-interval`: progress, totals, each
    /// budget's use and forecast (burn rate per minute, time until it runs out) and the
    /// run's ETA. Forecasts are `null` until there is evidence (see `report::forecast`).
    pub fn status(
        &mut self,
        ledger: &crate::core::budget::Ledger,
        s: &crate::output::report::Snapshot<'_>,
    ) {
        use crate::output::report::{self, forecast};
        if !self.json {
            return;
        }
        let mut counts = serde_json::Map::new();
        for i in &s.instances {
            let n = counts
                .entry(i.status.as_str().to_string())
                .or_insert(json!(0));
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
        let as_f64 = |a: Amount| match a {
            Amount::Tokens(t) => t as f64,
            Amount::Usd(u) => u.as_dollars(),
        };
        let budgets: Vec<Value> = ledger
            .budgets()
            .iter()
            .map(|b| {
                let mut v = self.budget_json(b);
                let burn = forecast::burn(as_f64(b.used), as_f64(b.limit), s.elapsed);
                v["per_minute"] = match (burn, b.limit) {
                    (Some(f), Amount::Tokens(_)) => json!(f.per_minute.round() as u64),
                    (Some(f), Amount::Usd(_)) => {
                        json!(Usd::from_dollars(f.per_minute).as_dollars())
                    }
                    (None, _) => Value::Null,
                };
                v["runs_out_in_ms"] = match burn.and_then(|f| f.runs_out_in) {
                    Some(d) => json!(duration_ms(d)),
                    None => Value::Null,
                };
                v
            })
            .collect();
        let done = s.instances.iter().filter(|i| i.status.is_final()).count();
        let body = json!({
            "elapsed_ms": duration_ms(s.elapsed),
            "done": done,
            "total": s.instances.len(),
            "counts": counts,
            "eta_ms": report::run_eta(s).map(duration_ms),
            "totals": usage_json(&s.totals, s.total_cost),
            "budgets": budgets,
        });
        self.emit("status", body);
    }

    /// The `run_finished` object at `now` (also the `--report` file).
    fn report_value(&self, run: &RunState, now: Instant) -> Value {
        let (totals, cost) = run.totals();
        let (mut over_tokens, mut over_cost) = (0i64, Usd::ZERO);
        for r in run.instances.iter().filter_map(|i| i.result.as_ref()) {
            over_tokens = over_tokens.saturating_add(r.live_tokens_over);
            over_cost += r.live_cost_over;
        }
        let outcome = run.outcome();
        let tools: u64 = run
            .instances
            .iter()
            .map(|i| i.progress.tools)
            .fold(0, u64::saturating_add);
        let completed = run.count(crate::core::plan::Status::Completed) as u64;
        let eff = efficiency(&totals, cost, tools, completed);
        let budgets: Vec<Value> = run
            .ledger
            .budgets()
            .iter()
            .map(|b| self.budget_json(b))
            .collect();
        let instances: Vec<Value> = run
            .plan
            .instances
            .iter()
            .zip(&run.instances)
            .map(|(spec, s)| instance_json(spec, s, now))
            .collect();
        json!({
            "event": "run_finished",
            "ts": now_ts(),
            "version": env!("CARGO_PKG_VERSION"),
            "exit_code": outcome.exit.code(),
            "exit_reason": outcome.reason,
            "duration_ms": duration_ms(now.saturating_duration_since(run.started_at)),
            "mode": run.plan.budgets.mode,
            "totals": usage_json(&totals, cost),
            "live_difference": live_difference(over_tokens, over_cost),
            "efficiency": efficiency_json(&eff),
            "run_id": run.plan.options.run_id,
            "project": run.plan.options.project,
            "budgets": budgets,
            "instances": instances,
        })
    }

    /// Writes the report to `--report` (see [`EventSink::set_report_path`]), if one was
    /// asked for. Called by the executor just before `RunFinished` goes out, so that a
    /// failure becomes part of the outcome (`RunState::report_error`) that the event, the
    /// summary and the exit code then show alike.
    /// The object written is kept and becomes the `run_finished` event, so the two are
    /// identical (`ts` included).
    pub fn write_report_file(&mut self, run: &RunState, now: Instant) -> Result<(), String> {
        let Some(path) = self.report_path.clone() else {
            return Ok(());
        };
        let report = self.report_value(run, now);
        write_report(&path, &report)
            .map_err(|e| format!("cannot write --report {}: {e}", path.display()))?;
        self.finished = Some(report);
        Ok(())
    }

    fn run_finished(&mut self, run: &RunState, now: Instant) {
        // The report just written, or (none asked for, or it failed and the outcome now
        // says so) a fresh one.
        let report = match self.finished.take() {
            Some(r) => r,
            None => self.report_value(run, now),
        };
        if self.json {
            let ts = report["ts"].as_str().unwrap_or_default().to_string();
            let line = event_line("run_finished", &ts, &report);
            self.write_line(line);
        }
        self.finished = Some(report);
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// used / limit × 100, rounded to one decimal (not capped).
pub(crate) fn percent(used: Amount, limit: Amount) -> f64 {
    (used.percent_of(limit) * 10.0).round() / 10.0
}

/// `{"cache_hit_rate","tokens_per_tool_call","cost_per_completed_usd"}`, each null when
/// its denominator is zero.
pub fn efficiency_json(e: &Efficiency) -> Value {
    json!({
        "cache_hit_rate": e.cache_hit_rate,
        "tokens_per_tool_call": e.tokens_per_tool_call,
        "cost_per_completed_usd": e.cost_per_completed,
    })
}

/// The budgets a plan sets, as `run_started` lists them (and the ledger records them:
/// `store::recorded_periodic` reads the periodic ones back). A periodic budget also
/// names the zone its periods count in.
pub fn configured_budgets(plan: &Plan) -> Vec<Value> {
    let b = &plan.budgets;
    let mut out = Vec::new();
    let entry = |scope: &str, key: Value, unit: &str, limit: Value| json!({"scope": scope, "key": key, "unit": unit, "limit": limit});
    if let Some(t) = b.overall_tokens {
        out.push(entry("overall", Value::Null, "tokens", json!(t)));
    }
    if let Some(c) = b.overall_cost {
        out.push(entry("overall", Value::Null, "usd", json!(c)));
    }
    for (cmd, t) in &b.command_tokens {
        out.push(entry("command", json!(cmd), "tokens", json!(t)));
    }
    for (cmd, c) in &b.command_costs {
        out.push(entry("command", json!(cmd), "usd", json!(c)));
    }
    for p in &b.periodic {
        let limits = [
            ("tokens", p.tokens.map(|t| json!(t))),
            ("usd", p.usd.map(|c| json!(c))),
        ];
        for (unit, limit) in limits {
            if let Some(limit) = limit {
                let mut e = entry("periodic", json!(p.scope.key(p.period)), unit, limit);
                e["zone"] = json!(b.zone.name());
                out.push(e);
            }
        }
    }
    for i in &plan.instances {
        if let Some(t) = i.max_tokens {
            out.push(entry("instance", json!(i.name), "tokens", json!(t)));
        }
        if let Some(c) = i.max_cost {
            out.push(entry("instance", json!(i.name), "usd", json!(c)));
        }
    }
    out
}

/// A `usage` event line. It is by far the most frequent event, so it is serialised
/// straight from the numbers, without a `Value` tree: the same bytes as [`event_line`]
/// makes of `usage_json` plus `name` and `delta` (fields sorted).
fn usage_line(ts: &str, name: &str, u: &Usage, cost: Usd, delta: i64) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        event: &'static str,
        ts: &'a str,
        cache_creation_input_tokens: u64,
        cache_read_input_tokens: u64,
        cost_usd: Usd,
        delta: i64,
        input_tokens: u64,
        name: &'a str,
        output_tokens: u64,
        total_tokens: u64,
    }
    let line = Line {
        event: "usage",
        ts,
        cache_creation_input_tokens: u.cache_creation_input_tokens,
        cache_read_input_tokens: u.cache_read_input_tokens,
        cost_usd: cost,
        delta,
        input_tokens: u.input_tokens,
        name,
        output_tokens: u.output_tokens,
        total_tokens: u.total(),
    };
    // Serialising numbers and strings into a String cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

pub fn usage_json(u: &Usage, cost: Usd) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
        "total_tokens": u.total(),
        "cost_usd": cost,
    })
}

fn instance_json(spec: &InstanceSpec, s: &Instance, now: Instant) -> Value {
    let p = &s.progress;
    json!({
        "name": spec.name,
        "command": spec.command,
        "status": s.status(),
        "reason": s.reason(),
        "exit_code": s.exit.and_then(|e| e.code),
        "signal": s.exit.and_then(|e| e.signal),
        "usage": usage_json(&p.usage, p.cost),
        "model": p.model.as_deref().or(spec.model.as_deref()),
        "duration_ms": s.duration(now).map(duration_ms).unwrap_or(0),
        "result": s.result.as_ref().and_then(|r| r.text.as_deref()),
        "tools": p.tools,
        "malformed_lines": p.malformed_lines,
        "log_error": s.log_error,
        "live_difference": s.result.as_ref().map(|r| live_difference(r.live_tokens_over, r.live_cost_over)),
    })
}

/// How far live counting was off from Claude's `result` (positive: live counted more).
fn live_difference(tokens: i64, cost: Usd) -> Value {
    json!({"tokens": tokens, "cost_usd": cost})
}

/// Writes `value` to `path`.
///
/// A path that does not exist or is a regular file (or a symlink to one) is written
/// atomically: a new temporary file in the same directory, synced, then renamed over the
/// target, so a reader sees either no report (or the one before) or a complete one, never
/// half of one. The temporary file is removed on error.
///
/// A path that exists and is not a regular file — `/dev/null`, `/dev/stdout`, a FIFO, a
/// terminal — is never replaced: it is opened and written in place (no create, no
/// truncate), so a device stays a device. A directory or a socket is refused.
pub fn write_report(path: &Path, value: &Value) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return write_report_in_place(path, &meta, value),
        _ => {}
    }
    write_report_atomically(path, value)
}

fn report_bytes(value: &Value) -> std::io::Result<Vec<u8>> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    Ok(text)
}

/// The report into an existing special file (device, FIFO): opened for writing without
/// creating or truncating it.
fn write_report_in_place(
    path: &Path,
    meta: &std::fs::Metadata,
    value: &Value,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a directory; give a file path",
        ));
    }
    if kind.is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a socket; give a file path",
        ));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if kind.is_fifo() {
        // Without a reader, opening a FIFO for writing would block for good: O_NONBLOCK
        // makes that an error (ENXIO) instead. Writing then blocks as usual.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENXIO) {
            std::io::Error::new(e.kind(), "a FIFO with no reader")
        } else {
            e
        }
    })?;
    if kind.is_fifo() {
        set_blocking(&f)?;
    }
    f.write_all(&report_bytes(value)?)?;
    f.flush()
}

fn set_blocking(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn write_report_atomically(path: &Path, value: &Value) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.json".into());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        // create_new: never write through a file (or symlink) someone left at that name.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(&report_bytes(value)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every file system can sync a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn usage_lines_are_the_bytes_the_generic_event_writer_makes() {
        let cases = [
            ("a", Usage::new(0, 0, 0, 0), Usd::ZERO, 0),
            (
                "i0001",
                Usage::new(12, 3456, 789, 1_000_000),
                Usd::from_dollars(0.1234567),
                42,
            ),
            (
                "quote \" and \\ é ✓\n",
                Usage::new(u64::MAX / 8, 1, 2, 3),
                Usd::from_dollars(1e6),
                -5,
            ),
        ];
        for (name, usage, cost, delta) in cases {
            let mut body = usage_json(&usage, cost);
            body["name"] = json!(name);
            body["delta"] = json!(delta);
            let ts = "2026-12-06T05:00:00.123Z";
            assert_eq!(
                usage_line(ts, name, &usage, cost, delta),
                event_line("usage", ts, &body)
            );
        }
    }

    /// Takes `room` bytes, then fails.
    struct Narrow {
        room: usize,
    }

    impl Write for Narrow {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_batch_counts_as_delivered_the_lines_of_each_slice_written() {
        use std::sync::atomic::{AtomicU64, Ordering};
        // 100 lines of 100 bytes; the reader takes two slices and a bit, then is gone.
        let line = [vec![b'x'; 99], b"\n".to_vec()].concat();
        let batch = line.repeat(100);
        let progress = AtomicU64::new(0);
        let mut out = Narrow {
            room: 2 * WRITE_SLICE + 500,
        };
        assert_eq!(write_sliced(&mut out, &batch, &progress), (81, true));
        assert_eq!(
            progress.load(Ordering::Relaxed),
            81,
            "8192 bytes: 81 whole lines"
        );
        let progress = AtomicU64::new(0);
        let mut out = Narrow { room: usize::MAX };
        assert_eq!(write_sliced(&mut out, &batch, &progress), (100, false));
        assert_eq!(progress.load(Ordering::Relaxed), 100);
    }

    /// A writer thread that pauses an hour between writes while lines stream in.
    fn hour_paced_writer() -> (QueuedWriter, Captured) {
        let out = Captured::default();
        let Ok(q) = QueuedWriter::start(Box::new(out.clone()), Duration::from_secs(3600)) else {
            panic!("no writer thread");
        };
        (q, out)
    }

    /// Waits (up to 30 s, then fails) until `q` has written `n` lines.
    fn wait_written(q: &QueuedWriter, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while q.written.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "line {n} was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The end of a run does not wait out the writer's pause between writes: closing the
    /// queue wakes it.
    #[test]
    fn closing_the_queue_ends_the_writers_pause() {
        let (mut q, out) = hour_paced_writer();
        q.send(r#"{"n":1}"#.into());
        wait_written(&q, 1);
        // The writer now pauses before writing this one.
        q.send(r#"{"n":2}"#.into());
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(q.finish(Duration::from_secs(3600)));
        });
        let finished = done
            .recv_timeout(Duration::from_secs(30))
            .expect("finish waited out the writer's pause");
        assert_eq!(finished, Ok(()));
        assert_eq!(out.events(), vec![json!({"n": 1}), json!({"n": 2})]);
    }

    /// A writer that filled a whole batch is behind: it writes the next one without a
    /// pause.
    #[test]
    fn a_full_batch_is_followed_by_no_pause() {
        let (mut q, out) = hour_paced_writer();
        let big = format!(r#"{{"big":"{}"}}"#, "x".repeat(BATCH_BYTES));
        q.send(big);
        wait_written(&q, 1);
        q.send(r#"{"n":2}"#.into());
        wait_written(&q, 2);
        assert_eq!(out.events().len(), 2);
        assert_eq!(q.finish(Duration::from_secs(30)), Ok(()));
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn events(&self) -> Vec<Value> {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }
    }

    fn usage(total_input: u64) -> Usage {
        Usage {
            input_tokens: total_input,
            ..Usage::default()
        }
    }

    #[test]
    fn lines_start_with_event_and_ts() {
        let line = event_line(
            "usage",
            "2026-01-01T00:00:00.000Z",
            &json!({"b": 1, "a": [2]}),
        );
        assert_eq!(
            line,
            r#"{"event":"usage","ts":"2026-01-01T00:00:00.000Z","a":[2],"b":1}"#
        );
        let empty = event_line("x", "t", &json!({}));
        assert_eq!(empty, r#"{"event":"x","ts":"t"}"#);
        // A body that carries its own event/ts does not duplicate the keys.
        let dup = event_line("x", "t", &json!({"event": "y", "ts": "old", "k": 0}));
        assert_eq!(dup, r#"{"event":"x","ts":"t","k":0}"#);
    }

    #[test]
    fn usage_is_coalesced_but_deltas_add_up() {
        let out = Captured::default();
        let mut sink = EventSink::with_writer(true, Box::new(out.clone()));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut total = 0;
        // Ten updates 20 ms apart: only those ≥ 100 ms after the last sent one go out.
        for i in 0..10u64 {
            total += 10 + i;
            sink.usage_update(
                0,
                "a",
                &usage(total),
                Usd::ZERO,
                10 + i as i64,
                t0 + ms(20 * i),
            );
        }
        // Another instance is not held back by the first one's clock.
        sink.usage_update(1, "b", &usage(5), Usd::ZERO, 5, t0 + ms(21));
        let sent: Vec<Value> = out.events();
        let a: Vec<&Value> = sent.iter().filter(|e| e["name"] == "a").collect();
        assert_eq!(a.len(), 2, "{a:?}"); // at 0 ms and 100 ms
        assert_eq!(sent.iter().filter(|e| e["name"] == "b").count(), 1);
        sink.flush_usage(0, "a");
        let a: Vec<Value> = out
            .events()
            .into_iter()
            .filter(|e| e["name"] == "a")
            .collect();
        assert_eq!(a.len(), 3);
        let deltas: u64 = a.iter().map(|e| e["delta"].as_u64().unwrap_or(0)).sum();
        assert_eq!(deltas, total);
        assert_eq!(a[2]["total_tokens"], total);
        // Nothing held back: flushing again sends nothing.
        sink.flush_usage(0, "a");
        assert_eq!(out.events().len(), 4);
    }

    #[test]
    fn without_json_nothing_is_written() {
        let out = Captured::default();
        let mut sink = EventSink::with_writer(false, Box::new(out.clone()));
        sink.emit("instance_waiting", json!({"name": "a"}));
        sink.usage_update(0, "a", &usage(1), Usd::ZERO, 1, Instant::now());
        assert!(out.events().is_empty());
    }

    #[test]
    fn instance_budgets_are_keyed_by_name() {
        use crate::core::budget::{BudgetKey, Unit};
        let out = Captured::default();
        let mut sink = EventSink::with_writer(true, Box::new(out.clone()));
        let plan = Plan {
            instances: vec![
                InstanceSpec {
                    name: "first".into(),
                    command: "/a".into(),
                    ..InstanceSpec::default()
                },
                InstanceSpec {
                    name: "second".into(),
                    command: "/b".into(),
                    max_tokens: Some(2000),
                    ..InstanceSpec::default()
                },
            ],
            ..Plan::default()
        };
        sink.run_started(&plan);
        let key = BudgetKey {
            scope: Scope::Instance(1),
            unit: Unit::Tokens,
        };
        sink.budget_warning(
            Some("second"),
            &Warning {
                budget: key.clone(),
                used: Amount::Tokens(1700),
                limit: Amount::Tokens(2000),
                kind: WarningKind::WarnAt { percent: 80.0 },
            },
        );
        sink.budget_exceeded(
            &Decision::Terminate {
                instances: vec![1],
                budget: key,
                used: Amount::Tokens(2100),
                limit: Amount::Tokens(2000),
            },
            "instance budget exceeded: 2.1K/2.0K tokens of second",
        );
        let ev = out.events();
        assert_eq!(ev[0]["event"], "run_started");
        assert_eq!(ev[0]["budgets"][0]["key"], "second");
        assert_eq!(ev[0]["budgets"][0]["limit"], 2000);
        assert_eq!(ev[1]["event"], "budget_warning");
        assert_eq!(ev[1]["name"], "second");
        assert_eq!(ev[1]["budget"]["key"], "second");
        assert_eq!(ev[1]["kind"], "warn_at");
        assert_eq!(ev[1]["percent"], 85.0);
        assert_eq!(ev[2]["event"], "budget_exceeded");
        assert_eq!(ev[2]["budget"]["scope"], "instance");
        assert_eq!(ev[2]["budget"]["key"], "second");
        assert_eq!(ev[2]["instances"], json!(["second"]));
        assert_eq!(ev[2]["used"], 2100);
    }

    #[test]
    fn report_is_replaced_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        write_report(&path, &json!({"exit_code": 0})).expect("first");
        write_report(&path, &json!({"exit_code": 3, "x": [1, 2]})).expect("second");
        let got: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(got, json!({"exit_code": 3, "x": [1, 2]}));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.map(|e| e.file_name()).expect("entry"))
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
    }

    #[test]
    fn report_into_a_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope/r.json");
        assert!(write_report(&path, &json!({})).is_err());
        assert!(!dir.path().join("nope").exists());
    }
}
