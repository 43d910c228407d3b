//! The executor of a run: one `select!` loop that turns what happens (a child's output
//! or exit, a timer, a signal) into [`Input`]s for the pure [`RunState`], and carries out
//! the [`Effect`]s it returns — spawning, signalling, and handing every [`RunEvent`] to
//! the outputs. No run logic lives here.
//!
//! Each running instance has a supervising task (`supervise`) that reads its stdout,
//! feeds every line to its own `accounting::Tracker` and sends the resulting usage
//! deltas here. A delta that could reach a budget threshold waits for this loop's
//! acknowledgement before the task reads the next line, so the budget decision is taken
//! — and a terminate signal sent straight to the process group — before anything else
//! of that instance is read. Deltas far from any threshold do not wait: each task holds
//! a credit (`core::credit`), its share of the room left below its budgets' nearest
//! thresholds, and passes on without waiting what that credit covers (the covered lines
//! of one read as one message, `Held`).

use crate::core::accounting::{Observation, Tracker};
use crate::core::credit::{Credit, Credits};
use crate::core::exit::Interrupt;
use crate::core::plan::InstanceId;
use crate::core::pricing::{Calibration, Pricing};
use crate::core::run::{Effect, Ended, Input, Observed, Outcome, Progress, RunEvent, RunState};
use crate::core::usage::Usd;
use crate::output::Outputs;
use crate::runtime::process::{self, GroupHandle, LaunchSpec, LineReader};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

/// Activity shown for an instance whose Claude is stopped (SIGSTOP, SIGTTIN, …).
const STOPPED_ACTIVITY: &str =
    "stopped by a signal (SIGCONT continues it; --timeout still ends it)";

/// Bytes of each instance's stderr kept for the summary.
const STDERR_TAIL: usize = 8 * 1024;

/// Once Claude has exited, its process group is SIGKILLed (`process::Child::wait`), so
/// everything it wrote is already in the pipes. A pipe that stays open after that is held
/// by a process that left the group (`setsid`), which no group signal reaches: stop
/// reading once the pipe has been quiet for `POST_EXIT_IDLE`, and at most `POST_EXIT_MAX`
/// after the exit, rather than wait for an EOF that may never come.
const POST_EXIT_IDLE: Duration = Duration::from_secs(1);
const POST_EXIT_MAX: Duration = Duration::from_secs(10);

/// A message from a supervising task.
enum Msg {
    Observed {
        id: InstanceId,
        observed: Observed,
        /// `None`: the delta was paid from the task's credit and nobody waits for it.
        ack: Option<oneshot::Sender<()>>,
    },
    Exited {
        id: InstanceId,
        ended: Ended,
    },
    /// The supervising task itself failed (panicked): its process is killed and the
    /// instance ends as failed, so the run never waits for news that cannot come.
    TaskFailed {
        id: InstanceId,
        reason: String,
    },
}

pub struct Dispatcher {
    state: RunState,
    pricing: Arc<Pricing>,
    /// Per-model price corrections learnt from Claude's `costUSD`, shared by every
    /// instance's tracker for the whole run (issue 10).
    calibration: Calibration,
    /// Launcher: (program, leading args) — `claude`, or this binary in simulated mode.
    program: (PathBuf, Vec<OsString>),
    /// Process groups of running instances: a handle exists only while one runs.
    groups: Vec<Option<GroupHandle>>,
    outputs: Outputs,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// HOOK(hardening): `--log-dir` file stems by instance.
    log_stems: Vec<String>,
    /// The book of credit handed to supervising tasks, and the credit each running
    /// instance's task holds (shared with it).
    credits: Credits,
    cells: Vec<Option<Arc<CreditCell>>>,
    /// `Ledger::elsewhere_changes` when credit was last recomputed.
    credits_elsewhere: u64,
    /// The ledger's answers about budgets shared with other runs (`runtime::recorder`).
    news: Option<mpsc::UnboundedReceiver<Input>>,
}

