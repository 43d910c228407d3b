//! The PostgreSQL ledger: one database shared by orchestrators on many machines (CI
//! runners), with the semantics of the SQLite ledger ([`super::sqlite`]) and the same
//! tests (`store::contract`).
//!
//! Selected by a `postgres://` or `postgresql://` URL as `--ledger` or
//! `ORCHESTRATOR_LEDGER` ([`super::open`]). The tables live in the schema `orchestrator`
//! of the URL's database; they are created and migrated on first use, under a
//! transaction-scoped advisory lock, so several processes connecting to a fresh database
//! at once create them exactly once. The version is the one row of
//! `orchestrator.schema_version`, numbered like SQLite's `user_version`; a database with
//! a newer version is refused, never written.
//!
//! Concurrency: every write is one statement or one transaction. A claim (and a share
//! that raises holds) first takes a transaction-scoped advisory lock per budget key, in
//! one order for every process, so no other run can claim between the check and the
//! write: two runs racing for the last headroom never both get it. Deadlocks and
//! serialization failures are retried whole.
//!
//! Connections: one per store, opened by [`PostgresStore::open`] (so an unreachable server
//! is known before anything launches). A connection that drops (the server restarted) is
//! opened again on the next call, which retries once on it; while the server is away
//! every call answers [`StoreError::Unusable`], and the caller keeps what it could not
//! write. The client is the blocking `postgres` crate, which drives its connection on a
//! private current-thread tokio runtime; a call made from inside a tokio runtime runs on a
//! short-lived thread of its own instead of panicking.
//!
//! Plain TCP only (no TLS): the URL's `sslmode` must not be `require`. Passwords are never
//! shown: messages name the ledger through [`redact`].

use super::{
    i64_of, u64_of, Claim, Elsewhere, FleetPause, GroupBy, GroupSums, HistoryKey, InstanceRecord,
    RecordedBudgets, RunEnd, RunInfo, RunRecord, ShareRequest, Shared, SharedBudget, StoreError,
    Unflushed, UsageQuery, UsageStore, NO_MODEL_KEY, PROMPT_KEY,
};
use crate::core::usage::{Usage, Usd};
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Statement};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Numbered like the SQLite ledger's versions: version N has the same tables.
pub const SCHEMA_VERSION: i64 = 3;
/// Waited for a connection when the URL gives no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacknowledged data this old drops the connection (`tcp_user_timeout`), and a silent
/// peer is probed after this long (`keepalives_idle`), unless the URL says otherwise: a
/// server that vanished must not hang the writer (and so the run's end) forever.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
const KEEPALIVES_IDLE: Duration = Duration::from_secs(15);
/// Session settings, each unless the URL's `options` sets it: no statement or lock wait
/// lasts forever, and a process stopped inside a transaction frees its locks.
const SESSION: [(&str, &str); 3] = [
    ("statement_timeout", "60s"),
    ("lock_timeout", "30s"),
    ("idle_in_transaction_session_timeout", "60s"),
];
/// Deadlocks and serialization failures are retried for this long.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// First key of the orchestrator's two-key advisory locks: budget keys (`"ORCH"`)…
const BUDGET_LOCKS: i32 = 0x4f52_4348;
/// …and the migration (`"ORCI"`, second key 0).
const MIGRATION_LOCK: i32 = 0x4f52_4349;

/// Migration `i` takes the schema from version `i` to `i + 1` (inside the `orchestrator`
/// schema, which is first on the connection's search path).
const MIGRATIONS: [&str; 3] = [
    r#"
CREATE TABLE runs (
    run_key       BIGSERIAL UNIQUE,
    run_id        TEXT PRIMARY KEY,
    project       TEXT NOT NULL,
    host          TEXT NOT NULL,
    started_ms    BIGINT NOT NULL,
    ended_ms      BIGINT,
    heartbeat_ms  BIGINT NOT NULL,
    mode          TEXT NOT NULL,
    budgets       TEXT NOT NULL,
    exit_code     INTEGER,
    exit_reason   TEXT,
    simulated     BOOLEAN NOT NULL,
    version       TEXT NOT NULL
);
CREATE INDEX runs_by_start ON runs(started_ms);
CREATE TABLE instances (
    run_id          TEXT NOT NULL REFERENCES runs(run_id),
    idx             BIGINT NOT NULL,
    project         TEXT NOT NULL,
    run_started_ms  BIGINT NOT NULL,
    name            TEXT NOT NULL,
    command         TEXT NOT NULL,
    base_command    TEXT,
    configured_model TEXT,
    model           TEXT,
    status          TEXT NOT NULL,
    reason          TEXT,
    input_tokens    BIGINT NOT NULL,
    output_tokens   BIGINT NOT NULL,
    cache_creation_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    total_tokens    BIGINT NOT NULL,
    cost_nanos      BIGINT NOT NULL,
    duration_ms     BIGINT NOT NULL,
    tool_calls      BIGINT NOT NULL,
    session_id      TEXT,
    exit_code       INTEGER,
    ended_ms        BIGINT,
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX instances_history ON instances(project, base_command, configured_model, status, ended_ms);
"#,
    r#"
CREATE INDEX instances_by_start ON instances(run_started_ms, project, base_command);
CREATE TABLE holds (
    budget          TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    lease_until_ms  BIGINT NOT NULL,
    PRIMARY KEY (budget, run_id)
);
CREATE INDEX holds_by_run ON holds(run_id);
CREATE TABLE pauses (
    project     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    until_ms    BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    PRIMARY KEY (project, kind)
);
"#,
    r#"
CREATE TABLE unflushed (
    run_id          TEXT NOT NULL,
    project         TEXT NOT NULL,
    run_started_ms  BIGINT NOT NULL,
    base_command    TEXT,
    total_tokens    BIGINT NOT NULL,
    cost_nanos      BIGINT NOT NULL
);
CREATE INDEX unflushed_by_run ON unflushed(run_id);
"#,
];

/// Whether `spec` (a `--ledger` value) names a PostgreSQL ledger.
pub fn is_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// `url` as it may be shown: its password (in the user part, or a `password=`
/// parameter) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The user part ends at the last `@` (a password may hold `/`, `?` or `:` unescaped).
    let (user, after) = match rest.rsplit_once('@') {
        Some((user, after)) => match user.split_once(':') {
            Some((name, _)) => (format!("{name}:***@"), after),
            None => (format!("{user}@"), after),
        },
        None => (String::new(), rest),
    };
    let after = match after.split_once('?') {
        Some((path, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("password", _)) => "password=***",
                    _ => kv,
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => after.to_string(),
    };
    format!("{scheme}://{user}{after}")
}

pub struct PostgresStore {
    config: Config,
    read_only: bool,
    /// How long a lock another process holds is waited for (`lock_timeout`), and a
    /// deadlock retried; `None`: [`SESSION`]'s and [`RETRY_FOR`].
    patience: Option<Duration>,
    conn: Option<Conn>,
}

/// One live connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// `sql` prepared on this connection (once).
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let s = self.prepare(sql)?;
        self.client.query(&s, params)
    }

    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let s = self.prepare(sql)?;
        self.client.execute(&s, params)
    }

    /// `BEGIN`, and the advisory lock of each budget key, in one round trip. Every
    /// process takes the locks in the same (sorted) order, so two never deadlock.
    fn begin_locking<'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<(), postgres::Error> {
        let mut ids: Vec<i32> = keys.into_iter().map(lock_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut sql = String::from("BEGIN");
        for id in ids {
            sql.push_str(&format!(
                "; SELECT pg_advisory_xact_lock({BUDGET_LOCKS}, {id})"
            ));
        }
        self.client.batch_execute(&sql)
    }
}

