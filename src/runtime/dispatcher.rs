//! The one owner of run state: a single `select!` loop over child events, launch and
//! kill timers, the report tick and signals.
//!
//! Each running instance has a supervising task (`supervise`) that reads its stdout,
//! feeds every line to its own `accounting::Tracker` and sends the resulting usage
//! deltas here. A task waits for this loop to acknowledge each delta before it reads
//! the next line, so a budget decision is taken — and a terminate signal sent straight
//! to the process group — before anything else of that instance is read.

use crate::core::accounting::{ResultSummary, Tracker};
use crate::core::budget::{
    Admission, Amount, BudgetKey, BudgetStatus, Decision, InstanceBudget, Ledger, Scope,
};
use crate::core::plan::{InstanceId, Plan, Status};
use crate::core::pricing::Pricing;
use crate::core::usage::{Usage, Usd};
use crate::output::events::EventSink;
use crate::output::report::{self, BudgetLine, InstanceLine, Snapshot};
use crate::output::terminal::Console;
use crate::runtime::process::{self, ExitInfo, GroupHandle, LaunchSpec, LineReader};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

/// Bytes of each instance's stderr kept for the summary.
const STDERR_TAIL: usize = 8 * 1024;

/// Once Claude has exited, its process group is SIGKILLed (`process::Child::wait`), so
/// everything it wrote is already in the pipes. A pipe that stays open after that is held
/// by a process that left the group (`setsid`), which no group signal reaches: stop
/// reading once the pipe has been quiet for `POST_EXIT_IDLE`, and at most `POST_EXIT_MAX`
/// after the exit, rather than wait for an EOF that may never come.
const POST_EXIT_IDLE: Duration = Duration::from_secs(1);
const POST_EXIT_MAX: Duration = Duration::from_secs(10);

/// How a running instance was asked to stop, which decides its final status.
#[derive(Debug, Clone, PartialEq)]
enum StopReason {
    Budget(String),
    Timeout(Duration),
    Interrupt,
}

/// Everything the dispatcher knows about one instance.
#[derive(Debug)]
pub struct InstanceState {
    pub status: Status,
    pub reason: Option<String>,
    pub started: Option<Instant>,
    pub ended: Option<Instant>,
    pub usage: Usage,
    pub cost: Usd,
    pub model: Option<String>,
    pub tools: u64,
    pub activity: Option<String>,
    pub result: Option<ResultSummary>,
    pub exit: Option<ExitInfo>,
    pub stderr_tail: String,
    pub malformed_lines: u64,
    group: Option<GroupHandle>,
    stop: Option<StopReason>,
    timeout_at: Option<Instant>,
    kill_at: Option<Instant>,
}

impl InstanceState {
    fn new() -> Self {
        InstanceState {
            status: Status::Pending,
            reason: None,
            started: None,
            ended: None,
            usage: Usage::default(),
            cost: Usd::ZERO,
            model: None,
            tools: 0,
            activity: None,
            result: None,
            exit: None,
            stderr_tail: String::new(),
            malformed_lines: 0,
            group: None,
            stop: None,
            timeout_at: None,
            kill_at: None,
        }
    }

    pub fn duration(&self, now: Instant) -> Option<Duration> {
        let start = self.started?;
        Some(self.ended.unwrap_or(now).saturating_duration_since(start))
    }
}

/// A message from a supervising task.
enum Msg {
    Usage {
        id: InstanceId,
        tokens_delta: u64,
        cost_delta: Usd,
        usage: Usage,
        cost: Usd,
        model: Option<String>,
        tools: u64,
        activity: Option<String>,
        warning: Option<String>,
        ack: oneshot::Sender<()>,
    },
    Exited {
        id: InstanceId,
        exit: ExitInfo,
        stderr_tail: String,
        usage: Usage,
        cost: Usd,
        model: Option<String>,
        tools: u64,
        result: Option<ResultSummary>,
        malformed_lines: u64,
        read_error: Option<String>,
    },
}

