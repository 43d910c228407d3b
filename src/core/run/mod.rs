//! The run as a pure state machine: [`RunState::handle`] takes one [`Input`] (a line's
//! usage observed, a child exited, a timer fired, a signal) and the time, updates the
//! run, and returns the [`Effect`]s the runtime must carry out — spawn, terminate, kill,
//! and [`RunEvent`]s for every output. It never spawns, sleeps or prints, so every rule of
//! a run (admission, waiting, crossing, timeouts, grace, interrupts, exit codes) is
//! tested here without processes or clocks.
//!
//! Each instance's life is a [`Phase`]: queued → (waiting) → running (→ stopping) → done.
//! The runtime keeps a process handle only while an instance is running.

use crate::core::accounting::{Observation, ResultSummary, Tracker};
use crate::core::budget::{Admission, Amount, BudgetKey, Decision, Ledger, Scope, Warning};
use crate::core::exit::{ExitCode, ExitInfo, Interrupt};
use crate::core::plan::{InstanceId, LedgerFailure, Mode, Plan, Status, UsageLimitPolicy};
use crate::core::signal::{PauseReason, Signal};
use crate::core::usage::{Usage, Usd};
use std::fmt;
use std::time::{Duration, Instant};

/// What an instance's tracker has counted so far: sent with every observation and at
/// the exit, so the run always holds the tracker's own figures (never a second sum).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub usage: Usage,
    pub cost: Usd,
    pub model: Option<String>,
    pub tools: u64,
    pub malformed_lines: u64,
    /// Claude's session id (from its `system/init` line): what `--resume` continues.
    pub session_id: Option<String>,
}

impl Progress {
    pub fn of(t: &Tracker) -> Progress {
        Progress {
            usage: t.usage(),
            cost: t.cost(),
            model: t.model().map(str::to_string),
            tools: t.tool_uses(),
            malformed_lines: t.malformed_lines(),
            session_id: t.session_id().map(str::to_string),
        }
    }

    /// `later` (a resumed process's own figures) on top of `self` (the processes
    /// before it): the instance's totals are the sum over its processes.
    fn then(&self, later: Progress) -> Progress {
        Progress {
            usage: self.usage + later.usage,
            cost: self.cost + later.cost,
            model: later.model.or_else(|| self.model.clone()),
            tools: self.tools + later.tools,
            malformed_lines: self.malformed_lines + later.malformed_lines,
            session_id: later.session_id.or_else(|| self.session_id.clone()),
        }
    }
}

/// One stdout line's worth of news from a running instance: what the line changed and
/// the tracker's figures after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub line: Observation,
    pub progress: Progress,
}

/// Everything known when an instance's process has ended and its output is read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ended {
    pub exit: ExitInfo,
    /// The tracker's final figures; `None` when they were lost with a failed task (the
    /// last observed figures stand).
    pub progress: Option<Progress>,
    pub result: Option<ResultSummary>,
    pub stderr_tail: String,
    /// Reading the output failed, or the supervising task itself failed.
    pub error: Option<String>,
    /// The first error creating or writing its `--log-dir` files (hardening, issue 13).
    pub log_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The run begins; launches start after `delay` (`--start-at`). `unix_now` is the
    /// wall clock (Unix seconds) at `now`, to place reset times Claude gives in it.
    Start {
        delay: Duration,
        unix_now: i64,
    },
    /// A timer the run asked for ([`RunState::next_wake`]) is due.
    Tick,
    /// The runtime started the process of a [`Effect::Spawn`].
    Spawned {
        id: InstanceId,
        pid: u32,
        argv: Vec<String>,
    },
    /// The runtime could not start it.
    SpawnFailed {
        id: InstanceId,
        error: String,
    },
    Observed {
        id: InstanceId,
        observed: Observed,
    },
    Exited {
        id: InstanceId,
        ended: Ended,
    },
    Interrupt(Interrupt),
    /// The ledger's latest figures for the budgets shared with other runs (issue 12);
    /// `Err`: it could not be reached.
    Shared(Result<Vec<OtherRuns>, String>),
    /// The answer to an [`Effect::Claim`] for instances `ids` (its batch, in order): how
    /// many of them, from the first, were granted, and the figures it was decided on;
    /// `Err`: the ledger could not be reached.
    Claimed {
        ids: Vec<InstanceId>,
        answer: Result<(usize, Vec<OtherRuns>), String>,
    },
    /// Pauses other runs of the project published and that have not ended, read when
    /// the wall clock was `unix_now_ms` (so this may come before `Start`).
    Paused {
        pauses: Vec<SharedPause>,
        unix_now_ms: i64,
    },
}

/// A launch pause shared by the runs of a project through the ledger (issue 14): one
/// run meets the usage limit or a 429/529 storm, and the others do not rediscover it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedPause {
    /// The usage limit (until its reset); else a fleet backoff (until the retry delay).
    pub usage_limit: bool,
    /// Unix milliseconds.
    pub until_ms: i64,
    /// What caused it: `429`, `529`, `usage limit reached`.
    pub cause: String,
}

/// What the other runs have in one budget shared through the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherRuns {
    pub key: BudgetKey,
    pub used: Amount,
    pub reserved: Amount,
}

/// This run's request for one shared budget, in its base unit (see `store::Claim`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimOf {
    pub key: BudgetKey,
    /// Its own use plus everything it will hold once the instance runs.
    pub mine: i128,
    /// What it will hold.
    pub hold: i128,
    pub limit: i128,
}

#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start the instance's process, then answer `Spawned` or `SpawnFailed`.
    Spawn(InstanceId),
    /// SIGTERM the instance's process group (and what left it).
    Terminate(InstanceId),
    /// SIGKILL it.
    Kill(InstanceId),
    Emit(RunEvent),
    /// Block mode: before these instances (admitted by this run's ledger, in launch
    /// order) launch, take their share of the budgets shared with other runs, atomically
    /// with them, in one transaction; then answer `Claimed`. Each instance's claims count
    /// those before it in the batch; the ledger grants the longest run of them from the
    /// first that fits.
    Claim {
        batch: Vec<(InstanceId, Vec<ClaimOf>)>,
    },
    /// Tell the project's other runs about this pause (through the ledger).
    Publish(SharedPause),
}

