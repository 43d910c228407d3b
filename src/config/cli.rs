//! The command line: every flag of SPEC section 2 as a clap-derived `Cli`, the value
//! parsers behind them (each failure is one line naming the flag and the value), and the
//! pure `--start-at` arithmetic. Nothing here touches the file system or the clock;
//! `config::build_plan` turns a `Cli` into a validated `Plan`.

use crate::config::units;
use crate::core::plan::{ColorChoice, LedgerFailure, Mode, OutputFormat, UsageLimitPolicy};
use crate::core::usage::Usd;
use crate::store::GroupBy;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, NaiveTime, TimeZone};
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const ABOUT: &str = "Run many Claude Code instances in parallel inside token and dollar budgets.";

const LONG_ABOUT: &str = "\
Run many Claude Code instances (`claude -p`) in parallel inside token and dollar budgets.

Each PROMPT is one instance: a slash command such as \"/test --unit\" or free text. More
instances, and budgets, can come from a JSON config file (--config); config instances run
first. Budgets are counted in tokens (input + output + cache creation + cache read) and/or
US dollars, for the whole run and per base command (\"/test --unit\" counts toward /test).
In warn mode a budget only warns; in block mode nothing may spend past it: instances wait
for headroom, are never launched, or are stopped.

With no instance at all nothing is run (exit 2). Use --dry-run to check a plan and
--simulate to try everything without Claude or an API key.";

const EXAMPLES: &str = "\
Examples:
  # Two slash commands, 5000 tokens overall, /test at most 1000, hard limits
  orchestrator --overall-token-budget 5000 --command-budget /test=1000 \\
      --budget-enforcement-mode block /test \"/lint src\"

  # Validate a CI plan (config, budgets, estimates, slash commands, claude) without spending
  orchestrator --config ci.json --dry-run

  # Try it with the built-in simulated Claude: no API key, nothing spent
  orchestrator --simulate --overall-token-budget 20000 /test /lint \"write the changelog\"

  # A prompt that starts with '-' goes after '--'
  orchestrator --model sonnet -- \"-v flag: explain what it does\"

Other commands (only as the very first argument):
  orchestrator completions SHELL   print a completion script: bash, zsh, fish, ...
  orchestrator man                 print the man page (roff)
  orchestrator usage [--by KEY]    what the ledger recorded (orchestrator usage --help)
  orchestrator budget [--json]     the project's daily, weekly and monthly budgets: used,
                                   reserved, when the period ends, burn rate (budget --help)
  A prompt that is just \"man\", \"usage\", \"budget\" or \"completions\" goes after '--':
  orchestrator -- man

Exit codes: 0 all completed, 1 an instance failed or timed out, 2 usage or config error,
3 a budget blocked or stopped an instance, 130/143 interrupted.";

/// Everything the command line can say. Options that a config file can also set are
/// `Option`s (or `false`) so that `build_plan` can tell "not given" from "given".
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "orchestrator",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    max_term_width = 100
)]
pub struct Cli {
    /// Instances to run: a slash command ("/test --unit") or free text, one per argument.
    #[arg(value_name = "PROMPT")]
    pub prompts: Vec<String>,

    // ---------------------------------------------------------------- Instances
    /// JSON file with instances and budgets (zen-compatible; see examples/).
    #[arg(short = 'c', long, value_name = "FILE", help_heading = "Instances")]
    pub config: Option<PathBuf>,

    /// Working directory of every instance [default: current directory].
    #[arg(short = 'w', long, value_name = "DIR", help_heading = "Instances")]
    pub workspace: Option<PathBuf>,

