//! The SQLite ledger: one file, WAL mode, shared by every orchestrator on the machine.
//!
//! Concurrency: every write is one `BEGIN IMMEDIATE` transaction (the write lock is taken
//! up front, so two writers never deadlock upgrading a read lock), SQLite's busy handler
//! waits up to [`BUSY_TIMEOUT`] for the lock, and a transaction that still reports
//! "busy" or "locked" is retried whole until [`RETRY_FOR`] has passed. Creation and
//! migration run in such a transaction too, so several processes opening a fresh file at
//! once create the schema exactly once.
//!
//! Schema versions are SQLite's `user_version`: 0 is an empty file, [`SCHEMA_VERSION`]
//! is the newest this build knows; a file with a larger version is refused, never
//! written.

use super::{
    i64_of, u64_of, Claim, Elsewhere, FleetPause, GroupBy, GroupSums, HistoryKey, InstanceRecord,
    RecordedBudgets, RunEnd, RunInfo, RunRecord, ShareRequest, Shared, SharedBudget, StoreError,
    Unflushed, UsageQuery, UsageStore, NO_MODEL_KEY, PROMPT_KEY,
};
use crate::core::usage::{Usage, Usd};
use rusqlite::{params, Connection, ErrorCode, OpenFlags};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub const SCHEMA_VERSION: i64 = 3;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 3] = [
    r#"
CREATE TABLE runs (
    run_key       INTEGER PRIMARY KEY,
    run_id        TEXT NOT NULL UNIQUE,
    project       TEXT NOT NULL,
    host          TEXT NOT NULL,
    started_ms    INTEGER NOT NULL,
    ended_ms      INTEGER,
    heartbeat_ms  INTEGER NOT NULL,
    mode          TEXT NOT NULL,
    budgets       TEXT NOT NULL,
    exit_code     INTEGER,
    exit_reason   TEXT,
    simulated     INTEGER NOT NULL,
    version       TEXT NOT NULL,
    rollup        BLOB
);
CREATE INDEX runs_by_start ON runs(started_ms);
CREATE TABLE dict (
    id            INTEGER PRIMARY KEY,
    text          TEXT NOT NULL UNIQUE
);
CREATE TABLE instances (
    run_id          TEXT NOT NULL REFERENCES runs(run_id),
    idx             INTEGER NOT NULL,
    project         TEXT NOT NULL,
    run_started_ms  INTEGER NOT NULL,
    name            TEXT NOT NULL,
    command         TEXT NOT NULL,
    base_command    TEXT,
    configured_model TEXT,
    model           TEXT,
    status          TEXT NOT NULL,
    reason          TEXT,
    input_tokens    INTEGER NOT NULL,
    output_tokens   INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    total_tokens    INTEGER NOT NULL,
    cost_nanos      INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    tool_calls      INTEGER NOT NULL,
    session_id      TEXT,
    exit_code       INTEGER,
    ended_ms        INTEGER,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
CREATE INDEX instances_history ON instances(project, base_command, configured_model, status, ended_ms);
"#,
    r#"
CREATE INDEX instances_by_start ON instances(run_started_ms, project, base_command, run_id, total_tokens, cost_nanos);
CREATE TABLE holds (
    budget          TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    lease_until_ms  INTEGER NOT NULL,
    PRIMARY KEY (budget, run_id)
) WITHOUT ROWID;
CREATE INDEX holds_by_run ON holds(run_id);
CREATE TABLE pauses (
    project     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    until_ms    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    PRIMARY KEY (project, kind)
);
"#,
    r#"
CREATE TABLE unflushed (
    run_id          TEXT NOT NULL,
    project         TEXT NOT NULL,
    run_started_ms  INTEGER NOT NULL,
    base_command    TEXT,
    total_tokens    INTEGER NOT NULL,
    cost_nanos      INTEGER NOT NULL
);
CREATE INDEX unflushed_by_run ON unflushed(run_id);
"#,
];

pub struct SqliteStore {
    conn: Connection,
    /// `dict` ids already committed (they never change once committed).
    dict: HashMap<String, u32>,
    /// How long a transaction is retried while another process holds the lock.
    patience: Duration,
    /// When a run's rollup was last rebuilt; a run whose rollup lags its instance rows.
    rollup_at: Option<Instant>,
    stale_rollup: Option<String>,
    /// The instance rows of the run this store writes, as committed (see [`Mine`]).
    mine: Option<Mine>,
}

/// What a store last committed of one run's instances (the run it records: one per
/// process): per instance index, its rollup item and a hash of its fixed fields. The
/// rollup is encoded from it without reading the instance rows back, and a row whose
/// fixed fields are unchanged is written with an `UPDATE` of the changing ones only.
/// Changed only inside a write transaction, and dropped when one fails (it is read back
/// from the rows when next needed).
struct Mine {
    run_id: String,
    rows: Vec<Option<MineRow>>,
}

#[derive(Clone, Copy)]
struct MineRow {
    item: [u64; ROLLUP_FIELDS],
    /// [`fixed_hash`] of the row as written.
    fixed: u64,
    /// [`state_hash`] of the row as written.
    state: u64,
}

/// A hash of the fields of an instance record that change with its state, not with
/// each usage update: a running instance's rows mostly differ in numbers only.
fn state_hash(
    model: Option<&str>,
    status: &str,
    reason: Option<&str>,
    session_id: Option<&str>,
    exit_code: Option<i32>,
    ended_ms: Option<i64>,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (model, status, reason, session_id, exit_code, ended_ms).hash(&mut h);
    h.finish()
}

/// A hash of the fields of an instance record that never change during a run.
fn fixed_hash(
    name: &str,
    command: &str,
    base_command: Option<&str>,
    configured_model: Option<&str>,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (name, command, base_command, configured_model).hash(&mut h);
    h.finish()
}

/// A run's rollup (what `orchestrator usage` reads) is rebuilt at most this often while
/// nothing ends: a run flushing every 250 ms for shared budgets does not rebuild it four
/// times a second. An instance's end and the run's end rebuild it at once.
const ROLLUP_EVERY: Duration = Duration::from_secs(1);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn classify(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Unusable(e.to_string()),
    }
}