/// Why a queued instance is not running yet.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitReason {
    /// `--max-parallel` slots are full.
    Slot { max: usize },
    /// A block-mode budget has no headroom while others hold reservations.
    Budget(BudgetKey),
    /// Launches are paused: the API is rate limiting or overloaded.
    Backoff(PauseReason),
    /// The subscription's usage limit: waiting for it to reset (Unix seconds, when
    /// known) before launching or resuming.
    UsageLimit { resets_at: Option<i64> },
    /// `--ledger-failure closed`: the ledger sharing its budgets cannot be reached.
    Ledger,
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Slot { max } => {
                write!(f, "waiting for a free slot (--max-parallel {max})")
            }
            WaitReason::Budget(b) => write!(f, "waiting for {b}"),
            WaitReason::Backoff(r) => write!(f, "launches paused: {r}"),
            WaitReason::UsageLimit { resets_at } => {
                write!(f, "usage limit reached")?;
                match resets_at.and_then(fmt_unix) {
                    Some(at) => write!(f, "; resets {at}"),
                    None => write!(f, "; waiting to try again"),
                }
            }
            WaitReason::Ledger => write!(
                f,
                "waiting for the ledger, which cannot be reached (--ledger-failure closed)"
            ),
        }
    }
}

/// `2026-12-06 04:20 UTC`.
pub fn fmt_unix(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// Why a running instance was asked to stop; decides its final status.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    Budget(String),
    Timeout(Duration),
    Interrupt,
}

impl StopReason {
    pub fn kind(&self) -> &'static str {
        match self {
            StopReason::Budget(_) => "budget",
            StopReason::Timeout(_) => "timeout",
            StopReason::Interrupt => "interrupt",
        }
    }

    fn status(&self) -> Status {
        match self {
            StopReason::Budget(_) => Status::Terminated,
            StopReason::Timeout(_) => Status::TimedOut,
            StopReason::Interrupt => Status::Interrupted,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Budget(r) => f.write_str(r),
            StopReason::Timeout(d) => write!(f, "timed out after {}", fmt_limit(*d)),
            StopReason::Interrupt => f.write_str("interrupted"),
        }
    }
}

/// `90s`, `1.5s`, `10m`: a configured limit as the user would have written it.
fn fmt_limit(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stopping {
    pub why: StopReason,
    /// SIGKILL is due then (cleared once sent).
    pub kill_at: Option<Instant>,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Queued,
    Waiting(WaitReason),
    Running {
        started: Instant,
        timeout_at: Option<Instant>,
        stopping: Option<Stopping>,
    },
    Done {
        started: Option<Instant>,
        ended: Instant,
        status: Status,
        reason: Option<String>,
    },
}

/// Everything the run knows about one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub phase: Phase,
    pub progress: Progress,
    pub activity: Option<String>,
    pub result: Option<ResultSummary>,
    /// The `result` line was seen: the work is done even if the process lingers.
    pub result_seen: bool,
    pub exit: Option<ExitInfo>,
    pub stderr_tail: String,
    /// Why its `--log-dir` files are incomplete, if they are.
    pub log_error: Option<String>,
    /// What the processes before the current one (resumed after a usage limit) spent.
    pub base: Progress,
    /// The current process hit the usage limit (with its reset time when known).
    pub limited: Option<Option<i64>>,
    /// Start the next process with `--resume` of this session.
    pub resume: Option<String>,
    /// Attempts made after the first (`--retries`).
    pub retried: u32,
}

impl Instance {
    fn new() -> Instance {
        Instance {
            phase: Phase::Queued,
            progress: Progress::default(),
            activity: None,
            result: None,
            result_seen: false,
            exit: None,
            stderr_tail: String::new(),
            log_error: None,
            base: Progress::default(),
            limited: None,
            resume: None,
            retried: 0,
        }
    }

    pub fn status(&self) -> Status {
        match &self.phase {
            Phase::Queued => Status::Pending,
            Phase::Waiting(_) => Status::Waiting,
            Phase::Running { .. } => Status::Running,
            Phase::Done { status, .. } => *status,
        }
    }

    /// Why it is waiting, stopping or ended the way it did.
    pub fn reason(&self) -> Option<String> {
        match &self.phase {
            Phase::Queued => None,
            Phase::Waiting(w) => Some(w.to_string()),
            Phase::Running { stopping, .. } => stopping.as_ref().map(|s| s.why.to_string()),
            Phase::Done { reason, .. } => reason.clone(),
        }
    }

    pub fn duration(&self, now: Instant) -> Option<Duration> {
        match &self.phase {
            Phase::Running { started, .. } => Some(now.saturating_duration_since(*started)),
            Phase::Done {
                started: Some(s),
                ended,
                ..
            } => Some(ended.saturating_duration_since(*s)),
            _ => None,
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }
}

/// What every output is told, in order. Outputs read the details (names, usage,
/// reasons) from the [`RunState`] they are given with each event.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// `delay`: launches wait this long for `--start-at`.
    RunStarted {
        delay: Duration,
    },
    InstanceStarted {
        id: InstanceId,
        pid: u32,
        argv: Vec<String>,
    },
    /// Spend counted for `id` (`tokens` is the token delta; negative when Claude's `result`
    /// counted less than the live count).
    Usage {
        id: InstanceId,
        tokens: i64,
    },
    /// Something to tell the user about an instance's output (unknown model, …).
    Notice {
        id: InstanceId,
        text: String,
    },
    /// A budget warning; `id` is the instance whose usage or launch caused it (`None`:
    /// the use of other runs sharing the budget).
    BudgetWarning {
        id: Option<InstanceId>,
        warning: Warning,
    },
    /// Block mode: a budget was passed; `reason` names it; `decision` lists the
    /// instances being terminated.
    BudgetExceeded {
        decision: Decision,
        reason: String,
    },
    InstanceWaiting {
        id: InstanceId,
    },
    InstanceBlocked {
        id: InstanceId,
    },
    InstanceTerminated {
        id: InstanceId,
    },
    /// Grace expired: SIGKILL sent.
    InstanceKilled {
        id: InstanceId,
    },
    InstanceFinished {
        id: InstanceId,
    },
    /// The first (`second: false`) or a further interrupt.
    Interrupted {
        which: Interrupt,
        second: bool,
    },
    /// No launches for a while: the API answered 429/529 (`until` the retry delay), or
    /// the usage limit is reached (`until` its reset).
    LaunchesPaused {
        reason: String,
        until: Instant,
    },
    LaunchesResumed {
        reason: String,
    },
    /// Nothing more will be launched (spend cap, usage limit with `stop`).
    LaunchesStopped {
        reason: String,
    },
    /// `--retries`: the instance failed (`reason`) and is queued to run again from
    /// scratch; `attempt` counts from 2.
    InstanceRetrying {
        id: InstanceId,
        attempt: u32,
        reason: String,
    },
    /// The ledger sharing budgets with other runs cannot be reached (`Some(error)`), or
    /// can again (`None`).
    Ledger {
        unreachable: Option<String>,
    },
    /// Fleet backoff changed how many instances may run at once (`None`: as configured).
    Parallelism {
        limit: Option<usize>,
        reason: String,
    },
    RunFinished,
}