/// A budget key's advisory lock (second key): FNV-1a, the same in every process and
/// version.
fn lock_id(key: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as i32
}

/// What went wrong with a call, for what happens next.
enum Failure {
    /// The connection is gone (the server stopped, the network dropped): open another.
    Lost,
    /// A deadlock or serialization failure: the transaction can be run again.
    Transient,
    /// Anything else: reported.
    Other,
}

fn failure(e: &postgres::Error) -> Failure {
    match e.as_db_error() {
        None => Failure::Lost,
        Some(db) => {
            let code = db.code().code();
            if code == "40001" || code == "40P01" {
                Failure::Transient
            } else if code.starts_with("08") || code.starts_with("57P") {
                // Connection exceptions; the server shutting down or starting up.
                Failure::Lost
            } else {
                Failure::Other
            }
        }
    }
}

/// One line about `e`, never the password.
fn describe(e: &postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {} [{}]", db.severity(), db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    };
    text.replace('\n', "; ")
}

fn unusable(e: &postgres::Error) -> StoreError {
    StoreError::Unusable(describe(e))
}

/// Text as PostgreSQL can keep it: without NUL characters (SQLite keeps them; a prompt
/// from a config file may have one).
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(text)
}

/// The schema's version as recorded; 0 when there is none yet.
fn read_version(client: &mut Client) -> Result<i64, postgres::Error> {
    match client.query_opt("SELECT max(version) FROM schema_version", &[]) {
        Ok(row) => Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)).unwrap_or(0)),
        // 42P01: no such table (nor schema) yet.
        Err(e) if e.code().is_some_and(|c| c.code() == "42P01") => Ok(0),
        Err(e) => Err(e),
    }
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, under the migration lock:
/// `Ok(Some(found))` when it is newer.
fn migrate(client: &mut Client) -> Result<Option<i64>, postgres::Error> {
    client.batch_execute(&format!(
        "BEGIN;
         SET LOCAL statement_timeout = 0;
         SET LOCAL lock_timeout = 0;
         SELECT pg_advisory_xact_lock({MIGRATION_LOCK}, 0);
         DO $$ BEGIN
             IF to_regnamespace('orchestrator') IS NULL THEN CREATE SCHEMA orchestrator; END IF;
         END $$;
         CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);"
    ))?;
    let r = (|| {
        // Another process may have migrated between the caller's check and the lock.
        let v = read_version(client)?;
        if v > SCHEMA_VERSION {
            return Ok(Some(v));
        }
        for sql in MIGRATIONS.iter().skip(v.max(0) as usize) {
            client.batch_execute(sql)?;
        }
        client.batch_execute(&format!(
            "DELETE FROM schema_version; INSERT INTO schema_version VALUES ({SCHEMA_VERSION})"
        ))?;
        Ok(None)
    })();
    match r {
        Ok(None) => client.batch_execute("COMMIT").map(|_| None),
        other => {
            let _ = client.batch_execute("ROLLBACK");
            other
        }
    }
}

impl PostgresStore {
    /// Connects to the ledger at `url`, creating or migrating its schema as needed.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let mut store = PostgresStore {
            config: config_of(url)?,
            read_only: false,
            patience: None,
            conn: None,
        };
        let opening = &mut store;
        store.conn = off_runtime(move || opening.connect())?;
        Ok(store)
    }

    /// Connects without ever writing (the dry run, `orchestrator usage`): `Ok(None)` when
    /// the database holds no ledger of this version yet.
    pub fn open_read_only(url: &str) -> Result<Option<PostgresStore>, StoreError> {
        let mut store = PostgresStore {
            config: config_of(url)?,
            read_only: true,
            patience: None,
            conn: None,
        };
        let opening = &mut store;
        store.conn = off_runtime(move || opening.connect())?;
        Ok(store.conn.is_some().then_some(store))
    }

    /// Gives up on a lock another process holds after `patience` (default 30 s), and on
    /// retrying deadlocks: a run sharing budgets must learn soon that the ledger is
    /// unavailable (it then counts it as unreachable and retries later).
    pub fn set_patience(&mut self, patience: Duration) -> Result<(), StoreError> {
        self.patience = Some(patience);
        let sql = format!("SET lock_timeout = {}", patience.as_millis().max(1));
        self.with(|c| c.client.batch_execute(&sql))
    }

    /// A new connection, its schema checked (and, for writing, created or migrated):
    /// `None` when read-only and the database holds no ledger of this version.
    fn connect(&self) -> Result<Option<Conn>, StoreError> {
        let mut client = self.config.connect(NoTls).map_err(|e| unusable(&e))?;
        let mut setup = String::from("SET search_path TO orchestrator");
        let options = self.config.get_options().unwrap_or_default();
        for (name, value) in SESSION {
            if !options.contains(name) {
                setup.push_str(&format!("; SET {name} = '{value}'"));
            }
        }
        if let Some(p) = self.patience {
            setup.push_str(&format!("; SET lock_timeout = {}", p.as_millis().max(1)));
        }
        if self.read_only {
            setup.push_str("; SET default_transaction_read_only = on");
        }
        client.batch_execute(&setup).map_err(|e| unusable(&e))?;
        let v = read_version(&mut client).map_err(|e| unusable(&e))?;
        let newer = |found| StoreError::Newer {
            found,
            supported: SCHEMA_VERSION,
        };
        if v > SCHEMA_VERSION {
            return Err(newer(v));
        }
        if v < SCHEMA_VERSION {
            if self.read_only {
                return Ok(None);
            }
            if let Some(found) = migrate(&mut client).map_err(|e| unusable(&e))? {
                return Err(newer(found));
            }
        }
        Ok(Some(Conn {
            client,
            statements: HashMap::new(),
        }))
    }

    /// Runs `op` on the connection, opening one when there is none. A connection found
    /// dropped is replaced and `op` run once more (every write is idempotent: absolute
    /// values, replaced holds); deadlocks are retried; a failed transaction is rolled
    /// back.
    fn with<T: Send>(
        &mut self,
        op: impl FnMut(&mut Conn) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| self.with_here(op))
    }

    fn with_here<T>(
        &mut self,
        mut op: impl FnMut(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let mut reopened = false;
        let mut pause = Duration::from_millis(2);
        loop {
            let fresh = self.conn.is_none();
            if fresh {
                self.conn = self.connect()?;
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(StoreError::Unusable("the ledger's tables are gone".into()));
            };
            let e = match op(conn) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match failure(&e) {
                Failure::Lost => {
                    self.conn = None;
                    if fresh || reopened {
                        return Err(unusable(&e));
                    }
                    reopened = true;
                }
                Failure::Transient if start.elapsed() < self.patience.unwrap_or(RETRY_FOR) => {
                    let _ = conn.client.batch_execute("ROLLBACK");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                _ => {
                    if conn.client.batch_execute("ROLLBACK").is_err() {
                        self.conn = None;
                    }
                    return Err(unusable(&e));
                }
            }
        }
    }
}

/// Runs `f` here, or on a short-lived thread when this one is inside a tokio runtime
/// (where the client's own runtime cannot block).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        f()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The client's runtime cannot be dropped inside another runtime either.
        if let Some(conn) = self.conn.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("ledger-close".into())
                    .spawn(move || drop(conn));
            }
        }
    }
}

