//! `-v`, `-vv` and `RUST_LOG`: the run's events as diagnostics on stderr. `-v` (info)
//! shows each launch with its exact argv, why an instance waits or is blocked, budget
//! warnings and stops, terminations and how each instance ended; `-vv` (debug) adds
//! every ledger write (tokens counted, with the budgets' new totals). Signals sent and
//! processes reaped are logged where they happen (`runtime`).

use crate::core::budget::Amount;
use crate::core::run::{RunEvent, RunState};

/// Logs `event` at the level its detail deserves.
pub fn log_event(event: &RunEvent, run: &RunState) {
    let name = |id: usize| run.name(id).to_string();
    match event {
        RunEvent::RunStarted { delay } => tracing::info!(
            instances = run.instances.len(),
            max_parallel = run.plan.options.max_parallel,
            mode = ?run.plan.budgets.mode,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "run started"
        ),
        RunEvent::InstanceStarted { id, pid, argv } => {
            tracing::info!(instance = %name(*id), pid, argv = ?argv, "launched")
        }
        // Every usage delta comes here: build the budget list only when it is shown.
        RunEvent::Usage { id, tokens } if tracing::enabled!(tracing::Level::DEBUG) => {
            let p = &run.instances[*id].progress;
            let budgets: Vec<String> = run
                .ledger
                .budgets()
                .iter()
                .map(|b| format!("{}={}/{}", b.key, exact(b.used), exact(b.limit)))
                .collect();
            tracing::debug!(
                instance = %name(*id),
                delta = tokens,
                total = p.usage.total(),
                cost = %p.cost,
                budgets = ?budgets,
                "ledger: usage counted"
            );
        }
        RunEvent::Usage { .. } => {}
        RunEvent::Notice { id, text } => tracing::info!(instance = %name(*id), %text, "notice"),
        RunEvent::BudgetWarning { id, warning } => {
            let who = id.map(name).unwrap_or_else(|| "(other runs)".into());
            tracing::info!(instance = %who, %warning, "budget warning")
        }
        RunEvent::BudgetExceeded { reason, .. } => {
            tracing::info!(%reason, "budget exceeded: stopping instances")
        }
        RunEvent::InstanceWaiting { id } => tracing::info!(
            instance = %name(*id),
            reason = %run.instances[*id].reason().unwrap_or_default(),
            "admission: waiting"
        ),
        RunEvent::InstanceBlocked { id } => tracing::info!(
            instance = %name(*id),
            reason = %run.instances[*id].reason().unwrap_or_default(),
            "admission: blocked, never launched"
        ),
        RunEvent::InstanceTerminated { id } => tracing::info!(
            instance = %name(*id),
            reason = %run.instances[*id].reason().unwrap_or_default(),
            "terminating (SIGTERM to its process group)"
        ),
        RunEvent::InstanceKilled { id } => {
            tracing::info!(instance = %name(*id), "grace expired (SIGKILL to its process group)")
        }
        RunEvent::InstanceFinished { id } => {
            let inst = &run.instances[*id];
            tracing::info!(
                instance = %name(*id),
                status = inst.status().as_str(),
                exit_code = ?inst.exit.as_ref().and_then(|e| e.code),
                signal = ?inst.exit.as_ref().and_then(|e| e.signal),
                reason = %inst.reason().unwrap_or_default(),
                tokens = inst.progress.usage.total(),
                "finished"
            );
        }
        RunEvent::Interrupted { which, second } => {
            tracing::info!(signal = which.describe(), second, "interrupted")
        }
        RunEvent::InstanceRetrying {
            id,
            attempt,
            reason,
        } => tracing::info!(instance = %name(*id), attempt, %reason, "retrying"),
        RunEvent::LaunchesPaused { reason, .. } => {
            tracing::info!(%reason, "admission: launches paused")
        }
        RunEvent::LaunchesResumed { reason } => {
            tracing::info!(%reason, "admission: launches resumed")
        }
        RunEvent::LaunchesStopped { reason } => {
            tracing::info!(%reason, "admission: launches stopped")
        }
        RunEvent::Ledger { unreachable } => {
            tracing::info!(error = ?unreachable, "ledger: reachable changed")
        }
        RunEvent::Parallelism { limit, reason } => {
            tracing::info!(limit = ?limit, %reason, "admission: parallelism changed")
        }
        RunEvent::RunFinished => {
            let outcome = run.outcome();
            tracing::info!(exit_code = outcome.exit.code(), reason = %outcome.reason, "run finished");
        }
    }
}

/// Tokens as a whole number, dollars to the cent fraction the ledger keeps.
fn exact(a: Amount) -> String {
    match a {
        Amount::Tokens(t) => t.to_string(),
        Amount::Usd(u) => format!("${:.9}", u.as_dollars()),
    }
}
