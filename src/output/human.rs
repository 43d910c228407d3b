//! The console's side of the event stream: which [`RunEvent`]s a person is told about
//! (warnings and errors above the live region, the final summary), and the [`Snapshot`]
//! every human report is rendered from.

use crate::core::budget::{Amount, BudgetStatus, Decision, Scope};
use crate::core::plan::Status;
use crate::core::run::{Phase, RunEvent, RunState, WaitReason};
use crate::output::report::{fmt_duration, BudgetLine, InstanceLine, Snapshot};
use crate::output::terminal::Console;
use std::time::Instant;

impl Console {
    /// Tells a person what they need to know about `event`.
    pub fn on_event(&mut self, event: &RunEvent, run: &RunState, now: Instant) {
        let name = |id: usize| run.name(id);
        match event {
            RunEvent::RunStarted { delay } if !delay.is_zero() => {
                let at =
                    chrono::Local::now() + chrono::Duration::from_std(*delay).unwrap_or_default();
                let today = chrono::Local::now().date_naive();
                let when = if at.date_naive() == today {
                    at.format("%H:%M:%S").to_string()
                } else {
                    at.format("%Y-%m-%d %H:%M:%S").to_string()
                };
                self.line(&format!("waiting until {when} to start"));
            }
            RunEvent::Notice { id, text } => self.warn(&format!("{}: {text}", name(*id))),
            RunEvent::BudgetWarning { id, warning } => {
                // A warning about a launch names the instance; one about use names the
                // budget, which says it all.
                if matches!(
                    warning.kind,
                    crate::core::budget::WarningKind::WontFit { .. }
                ) {
                    let who = id.map(name).unwrap_or_else(|| "another run");
                    self.warn(&format!("{who}: {warning}"));
                } else {
                    self.warn(&warning.to_string());
                }
            }
            RunEvent::BudgetExceeded {
                decision: Decision::Terminate { instances, .. },
                reason,
            } => {
                let targets = if instances.is_empty() {
                    "nothing (no instance running)".to_string()
                } else {
                    instances
                        .iter()
                        .map(|&i| name(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                self.warn(&format!("{reason}: terminating {targets}"));
            }
            RunEvent::InstanceBlocked { id } => {
                let why = run.instances[*id].reason().unwrap_or_default();
                self.warn(&format!("{}: blocked, {why}", name(*id)));
            }
            RunEvent::InstanceFinished { id } => {
                let inst = &run.instances[*id];
                if inst.status() == Status::Failed {
                    let why = inst.reason().unwrap_or_default();
                    self.error(&format!("{}: failed: {why}", name(*id)));
                }
            }
            RunEvent::Interrupted { which, second } => {
                // The user's own doing: a notice, not an error.
                if *second {
                    self.notice("second interrupt: killing every instance now");
                } else {
                    self.notice(&format!(
                        "{}: stopping every instance (press Ctrl-C again to kill at once)",
                        which.describe()
                    ));
                }
            }
            RunEvent::LaunchesPaused { reason, until } => {
                let secs = until.saturating_duration_since(now).as_secs_f64();
                self.warn(&format!("launches paused {secs:.0}s: {reason}"));
            }
            RunEvent::InstanceRetrying {
                id,
                attempt,
                reason,
            } => {
                self.warn(&format!("{}: {reason}; attempt {attempt}", name(*id)));
            }
            RunEvent::LaunchesResumed { reason } => {
                self.line(&format!("launches resumed ({reason})"));
            }
            RunEvent::LaunchesStopped { reason } => {
                self.warn(&format!("launching nothing more: {reason}"));
            }
            RunEvent::Ledger {
                unreachable: Some(error),
            } => self.warn(&format!(
                "the ledger cannot be reached ({error}); {}",
                match run.plan.options.ledger_failure {
                    crate::core::plan::LedgerFailure::Closed =>
                        "launching nothing that counts toward a shared budget until it is back (--ledger-failure closed)",
                    crate::core::plan::LedgerFailure::Open =>
                        "going on without the other runs' figures (--ledger-failure open)",
                }
            )),
            RunEvent::Ledger { unreachable: None } => {
                self.line("the ledger can be reached again; its figures are up to date")
            }
            RunEvent::Parallelism { limit, reason } => match limit {
                Some(n) => self.warn(&format!("at most {n} at once for now: {reason}")),
                None => self.line(&format!("parallelism back as configured: {reason}")),
            },
            RunEvent::RunFinished => {
                let outcome = run.outcome();
                self.clear_live();
                self.summary(&snapshot(run, now), outcome.exit.code(), &outcome.reason);
            }
            _ => {}
        }
    }
}

/// What the human reports show of `run` at `now`.
pub fn snapshot(run: &RunState, now: Instant) -> Snapshot<'_> {
    let (totals, total_cost) = run.totals();
    let budgets = run
        .ledger
        .budgets()
        .iter()
        .filter(|b| !matches!(b.key.scope, Scope::Instance(_)))
        .map(budget_line)
        .collect();
    let instances = run
        .plan
        .instances
        .iter()
        .zip(&run.instances)
        .enumerate()
        .map(|(id, (spec, s))| InstanceLine {
            name: &spec.name,
            status: s.status(),
            model: s.progress.model.as_deref().or(spec.model.as_deref()),
            duration: s.duration(now),
            usage: s.progress.usage,
            cost: s.progress.cost,
            tools: s.progress.tools,
            budget_percent: run.ledger.instance_budget_percent(id),
            activity: s.activity.as_deref(),
            result: s.result.as_ref().and_then(|r| r.text.as_deref()),
            reason: s.reason(),
            ended_ago: match &s.phase {
                Phase::Done { ended, .. } => Some(now.saturating_duration_since(*ended)),
                _ => None,
            },
        })
        .collect();
    Snapshot {
        elapsed: now.saturating_duration_since(run.started_at),
        mode: run.plan.budgets.mode,
        totals,
        total_cost,
        budgets,
        instances,
        visuals: !run.plan.options.disable_visuals,
        // --start-at: the countdown, until the first launch.
        starts_in: run
            .plan
            .options
            .start_at
            .filter(|_| run.instances.iter().all(|i| i.status() == Status::Pending))
            .and_then(|at| (at - chrono::Local::now()).to_std().ok())
            .filter(|d| !d.is_zero()),
        launches: launches_line(run, now),
    }
}

/// `launches paused 4s: 429 from test, lint · 2 at once`, `usage limit reached; resets
/// … · resuming in 12m03s`: why nothing launches now, with a countdown.
fn launches_line(run: &RunState, now: Instant) -> Option<String> {
    let (allowed, reduced) = run.parallelism();
    let mut parts = Vec::new();
    if let Some((why, until)) = run.launch_hold(now) {
        let left = fmt_duration(until.saturating_duration_since(now));
        parts.push(match why {
            WaitReason::UsageLimit { .. } => format!("{why} · resuming in {left}"),
            _ => format!("{why} · {left} left"),
        });
    }
    if reduced {
        parts.push(format!("{allowed} at once (lowered by rate limits)"));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn budget_line(b: &BudgetStatus) -> BudgetLine {
    let label = match &b.key.scope {
        Scope::Instance(i) => format!("instance #{i}"),
        scope => scope.key_text().unwrap_or_else(|| "overall".to_string()),
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
        state: b.state,
    }
}