fn config_of(url: &str) -> Result<Config, StoreError> {
    let mut config: Config = url.parse().map_err(|e: postgres::Error| {
        StoreError::Unusable(format!("not a usable URL ({})", describe(&e)))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("orchestrator");
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_keepalives_idle() == Config::new().get_keepalives_idle() {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    Ok(config)
}

/// The instance columns after `run_id`, `idx`, `project` and `run_started_ms`, each
/// updated from `excluded` on conflict.
const INSTANCE_FIELDS: [&str; 18] = [
    "name",
    "command",
    "base_command",
    "configured_model",
    "model",
    "status",
    "reason",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost_nanos",
    "duration_ms",
    "tool_calls",
    "session_id",
    "exit_code",
    "ended_ms",
];

/// Array types of `idx` and of [`INSTANCE_FIELDS`], in order.
const INSTANCE_ARRAYS: [&str; 19] = [
    "bigint", "text", "text", "text", "text", "text", "text", "text", "bigint", "bigint", "bigint",
    "bigint", "bigint", "bigint", "bigint", "bigint", "text", "integer", "bigint",
];

/// Upserts the instances given as arrays `$1`..`$19` (`idx`, then [`INSTANCE_FIELDS`]) of
/// the one run of `source`, a relation `r` with its `run_id`, `project` and `started_ms`
/// (none: nothing is written, as SQLite's `INSERT … SELECT … FROM runs`).
fn upsert_instances_sql(source: &str) -> String {
    let arrays: Vec<String> = INSTANCE_ARRAYS
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    let fields = INSTANCE_FIELDS.join(", ");
    let u_fields: Vec<String> = INSTANCE_FIELDS.iter().map(|f| format!("u.{f}")).collect();
    let updates: Vec<String> = INSTANCE_FIELDS
        .iter()
        .map(|f| format!("{f} = excluded.{f}"))
        .collect();
    format!(
        "INSERT INTO instances (run_id, idx, project, run_started_ms, {fields})
         SELECT r.run_id, u.idx, r.project, r.started_ms, {}
         FROM {source}, unnest({}) AS u(idx, {fields})
         ON CONFLICT (run_id, idx) DO UPDATE SET {}",
        u_fields.join(", "),
        arrays.join(", "),
        updates.join(", ")
    )
}

/// The instances as the 19 arrays of [`upsert_instances_sql`], the last write of an
/// index winning (as SQLite's statement-per-instance does).
struct InstanceArrays<'a> {
    idx: Vec<i64>,
    name: Vec<Cow<'a, str>>,
    command: Vec<Cow<'a, str>>,
    base_command: Vec<Option<Cow<'a, str>>>,
    configured_model: Vec<Option<Cow<'a, str>>>,
    model: Vec<Option<Cow<'a, str>>>,
    status: Vec<Cow<'a, str>>,
    reason: Vec<Option<Cow<'a, str>>>,
    /// input, output, cache creation, cache read, total, nanodollars, duration, tools.
    numbers: [Vec<i64>; 8],
    session_id: Vec<Option<Cow<'a, str>>>,
    exit_code: Vec<Option<i32>>,
    ended_ms: Vec<Option<i64>>,
}

impl<'a> InstanceArrays<'a> {
    fn of(instances: &'a [InstanceRecord]) -> InstanceArrays<'a> {
        let mut seen = HashSet::new();
        let mut last: Vec<&InstanceRecord> = instances
            .iter()
            .rev()
            .filter(|i| seen.insert(i.index))
            .collect();
        last.reverse();
        let mut a = InstanceArrays {
            idx: Vec::new(),
            name: Vec::new(),
            command: Vec::new(),
            base_command: Vec::new(),
            configured_model: Vec::new(),
            model: Vec::new(),
            status: Vec::new(),
            reason: Vec::new(),
            numbers: Default::default(),
            session_id: Vec::new(),
            exit_code: Vec::new(),
            ended_ms: Vec::new(),
        };
        for i in last {
            a.idx.push(i64::from(i.index));
            a.name.push(text(&i.name));
            a.command.push(text(&i.command));
            a.base_command.push(opt_text(&i.base_command));
            a.configured_model.push(opt_text(&i.configured_model));
            a.model.push(opt_text(&i.model));
            a.status.push(text(&i.status));
            a.reason.push(opt_text(&i.reason));
            for (column, n) in a.numbers.iter_mut().zip(i.numbers()) {
                column.push(n);
            }
            a.session_id.push(opt_text(&i.session_id));
            a.exit_code.push(i.exit_code);
            a.ended_ms.push(i.ended_ms);
        }
        a
    }

    /// `$1`..`$19`.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let [input, output, cache_w, cache_r, total, cost, duration, tools] = &self.numbers;
        vec![
            &self.idx,
            &self.name,
            &self.command,
            &self.base_command,
            &self.configured_model,
            &self.model,
            &self.status,
            &self.reason,
            input,
            output,
            cache_w,
            cache_r,
            total,
            cost,
            duration,
            tools,
            &self.session_id,
            &self.exit_code,
            &self.ended_ms,
        ]
    }
}

/// Replaces the holds of run `$1` with keys `$2` and amounts `$3`, leased until `$4`.
const REPLACE_HOLDS: &str = "
WITH dropped AS (DELETE FROM holds WHERE run_id = $1 AND budget <> ALL($2::text[]))
INSERT INTO holds (budget, run_id, amount, lease_until_ms)
SELECT h.budget, $1, h.amount, $4 FROM unnest($2::text[], $3::bigint[]) AS h(budget, amount)
ON CONFLICT (budget, run_id) DO UPDATE SET amount = excluded.amount,
    lease_until_ms = excluded.lease_until_ms";

/// Sets the holds of run `$1` with keys `$2` and amounts `$3`, leased until `$4`; its
/// other holds stay.
const PUT_HOLDS: &str = "
INSERT INTO holds (budget, run_id, amount, lease_until_ms)
SELECT h.budget, $1, h.amount, $4 FROM unnest($2::text[], $3::bigint[]) AS h(budget, amount)
ON CONFLICT (budget, run_id) DO UPDATE SET amount = excluded.amount,
    lease_until_ms = excluded.lease_until_ms";

/// Replaces the unflushed use of run `$1` with base commands `$2`, tokens `$3` and
/// nanodollars `$4`.
const REPLACE_UNFLUSHED: &str = "
WITH gone AS (DELETE FROM unflushed WHERE run_id = $1)
INSERT INTO unflushed (run_id, project, run_started_ms, base_command, total_tokens, cost_nanos)
SELECT r.run_id, r.project, r.started_ms, u.base_command, u.tokens, u.nanos
FROM runs r, unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(base_command, tokens, nanos)
WHERE r.run_id = $1";

/// What the runs other than `$1` have at `$2` in each budget of the arrays `$3`..`$8`,
/// in order: used (tokens or nanodollars of the instances of runs that started in the
/// window, of its project and base command, and their unflushed use) and reserved
/// (unexpired holds).
const ELSEWHERE: &str = "
SELECT
    COALESCE((SELECT sum(CASE WHEN b.usd THEN i.cost_nanos ELSE i.total_tokens END)
              FROM instances i
              WHERE i.run_started_ms >= b.since_ms AND i.run_started_ms < b.until_ms
                AND i.run_id <> $1
                AND (b.project IS NULL OR i.project = b.project)
                AND (b.base_command IS NULL OR i.base_command = b.base_command)), 0)::bigint
    + COALESCE((SELECT sum(CASE WHEN b.usd THEN u.cost_nanos ELSE u.total_tokens END)
              FROM unflushed u
              WHERE u.run_started_ms >= b.since_ms AND u.run_started_ms < b.until_ms
                AND u.run_id <> $1
                AND (b.project IS NULL OR u.project = b.project)
                AND (b.base_command IS NULL OR u.base_command = b.base_command)), 0)::bigint,
    COALESCE((SELECT sum(h.amount) FROM holds h
              WHERE h.budget = b.key AND h.run_id <> $1 AND h.lease_until_ms > $2), 0)::bigint
FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::boolean[])
    WITH ORDINALITY AS b(key, since_ms, until_ms, project, base_command, usd, n)
ORDER BY b.n";

/// What the runs other than `run_id` have in each budget at `now_ms`.
fn elsewhere_in<'b>(
    conn: &mut Conn,
    run_id: &str,
    now_ms: i64,
    budgets: impl Iterator<Item = &'b SharedBudget>,
) -> Result<Vec<Elsewhere>, postgres::Error> {
    let (mut keys, mut since, mut until, mut project, mut command, mut usd) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for b in budgets {
        keys.push(text(&b.key));
        since.push(b.since_ms);
        until.push(b.until_ms);
        project.push(opt_text(&b.project));
        command.push(opt_text(&b.base_command));
        usd.push(b.usd);
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        ELSEWHERE,
        &[
            &text(run_id),
            &now_ms,
            &keys,
            &since,
            &until,
            &project,
            &command,
            &usd,
        ],
    )?;
    Ok(rows
        .iter()
        .map(|r| Elsewhere {
            used: r.get(0),
            reserved: r.get(1),
        })
        .collect())
}