/// The outcome of a run, for the exit code, the summary and the report.
pub struct RunOutcome {
    pub exit_code: i32,
    pub exit_reason: String,
}

/// How the run was interrupted from outside. All three are handled alike (SPEC section 6:
/// stop launching, SIGTERM every instance's group, SIGKILL after `--kill-grace`, write the
/// report); SIGHUP — the terminal went away — is treated as an interrupt rather than left
/// to its default action, which would kill the orchestrator and orphan every instance. The
/// exit code is 128 + the signal number: 130, 143, 129. A second signal of any of the
/// three kills every instance at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    Int,
    Term,
    Hup,
}

impl Interrupt {
    fn exit_code(self) -> i32 {
        match self {
            Interrupt::Int => 130,
            Interrupt::Term => 143,
            Interrupt::Hup => 129,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Interrupt::Int => "interrupted (SIGINT)",
            Interrupt::Term => "terminated by SIGTERM",
            Interrupt::Hup => "hung up (SIGHUP)",
        }
    }
}

pub struct Dispatcher {
    plan: Plan,
    pricing: Arc<Pricing>,
    ledger: Ledger,
    pub states: Vec<InstanceState>,
    /// Pending or waiting instances, in plan order.
    queue: Vec<InstanceId>,
    running: usize,
    /// No instance's timeout or kill timer is due before this (`None`: no timer set).
    /// A lower bound, so the loop need not scan every instance on every message: with
    /// 500 instances those scans were a visible share of the orchestrator's CPU time.
    next_timer: Option<Instant>,
    next_launch_at: Instant,
    /// Set when launching stopped only because of the spacing between launches.
    launch_timer: Option<Instant>,
    started_at: Instant,
    interrupt: Option<Interrupt>,
    /// Launcher: (program, leading args) — `claude`, or this binary in simulated mode.
    program: (PathBuf, Vec<OsString>),
    console: Console,
    events: EventSink,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
}

impl Dispatcher {
    pub fn new(
        plan: Plan,
        pricing: Arc<Pricing>,
        program: (PathBuf, Vec<OsString>),
        console: Console,
        events: EventSink,
    ) -> Dispatcher {
        let budgets = plan
            .instances
            .iter()
            .map(|spec| {
                let tokens = InstanceBudget::token_estimate_for(spec, &plan.budgets);
                let priced = pricing.estimate_cost(spec.model.as_deref(), tokens);
                InstanceBudget::from_spec(spec, &plan.budgets, priced)
            })
            .collect();
        let ledger = Ledger::new(&plan.budgets, budgets);
        let n = plan.instances.len();
        let (tx, rx) = mpsc::channel(256);
        let now = Instant::now();
        Dispatcher {
            ledger,
            pricing,
            states: (0..n).map(|_| InstanceState::new()).collect(),
            queue: (0..n).collect(),
            running: 0,
            next_timer: None,
            next_launch_at: now,
            launch_timer: None,
            started_at: now,
            interrupt: None,
            program,
            console,
            events,
            tx,
            rx,
            plan,
        }
    }

    /// Runs every instance to an end; returns the outcome and the `run_finished` report.
    pub async fn run(mut self) -> (RunOutcome, Option<serde_json::Value>) {
        let mut sigint = signal(SignalKind::interrupt()).ok();
        let mut sigterm = signal(SignalKind::terminate()).ok();
        let mut sighup = signal(SignalKind::hangup()).ok();
        let interval = self.plan.options.status_interval;
        let mut tick = tokio::time::interval(if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            interval
        });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.reset();
        // Live view hook (terminal only): a fast refresh whose first tick draws at once,
        // and a redraw on SIGWINCH. The console decides what each tick draws.
        let live = self.console.is_live() && !interval.is_zero();
        let mut live_tick = tokio::time::interval(crate::output::terminal::LIVE_REFRESH);
        live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sigwinch = if live {
            signal(SignalKind::window_change()).ok()
        } else {
            None
        };

