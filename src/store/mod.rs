//! Where usage is kept beyond the run: the ledger.
//!
//! [`UsageStore`] is the seam: the run records through it (`runtime::recorder`), the
//! estimates read history through it and `orchestrator usage` queries it. The SQLite
//! backend ([`sqlite::SqliteStore`]) is the default; the PostgreSQL backend
//! ([`postgres::PostgresStore`]) shares one ledger across machines (issue 12). [`open`]
//! picks the backend from the `--ledger` value. Every write is an upsert keyed by run id (and
//! instance index) carrying absolute values, never increments, so a retried or repeated
//! write never double-counts.
//!
//! What is recorded: the run (id, project, host, start, end, mode, configured budgets,
//! exit code and reason, whether it was simulated, heartbeat) and each instance (name,
//! command, base command, configured and seen model, status, reason, the four token
//! classes, dollars in integer nanodollars, duration, tool calls, Claude's session id,
//! exit code). Never an instance's `env` values; the command (the prompt) is recorded as
//! given, so a prompt should not carry secrets (README, "Usage ledger").

#[cfg(test)]
pub(crate) mod contract;
/// A real PostgreSQL server for the tests (shared with the integration tests).
#[cfg(test)]
#[path = "../../tests/it/common/pg_server.rs"]
pub(crate) mod pg_server;
pub mod postgres;
pub mod sqlite;

use crate::core::budget::{BudgetKey, Scope, Unit};
use crate::core::usage::{Usage, Usd};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Opens the ledger `spec` names for writing, creating or migrating its schema: a
/// `postgres://` or `postgresql://` URL is a PostgreSQL database, anything else an
/// SQLite file (whose directory must exist). With `patience`, a write gives up on a lock
/// another process holds after that long (a run sharing budgets must learn soon that
/// the ledger is unavailable); else it waits as long as the backend's default.
pub fn open(spec: &Path, patience: Option<Duration>) -> Result<Box<dyn UsageStore>, StoreError> {
    match spec.to_str().filter(|s| postgres::is_url(s)) {
        Some(url) => {
            let mut store = postgres::PostgresStore::open(url)?;
            if let Some(p) = patience {
                store.set_patience(p)?;
            }
            Ok(Box::new(store))
        }
        None => {
            let mut store = sqlite::SqliteStore::open(spec)?;
            if let Some(p) = patience {
                store.set_patience(p)?;
            }
            Ok(Box::new(store))
        }
    }
}

/// Opens the ledger `spec` names without ever writing to it (the dry run, `orchestrator
/// usage`): `Ok(None)` when it holds no ledger yet.
pub fn open_read_only(spec: &Path) -> Result<Option<Box<dyn UsageStore>>, StoreError> {
    fn boxed<S: UsageStore + 'static>(s: Option<S>) -> Option<Box<dyn UsageStore>> {
        s.map(|s| Box::new(s) as Box<dyn UsageStore>)
    }
    match spec.to_str().filter(|s| postgres::is_url(s)) {
        Some(url) => postgres::PostgresStore::open_read_only(url).map(boxed),
        None => sqlite::SqliteStore::open_read_only(spec).map(boxed),
    }
}

/// Whether `spec` names a database server rather than a file.
pub fn is_server(spec: &Path) -> bool {
    spec.to_str().is_some_and(postgres::is_url)
}

/// `spec` as messages show it: a URL without its password.
pub fn display(spec: &Path) -> String {
    match spec.to_str() {
        Some(s) if postgres::is_url(s) => postgres::redact(s),
        _ => spec.display().to_string(),
    }
}

/// A run whose heartbeat is older than this, and that never finished, is `abandoned`.
pub const STALE_AFTER_MS: i64 = 30_000;
/// Hidden: overrides [`STALE_AFTER_MS`] (in milliseconds) for `orchestrator usage`, so
/// tests can see a killed run as abandoned without waiting 30 s.
pub const STALE_ENV: &str = "ORCHESTRATOR_LEDGER_STALE_MS";