/// One statement: the heartbeat of run `run_id` and its instances `arrays` together.
fn record_in(
    c: &mut Conn,
    arrays: &InstanceArrays,
    run_id: &str,
    heartbeat_ms: i64,
) -> Result<u64, postgres::Error> {
    let id = text(run_id);
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "WITH beat AS (
             UPDATE runs SET heartbeat_ms = GREATEST(heartbeat_ms, $21) WHERE run_id = $20)
         {}",
            upsert_instances_sql(
                "(SELECT run_id, project, started_ms FROM runs WHERE run_id = $20) r"
            )
        )
    });
    let mut params = arrays.params();
    params.extend_from_slice(&[&id, &heartbeat_ms]);
    c.execute(sql, &params)
}

/// Keys and amounts for [`REPLACE_HOLDS`] / [`PUT_HOLDS`], the last of a key winning.
fn hold_arrays<'a>(holds: impl DoubleEndedIterator<Item = (&'a str, i64)>) -> HoldArrays<'a> {
    let mut seen = HashSet::new();
    let (mut keys, mut amounts) = (Vec::new(), Vec::new());
    for (k, a) in holds.rev() {
        if seen.insert(k) {
            keys.push(text(k));
            amounts.push(a);
        }
    }
    (keys, amounts)
}

type HoldArrays<'a> = (Vec<Cow<'a, str>>, Vec<i64>);