        self.started_at = Instant::now();
        if let Some(at) = self.plan.options.start_at {
            let wait = (at - chrono::Local::now()).to_std().unwrap_or_default();
            self.next_launch_at = self.started_at + wait;
            if !wait.is_zero() {
                self.console
                    .line(&format!("waiting until {} to start", at.format("%H:%M:%S")));
            }
        }
        self.events.run_started(&self.plan);

        loop {
            let now = Instant::now();
            self.fire_timers(now);
            self.launch_ready(now);
            if self.states.iter().all(|s| s.status.is_final()) {
                break;
            }
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = recv_signal(&mut sigint) => self.on_interrupt(Interrupt::Int),
                _ = recv_signal(&mut sigterm) => self.on_interrupt(Interrupt::Term),
                _ = recv_signal(&mut sighup) => self.on_interrupt(Interrupt::Hup),
                Some(msg) = self.rx.recv() => self.on_msg(msg),
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = tick.tick(), if !interval.is_zero() => self.draw_status(),
                _ = live_tick.tick(), if live => self.live_tick(false),
                _ = recv_signal(&mut sigwinch) => self.live_tick(true),
            }
        }

        let outcome = self.outcome();
        let now = Instant::now();
        self.console.clear_live();
        let snapshot = snapshot(&self.plan, &self.states, &self.ledger, self.started_at, now);
        self.console
            .summary(&snapshot, outcome.exit_code, &outcome.exit_reason);
        self.events.run_finished(
            &self.plan,
            &self.states,
            &self.ledger,
            &outcome,
            self.started_at,
            now,
        );
        let report = self.events.finished.take();
        (outcome, report)
    }

    /// Earliest moment something time-driven must happen.
    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + Duration::from_secs(3600);
        if let Some(t) = self.next_timer {
            wake = wake.min(t);
        }
        // Only launch spacing (and --start-at) needs a timer: instances waiting for a
        // slot or for budget headroom are re-checked when a message (an exit) arrives.
        if let Some(t) = self.launch_timer {
            wake = wake.min(t);
        }
        wake
    }

    fn fire_timers(&mut self, now: Instant) {
        if !matches!(self.next_timer, Some(t) if t <= now) {
            return;
        }
        for id in 0..self.states.len() {
            let s = &mut self.states[id];
            if s.timeout_at.is_some_and(|t| t <= now) {
                s.timeout_at = None;
                let limit = self.plan.instances[id].timeout.unwrap_or_default();
                self.stop(id, StopReason::Timeout(limit), now);
            }
            let s = &mut self.states[id];
            if s.kill_at.is_some_and(|t| t <= now) {
                s.kill_at = None;
                if let Some(g) = &s.group {
                    if g.kill() {
                        tracing::debug!(instance = id, "grace expired: SIGKILL sent");
                        s.activity = Some("killed after the grace period".into());
                    }
                }
            }
        }
        self.next_timer = self
            .states
            .iter()
            .flat_map(|s| [s.timeout_at, s.kill_at])
            .flatten()
            .min();
    }

    /// Launches every queued instance that may start now.
    fn launch_ready(&mut self, now: Instant) {
        self.launch_timer = None;
        if self.interrupt.is_some() || self.queue.is_empty() {
            return;
        }
        if now < self.next_launch_at {
            self.launch_timer = Some(self.next_launch_at);
            return;
        }
        let max = self.plan.options.max_parallel;
        let mut i = 0;
        while i < self.queue.len() {
            if max != 0 && self.running >= max {
                self.wait_for_slot(max);
                return;
            }
            if now < self.next_launch_at {
                self.launch_timer = Some(self.next_launch_at);
                return;
            }
            let id = self.queue[i];
            match self.ledger.admit(id) {
                Admission::Admit { warnings } => {
                    self.queue.remove(i);
                    for w in warnings {
                        let text = format!("{}: {w}", self.plan.instances[id].name);
                        self.console.warn(&text);
                        self.events
                            .budget_warning(&self.plan.instances[id].name, &w);
                    }
                    self.launch(id, now);
                    self.next_launch_at = now + self.plan.options.startup_delay;
                }
                Admission::Wait { budget } => {
                    self.set_waiting(id, format!("waiting for {budget}"));
                    i += 1;
                }
                block @ Admission::Block { .. } => {
                    self.queue.remove(i);
                    let reason = block.to_string();
                    let name = &self.plan.instances[id].name;
                    self.console.warn(&format!("{name}: blocked, {reason}"));
                    self.events.instance_blocked(name, &reason);
                    let s = &mut self.states[id];
                    s.status = Status::Blocked;
                    s.reason = Some(reason);
                    // Every instance ends with exactly one instance_finished event.
                    self.events
                        .instance_finished(&self.plan.instances[id], &self.states[id]);
                }
            }
        }
    }

    /// Every queued instance is shown as waiting while `--max-parallel` slots are full.
    fn wait_for_slot(&mut self, max: usize) {
        for i in 0..self.queue.len() {
            let id = self.queue[i];
            self.set_waiting(
                id,
                format!("waiting for a free slot (--max-parallel {max})"),
            );
        }
    }

    /// Marks a queued instance as waiting; an event only when the reason changes.
    fn set_waiting(&mut self, id: InstanceId, reason: String) {
        let s = &mut self.states[id];
        if s.status == Status::Waiting && s.reason.as_deref() == Some(reason.as_str()) {
            return;
        }
        self.events
            .instance_waiting(&self.plan.instances[id].name, &reason);
        s.status = Status::Waiting;
        s.reason = Some(reason);
    }

    fn launch(&mut self, id: InstanceId, now: Instant) {
        let spec = &self.plan.instances[id];
        let (program, lead) = &self.program;
        let mut args = lead.clone();
        args.extend(
            crate::runtime::launch::claude_args(spec)
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
        let s = &mut self.states[id];
        s.started = Some(now);
        match process::spawn(&launch) {
            Ok((child, stdout, stderr)) => {
                s.status = Status::Running;
                s.reason = None;
                s.group = Some(child.group());
                s.timeout_at = spec.timeout.map(|t| now + t);
                note_timer(&mut self.next_timer, s.timeout_at);
                self.running += 1;
                let mut argv = vec![launch.program.to_string_lossy().into_owned()];
                argv.extend(launch.args.iter().map(|a| a.to_string_lossy().into_owned()));
                self.events.instance_started(&spec.name, child.pid(), &argv);
                let logs = self.open_logs(id);
                let tracker = Tracker::new(self.pricing.clone());
                tokio::spawn(supervise(
                    id,
                    child,
                    stdout,
                    stderr,
                    tracker,
                    self.tx.clone(),
                    logs,
                ));
            }
            Err(e) => {
                s.status = Status::Failed;
                s.ended = Some(now);
                s.reason = Some(format!("could not start: {e}"));
                self.ledger.finish(id);
                self.console
                    .error(&format!("{}: could not start: {e}", spec.name));
                self.events
                    .instance_finished(&self.plan.instances[id], &self.states[id]);
            }
        }
    }

    fn open_logs(&self, id: InstanceId) -> Option<(PathBuf, PathBuf)> {
        let dir = self.plan.options.log_dir.as_ref()?;
        let stem = crate::runtime::logs::file_stem(&self.plan.instances[id].name, id);
        Some((
            dir.join(format!("{stem}.jsonl")),
            dir.join(format!("{stem}.stderr")),
        ))
    }

    /// Asks a running instance to stop: SIGTERM to its group now, SIGKILL after the grace.
    fn stop(&mut self, id: InstanceId, why: StopReason, now: Instant) {
        let s = &mut self.states[id];
        if s.status != Status::Running || s.stop.is_some() {
            return;
        }
        let reason_text = match &why {
            StopReason::Budget(r) => r.clone(),
            StopReason::Timeout(d) => format!("timed out after {}", report::fmt_duration(*d)),
            StopReason::Interrupt => "interrupted".to_string(),
        };
        if let Some(g) = &s.group {
            g.terminate();
        }
        s.kill_at = Some(now + self.plan.options.kill_grace);
        s.timeout_at = None;
        s.stop = Some(why.clone());
        s.reason = Some(reason_text.clone());
        note_timer(&mut self.next_timer, s.kill_at);
        let kind = match why {
            StopReason::Budget(_) => "budget",
            StopReason::Timeout(_) => "timeout",
            StopReason::Interrupt => "interrupt",
        };
        self.events
            .instance_terminated(&self.plan.instances[id].name, kind, &reason_text);
    }

    fn on_interrupt(&mut self, which: Interrupt) {
        let now = Instant::now();
        if self.interrupt.is_some() {
            // Second signal: no more grace.
            self.console
                .notice("second interrupt: killing every instance now");
            for s in &mut self.states {
                if let Some(g) = &s.group {
                    if s.status == Status::Running {
                        g.kill();
                    }
                }
                s.kill_at = None;
            }
            return;
        }
        self.interrupt = Some(which);
        self.console.notice(&format!(
            "{}: stopping every instance (press Ctrl-C again to kill at once)",
            which.describe()
        ));
        for id in 0..self.states.len() {
            match self.states[id].status {
                Status::Running => self.stop(id, StopReason::Interrupt, now),
                Status::Pending | Status::Waiting => {
                    let s = &mut self.states[id];
                    s.status = Status::Interrupted;
                    s.reason = Some("not started: the run was interrupted".into());
                    self.events
                        .instance_finished(&self.plan.instances[id], &self.states[id]);
                }
                _ => {}
            }
        }
        self.queue.clear();
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Usage {
                id,
                tokens_delta,
                cost_delta,
                usage,
                cost,
                model,
                tools,
                activity,
                warning,
                ack,
            } => {
                let now = Instant::now();
                let decisions = self.ledger.record(id, tokens_delta, cost_delta);
                self.apply(id, decisions, now);
                let s = &mut self.states[id];
                s.usage = usage;
                s.cost = cost;
                if model.is_some() {
                    s.model = model;
                }
                s.tools = tools;
                if let Some(a) = activity {
                    s.activity = Some(a);
                }
                let _ = ack.send(());
                if let Some(w) = warning {
                    self.console
                        .warn(&format!("{}: {w}", self.plan.instances[id].name));
                }
                // `usage` events are about spend; a message that only updates the
                // model or the activity has none to report.
                if tokens_delta != 0 || cost_delta != Usd::ZERO {
                    self.events.usage(
                        &self.plan.instances[id].name,
                        &self.states[id],
                        tokens_delta,
                        now,
                    );
                }
            }
            Msg::Exited {
                id,
                exit,
                stderr_tail,
                usage,
                cost,
                model,
                tools,
                result,
                malformed_lines,
                read_error,
            } => {
                let now = Instant::now();
                self.running = self.running.saturating_sub(1);
                self.ledger.finish(id);
                let s = &mut self.states[id];
                s.ended = Some(now);
                s.exit = Some(exit);
                s.usage = usage;
                s.cost = cost;
                if model.is_some() {
                    s.model = model;
                }
                s.tools = tools;
                s.stderr_tail = stderr_tail;
                s.malformed_lines = malformed_lines;
                s.result = result;
                s.group = None;
                s.kill_at = None;
                s.timeout_at = None;
                let (status, reason) = classify(s, read_error);
                s.status = status;
                s.reason = reason;
                if s.status == Status::Failed {
                    let why = s.reason.clone().unwrap_or_default();
                    self.console
                        .error(&format!("{}: failed: {why}", self.plan.instances[id].name));
                }
                self.events
                    .instance_finished(&self.plan.instances[id], &self.states[id]);
            }
        }
    }

    /// `id` is the instance whose usage led to `decisions`.
    fn apply(&mut self, id: InstanceId, decisions: Vec<Decision>, now: Instant) {
        for d in decisions {
            match &d {
                Decision::Warn(w) => {
                    self.console.warn(&w.to_string());
                    self.events.budget_warning(&self.plan.instances[id].name, w);
                }
                Decision::Terminate {
                    instances, budget, ..
                } => {
                    let reason = self.budget_reason(budget, &d);
                    self.console.warn(&format!(
                        "{reason}: terminating {}",
                        if instances.is_empty() {
                            "nothing (no instance running)".to_string()
                        } else {
                            instances
                                .iter()
                                .map(|&i| self.plan.instances[i].name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ));
                    self.events.budget_exceeded(&d, &reason);
                    for &i in instances {
                        self.stop(i, StopReason::Budget(reason.clone()), now);
                    }
                }
            }
        }
    }

    /// Reason text for a budget decision, naming the instance for instance caps.
    fn budget_reason(&self, budget: &BudgetKey, d: &Decision) -> String {
        match budget.scope {
            Scope::Instance(i) => format!("{} of {}", d, self.plan.instances[i].name),
            _ => d.to_string(),
        }
    }

    fn draw_status(&mut self) {
        let now = Instant::now();
        let snapshot = snapshot(&self.plan, &self.states, &self.ledger, self.started_at, now);
        self.console.status(&snapshot);
        self.events.status(&self.ledger, &snapshot);
    }

    /// Live view hook: the fast refresh (`resized`: on SIGWINCH, redraw now).
    fn live_tick(&mut self, resized: bool) {
        let now = Instant::now();
        let snapshot = snapshot(&self.plan, &self.states, &self.ledger, self.started_at, now);
        if resized {
            self.console.resized(&snapshot);
        } else {
            self.console.tick(&snapshot, now);
        }
    }

    /// Exit code and its reason, SPEC section 6.
    fn outcome(&self) -> RunOutcome {
        outcome(&self.states, self.interrupt)
    }
}

/// Lowers the dispatcher's `next_timer` to cover a timer just set.
fn note_timer(next: &mut Option<Instant>, at: Option<Instant>) {
    if let Some(t) = at {
        *next = Some(next.map_or(t, |n| n.min(t)));
    }
}

/// What the reports show, at `now`.
fn snapshot<'a>(
    plan: &'a Plan,
    states: &'a [InstanceState],
    ledger: &Ledger,
    started_at: Instant,
    now: Instant,
) -> Snapshot<'a> {
    {
        let mut totals = Usage::default();
        let mut total_cost = Usd::ZERO;
        for s in states {
            totals += s.usage;
            total_cost += s.cost;
        }
        let budgets = ledger
            .budgets()
            .iter()
            .filter(|b| !matches!(b.key.scope, Scope::Instance(_)))
            .map(budget_line)
            .collect();
        let instances = plan
            .instances
            .iter()
            .zip(states)
            .enumerate()
            .map(|(id, (spec, s))| InstanceLine {
                name: &spec.name,
                status: s.status,
                model: s.model.as_deref().or(spec.model.as_deref()),
                duration: s.duration(now),
                usage: s.usage,
                cost: s.cost,
                tools: s.tools,
                budget_percent: ledger.instance_budget_percent(id),
                activity: s.activity.as_deref(),
                result: s.result.as_ref().and_then(|r| r.text.as_deref()),
                reason: s.reason.as_deref(),
                ended_ago: s.ended.map(|e| now.saturating_duration_since(e)),
            })
            .collect();
        Snapshot {
            elapsed: now.saturating_duration_since(started_at),
            mode: plan.budgets.mode,
            totals,
            total_cost,
            budgets,
            instances,
            visuals: !plan.options.disable_visuals,
        }
    }
}

