//! The command as a whole: parse, validate, then dry-run, list commands or run, and map
//! every failure to the exit codes of SPEC section 6.

use crate::config::cli::{self, Cli};
use crate::config::commands;
use crate::config::file as config;
use crate::core::budget::Ledger;
use crate::core::estimate::{self, Estimate};
use crate::core::plan::{ColorChoice, Plan};
use crate::core::pricing::Pricing;
use crate::core::run::RunState;
use crate::output::dryrun;
use crate::output::events::EventSink;
use crate::output::style::Styles;
use crate::output::terminal::Console;
use crate::output::Outputs;
use crate::runtime::dispatcher::Dispatcher;
use crate::runtime::recorder::{self, Recorder};
use crate::runtime::{launch, limits, logs, process, watchdog};
use crate::simulate;
use crate::store::{self, HistoryKey, RunEnd, StoreError, UsageStore};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Exit code for usage and config errors: nothing was launched.
pub const EXIT_USAGE: i32 = 2;

pub fn main_with_args(args: Vec<OsString>) -> i32 {
    // Before anything else (no runtime, no signal handlers): the simulated Claude must
    // die on SIGTERM like the real one.
    if args
        .get(1)
        .is_some_and(|a| a == simulate::HIDDEN_SUBCOMMAND)
    {
        let mut out = std::io::stdout().lock();
        return simulate::run(&args[2..], &mut out, simulate::pace_from_env());
    }
    if args
        .get(1)
        .is_some_and(|a| a == crate::runtime::watchdog::SUBCOMMAND)
    {
        return crate::runtime::watchdog::run(&args[2..]);
    }
    if let Some(helper) = cli::parse_helper(&args) {
        return match helper {
            Ok(h) => run_helper(h),
            Err(e) => clap_exit(e),
        };
    }
    let cli = match cli::parse_args(args) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    init_tracing(&cli);
    if cli.list_examples {
        print!("{}", crate::config::examples::list());
        return 0;
    }
    if let Some(kind) = &cli.generate_example {
        return match crate::config::examples::example(kind) {
            Ok(json) => {
                println!("{json}");
                0
            }
            Err(e) => usage_error(&e),
        };
    }
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => return usage_error(&format!("cannot read the current directory: {e}")),
    };
    if cli.list_commands || cli.inspect_command.is_some() {
        return slash_commands(&cli, &cwd);
    }
    let mut plan = match config::build_plan(&cli, &cwd) {
        Ok(plan) => plan,
        Err(e) => return usage_error(&e.to_string()),
    };
    plan.options.run_id = uuid::Uuid::new_v4().to_string();
    let ledger = ledger_choice(&cli, plan.options.simulate);
    let pricing = match &plan.options.pricing_file {
        Some(path) => match config::load_pricing(path) {
            Ok(p) => p,
            Err(e) => return usage_error(&format!("--pricing: {e:#}")),
        },
        None => Pricing::builtin(),
    };
    if let Err(msg) = check_outputs(&plan) {
        return usage_error(&msg);
    }
    if let (Some(p), LedgerChoice::Off) = (plan.budgets.periodic.first(), &ledger) {
        return usage_error(&format!(
            "--{}-token-budget/--{}-cost-budget counts every run of the project, so it needs the ledger; drop --no-ledger (or give --ledger PATH with --simulate)",
            p.period.adjective(),
            p.period.adjective()
        ));
    }
    if plan.options.dry_run {
        // Reads history for the estimates and the periodic budgets; never writes.
        let store = match open_ledger(&ledger, false, false) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let mut budget_ledger = Ledger::for_plan(&plan, &pricing);
        if let Some(mut store) = store {
            fill_estimates(&mut plan, store.as_mut());
            budget_ledger = Ledger::for_plan(&plan, &pricing);
            if let Err(e) = seed_periodic(&mut budget_ledger, &plan, store.as_mut()) {
                return usage_error(&e);
            }
        }
        return dry_run(&plan, budget_ledger);
    }
    let store = match open_ledger(&ledger, true, !plan.budgets.periodic.is_empty()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if store.is_none() && !plan.budgets.periodic.is_empty() {
        // The default ledger could not be used (already warned): a periodic budget
        // cannot be kept without it, so nothing is launched.
        return usage_error(
            "periodic budgets need the ledger, which cannot be used; give a usable --ledger PATH",
        );
    }
    run(plan, pricing, store, &ledger)
}