/// The SQL of `orchestrator usage` for `by`: one row per group with its key (`NULL` for
/// free text or no model), runs, instances, completed, the four token classes,
/// nanodollars, tool calls, the sorted totals of the completed instances and, for
/// `--by run`, the run's own fields. Runs are selected by start (`$1`..`$2`), project
/// (`$3`) and id (`$4`).
fn usage_sql(by: GroupBy) -> String {
    let key = match by {
        // Days since 1970-01-01 UTC, rounded down (as `div_euclid`).
        GroupBy::Day | GroupBy::Week | GroupBy::Month => {
            "((r.started_ms - ((r.started_ms % 86400000) + 86400000) % 86400000) / 86400000)::text"
        }
        GroupBy::Project => "r.project",
        GroupBy::Run => "r.run_id",
        GroupBy::Command => "i.base_command",
        GroupBy::Model => "i.model",
        GroupBy::Instance => "i.name",
    };
    let run = if by == GroupBy::Run {
        "r.started_ms, r.ended_ms IS NOT NULL, r.heartbeat_ms, r.exit_code"
    } else {
        "NULL::bigint, NULL::boolean, NULL::bigint, NULL::integer"
    };
    let group = if by == GroupBy::Run { "r.run_id" } else { "1" };
    format!(
        "SELECT {key}, count(DISTINCT i.run_id), count(*),
             count(*) FILTER (WHERE i.status = 'completed'),
             sum(i.input_tokens)::bigint, sum(i.output_tokens)::bigint,
             sum(i.cache_creation_tokens)::bigint, sum(i.cache_read_tokens)::bigint,
             sum(i.cost_nanos)::bigint, sum(i.tool_calls)::bigint,
             array_agg(i.total_tokens ORDER BY i.total_tokens)
                 FILTER (WHERE i.status = 'completed'),
             {run}
         FROM runs r JOIN instances i ON i.run_id = r.run_id
         WHERE r.started_ms >= $1 AND r.started_ms < $2
           AND ($3::text IS NULL OR r.project = $3) AND ($4::text IS NULL OR r.run_id = $4)
         GROUP BY {group}"
    )
}

fn group_of(r: &postgres::Row, by: GroupBy) -> GroupSums {
    let key: Option<String> = r.get(0);
    let key = key.unwrap_or_else(|| {
        match by {
            GroupBy::Command => PROMPT_KEY,
            GroupBy::Model => NO_MODEL_KEY,
            _ => "",
        }
        .to_string()
    });
    let n = |i: usize| u64_of(r.get::<_, i64>(i));
    let completed_tokens: Option<Vec<i64>> = r.get(10);
    let run = match r.get::<_, Option<i64>>(11) {
        Some(started_ms) if by == GroupBy::Run => Some(RunInfo {
            started_ms,
            ended: r.get(12),
            heartbeat_ms: r.get(13),
            exit_code: r.get(14),
        }),
        _ => None,
    };
    GroupSums {
        key,
        runs: n(1),
        instances: n(2),
        completed: n(3),
        usage: Usage::new(n(4), n(5), n(6), n(7)),
        cost: Usd(r.get(8)),
        tool_calls: n(9),
        completed_tokens: completed_tokens
            .unwrap_or_default()
            .into_iter()
            .map(u64_of)
            .collect(),
        run,
    }
}