/// The run, as recorded when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub project: String,
    pub host: String,
    /// Unix milliseconds (UTC).
    pub started_ms: i64,
    /// `warn` or `block`.
    pub mode: String,
    /// The configured budgets, as `run_started` lists them (JSON array).
    pub budgets_json: String,
    pub simulated: bool,
    /// The orchestrator's version.
    pub version: String,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub ended_ms: i64,
    pub exit_code: i32,
    pub exit_reason: String,
}

/// One instance, as recorded: absolute values at the time of the write.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceRecord {
    /// Index in the plan; with the run id, the record's key.
    pub index: u32,
    pub name: String,
    pub command: String,
    /// `None` for a free-text prompt.
    pub base_command: Option<String>,
    /// The configured model, normalised (`core::pricing::normalize`); the estimate key.
    pub configured_model: Option<String>,
    /// The model Claude reported (else the configured one, as given).
    pub model: Option<String>,
    /// `pending`, `running`, `completed`, … (`core::plan::Status::as_str`).
    pub status: String,
    pub reason: Option<String>,
    pub usage: Usage,
    pub cost: Usd,
    pub duration_ms: u64,
    pub tool_calls: u64,
    pub session_id: Option<String>,
    pub exit_code: Option<i32>,
    /// Unix milliseconds when the instance ended, once it has.
    pub ended_ms: Option<i64>,
}

impl InstanceRecord {
    /// The record's numeric columns in table order: input, output, cache creation and
    /// cache read tokens, total tokens, nanodollars, duration (ms) and tool calls. A count
    /// past `i64::MAX` is stored as `i64::MAX`.
    pub(crate) fn numbers(&self) -> [i64; 8] {
        let u = &self.usage;
        [
            i64_of(u.input_tokens),
            i64_of(u.output_tokens),
            i64_of(u.cache_creation_input_tokens),
            i64_of(u.cache_read_input_tokens),
            i64_of(u.total()),
            self.cost.0,
            i64_of(self.duration_ms),
            i64_of(self.tool_calls),
        ]
    }
}

/// A count as both stores keep it (`BIGINT`): past `i64::MAX` it is `i64::MAX`.
pub(crate) fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count read back: a negative one (never written) reads as 0.
pub(crate) fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The key of an estimate's history: completed instances of one project, base command
/// (`None`: free text) and configured model (normalised; `None` matches `None` only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryKey {
    pub project: String,
    pub base_command: Option<String>,
    pub model: Option<String>,
}

/// How `orchestrator usage` groups instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Week,
    Month,
    Project,
    Command,
    Model,
    Run,
    Instance,
}

impl GroupBy {
    pub const NAMES: [&'static str; 8] = [
        "day", "week", "month", "project", "command", "model", "run", "instance",
    ];

    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "day" => GroupBy::Day,
            "week" => GroupBy::Week,
            "month" => GroupBy::Month,
            "project" => GroupBy::Project,
            "command" => GroupBy::Command,
            "model" => GroupBy::Model,
            "run" => GroupBy::Run,
            "instance" => GroupBy::Instance,
            _ => return None,
        })
    }
}

/// What `orchestrator usage` asks for. Runs are selected by their start time.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    /// Unix milliseconds, inclusive.
    pub since_ms: i64,
    /// Unix milliseconds, exclusive.
    pub until_ms: i64,
    pub by: GroupBy,
    pub project: Option<String>,
    pub run: Option<String>,
}

#[cfg(test)]
impl UsageQuery {
    /// Everything recorded from the epoch on, grouped `by`, unfiltered.
    pub(crate) fn everything(by: GroupBy) -> Self {
        Self {
            since_ms: 0,
            until_ms: i64::MAX,
            by,
            project: None,
            run: None,
        }
    }
}