/// Seeds each periodic budget (`--daily-token-budget`, …) with what the other runs
/// recorded in its current period (UTC unless `--budget-timezone`) and hold in
/// reservation now (`store::shared_budgets`). `Err` is the message for the user.
fn seed_periodic(
    budget_ledger: &mut Ledger,
    plan: &Plan,
    store: &mut dyn UsageStore,
) -> Result<(), String> {
    use crate::core::budget::Amount;
    let shared = store::shared_budgets(plan, chrono::Utc::now());
    if shared.is_empty() {
        return Ok(());
    }
    let budgets: Vec<store::SharedBudget> = shared.iter().map(|(_, b)| b.clone()).collect();
    let figures = store
        .elsewhere(&plan.options.run_id, store::now_ms(), &budgets)
        .map_err(|e| {
            format!("cannot read the periodic budgets from the ledger: {e}; fix the ledger or give another --ledger")
        })?;
    for ((key, _), e) in shared.iter().zip(figures) {
        // Nothing runs yet, so the decisions (warnings, stops) have nobody to act on;
        // admission sees the figures.
        let _ = budget_ledger.set_elsewhere(
            key,
            Amount::from_raw(key.unit, i128::from(e.used)),
            Amount::from_raw(key.unit, i128::from(e.reserved)),
        );
    }
    Ok(())
}

/// How long this run's holds in shared budgets last past each renewal.
fn lease() -> std::time::Duration {
    std::env::var(recorder::LEASE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(recorder::LEASE, std::time::Duration::from_millis)
}

/// Which ledger a run records into (README, "Usage ledger").
#[derive(Debug, Clone, PartialEq)]
enum LedgerChoice {
    /// `--no-ledger`, a `--simulate` run without an explicit ledger, or no home.
    Off,
    /// `--ledger PATH` or `ORCHESTRATOR_LEDGER`: failing to use it is a usage error.
    Explicit(PathBuf),
    /// The default ledger: failing to use it is one warning.
    Default(PathBuf),
}

impl LedgerChoice {
    fn path(&self) -> Option<&Path> {
        match self {
            LedgerChoice::Off => None,
            LedgerChoice::Explicit(p) | LedgerChoice::Default(p) => Some(p),
        }
    }
}

fn ledger_choice(cli: &Cli, simulate: bool) -> LedgerChoice {
    if cli.no_ledger {
        return LedgerChoice::Off;
    }
    if let Some(p) = cli.ledger.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        return LedgerChoice::Explicit(p.clone());
    }
    if simulate {
        return LedgerChoice::Off;
    }
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
    match store::default_path(xdg.as_deref(), home_dir().as_deref()) {
        Some(p) => LedgerChoice::Default(p),
        None => LedgerChoice::Off,
    }
}