/// Runs `f` until it does not fail with "busy"/"locked", for at most `patience`.
fn retry<T>(
    patience: Duration,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if is_busy(&e) && start.elapsed() < patience => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(classify(e)),
        }
    }
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) the ledger at `path`. The directory must
    /// exist.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
        let store = SqliteStore::setup(conn)?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing ledger without ever writing to it (the dry run, `orchestrator
    /// usage`): `Ok(None)` when there is no file or it holds no schema yet.
    pub fn open_read_only(path: &Path) -> Result<Option<SqliteStore>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
        // Queries read every selected run's rollup: through mmap rather than one read(2)
        // per page (about 40% faster over 1,000,000 instance records).
        let _ = conn.execute_batch("PRAGMA mmap_size = 1073741824");
        let store = SqliteStore {
            conn,
            dict: HashMap::new(),
            patience: RETRY_FOR,
            rollup_at: None,
            stale_rollup: None,
            mine: None,
        };
        let v = store.user_version()?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        Ok((v == SCHEMA_VERSION).then_some(store))
    }

    /// Gives up on a lock held by another process after `patience` (default two
    /// minutes): a run sharing budgets must learn soon that the ledger is unavailable.
    pub fn set_patience(&mut self, patience: Duration) -> Result<(), StoreError> {
        self.patience = patience;
        self.conn
            .busy_timeout(patience.min(BUSY_TIMEOUT))
            .map_err(classify)
    }

    /// An in-memory ledger (tests and benchmarks).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(classify)?;
        let store = SqliteStore {
            conn,
            dict: HashMap::new(),
            patience: RETRY_FOR,
            rollup_at: None,
            stale_rollup: None,
            mine: None,
        };
        store.migrate()?;
        Ok(store)
    }

    fn setup(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
        // Reading the header here turns a file that is not a database into an error now.
        let mode: String = retry(RETRY_FOR, || {
            conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        })?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::debug!(mode, "the ledger could not switch to WAL mode");
        }
        retry(RETRY_FOR, || {
            conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
        })?;
        Ok(SqliteStore {
            conn,
            dict: HashMap::new(),
            patience: RETRY_FOR,
            rollup_at: None,
            stale_rollup: None,
            mine: None,
        })
    }

    fn user_version(&self) -> Result<i64, StoreError> {
        retry(self.patience, || {
            self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        })
    }

    /// Brings the schema to [`SCHEMA_VERSION`] inside one immediate transaction.
    fn migrate(&self) -> Result<(), StoreError> {
        let v = self.user_version()?;
        if v == SCHEMA_VERSION {
            return Ok(());
        }
        if v > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        self.immediate(|conn| {
            // Another process may have migrated between the check and the lock.
            let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if v > SCHEMA_VERSION {
                return Ok(Some(v));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(v.max(0) as usize) {
                conn.execute_batch(sql)?;
                conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
            }
            Ok(None)
        })?
        .map_or(Ok(()), |found| {
            Err(StoreError::Newer {
                found,
                supported: SCHEMA_VERSION,
            })
        })
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, retried whole while busy.
    fn immediate<T>(
        &self,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        retry(self.patience, || {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            let r = f(&self.conn).and_then(|v| self.conn.execute_batch("COMMIT").map(|_| v));
            if r.is_err() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            r
        })
    }
}

const UPSERT_INSTANCE: &str = "
INSERT INTO instances (run_id, idx, project, run_started_ms, name, command, base_command,
    configured_model, model, status, reason, input_tokens, output_tokens,
    cache_creation_tokens, cache_read_tokens, total_tokens, cost_nanos, duration_ms,
    tool_calls, session_id, exit_code, ended_ms)
SELECT ?1, ?2, project, started_ms, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
    ?15, ?16, ?17, ?18, ?19, ?20 FROM runs WHERE run_id = ?1
ON CONFLICT (run_id, idx) DO UPDATE SET
    name = excluded.name, command = excluded.command, base_command = excluded.base_command,
    configured_model = excluded.configured_model, model = excluded.model,
    status = excluded.status, reason = excluded.reason,
    input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
    cache_creation_tokens = excluded.cache_creation_tokens,
    cache_read_tokens = excluded.cache_read_tokens, total_tokens = excluded.total_tokens,
    cost_nanos = excluded.cost_nanos, duration_ms = excluded.duration_ms,
    tool_calls = excluded.tool_calls, session_id = excluded.session_id,
    exit_code = excluded.exit_code, ended_ms = excluded.ended_ms";

/// The numbers of an instance row whose other fields are as recorded.
const UPDATE_NUMBERS: &str = "
UPDATE instances SET input_tokens = ?3, output_tokens = ?4, cache_creation_tokens = ?5,
    cache_read_tokens = ?6, total_tokens = ?7, cost_nanos = ?8, duration_ms = ?9,
    tool_calls = ?10
WHERE run_id = ?1 AND idx = ?2";

/// The numbers of an instance's rollup item (after its name, command, model and
/// completed flag): the four token classes, nanodollars and tool calls.
fn item_numbers(i: &InstanceRecord) -> [u64; 6] {
    let [input, output, creation, read, _, cost, _, tools] = i.numbers();
    [
        u64_of(input),
        u64_of(output),
        u64_of(creation),
        u64_of(read),
        zigzag(cost),
        u64_of(tools),
    ]
}

/// Upserts `instances` of `run_id`, keeping `mine` (when it is this run's) as written.
fn upsert_instances(
    conn: &Connection,
    run_id: &str,
    instances: &[InstanceRecord],
    ids: &mut DictIds,
    mine: &mut Option<Mine>,
) -> rusqlite::Result<()> {
    if mine.as_ref().is_some_and(|m| m.run_id != run_id) {
        *mine = None;
    }
    let mut upsert = conn.prepare_cached(UPSERT_INSTANCE)?;
    let mut numbers = conn.prepare_cached(UPDATE_NUMBERS)?;
    for i in instances {
        let n = i.numbers();
        let fixed = fixed_hash(
            &i.name,
            &i.command,
            i.base_command.as_deref(),
            i.configured_model.as_deref(),
        );
        let state = state_hash(
            i.model.as_deref(),
            &i.status,
            i.reason.as_deref(),
            i.session_id.as_deref(),
            i.exit_code,
            i.ended_ms,
        );
        let at = i.index as usize;
        let same = mine
            .as_ref()
            .and_then(|m| m.rows.get(at).copied().flatten())
            .filter(|r| r.fixed == fixed && r.state == state);
        if let Some(row) = same {
            if numbers.execute(params![
                run_id, i.index, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]
            ])? > 0
            {
                // Names, command and model as before: their ids too.
                let mut item = row.item;
                item[4..].copy_from_slice(&item_numbers(i));
                if let Some(m) = mine.as_mut() {
                    m.rows[at] = Some(MineRow { item, ..row });
                }
                continue;
            }
        }
        let written = upsert.execute(params![
            run_id,
            i.index,
            i.name,
            i.command,
            i.base_command,
            i.configured_model,
            i.model,
            i.status,
            i.reason,
            n[0],
            n[1],
            n[2],
            n[3],
            n[4],
            n[5],
            n[6],
            n[7],
            i.session_id,
            i.exit_code,
            i.ended_ms,
        ])? > 0;
        if let Some(m) = mine.as_mut().filter(|_| written) {
            let mut item = [0; ROLLUP_FIELDS];
            item[..4].copy_from_slice(&[
                u64::from(ids.id(conn, Some(&i.name))?),
                u64::from(ids.id(conn, i.base_command.as_deref())?),
                u64::from(ids.id(conn, i.model.as_deref())?),
                u64::from(i.status == "completed"),
            ]);
            item[4..].copy_from_slice(&item_numbers(i));
            if at >= m.rows.len() {
                m.rows.resize(at + 1, None);
            }
            m.rows[at] = Some(MineRow { item, fixed, state });
        }
    }
    Ok(())
}