/// Where a recorded run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Finished,
    Running,
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Finished => "finished",
            RunStatus::Running => "running",
            RunStatus::Abandoned => "abandoned",
        }
    }

    /// Finished when it has an end; else abandoned when its heartbeat is older than
    /// `stale_ms` at `now_ms`; else running.
    pub fn of(ended: bool, heartbeat_ms: i64, now_ms: i64, stale_ms: i64) -> RunStatus {
        if ended {
            RunStatus::Finished
        } else if now_ms.saturating_sub(heartbeat_ms) > stale_ms {
            RunStatus::Abandoned
        } else {
            RunStatus::Running
        }
    }
}

/// A run's own fields, for `--by run`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub started_ms: i64,
    pub ended: bool,
    pub heartbeat_ms: i64,
    pub exit_code: Option<i32>,
}

/// One group of `orchestrator usage`, as the store sums it. Sums are exact (integer
/// tokens and nanodollars).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupSums {
    /// The group's key before display: a day number (`Day`/`Week`/`Month`: days since
    /// 1970-01-01 UTC), a project, base command (`(prompt)` for free text), model
    /// (`(none)`), run id or instance name.
    pub key: String,
    pub runs: u64,
    pub instances: u64,
    pub completed: u64,
    pub usage: Usage,
    pub cost: Usd,
    pub tool_calls: u64,
    /// Total tokens of each completed instance, ascending.
    pub completed_tokens: Vec<u64>,
    /// With `--by run`.
    pub run: Option<RunInfo>,
}

/// Puts groups in the order `orchestrator usage` shows them (every backend): day numbers
/// as numbers, other keys as text (byte order).
pub(crate) fn sort_groups(groups: &mut [GroupSums], by: GroupBy) {
    match by {
        GroupBy::Day | GroupBy::Week | GroupBy::Month => {
            groups.sort_by_key(|g| g.key.parse::<i64>().unwrap_or(0))
        }
        _ => groups.sort_by(|a, b| a.key.cmp(&b.key)),
    }
}

/// Key of free-text prompts in `--by command`.
pub const PROMPT_KEY: &str = "(prompt)";
/// Key of instances with no model in `--by model`.
pub const NO_MODEL_KEY: &str = "(none)";

/// A budget shared through the ledger by every run that counts toward it (issue 12): a
/// periodic budget in its current window. What other runs *used* in it is summed from
/// their recorded instances (so a run counts even when it has no periodic budget of its
/// own); what they *reserve* is the holds they keep under `key`, each valid while its
/// lease lasts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedBudget {
    /// Names the budget and its window for every run:
    /// `tokens day:2026-12-06@UTC project=web`.
    pub key: String,
    /// Runs that started in `[since_ms, until_ms)` (Unix milliseconds) count.
    pub since_ms: i64,
    pub until_ms: i64,
    /// `None`: every project (scope `all`).
    pub project: Option<String>,
    /// Scope `command`: only instances of this base command.
    pub base_command: Option<String>,
    /// `true`: dollars (nanodollars); `false`: tokens.
    pub usd: bool,
}