/// A run sharing budgets counts the ledger as unreachable once a lock has been held
/// against it this long (`--ledger-failure`).
const SHARED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the chosen ledger: for writing (creating it, and the default one's directory)
/// or read-only. `Err(exit code)` after the message when an explicit ledger cannot be
/// used; the default ledger failing is one warning and `Ok(None)`.
fn open_ledger(
    choice: &LedgerChoice,
    write: bool,
    sharing: bool,
) -> Result<Option<Box<dyn UsageStore>>, i32> {
    let Some(path) = choice.path() else {
        return Ok(None);
    };
    let opened = (|| {
        if store::is_server(path) {
            // A database server: nothing on disk to check or create.
            return if write {
                store::open(path, sharing.then_some(SHARED_PATIENCE)).map(Some)
            } else {
                store::open_read_only(path)
            };
        }
        if write {
            if let LedgerChoice::Default(_) = choice {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Unusable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
            if path.is_dir() {
                return Err(StoreError::Unusable(
                    "is a directory; give a file path".into(),
                ));
            }
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(StoreError::Unusable(format!(
                    "directory {} does not exist",
                    parent.display()
                )));
            }
            store::open(path, sharing.then_some(SHARED_PATIENCE)).map(Some)
        } else {
            store::open_read_only(path)
        }
    })();
    opened
        .map_err(|e| ledger_failed(choice, &e))
        .or_else(|code| match code {
            0 => Ok(None),
            c => Err(c),
        })
}

/// Reports a ledger that cannot be used: exit 2 for an explicit one; a warning (and 0:
/// go on unrecorded) for the default one.
fn ledger_failed(choice: &LedgerChoice, e: &StoreError) -> i32 {
    match choice {
        LedgerChoice::Explicit(p) => usage_error(&format!(
            "--ledger {}: {e}; fix it, give another --ledger, or run with --no-ledger",
            store::display(p)
        )),
        LedgerChoice::Default(p) => {
            eprintln!(
                "orchestrator: warning: the ledger {} {e}; this run is not recorded (give --ledger PATH, or --no-ledger to silence this)",
                p.display()
            );
            0
        }
        LedgerChoice::Off => 0,
    }
}

/// Works out each instance's estimate from the ledger's history (`core::estimate`).
fn fill_estimates(plan: &mut Plan, store: &mut dyn UsageStore) {
    if plan.budgets.estimate_pinned {
        return;
    }
    let mut cache: std::collections::HashMap<HistoryKey, Estimate> = Default::default();
    for spec in &mut plan.instances {
        if spec.max_tokens.is_some() {
            continue;
        }
        let key = HistoryKey {
            project: plan.options.project.clone(),
            base_command: spec.base_command().map(str::to_string),
            model: recorder::configured_model(spec.model.as_deref()),
        };
        let e = *cache.entry(key).or_insert_with_key(|key| {
            let history = store
                .history(key, estimate::HISTORY_WINDOW)
                .unwrap_or_else(|e| {
                    tracing::warn!("cannot read estimates from the ledger: {e}");
                    Vec::new()
                });
            estimate::estimate(None, None, &history)
        });
        spec.estimate = Some(e);
    }
}

/// `orchestrator completions SHELL` / `orchestrator man`: the text on stdout.
fn run_helper(helper: cli::Helper) -> i32 {
    let text = match helper {
        cli::Helper::Usage(args) => return usage_report(&args),
        cli::Helper::Budget(args) => return budget_report(&args),
        cli::Helper::Completions(shell) => cli::completions(shell),
        cli::Helper::Man => match cli::man_page() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("orchestrator: error: cannot render the man page: {e}");
                return 1;
            }
        },
    };
    print_out(&text)
}