/// The run's exit code and its reason (SPEC section 6).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub exit: ExitCode,
    pub reason: String,
}

pub struct RunState {
    pub plan: Plan,
    pub ledger: Ledger,
    pub instances: Vec<Instance>,
    /// Instances not launched yet (queued or waiting), in plan order.
    queue: Vec<InstanceId>,
    running: usize,
    gate: LaunchGate,
    /// Set while launching is held only by the spacing between launches (or the start).
    launch_timer: Option<Instant>,
    /// No instance timer (timeout, kill) is due before this: a lower bound, so a message
    /// need not scan every instance (visible at 500 instances).
    next_timer: Option<Instant>,
    interrupt: Option<Interrupt>,
    started: bool,
    finished: bool,
    pub started_at: Instant,
    /// `--report` could not be written (set by the executor just before `RunFinished`
    /// goes out): an error of the run, see [`RunState::outcome`].
    pub report_error: Option<String>,
    /// The wall clock at `started_at`, Unix seconds.
    unix_at_start: i64,
    /// When the first usage limit was hit: `--max-wait` counts from there.
    first_limit: Option<Instant>,
    /// Budgets shared with other runs through the ledger, when there are.
    sharing: Option<Sharing>,
    /// The ledger's news that came before the start.
    early: Vec<Input>,
}

/// The run's side of the budgets it shares with other runs (issue 12).
#[derive(Debug, Clone, Default)]
struct Sharing {
    keys: Vec<BudgetKey>,
    /// A batch of claims is with the ledger: one batch at a time, so a claim always
    /// counts every earlier one.
    claiming: bool,
    /// A claim was refused: no new claim before the ledger's next figures.
    refused: bool,
    /// The ledger cannot be reached: the error.
    down: Option<String>,
}

impl RunState {
    /// A run of `plan` whose budgets are kept by `ledger` (which may already hold use
    /// and reservations from elsewhere).
    pub fn new(plan: Plan, ledger: Ledger, now: Instant) -> RunState {
        let n = plan.instances.len();
        let gate = LaunchGate::new(&plan.options, now);
        RunState {
            plan,
            ledger,
            instances: (0..n).map(|_| Instance::new()).collect(),
            queue: (0..n).collect(),
            running: 0,
            gate,
            launch_timer: None,
            next_timer: None,
            interrupt: None,
            started: false,
            finished: false,
            started_at: now,
            report_error: None,
            unix_at_start: 0,
            first_limit: None,
            sharing: None,
            early: Vec::new(),
        }
    }

    /// These budgets (periodic ones) are shared with other runs through the ledger: in
    /// block mode an instance counting toward one launches only once the ledger grants
    /// its claim ([`Effect::Claim`]), and the ledger's figures arrive as
    /// [`Input::Shared`].
    pub fn share_budgets(&mut self, keys: Vec<BudgetKey>) {
        self.sharing = (!keys.is_empty()).then(|| Sharing {
            keys,
            ..Sharing::default()
        });
    }

    /// What this run holds in each shared budget (base unit): what the ledger must keep
    /// for it.
    pub fn holds(&self) -> Vec<(BudgetKey, i128)> {
        let Some(s) = &self.sharing else {
            return Vec::new();
        };
        s.keys
            .iter()
            .filter_map(|k| Some((k.clone(), self.ledger.own_share(k)?.reserved)))
            .collect()
    }

    /// The shared budgets instance `id` counts toward.
    fn shared_keys_of(&self, id: InstanceId) -> Vec<BudgetKey> {
        let Some(s) = &self.sharing else {
            return Vec::new();
        };
        let mut keys = self.ledger.keys_for(id);
        keys.retain(|k| s.keys.contains(k));
        keys
    }

    pub fn name(&self, id: InstanceId) -> &str {
        &self.plan.instances[id].name
    }

    /// Every instance has ended and `RunFinished` was emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// When the run next needs a [`Input::Tick`], if ever.
    pub fn next_wake(&self) -> Option<Instant> {
        let gate = if self.finished || self.interrupt.is_some() {
            None
        } else {
            self.gate.next_wake()
        };
        [self.next_timer, self.launch_timer, gate]
            .into_iter()
            .flatten()
            .min()
    }

    /// How many instances may run at once now (0 = no limit), and whether fleet
    /// backoff has lowered it.
    pub fn parallelism(&self) -> (usize, bool) {
        (self.gate.allowed(), self.gate.limit.is_some())
    }

    /// Why launches are held, and until when, if they are.
    pub fn launch_hold(&self, now: Instant) -> Option<(WaitReason, Instant)> {
        if let Some((until, resets_at)) = self.gate.hold {
            return Some((WaitReason::UsageLimit { resets_at }, until));
        }
        match &self.gate.pause {
            Some((until, r)) if now < *until => Some((WaitReason::Backoff(r.clone()), *until)),
            _ => None,
        }
    }

    /// Unix seconds → the run's clock (now, if already past).
    fn instant_of(&self, unix: i64, now: Instant) -> Instant {
        self.instant_of_ms(unix.saturating_mul(1000), now)
    }