/// The plan's periodic budgets as the ledger shares them, in their window at `at`: each
/// with the run's key for it. A run counts in the periods it started in.
pub fn shared_budgets(
    plan: &crate::core::plan::Plan,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<(BudgetKey, SharedBudget)> {
    periodic_shares(
        &plan.budgets.periodic,
        plan.budgets.zone,
        &plan.options.project,
        at,
    )
}

/// `periodic` (counted in `zone`, for `project`) as the ledger shares them, in their
/// window at `at`, one per limit set (tokens, dollars), in order.
pub fn periodic_shares(
    periodic: &[crate::core::plan::PeriodicLimit],
    zone: crate::core::period::Zone,
    project: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<(BudgetKey, SharedBudget)> {
    use crate::core::period::PeriodScope;
    let mut out = Vec::new();
    for p in periodic {
        let window = zone.window(p.period, at);
        let (whose, project, base_command) = match &p.scope {
            PeriodScope::All => ("all".to_string(), None, None),
            PeriodScope::Project => (
                format!("project={project}"),
                Some(project.to_string()),
                None,
            ),
            PeriodScope::Command(c) => (
                format!("project={project} command={c}"),
                Some(project.to_string()),
                Some(c.clone()),
            ),
        };
        let units = [
            (Unit::Tokens, p.tokens.is_some()),
            (Unit::Usd, p.usd.is_some()),
        ];
        for (unit, set) in units {
            if !set {
                continue;
            }
            let key = BudgetKey {
                scope: Scope::Periodic(p.period, p.scope.clone()),
                unit,
            };
            out.push((
                key,
                SharedBudget {
                    key: format!("{} {} {whose}", unit.as_str(), window.key()),
                    since_ms: window.start.timestamp_millis(),
                    until_ms: window.end.timestamp_millis(),
                    project: project.clone(),
                    base_command: base_command.clone(),
                    usd: unit == Unit::Usd,
                },
            ));
        }
    }
    out
}

/// The periodic budgets a run configured, read back from the ledger
/// ([`UsageStore::newest_periodic`]): what `orchestrator budget` shows when it is given
/// none.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedBudgets {
    pub run_id: String,
    /// Unix milliseconds.
    pub started_ms: i64,
    pub periodic: Vec<crate::core::plan::PeriodicLimit>,
    /// The zone they count in (UTC for a run that recorded none).
    pub zone: crate::core::period::Zone,
}

/// The periodic budgets in a run's recorded budgets (`output::events::configured_budgets`,
/// the JSON array `RunRecord::budgets_json` holds), in order, and the zone they count in.
/// Entries that are not periodic budgets, or that cannot be read, are left out; `None`
/// when none is left.
pub fn recorded_periodic(
    budgets_json: &str,
) -> Option<(
    Vec<crate::core::plan::PeriodicLimit>,
    crate::core::period::Zone,
)> {
    use crate::core::period::{PeriodScope, Zone};
    use crate::core::plan::PeriodicLimit;
    let entries: Vec<serde_json::Value> = serde_json::from_str(budgets_json).ok()?;
    let mut out: Vec<PeriodicLimit> = Vec::new();
    let mut zone = Zone::Utc;
    for e in entries.iter().filter(|e| e["scope"] == "periodic") {
        let Some((period, scope)) = e["key"].as_str().and_then(PeriodScope::parse_key) else {
            continue;
        };
        let (tokens, usd) = match e["unit"].as_str() {
            Some("tokens") => (e["limit"].as_u64().filter(|&t| t > 0), None),
            Some("usd") => (
                None,
                e["limit"]
                    .as_f64()
                    .and_then(crate::config::cli::usd_from_f64),
            ),
            _ => (None, None),
        };
        if tokens.is_none() && usd.is_none() {
            continue;
        }
        if let Some(z) = e["zone"].as_str().and_then(Zone::parse) {
            zone = z;
        }
        match out
            .iter_mut()
            .find(|o| o.period == period && o.scope == scope)
        {
            Some(o) => {
                o.tokens = o.tokens.or(tokens);
                o.usd = o.usd.or(usd);
            }
            None => out.push(PeriodicLimit {
                period,
                scope,
                tokens,
                usd,
            }),
        }
    }
    (!out.is_empty()).then_some((out, zone))
}

/// What the other runs have in a shared budget, in its base unit (tokens or nanodollars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Elsewhere {
    /// Recorded by other runs that started in the window.
    pub used: i64,
    /// Held by other runs whose lease has not expired.
    pub reserved: i64,
}

/// This run's reservation in one shared budget (base unit), written as an absolute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub key: String,
    pub amount: i64,
}