/// `orchestrator usage`: the ledger's groups as a table or JSON on stdout.
fn usage_report(args: &cli::UsageArgs) -> i32 {
    use crate::output::usage as report;
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let since = match &args.since {
        Some(s) => match report::parse_when(s, now) {
            Ok(t) => t,
            Err(e) => return usage_error(&format!("usage --since: {e}")),
        },
        None => now_ms - report::DEFAULT_SINCE_DAYS * 86_400_000,
    };
    let until = match &args.until {
        Some(s) => match report::parse_when(s, now) {
            Ok(t) => t,
            Err(e) => return usage_error(&format!("usage --until: {e}")),
        },
        // Past now: a run that starts while this reads is not cut off by rounding.
        None => now_ms + 1,
    };
    let path = match helper_ledger(args.ledger.as_ref(), "usage") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let q = store::UsageQuery {
        since_ms: since,
        until_ms: until,
        by: args.by,
        project: args.project.clone(),
        run: args.run.clone(),
    };
    let groups = match store::open_read_only(&path) {
        Ok(Some(mut s)) => match s.usage(&q) {
            Ok(g) => g,
            Err(e) => {
                return usage_error(&format!(
                    "usage --ledger {}: {e}; fix it or give another --ledger",
                    store::display(&path)
                ))
            }
        },
        Ok(None) => Vec::new(),
        Err(e) => {
            return usage_error(&format!(
                "usage --ledger {}: {e}; fix it or give another --ledger",
                store::display(&path)
            ))
        }
    };
    let groups = report::finalize(groups, args.by);
    let stale_ms = std::env::var(store::STALE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(store::STALE_AFTER_MS);
    let text = if args.json {
        report::to_json(&groups, args.by, now_ms, stale_ms) + "\n"
    } else {
        let tty = std::io::stdout().is_terminal();
        report::render_table(&groups, args.by, &stdout_styles(), tty, now_ms, stale_ms)
    };
    print_out(text.as_bytes())
}

/// The ledger a helper reads: `--ledger PATH` (or `ORCHESTRATOR_LEDGER`), else the
/// default one. `Err(exit code)` after the message when there is no default.
fn helper_ledger(given: Option<&PathBuf>, helper: &str) -> Result<PathBuf, i32> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
    store::default_path(xdg.as_deref(), home_dir().as_deref()).ok_or_else(|| {
        usage_error(&format!(
            "{helper}: no default ledger (neither XDG_DATA_HOME nor HOME is set); give --ledger PATH"
        ))
    })
}

/// A helper's whole output on stdout: 0, also when the reader stopped early (`| head`);
/// 1 when it cannot be written.
fn print_out(text: &[u8]) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|_| out.flush()) {
        Ok(()) => 0,
        // A reader that stopped early is not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("orchestrator: error: cannot write to stdout: {e}");
            1
        }
    }
}

/// Colour for a helper's table on stdout: only on a terminal (honours NO_COLOR and
/// CLICOLOR_FORCE); ASCII bars where the locale is not UTF-8.
fn stdout_styles() -> Styles {
    styles_for(ColorChoice::Auto, std::io::stdout().is_terminal())
}

/// `orchestrator budget`: the project's periodic budgets as a table or JSON on stdout.
/// The budgets are the periodic flags' and `--config`'s, else those the project's newest
/// run recorded; with none of them, one line and exit 2.
fn budget_report(args: &cli::BudgetArgs) -> i32 {
    use crate::core::budget::{Amount, Scope};
    use crate::output::budget as report;
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => return usage_error(&format!("cannot read the current directory: {e}")),
    };
    let project = args
        .project
        .clone()
        .unwrap_or_else(|| config::default_project(&cwd));
    let given = match config::periodic_budgets(
        &args.periodic,
        args.config.as_deref(),
        args.profile.as_deref(),
        &cwd,
    ) {
        Ok(g) => g,
        Err(e) => return usage_error(&format!("budget: {e}")),
    };
    let path = match helper_ledger(args.ledger.as_ref(), "budget") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let unusable = |e: &StoreError| {
        usage_error(&format!(
            "budget --ledger {}: {e}; fix it or give another --ledger",
            store::display(&path)
        ))
    };
    let mut store = match store::open_read_only(&path) {
        Ok(s) => s,
        Err(e) => return unusable(&e),
    };
    let recorded = match (&mut store, given.is_empty()) {
        (Some(s), true) => match s.newest_periodic(&project) {
            Ok(r) => r,
            Err(e) => return unusable(&e),
        },
        _ => None,
    };
    let (periodic, zone, source) = match recorded {
        _ if !given.is_empty() => (
            given,
            args.periodic.budget_timezone.unwrap_or_default(),
            report::Source::Given,
        ),
        Some(r) => (
            r.periodic,
            args.periodic.budget_timezone.unwrap_or(r.zone),
            report::Source::Run {
                run_id: r.run_id,
                started_ms: r.started_ms,
            },
        ),
        None => {
            return usage_error(&format!(
                "budget: no periodic budget is configured for project {project}: give one (--daily-token-budget N, --monthly-cost-budget USD, …, or --config FILE with budget.periodic), or --project NAME of a project whose runs set one"
            ))
        }
    };
    let now = chrono::Utc::now();
    let shares = store::periodic_shares(&periodic, zone, &project, now);
    let budgets: Vec<store::SharedBudget> = shares.iter().map(|(_, b)| b.clone()).collect();
    // No run has this id: every run counts.
    let figures = match &mut store {
        Some(s) => match s.elsewhere("", now.timestamp_millis(), &budgets) {
            Ok(f) => f,
            Err(e) => return unusable(&e),
        },
        None => vec![store::Elsewhere::default(); budgets.len()],
    };
    let rows = shares
        .into_iter()
        .zip(figures)
        .filter_map(|((key, _), e)| {
            let Scope::Periodic(period, scope) = &key.scope else {
                return None;
            };
            let limit = periodic
                .iter()
                .find(|p| p.period == *period && p.scope == *scope)?
                .limit(key.unit)?;
            let unit = key.unit;
            Some(report::Row {
                window: zone.window(*period, now),
                limit,
                used: Amount::from_raw(unit, i128::from(e.used)),
                reserved: Amount::from_raw(unit, i128::from(e.reserved)),
                key,
            })
        })
        .collect();
    let view = report::View {
        project,
        zone: zone.name().to_string(),
        now,
        source,
        ledger_found: store.is_some(),
        rows,
    };
    let text = if args.json {
        report::to_json(&view) + "\n"
    } else {
        report::render_table(&view, &stdout_styles())
    };
    print_out(text.as_bytes())
}