    /// Unix milliseconds → the run's clock (now, if already past).
    fn instant_of_ms(&self, unix_ms: i64, now: Instant) -> Instant {
        let ms = unix_ms.saturating_sub(self.unix_at_start.saturating_mul(1000));
        let at = self.started_at + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        at.max(now)
    }

    /// The run's clock → Unix milliseconds.
    fn unix_ms_of(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.started_at).as_millis();
        self.unix_at_start
            .saturating_mul(1000)
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }

    /// Tokens and dollars of every instance: the one place run totals are summed.
    pub fn totals(&self) -> (Usage, Usd) {
        let mut usage = Usage::default();
        let mut cost = Usd::ZERO;
        for i in &self.instances {
            usage += i.progress.usage;
            cost += i.progress.cost;
        }
        (usage, cost)
    }

    pub fn count(&self, status: Status) -> usize {
        self.instances
            .iter()
            .filter(|i| i.status() == status)
            .count()
    }

    #[must_use]
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            // The ledger's news before the start acts right after `RunStarted`, before
            // the first launch.
            news @ (Input::Shared(_) | Input::Paused { .. }) if !self.started => {
                self.early.push(news);
                return fx;
            }
            Input::Start { delay, unix_now } => {
                self.started = true;
                self.started_at = now;
                self.unix_at_start = unix_now;
                self.gate.next_launch_at = now + delay;
                fx.push(Effect::Emit(RunEvent::RunStarted { delay }));
                for news in std::mem::take(&mut self.early) {
                    self.news(news, now, &mut fx);
                }
            }
            Input::Tick => {
                self.fire_timers(now, &mut fx);
                let n = self.instances.len();
                fx.extend(self.gate.tick(now, n).into_iter().map(Effect::Emit));
            }
            Input::Spawned { id, pid, argv } => {
                fx.push(Effect::Emit(RunEvent::InstanceStarted { id, pid, argv }));
            }
            Input::SpawnFailed { id, error } => {
                if matches!(self.instances[id].phase, Phase::Running { .. }) {
                    self.running -= 1;
                }
                self.ledger.finish(id);
                let started = self.started_time(id);
                self.instances[id].phase = Phase::Done {
                    started,
                    ended: now,
                    status: Status::Failed,
                    reason: Some(format!("could not start: {error}")),
                };
                fx.push(Effect::Emit(RunEvent::InstanceFinished { id }));
            }
            Input::Observed { id, observed } => self.observed(id, observed, now, &mut fx),
            Input::Exited { id, ended } => self.exited(id, ended, now, &mut fx),
            Input::Interrupt(which) => self.interrupted(which, now, &mut fx),
            news @ (Input::Shared(_) | Input::Paused { .. }) => self.news(news, now, &mut fx),
            Input::Claimed { ids, answer } => self.claimed(ids, answer, now, &mut fx),
        }
        if self.started && !self.finished {
            self.launch_ready(now, &mut fx);
            if self.instances.iter().all(Instance::is_final) {
                self.finished = true;
                self.launch_timer = None;
                self.next_timer = None;
                fx.push(Effect::Emit(RunEvent::RunFinished));
            }
        }
        fx
    }

    fn started_time(&self, id: InstanceId) -> Option<Instant> {
        match self.instances[id].phase {
            Phase::Running { started, .. } => Some(started),
            _ => None,
        }
    }

    fn observed(&mut self, id: InstanceId, o: Observed, now: Instant, fx: &mut Vec<Effect>) {
        let Observed { line, progress } = o;
        let inst = &mut self.instances[id];
        inst.progress = inst.base.then(progress);
        if line.activity.is_some() {
            inst.activity = line.activity;
        }
        if line.result {
            inst.result_seen = true;
        }
        if let Some(text) = line.warning {
            fx.push(Effect::Emit(RunEvent::Notice { id, text }));
        }
        if let Some(signal) = line.signal {
            self.on_signal(id, signal, now, fx);
        }
        let decisions = self.ledger.record(id, line.tokens_delta, line.cost_delta);
        // The usage event comes before what it caused, as it happened.
        if line.tokens_delta != 0 || line.cost_delta != Usd::ZERO {
            fx.push(Effect::Emit(RunEvent::Usage {
                id,
                tokens: line.tokens_delta,
            }));
        }
        self.apply(Some(id), decisions, now, fx);
    }

    /// What the ledger tells about the other runs: their figures, their pauses.
    fn news(&mut self, news: Input, now: Instant, fx: &mut Vec<Effect>) {
        match news {
            Input::Shared(figures) => self.shared(figures, now, fx),
            Input::Paused {
                pauses,
                unix_now_ms,
            } => {
                for p in pauses {
                    self.paused_elsewhere(p, unix_now_ms, now, fx);
                }
            }
            _ => {}
        }
    }

    /// The ledger's figures for the shared budgets, or that it cannot be reached.
    fn shared(&mut self, news: Result<Vec<OtherRuns>, String>, now: Instant, fx: &mut Vec<Effect>) {
        match news {
            Ok(others) => {
                self.ledger_reachable(None, fx);
                if let Some(s) = &mut self.sharing {
                    s.refused = false;
                }
                self.apply_others(others, now, fx);
            }
            Err(e) => self.ledger_reachable(Some(e), fx),
        }
    }

    /// Records whether the ledger can be reached; an event when that changes.
    fn ledger_reachable(&mut self, error: Option<String>, fx: &mut Vec<Effect>) {
        let Some(s) = &mut self.sharing else { return };
        if s.down.is_some() != error.is_some() {
            fx.push(Effect::Emit(RunEvent::Ledger {
                unreachable: error.clone(),
            }));
        }
        s.down = error;
    }

    /// Other runs' use and reservations, into this run's ledger: growth elsewhere can
    /// warn and, in block mode, stop this run's instances.
    fn apply_others(&mut self, others: Vec<OtherRuns>, now: Instant, fx: &mut Vec<Effect>) {
        for o in others {
            let decisions = self.ledger.set_elsewhere(&o.key, o.used, o.reserved);
            self.apply(None, decisions, now, fx);
        }
    }

    /// The ledger answered the claims of `ids`: the first `granted` of them launch.
    fn claimed(
        &mut self,
        ids: Vec<InstanceId>,
        answer: Result<(usize, Vec<OtherRuns>), String>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(s) = &mut self.sharing {
            s.claiming = false;
        }
        let granted = match answer {
            Ok((granted, others)) => {
                self.ledger_reachable(None, fx);
                self.apply_others(others, now, fx);
                granted
            }
            Err(e) => {
                self.ledger_reachable(Some(e), fx);
                if self.plan.options.ledger_failure == LedgerFailure::Open {
                    ids.len()
                } else {
                    0
                }
            }
        };
        for (k, id) in ids.into_iter().enumerate() {
            let queued = self.queue.iter().position(|&q| q == id);
            match queued {
                // Ended while its claim was out (an interrupt, a stop): it holds nothing.
                None => self.ledger.finish(id),
                Some(at)
                    if k < granted && self.interrupt.is_none() && self.gate.stopped.is_none() =>
                {
                    if self.gate.check(now, self.running).is_ok() {
                        self.start(at, Vec::new(), now, fx);
                    } else {
                        // Launches were paused (or parallelism lowered) while the claim
                        // was out: it waits for the gate like the rest of the queue, and
                        // claims again when it may launch.
                        self.ledger.unadmit(id);
                    }
                }
                Some(_) => {
                    self.ledger.unadmit(id);
                    let why = match (&self.sharing, self.shared_keys_of(id).first()) {
                        (Some(s), _) if s.down.is_some() => WaitReason::Ledger,
                        (_, Some(key)) => WaitReason::Budget(key.clone()),
                        (_, None) => WaitReason::Ledger,
                    };
                    if let Some(s) = &mut self.sharing {
                        s.refused = s.down.is_none();
                    }
                    self.set_waiting(id, why, fx);
                }
            }
        }
    }

    /// Carries out the ledger's decisions about `id`'s usage (`None`: other runs' use).
    fn apply(
        &mut self,
        id: Option<InstanceId>,
        decisions: Vec<Decision>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        for d in decisions {
            match &d {
                Decision::Warn(w) => fx.push(Effect::Emit(RunEvent::BudgetWarning {
                    id,
                    warning: w.clone(),
                })),
                Decision::Terminate {
                    instances, budget, ..
                } => {
                    let reason = match budget.scope {
                        Scope::Instance(i) => format!("{d} of {}", self.name(i)),
                        _ => d.to_string(),
                    };
                    let targets = instances.clone();
                    fx.push(Effect::Emit(RunEvent::BudgetExceeded {
                        decision: d,
                        reason: reason.clone(),
                    }));
                    for i in targets {
                        self.stop(i, StopReason::Budget(reason.clone()), now, fx);
                    }
                }
            }
        }
    }

    /// Asks a running instance to stop: SIGTERM now, SIGKILL after `--kill-grace`. An
    /// instance whose `result` is in has finished its work and is left to exit.
    fn stop(&mut self, id: InstanceId, why: StopReason, now: Instant, fx: &mut Vec<Effect>) {
        let kill_at = now + self.plan.options.kill_grace;
        let inst = &mut self.instances[id];
        if inst.result_seen && matches!(why, StopReason::Budget(_)) {
            return;
        }
        let Phase::Running {
            timeout_at,
            stopping,
            ..
        } = &mut inst.phase
        else {
            return;
        };
        if stopping.is_some() {
            return;
        }
        *timeout_at = None;
        *stopping = Some(Stopping {
            why,
            kill_at: Some(kill_at),
        });
        note_timer(&mut self.next_timer, Some(kill_at));
        fx.push(Effect::Terminate(id));
        fx.push(Effect::Emit(RunEvent::InstanceTerminated { id }));
    }

    fn exited(&mut self, id: InstanceId, e: Ended, now: Instant, fx: &mut Vec<Effect>) {
        let Phase::Running {
            started, stopping, ..
        } = &self.instances[id].phase
        else {
            return;
        };
        let started = *started;
        let stop = stopping.as_ref().map(|s| s.why.clone());
        self.running -= 1;
        self.ledger.finish(id);
        let inst = &mut self.instances[id];
        if let Some(p) = e.progress {
            inst.progress = inst.base.then(p);
        }
        inst.exit = Some(e.exit);
        inst.stderr_tail = e.stderr_tail;
        inst.log_error = e.log_error;
        inst.result = e.result;
        if let (None, Some(resets_at)) = (&stop, inst.limited.take()) {
            self.usage_limited(id, started, resets_at, now, fx);
            return;
        }
        let (status, reason) = classify(stop.as_ref(), inst, e.error.as_deref());
        let failed = matches!(status, Status::Failed | Status::TimedOut);
        let may_retry = self.interrupt.is_none() && self.gate.stopped.is_none();
        if failed && may_retry && inst.retried < self.plan.options.retries {
            inst.retried += 1;
            inst.base = inst.progress.clone();
            inst.resume = None;
            inst.phase = Phase::Queued;
            self.ledger.restart(id);
            let pos = self.queue.partition_point(|&q| q < id);
            self.queue.insert(pos, id);
            fx.push(Effect::Emit(RunEvent::InstanceRetrying {
                id,
                attempt: inst.retried + 1,
                reason: reason.unwrap_or_default(),
            }));
            return;
        }
        inst.phase = Phase::Done {
            started: Some(started),
            ended: now,
            status,
            reason,
        };
        fx.push(Effect::Emit(RunEvent::InstanceFinished { id }));
        if failed && self.plan.options.fail_fast {
            let why = format!("--fail-fast after {} failed", self.name(id));
            self.stop_launching(why, Status::Interrupted, now, fx);
        }
    }

    fn interrupted(&mut self, which: Interrupt, now: Instant, fx: &mut Vec<Effect>) {
        if self.interrupt.is_some() {
            // Second signal: no more grace.
            fx.push(Effect::Emit(RunEvent::Interrupted {
                which,
                second: true,
            }));
            for id in 0..self.instances.len() {
                if let Phase::Running { stopping, .. } = &mut self.instances[id].phase {
                    if let Some(s) = stopping {
                        s.kill_at = None;
                    }
                    fx.push(Effect::Kill(id));
                }
            }
            self.recompute_timers();
            return;
        }
        self.interrupt = Some(which);
        fx.push(Effect::Emit(RunEvent::Interrupted {
            which,
            second: false,
        }));
        for id in 0..self.instances.len() {
            match self.instances[id].phase {
                Phase::Running { .. } => self.stop(id, StopReason::Interrupt, now, fx),
                Phase::Queued | Phase::Waiting(_) => {
                    self.instances[id].phase = Phase::Done {
                        started: None,
                        ended: now,
                        status: Status::Interrupted,
                        reason: Some("not started: the run was interrupted".into()),
                    };
                    fx.push(Effect::Emit(RunEvent::InstanceFinished { id }));
                }
                Phase::Done { .. } => {}
            }
        }
        self.queue.clear();
        self.launch_timer = None;
    }

    fn fire_timers(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if !matches!(self.next_timer, Some(t) if t <= now) {
            return;
        }
        for id in 0..self.instances.len() {
            let Phase::Running {
                timeout_at,
                stopping,
                ..
            } = &mut self.instances[id].phase
            else {
                continue;
            };
            if timeout_at.is_some_and(|t| t <= now) {
                *timeout_at = None;
                let limit = self.plan.instances[id].timeout.unwrap_or_default();
                self.stop(id, StopReason::Timeout(limit), now, fx);
                continue;
            }
            if let Some(s) = stopping {
                if s.kill_at.is_some_and(|t| t <= now) {
                    s.kill_at = None;
                    self.instances[id].activity = Some("killed after the grace period".into());
                    fx.push(Effect::Kill(id));
                    fx.push(Effect::Emit(RunEvent::InstanceKilled { id }));
                }
            }
        }
        self.recompute_timers();
    }

    fn recompute_timers(&mut self) {
        self.next_timer = self
            .instances
            .iter()
            .filter_map(|i| match &i.phase {
                Phase::Running {
                    timeout_at,
                    stopping,
                    ..
                } => [*timeout_at, stopping.as_ref().and_then(|s| s.kill_at)]
                    .into_iter()
                    .flatten()
                    .min(),
                _ => None,
            })
            .min();
    }

    /// Launches every queued instance that may start now, in plan order; those that must
    /// first claim their share of budgets shared with other runs go to the ledger as one
    /// batch.
    fn launch_ready(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let mut batch = Vec::new();
        self.admit_ready(now, fx, &mut batch);
        if !batch.is_empty() {
            if let Some(s) = &mut self.sharing {
                s.claiming = true;
            }
            fx.push(Effect::Claim { batch });
        }
    }

    /// [`RunState::launch_ready`]: launches, and collects the claims into `batch`.
    fn admit_ready(
        &mut self,
        now: Instant,
        fx: &mut Vec<Effect>,
        batch: &mut Vec<(InstanceId, Vec<ClaimOf>)>,
    ) {
        self.launch_timer = None;
        if self.interrupt.is_some() || self.gate.stopped.is_some() {
            return;
        }
        let mut i = 0;
        while i < self.queue.len() {
            // With launches spaced out, one claim at a time: the next launch waits for
            // this one's.
            if !batch.is_empty() && !self.gate.spacing.is_zero() {
                return;
            }
            // Instances in the batch count as running (--max-parallel).
            match self.gate.check(now, self.running + batch.len()) {
                Err(GateWait::Until(t)) => {
                    self.launch_timer = Some(t);
                    return;
                }
                Err(GateWait::Hold(t, why)) => {
                    self.launch_timer = Some(t);
                    for k in i..self.queue.len() {
                        self.set_waiting(self.queue[k], why.clone(), fx);
                    }
                    return;
                }
                Err(GateWait::Slot(max)) => {
                    for k in i..self.queue.len() {
                        self.set_waiting(self.queue[k], WaitReason::Slot { max }, fx);
                    }
                    return;
                }
                Ok(()) => {}
            }
            let id = self.queue[i];
            let shared = self.shared_keys_of(id);
            let (claiming, down) = match &self.sharing {
                Some(s) if !shared.is_empty() => (s.claiming || s.refused, s.down.is_some()),
                _ => (false, false),
            };
            if claiming {
                // After the claim out (or the ledger's next figures, after a refusal); the
                // rest keep their place in plan order.
                return;
            }
            let closed = self.plan.options.ledger_failure == LedgerFailure::Closed;
            if down && closed {
                self.set_waiting(id, WaitReason::Ledger, fx);
                i += 1;
                continue;
            }
            match self.ledger.admit(id) {
                Admission::Admit { warnings } => {
                    if !shared.is_empty() && !down && self.ledger.mode() == Mode::Block {
                        let claims = shared
                            .into_iter()
                            .filter_map(|key| {
                                let own = self.ledger.own_share(&key)?;
                                Some(ClaimOf {
                                    key,
                                    mine: own.used + own.reserved,
                                    hold: own.reserved,
                                    limit: own.limit,
                                })
                            })
                            .collect();
                        batch.push((id, claims));
                        i += 1;
                        continue;
                    }
                    self.start(i, warnings, now, fx);
                }
                Admission::Wait { budget } => {
                    self.set_waiting(id, WaitReason::Budget(budget), fx);
                    i += 1;
                }
                block @ Admission::Block { .. } => {
                    self.queue.remove(i);
                    let reason = self.block_reason(&block, now);
                    self.instances[id].phase = Phase::Done {
                        started: None,
                        ended: now,
                        status: Status::Blocked,
                        reason: Some(reason),
                    };
                    fx.push(Effect::Emit(RunEvent::InstanceBlocked { id }));
                    // Every instance ends with exactly one instance_finished event.
                    fx.push(Effect::Emit(RunEvent::InstanceFinished { id }));
                }
            }
        }
    }

    /// Why an instance is blocked; for a periodic budget, also when its period ends
    /// (UTC), when it could fit again.
    fn block_reason(&self, block: &Admission, now: Instant) -> String {
        let Admission::Block { budget, .. } = block else {
            return block.to_string();
        };
        let Scope::Periodic(period, _) = &budget.scope else {
            return block.to_string();
        };
        let at = chrono::DateTime::from_timestamp_millis(self.unix_ms_of(now)).unwrap_or_default();
        let end = self.plan.budgets.zone.window(*period, at).end;
        match fmt_unix(end.timestamp()) {
            Some(t) => format!("{block}; the {} ends {t}", period.as_str()),
            None => block.to_string(),
        }
    }

    /// Launches the admitted instance at `queue[at]`.
    fn start(&mut self, at: usize, warnings: Vec<Warning>, now: Instant, fx: &mut Vec<Effect>) {
        let id = self.queue.remove(at);
        for warning in warnings {
            fx.push(Effect::Emit(RunEvent::BudgetWarning {
                id: Some(id),
                warning,
            }));
        }
        let timeout_at = self.plan.instances[id].timeout.map(|t| now + t);
        note_timer(&mut self.next_timer, timeout_at);
        let inst = &mut self.instances[id];
        inst.phase = Phase::Running {
            started: now,
            timeout_at,
            stopping: None,
        };
        inst.result_seen = false;
        self.running += 1;
        self.gate.launched(now);
        fx.push(Effect::Spawn(id));
    }

    /// Marks a queued instance as waiting; an event only when the reason changes.
    fn set_waiting(&mut self, id: InstanceId, why: WaitReason, fx: &mut Vec<Effect>) {
        let inst = &mut self.instances[id];
        if matches!(&inst.phase, Phase::Waiting(w) if *w == why) {
            return;
        }
        inst.phase = Phase::Waiting(why);
        fx.push(Effect::Emit(RunEvent::InstanceWaiting { id }));
    }

    /// What Claude said about the API's limits, for the whole fleet.
    fn on_signal(&mut self, id: InstanceId, signal: Signal, now: Instant, fx: &mut Vec<Effect>) {
        match signal {
            Signal::Retry {
                status,
                delay,
                ref error,
                ..
            } if signal.is_backoff() => {
                let cause = match (status, error) {
                    (Some(s), _) => s.to_string(),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "a retry".into(),
                };
                self.backoff(id, cause, Some(delay), now, fx);
            }
            Signal::RateLimit { .. } if signal.is_warning() => {
                self.backoff(id, "allowed_warning".into(), None, now, fx);
            }
            Signal::UsageLimit { resets_at } => {
                self.instances[id].limited = Some(resets_at);
            }
            Signal::SpendCap => {
                let name = self.name(id).to_string();
                self.stop_launching(
                    format!(
                        "organisation spend cap reached (enforced_spend_limit_reached from {name})"
                    ),
                    Status::Failed,
                    now,
                    fx,
                );
            }
            _ => {}
        }
    }

    /// Fleet backoff on a signal from instance `id`.
    fn backoff(
        &mut self,
        id: InstanceId,
        cause: String,
        delay: Option<Duration>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let name = self.name(id).to_string();
        let before = self.gate.pause.as_ref().map(|p| p.0);
        let events = self
            .gate
            .backoff(&name, cause.clone(), delay, self.running, now);
        fx.extend(events.into_iter().map(Effect::Emit));
        match self.gate.pause.as_ref().map(|p| p.0) {
            Some(until) if Some(until) != before => fx.push(Effect::Publish(SharedPause {
                usage_limit: false,
                until_ms: self.unix_ms_of(until),
                cause,
            })),
            _ => {}
        }
    }

    /// A pause another run of the project published. A backoff holds launches until it
    /// ends. The usage limit, with `--on-usage-limit wait`, holds them until its reset
    /// (within `--max-wait`); with `stop` nothing more is launched, as if an instance of
    /// this run had met it.
    fn paused_elsewhere(
        &mut self,
        p: SharedPause,
        unix_now_ms: i64,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let ahead = u64::try_from(p.until_ms.saturating_sub(unix_now_ms)).unwrap_or(0);
        let until = now + Duration::from_millis(ahead);
        if until <= now || self.gate.stopped.is_some() {
            return;
        }
        if !p.usage_limit {
            if self.gate.pause.as_ref().is_some_and(|(t, _)| *t >= until) {
                return;
            }
            let reason = PauseReason {
                cause: p.cause,
                from: vec!["another run of the project".into()],
            };
            if self.gate.pause.as_ref().is_none_or(|(t, _)| *t <= now) {
                fx.push(Effect::Emit(RunEvent::LaunchesPaused {
                    reason: reason.to_string(),
                    until,
                }));
            }
            self.gate.pause = Some((until, reason));
            return;
        }
        let resets_at = p.until_ms.div_euclid(1000);
        let resets = fmt_unix(resets_at)
            .map(|t| format!("; resets {t}"))
            .unwrap_or_default();
        let first = *self.first_limit.get_or_insert(now);
        let waits = self.plan.options.on_usage_limit == UsageLimitPolicy::Wait;
        if !waits || until > first + self.plan.options.max_wait {
            let later = if waits {
                ", later than --max-wait allows"
            } else {
                ""
            };
            self.stop_launching(
                format!("usage limit reached by another run of the project{resets}{later}"),
                Status::RateLimited,
                now,
                fx,
            );
            return;
        }
        let until = until + RESET_MARGIN;
        if self.gate.hold.is_some_and(|(t, _)| t >= until) {
            return;
        }
        if self.gate.hold.is_none() {
            fx.push(Effect::Emit(RunEvent::LaunchesPaused {
                reason: format!("usage limit reached by another run of the project{resets}"),
                until,
            }));
        }
        self.gate.hold = Some((until, Some(resets_at)));
    }

    /// An instance's process ended on the usage limit. With `wait` (and a reset within
    /// `--max-wait`) it waits for the reset and is resumed; otherwise it is
    /// `rate_limited` and nothing more is launched.
    fn usage_limited(
        &mut self,
        id: InstanceId,
        started: Instant,
        resets_at: Option<i64>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(t) = resets_at {
            fx.push(Effect::Publish(SharedPause {
                usage_limit: true,
                until_ms: t.saturating_mul(1000),
                cause: "usage limit reached".into(),
            }));
        }
        let first = *self.first_limit.get_or_insert(now);
        let deadline = first + self.plan.options.max_wait;
        let until = match resets_at {
            Some(t) => self.instant_of(t, now) + RESET_MARGIN,
            None => now + PROBE,
        };
        let resets = resets_at
            .and_then(fmt_unix)
            .map(|t| format!("; resets {t}"))
            .unwrap_or_default();
        let waits = self.plan.options.on_usage_limit == UsageLimitPolicy::Wait;
        let inst = &mut self.instances[id];
        if waits && until <= deadline && inst.progress.session_id.is_some() {
            inst.base = inst.progress.clone();
            inst.resume = inst.progress.session_id.clone();
            inst.phase = Phase::Queued;
            let pos = self.queue.partition_point(|&q| q < id);
            self.queue.insert(pos, id);
            let held = self.gate.hold.map_or(until, |(t, _)| t.max(until));
            if self.gate.hold.is_none() {
                fx.push(Effect::Emit(RunEvent::LaunchesPaused {
                    reason: format!("usage limit reached by {}{resets}", self.name(id)),
                    until: held,
                }));
            }
            self.gate.hold = Some((held, resets_at));
            return;
        }
        let why = if waits && until > deadline {
            format!("usage limit reached{resets}, later than --max-wait allows")
        } else {
            format!("usage limit reached{resets}")
        };
        inst.phase = Phase::Done {
            started: Some(started),
            ended: now,
            status: Status::RateLimited,
            reason: Some(why.clone()),
        };
        fx.push(Effect::Emit(RunEvent::InstanceFinished { id }));
        self.stop_launching(why, Status::RateLimited, now, fx);
    }

    /// Launches nothing more: every instance not started yet ends with `status`.
    /// Running instances go on.
    fn stop_launching(&mut self, why: String, status: Status, now: Instant, fx: &mut Vec<Effect>) {
        if self.gate.stopped.is_some() {
            return;
        }
        self.gate.stopped = Some(why.clone());
        self.gate.hold = None;
        fx.push(Effect::Emit(RunEvent::LaunchesStopped {
            reason: why.clone(),
        }));
        for id in std::mem::take(&mut self.queue) {
            self.instances[id].phase = Phase::Done {
                started: None,
                ended: now,
                status,
                reason: Some(format!("not started: {why}")),
            };
            fx.push(Effect::Emit(RunEvent::InstanceFinished { id }));
        }
    }

    /// The exit code and its reason (SPEC section 6).
    /// The exit code and its reason (SPEC section 6). Incomplete `--log-dir` logs are
    /// named in the reason; a `--report` that could not be written turns success into
    /// [`ExitCode::Failed`] (a budget's 3 or a signal's code, more specific, stays) and is
    /// named too.
    pub fn outcome(&self) -> Outcome {
        let mut o = self.instances_outcome();
        let incomplete: Vec<&str> = self
            .plan
            .instances
            .iter()
            .zip(&self.instances)
            .filter(|(_, s)| s.log_error.is_some())
            .map(|(spec, _)| spec.name.as_str())
            .collect();
        if !incomplete.is_empty() {
            o.reason = format!(
                "{}; incomplete --log-dir logs: {}",
                o.reason,
                incomplete.join(", ")
            );
        }
        if let Some(e) = &self.report_error {
            if o.exit == ExitCode::Success {
                o.exit = ExitCode::Failed;
            }
            o.reason = format!("{}; {e}", o.reason);
        }
        o
    }

    fn instances_outcome(&self) -> Outcome {
        let n = self.instances.len();
        let count = |st: Status| self.count(st);
        if let Some(i) = self.interrupt {
            return Outcome {
                exit: ExitCode::Signal(i),
                reason: format!(
                    "{}; {} of {} completed",
                    i.describe(),
                    count(Status::Completed),
                    plural(n, "instance")
                ),
            };
        }
        let list = |parts: &[(usize, &str)]| {
            parts
                .iter()
                .filter(|(k, _)| *k > 0)
                .map(|(k, what)| format!("{k} {what}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (blocked, terminated) = (count(Status::Blocked), count(Status::Terminated));
        if blocked + terminated > 0 {
            return Outcome {
                exit: ExitCode::Budget,
                reason: format!(
                    "a budget stopped instances: {}",
                    list(&[(terminated, "terminated"), (blocked, "blocked")])
                ),
            };
        }
        let (failed, timed_out, interrupted, limited) = (
            count(Status::Failed),
            count(Status::TimedOut),
            count(Status::Interrupted),
            count(Status::RateLimited),
        );
        if failed + timed_out + interrupted + limited > 0 {
            return Outcome {
                exit: ExitCode::Failed,
                reason: format!(
                    "not every instance completed: {}",
                    list(&[
                        (failed, "failed"),
                        (timed_out, "timed out"),
                        (interrupted, "interrupted"),
                        (limited, "rate limited")
                    ])
                ),
            };
        }
        Outcome {
            exit: ExitCode::Success,
            reason: match n {
                1 => "the instance completed".to_string(),
                _ => format!("all {n} instances completed"),
            },
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Lowers `next` to cover a timer just set.
fn note_timer(next: &mut Option<Instant>, at: Option<Instant>) {
    if let Some(t) = at {
        *next = Some(next.map_or(t, |n| n.min(t)));
    }
}

/// The final status of an instance that exited, and why.
fn classify(
    stop: Option<&StopReason>,
    inst: &Instance,
    error: Option<&str>,
) -> (Status, Option<String>) {
    if let Some(why) = stop {
        return (why.status(), Some(why.to_string()));
    }
    let exit = inst.exit.unwrap_or_default();
    if let (
        Some(e),
        ExitInfo {
            code: None,
            signal: None,
        },
    ) = (error, exit)
    {
        return (Status::Failed, Some(e.to_string()));
    }
    let stderr_hint = || {
        inst.stderr_tail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default()
    };
    if let Some(r) = &inst.result {
        let text = r.text.as_deref().unwrap_or("");
        if text.starts_with("Unknown command") {
            return (Status::Failed, Some(first_line(text).to_string()));
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
    if let Some(e) = error {
        return (
            Status::Failed,
            Some(format!("reading its output failed: {e}")),
        );
    }
    if inst.result.is_none() {
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

mod gate;
#[cfg(test)]
mod tests;

use gate::{GateWait, LaunchGate};
pub use gate::{PROBE, RESET_MARGIN};