    /// The Claude Code executable [default: `claude` on PATH].
    #[arg(
        long,
        value_name = "PATH",
        env = "ORCHESTRATOR_CLAUDE_PATH",
        help_heading = "Instances"
    )]
    pub claude_path: Option<PathBuf>,

    /// What claude is asked to print; `json` gives no live accounting [default: stream-json].
    #[arg(long, value_name = "FORMAT", value_parser = Choice::new(&["stream-json", "json"], parse_output_format), help_heading = "Instances")]
    pub output_format: Option<OutputFormat>,

    /// Permission mode for instances that set none (e.g. acceptEdits, plan).
    #[arg(long, value_name = "MODE", value_parser = Choice::new(PERMISSION_MODES, parse_permission_mode), help_heading = "Instances")]
    pub permission_mode: Option<String>,

    /// Model for instances that set none (e.g. sonnet, opus, claude-sonnet-4-5).
    #[arg(long, value_name = "MODEL", value_parser = parse_non_empty, help_heading = "Instances")]
    pub model: Option<String>,

    /// Comma-separated tools allowed for instances that set none (e.g. "Read,Bash(git diff:*)").
    #[arg(long, value_name = "LIST", value_parser = parse_tool_list, help_heading = "Instances")]
    pub allowed_tools: Option<ToolList>,

    // ---------------------------------------------------------------- Budgets
    /// Tokens the whole run may spend: 50000, 50,000, 50_000, 50K or 1.5M.
    #[arg(long, value_name = "N", value_parser = parse_token_count, allow_negative_numbers = true, help_heading = "Budgets")]
    pub overall_token_budget: Option<u64>,

    /// Tokens per base command, e.g. /test=10K (repeatable, or comma-separated).
    #[arg(long, value_name = "CMD=N", value_parser = parse_command_tokens, help_heading = "Budgets")]
    pub command_budget: Vec<CommandTokensList>,

    /// US dollars the whole run may spend, e.g. 2.50 or '$5'.
    #[arg(long, value_name = "USD", value_parser = parse_usd, allow_negative_numbers = true, help_heading = "Budgets")]
    pub overall_cost_budget: Option<Usd>,

    /// US dollars per base command, e.g. /test=0.50 (repeatable, or comma-separated).
    #[arg(long, value_name = "CMD=USD", value_parser = parse_command_cost, help_heading = "Budgets")]
    pub command_cost_budget: Vec<CommandCostList>,

    /// The daily, weekly and monthly budgets and their zone.
    #[command(flatten)]
    pub periodic: PeriodicFlags,

    /// warn: report overruns and go on; block: never spend past a budget [default: warn].
    #[arg(long, value_name = "MODE", value_parser = Choice::new(&["warn", "block"], parse_mode), help_heading = "Budgets")]
    pub budget_enforcement_mode: Option<Mode>,

    /// Warn once per budget when its use crosses this percentage [default: 80].
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent, allow_negative_numbers = true, help_heading = "Budgets")]
    pub warn_at: Option<f64>,

    /// Pin the pre-launch token estimate of instances with no cap of their own
    /// [default: p75 of the ledger's history, else 1000].
    #[arg(long, value_name = "TOKENS", value_parser = parse_token_count, allow_negative_numbers = true, help_heading = "Budgets")]
    pub estimate: Option<u64>,

    /// Replace the built-in per-model price table with this JSON file.
    #[arg(long, value_name = "FILE", help_heading = "Budgets")]
    pub pricing: Option<PathBuf>,

    // ---------------------------------------------------------------- Running
    /// Instances running at once; 0 = no limit.
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0, value_parser = parse_count, allow_negative_numbers = true, help_heading = "Running")]
    pub max_parallel: usize,

    /// Minimum time between two launches: 1, 500ms, 2s.
    #[arg(long, value_name = "DURATION", default_value = "1", value_parser = parse_secs, allow_negative_numbers = true, help_heading = "Running")]
    pub startup_delay: Duration,

    /// How long each instance may run before it is terminated: 900, 15m, 1.5h [default: none].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_secs, allow_negative_numbers = true, help_heading = "Running")]
    pub timeout: Option<Duration>,

    /// Time between SIGTERM and SIGKILL when an instance is stopped: 5, 10s.
    #[arg(long, value_name = "DURATION", default_value = "5", value_parser = parse_secs, allow_negative_numbers = true, help_heading = "Running")]
    pub kill_grace: Duration,

    /// When an instance hits the subscription's usage limit: stop (it ends as
    /// rate_limited) or wait for the reset and resume its conversation with --resume.
    #[arg(long, value_name = "WHAT", default_value = "stop", value_parser = Choice::new(&["stop", "wait"], parse_usage_limit_policy), help_heading = "Running")]
    pub on_usage_limit: UsageLimitPolicy,

    /// With --on-usage-limit wait: the longest to wait for a usage limit to reset.
    #[arg(long, value_name = "DURATION", default_value = "21600", value_parser = parse_positive_secs, allow_negative_numbers = true, help_heading = "Running")]
    pub max_wait: Duration,

    /// After 429/529 answers halve how many run at once, raise it by one per this many
    /// seconds without another.
    #[arg(long, value_name = "DURATION", default_value = "10", value_parser = parse_positive_secs, allow_negative_numbers = true, help_heading = "Running")]
    pub backoff_quiet: Duration,

    /// Start later: 30m, 2h, 1.5h, 45s, 14:30, 2am, 11:15pm (a past time means tomorrow).
    #[arg(long, value_name = "WHEN", value_parser = parse_start_at, help_heading = "Running")]
    pub start_at: Option<StartAt>,

    /// Relaunch a failed or timed-out instance up to N times, budgets permitting (never a budget stop).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parse_retries, allow_negative_numbers = true, help_heading = "Running")]
    pub retries: u32,

    /// Launch nothing more after the first instance fails or times out.
    #[arg(long, help_heading = "Running")]
    pub fail_fast: bool,

    /// Run only the instances that did not complete in REPORT (a --report file of an earlier run).
    #[arg(long, value_name = "REPORT", help_heading = "Running")]
    pub rerun_failed: Option<PathBuf>,

    /// Validate and print the plan; never starts claude.
    #[arg(long, help_heading = "Running")]
    pub dry_run: bool,

    /// With --dry-run: treat warnings (claude missing, unknown slash command, ...) as errors.
    #[arg(long, help_heading = "Running")]
    pub strict: bool,

    /// Run against the built-in simulated Claude (no API key, nothing spent).
    #[arg(long, help_heading = "Running")]
    pub simulate: bool,

    /// List the slash commands found in WORKSPACE/.claude/commands and ~/.claude/commands.
    #[arg(long, help_heading = "Running")]
    pub list_commands: bool,

    /// Show one slash command: its path, front matter and body.
    #[arg(long, value_name = "NAME", help_heading = "Running")]
    pub inspect_command: Option<String>,

    // ---------------------------------------------------------------- Output
    /// Leave budget bars out of the reports.
    #[arg(long, help_heading = "Output")]
    pub disable_budget_visuals: bool,

    /// Time between status reports (and --json status events); 0 turns them off.
    #[arg(long, value_name = "DURATION", default_value = "5", value_parser = parse_secs, allow_negative_numbers = true, help_heading = "Output")]
    pub status_report_interval: Duration,

    /// Characters of text shown per line before it is truncated.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = parse_positive_count, allow_negative_numbers = true, help_heading = "Output")]
    pub max_line_length: usize,

    /// Only errors and the final summary.
    #[arg(short = 'q', long, conflicts_with = "verbose", help_heading = "Output")]
    pub quiet: bool,

    /// More diagnostics (repeat for more; RUST_LOG also works).
    #[arg(short = 'v', long, action = clap::ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,

    /// auto = colour only on a terminal (honours NO_COLOR and CLICOLOR_FORCE).
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = Choice::new(&["auto", "always", "never"], parse_color), help_heading = "Output")]
    pub color: ColorChoice,

    /// One JSON event per line on stdout; human output goes to stderr.
    #[arg(long, help_heading = "Output")]
    pub json: bool,

    /// Write the final JSON report to FILE (atomically).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub report: Option<PathBuf>,

    /// Keep each instance's raw stdout (NAME.jsonl) and stderr (NAME.stderr) here.
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub log_dir: Option<PathBuf>,

    /// Use the budgets of this profile from the config's "profiles" (e.g. testing, production).
    #[arg(long, value_name = "NAME", value_parser = parse_non_empty, help_heading = "Budgets")]
    pub profile: Option<String>,

    // ---------------------------------------------------------------- zen
    /// zen: output lines per instance on the console; 0 = no live status (errors and summary stay).
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true, help_heading = "zen compatibility")]
    pub max_console_lines: Option<usize>,

    /// zen: silent (= --quiet), concise (the default) or detailed (= --verbose); wins over both.
    #[arg(long, value_name = "LEVEL", value_parser = Choice::new(&["silent", "concise", "detailed"], parse_log_level), help_heading = "zen compatibility")]
    pub log_level: Option<LogLevel>,

    /// zen: name of the instance of the single PROMPT (names log files and report rows).
    #[arg(long, value_name = "NAME", value_parser = parse_non_empty, help_heading = "zen compatibility")]
    pub instance_name: Option<String>,

    /// zen: description of the instance of the single PROMPT.
    #[arg(long, value_name = "TEXT", help_heading = "zen compatibility")]
    pub instance_description: Option<String>,

    /// zen: Claude session UUID for the instance of the single PROMPT.
    #[arg(long, value_name = "UUID", value_parser = parse_session_id, help_heading = "zen compatibility")]
    pub session_id: Option<String>,

    /// zen: accepted and ignored: every `claude -p` run starts a fresh session.
    #[arg(long, help_heading = "zen compatibility")]
    pub clear_history: bool,

    /// zen: accepted and ignored: every `claude -p` run starts a fresh session.
    #[arg(long, help_heading = "zen compatibility")]
    pub compact_history: bool,

    /// zen: tokens, cost or mixed; checked and ignored: every budget that is set is enforced.
    #[arg(long, value_name = "TYPE", value_parser = Choice::new(&["tokens", "cost", "mixed"], parse_budget_type), help_heading = "zen compatibility")]
    pub budget_parameter_type: Option<String>,

    /// zen: print an example config of TYPE (see --list-examples) and exit.
    #[arg(long, value_name = "TYPE", help_heading = "zen compatibility")]
    pub generate_example: Option<String>,

    /// zen: list the example config types for --generate-example and exit.
    #[arg(long, help_heading = "zen compatibility")]
    pub list_examples: bool,

    // ---------------------------------------------------------------- Ledger
    /// Record the run in this SQLite ledger [default: $XDG_DATA_HOME/orchestrator/ledger.sqlite].
    #[arg(
        long,
        value_name = "PATH",
        env = "ORCHESTRATOR_LEDGER",
        help_heading = "Ledger"
    )]
    pub ledger: Option<PathBuf>,

    /// Record nothing (and estimate without history).
    #[arg(long, help_heading = "Ledger")]
    pub no_ledger: bool,

    /// While the ledger that shares periodic budgets cannot be reached: closed (launch
    /// nothing new that counts toward them) or open (go on, reconcile later)
    /// [default: closed in block mode, open in warn mode].
    #[arg(long, value_name = "WHAT", value_parser = Choice::new(&["closed", "open"], parse_ledger_failure), help_heading = "Ledger")]
    pub ledger_failure: Option<LedgerFailure>,

    /// Label the run [default: the git top-level directory's name, else the workspace's].
    #[arg(long, value_name = "NAME", value_parser = parse_non_empty, help_heading = "Ledger")]
    pub project: Option<String>,
}

/// The periodic budget flags (`--daily-token-budget`, …, `--budget-timezone`): a run's
/// and `orchestrator budget`'s, parsed by the same definitions.
#[derive(Debug, Clone, PartialEq, Eq, Default, clap::Args)]
pub struct PeriodicFlags {
    /// Tokens this project (--project) may spend per day (UTC), across all runs recorded in the ledger.
    #[arg(long, value_name = "N", value_parser = parse_token_count, allow_negative_numbers = true, help_heading = "Budgets")]
    pub daily_token_budget: Option<u64>,

    /// US dollars this project (--project) may spend per day (UTC), across all runs recorded in the ledger.
    #[arg(long, value_name = "USD", value_parser = parse_usd, allow_negative_numbers = true, help_heading = "Budgets")]
    pub daily_cost_budget: Option<Usd>,