/// A request to take more of a shared budget: granted only when every claim of the call
/// fits at once (`Claim::fits`), and then this run's holds become `hold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub budget: SharedBudget,
    /// This run's own use of the budget plus everything it will hold once granted.
    pub mine: i64,
    /// This run's hold once granted.
    pub hold: i64,
    pub limit: i64,
}

impl Claim {
    /// The one admission rule both backends apply inside their transaction.
    pub fn fits(&self, elsewhere: Elsewhere) -> bool {
        i128::from(elsewhere.used) + i128::from(elsewhere.reserved) + i128::from(self.mine)
            <= i128::from(self.limit)
    }
}

/// The budgets a batch of claims (see [`UsageStore::claim_many`]) asks about, each once,
/// in the order they first appear: what the store answers [`Elsewhere`] for.
pub fn claimed_budgets(batch: &[Vec<Claim>]) -> Vec<&SharedBudget> {
    let mut out: Vec<&SharedBudget> = Vec::new();
    for c in batch.iter().flatten() {
        if !out.iter().any(|b| b.key == c.budget.key) {
            out.push(&c.budget);
        }
    }
    out
}

/// The one batch rule both backends apply inside their transaction: how many entries of
/// `batch`, from the first, are granted (every claim of each fits, [`Claim::fits`],
/// against `elsewhere`, answered per [`claimed_budgets`]); and the holds they leave,
/// each budget's from the last granted entry claiming it, in first-appearance order.
pub fn grant<'b>(
    batch: &'b [Vec<Claim>],
    budgets: &[&SharedBudget],
    elsewhere: &[Elsewhere],
) -> (usize, Vec<(&'b str, i64)>) {
    let fits = |c: &Claim| {
        budgets
            .iter()
            .position(|b| b.key == c.budget.key)
            .and_then(|i| elsewhere.get(i))
            .is_some_and(|e| c.fits(*e))
    };
    let granted = batch
        .iter()
        .take_while(|entry| entry.iter().all(fits))
        .count();
    let mut holds: Vec<(&str, i64)> = Vec::new();
    for c in batch[..granted].iter().flatten() {
        match holds.iter_mut().find(|(k, _)| *k == c.budget.key) {
            Some(h) => h.1 = c.hold,
            None => holds.push((&c.budget.key, c.hold)),
        }
    }
    (granted, holds)
}

/// A launch pause that one run tells the other runs of its project about (issue 14):
/// the API's usage limit until it resets, or a fleet backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPause {
    pub project: String,
    /// `usage_limit` or `backoff`.
    pub kind: String,
    /// Unix milliseconds.
    pub until_ms: i64,
    /// What the user is told: `429 from test, lint`, `resets 4:20am`.
    pub reason: String,
    /// The run that saw it.
    pub run_id: String,
}

/// Use of a run that its instance rows do not show yet, for one base command (`None`:
/// free text), in tokens and nanodollars: a run sharing budgets writes its instance
/// rows every second but its use every 250 ms, as these (see [`ShareRequest`]). Counted
/// as used by every budget whose window holds the run's start and whose project and
/// command match, like instance rows; kept after the run ends unless its rows took it
/// over (a killed run's last use still counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unflushed {
    pub base_command: Option<String>,
    pub tokens: i64,
    pub nanos: i64,
}

/// What a run tells the ledger on every flush (see [`UsageStore::share`]).
#[derive(Debug, Clone, Copy)]
pub struct ShareRequest<'a> {
    pub run_id: &'a str,
    pub project: &'a str,
    /// Also the run's heartbeat.
    pub now_ms: i64,
    pub lease_until_ms: i64,
    /// Instances to upsert first, as [`UsageStore::record`] does.
    pub instances: &'a [InstanceRecord],
    /// This run's use not in its instance rows once `instances` are written; replaces
    /// what it said before (empty: its rows show all of it).
    pub unflushed: &'a [Unflushed],
    pub holds: &'a [Hold],
    pub pause: Option<&'a FleetPause>,
    pub budgets: &'a [SharedBudget],
}