/// The credit one supervising task holds: it pays from it, the dispatcher adds to it and
/// takes it back. A lock held for a few instructions, never across an await.
#[derive(Debug, Default)]
pub struct CreditCell(Mutex<Credit>);

impl CreditCell {
    /// Pays `delta` when the credit covers it (the task then need not wait).
    fn pay(&self, delta: Credit) -> bool {
        self.0.lock().map(|mut c| c.pay(delta)).unwrap_or(false)
    }

    fn add(&self, more: Credit) {
        if let Ok(mut c) = self.0.lock() {
            *c = c.plus(more);
        }
    }

    /// Takes back what is left unspent.
    fn take(&self) -> Credit {
        self.0
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

impl Dispatcher {
    pub fn new(
        state: RunState,
        pricing: Arc<Pricing>,
        program: (PathBuf, Vec<OsString>),
        outputs: Outputs,
    ) -> Dispatcher {
        let n = state.instances.len();
        let (tx, rx) = mpsc::channel(256);
        let log_stems = crate::runtime::logs::assign_stems(
            state.plan.instances.iter().map(|i| i.name.as_str()),
        );
        Dispatcher {
            log_stems,
            credits: Credits::new(&state.ledger, n),
            cells: (0..n).map(|_| None).collect(),
            credits_elsewhere: state.ledger.elsewhere_changes(),
            state,
            pricing,
            calibration: Calibration::new(),
            program,
            groups: (0..n).map(|_| None).collect(),
            outputs,
            tx,
            rx,
            news: None,
        }
    }

    /// The run shares budgets with other runs: the ledger's answers arrive here.
    pub fn with_news(mut self, news: mpsc::UnboundedReceiver<Input>) -> Dispatcher {
        self.news = Some(news);
        self
    }

    /// Runs every instance to an end; returns the outcome and the `run_finished` report.
    pub async fn run(mut self) -> (Outcome, Option<serde_json::Value>) {
        let mut sigint = signal(SignalKind::interrupt()).ok();
        let mut sigterm = signal(SignalKind::terminate()).ok();
        let mut sighup = signal(SignalKind::hangup()).ok();
        let mut sigtstp = signal(SignalKind::from_raw(libc::SIGTSTP)).ok();
        let interval = self.state.plan.options.status_interval;
        let mut tick = tokio::time::interval(if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            interval
        });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.reset();
        // Live view (terminal only): a fast refresh whose first tick draws at once, and a
        // redraw on SIGWINCH. The console decides what each tick draws.
        let live = self.outputs.console.is_live() && !interval.is_zero();
        let mut live_tick = tokio::time::interval(crate::output::terminal::LIVE_REFRESH);
        live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sigwinch = if live {
            signal(SignalKind::window_change()).ok()
        } else {
            None
        };

        let delay = match self.state.plan.options.start_at {
            Some(at) => (at - chrono::Local::now()).to_std().unwrap_or_default(),
            None => Duration::ZERO,
        };
        // What the ledger said before the start (other runs' figures and pauses) counts
        // for the first launches.
        while let Some(input) = self.news.as_mut().and_then(|rx| rx.try_recv().ok()) {
            self.step(input);
        }
        let unix_now = chrono::Utc::now().timestamp();
        self.step(Input::Start { delay, unix_now });
        while !self.state.is_finished() {
            let wake = self
                .state
                .next_wake()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = recv_signal(&mut sigint) => self.step(Input::Interrupt(Interrupt::Int)),
                _ = recv_signal(&mut sigterm) => self.step(Input::Interrupt(Interrupt::Term)),
                _ = recv_signal(&mut sighup) => self.step(Input::Interrupt(Interrupt::Hup)),
                _ = recv_signal(&mut sigtstp) => self.suspend(),
                Some(msg) = self.rx.recv() => {
                    self.on_msg(msg);
                    // What else the tasks sent meanwhile, without a turn of this loop
                    // (and a new timer) for each message.
                    while !self.state.is_finished() {
                        let Ok(msg) = self.rx.try_recv() else { break };
                        self.on_msg(msg);
                    }
                }
                Some(input) = recv_news(&mut self.news) => {
                    self.step(input);
                    if let Some(r) = &self.outputs.recorder {
                        r.set_holds(self.state.holds());
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => self.step(Input::Tick),
                _ = tick.tick(), if !interval.is_zero() => {
                    self.mark_stopped();
                    self.outputs.status(&self.state, Instant::now());
                }
                _ = live_tick.tick(), if live => {
                    self.outputs.live_tick(&self.state, Instant::now(), false);
                }
                _ = recv_signal(&mut sigwinch) => {
                    self.outputs.live_tick(&self.state, Instant::now(), true);
                }
            }
        }
        // HOOK(hardening): queued `--json` events are flushed, bounded.
        if let Err(e) = self
            .outputs
            .events
            .finish(crate::output::events::EVENTS_STALL_LIMIT)
        {
            self.outputs.console.error(&e);
        }
        let outcome = self.state.outcome();
        (outcome, self.outputs.events.finished.take())
    }

    /// HOOK(hardening): a running instance whose Claude is stopped by a signal is shown as
    /// such (state: the running instances' groups; effect: their activity text).
    fn mark_stopped(&mut self) {
        for (id, group) in self.groups.iter().enumerate() {
            let Some(g) = group else { continue };
            let inst = &mut self.state.instances[id];
            if g.stopped() {
                inst.activity = Some(STOPPED_ACTIVITY.into());
            } else if inst.activity.as_deref() == Some(STOPPED_ACTIVITY) {
                inst.activity = None;
            }
        }
    }

    /// Feeds `input` to the run and carries out what it asks, including the inputs
    /// that carrying it out produces (a spawn's result).
    fn step(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = Instant::now();
            for effect in self.state.handle(input, now) {
                match effect {
                    Effect::Spawn(id) => inputs.push_back(self.spawn(id)),
                    Effect::Terminate(id) => {
                        if let Some(g) = &self.groups[id] {
                            g.terminate();
                            tracing::debug!(instance = %self.state.name(id), pgid = g.pgid(), "SIGTERM sent");
                        }
                    }
                    Effect::Kill(id) => {
                        if let Some(g) = &self.groups[id] {
                            g.kill();
                            tracing::debug!(instance = %self.state.name(id), pgid = g.pgid(), "SIGKILL sent");
                        }
                    }
                    Effect::Claim { batch } => match &self.outputs.recorder {
                        Some(r) => r.claim(batch),
                        None => inputs.push_back(Input::Claimed {
                            ids: batch.into_iter().map(|(id, _)| id).collect(),
                            answer: Err("no ledger".into()),
                        }),
                    },
                    Effect::Publish(pause) => {
                        if let Some(r) = &self.outputs.recorder {
                            r.publish_pause(pause);
                        }
                    }
                    Effect::Emit(event) => {
                        if let RunEvent::InstanceFinished { id } = event {
                            self.groups[id] = None;
                        }
                        // HOOK(hardening): the report is written just before
                        // RunFinished, and a failure becomes part of the outcome that
                        // the event, the summary and the exit code show.
                        if let RunEvent::RunFinished = event {
                            if let Err(e) = self.outputs.events.write_report_file(&self.state, now)
                            {
                                self.outputs.console.error(&e);
                                self.state.report_error = Some(e);
                            }
                        }
                        self.outputs.emit(&event, &self.state, now);
                    }
                }
            }
        }
        if self.state.ledger.elsewhere_changes() != self.credits_elsewhere {
            self.recompute_credits();
        }
    }

    /// Takes back the credit of every running instance and shares out the room again.
    /// Needed whenever the ledger's use changes for reasons other than the instances'
    /// own deltas (use recorded elsewhere: `Ledger::set_elsewhere`); `step` calls it
    /// when it sees such a change.
    pub fn recompute_credits(&mut self) {
        self.credits_elsewhere = self.state.ledger.elsewhere_changes();
        let ids: Vec<InstanceId> = (0..self.cells.len())
            .filter(|&id| self.cells[id].is_some())
            .collect();
        for &id in &ids {
            self.revoke(id);
        }
        for &id in &ids {
            self.grant(id);
        }
    }

    /// A delta that was not paid from credit is in the ledger: the credit still held
    /// toward its budgets may no longer fit below their thresholds. Takes it back where
    /// it does not, and gives `id` its new share.
    fn rebalance(&mut self, id: InstanceId) {
        let over = self.credits.overdrawn(&self.state.ledger, Some(id));
        for &other in &over {
            self.revoke(other);
        }
        for &other in &over {
            if other != id {
                self.grant(other);
            }
        }
        self.grant(id);
    }

    fn grant(&mut self, id: InstanceId) {
        if let Some(cell) = &self.cells[id] {
            cell.add(self.credits.grant(&self.state.ledger, id));
        }
    }

    fn revoke(&mut self, id: InstanceId) {
        if let Some(cell) = &self.cells[id] {
            let unspent = cell.take();
            self.credits.returned(&self.state.ledger, id, unspent);
        }
    }

    /// The instance's task is gone: nothing it holds can be spent any more.
    fn end_credit(&mut self, id: InstanceId) {
        if let Some(cell) = self.cells[id].take() {
            drop(cell);
            let held = self.credits.held(id);
            self.credits.returned(&self.state.ledger, id, held);
        }
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Observed {
                id,
                mut observed,
                ack,
            } => {
                // HOOK(hardening): configured `env` values never reach a report.
                let spec = &self.state.plan.instances[id];
                observed.line.activity = observed.line.activity.map(|a| redact_env(spec, &a));
                observed.line.warning = observed.line.warning.map(|w| redact_env(spec, &w));
                let delta = Credit::of(observed.line.tokens_delta, observed.line.cost_delta);
                self.step(Input::Observed { id, observed });
                match ack {
                    None => self.credits.paid(&self.state.ledger, id, delta),
                    Some(ack) => {
                        self.rebalance(id);
                        let _ = ack.send(());
                    }
                }
            }
            Msg::Exited { id, mut ended } => {
                // HOOK(hardening): configured `env` values are redacted from every text
                // captured from the instance; an incomplete log is warned about once.
                let spec = &self.state.plan.instances[id];
                ended.stderr_tail = redact_env(spec, &ended.stderr_tail);
                if let Some(r) = ended.result.as_mut() {
                    r.text = r.text.as_deref().map(|t| redact_env(spec, t));
                }
                ended.error = ended.error.map(|e| redact_env(spec, &e));
                if let Some(e) = &ended.log_error {
                    let msg = format!("{}: its log is incomplete: {e}", spec.name);
                    self.outputs.console.warn(&msg);
                }
                self.end_credit(id);
                self.step(Input::Exited { id, ended })
            }
            Msg::TaskFailed { id, reason } => {
                tracing::error!(instance = %self.state.name(id), %reason, "supervising task failed");
                if let Some(g) = &self.groups[id] {
                    g.kill();
                }
                let ended = Ended {
                    error: Some(format!("its supervising task failed: {reason}")),
                    ..Ended::default()
                };
                self.end_credit(id);
                self.step(Input::Exited { id, ended });
            }
        }
    }