    /// Tokens this project (--project) may spend per week (UTC), across all runs recorded in the ledger.
    #[arg(long, value_name = "N", value_parser = parse_token_count, allow_negative_numbers = true, help_heading = "Budgets")]
    pub weekly_token_budget: Option<u64>,

    /// US dollars this project (--project) may spend per week (UTC), across all runs recorded in the ledger.
    #[arg(long, value_name = "USD", value_parser = parse_usd, allow_negative_numbers = true, help_heading = "Budgets")]
    pub weekly_cost_budget: Option<Usd>,

    /// Tokens this project (--project) may spend per month (UTC), across all runs recorded in the ledger.
    #[arg(long, value_name = "N", value_parser = parse_token_count, allow_negative_numbers = true, help_heading = "Budgets")]
    pub monthly_token_budget: Option<u64>,

    /// US dollars this project (--project) may spend per month (UTC), across all runs recorded in the ledger.
    #[arg(long, value_name = "USD", value_parser = parse_usd, allow_negative_numbers = true, help_heading = "Budgets")]
    pub monthly_cost_budget: Option<Usd>,

    /// The zone the daily, weekly and monthly budgets count in: utc, local or an IANA name such as Europe/Berlin [default: utc].
    #[arg(long, value_name = "ZONE", value_parser = parse_zone, help_heading = "Budgets")]
    pub budget_timezone: Option<crate::core::period::Zone>,
}

impl PeriodicFlags {
    /// The periodic budgets the flags set, day, week, month in that order (all of them
    /// project-scoped).
    pub fn limits(&self) -> Vec<crate::core::plan::PeriodicLimit> {
        use crate::core::period::Period;
        [
            (Period::Day, self.daily_token_budget, self.daily_cost_budget),
            (
                Period::Week,
                self.weekly_token_budget,
                self.weekly_cost_budget,
            ),
            (
                Period::Month,
                self.monthly_token_budget,
                self.monthly_cost_budget,
            ),
        ]
        .into_iter()
        .filter(|(_, t, u)| t.is_some() || u.is_some())
        .map(|(period, tokens, usd)| crate::core::plan::PeriodicLimit {
            period,
            scope: crate::core::period::PeriodScope::Project,
            tokens,
            usd,
        })
        .collect()
    }
}

/// A value parser for a flag with a fixed set of words: parses with `parse` (so its
/// errors read like every other flag's), and tells completion scripts the words, so that
/// shells offer `warn`/`block` rather than file names.
#[derive(Clone)]
struct Choice<T> {
    values: &'static [&'static str],
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Choice<T> {
    fn new(values: &'static [&'static str], parse: fn(&str) -> Result<T, String>) -> Self {
        Choice { values, parse }
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Choice<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        self.parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            self.values
                .iter()
                .map(|v| clap::builder::PossibleValue::new(*v)),
        ))
    }
}

/// zen's `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Silent,
    Concise,
    Detailed,
}

impl Cli {
    /// `--quiet`, or zen's `--log-level silent`, which wins over it as in zen.
    pub fn effective_quiet(&self) -> bool {
        match self.log_level {
            Some(LogLevel::Silent) => true,
            Some(_) => false,
            None => self.quiet,
        }
    }

    /// `-v` count, with zen's `--log-level detailed` meaning `-v`.
    pub fn effective_verbose(&self) -> u8 {
        match self.log_level {
            Some(LogLevel::Detailed) => self.verbose.max(1),
            Some(_) => 0,
            None => self.verbose,
        }
    }
}

fn parse_log_level(s: &str) -> Result<LogLevel, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "silent" => Ok(LogLevel::Silent),
        "concise" => Ok(LogLevel::Concise),
        "detailed" => Ok(LogLevel::Detailed),
        _ => Err("expected silent, concise or detailed".into()),
    }
}

fn parse_budget_type(s: &str) -> Result<String, String> {
    match s.trim() {
        t @ ("tokens" | "cost" | "mixed") => Ok(t.to_string()),
        _ => Err("expected tokens, cost or mixed".into()),
    }
}

fn parse_session_id(s: &str) -> Result<String, String> {
    let t = s.trim();
    if crate::config::file::is_uuid(t) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err("not a UUID; use the form 123e4567-e89b-12d3-a456-426614174000".into())
    }
}

// ---------------------------------------------------------------- helper commands
//
// `orchestrator completions SHELL` and `orchestrator man` are recognised only when they
// are the very first argument, before the run's own parser sees anything. The run keeps
// its flat `orchestrator [OPTIONS] [PROMPT]...` grammar unchanged (clap subcommands
// would make every positional PROMPT compete with subcommand names, and change the
// usage line and error messages of every run), while a prompt that happens to be one
// of these words stays reachable after `--` or after any option.

/// A non-run command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Helper {
    Completions(clap_complete::Shell),
    Man,
    Usage(UsageArgs),
    Budget(BudgetArgs),
}

/// `orchestrator usage`: what to report from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageArgs {
    pub since: Option<String>,
    pub until: Option<String>,
    pub by: GroupBy,
    pub project: Option<String>,
    pub run: Option<String>,
    pub json: bool,
    pub ledger: Option<PathBuf>,
}

/// `orchestrator budget`: which periodic budgets to show, of which project, from which
/// ledger. With no periodic flag and no `--config`, those the project's newest run
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetArgs {
    pub periodic: PeriodicFlags,
    pub config: Option<PathBuf>,
    pub profile: Option<String>,
    pub project: Option<String>,
    pub json: bool,
    pub ledger: Option<PathBuf>,
}

/// The helper command named by the first argument, if it names one; `Err` for a bad
/// shell name or a stray argument (one line, as every usage error), or help output.
pub fn parse_helper(args: &[OsString]) -> Option<Result<Helper, clap::Error>> {
    let first = args.get(1)?.to_str()?;
    if !["completions", "man", "usage", "budget"].contains(&first) {
        return None;
    }
    let parsed = helper_parser().try_get_matches_from(args).map_err(one_line);
    Some(parsed.and_then(|m| {
        match m.subcommand() {
            Some(("completions", sub)) => sub
                .get_one::<clap_complete::Shell>("shell")
                .copied()
                .map(Helper::Completions)
                .ok_or_else(|| {
                    clap::Error::raw(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "completions: name a shell: bash, zsh, fish, elvish or powershell\n",
                    )
                }),
            Some(("usage", sub)) => Ok(Helper::Usage(UsageArgs {
                since: sub.get_one::<String>("since").cloned(),
                until: sub.get_one::<String>("until").cloned(),
                by: sub
                    .get_one::<String>("by")
                    .and_then(|b| GroupBy::parse(b))
                    .unwrap_or(GroupBy::Command),
                project: sub.get_one::<String>("project").cloned(),
                run: sub.get_one::<String>("run").cloned(),
                json: sub.get_flag("json"),
                ledger: ledger_given(sub),
            })),
            Some(("budget", sub)) => {
                use clap::FromArgMatches;
                Ok(Helper::Budget(BudgetArgs {
                    periodic: PeriodicFlags::from_arg_matches(sub).map_err(one_line)?,
                    config: sub.get_one::<PathBuf>("config").cloned(),
                    profile: sub.get_one::<String>("profile").cloned(),
                    project: sub.get_one::<String>("project").cloned(),
                    json: sub.get_flag("json"),
                    ledger: ledger_given(sub),
                }))
            }
            _ => Ok(Helper::Man),
        }
    }))
}

fn usage_subcommand() -> clap::Command {
    use clap::{Arg, ArgAction};
    clap::Command::new("usage")
        .about("Report usage recorded in the ledger: tokens, dollars and efficiency by day, week, month, project, command, model, run or instance")
        .arg(Arg::new("since").long("since").value_name("WHEN").help("From this time: 7d, 24h, 2w, 2026-12-01 or an RFC 3339 time [default: 30d]"))
        .arg(Arg::new("until").long("until").value_name("WHEN").help("Up to this time (same forms) [default: now]"))
        .arg(
            Arg::new("by")
                .long("by")
                .value_name("KEY")
                .default_value("command")
                .value_parser(clap::builder::PossibleValuesParser::new(GroupBy::NAMES)),
        )
        .arg(Arg::new("project").long("project").value_name("NAME").help("Only this project's runs"))
        .arg(Arg::new("run").long("run").value_name("ID").help("Only this run"))
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("One JSON object on stdout"))
        .arg(ledger_arg())
}