/// Where the report and logs go must be usable before anything is spent (and a dry run
/// says so too); nothing is created here.
fn check_outputs(plan: &Plan) -> Result<(), String> {
    if let Some(report) = &plan.options.report {
        let shown = report.display();
        if report.is_dir() {
            return Err(format!(
                "--report {shown}: is a directory; give a file path"
            ));
        }
        // An existing special file (/dev/null, /dev/stdout, a FIFO) is written in place,
        // never replaced: it must be writable itself, its directory need not be.
        if let Ok(meta) = std::fs::metadata(report) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                return Err(format!("--report {shown}: is a socket; give a file path"));
            }
            if !meta.is_file() {
                if !writable(report) {
                    return Err(format!("--report {shown}: is not writable"));
                }
                return check_log_dir(plan);
            }
        }
        let parent = report
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(format!(
                "--report {shown}: directory {} does not exist",
                parent.display()
            ));
        }
        if !writable(parent) {
            return Err(format!(
                "--report {shown}: directory {} is not writable",
                parent.display()
            ));
        }
    }
    check_log_dir(plan)
}

fn check_log_dir(plan: &Plan) -> Result<(), String> {
    if let Some(dir) = &plan.options.log_dir {
        if dir.exists() && !dir.is_dir() {
            return Err(format!(
                "--log-dir {}: exists and is not a directory",
                dir.display()
            ));
        }
        logs::check_dir(dir)?;
    }
    Ok(())
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access() only reads the NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn clap_exit(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        _ => {
            let msg = e.to_string();
            usage_error(msg.trim())
        }
    }
}

fn usage_error(msg: &str) -> i32 {
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    eprintln!("orchestrator: error: {msg}");
    EXIT_USAGE
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.effective_quiet(), cli.effective_verbose()) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("orchestrator={default}")));
    // Diagnostics follow the same colour rule as everything else on stderr.
    let ansi = stderr_styles(cli.color).is_colored();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Colour for human output on stderr, resolved once from `--color` and the environment.
fn stderr_styles(choice: ColorChoice) -> Styles {
    styles_for(choice, std::io::stderr().is_terminal())
}