const DAY_MS: i64 = 86_400_000;

const PUT_HOLD: &str = "
INSERT INTO holds (budget, run_id, amount, lease_until_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (budget, run_id) DO UPDATE SET amount = excluded.amount,
    lease_until_ms = excluded.lease_until_ms";

/// What the runs other than `run_id` have in budget `b` at `now_ms`.
fn elsewhere_in(
    conn: &Connection,
    run_id: &str,
    now_ms: i64,
    b: &SharedBudget,
) -> rusqlite::Result<Elsewhere> {
    // Instance rows, and what runs sharing budgets used since they last wrote theirs.
    let used: i64 = conn
        .prepare_cached(
            "SELECT
               (SELECT COALESCE(SUM(CASE WHEN ?6 THEN cost_nanos ELSE total_tokens END), 0)
                FROM instances
                WHERE run_started_ms >= ?1 AND run_started_ms < ?2 AND run_id != ?3
                  AND (?4 IS NULL OR project = ?4) AND (?5 IS NULL OR base_command = ?5))
             + (SELECT COALESCE(SUM(CASE WHEN ?6 THEN cost_nanos ELSE total_tokens END), 0)
                FROM unflushed
                WHERE run_started_ms >= ?1 AND run_started_ms < ?2 AND run_id != ?3
                  AND (?4 IS NULL OR project = ?4) AND (?5 IS NULL OR base_command = ?5))",
        )?
        .query_row(
            params![
                b.since_ms,
                b.until_ms,
                run_id,
                b.project,
                b.base_command,
                b.usd
            ],
            |r| r.get(0),
        )?;
    let reserved: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(amount), 0) FROM holds
             WHERE budget = ?1 AND run_id != ?2 AND lease_until_ms > ?3",
        )?
        .query_row(params![b.key, run_id, now_ms], |r| r.get(0))?;
    Ok(Elsewhere { used, reserved })
}