/// `--ledger` of the helpers that read the ledger.
fn ledger_arg() -> clap::Arg {
    clap::Arg::new("ledger")
        .long("ledger")
        .value_name("PATH")
        .env("ORCHESTRATOR_LEDGER")
        .value_parser(clap::value_parser!(PathBuf))
        .help("The ledger to read [default: $XDG_DATA_HOME/orchestrator/ledger.sqlite]")
}

/// `--ledger PATH` (or `ORCHESTRATOR_LEDGER`) when given and not empty.
fn ledger_given(m: &clap::ArgMatches) -> Option<PathBuf> {
    m.get_one::<PathBuf>("ledger")
        .filter(|p| !p.as_os_str().is_empty())
        .cloned()
}

/// `orchestrator budget`: the run's periodic budget flags (the same definitions, so the
/// same parsing and messages), `--config`/`--profile` for `budget.periodic`, `--project`.
fn budget_subcommand() -> clap::Command {
    use clap::{Arg, ArgAction, Args};
    // The flags first: `augment_args` also sets the command's about from the struct's
    // doc comment, which the next lines replace.
    PeriodicFlags::augment_args(clap::Command::new("budget"))
        .about("Show a project's daily, weekly and monthly budgets: used, reserved by live runs, limit, when the period ends and the burn rate. Which budgets: those the periodic flags and --config FILE (budget.periodic) set, as a run takes them; with neither, those of the project's newest run that set one")
        .arg(
            Arg::new("config")
                .short('c')
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Take budget.periodic from this JSON config file, as a run would"),
        )
        .arg(
            Arg::new("profile")
                .long("profile")
                .value_name("NAME")
                .value_parser(parse_non_empty)
                .help("With --config: apply this profile of its \"profiles\""),
        )
        .arg(
            Arg::new("project")
                .long("project")
                .value_name("NAME")
                .value_parser(parse_non_empty)
                .help("The project [default: the git top-level directory's name, else the current directory's]"),
        )
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("One JSON object on stdout"))
        .arg(ledger_arg())
}

fn helper_subcommands() -> [clap::Command; 4] {
    [
        clap::Command::new("completions")
            .about("Print a shell completion script (bash, zsh, fish, elvish, powershell)")
            .arg(
                clap::Arg::new("shell")
                    .value_name("SHELL")
                    .required(true)
                    .value_parser(clap::value_parser!(clap_complete::Shell)),
            ),
        clap::Command::new("man").about("Print the man page (roff)"),
        usage_subcommand(),
        budget_subcommand(),
    ]
}

fn helper_parser() -> clap::Command {
    clap::Command::new("orchestrator")
        .subcommand_required(true)
        .disable_help_subcommand(true)
        .subcommands(helper_subcommands())
}

/// The full command line as documentation sees it: the run's options and PROMPTs plus
/// the helper commands, for completion scripts and the man page.
pub fn documented_command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .args_conflicts_with_subcommands(true)
        .disable_help_subcommand(true)
        .subcommands(helper_subcommands())
}

/// The completion script for `shell`. Generated into memory: clap_complete panics on a
/// failed write, and stdout may be a closed pipe.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = documented_command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "orchestrator", &mut out);
    out
}

/// The man page, in roff. The helper commands are described in its EXAMPLES text rather
/// than as subcommands, which clap_mangen would point to as separate, nonexistent pages.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    let man = clap_mangen::Man::new(Cli::command());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    // clap_mangen would fill the examples into one paragraph; keep their lines.
    out.extend_from_slice(examples_roff(EXAMPLES).as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// The `Examples:` help text as roff: an EXAMPLES section of no-fill blocks (every line
/// as written, in a fixed-width font) under the section's own sub-headings.
fn examples_roff(text: &str) -> String {
    let mut out = String::from(".SH EXAMPLES\n.nf\n.ft CR\n");
    for line in text.lines().skip(1) {
        let escaped = line.replace('\\', "\\e").replace('-', "\\-");
        if escaped.starts_with('.') || escaped.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&escaped);
        out.push('\n');
    }
    out.push_str(".ft R\n.fi\n");
    out
}

/// A parsed tool list (a newtype so clap takes one flag value, not many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolList(pub Vec<String>);

/// One `--command-budget` value: `/test=1000` or `/test=5,000,/lint=2K`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTokensList(pub Vec<CommandTokens>);

/// One `--command-cost-budget` value: `/test=0.5` or `/test=$1,/lint=0.25`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCostList(pub Vec<CommandCost>);

impl Cli {
    /// Every `--command-budget` pair, in the order given.
    pub fn command_tokens(&self) -> impl Iterator<Item = &CommandTokens> {
        self.command_budget.iter().flat_map(|l| &l.0)
    }

    /// Every `--command-cost-budget` pair, in the order given.
    pub fn command_costs(&self) -> impl Iterator<Item = &CommandCost> {
        self.command_cost_budget.iter().flat_map(|l| &l.0)
    }
}

/// `--command-budget /test=1000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTokens {
    pub command: String,
    pub tokens: u64,
}

/// `--command-cost-budget /test=0.5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCost {
    pub command: String,
    pub usd: Usd,
}

/// `--start-at`: either a delay from now or a local clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    After(Duration),
    At(NaiveTime),
}

impl StartAt {
    /// The moment to start, given the current local wall-clock time. A clock time that has
    /// already passed today means tomorrow; exactly now means now.
    pub fn resolve_naive(self, now: NaiveDateTime) -> NaiveDateTime {
        match self {
            StartAt::After(d) => now + to_chrono(d),
            StartAt::At(t) => {
                let today = now.date().and_time(t);
                if today < now {
                    today + ChronoDuration::days(1)
                } else {
                    today
                }
            }
        }
    }

    /// Same as `resolve_naive` in a real time zone. A clock time that does not exist that
    /// day (skipped by a DST change) falls back to "the same wall-clock distance from now".
    pub fn resolve<Tz: TimeZone>(self, now: DateTime<Tz>) -> DateTime<Tz> {
        match self {
            StartAt::After(d) => now + to_chrono(d),
            StartAt::At(_) => {
                let naive_now = now.naive_local();
                let target = self.resolve_naive(naive_now);
                let tz = now.timezone();
                match tz.from_local_datetime(&target).earliest() {
                    Some(t) => t,
                    None => now + (target - naive_now),
                }
            }
        }
    }
}

fn to_chrono(d: Duration) -> ChronoDuration {
    // The parser caps delays far below chrono's range, so the fallback is unreachable in
    // practice; it still must not panic.
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::zero())
}

/// Parses the process arguments (program name first). Help and version requests come back
/// as clap "errors" of kind `DisplayHelp` / `DisplayVersion`, unchanged; every real error is
/// flattened into one line that names the flag and the value.
pub fn parse_args(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(args).map_err(one_line)
}

fn one_line(err: clap::Error) -> clap::Error {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return err;
    }
    // clap renders "error: MESSAGE", then blank-line separated blocks of tips, usage and
    // a pointer to --help. Keep the message (which may span lines when a value holds a
    // newline) and the tips; drop the rest.
    let text = err.render().to_string();
    let mut blocks = text.split("\n\n");
    let first = blocks.next().unwrap_or("invalid arguments").trim();
    let mut msg = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for tip in blocks
        .flat_map(str::lines)
        .filter_map(|l| l.trim().strip_prefix("tip: "))
    {
        msg.push_str("; ");
        msg.push_str(tip);
    }
    if !msg.contains("--help") {
        msg.push_str(" (see --help)");
    }
    // A value may itself hold a newline; the message must still be one line.
    let msg: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    clap::Error::raw(err.kind(), format!("{msg}\n"))
}