    /// Ctrl-Z: stop every instance's group, then the orchestrator itself, the way a shell
    /// stops a job; on SIGCONT continue them. Budgets cannot be enforced while we are
    /// stopped, so nothing may keep spending meanwhile.
    fn suspend(&mut self) {
        let groups: Vec<u32> = self
            .groups
            .iter()
            .flatten()
            .map(GroupHandle::pgid)
            .collect();
        for &g in &groups {
            let _ = process::kill_group(g, libc::SIGSTOP);
        }
        self.outputs.console.clear_live();
        tracing::debug!(
            groups = groups.len(),
            "SIGTSTP: instances stopped, stopping"
        );
        // SAFETY: raise only sends a signal to this process.
        unsafe { libc::raise(libc::SIGSTOP) };
        // Continued (SIGCONT).
        for &g in &groups {
            let _ = process::kill_group(g, libc::SIGCONT);
        }
        tracing::debug!("SIGCONT: instances continued");
    }

    /// Starts instance `id`; the answer is the run's next input.
    fn spawn(&mut self, id: InstanceId) -> Input {
        let spec = &self.state.plan.instances[id];
        let resume = self.state.instances[id].resume.as_deref();
        let (program, lead) = &self.program;
        let mut args = lead.clone();
        args.extend(
            crate::runtime::launch::claude_args_resuming(spec, resume)
                .into_iter()
                .map(OsString::from),
        );
        let launch = LaunchSpec {
            program: program.clone(),
            args,
            cwd: spec.workspace.clone(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let mut argv = vec![launch.program.to_string_lossy().into_owned()];
        argv.extend(launch.args.iter().map(|a| a.to_string_lossy().into_owned()));
        tracing::debug!(instance = %spec.name, ?argv, "launching");
        match process::spawn(&launch) {
            Ok((child, stdout, stderr)) => {
                let pid = child.pid();
                self.groups[id] = Some(child.group());
                let logs = self.log_paths(id);
                let tracker =
                    Tracker::with_calibration(self.pricing.clone(), self.calibration.clone());
                let cell = Arc::new(CreditCell::default());
                let name = spec.name.clone();
                // A previous process of the instance (a retry) has ended: its credit too.
                self.end_credit(id);
                self.cells[id] = Some(cell.clone());
                self.grant(id);
                let task = tokio::spawn(supervise(
                    id,
                    name,
                    child,
                    (stdout, stderr),
                    tracker,
                    (self.tx.clone(), cell),
                    logs,
                ));
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = task.await {
                        let reason = match e.try_into_panic() {
                            Ok(p) => p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "panicked".into()),
                            Err(e) => e.to_string(),
                        };
                        let _ = tx.send(Msg::TaskFailed { id, reason }).await;
                    }
                });
                Input::Spawned { id, pid, argv }
            }
            Err(e) => Input::SpawnFailed {
                id,
                error: e.to_string(),
            },
        }
    }

    fn log_paths(&self, id: InstanceId) -> Option<(PathBuf, PathBuf)> {
        let dir = self.state.plan.options.log_dir.as_ref()?;
        // HOOK(hardening): stems assigned once for the whole run (distinct, see
        // logs::assign_stems); app.rs removed stale files at these names before the run.
        let stem = self.log_stems.get(id)?;
        Some(crate::runtime::logs::paths(dir, stem))
    }
}