impl SqliteStore {
    /// One immediate write transaction with `dict` ids at hand; ids added by it are
    /// kept only once it commits. Rebuilds the rollup of `rollup` when given, and of a
    /// run whose rollup an earlier write left behind.
    fn write<T>(
        &mut self,
        rollup: Option<&str>,
        mut f: impl FnMut(&Connection, &mut DictIds, &mut Option<Mine>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let known = std::mem::take(&mut self.dict);
        let stale = self.stale_rollup.clone();
        let mut fresh = HashMap::new();
        let mut mine = self.mine.take();
        let mut attempt = 0;
        let r = self.immediate(|conn| {
            // A retried transaction starts again from the rows (an earlier attempt may
            // have left ids in `mine` that were rolled back).
            if attempt > 0 {
                mine = None;
            }
            attempt += 1;
            let mut ids = DictIds {
                known: &known,
                fresh: HashMap::new(),
            };
            let answer = f(conn, &mut ids, &mut mine)?;
            let behind = stale.as_deref().filter(|&s| Some(s) != rollup);
            for run_id in rollup.into_iter().chain(behind) {
                rebuild_rollup(conn, run_id, &mut ids, &mut mine)?;
            }
            fresh = std::mem::take(&mut ids.fresh);
            Ok(answer)
        });
        self.dict = known;
        if r.is_ok() {
            self.dict.extend(fresh);
            self.mine = mine;
            if rollup.is_some() || stale.is_some() {
                self.rollup_at = Some(Instant::now());
                self.stale_rollup = None;
            }
        }
        r
    }
}

impl SqliteStore {
    /// Whether a write of `instances` rebuilds its run's rollup now.
    fn rollup_due(&self, instances: &[InstanceRecord]) -> bool {
        !instances.is_empty()
            && (instances.iter().any(|i| i.ended_ms.is_some())
                || self.rollup_at.is_none_or(|t| t.elapsed() >= ROLLUP_EVERY))
    }

    /// After a write of `instances` of `run_id`: whether it left the rollup behind.
    fn rollup_left(
        &mut self,
        ok: bool,
        rebuilt: Option<&str>,
        run_id: &str,
        instances: &[InstanceRecord],
    ) {
        if ok && rebuilt.is_none() && !instances.is_empty() {
            self.stale_rollup = Some(run_id.to_string());
        }
    }
}

/// Renews `run_id`'s heartbeat and upserts `instances`.
fn write_beat(
    conn: &Connection,
    run_id: &str,
    heartbeat_ms: i64,
    instances: &[InstanceRecord],
    ids: &mut DictIds,
    mine: &mut Option<Mine>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE runs SET heartbeat_ms = max(heartbeat_ms, ?2) WHERE run_id = ?1")?
        .execute(params![run_id, heartbeat_ms])?;
    upsert_instances(conn, run_id, instances, ids, mine)
}

/// Replaces `run_id`'s unflushed use.
fn put_unflushed(conn: &Connection, run_id: &str, unflushed: &[Unflushed]) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM unflushed WHERE run_id = ?1")?
        .execute([run_id])?;
    let mut put = conn.prepare_cached(
        "INSERT INTO unflushed (run_id, project, run_started_ms, base_command, total_tokens,
             cost_nanos)
         SELECT run_id, project, started_ms, ?2, ?3, ?4 FROM runs WHERE run_id = ?1",
    )?;
    for u in unflushed.iter().filter(|u| u.tokens != 0 || u.nanos != 0) {
        put.execute(params![run_id, u.base_command, u.tokens, u.nanos])?;
    }
    Ok(())
}