// ---------------------------------------------------------------- value parsers
//
// clap reports a failure as "invalid value 'V' for '--flag <X>': REASON", so each REASON
// says what is expected, with an example, and never repeats the value.

pub(crate) fn parse_non_empty(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(t.to_string())
    }
}

/// A token count greater than zero: `5000`, `5,000`, `5_000`, `50K`, `1.5M`.
pub fn parse_token_count(s: &str) -> Result<u64, String> {
    units::parse_tokens(s)
}

fn parse_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| "must be a whole number, 0 or more".to_string())
}

fn parse_retries(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err("must be a whole number from 0 to 100".into()),
    }
}

fn parse_positive_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) | Err(_) => Err("must be a whole number greater than 0".into()),
        Ok(n) => Ok(n),
    }
}

/// Dollars greater than zero: `2.50`, `$2.50`, `$5`, `1,000`.
pub fn parse_usd(s: &str) -> Result<Usd, String> {
    units::parse_dollars(s)
}

/// `Usd` for a positive, finite dollar amount that does not round to zero nanodollars.
pub(crate) fn usd_from_f64(d: f64) -> Option<Usd> {
    if !d.is_finite() || d <= 0.0 {
        return None;
    }
    let u = Usd::from_dollars(d);
    (u.0 > 0).then_some(u)
}

/// Budget keys are base commands: `/test`; `test` is taken to mean `/test`.
pub fn normalize_command_key(key: &str) -> Result<String, String> {
    let k = key.trim();
    if k.is_empty() || k == "/" {
        return Err("the command is missing, e.g. /test".into());
    }
    if k.split_whitespace().count() > 1 {
        return Err(format!(
            "'{k}' is not a base command; budgets count per first word, e.g. /test"
        ));
    }
    Ok(if k.starts_with('/') {
        k.to_string()
    } else {
        format!("/{k}")
    })
}

fn split_pair(s: &str, unit: &str, example: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!("expected CMD={unit}, e.g. /test={example}"));
    };
    Ok((normalize_command_key(k)?, v.trim().to_string()))
}

/// Splits `CMD=V,CMD=V` on the commas that start a new pair, so that a comma inside a
/// number (`/test=5,000`) stays part of it: a piece that starts with a digit continues
/// the previous one.
fn split_pairs(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in s.split(',') {
        match out.last_mut() {
            Some(last) if piece.starts_with(|c: char| c.is_ascii_digit()) => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_string()),
        }
    }
    out
}

fn parse_command_tokens(s: &str) -> Result<CommandTokensList, String> {
    let pairs = split_pairs(s);
    let mut out = Vec::new();
    for pair in &pairs {
        let one = || -> Result<CommandTokens, String> {
            let (command, v) = split_pair(pair, "N", "1000")?;
            let tokens =
                parse_token_count(&v).map_err(|e| format!("token limit for {command}: {e}"))?;
            Ok(CommandTokens { command, tokens })
        };
        out.push(one().map_err(|e| in_list(&pairs, pair, e))?);
    }
    Ok(CommandTokensList(out))
}

fn parse_command_cost(s: &str) -> Result<CommandCostList, String> {
    let pairs = split_pairs(s);
    let mut out = Vec::new();
    for pair in &pairs {
        let one = || -> Result<CommandCost, String> {
            let (command, v) = split_pair(pair, "USD", "0.50")?;
            let usd = parse_usd(&v).map_err(|e| format!("cost limit for {command}: {e}"))?;
            Ok(CommandCost { command, usd })
        };
        out.push(one().map_err(|e| in_list(&pairs, pair, e))?);
    }
    Ok(CommandCostList(out))
}

/// An error about one pair of a comma-separated list names that pair.
fn in_list(pairs: &[String], pair: &str, e: String) -> String {
    if pairs.len() > 1 {
        format!("'{pair}': {e}")
    } else {
        e
    }
}

pub(crate) fn parse_zone(s: &str) -> Result<crate::core::period::Zone, String> {
    crate::core::period::Zone::parse(s).ok_or_else(|| {
        format!("expected utc, local or an IANA zone name such as Europe/Berlin, got '{s}'")
    })
}

pub(crate) fn parse_mode(s: &str) -> Result<Mode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "warn" => Ok(Mode::Warn),
        "block" => Ok(Mode::Block),
        _ => Err("expected warn or block".into()),
    }
}

pub(crate) fn parse_output_format(s: &str) -> Result<OutputFormat, String> {
    match s.trim() {
        "stream-json" => Ok(OutputFormat::StreamJson),
        "json" => Ok(OutputFormat::Json),
        _ => Err("expected stream-json or json".into()),
    }
}

fn parse_color(s: &str) -> Result<ColorChoice, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(ColorChoice::Auto),
        "always" => Ok(ColorChoice::Always),
        "never" => Ok(ColorChoice::Never),
        _ => Err("expected auto, always or never".into()),
    }
}

/// Percent of a budget: greater than 0 and at most 100, with an optional `%`.
///
/// A number below 1 without a `%` sign is rejected: `0.8` is far more likely a fraction
/// meant as 80% than a wish to be warned at 0.8%. Write `0.8%` to mean 0.8 percent.
pub(crate) fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (t, has_sign) = match t.strip_suffix('%') {
        Some(n) => (n.trim_end(), true),
        None => (t, false),
    };
    let p: f64 = t
        .parse()
        .map_err(|_| "not a percentage, e.g. 80".to_string())?;
    if !has_sign {
        check_not_fraction(p)?;
    }
    check_percent(p)
}

/// Rejects `0 < p < 1` given without a `%` sign (see [`parse_percent`]).
pub(crate) fn check_not_fraction(p: f64) -> Result<(), String> {
    if p > 0.0 && p < 1.0 {
        let as_pct = (p * 1000.0).round() / 10.0;
        return Err(format!(
            "is a percentage, not a fraction: write {as_pct} for {as_pct}%, or {p}% if you really mean {p} percent"
        ));
    }
    Ok(())
}

pub(crate) fn check_percent(p: f64) -> Result<f64, String> {
    if p.is_finite() && p > 0.0 && p <= 100.0 {
        Ok(p)
    } else {
        Err("must be greater than 0 and at most 100".into())
    }
}

/// A duration, 0 or more: `90` (seconds), `2.5s`, `10m`, `1.5h`, `1m30s`, `500ms`.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    units::parse_duration(s, true)
}

pub(crate) fn secs_from_f64(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

fn parse_usage_limit_policy(s: &str) -> Result<UsageLimitPolicy, String> {
    match s {
        "stop" => Ok(UsageLimitPolicy::Stop),
        "wait" => Ok(UsageLimitPolicy::Wait),
        _ => Err("must be stop or wait".into()),
    }
}

fn parse_ledger_failure(s: &str) -> Result<LedgerFailure, String> {
    match s {
        "closed" => Ok(LedgerFailure::Closed),
        "open" => Ok(LedgerFailure::Open),
        _ => Err("must be closed or open".into()),
    }
}

fn parse_positive_secs(s: &str) -> Result<Duration, String> {
    let d = parse_secs(s)?;
    if d.is_zero() {
        Err("must be greater than 0, e.g. 900, 15m or 1.5h".into())
    } else {
        Ok(d)
    }
}

/// Known Claude Code permission modes. Claude adds modes over time, so an unknown mode
/// is passed through; only a near miss of a known one (a typo) is rejected.
pub const PERMISSION_MODES: &[&str] = &[
    "default",
    "manual",
    "acceptEdits",
    "plan",
    "auto",
    "dontAsk",
    "bypassPermissions",
];

pub(crate) fn parse_permission_mode(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "expected a mode such as {}",
            PERMISSION_MODES.join(", ")
        ));
    }
    if PERMISSION_MODES.contains(&t) {
        return Ok(t.to_string());
    }
    if let Some(close) = closest(t, PERMISSION_MODES.iter().copied()) {
        return Err(format!("unknown permission mode; did you mean {close}?"));
    }
    Ok(t.to_string())
}

