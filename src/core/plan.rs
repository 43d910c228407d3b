//! The validated plan: what the CLI and config files produce and everything downstream
//! consumes. Values here are typed and checked, so nothing downstream re-validates.

use crate::core::estimate::Estimate;
use crate::core::usage::Usd;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Index of an instance in `Plan::instances`.
pub type InstanceId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Warn,
    Block,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Warn => "warn",
            Mode::Block => "block",
        }
    }
}

/// `--on-usage-limit`: what an instance stopped by the subscription's usage limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UsageLimitPolicy {
    /// It ends as `rate_limited` and nothing more is launched.
    #[default]
    Stop,
    /// Wait for the reset (at most `--max-wait`), then resume its conversation.
    Wait,
}

/// `--ledger-failure`: what a run does while the ledger that shares its budgets with other
/// runs cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LedgerFailure {
    /// Launch nothing new that counts toward a shared budget until the ledger is back;
    /// what runs goes on under this run's own view of the budgets (block mode's default).
    #[default]
    Closed,
    /// Go on as if the other runs spent nothing more, and reconcile when the ledger is
    /// back (warn mode's default).
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum OutputFormat {
    #[default]
    #[serde(rename = "stream-json")]
    StreamJson,
    #[serde(rename = "json")]
    Json,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::StreamJson => "stream-json",
            OutputFormat::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Lifecycle of one instance (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Waiting,
    Running,
    Completed,
    Failed,
    TimedOut,
    Blocked,
    Terminated,
    Interrupted,
    /// Stopped by the subscription's usage limit (and not resumed).
    RateLimited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Blocked => "blocked",
            Status::Terminated => "terminated",
            Status::Interrupted => "interrupted",
            Status::RateLimited => "rate_limited",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Status::Pending | Status::Waiting | Status::Running)
    }
}

/// One Claude Code instance to run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceSpec {
    /// Unique, human-readable.
    pub name: String,
    /// The prompt: a slash command (`/test --unit`) or free text.
    pub command: String,
    pub description: Option<String>,
    /// Absolute working directory (workspace joined with the instance's subdirectory).
    pub workspace: PathBuf,
    pub permission_mode: Option<String>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub model: Option<String>,
    pub output_format: OutputFormat,
    /// Per-instance token cap (`max_tokens_per_command`).
    pub max_tokens: Option<u64>,
    /// Per-instance dollar cap (`max_cost_usd`); also passed to claude as `--max-budget-usd`.
    pub max_cost: Option<Usd>,
    pub timeout: Option<Duration>,
    pub session_id: Option<String>,
    pub extra_args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The pre-launch estimate (`core::estimate`), when the caller worked one out from
    /// the ledger's history; `None` falls back to the cap or `--estimate`.
    pub estimate: Option<Estimate>,
}

impl InstanceSpec {
    /// First whitespace-separated word when the command is a slash command
    /// (`/test --unit` → `/test`); free-text prompts have none.
    pub fn base_command(&self) -> Option<&str> {
        base_command(&self.command)
    }
}

pub fn base_command(command: &str) -> Option<&str> {
    let first = command.split_whitespace().next()?;
    (first.starts_with('/') && first.len() > 1).then_some(first)
}

/// Budgets as configured (SPEC section 5). Per-instance caps live on `InstanceSpec`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BudgetConfig {
    pub overall_tokens: Option<u64>,
    pub overall_cost: Option<Usd>,
    /// Base command (`/test`) → token limit.
    pub command_tokens: BTreeMap<String, u64>,
    /// Base command → dollar limit.
    pub command_costs: BTreeMap<String, Usd>,
    pub mode: Mode,
    /// Percent (0 < p ≤ 100) at which a warning is given; 100 always warns too.
    pub warn_at_percent: f64,
    /// Pre-launch token estimate for instances without `max_tokens`.
    pub estimate_tokens: u64,
    /// `--estimate` was given explicitly: it pins every estimate, history is not used.
    pub estimate_pinned: bool,
    /// Project-scoped budgets per UTC day, ISO week or month (`--daily-token-budget`, …),
    /// counting every run of the project recorded in the ledger.
    pub periodic: Vec<PeriodicLimit>,
    /// The zone their days, weeks and months are counted in (`--budget-timezone`).
    pub zone: crate::core::period::Zone,
}

/// A project's budget for one kind of period (issue 12). The run seeds it with what the
/// ledger recorded for the project in the current period (`Ledger::set_elsewhere`).
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodicLimit {
    pub period: crate::core::period::Period,
    pub scope: crate::core::period::PeriodScope,
    pub tokens: Option<u64>,
    pub usd: Option<Usd>,
}

impl PeriodicLimit {
    /// Its limit in `unit`, when it sets one.
    pub fn limit(&self, unit: crate::core::budget::Unit) -> Option<crate::core::budget::Amount> {
        use crate::core::budget::{Amount, Unit};
        match unit {
            Unit::Tokens => self.tokens.map(Amount::Tokens),
            Unit::Usd => self.usd.map(Amount::Usd),
        }
    }
}