/// The holds, pause and answer of a share (see [`UsageStore::share`]), inside its
/// transaction.
fn share_in(conn: &Connection, req: &ShareRequest) -> rusqlite::Result<Shared> {
    conn.prepare_cached("DELETE FROM holds WHERE run_id = ?1")?
        .execute([req.run_id])?;
    let mut put = conn.prepare_cached(PUT_HOLD)?;
    for h in req.holds.iter().filter(|h| h.amount > 0) {
        put.execute(params![h.key, req.run_id, h.amount, req.lease_until_ms])?;
    }
    if let Some(p) = req.pause {
        conn.prepare_cached(
            "INSERT INTO pauses (project, kind, until_ms, reason, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project, kind) DO UPDATE SET until_ms = excluded.until_ms,
                 reason = excluded.reason, run_id = excluded.run_id
             WHERE excluded.until_ms > pauses.until_ms",
        )?
        .execute(params![p.project, p.kind, p.until_ms, p.reason, p.run_id])?;
    }
    let mut elsewhere = Vec::with_capacity(req.budgets.len());
    for b in req.budgets {
        elsewhere.push(elsewhere_in(conn, req.run_id, req.now_ms, b)?);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT project, kind, until_ms, reason, run_id FROM pauses
         WHERE project = ?1 AND until_ms > ?2 AND run_id != ?3 ORDER BY kind",
    )?;
    let pauses = stmt
        .query_map(params![req.project, req.now_ms, req.run_id], |r| {
            Ok(FleetPause {
                project: r.get(0)?,
                kind: r.get(1)?,
                until_ms: r.get(2)?,
                reason: r.get(3)?,
                run_id: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Shared { elsewhere, pauses })
}

impl UsageStore for SqliteStore {
    fn begin_run(
        &mut self,
        run: &RunRecord,
        instances: &[InstanceRecord],
    ) -> Result<(), StoreError> {
        self.write(Some(&run.run_id), |conn, ids, mine| {
            conn.execute(
                "INSERT INTO runs (run_id, project, host, started_ms, heartbeat_ms, mode,
                     budgets, simulated, version)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (run_id) DO UPDATE SET project = excluded.project,
                     host = excluded.host, started_ms = excluded.started_ms,
                     mode = excluded.mode, budgets = excluded.budgets,
                     simulated = excluded.simulated, version = excluded.version",
                params![
                    run.run_id,
                    run.project,
                    run.host,
                    run.started_ms,
                    run.mode,
                    run.budgets_json,
                    run.simulated,
                    run.version
                ],
            )?;
            upsert_instances(conn, &run.run_id, instances, ids, mine)
        })
    }

    fn record(
        &mut self,
        run_id: &str,
        heartbeat_ms: i64,
        instances: &[InstanceRecord],
    ) -> Result<(), StoreError> {
        let rebuild = self.rollup_due(instances).then_some(run_id);
        let r = self.write(rebuild, |conn, ids, mine| {
            write_beat(conn, run_id, heartbeat_ms, instances, ids, mine)
        });
        self.rollup_left(r.is_ok(), rebuild, run_id, instances);
        r
    }

    fn finish_run(&mut self, run_id: &str, end: &RunEnd) -> Result<(), StoreError> {
        self.write(None, |conn, _, _| {
            conn.execute(
                "UPDATE runs SET ended_ms = ?2, heartbeat_ms = max(heartbeat_ms, ?2),
                     exit_code = ?3, exit_reason = ?4 WHERE run_id = ?1",
                params![run_id, end.ended_ms, end.exit_code, end.exit_reason],
            )?;
            conn.execute("DELETE FROM holds WHERE run_id = ?1", [run_id])?;
            Ok(())
        })
    }

    fn elsewhere(
        &mut self,
        run_id: &str,
        now_ms: i64,
        budgets: &[SharedBudget],
    ) -> Result<Vec<Elsewhere>, StoreError> {
        retry(self.patience, || {
            let tx = self.conn.unchecked_transaction()?;
            let out = budgets
                .iter()
                .map(|b| elsewhere_in(&tx, run_id, now_ms, b))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn newest_periodic(&mut self, project: &str) -> Result<Option<RecordedBudgets>, StoreError> {
        retry(self.patience, || {
            // The text filter only narrows; `recorded_periodic` decides.
            let mut stmt = self.conn.prepare_cached(
                "SELECT run_id, started_ms, budgets FROM runs
                 WHERE project = ?1 AND budgets LIKE '%periodic%'
                 ORDER BY started_ms DESC, run_key DESC",
            )?;
            let mut rows = stmt.query([project])?;
            while let Some(r) = rows.next()? {
                let budgets: String = r.get(2)?;
                if let Some((periodic, zone)) = super::recorded_periodic(&budgets) {
                    return Ok(Some(RecordedBudgets {
                        run_id: r.get(0)?,
                        started_ms: r.get(1)?,
                        periodic,
                        zone,
                    }));
                }
            }
            Ok(None)
        })
    }

    fn share(&mut self, req: &ShareRequest) -> Result<Shared, StoreError> {
        let rebuild = self.rollup_due(req.instances).then_some(req.run_id);
        let r = self.write(rebuild, |conn, ids, mine| {
            write_beat(conn, req.run_id, req.now_ms, req.instances, ids, mine)?;
            put_unflushed(conn, req.run_id, req.unflushed)?;
            share_in(conn, req)
        });
        self.rollup_left(r.is_ok(), rebuild, req.run_id, req.instances);
        r
    }

    fn claim_many(
        &mut self,
        run_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
        batch: &[Vec<Claim>],
    ) -> Result<(usize, Vec<Elsewhere>), StoreError> {
        let budgets = super::claimed_budgets(batch);
        // BEGIN IMMEDIATE holds the write lock from the first read: no other run's claim
        // can fall between the check and the write.
        self.immediate(|conn| {
            let mut elsewhere = Vec::with_capacity(budgets.len());
            for b in &budgets {
                elsewhere.push(elsewhere_in(conn, run_id, now_ms, b)?);
            }
            let (granted, holds) = super::grant(batch, &budgets, &elsewhere);
            let mut put = conn.prepare_cached(PUT_HOLD)?;
            for (key, hold) in holds {
                put.execute(params![key, run_id, hold, lease_until_ms])?;
            }
            Ok((granted, elsewhere))
        })
    }

    fn history(&mut self, key: &HistoryKey, limit: usize) -> Result<Vec<u64>, StoreError> {
        retry(self.patience, || {
            let mut stmt = self.conn.prepare_cached(
                "SELECT total_tokens FROM instances
                 WHERE project = ?1 AND base_command IS ?2 AND configured_model IS ?3
                   AND status = 'completed'
                 ORDER BY ended_ms DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![
                    key.project,
                    key.base_command,
                    key.model,
                    i64_of(limit as u64)
                ],
                |r| r.get::<_, i64>(0),
            )?;
            rows.map(|r| r.map(u64_of)).collect()
        })
    }

    fn usage(&mut self, q: &UsageQuery) -> Result<Vec<GroupSums>, StoreError> {
        retry(self.patience, || {
            let tx = self.conn.unchecked_transaction()?;
            let groups = query_rollups(&tx, q)?;
            tx.commit()?;
            Ok(groups)
        })
    }
}

/// Fields of one instance in a run's rollup, each an unsigned LEB128 varint: name, base
/// command and model (ids in `dict`, 0 for none), flags (bit 0: completed), then input,
/// output, cache write, cache read, nanodollars (zigzag) and tool calls. Varints make a
/// rollup about a third of fixed-width fields, and `orchestrator usage` time is mostly
/// reading those bytes.
const ROLLUP_FIELDS: usize = 10;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The next varint of `b` from `*at`; `None` at the end or on a truncated one.
fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        if shift < 64 {
            v |= u64::from(byte & 0x7f) << shift;
        }
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Ids of `dict` texts: those committed earlier (`known`) and those looked up or added
/// in the current transaction (`fresh`, merged into `known` only once it commits).
struct DictIds<'a> {
    known: &'a HashMap<String, u32>,
    fresh: HashMap<String, u32>,
}

impl DictIds<'_> {
    /// The id of `text`, added when new (inside the caller's transaction); 0 for none.
    fn id(&mut self, conn: &Connection, text: Option<&str>) -> rusqlite::Result<u32> {
        let Some(text) = text else { return Ok(0) };
        if let Some(&id) = self.known.get(text).or_else(|| self.fresh.get(text)) {
            return Ok(id);
        }
        let found: Option<i64> = conn
            .prepare_cached("SELECT id FROM dict WHERE text = ?1")?
            .query_row([text], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let id = match found {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO dict (text) VALUES (?1)")?
                    .execute([text])?;
                conn.last_insert_rowid()
            }
        };
        let id = u32::try_from(id).unwrap_or(0);
        self.fresh.insert(text.to_string(), id);
        Ok(id)
    }
}

/// Rebuilds `run_id`'s rollup, the compact copy of its instance rows that `orchestrator
/// usage` reads (one row per run rather than one per instance): from `mine` when it is
/// this run's, else from the rows (which then become `mine`).
fn rebuild_rollup(
    conn: &Connection,
    run_id: &str,
    ids: &mut DictIds,
    mine: &mut Option<Mine>,
) -> rusqlite::Result<()> {
    let rows = match mine.take() {
        Some(m) if m.run_id == run_id => m,
        _ => read_mine(conn, run_id, ids)?,
    };
    let mut blob = Vec::with_capacity(rows.rows.len() * 24);
    for r in rows.rows.iter().flatten() {
        for v in r.item {
            put_varint(&mut blob, v);
        }
    }
    *mine = Some(rows);
    conn.prepare_cached("UPDATE runs SET rollup = ?2 WHERE run_id = ?1")?
        .execute(params![run_id, blob])?;
    Ok(())
}

/// `run_id`'s instance rows as [`Mine`].
fn read_mine(conn: &Connection, run_id: &str, ids: &mut DictIds) -> rusqlite::Result<Mine> {
    let mut rows: Vec<Option<MineRow>> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT idx, name, command, base_command, configured_model, model,
             status = 'completed', input_tokens, output_tokens, cache_creation_tokens,
             cache_read_tokens, cost_nanos, tool_calls, status, reason, session_id,
             exit_code, ended_ms
         FROM instances WHERE run_id = ?1 ORDER BY idx",
    )?;
    let mut q = stmt.query([run_id])?;
    while let Some(r) = q.next()? {
        let at = usize::try_from(r.get::<_, i64>(0)?).unwrap_or(usize::MAX);
        let name: String = r.get(1)?;
        let command: String = r.get(2)?;
        let base: Option<String> = r.get(3)?;
        let configured: Option<String> = r.get(4)?;
        let model: Option<String> = r.get(5)?;
        let mut item = [
            u64::from(ids.id(conn, Some(&name))?),
            u64::from(ids.id(conn, base.as_deref())?),
            u64::from(ids.id(conn, model.as_deref())?),
            u64::from(r.get::<_, bool>(6)?),
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        for (f, col) in item[4..].iter_mut().zip(7..) {
            let v: i64 = r.get(col)?;
            *f = if col == 11 { zigzag(v) } else { u64_of(v) };
        }
        if at >= rows.len() {
            if at > u32::MAX as usize {
                continue;
            }
            rows.resize(at + 1, None);
        }
        let status: String = r.get(13)?;
        let reason: Option<String> = r.get(14)?;
        let session: Option<String> = r.get(15)?;
        rows[at] = Some(MineRow {
            item,
            fixed: fixed_hash(&name, &command, base.as_deref(), configured.as_deref()),
            state: state_hash(
                model.as_deref(),
                &status,
                reason.as_deref(),
                session.as_deref(),
                r.get(16)?,
                r.get(17)?,
            ),
        });
    }
    Ok(Mine {
        run_id: run_id.to_string(),
        rows,
    })
}

/// One group while it is summed.
#[derive(Default)]
struct Agg {
    sums: GroupSums,
    last_run: Option<i64>,
}

/// The instances of a rollup, one field array each; stops at a truncated item.
fn rollup_items(blob: &[u8]) -> impl Iterator<Item = [u64; ROLLUP_FIELDS]> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let mut item = [0u64; ROLLUP_FIELDS];
        for f in &mut item {
            *f = get_varint(blob, &mut at)?;
        }
        Some(item)
    })
}