/// Exit code and its reason, SPEC section 6.
fn outcome(states: &[InstanceState], interrupt: Option<Interrupt>) -> RunOutcome {
    {
        let count = |st: Status| states.iter().filter(|s| s.status == st).count();
        let n = states.len();
        if let Some(i) = interrupt {
            return RunOutcome {
                exit_code: i.exit_code(),
                exit_reason: format!(
                    "{}; {} of {n} instances completed",
                    i.describe(),
                    count(Status::Completed)
                ),
            };
        }
        let (blocked, terminated) = (count(Status::Blocked), count(Status::Terminated));
        if blocked + terminated > 0 {
            let mut parts = Vec::new();
            if terminated > 0 {
                parts.push(format!("{terminated} terminated"));
            }
            if blocked > 0 {
                parts.push(format!("{blocked} blocked"));
            }
            return RunOutcome {
                exit_code: 3,
                exit_reason: format!("a budget stopped instances: {}", parts.join(", ")),
            };
        }
        let (failed, timed_out, interrupted) = (
            count(Status::Failed),
            count(Status::TimedOut),
            count(Status::Interrupted),
        );
        if failed + timed_out + interrupted > 0 {
            let mut parts = Vec::new();
            for (k, what) in [
                (failed, "failed"),
                (timed_out, "timed out"),
                (interrupted, "interrupted"),
            ] {
                if k > 0 {
                    parts.push(format!("{k} {what}"));
                }
            }
            return RunOutcome {
                exit_code: 1,
                exit_reason: format!("not every instance completed: {}", parts.join(", ")),
            };
        }
        RunOutcome {
            exit_code: 0,
            exit_reason: if n == 1 {
                "the instance completed".to_string()
            } else {
                format!("all {n} instances completed")
            },
        }
    }
}