/// Colour from `choice`, whether the stream is a terminal and the environment; ASCII
/// where the locale is not UTF-8.
fn styles_for(choice: ColorChoice, tty: bool) -> Styles {
    Styles::resolve(
        choice,
        tty,
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("CLICOLOR_FORCE").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
    .with_ascii(!crate::output::style::locale_is_utf8(
        std::env::var_os("LC_ALL").as_deref(),
        std::env::var_os("LC_CTYPE").as_deref(),
        std::env::var_os("LANG").as_deref(),
    ))
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn workspace_of(cli: &Cli, cwd: &Path) -> PathBuf {
    match &cli.workspace {
        Some(w) if w.is_absolute() => w.clone(),
        Some(w) => cwd.join(w),
        None => cwd.to_path_buf(),
    }
}

fn slash_commands(cli: &Cli, cwd: &Path) -> i32 {
    let workspace = workspace_of(cli, cwd);
    if !workspace.is_dir() {
        return usage_error(&format!(
            "--workspace {}: not a directory",
            workspace.display()
        ));
    }
    let found = commands::discover(&workspace, home_dir().as_deref());
    let mut out = std::io::stdout().lock();
    match &cli.inspect_command {
        Some(name) => match commands::find(&found, name) {
            Some(cmd) => match commands::render_inspect(cmd) {
                Ok(text) => {
                    let _ = out.write_all(text.as_bytes());
                    0
                }
                Err(e) => usage_error(&format!("{e:#}")),
            },
            None => usage_error(&format!(
                "--inspect-command {name}: no such slash command in {}/.claude/commands or ~/.claude/commands (see --list-commands)",
                workspace.display()
            )),
        },
        None => {
            let _ = out.write_all(commands::render_list(&found).as_bytes());
            0
        }
    }
}

fn dry_run(plan: &Plan, ledger: Ledger) -> i32 {
    let claude_found = if plan.options.simulate {
        std::env::current_exe().ok()
    } else {
        launch::find_in_path(&plan.options.claude_path)
    };
    let home = home_dir();
    let cache = std::cell::RefCell::new(std::collections::HashMap::new());
    let known = |name: &str, ws: &Path| {
        let mut cache = cache.borrow_mut();
        let found = cache
            .entry(ws.to_path_buf())
            .or_insert_with(|| commands::discover(ws, home.as_deref()));
        commands::is_known(found, name)
    };
    let env = dryrun::DryRunEnv {
        claude_found,
        command_known: &known,
        ledger,
    };
    let result = dryrun::render(plan, &env);
    let mut out = std::io::stdout().lock();
    if plan.options.json {
        let _ = writeln!(out, "{}", result.json);
    } else {
        // Prompts, models and extra args are the user's text: no raw ESC/BEL/bidi.
        let text = crate::core::text::sanitize_block(&result.text);
        let _ = out.write_all(text.as_bytes());
    }
    let _ = out.flush();
    if plan.options.strict && !result.warnings.is_empty() {
        eprintln!(
            "orchestrator: error: --strict: the dry run has {} warning(s); fix them or drop --strict",
            result.warnings.len()
        );
        return EXIT_USAGE;
    }
    0
}

fn run(
    mut plan: Plan,
    pricing: Pricing,
    mut store: Option<Box<dyn UsageStore>>,
    ledger: &LedgerChoice,
) -> i32 {
    if let Some(store) = store.as_mut() {
        fill_estimates(&mut plan, store.as_mut());
    }
    let mut budget_ledger = Ledger::for_plan(&plan, &pricing);
    if let Some(store) = store.as_mut() {
        if let Err(e) = seed_periodic(&mut budget_ledger, &plan, store.as_mut()) {
            return usage_error(&e);
        }
    }
    let program = if plan.options.simulate {
        match std::env::current_exe() {
            Ok(exe) => (exe, vec![OsString::from(simulate::HIDDEN_SUBCOMMAND)]),
            Err(e) => return usage_error(&format!("--simulate: cannot find this program: {e}")),
        }
    } else {
        // Checked once, before anything is launched: with claude missing every instance
        // would fail the same way, so this is a usage error (exit 2), not N failures.
        let p = &plan.options.claude_path;
        match launch::find_in_path(p) {
            Some(found) => (found, Vec::new()),
            None => return usage_error(&missing_claude(p)),
        }
    };
    if let Some(dir) = &plan.options.log_dir {
        if let Err(e) = logs::create_dir(dir) {
            return usage_error(&format!("--log-dir {}: {e}", dir.display()));
        }
        // Whatever an earlier run left at this run's names goes before anything starts.
        let stems = logs::assign_stems(plan.instances.iter().map(|i| i.name.as_str()));
        if let Err(e) = logs::remove_stale(dir, &stems) {
            return usage_error(&e);
        }
    }
    let mut inherited_children = process::own_children();
    if let Err(e) = process::become_child_subreaper() {
        tracing::debug!(error = %e, "cannot become a child subreaper");
    }
    // Kills every instance's process tree should this process die without cleaning up.
    let watchdog = std::env::current_exe()
        .ok()
        .and_then(|exe| watchdog::Watchdog::start(&exe));
    if let Some(w) = &watchdog {
        inherited_children.push(w.pid());
    }
    let styles = stderr_styles(plan.options.color);
    let mut console = Console::new(
        styles,
        plan.options.quiet,
        plan.options.json,
        plan.options.max_line_length,
    );
    fit_open_file_limit(&mut plan, &mut console);
    if plan.options.verbose > 0 || std::env::var_os("RUST_LOG").is_some() {
        console = console.without_live();
    }
    let pacer = crate::runtime::pacer::Pacer::new(pacer_interval(&plan));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || pacer.before_poll())
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orchestrator: error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let mut news = None;
    let mut shared_keys = Vec::new();
    let recorder = match store {
        Some(store) => {
            let run = recorder::run_record(
                &plan,
                serde_json::Value::Array(crate::output::events::configured_budgets(&plan))
                    .to_string(),
            );
            // Periodic budgets are shared every 250 ms; without them the project's
            // launch pauses still are, with each write.
            let shared = store::shared_budgets(&plan, chrono::Utc::now());
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            news = Some(rx);
            shared_keys = shared.iter().map(|(k, _)| k.clone()).collect();
            let sharing = recorder::Sharing {
                project: plan.options.project.clone(),
                every: if shared.is_empty() {
                    recorder::WRITE_EVERY
                } else {
                    recorder::SHARE_EVERY
                },
                budgets: shared,
                lease: lease(),
                news: tx,
            };
            match Recorder::start(store, run, recorder::initial_records(&plan), sharing) {
                Ok(r) => Some(r),
                Err(e) => match ledger_failed(ledger, &e) {
                    0 => None,
                    code => return code,
                },
            }
        }
        None => None,
    };
    let mut events = EventSink::new(plan.options.json);
    events.set_report_path(plan.options.report.clone());
    let outputs = Outputs {
        console,
        events,
        recorder: recorder.as_ref().map(Recorder::handle),
    };
    let mut state = RunState::new(plan, budget_ledger, Instant::now());
    let dispatcher = match news {
        Some(news) => {
            state.share_budgets(shared_keys);
            Dispatcher::new(state, Arc::new(pricing), program, outputs).with_news(news)
        }
        None => Dispatcher::new(state, Arc::new(pricing), program, outputs),
    };
    let (outcome, _report) = runtime.block_on(dispatcher.run());
    drop(runtime);
    if let Some(r) = recorder {
        r.finish(RunEnd {
            ended_ms: store::now_ms(),
            exit_code: outcome.exit.code(),
            exit_reason: outcome.reason.clone(),
        });
    }
    let leftovers = process::kill_leftover_children(&inherited_children);
    if leftovers > 0 {
        tracing::warn!(
            count = leftovers,
            "killed processes that had left their instance's process group"
        );
    }
    let watchdog_use = watchdog.and_then(watchdog::Watchdog::finish);
    if std::env::var_os(RUSAGE_ENV).is_some() {
        print_own_rusage(watchdog_use);
    }
    outcome.exit.code()
}

/// Raises the open-file limit as far as allowed; when it still cannot carry every
/// instance the plan could run at once, lowers `--max-parallel` (the rest queue) and says
/// so once, instead of letting instances fail with "Too many open files".
fn fit_open_file_limit(plan: &mut Plan, console: &mut Console) {
    let limit = match limits::raise_nofile_limit() {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the open-file limit");
            return;
        }
    };
    let logged = plan.options.log_dir.is_some();
    let capacity = limits::parallel_capacity(limit, limits::open_fds(), logged);
    let requested = plan.options.max_parallel;
    if let Some(max) = limits::effective_parallelism(requested, plan.instances.len(), capacity) {
        plan.options.max_parallel = max;
        console.warn(&format!(
            "the open-file limit ({limit}) allows {max} instances at once{}; the others wait for a free slot (raise it with `ulimit -n`)",
            if requested == 0 {
                String::new()
            } else {
                format!(", not --max-parallel {requested}")
            }
        ));
    }
}