/// The candidate closest to `word` when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::jaro_winkler(&lw, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A tool list such as `Read,Edit,Bash(git diff:*)`: split on commas outside parentheses,
/// because tool patterns may themselves contain commas.
pub fn split_tools(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' if depth == 0 => {
                let t = cur.trim();
                if !t.is_empty() {
                    out.push(t.to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    let t = cur.trim();
    if !t.is_empty() {
        out.push(t.to_string());
    }
    out
}

fn parse_tool_list(s: &str) -> Result<ToolList, String> {
    let tools = split_tools(s);
    if tools.is_empty() {
        Err("expected a comma-separated list of tools, e.g. Read,Edit".into())
    } else {
        Ok(ToolList(tools))
    }
}

/// Longest delay accepted, so that "now + delay" can never overflow.
const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

const START_AT_HELP: &str = "e.g. 30m, 2h, 1.5h, 45s, 14:30, 2am or 11:15pm";

/// `30m`, `2h`, `1.5h`, `45s` (a delay) or `14:30`, `2am`, `11:15pm` (a local clock time).
pub fn parse_start_at(s: &str) -> Result<StartAt, String> {
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(format!("expected a delay or a clock time, {START_AT_HELP}"));
    }
    if let Some(time) = parse_clock(&t)? {
        return Ok(StartAt::At(time));
    }
    let d = units::parse_duration(&t, false).map_err(|e| {
        if e.contains("unit") {
            format!("a delay needs a unit (s, m or h), {START_AT_HELP}")
        } else {
            format!("expected a delay or a clock time, {START_AT_HELP}")
        }
    })?;
    if d > MAX_DELAY {
        return Err("a delay may be at most 7 days".into());
    }
    Ok(StartAt::After(d))
}

/// `Ok(None)` when `t` does not look like a clock time at all; `Err` when it does but is
/// not a valid one (`25:99`, `13pm`).
fn parse_clock(t: &str) -> Result<Option<NaiveTime>, String> {
    let (body, meridiem) = if let Some(b) = t.strip_suffix("am") {
        (b.trim(), Some(false))
    } else if let Some(b) = t.strip_suffix("pm") {
        (b.trim(), Some(true))
    } else {
        (t, None)
    };
    if meridiem.is_none() && !body.contains(':') {
        return Ok(None);
    }
    let bad = || format!("not a valid clock time, {START_AT_HELP}");
    let mut parts = body.split(':');
    let mut field = |max: u32| -> Result<Option<u32>, String> {
        match parts.next() {
            None => Ok(None),
            Some(p) if !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let v: u32 = p.parse().map_err(|_| bad())?;
                if v > max {
                    Err(bad())
                } else {
                    Ok(Some(v))
                }
            }
            Some(_) => Err(bad()),
        }
    };
    let hour = field(23)?.ok_or_else(bad)?;
    let minute = field(59)?.unwrap_or(0);
    let second = field(59)?.unwrap_or(0);
    if parts.next().is_some() {
        return Err(bad());
    }
    let hour = match meridiem {
        None => hour,
        Some(pm) => {
            if hour == 0 || hour > 12 {
                return Err(format!(
                    "hours on a 12-hour clock run 1-12, {START_AT_HELP}"
                ));
            }
            (hour % 12) + if pm { 12 } else { 0 }
        }
    };
    NaiveTime::from_hms_opt(hour, minute, second)
        .map(Some)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, NaiveDate};

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("orchestrator")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn err(a: &[&str]) -> String {
        match parse_args(args(a)) {
            Ok(cli) => panic!("expected an error for {a:?}, got {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_one_line_naming(msg: &str, needles: &[&str]) {
        assert_eq!(msg.trim_end().lines().count(), 1, "not one line: {msg:?}");
        for n in needles {
            assert!(msg.contains(n), "{msg:?} should mention {n:?}");
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let cli = parse_args(args(&["/test"])).unwrap();
        assert_eq!(cli.prompts, vec!["/test"]);
        assert_eq!(cli.max_parallel, 0);
        assert_eq!(cli.startup_delay, Duration::from_secs(1));
        assert_eq!(cli.kill_grace, Duration::from_secs(5));
        assert_eq!(cli.status_report_interval, Duration::from_secs(5));
        assert_eq!(cli.max_line_length, 500);
        assert_eq!(cli.estimate, None);
        assert_eq!(cli.color, ColorChoice::Auto);
        assert_eq!(cli.budget_enforcement_mode, None);
        assert_eq!(cli.warn_at, None);
        assert!(!cli.dry_run && !cli.strict && !cli.simulate && !cli.json);
    }

    #[test]
    fn the_readme_example_parses() {
        let cli = parse_args(args(&[
            "--overall-token-budget",
            "5000",
            "--command-budget",
            "/test=1000",
            "--budget-enforcement-mode",
            "block",
            "/test",
            "/lint src",
        ]))
        .unwrap();
        assert_eq!(cli.overall_token_budget, Some(5000));
        assert_eq!(
            cli.command_tokens().cloned().collect::<Vec<_>>(),
            vec![CommandTokens {
                command: "/test".into(),
                tokens: 1000
            }]
        );
        assert_eq!(cli.budget_enforcement_mode, Some(Mode::Block));
        assert_eq!(cli.prompts, vec!["/test", "/lint src"]);
    }

    #[test]
    fn every_flag_parses() {
        let cli = parse_args(args(&[
            "-c",
            "ci.json",
            "-w",
            "/tmp",
            "--claude-path",
            "/opt/claude",
            "--output-format",
            "json",
            "--permission-mode",
            "acceptEdits",
            "--model",
            "sonnet",
            "--allowed-tools",
            "Read, Bash(git diff:*)",
            "-j",
            "4",
            "--startup-delay",
            "0.5",
            "--timeout",
            "900",
            "--kill-grace",
            "2",
            "--start-at",
            "2am",
            "--dry-run",
            "--strict",
            "--simulate",
            "--overall-token-budget",
            "5000",
            "--command-budget",
            "/test=1000,lint=200",
            "--overall-cost-budget",
            "$2.50",
            "--command-cost-budget",
            "/test=0.5",
            "--budget-enforcement-mode",
            "warn",
            "--warn-at",
            "75",
            "--estimate",
            "2000",
            "--pricing",
            "p.json",
            "--disable-budget-visuals",
            "--status-report-interval",
            "0",
            "--max-line-length",
            "80",
            "-vv",
            "--color",
            "never",
            "--json",
            "--report",
            "r.json",
            "--log-dir",
            "logs",
            "--list-commands",
            "--inspect-command",
            "/test",
        ]))
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("ci.json")));
        assert_eq!(cli.output_format, Some(OutputFormat::Json));
        assert_eq!(
            cli.allowed_tools,
            Some(ToolList(vec!["Read".into(), "Bash(git diff:*)".into()]))
        );
        assert_eq!(cli.max_parallel, 4);
        assert_eq!(cli.startup_delay, Duration::from_millis(500));
        assert_eq!(cli.timeout, Some(Duration::from_secs(900)));
        assert_eq!(
            cli.start_at,
            Some(StartAt::At(NaiveTime::from_hms_opt(2, 0, 0).unwrap()))
        );
        let tokens: Vec<_> = cli.command_tokens().collect();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[1].command, "/lint");
        assert_eq!(cli.overall_cost_budget, Some(Usd(2_500_000_000)));
        assert_eq!(cli.command_costs().next().unwrap().usd, Usd(500_000_000));
        assert_eq!(cli.warn_at, Some(75.0));
        assert_eq!(cli.status_report_interval, Duration::ZERO);
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.color, ColorChoice::Never);
        assert!(cli.list_commands && cli.json && cli.disable_budget_visuals);
    }

    #[test]
    fn prompts_starting_with_a_dash_come_after_double_dash() {
        let cli = parse_args(args(&[
            "--dry-run",
            "/test",
            "--",
            "-v is verbose?",
            "--json",
        ]))
        .unwrap();
        assert_eq!(cli.prompts, vec!["/test", "-v is verbose?", "--json"]);
        assert!(!cli.json);
        // Flags after a prompt are still flags: a stray flag must never become a prompt
        // that spends tokens.
        let cli = parse_args(args(&["/test", "--dry-run"])).unwrap();
        assert!(cli.dry_run);
        assert_eq!(cli.prompts, vec!["/test"]);
    }

    #[test]
    fn command_budget_errors_name_flag_and_value() {
        let m = err(&["--command-budget", "test", "/x"]);
        assert_one_line_naming(&m, &["--command-budget", "'test'", "CMD=N"]);
        let m = err(&["--command-budget", "/test=abc"]);
        assert_one_line_naming(&m, &["--command-budget", "/test=abc", "number of tokens"]);
        let m = err(&["--command-budget", "/test=-5"]);
        assert_one_line_naming(&m, &["--command-budget", "/test=-5", "greater than 0"]);
        let m = err(&["--command-budget", "/test=0"]);
        assert_one_line_naming(&m, &["--command-budget", "/test=0", "greater than 0"]);
        let m = err(&["--command-budget", "=5"]);
        assert_one_line_naming(&m, &["--command-budget", "command is missing"]);
        let m = err(&["--command-cost-budget", "/test=free"]);
        assert_one_line_naming(&m, &["--command-cost-budget", "/test=free", "dollars"]);
    }

    #[test]
    fn numbers_as_people_write_them() {
        for (text, want) in [
            ("50K", 50_000),
            ("5,000", 5000),
            ("5_000", 5000),
            ("1.5M", 1_500_000),
        ] {
            let cli =
                parse_args(args(&["--overall-token-budget", text, "--estimate", text])).unwrap();
            assert_eq!(cli.overall_token_budget, Some(want), "{text}");
            assert_eq!(cli.estimate, Some(want), "{text}");
        }
        let cli = parse_args(args(&[
            "--command-budget",
            "/test=1k,lint=5,000",
            "--command-budget",
            "/doc=2_500",
            "--command-cost-budget",
            "/test=$1,/lint=0.25",
        ]))
        .unwrap();
        let tokens: Vec<(&str, u64)> = cli
            .command_tokens()
            .map(|c| (c.command.as_str(), c.tokens))
            .collect();
        assert_eq!(tokens, [("/test", 1000), ("/lint", 5000), ("/doc", 2500)]);
        let costs: Vec<(&str, Usd)> = cli
            .command_costs()
            .map(|c| (c.command.as_str(), c.usd))
            .collect();
        assert_eq!(
            costs,
            [("/test", Usd(1_000_000_000)), ("/lint", Usd(250_000_000))]
        );
        let cli = parse_args(args(&["--overall-cost-budget", "$5"])).unwrap();
        assert_eq!(cli.overall_cost_budget, Some(Usd(5_000_000_000)));
    }

    #[test]
    fn durations_everywhere_a_duration_is_taken() {
        let cli = parse_args(args(&[
            "--timeout",
            "10m",
            "--startup-delay",
            "500ms",
            "--kill-grace",
            "1m30s",
            "--status-report-interval",
            "1.5h",
        ]))
        .unwrap();
        assert_eq!(cli.timeout, Some(Duration::from_secs(600)));
        assert_eq!(cli.startup_delay, Duration::from_millis(500));
        assert_eq!(cli.kill_grace, Duration::from_secs(90));
        assert_eq!(cli.status_report_interval, Duration::from_secs(5400));
        assert_eq!(
            parse_args(args(&["--timeout", "90"])).unwrap().timeout,
            Some(Duration::from_secs(90))
        );
        assert_one_line_naming(&err(&["--timeout", "10d"]), &["--timeout", "10d", "10m"]);
    }

    #[test]
    fn warn_at_takes_percent_not_fractions() {
        let m = err(&["--warn-at", "0.8"]);
        assert_one_line_naming(&m, &["--warn-at", "0.8", "write 80", "0.8%"]);
        assert_eq!(
            parse_args(args(&["--warn-at", "0.8%"])).unwrap().warn_at,
            Some(0.8)
        );
        assert_eq!(
            parse_args(args(&["--warn-at", "80%"])).unwrap().warn_at,
            Some(80.0)
        );
        assert_eq!(
            parse_args(args(&["--warn-at", "1"])).unwrap().warn_at,
            Some(1.0)
        );
    }

    #[test]
    fn command_keys_get_a_leading_slash() {
        assert_eq!(normalize_command_key("test").unwrap(), "/test");
        assert_eq!(normalize_command_key(" /lint ").unwrap(), "/lint");
        assert!(normalize_command_key("/test --unit").is_err());
        assert!(normalize_command_key("").is_err());
        let cli = parse_args(args(&["--command-budget", "test=1000"])).unwrap();
        assert_eq!(cli.command_tokens().next().unwrap().command, "/test");
    }

    #[test]
    fn overall_budget_errors() {
        for bad in ["0", "-5", "abc", "1.5", ""] {
            let m = err(&["--overall-token-budget", bad]);
            assert_one_line_naming(&m, &["--overall-token-budget"]);
        }
        for bad in ["0", "-1", "NaN", "inf", "lots", "0.0000000001"] {
            let m = err(&["--overall-cost-budget", bad]);
            assert_one_line_naming(&m, &["--overall-cost-budget", bad]);
        }
        assert_eq!(parse_usd("0.0113").unwrap(), Usd(11_300_000));
    }

    #[test]
    fn mode_percent_and_seconds_errors() {
        assert_one_line_naming(
            &err(&["--budget-enforcement-mode", "strict"]),
            &["--budget-enforcement-mode", "strict", "warn or block"],
        );
        assert_one_line_naming(&err(&["--warn-at", "0"]), &["--warn-at", "'0'"]);
        assert_one_line_naming(&err(&["--warn-at", "101"]), &["--warn-at", "101"]);
        assert_one_line_naming(&err(&["--warn-at", "-3"]), &["--warn-at", "-3"]);
        assert_eq!(parse_percent("100%").unwrap(), 100.0);
        assert_one_line_naming(&err(&["--timeout", "-1"]), &["--timeout", "-1"]);
        assert_one_line_naming(&err(&["--timeout", "0"]), &["--timeout", "greater than 0"]);
        assert_one_line_naming(&err(&["--kill-grace", "NaN"]), &["--kill-grace", "NaN"]);
        assert_one_line_naming(
            &err(&["--startup-delay", "soon"]),
            &["--startup-delay", "soon"],
        );
        assert_one_line_naming(
            &err(&["--output-format", "text"]),
            &["--output-format", "text"],
        );
        assert_one_line_naming(&err(&["--color", "rainbow"]), &["--color", "rainbow"]);
        assert_one_line_naming(&err(&["-j", "-2"]), &["--max-parallel", "-2"]);
        assert_one_line_naming(&err(&["--max-line-length", "0"]), &["--max-line-length"]);
        assert_eq!(parse_secs("2.5s").unwrap(), Duration::from_millis(2500));
    }

    #[test]
    fn unknown_flags_and_conflicts_are_one_line() {
        let m = err(&["--overall-token-budgt", "5"]);
        assert_one_line_naming(&m, &["--overall-token-budgt", "--overall-token-budget"]);
        assert_one_line_naming(&err(&["-q", "-v", "/x"]), &["--quiet", "--verbose"]);
        assert_one_line_naming(&err(&["--timeout"]), &["--timeout"]);
        assert_one_line_naming(&err(&["--command-budget", "a\nb"]), &["--command-budget"]);
    }

    #[test]
    fn help_and_version_pass_through_untouched() {
        let e = parse_args(args(&["--help"])).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = e.to_string();
        for needle in [
            "Instances:",
            "Budgets:",
            "Running:",
            "Output:",
            "Examples:",
            "--overall-token-budget 5000 --command-budget /test=1000 \\\n",
            "--budget-enforcement-mode block /test \"/lint src\"",
            "--config ci.json --dry-run",
            "--simulate",
            "ORCHESTRATOR_CLAUDE_PATH",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}");
        }
        let e = parse_args(args(&["--version"])).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
    }

    #[test]
    fn permission_mode_rejects_typos_but_passes_new_modes() {
        assert_eq!(parse_permission_mode("acceptEdits").unwrap(), "acceptEdits");
        assert!(parse_permission_mode("acceptedits")
            .unwrap_err()
            .contains("acceptEdits"));
        assert!(parse_permission_mode("bypassPermission").is_err());
        assert_eq!(
            parse_permission_mode("someFutureMode").unwrap(),
            "someFutureMode"
        );
        assert!(parse_permission_mode("plan; rm").is_err());
    }

    #[test]
    fn tool_lists_split_outside_parentheses() {
        assert_eq!(
            split_tools("Read, Edit ,Bash(git add, git commit:*),,"),
            vec!["Read", "Edit", "Bash(git add, git commit:*)"]
        );
        assert!(parse_tool_list(" , ").is_err());
    }

    #[test]
    fn start_at_delays() {
        assert_eq!(
            parse_start_at("30m"),
            Ok(StartAt::After(Duration::from_secs(1800)))
        );
        assert_eq!(
            parse_start_at("2h"),
            Ok(StartAt::After(Duration::from_secs(7200)))
        );
        assert_eq!(
            parse_start_at("1.5h"),
            Ok(StartAt::After(Duration::from_secs(5400)))
        );
        assert_eq!(
            parse_start_at("45s"),
            Ok(StartAt::After(Duration::from_secs(45)))
        );
        assert!(parse_start_at("45").unwrap_err().contains("unit"));
        assert!(parse_start_at("5d").is_err());
        assert!(parse_start_at("-5m").is_err());
        assert!(parse_start_at("10000h").is_err());
        assert!(parse_start_at("").is_err());
    }

    #[test]
    fn start_at_clock_times() {
        let t = |h, m| Ok(StartAt::At(NaiveTime::from_hms_opt(h, m, 0).unwrap()));
        assert_eq!(parse_start_at("14:30"), t(14, 30));
        assert_eq!(parse_start_at("2am"), t(2, 0));
        assert_eq!(parse_start_at("11:15pm"), t(23, 15));
        assert_eq!(parse_start_at("11:15 PM"), t(23, 15));
        assert_eq!(parse_start_at("12am"), t(0, 0));
        assert_eq!(parse_start_at("12pm"), t(12, 0));
        assert_eq!(parse_start_at("0:05"), t(0, 5));
        for bad in ["25:99", "24:00", "13pm", "0am", "1:2:3:4", "ab:cd", "7:5x"] {
            assert!(parse_start_at(bad).is_err(), "{bad} should be rejected");
        }
        assert_one_line_naming(&err(&["--start-at", "25:99"]), &["--start-at", "25:99"]);
    }

    #[test]
    fn start_at_resolves_against_now() {
        let now = NaiveDate::from_ymd_opt(2026, 3, 10)
            .unwrap()
            .and_hms_opt(15, 0, 0)
            .unwrap();
        let at = |s: &str| parse_start_at(s).unwrap().resolve_naive(now);
        assert_eq!(at("30m"), now + ChronoDuration::minutes(30));
        // Later today stays today; earlier today means tomorrow.
        assert_eq!(at("11:15pm").to_string(), "2026-03-10 23:15:00");
        assert_eq!(at("14:30").to_string(), "2026-03-11 14:30:00");
        assert_eq!(at("2am").to_string(), "2026-03-11 02:00:00");
        assert_eq!(at("15:00").to_string(), "2026-03-10 15:00:00");

        let tz = FixedOffset::east_opt(3600).unwrap();
        let now_tz = tz.from_local_datetime(&now).unwrap();
        let r = parse_start_at("2am").unwrap().resolve(now_tz);
        assert_eq!(r.to_rfc3339(), "2026-03-11T02:00:00+01:00");
        let r = parse_start_at("1.5h").unwrap().resolve(now_tz);
        assert_eq!(r.to_rfc3339(), "2026-03-10T16:30:00+01:00");
    }

    #[test]
    fn helper_commands_only_as_the_first_argument() {
        use clap_complete::Shell;
        let helper = |a: &[&str]| parse_helper(&args(a)).map(|r| r.map_err(|e| e.to_string()));
        assert_eq!(helper(&["man"]), Some(Ok(Helper::Man)));
        assert_eq!(
            helper(&["completions", "zsh"]),
            Some(Ok(Helper::Completions(Shell::Zsh)))
        );
        // A prompt that is the word "man" stays a prompt anywhere else.
        assert_eq!(helper(&["--", "man"]), None);
        assert_eq!(helper(&["--simulate", "man"]), None);
        assert_eq!(helper(&["man page, please"]), None);
        assert_eq!(parse_args(args(&["--", "man"])).unwrap().prompts, ["man"]);
        match helper(&["completions", "tcsh"]) {
            Some(Err(e)) => assert_one_line_naming(&e, &["tcsh", "bash"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(helper(&["completions"]), Some(Err(_))));
        assert!(matches!(helper(&["man", "extra"]), Some(Err(_))));
    }

    #[test]
    fn the_budget_helper_takes_the_runs_periodic_flags() {
        let helper = |a: &[&str]| parse_helper(&args(a)).map(|r| r.map_err(|e| e.to_string()));
        let Some(Ok(Helper::Budget(b))) = helper(&[
            "budget",
            "--daily-token-budget",
            "2M",
            "--monthly-cost-budget",
            "$500",
            "--budget-timezone",
            "Europe/Berlin",
            "--project",
            "api",
            "-c",
            "ci.json",
            "--json",
            "--ledger",
            "l.sqlite",
        ]) else {
            panic!("not the budget helper");
        };
        // The very values a run parses from the same flags.
        let run = parse_args(args(&[
            "--daily-token-budget",
            "2M",
            "--monthly-cost-budget",
            "$500",
            "--budget-timezone",
            "Europe/Berlin",
            "/x",
        ]))
        .unwrap();
        assert_eq!(b.periodic, run.periodic);
        assert_eq!(b.periodic.limits().len(), 2);
        assert_eq!(b.project.as_deref(), Some("api"));
        assert_eq!(b.config, Some(PathBuf::from("ci.json")));
        assert!(b.json);
        assert_eq!(b.ledger, Some(PathBuf::from("l.sqlite")));
        // Bad values are the run's one-line messages.
        match helper(&["budget", "--weekly-token-budget", "0"]) {
            Some(Err(e)) => assert_one_line_naming(&e, &["--weekly-token-budget", "'0'"]),
            other => panic!("{other:?}"),
        }
        match helper(&["budget", "--budget-timezone", "Mars/Olympus"]) {
            Some(Err(e)) => assert_one_line_naming(&e, &["--budget-timezone", "Europe/Berlin"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(helper(&["budget", "/review"]), Some(Err(_))));
        // Only as the first argument.
        assert_eq!(helper(&["--", "budget"]), None);
        assert_eq!(
            parse_args(args(&["--", "budget"])).unwrap().prompts,
            ["budget"]
        );
    }

    #[test]
    fn completions_and_man_page_describe_the_flags() {
        use clap_complete::Shell;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(completions(shell)).unwrap();
            assert!(text.contains("overall-token-budget"), "{shell}");
            for helper in ["completions", "usage", "budget"] {
                assert!(text.contains(helper), "{shell}: {helper} missing");
            }
        }
        let man = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(man.contains(".TH orchestrator 1"));
        assert!(man.contains("overall\\-token\\-budget"));
        // Examples keep their lines, in a no-fill block.
        assert!(
            man.contains(".SH EXAMPLES\n.nf\n.ft CR\n  # Two slash commands, 5000 tokens overall"),
            "{man}"
        );
        assert!(
            man.contains("  orchestrator \\-\\-config ci.json \\-\\-dry\\-run\n"),
            "{man}"
        );
        assert!(!man.contains(".SH EXTRA"));
        // Completions offer the words of word-valued flags, not file names.
        let bash = String::from_utf8(completions(Shell::Bash)).unwrap();
        for words in [
            "warn block",
            "auto always never",
            "stream-json json",
            "silent concise detailed",
        ] {
            assert!(bash.contains(&format!("compgen -W \"{words}\"")), "{words}");
        }
    }
}