/// `text` without any of the instance's configured `env` values (core::text::redact).
fn redact_env(spec: &crate::core::plan::InstanceSpec, text: &str) -> String {
    crate::core::text::redact(text, spec.env.values().map(String::as_str))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Reads one instance's output to the end, accounting each line, and reports its exit.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    id: InstanceId,
    name: String,
    mut child: process::Child,
    (stdout, stderr): (process::ChildStdout, process::ChildStderr),
    mut tracker: Tracker,
    (tx, credit): (mpsc::Sender<Msg>, Arc<CreditCell>),
    logs: Option<(PathBuf, PathBuf)>,
) {
    // HOOK(hardening): log files are created exclusively with plain calls (no
    // spawn_blocking that could panic); their first error is reported in `Ended`.
    let (mut out_log, err_log) = match &logs {
        Some((o, e)) => (
            Some(crate::runtime::logs::LogFile::create(o)),
            Some(crate::runtime::logs::LogFile::create(e)),
        ),
        None => (None, None),
    };
    let mut stderr_task = tokio::spawn(process::drain_stderr(stderr, STDERR_TAIL, err_log));
    let mut reader = LineReader::of_pipe(stdout, child.stdout_capacity());
    let mut held = Held::default();
    let mut exit = None;
    let mut read_error = None;
    let mut sent_model: Option<String> = None;
    let mut exited_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    {
        // One wait future for the whole loop: a new one per line would cost a waitid(2)
        // and a timer on every stdout line. `Child::wait` caches the exit, so waiting again
        // below after the loop is still right.
        let mut wait = std::pin::pin!(child.wait());
        loop {
            tokio::select! {
                // Biased: the exit is noticed (and the group killed) even while output keeps
                // coming, and buffered output always wins over the post-exit deadline.
                biased;
                e = &mut wait, if exit.is_none() => {
                    // What follows an exit (the last output, the end of the pipes, the
                    // run's bookkeeping) is not paced: the run ends as soon as it can.
                    crate::runtime::pacer::hurry();
                    exit = Some(e);
                    let now = Instant::now();
                    exited_at = Some(now);
                    drain_until = Some(now + POST_EXIT_IDLE);
                }
                line = reader.next_line() => match line {
                    Ok(Some(line)) => {
                        if let Some(f) = out_log.as_mut() {
                            f.write(&[line, b"\n"]);
                        }
                        let obs = tracker.observe(line);
                        // The model is known from the init line, before any usage.
                        let model_changed = tracker.model() != sent_model.as_deref();
                        if obs.tokens_delta != 0 || obs.cost_delta != Usd::ZERO || obs.activity.is_some() || obs.warning.is_some() || obs.result || model_changed {
                            if model_changed {
                                sent_model = tracker.model().map(str::to_string);
                            }
                            // Only a delta the credit does not cover waits for the
                            // decision; so do results and API signals, which the run
                            // acts on at once.
                            let urgent = obs.result || obs.signal.is_some();
                            let paid = !urgent
                                && credit.pay(Credit::of(obs.tokens_delta, obs.cost_delta));
                            if paid && held.add(&obs) {
                                // Sent with the lines after it that are already read.
                            } else {
                                if !held.send(&tx, id, &tracker).await {
                                    break;
                                }
                                let (ack, acked) = if paid {
                                    (None, None)
                                } else {
                                    let (ack, acked) = oneshot::channel();
                                    (Some(ack), Some(acked))
                                };
                                if !send_observed(&tx, id, obs, &tracker, ack).await {
                                    break;
                                }
                                if let Some(acked) = acked {
                                    let _ = acked.await;
                                }
                            }
                        }
                        if !reader.has_line() && !held.send(&tx, id, &tracker).await {
                            break;
                        }
                        if let Some(at) = exited_at {
                            let now = Instant::now();
                            if now >= at + POST_EXIT_MAX {
                                tracing::warn!(instance = %name, "claude exited but a process outside its group still holds its stdout open; stopped reading it");
                                break;
                            }
                            drain_until = Some((now + POST_EXIT_IDLE).min(at + POST_EXIT_MAX));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        read_error = Some(e.to_string());
                        break;
                    }
                },
                _ = sleep_until_opt(drain_until), if drain_until.is_some() => {
                    tracing::warn!(instance = %name, "claude exited but a process outside its group still holds its stdout open; stopped reading it");
                    break;
                }
            }
        }
    }
    crate::runtime::pacer::hurry();
    // Whatever the loop ended on, no usage it accounted is left unsent.
    let _ = held.send(&tx, id, &tracker).await;
    let out_log_error = out_log.and_then(crate::runtime::logs::LogFile::finish);
    let exit = match exit {
        Some(e) => e,
        None => child.wait().await,
    };
    // The same leftover process may hold stderr open too (its tail is lost then); what
    // Claude wrote there is already in the pipe, so a short wait is enough.
    let (stderr_tail, err_log_error) = match tokio::time::timeout(POST_EXIT_IDLE, &mut stderr_task)
        .await
    {
        Ok(Ok((tail, log_error))) => (tail.text(), log_error),
        Ok(Err(_)) => (String::new(), None),
        Err(_) => {
            stderr_task.abort();
            tracing::warn!(instance = %name, "claude exited but a process outside its group still holds its stderr open; stopped reading it");
            (String::new(), None)
        }
    };
    let _ = tx
        .send(Msg::Exited {
            id,
            ended: Ended {
                exit,
                progress: Some(Progress::of(&tracker)),
                result: tracker.result().cloned(),
                stderr_tail,
                error: read_error,
                log_error: out_log_error.or(err_log_error),
            },
        })
        .await;
}

/// Paid observations of one instance not sent yet: the lines of one read that the credit
/// covered go to the run as one message (the sum of their deltas, the last activity, the
/// tracker's figures after the last of them), sent before anything else of the instance
/// and before its task waits to read more.
#[derive(Debug, Default)]
struct Held(Option<Observation>);

impl Held {
    /// Adds `obs` when it can be merged: growth only (a correction is paid as nothing,
    /// so a sum would hide it) and no warning (each is shown as it was given).
    fn add(&mut self, obs: &Observation) -> bool {
        if obs.tokens_delta < 0 || obs.cost_delta < Usd::ZERO || obs.warning.is_some() {
            return false;
        }
        let held = self.0.get_or_insert_with(Default::default);
        held.tokens_delta += obs.tokens_delta;
        held.cost_delta += obs.cost_delta;
        if obs.activity.is_some() {
            held.activity.clone_from(&obs.activity);
        }
        true
    }

    /// Sends what is held, if anything; `false` when the run is gone.
    async fn send(&mut self, tx: &mpsc::Sender<Msg>, id: InstanceId, tracker: &Tracker) -> bool {
        match self.0.take() {
            Some(line) => send_observed(tx, id, line, tracker, None).await,
            None => true,
        }
    }
}

/// Sends what `line` (one or several merged) changed, with the tracker's figures after
/// it; `false` when the run is gone.
async fn send_observed(
    tx: &mpsc::Sender<Msg>,
    id: InstanceId,
    line: Observation,
    tracker: &Tracker,
    ack: Option<oneshot::Sender<()>>,
) -> bool {
    let observed = Observed {
        line,
        progress: Progress::of(tracker),
    };
    tx.send(Msg::Observed { id, observed, ack }).await.is_ok()
}

/// The next answer of the ledger; never, without one.
async fn recv_news(news: &mut Option<mpsc::UnboundedReceiver<Input>>) -> Option<Input> {
    let Some(rx) = news else {
        return std::future::pending().await;
    };
    let got = rx.recv().await;
    if got.is_none() {
        // The ledger's thread has ended: nothing more will come.
        *news = None;
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pricing::Pricing;

    fn usage(tokens: i64, nanos: i64, activity: Option<&str>) -> Observation {
        Observation {
            tokens_delta: tokens,
            cost_delta: Usd(nanos),
            activity: activity.map(str::to_string),
            ..Observation::default()
        }
    }

    #[tokio::test]
    async fn held_lines_go_out_as_one_message_with_their_sum_and_last_activity() {
        let (tx, mut rx) = mpsc::channel(8);
        let tracker = Tracker::new(Arc::new(Pricing::builtin()));
        let mut held = Held::default();
        assert!(
            held.send(&tx, 3, &tracker).await,
            "nothing held: nothing sent"
        );
        assert!(rx.try_recv().is_err());
        assert!(held.add(&usage(100, 7, Some("Bash: ls"))));
        assert!(held.add(&usage(20, 0, None)));
        assert!(held.add(&usage(0, 5, Some("Read: a.rs"))));
        assert!(held.send(&tx, 3, &tracker).await);
        let Ok(Msg::Observed { id, observed, ack }) = rx.try_recv() else {
            panic!("one observation expected");
        };
        assert_eq!((id, ack.is_none()), (3, true));
        assert_eq!(observed.line, usage(120, 12, Some("Read: a.rs")));
        assert!(rx.try_recv().is_err(), "one message for the three lines");
        assert!(held.send(&tx, 3, &tracker).await);
        assert!(rx.try_recv().is_err(), "sent once");
    }

    #[test]
    fn corrections_and_warnings_are_never_merged() {
        let mut held = Held::default();
        assert!(!held.add(&usage(-5, 0, None)));
        assert!(!held.add(&usage(0, -1, None)));
        let warning = Observation {
            warning: Some("unknown model".into()),
            ..usage(10, 0, None)
        };
        assert!(!held.add(&warning));
        assert!(held.0.is_none(), "what is refused is not held either");
    }
}