/// The one line for a claude that cannot be run: what was looked for and the two ways out.
fn missing_claude(p: &Path) -> String {
    let what = if p.components().count() > 1 || p.is_absolute() {
        format!("{} is not an executable file", p.display())
    } else {
        format!("`{}` is not on PATH", p.display())
    };
    format!(
        "cannot run Claude Code: {what}; install it, give its path with --claude-path (or ORCHESTRATOR_CLAUDE_PATH), or try --simulate"
    )
}

/// Hidden: when set, a run ends by printing the orchestrator's own CPU time and peak RSS
/// to stderr (benches/scale.sh). Its own and its watchdog's (`runtime::watchdog`, a process
/// of its own that exists only for the run) only: the instances', which a shell's `time`
/// would add in, are not the orchestrator's cost.
pub const RUSAGE_ENV: &str = "ORCHESTRATOR_RUSAGE";

/// The run loop's wake-up interval: short when a budget can stop instances (see
/// `runtime::pacer`); `ORCHESTRATOR_WAKE_EVERY_US` (hidden, for benchmarks) overrides it,
/// 0 turning pacing off.
fn pacer_interval(plan: &Plan) -> std::time::Duration {
    use crate::runtime::pacer::{WAKE_EVERY, WAKE_EVERY_RELAXED};
    let default = if plan.budget_can_stop() {
        WAKE_EVERY
    } else {
        WAKE_EVERY_RELAXED
    };
    std::env::var("ORCHESTRATOR_WAKE_EVERY_US")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(default, std::time::Duration::from_micros)
}