impl UsageStore for PostgresStore {
    fn begin_run(
        &mut self,
        run: &RunRecord,
        instances: &[InstanceRecord],
    ) -> Result<(), StoreError> {
        // One statement: the run's upsert feeds the instances' project and start.
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = SQL.get_or_init(|| {
            format!(
                "WITH r AS (
                 INSERT INTO runs (run_id, project, host, started_ms, heartbeat_ms, mode,
                     budgets, simulated, version)
                 VALUES ($20, $21, $22, $23, $23, $24, $25, $26, $27)
                 ON CONFLICT (run_id) DO UPDATE SET project = excluded.project,
                     host = excluded.host, started_ms = excluded.started_ms,
                     mode = excluded.mode, budgets = excluded.budgets,
                     simulated = excluded.simulated, version = excluded.version
                 RETURNING run_id, project, started_ms)
             {}",
                upsert_instances_sql("r")
            )
        });
        let arrays = InstanceArrays::of(instances);
        let (id, project, host, mode, budgets, version) = (
            text(&run.run_id),
            text(&run.project),
            text(&run.host),
            text(&run.mode),
            text(&run.budgets_json),
            text(&run.version),
        );
        self.with(|c| {
            let mut params = arrays.params();
            params.extend_from_slice(&[
                &id,
                &project,
                &host,
                &run.started_ms,
                &mode,
                &budgets,
                &run.simulated,
                &version,
            ]);
            c.execute(sql, &params)
        })
        .map(|_| ())
    }

    fn record(
        &mut self,
        run_id: &str,
        heartbeat_ms: i64,
        instances: &[InstanceRecord],
    ) -> Result<(), StoreError> {
        let arrays = InstanceArrays::of(instances);
        self.with(|c| record_in(c, &arrays, run_id, heartbeat_ms))
            .map(|_| ())
    }

    fn finish_run(&mut self, run_id: &str, end: &RunEnd) -> Result<(), StoreError> {
        let (id, reason) = (text(run_id), text(&end.exit_reason));
        self.with(|c| {
            c.execute(
                "WITH dropped AS (DELETE FROM holds WHERE run_id = $1)
                 UPDATE runs SET ended_ms = $2, heartbeat_ms = GREATEST(heartbeat_ms, $2),
                     exit_code = $3, exit_reason = $4 WHERE run_id = $1",
                &[&id, &end.ended_ms, &end.exit_code, &reason],
            )
        })
        .map(|_| ())
    }

    fn elsewhere(
        &mut self,
        run_id: &str,
        now_ms: i64,
        budgets: &[SharedBudget],
    ) -> Result<Vec<Elsewhere>, StoreError> {
        // One statement: one snapshot.
        self.with(|c| elsewhere_in(c, run_id, now_ms, budgets.iter()))
    }

    fn newest_periodic(&mut self, project: &str) -> Result<Option<RecordedBudgets>, StoreError> {
        const PAGE: i64 = 50;
        let project = text(project);
        self.with(|c| {
            let mut offset = 0i64;
            loop {
                // The text filter only narrows; `recorded_periodic` decides. Ties of the
                // start go to the run recorded last, as in SQLite.
                let rows = c.query(
                    "SELECT run_id, started_ms, budgets FROM runs
                     WHERE project = $1 AND budgets ILIKE '%periodic%'
                     ORDER BY started_ms DESC, run_key DESC LIMIT $2 OFFSET $3",
                    &[&project, &PAGE, &offset],
                )?;
                for r in &rows {
                    let budgets: String = r.get(2);
                    if let Some((periodic, zone)) = super::recorded_periodic(&budgets) {
                        return Ok(Some(RecordedBudgets {
                            run_id: r.get(0),
                            started_ms: r.get(1),
                            periodic,
                            zone,
                        }));
                    }
                }
                if (rows.len() as i64) < PAGE {
                    return Ok(None);
                }
                offset += PAGE;
            }
        })
    }

    fn share(&mut self, req: &ShareRequest) -> Result<Shared, StoreError> {
        let (keys, amounts) = hold_arrays(
            req.holds
                .iter()
                .filter(|h| h.amount > 0)
                .map(|h| (h.key.as_str(), h.amount)),
        );
        let id = text(req.run_id);
        let project = text(req.project);
        let arrays = InstanceArrays::of(req.instances);
        let kept: Vec<&Unflushed> = req
            .unflushed
            .iter()
            .filter(|u| u.tokens != 0 || u.nanos != 0)
            .collect();
        let u_commands: Vec<Option<Cow<str>>> =
            kept.iter().map(|u| opt_text(&u.base_command)).collect();
        let u_tokens: Vec<i64> = kept.iter().map(|u| u.tokens).collect();
        let u_nanos: Vec<i64> = kept.iter().map(|u| u.nanos).collect();
        self.with(|c| {
            // Raising a hold takes its budget's lock, as a claim does.
            c.begin_locking(keys.iter().map(|k| k.as_ref()))?;
            // The instances (the heartbeat with them) and what they do not show yet
            // change together: no other run ever counts a use twice or misses it.
            record_in(c, &arrays, req.run_id, req.now_ms)?;
            c.execute(REPLACE_UNFLUSHED, &[&id, &u_commands, &u_tokens, &u_nanos])?;
            c.execute(REPLACE_HOLDS, &[&id, &keys, &amounts, &req.lease_until_ms])?;
            if let Some(p) = req.pause {
                c.execute(
                    "INSERT INTO pauses AS p (project, kind, until_ms, reason, run_id)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (project, kind) DO UPDATE SET until_ms = excluded.until_ms,
                         reason = excluded.reason, run_id = excluded.run_id
                     WHERE excluded.until_ms > p.until_ms",
                    &[
                        &text(&p.project),
                        &text(&p.kind),
                        &p.until_ms,
                        &text(&p.reason),
                        &text(&p.run_id),
                    ],
                )?;
            }
            let elsewhere = elsewhere_in(c, req.run_id, req.now_ms, req.budgets.iter())?;
            let pauses = c
                .query(
                    "SELECT project, kind, until_ms, reason, run_id FROM pauses
                     WHERE project = $1 AND until_ms > $2 AND run_id <> $3
                     ORDER BY kind COLLATE \"C\"",
                    &[&project, &req.now_ms, &id],
                )?
                .iter()
                .map(|r| FleetPause {
                    project: r.get(0),
                    kind: r.get(1),
                    until_ms: r.get(2),
                    reason: r.get(3),
                    run_id: r.get(4),
                })
                .collect();
            c.client.batch_execute("COMMIT")?;
            Ok(Shared { elsewhere, pauses })
        })
    }

    fn claim_many(
        &mut self,
        run_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
        batch: &[Vec<Claim>],
    ) -> Result<(usize, Vec<Elsewhere>), StoreError> {
        let budgets = super::claimed_budgets(batch);
        let id = text(run_id);
        self.with(|c| {
            // The budgets' locks are held from before the check until the commit: no
            // other run's claim can fall in between.
            c.begin_locking(budgets.iter().map(|b| b.key.as_str()))?;
            let elsewhere = elsewhere_in(c, run_id, now_ms, budgets.iter().copied())?;
            let (granted, holds) = super::grant(batch, &budgets, &elsewhere);
            if !holds.is_empty() {
                let (keys, amounts) = hold_arrays(holds.into_iter());
                c.execute(PUT_HOLDS, &[&id, &keys, &amounts, &lease_until_ms])?;
            }
            c.client.batch_execute("COMMIT")?;
            Ok((granted, elsewhere))
        })
    }

    fn history(&mut self, key: &HistoryKey, limit: usize) -> Result<Vec<u64>, StoreError> {
        // `= NULL` matches nothing: a missing command or model is its own condition (so
        // the index still serves both).
        let sql = format!(
            "SELECT total_tokens FROM instances
             WHERE project = $1 AND {} AND {} AND status = 'completed'
             ORDER BY ended_ms DESC NULLS LAST, run_id COLLATE \"C\" DESC, idx DESC
             LIMIT $4",
            if key.base_command.is_some() {
                "base_command = $2"
            } else {
                "($2::text IS NULL AND base_command IS NULL)"
            },
            if key.model.is_some() {
                "configured_model = $3"
            } else {
                "($3::text IS NULL AND configured_model IS NULL)"
            },
        );
        let (project, command, model) = (
            text(&key.project),
            opt_text(&key.base_command),
            opt_text(&key.model),
        );
        let limit = i64_of(limit as u64);
        self.with(|c| {
            let rows = c.query(&sql, &[&project, &command, &model, &limit])?;
            Ok(rows.iter().map(|r| u64_of(r.get(0))).collect())
        })
    }

    fn usage(&mut self, q: &UsageQuery) -> Result<Vec<GroupSums>, StoreError> {
        let sql = usage_sql(q.by);
        let (project, run) = (opt_text(&q.project), opt_text(&q.run));
        let mut groups = self.with(|c| {
            let rows = c.query(&sql, &[&q.since_ms, &q.until_ms, &project, &run])?;
            Ok(rows.iter().map(|r| group_of(r, q.by)).collect::<Vec<_>>())
        })?;
        super::sort_groups(&mut groups, q.by);
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::{budget, run};
    use crate::store::pg_server::PgServer;
    use crate::store::sqlite::SqliteStore;
    use crate::store::SharedBudget;

    /// A store on a new, empty database of the shared test server.
    fn fresh() -> PostgresStore {
        PostgresStore::open(&PgServer::shared().database()).expect("open")
    }

    #[allow(clippy::too_many_arguments)]
    fn inst(
        index: u32,
        command: &str,
        model: Option<&str>,
        status: &str,
        tokens: u64,
        nanos: i64,
        ended_ms: Option<i64>,
    ) -> InstanceRecord {
        InstanceRecord {
            index,
            name: format!("i{index}"),
            command: command.into(),
            base_command: crate::core::plan::base_command(command).map(str::to_string),
            configured_model: model.map(crate::core::pricing::normalize),
            model: model.map(str::to_string),
            status: status.into(),
            usage: Usage::new(tokens, tokens / 2 + 1, u64::from(index), 3),
            cost: Usd(nanos),
            tool_calls: u64::from(index) * 2,
            ended_ms,
            ..Default::default()
        }
    }

    /// The behaviour every backend shares (`store::contract`), each case on a database
    /// of its own.
    #[test]
    fn keeps_the_store_contract() {
        use crate::store::contract::*;
        for case in [
            used_elsewhere_counts_other_runs_in_the_window,
            holds_count_while_leased_and_go_with_the_run,
            claims_take_headroom_once,
            batched_claims_grant_the_entries_that_fit_in_order,
            unflushed_use_counts_until_the_rows_show_it,
            pauses_reach_the_other_runs_of_the_project,
            repeated_writes_never_double_count,
            groups_by_command_with_free_text_under_prompt,
            history_is_newest_completed_of_the_same_key,
            the_newest_periodic_budgets_of_a_project_are_read_back,
        ] {
            case(&mut fresh());
        }
    }

    /// Writes the same runs into `pg` and an in-memory SQLite ledger.
    fn write_both(pg: &mut PostgresStore, lite: &mut SqliteStore) {
        const DAY: i64 = 86_400_000;
        let models = [Some("sonnet"), None, Some("claude-opus-4-1"), Some("haiku")];
        let commands = [
            "/review src",
            "fix the bug",
            "/test --unit",
            "/review",
            "/lint",
        ];
        let statuses = ["completed", "failed", "completed", "running", "completed"];
        let projects = ["web", "api", "web"];
        // Days before and after 1970 (rounded down, not toward zero), and ties of
        // `ended_ms` across runs.
        let starts = [
            -DAY - 1,
            -1,
            0,
            5,
            DAY * 20_000 + 7,
            DAY * 20_000 + 9,
            DAY * 20_007,
        ];
        for (r, &started) in starts.iter().enumerate() {
            let id = format!("run-{r}");
            let record = run(&id, projects[r % projects.len()], started);
            let list: Vec<InstanceRecord> = (0..(r as u32 % 4 + 2))
                .map(|i| {
                    let k = r + i as usize;
                    inst(
                        i,
                        commands[k % commands.len()],
                        models[k % models.len()],
                        statuses[k % statuses.len()],
                        (k as u64 * 7919) % 1000,
                        (k as i64 * 104_729) % 50_000 - 1_000,
                        (k % 3 != 0).then_some((k % 4) as i64),
                    )
                })
                .collect();
            let first: Vec<InstanceRecord> = list
                .iter()
                .map(|i| InstanceRecord {
                    status: "pending".into(),
                    usage: Usage::default(),
                    cost: Usd(0),
                    ..i.clone()
                })
                .collect();
            for s in [pg as &mut dyn UsageStore, lite as &mut dyn UsageStore] {
                s.begin_run(&record, &first).expect("begin");
                s.record(&id, started + 10, &list).expect("record");
                if r % 2 == 0 {
                    s.finish_run(
                        &id,
                        &RunEnd {
                            ended_ms: started + 20,
                            exit_code: r as i32 % 3,
                            exit_reason: "done".into(),
                        },
                    )
                    .expect("finish");
                }
            }
        }
    }

    /// `orchestrator usage` and the estimates' history answer exactly what the SQLite
    /// ledger answers for the same runs: every grouping, every filter.
    #[test]
    fn answers_exactly_as_the_sqlite_ledger() {
        let mut pg = fresh();
        let mut lite = SqliteStore::in_memory().expect("sqlite");
        write_both(&mut pg, &mut lite);
        let windows = [
            (i64::MIN, i64::MAX),
            (0, i64::MAX),
            (-86_400_001, 1),
            (86_400_000 * 20_000, 86_400_000 * 20_000 + 9),
        ];
        for by in GroupBy::NAMES.map(|n| GroupBy::parse(n).expect("name")) {
            for (since_ms, until_ms) in windows {
                for project in [None, Some("web"), Some("nobody")] {
                    for run in [None, Some("run-4"), Some("run-1")] {
                        let q = UsageQuery {
                            since_ms,
                            until_ms,
                            by,
                            project: project.map(str::to_string),
                            run: run.map(str::to_string),
                        };
                        let want = lite.usage(&q).expect("sqlite usage");
                        assert_eq!(pg.usage(&q).expect("usage"), want, "{q:?}");
                    }
                }
            }
        }
        let all = UsageQuery {
            since_ms: i64::MIN,
            until_ms: i64::MAX,
            by: GroupBy::Run,
            project: None,
            run: None,
        };
        assert_eq!(pg.usage(&all).expect("usage").len(), 7);
        for project in ["web", "api"] {
            for base_command in [None, Some("/review"), Some("/test"), Some("/none")] {
                for model in [None, Some("claude-sonnet-4-5"), Some("sonnet")] {
                    let key = HistoryKey {
                        project: project.into(),
                        base_command: base_command.map(str::to_string),
                        model: model.map(crate::core::pricing::normalize),
                    };
                    for limit in [1, 2, 50] {
                        let want = lite.history(&key, limit).expect("sqlite history");
                        assert_eq!(pg.history(&key, limit).expect("history"), want, "{key:?}");
                    }
                }
            }
        }
        let budgets: Vec<SharedBudget> = [
            (None, None, false),
            (Some("web"), None, true),
            (Some("web"), Some("/review"), false),
            (None, Some("/lint"), true),
        ]
        .into_iter()
        .map(|(project, command, usd)| SharedBudget {
            key: format!("{project:?} {command:?} {usd}"),
            since_ms: -86_400_000,
            until_ms: 86_400_000 * 20_001,
            project: project.map(str::to_string),
            base_command: command.map(str::to_string),
            usd,
        })
        .collect();
        let req = ShareRequest {
            run_id: "run-2",
            project: "web",
            now_ms: 5,
            lease_until_ms: 100,
            instances: &[],
            unflushed: &[],
            holds: &[],
            pause: None,
            budgets: &budgets,
        };
        assert_eq!(
            pg.share(&req).expect("share"),
            lite.share(&req).expect("sqlite share")
        );
    }

    #[test]
    fn many_connections_creating_and_writing_one_fresh_database_lose_nothing() {
        let url = PgServer::shared().database();
        crate::store::contract::many_connections_opening_and_writing_one_fresh_ledger_lose_nothing(
            move || Ok(Box::new(PostgresStore::open(&url)?) as Box<dyn UsageStore>),
        );
    }

    /// Eight runs, each on its own connection, claim at the same moment where only one
    /// fits, round after round: exactly one is granted each time.
    #[test]
    fn racing_claims_never_both_take_the_last_headroom() {
        let url = PgServer::shared().database();
        let mut setup = PostgresStore::open(&url).expect("open");
        setup
            .begin_run(
                &run("spent", "p", 1_500),
                &[inst(0, "/a", None, "completed", 600, 0, Some(1))],
            )
            .expect("begin");
        const RUNS: usize = 8;
        const ROUNDS: usize = 15;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(RUNS));
        let threads: Vec<_> = (0..RUNS)
            .map(|t| {
                let (url, barrier) = (url.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut s = PostgresStore::open(&url).expect("open");
                    let id = format!("racer-{t}");
                    s.begin_run(&run(&id, "p", 1_500), &[]).expect("begin");
                    let mut won = Vec::new();
                    for round in 0..ROUNDS {
                        // `spent` used 904 tokens (600 + 301 + 0 + 3): one hold of 300 fits
                        // the limit of 1,207, two do not.
                        let claim = Claim {
                            budget: budget(
                                &format!("tokens round {round}"),
                                Some("p"),
                                None,
                                false,
                            ),
                            mine: 300,
                            hold: 300,
                            limit: 1_207,
                        };
                        barrier.wait();
                        let (ok, _) = s.claim(&id, 1_000, 31_000, &[claim]).expect("claim");
                        won.push(ok);
                    }
                    won
                })
            })
            .collect();
        let results: Vec<Vec<bool>> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        for round in 0..ROUNDS {
            let winners = results.iter().filter(|w| w[round]).count();
            assert_eq!(
                winners, 1,
                "round {round}: {winners} runs got the last headroom"
            );
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let url = PgServer::shared().database();
        drop(PostgresStore::open(&url).expect("create"));
        let mut c = Client::connect(&url, NoTls).expect("connect");
        c.batch_execute("UPDATE orchestrator.schema_version SET version = 99")
            .expect("bump");
        match PostgresStore::open(&url) {
            Err(StoreError::Newer { found: 99, .. }) => {}
            other => panic!("expected Newer, got {:?}", other.err()),
        }
        match PostgresStore::open_read_only(&url) {
            Err(StoreError::Newer { found: 99, .. }) => {}
            other => panic!(
                "expected Newer, got {:?}",
                other.err().map(|e| e.to_string())
            ),
        }
    }

    #[test]
    fn reading_never_creates_or_writes() {
        let url = PgServer::shared().database();
        assert!(PostgresStore::open_read_only(&url)
            .expect("read-only")
            .is_none());
        let mut c = Client::connect(&url, NoTls).expect("connect");
        let schema: Option<String> = c
            .query_one("SELECT to_regnamespace('orchestrator')::text", &[])
            .expect("query")
            .get(0);
        assert_eq!(schema, None, "a read-only open created the schema");
        drop(PostgresStore::open(&url).expect("create"));
        let mut r = PostgresStore::open_read_only(&url)
            .expect("read-only")
            .expect("a ledger now");
        assert!(matches!(
            r.begin_run(&run("r", "p", 0), &[]),
            Err(StoreError::Unusable(_))
        ));
    }

    /// The server goes away and comes back: every call while it is away is `Unusable`,
    /// the first after it is back reconnects and succeeds, and nothing is lost.
    #[test]
    fn a_restarted_server_is_reconnected_and_loses_nothing() {
        let server = PgServer::new();
        let url = server.database();
        let mut s = PostgresStore::open(&url).expect("open");
        s.begin_run(
            &run("r", "p", 0),
            &[inst(0, "/a", None, "running", 1, 1, None)],
        )
        .expect("begin");
        server.stop();
        let latest = inst(0, "/a", None, "completed", 500, 70, Some(9));
        for _ in 0..2 {
            match s.record("r", 5, std::slice::from_ref(&latest)) {
                Err(StoreError::Unusable(e)) => assert!(!e.contains(server.password()), "{e}"),
                other => panic!("expected Unusable while away, got {other:?}"),
            }
        }
        server.start();
        s.record("r", 6, std::slice::from_ref(&latest))
            .expect("the first write after the server is back");
        let g = s
            .usage(&UsageQuery {
                since_ms: 0,
                until_ms: 1,
                by: GroupBy::Run,
                project: None,
                run: None,
            })
            .expect("usage");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].usage, latest.usage);
        assert_eq!(g[0].cost, Usd(70));
        assert_eq!(g[0].run.as_ref().map(|r| r.heartbeat_ms), Some(6));
    }

    /// Inside a tokio runtime (where the client's own would panic), calls still work.
    #[test]
    fn works_from_inside_a_tokio_runtime() {
        let url = PgServer::shared().database();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // Opened, used and dropped inside the runtime.
        let h = rt.block_on(async move {
            let mut s = PostgresStore::open(&url).expect("open");
            s.begin_run(&run("r", "p", 0), &[]).expect("begin");
            s.history(
                &HistoryKey {
                    project: "p".into(),
                    base_command: None,
                    model: None,
                },
                5,
            )
        });
        assert_eq!(h, Ok(vec![]));
    }

    #[test]
    fn text_with_nul_is_kept_readable() {
        let mut s = fresh();
        let mut i = inst(0, "fix\0it", None, "completed", 5, 1, Some(1));
        i.name = "a\0b".into();
        s.begin_run(&run("r", "p", 0), &[i]).expect("begin");
        let g = s
            .usage(&UsageQuery {
                since_ms: 0,
                until_ms: 1,
                by: GroupBy::Instance,
                project: None,
                run: None,
            })
            .expect("usage");
        assert_eq!(g[0].key, "a\u{fffd}b");
    }

    #[test]
    fn a_wrong_password_is_unusable_and_never_shown() {
        let server = PgServer::shared();
        let url = server
            .url()
            .replace(server.password(), "not-the-password-42");
        match PostgresStore::open(&url) {
            Err(StoreError::Unusable(e)) => {
                assert!(!e.contains("not-the-password-42"), "{e}");
                assert!(!e.contains('\n'), "{e}");
            }
            other => panic!("expected Unusable, got {:?}", other.err()),
        }
    }

    #[test]
    fn urls_are_recognised_and_shown_without_their_password() {
        assert!(is_url("postgres://h/db"));
        assert!(is_url("postgresql://u@h/db"));
        assert!(!is_url("ledger.sqlite"));
        assert!(!is_url("/tmp/postgres://x"));
        for (url, shown) in [
            (
                "postgres://u:s3cr%40t@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            (
                "postgresql://u:p/a?s@ss@h/db?sslmode=disable",
                "postgresql://u:***@h/db?sslmode=disable",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=pw&x=1",
                "postgres://h/db?user=u&password=***&x=1",
            ),
            ("postgres:///db", "postgres:///db"),
        ] {
            assert_eq!(redact(url), shown);
        }
    }

    #[test]
    fn lock_ids_are_stable() {
        // Every process and version must take the same lock for a key.
        assert_eq!(lock_id(""), 0x811c_9dc5_u32 as i32);
        assert_eq!(lock_id("a"), 0xe40c_292c_u32 as i32);
        assert_eq!(SCHEMA_VERSION, crate::store::sqlite::SCHEMA_VERSION);
    }
}