/// How the run is carried out and shown.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    pub claude_path: PathBuf,
    pub workspace: PathBuf,
    /// 0 = no limit.
    pub max_parallel: usize,
    pub startup_delay: Duration,
    pub kill_grace: Duration,
    pub on_usage_limit: UsageLimitPolicy,
    /// While the ledger sharing the periodic budgets cannot be reached.
    pub ledger_failure: LedgerFailure,
    /// `--max-wait`: the longest a usage limit is waited out.
    pub max_wait: Duration,
    /// `--backoff-quiet`: how long without a 429/529 before parallelism goes up a step.
    pub backoff_quiet: Duration,
    /// Absolute local time at which to start launching; `None` = now.
    pub start_at: Option<chrono::DateTime<chrono::Local>>,
    pub dry_run: bool,
    pub strict: bool,
    pub simulate: bool,
    pub disable_visuals: bool,
    /// `Duration::ZERO` = no periodic reports.
    pub status_interval: Duration,
    pub max_line_length: usize,
    pub quiet: bool,
    pub verbose: u8,
    pub color: ColorChoice,
    pub json: bool,
    pub report: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
    pub pricing_file: Option<PathBuf>,
    /// This run's id (a UUID), in the events, the report and the ledger.
    pub run_id: String,
    /// `--project`, else the git top-level directory's name, else the workspace's.
    pub project: String,
    /// `--retries N`: relaunch a failed or timed-out instance up to N times (never a
    /// budget stop). 0 = no retries.
    pub retries: u32,
    /// `--fail-fast`: launch nothing more after the first failure.
    pub fail_fast: bool,
    /// `--rerun-failed REPORT`: the report the plan's instances were chosen from (only
    /// those that did not complete in it).
    pub rerun_failed: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            claude_path: PathBuf::from("claude"),
            workspace: PathBuf::from("."),
            max_parallel: 0,
            startup_delay: Duration::from_secs(1),
            kill_grace: Duration::from_secs(5),
            on_usage_limit: UsageLimitPolicy::Stop,
            ledger_failure: LedgerFailure::Closed,
            max_wait: Duration::from_secs(6 * 3600),
            backoff_quiet: Duration::from_secs(10),
            start_at: None,
            dry_run: false,
            strict: false,
            simulate: false,
            disable_visuals: false,
            status_interval: Duration::from_secs(5),
            max_line_length: 500,
            quiet: false,
            verbose: 0,
            color: ColorChoice::Auto,
            json: false,
            report: None,
            log_dir: None,
            pricing_file: None,
            run_id: String::new(),
            project: String::new(),
            retries: 0,
            fail_fast: false,
            rerun_failed: None,
        }
    }
}

/// Everything a run needs, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub instances: Vec<InstanceSpec>,
    pub budgets: BudgetConfig,
    pub options: RunOptions,
}

impl Plan {
    /// Whether a budget can stop a running instance: block mode and at least one budget
    /// (run, command, periodic) or instance cap. Otherwise budgets only warn.
    pub fn budget_can_stop(&self) -> bool {
        let b = &self.budgets;
        b.mode == Mode::Block
            && (b.overall_tokens.is_some()
                || b.overall_cost.is_some()
                || !b.command_tokens.is_empty()
                || !b.command_costs.is_empty()
                || !b.periodic.is_empty()
                || self
                    .instances
                    .iter()
                    .any(|i| i.max_tokens.is_some() || i.max_cost.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_block_mode_budget_or_cap_can_stop_an_instance() {
        let block = |budgets: BudgetConfig| Plan {
            budgets: BudgetConfig {
                mode: Mode::Block,
                ..budgets
            },
            instances: vec![InstanceSpec::default()],
            ..Plan::default()
        };
        assert!(!block(BudgetConfig::default()).budget_can_stop());
        let overall = BudgetConfig {
            overall_tokens: Some(1000),
            ..BudgetConfig::default()
        };
        assert!(block(overall.clone()).budget_can_stop());
        let warn = Plan {
            budgets: overall,
            ..Plan::default()
        };
        assert!(!warn.budget_can_stop());
        let command = BudgetConfig {
            command_costs: [("/test".to_string(), Usd(5))].into(),
            ..BudgetConfig::default()
        };
        assert!(block(command).budget_can_stop());
        let periodic = BudgetConfig {
            periodic: vec![PeriodicLimit {
                period: crate::core::period::Period::Day,
                scope: crate::core::period::PeriodScope::default(),
                tokens: Some(10),
                usd: None,
            }],
            ..BudgetConfig::default()
        };
        assert!(block(periodic).budget_can_stop());
        let mut capped = block(BudgetConfig::default());
        capped.instances.push(InstanceSpec {
            max_tokens: Some(500),
            ..InstanceSpec::default()
        });
        assert!(capped.budget_can_stop());
    }

    #[test]
    fn base_command_is_first_word_of_slash_commands_only() {
        assert_eq!(base_command("/test --unit"), Some("/test"));
        assert_eq!(base_command("  /lint   src"), Some("/lint"));
        assert_eq!(base_command("fix the bug"), None);
        assert_eq!(base_command("/"), None);
        assert_eq!(base_command(""), None);
    }
}