/// The final status of an instance that exited, and why.
fn classify(s: &InstanceState, read_error: Option<String>) -> (Status, Option<String>) {
    match &s.stop {
        Some(StopReason::Budget(r)) => return (Status::Terminated, Some(r.clone())),
        Some(StopReason::Timeout(d)) => {
            return (
                Status::TimedOut,
                Some(format!("timed out after {}", report::fmt_duration(*d))),
            )
        }
        Some(StopReason::Interrupt) => return (Status::Interrupted, Some("interrupted".into())),
        None => {}
    }
    let exit = s.exit.unwrap_or_default();
    let stderr_hint = || {
        s.stderr_tail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default()
    };
    if let Some(r) = &s.result {
        let text = r.text.as_deref().unwrap_or("");
        if text.starts_with("Unknown command") {
            return (
                Status::Failed,
                Some(text.lines().next().unwrap_or(text).to_string()),
            );
        }
        if r.is_error {
            let what = if text.is_empty() {
                r.subtype.as_str()
            } else {
                text
            };
            return (
                Status::Failed,
                Some(format!("claude reported an error: {}", first_line(what))),
            );
        }
    }
    if !exit.success() {
        return (
            Status::Failed,
            Some(format!("claude {exit}{}", stderr_hint())),
        );
    }
    if let Some(e) = read_error {
        return (
            Status::Failed,
            Some(format!("reading its output failed: {e}")),
        );
    }
    if s.result.is_none() {
        return (
            Status::Failed,
            Some(format!("exited without a result line{}", stderr_hint())),
        );
    }
    (Status::Completed, None)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn budget_line(b: &BudgetStatus) -> BudgetLine {
    let label = match &b.key.scope {
        Scope::Overall => "overall".to_string(),
        Scope::Command(c) => c.clone(),
        Scope::Instance(i) => format!("instance #{i}"),
    };
    let as_f64 = |a: Amount| match a {
        Amount::Tokens(t) => t as f64,
        Amount::Usd(u) => u.as_dollars(),
    };
    BudgetLine {
        label,
        unit_is_usd: matches!(b.limit, Amount::Usd(_)),
        limit: as_f64(b.limit),
        used: as_f64(b.used),
        state: b.state.as_str(),
    }
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
async fn supervise(
    id: InstanceId,
    mut child: process::Child,
    stdout: tokio::process::ChildStdout,
    stderr: tokio::process::ChildStderr,
    mut tracker: Tracker,
    tx: mpsc::Sender<Msg>,
    logs: Option<(PathBuf, PathBuf)>,
) {
    let (mut out_log, err_log) = match &logs {
        Some((o, e)) => (
            crate::runtime::logs::create_private(o).await,
            crate::runtime::logs::create_private(e).await,
        ),
        None => (None, None),
    };
    let mut stderr_task = tokio::spawn(process::drain_stderr(stderr, STDERR_TAIL, err_log));
    let mut reader = LineReader::new(stdout);
    let mut exit = None;
    let mut read_error = None;
    let mut sent_model: Option<String> = None;
    let mut exited_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        tokio::select! {
            // Biased: the exit is noticed (and the group killed) even while output keeps
            // coming, and buffered output always wins over the post-exit deadline.
            biased;
            e = child.wait(), if exit.is_none() => {
                exit = Some(e);
                let now = Instant::now();
                exited_at = Some(now);
                drain_until = Some(now + POST_EXIT_IDLE);
            }
            line = reader.next_line() => match line {
                Ok(Some(line)) => {
                    if let Some(f) = out_log.as_mut() {
                        if f.write_all(line).await.is_err() || f.write_all(b"\n").await.is_err() {
                            out_log = None;
                        }
                    }
                    let obs = tracker.observe(line);
                    // The model is known from the init line, before any usage.
                    let model_changed = tracker.model() != sent_model.as_deref();
                    if obs.tokens_delta != 0 || obs.cost_delta != Usd::ZERO || obs.activity.is_some() || obs.warning.is_some() || obs.result || model_changed {
                        if model_changed {
                            sent_model = tracker.model().map(str::to_string);
                        }
                        let (ack, acked) = oneshot::channel();
                        let msg = Msg::Usage {
                            id,
                            tokens_delta: obs.tokens_delta,
                            cost_delta: obs.cost_delta,
                            usage: tracker.usage(),
                            cost: tracker.cost(),
                            model: tracker.model().map(str::to_string),
                            tools: tracker.tool_uses(),
                            activity: obs.activity,
                            warning: obs.warning,
                            ack,
                        };
                        if tx.send(msg).await.is_err() {
                            break;
                        }
                        let _ = acked.await;
                    }
                    if let Some(at) = exited_at {
                        let now = Instant::now();
                        if now >= at + POST_EXIT_MAX {
                            tracing::warn!(instance = id, "claude exited but a process outside its group still holds its stdout open; stopped reading it");
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
                tracing::warn!(instance = id, "claude exited but a process outside its group still holds its stdout open; stopped reading it");
                break;
            }
        }
    }
    if let Some(f) = out_log.as_mut() {
        let _ = f.flush().await;
    }
    let exit = match exit {
        Some(e) => e,
        None => child.wait().await,
    };
    // The same leftover process may hold stderr open too (its tail is lost then); what
    // Claude wrote there is already in the pipe, so a short wait is enough.
    let stderr_tail = match tokio::time::timeout(POST_EXIT_IDLE, &mut stderr_task).await {
        Ok(Ok(tail)) => tail.text(),
        Ok(Err(_)) => String::new(),
        Err(_) => {
            stderr_task.abort();
            tracing::warn!(instance = id, "claude exited but a process outside its group still holds its stderr open; stopped reading it");
            String::new()
        }
    };
    let _ = tx
        .send(Msg::Exited {
            id,
            exit,
            stderr_tail,
            usage: tracker.usage(),
            cost: tracker.cost(),
            model: tracker.model().map(str::to_string),
            tools: tracker.tool_uses(),
            result: tracker.result().cloned(),
            malformed_lines: tracker.malformed_lines(),
            read_error,
        })
        .await;
}