/// getrusage(2) for `who` (`RUSAGE_SELF`, `RUSAGE_THREAD`), with its user and system CPU
/// time in seconds; for [`RUSAGE_ENV`].
pub fn rusage(who: libc::c_int) -> Option<(libc::rusage, f64, f64)> {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return None;
    }
    Some((ru, secs(ru.ru_utime), secs(ru.ru_stime)))
}

fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// The orchestrator's CPU time (its own plus its watchdog's, shown apart too) and its
/// peak RSS, for [`RUSAGE_ENV`].
fn print_own_rusage(watchdog: Option<libc::rusage>) {
    let Some((ru, user, sys)) = rusage(libc::RUSAGE_SELF) else {
        return;
    };
    let (w_user, w_sys) = watchdog.map_or((0.0, 0.0), |w| (secs(w.ru_utime), secs(w.ru_stime)));
    eprintln!(
        "orchestrator rusage: user_s={:.3} sys_s={:.3} max_rss_kb={} voluntary_cs={} involuntary_cs={} minor_faults={} watchdog_user_s={:.3} watchdog_sys_s={:.3}",
        user + w_user,
        sys + w_sys,
        ru.ru_maxrss,
        ru.ru_nvcsw,
        ru.ru_nivcsw,
        ru.ru_minflt,
        w_user,
        w_sys
    );
}