/// What [`UsageStore::share`] answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shared {
    /// One per budget asked about, in order.
    pub elsewhere: Vec<Elsewhere>,
    /// The project's pauses published by other runs that have not ended yet.
    pub pauses: Vec<FleetPause>,
}

/// Why the ledger cannot be used; the text names the problem, the caller adds the file
/// and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Not an SQLite database (or a damaged one).
    Corrupt(String),
    /// Written by a newer orchestrator: its schema version is past ours.
    Newer { found: i64, supported: i64 },
    /// Cannot be opened or written: permissions, missing directory, full disk…
    Unusable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Corrupt(e) => write!(f, "not a usable ledger ({e})"),
            StoreError::Newer { found, supported } => write!(
                f,
                "written by a newer orchestrator (schema version {found}, this one reads up to {supported})"
            ),
            StoreError::Unusable(e) => write!(f, "cannot be used ({e})"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The seam between the run and where its usage is kept.
pub trait UsageStore: Send {
    /// Records (or re-records) the run's start, and every instance as given.
    fn begin_run(
        &mut self,
        run: &RunRecord,
        instances: &[InstanceRecord],
    ) -> Result<(), StoreError>;
    /// Upserts these instances of `run_id` and renews its heartbeat, in one transaction.
    /// Leaves the run's unflushed use as it is: a run writes through
    /// [`UsageStore::share`], which replaces both at once (the recorder never calls this;
    /// after a share with unflushed use it would count that use twice until the next).
    fn record(
        &mut self,
        run_id: &str,
        heartbeat_ms: i64,
        instances: &[InstanceRecord],
    ) -> Result<(), StoreError>;
    /// Records how the run ended and drops its holds.
    fn finish_run(&mut self, run_id: &str, end: &RunEnd) -> Result<(), StoreError>;
    /// Total tokens of the newest `limit` completed instances of `key`, newest first.
    fn history(&mut self, key: &HistoryKey, limit: usize) -> Result<Vec<u64>, StoreError>;
    /// The groups of `q`, in key order.
    fn usage(&mut self, q: &UsageQuery) -> Result<Vec<GroupSums>, StoreError>;
    /// What the runs other than `run_id` have in each of `budgets` at `now_ms`, read
    /// without writing (the dry run, `orchestrator budget`; `run_id` may be one that
    /// never ran, to count every run).
    fn elsewhere(
        &mut self,
        run_id: &str,
        now_ms: i64,
        budgets: &[SharedBudget],
    ) -> Result<Vec<Elsewhere>, StoreError>;
    /// The newest run of `project` (by start) whose recorded budgets hold a periodic one
    /// ([`recorded_periodic`]), with those budgets; `None` when no run of the project
    /// recorded one. Read without writing (`orchestrator budget`).
    fn newest_periodic(&mut self, project: &str) -> Result<Option<RecordedBudgets>, StoreError>;
    /// In one transaction: upserts `req.instances` and renews the run's heartbeat (as
    /// [`UsageStore::record`]); replaces this run's [`Unflushed`] use with
    /// `req.unflushed`; replaces its holds with `req.holds` (those of amount 0 are
    /// dropped), leased until `req.lease_until_ms`; publishes `req.pause` when given;
    /// and answers what the other runs have in each of `req.budgets` at `req.now_ms`
    /// (used: their instance rows and unflushed use) and the unexpired pauses of
    /// `req.project` published by other runs.
    fn share(&mut self, req: &ShareRequest) -> Result<Shared, StoreError>;
    /// Atomically (no other run can claim between the check and the write): when every
    /// claim fits what the other runs have at `now_ms`, sets this run's hold in each to
    /// `claim.hold`, leased until `lease_until_ms`, and answers `true`; else changes
    /// nothing and answers `false`. Also answers what the other runs have, per claim
    /// (`claims` names each budget once).
    fn claim(
        &mut self,
        run_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
        claims: &[Claim],
    ) -> Result<(bool, Vec<Elsewhere>), StoreError> {
        let (granted, elsewhere) =
            self.claim_many(run_id, now_ms, lease_until_ms, &[claims.to_vec()])?;
        Ok((granted == 1, elsewhere))
    }

    /// Several claims in one transaction, atomically as [`UsageStore::claim`]: `batch`
    /// holds one entry per instance about to launch, in launch order, each entry's claims
    /// counting the entries before it (`mine` and `hold` grow along the batch). Grants
    /// the longest run of entries from the first whose every claim fits ([`grant`]), sets
    /// this run's holds to what the last granted entries ask, and answers how many were
    /// granted and what the other runs have in each of [`claimed_budgets`].
    fn claim_many(
        &mut self,
        run_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
        batch: &[Vec<Claim>],
    ) -> Result<(usize, Vec<Elsewhere>), StoreError>;
}

/// The default ledger: `$XDG_DATA_HOME/orchestrator/ledger.sqlite`, else
/// `~/.local/share/orchestrator/ledger.sqlite`; `None` without either variable.
pub fn default_path(xdg_data_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = match xdg_data_home.filter(|p| p.is_absolute()) {
        Some(x) => x.to_path_buf(),
        None => home
            .filter(|h| !h.as_os_str().is_empty())?
            .join(".local/share"),
    };
    Some(base.join("orchestrator").join("ledger.sqlite"))
}

/// This machine's host name ("" when it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_prefers_an_absolute_xdg_data_home() {
        let p = default_path(Some(Path::new("/x/data")), Some(Path::new("/home/u")));
        assert_eq!(p, Some(PathBuf::from("/x/data/orchestrator/ledger.sqlite")));
        let p = default_path(Some(Path::new("rel")), Some(Path::new("/home/u")));
        assert_eq!(
            p,
            Some(PathBuf::from(
                "/home/u/.local/share/orchestrator/ledger.sqlite"
            ))
        );
        assert_eq!(default_path(None, None), None);
    }

    #[test]
    fn recorded_periodic_reads_back_what_a_run_records() {
        use crate::core::period::{Period, PeriodScope, Zone};
        use crate::core::plan::{PeriodicLimit, Plan};
        let mut plan = Plan::default();
        plan.budgets.overall_tokens = Some(7);
        plan.budgets.zone = Zone::parse("America/New_York").expect("zone");
        plan.budgets.periodic = vec![
            PeriodicLimit {
                period: Period::Day,
                scope: PeriodScope::Project,
                tokens: Some(2_000_000),
                usd: Some(Usd::from_dollars(40.25)),
            },
            PeriodicLimit {
                period: Period::Week,
                scope: PeriodScope::Command("/review".into()),
                tokens: Some(5),
                usd: None,
            },
        ];
        let json =
            serde_json::Value::Array(crate::output::events::configured_budgets(&plan)).to_string();
        assert_eq!(
            recorded_periodic(&json),
            Some((plan.budgets.periodic.clone(), plan.budgets.zone))
        );
        assert_eq!(recorded_periodic("[]"), None);
        assert_eq!(recorded_periodic("not json"), None);
        assert_eq!(
            recorded_periodic(r#"[{"scope":"periodic","key":"year","unit":"tokens","limit":1}]"#),
            None
        );
    }

    #[test]
    fn run_status_follows_end_and_heartbeat() {
        assert_eq!(RunStatus::of(true, 0, 100_000, 30_000), RunStatus::Finished);
        assert_eq!(
            RunStatus::of(false, 0, 100_000, 30_000),
            RunStatus::Abandoned
        );
        assert_eq!(
            RunStatus::of(false, 80_000, 100_000, 30_000),
            RunStatus::Running
        );
    }
}