/// Sums the rollups of the runs `q` selects into groups, in key order.
fn query_rollups(conn: &Connection, q: &UsageQuery) -> rusqlite::Result<Vec<GroupSums>> {
    let mut dict: HashMap<i64, String> = HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT id, text FROM dict")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            dict.insert(r.get(0)?, r.get(1)?);
        }
    }
    let text_key = |id: u32, none: &str| -> String {
        if id == 0 {
            none.to_string()
        } else {
            dict.get(&i64::from(id)).cloned().unwrap_or_default()
        }
    };
    // Group keys: an integer for every grouping (a dict id, a day, a run key, a
    // project's position), turned into text at the end.
    let mut groups: HashMap<i64, Agg> = HashMap::new();
    let mut key_text: HashMap<i64, String> = HashMap::new();
    let mut projects: HashMap<String, i64> = HashMap::new();
    let mut by_id: Vec<Option<Agg>> = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT run_key, run_id, project, started_ms, ended_ms IS NOT NULL, heartbeat_ms,
             exit_code, rollup
         FROM runs
         WHERE started_ms >= ?1 AND started_ms < ?2
           AND (?3 IS NULL OR project = ?3) AND (?4 IS NULL OR run_id = ?4)
         ORDER BY run_key",
    )?;
    let mut rows = stmt.query(params![q.since_ms, q.until_ms, q.project, q.run])?;
    while let Some(r) = rows.next()? {
        let run_key: i64 = r.get(0)?;
        let started_ms: i64 = r.get(3)?;
        let run_level: Option<i64> = match q.by {
            GroupBy::Day | GroupBy::Week | GroupBy::Month => {
                let day = started_ms.div_euclid(DAY_MS);
                key_text.entry(day).or_insert_with(|| day.to_string());
                Some(day)
            }
            GroupBy::Project => {
                let p: String = r.get(2)?;
                let n = projects.len() as i64;
                let k = *projects.entry(p.clone()).or_insert(n);
                key_text.entry(k).or_insert(p);
                Some(k)
            }
            GroupBy::Run => {
                let id: String = r.get(1)?;
                key_text.entry(run_key).or_insert(id);
                let agg = groups.entry(run_key).or_default();
                agg.sums.run = Some(RunInfo {
                    started_ms,
                    ended: r.get(4)?,
                    heartbeat_ms: r.get(5)?,
                    exit_code: r.get(6)?,
                });
                Some(run_key)
            }
            GroupBy::Command | GroupBy::Model | GroupBy::Instance => None,
        };
        let blob = r.get_ref(7)?.as_blob_or_null()?.unwrap_or_default();
        // A run-level key is looked up once per run; an instance-level one (a dict id,
        // small and dense) through a vector.
        let mut run_agg = run_level.map(|k| groups.remove(&k).unwrap_or_default());
        for item in rollup_items(blob) {
            let agg = match run_agg.as_mut() {
                Some(a) => a,
                None => {
                    let (at, none) = match q.by {
                        GroupBy::Command => (1, PROMPT_KEY),
                        GroupBy::Model => (2, NO_MODEL_KEY),
                        _ => (0, ""),
                    };
                    let id = u32::try_from(item[at]).unwrap_or(0);
                    let i = id as usize;
                    if i >= by_id.len() {
                        by_id.resize_with(i + 1, || None);
                    }
                    by_id[i].get_or_insert_with(|| Agg {
                        sums: GroupSums {
                            key: text_key(id, none),
                            ..GroupSums::default()
                        },
                        last_run: None,
                    })
                }
            };
            if agg.last_run != Some(run_key) {
                agg.last_run = Some(run_key);
                agg.sums.runs += 1;
            }
            let g = &mut agg.sums;
            let completed = item[3] & 1 == 1;
            let u = Usage::new(item[4], item[5], item[6], item[7]);
            g.instances += 1;
            g.usage += u;
            g.cost += Usd(unzigzag(item[8]));
            g.tool_calls += item[9];
            if completed {
                g.completed += 1;
                g.completed_tokens.push(u.total());
            }
        }
        if let (Some(k), Some(a)) = (run_level, run_agg) {
            groups.insert(k, a);
        }
    }
    let by_id = by_id.into_iter().flatten().map(|a| {
        let mut g = a.sums;
        g.completed_tokens.sort_unstable();
        g
    });
    let mut out: Vec<GroupSums> = groups
        .into_iter()
        .filter(|(_, a)| a.sums.instances > 0)
        .map(|(k, a)| {
            let mut g = a.sums;
            g.key = key_text.remove(&k).unwrap_or_default();
            g.completed_tokens.sort_unstable();
            g
        })
        .chain(by_id)
        .collect();
    super::sort_groups(&mut out, q.by);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::{ended, run};

    /// Writes every 250 ms do not rebuild the rollup each time; what they leave behind
    /// is caught up by an instance's end, the run's end, or the next write a second on.
    #[test]
    fn a_lagging_rollup_catches_up_when_an_instance_or_the_run_ends() {
        let mut s = SqliteStore::in_memory().expect("store");
        let running = |tokens| InstanceRecord {
            ended_ms: None,
            ..ended(0, "/a", "running", tokens, 0)
        };
        s.begin_run(&run("r1", "p", 1000), &[running(0)])
            .expect("begin");
        s.record("r1", 2000, &[running(10)]).expect("record");
        // Within the second: instance rows written, the rollup may lag.
        s.record("r1", 2000, &[running(20)]).expect("record");
        assert_eq!(s.stale_rollup.as_deref(), Some("r1"));
        s.finish_run(
            "r1",
            &RunEnd {
                ended_ms: 3000,
                exit_code: 0,
                exit_reason: "ok".into(),
            },
        )
        .expect("finish");
        assert_eq!(s.stale_rollup, None);
        let g = s
            .usage(&UsageQuery::everything(GroupBy::Run))
            .expect("usage");
        assert_eq!(g[0].usage.input_tokens, 20);
        // An instance's end is in the rollup at once.
        s.begin_run(&run("r2", "p", 1000), &[running(0)])
            .expect("begin");
        s.record("r2", 2000, &[running(5)]).expect("record");
        s.record("r2", 2000, &[ended(0, "/a", "completed", 7, 0)])
            .expect("record");
        let g = s
            .usage(&UsageQuery::everything(GroupBy::Run))
            .expect("usage");
        assert_eq!(g[1].usage.input_tokens, 7);
    }

    /// The rollup encoded from what the store wrote ([`Mine`]) is the one its rows give,
    /// through lean updates, a model appearing, a renamed instance, a row the store
    /// did not know, an end and a failed write.
    #[test]
    fn the_rollup_kept_in_memory_is_the_one_the_rows_give() {
        let mut s = SqliteStore::in_memory().expect("store");
        let rec = |i: u32, tokens: u64, status: &str, model: Option<&str>| InstanceRecord {
            ended_ms: None,
            model: model.map(str::to_string),
            ..ended(
                i,
                "/a x",
                status,
                tokens,
                i64::try_from(tokens).unwrap_or(0) * -3,
            )
        };
        let start: Vec<InstanceRecord> = (0..4).map(|i| rec(i, 0, "pending", None)).collect();
        s.begin_run(&run("r", "p", 1000), &start).expect("begin");
        for step in 1..30u64 {
            let mut two = rec(1, step, "running", (step > 10).then_some("m2"));
            if step > 20 {
                two.name = "renamed".into();
            }
            s.record("r", 2000, &[rec(0, step * 10, "running", Some("m1")), two])
                .expect("record");
        }
        // A row written behind the store's back, then a failed write.
        s.conn
            .execute(
                "UPDATE instances SET output_tokens = 99 WHERE run_id = 'r' AND idx = 3",
                [],
            )
            .expect("update");
        s.mine = None;
        s.record("r", 2000, &[rec(2, 5, "running", None)])
            .expect("record");
        s.conn.execute_batch("PRAGMA query_only = 1").expect("ro");
        assert!(s.record("r", 2000, &[rec(2, 6, "running", None)]).is_err());
        assert!(s.mine.is_none(), "a failed write forgets what it kept");
        s.conn.execute_batch("PRAGMA query_only = 0").expect("rw");
        s.record("r", 3000, &[ended(2, "/a x", "completed", 7, 0)])
            .expect("record");
        s.finish_run(
            "r",
            &RunEnd {
                ended_ms: 4000,
                exit_code: 0,
                exit_reason: "ok".into(),
            },
        )
        .expect("finish");
        let rollup = |s: &SqliteStore| -> Vec<u8> {
            s.conn
                .query_row("SELECT rollup FROM runs WHERE run_id = 'r'", [], |r| {
                    r.get(0)
                })
                .expect("rollup")
        };
        let kept = rollup(&s);
        let mut ids = DictIds {
            known: &s.dict,
            fresh: HashMap::new(),
        };
        rebuild_rollup(&s.conn, "r", &mut ids, &mut None).expect("rebuild");
        assert!(ids.fresh.is_empty());
        assert_eq!(kept, rollup(&s));
        let g = s
            .usage(&UsageQuery::everything(GroupBy::Instance))
            .expect("usage");
        assert_eq!(g.len(), 4, "{g:?}");
    }

    /// The behaviour every backend shares (`store::contract`).
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
            case(&mut SqliteStore::in_memory().expect("store"));
        }
    }

    /// Eight processes' worth of connections claiming one token at a time from a
    /// 20-token budget: exactly 20 claims are granted, never more.
    #[test]
    fn concurrent_claims_never_take_more_than_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.sqlite");
        SqliteStore::open(&path).expect("create");
        let budget = SharedBudget {
            key: "k".into(),
            since_ms: 0,
            until_ms: i64::MAX,
            project: Some("p".into()),
            base_command: None,
            usd: false,
        };
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut s = SqliteStore::open(&path).expect("open");
                    let run_id = format!("run{t}");
                    s.begin_run(&run(&run_id, "p", 1), &[]).expect("begin");
                    let mut held = 0;
                    for _ in 0..10 {
                        let claim = Claim {
                            budget: budget.clone(),
                            mine: held + 1,
                            hold: held + 1,
                            limit: 20,
                        };
                        let (ok, _) = s.claim(&run_id, 0, i64::MAX, &[claim]).expect("claim");
                        if ok {
                            held += 1;
                        }
                    }
                    held
                })
            })
            .collect();
        let granted: i64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(granted, 20);
    }

    #[test]
    fn many_connections_creating_and_writing_one_fresh_file_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.sqlite");
        crate::store::contract::many_connections_opening_and_writing_one_fresh_ledger_lose_nothing(
            move || Ok(Box::new(SqliteStore::open(&path)?) as Box<dyn UsageStore>),
        );
    }

    #[test]
    fn varints_round_trip() {
        let mut b = Vec::new();
        let values = [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX];
        for v in values {
            put_varint(&mut b, v);
        }
        let mut at = 0;
        for v in values {
            assert_eq!(get_varint(&b, &mut at), Some(v));
        }
        assert_eq!(get_varint(&b, &mut at), None);
        for v in [0i64, 1, -1, i64::MAX, i64::MIN, -123_456_789] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.sqlite");
        drop(SqliteStore::open(&path).expect("create"));
        let c = Connection::open(&path).expect("open");
        c.execute_batch("PRAGMA user_version = 99").expect("bump");
        drop(c);
        match SqliteStore::open(&path) {
            Err(StoreError::Newer { found: 99, .. }) => {}
            other => panic!("expected Newer, got {:?}", other.err()),
        }
    }

    #[test]
    fn a_file_that_is_not_a_database_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.sqlite");
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Corrupt(_))
        ));
    }
}
