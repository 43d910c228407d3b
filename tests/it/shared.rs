//! Budgets shared by concurrent runs through one ledger (issue 12), with real
//! orchestrator processes: several runs at once under one daily budget, two runs racing
//! for the last headroom, a run killed with SIGKILL whose holds expire, and a ledger
//! that goes away mid-run and comes back.
//!
//! Each test takes the ledger as a string (`--ledger` value), so the same scenarios run
//! on SQLite here and on PostgreSQL in `postgres.rs`.

use crate::common::{checked_event, events, orchestrator, stderr, tempdir};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A simulated run of project `p` recorded in `ledger`, with realistic pacing (the
/// simulated instances take `#secs=` seconds), `--json` events on stdout, in block mode
/// under a daily token budget of `limit`.
pub fn shared_run(dir: &Path, ledger: &str, limit: u64, extra: &[&str]) -> Command {
    let mut c = orchestrator(dir);
    c.env("ORCHESTRATOR_SIMULATE_PACE", "1")
        .args([
            "--simulate",
            "--json",
            "-q",
            "--project",
            "p",
            "--ledger",
            ledger,
        ])
        .args(["--budget-enforcement-mode", "block", "--daily-token-budget"])
        .arg(limit.to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

pub fn report(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["event"] == "run_finished")
        .expect("run_finished event")
}

fn total_tokens(report: &Value) -> u64 {
    report["totals"]["total_tokens"].as_u64().expect("total")
}

fn statuses(report: &Value) -> Vec<String> {
    report["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The largest single usage delta of each instance of a run, and the most it spent in
/// any `window_ms` of its `usage` events: the two terms of the overshoot bound
/// (README, "Sharing budgets between runs").
fn bound_terms(events: &[Value], window_ms: i64) -> u64 {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event"] == "usage") {
        let ts = chrono::DateTime::parse_from_rfc3339(e["ts"].as_str().unwrap_or(""))
            .map(|t| t.timestamp_millis())
            .unwrap_or(0);
        let delta = e["delta"].as_i64().unwrap_or(0).max(0) as u64;
        by.entry(e["name"].as_str().unwrap_or("").into())
            .or_default()
            .push((ts, delta));
    }
    by.values()
        .map(|deltas| {
            let largest = deltas.iter().map(|d| d.1).max().unwrap_or(0);
            let in_window = deltas
                .iter()
                .map(|&(t0, _)| {
                    deltas
                        .iter()
                        .filter(|&&(t, _)| t >= t0 && t < t0 + window_ms)
                        .map(|d| d.1)
                        .sum::<u64>()
                })
                .max()
                .unwrap_or(0);
            largest + in_window
        })
        .sum()
}

/// The bound's time term: two flush intervals (2 × 250 ms), with room for a loaded CI
/// machine to deliver a signal and a process to die.
const WINDOW_MS: i64 = 1_500;

/// Four runs started at once share a daily budget of 60K tokens. Their instances'
/// estimates (5K) all fit, but each spends about 43K: the budget is passed, every run
/// stops its instances and exits 3, and the runs together spend at most the documented
/// bound past the limit.
pub fn four_runs_at_once_hold_a_shared_daily_budget(ledger: &str) {
    let dir = tempdir();
    let limit = 60_000;
    let children: Vec<Child> = (0..4)
        .map(|r| {
            shared_run(dir.path(), ledger, limit, &["--estimate", "5000"])
                .args((0..3).map(|i| format!("/r{r}i{i} #secs=6")))
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let mut spent = 0;
    let mut bound = 0;
    for o in &outs {
        let ev = events(o);
        let r = report(&ev);
        assert_eq!(o.status.code(), Some(3), "{}\n{r}", stderr(o));
        let st = statuses(r);
        assert!(
            st.iter().any(|s| s == "terminated"),
            "a run stopped by the shared budget: {st:?}"
        );
        assert!(
            st.iter().all(|s| s != "completed"),
            "nothing can complete 43K within 60K shared by 12: {st:?}"
        );
        spent += total_tokens(r);
        bound += bound_terms(&ev, WINDOW_MS);
    }
    eprintln!("shared budget: spent {spent} of {limit}, bound {bound}");
    assert!(spent > limit, "the budget was passed: {spent}");
    assert!(
        spent - limit <= bound,
        "overshoot {} over the bound {bound}",
        spent - limit
    );
    // Far below what the 12 instances would spend unchecked (about 12 × 43K).
    assert!(spent < 300_000, "{spent}");
}

/// When an event of `name` happened in a run's events (Unix ms).
fn event_ms(events: &[Value], name: &str) -> Option<i64> {
    let e = events.iter().find(|e| e["event"] == name)?;
    chrono::DateTime::parse_from_rfc3339(e["ts"].as_str()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Two runs racing for headroom that fits only one of them (a 100K budget, 60K
/// estimates): they never run at once. One launches; the other waits for it and then
/// either runs (the first spent little) or is blocked.
pub fn two_runs_racing_for_the_last_headroom_never_both_get_it(ledger: &dyn Fn(&Path) -> String) {
    for round in 0..3 {
        let dir = tempdir();
        let ledger = ledger(dir.path());
        let children: Vec<Child> = (0..2)
            .map(|r| {
                shared_run(dir.path(), &ledger, 100_000, &["--estimate", "60000"])
                    .arg(format!("/race x{r} #secs=3"))
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        let runs: Vec<Vec<Value>> = children
            .into_iter()
            .map(|c| events(&c.wait_with_output().expect("wait")))
            .collect();
        let mut st: Vec<String> = runs.iter().flat_map(|ev| statuses(report(ev))).collect();
        st.sort();
        assert!(
            st == ["blocked", "completed"] || st == ["completed", "completed"],
            "round {round}: {st:?}"
        );
        let waited = runs
            .iter()
            .filter(|ev| ev.iter().any(|e| e["event"] == "instance_waiting"))
            .count();
        assert_eq!(waited, 1, "round {round}: exactly one waited");
        if st == ["completed", "completed"] {
            let (first, second) = if event_ms(&runs[0], "instance_waiting").is_some() {
                (&runs[1], &runs[0])
            } else {
                (&runs[0], &runs[1])
            };
            let ended = event_ms(first, "instance_finished").expect("finished");
            let started = event_ms(second, "instance_started").expect("started");
            assert!(started >= ended, "round {round}: they overlapped");
        }
    }
}

/// Reads a running orchestrator's `--json` events until one satisfies `want`.
fn wait_for_event(lines: &mut impl Iterator<Item = String>, want: &str) -> Value {
    let schemas = crate::scripting::schemas();
    for line in lines {
        let v = checked_event(&schemas, &line);
        if v["event"] == want {
            return v;
        }
    }
    panic!("the run ended without a {want} event");
}

/// A run killed with SIGKILL holds a reservation that no one releases: another run
/// waits for it, and launches once the lease has expired. The killed run's recorded use
/// stays in the budget.
pub fn a_killed_runs_holds_expire_with_their_lease(ledger: &str) {
    let dir = tempdir();
    let mut a = shared_run(dir.path(), ledger, 100_000, &["--estimate", "60000"])
        .env("ORCHESTRATOR_LEASE_MS", "3000")
        .arg("/hang #secs=120")
        .spawn()
        .expect("spawn a");
    let mut lines = BufReader::new(a.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok);
    wait_for_event(&mut lines, "instance_started");
    // SIGKILL: no cleanup of its own; its watchdog kills the instance.
    a.kill().expect("kill");
    a.wait().expect("reap");
    let o = shared_run(dir.path(), ledger, 100_000, &["--estimate", "60000"])
        .arg("/after #secs=1")
        .output()
        .expect("run b");
    let ev = events(&o);
    let r = report(&ev);
    assert_eq!(o.status.code(), Some(0), "{}\n{r}", stderr(&o));
    assert_eq!(statuses(r), vec!["completed"]);
    let waited = ev
        .iter()
        .find(|e| e["event"] == "instance_waiting")
        .unwrap_or_else(|| panic!("b waited for a's hold: {ev:?}"));
    assert_eq!(waited["reason"], "waiting for daily budget");
}

/// The ledger taken away mid-run (`take` stops it, `give_back` restores it): the run says
/// so, launches nothing new that counts toward the shared budget meanwhile
/// (`--ledger-failure closed`, block mode's default), and loses no usage: once the
/// ledger is back, everything is recorded.
pub fn a_ledger_that_goes_away_mid_run_loses_no_usage(
    ledger: &str,
    take: &mut dyn FnMut(),
    give_back: &mut dyn FnMut(),
    recorded_tokens: &mut dyn FnMut() -> u64,
) {
    let dir = tempdir();
    let mut child = shared_run(dir.path(), ledger, 10_000_000, &["--max-parallel", "1"])
        .args(["/one #secs=3", "/two #secs=1"])
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok);
    wait_for_event(&mut lines, "instance_started");
    take();
    let down = wait_for_event(&mut lines, "ledger_unreachable");
    assert!(down["error"].is_string(), "{down}");
    // `/one` finishes while the ledger is away: `/two` may not launch.
    let waiting = wait_for_event(&mut lines, "instance_waiting");
    assert!(
        waiting["reason"].as_str().unwrap_or("").contains("ledger"),
        "{waiting}"
    );
    give_back();
    wait_for_event(&mut lines, "ledger_restored");
    let fin = wait_for_event(&mut lines, "run_finished");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{fin}");
    assert_eq!(statuses(&fin), vec!["completed", "completed"]);
    assert_eq!(recorded_tokens(), total_tokens(&fin), "nothing lost");
}

// ---------------------------------------------------------------- SQLite

fn sqlite_ledger(dir: &Path) -> String {
    dir.join("ledger.sqlite").to_string_lossy().into_owned()
}

#[test]
fn sqlite_four_runs_at_once_hold_a_shared_daily_budget() {
    let dir = tempdir();
    four_runs_at_once_hold_a_shared_daily_budget(&sqlite_ledger(dir.path()));
}

#[test]
fn sqlite_two_runs_racing_for_the_last_headroom_never_both_get_it() {
    two_runs_racing_for_the_last_headroom_never_both_get_it(&sqlite_ledger);
}

#[test]
fn sqlite_a_killed_runs_holds_expire_with_their_lease() {
    let dir = tempdir();
    a_killed_runs_holds_expire_with_their_lease(&sqlite_ledger(dir.path()));
}

#[test]
fn sqlite_a_ledger_that_goes_away_mid_run_loses_no_usage() {
    let dir = tempdir();
    let path = sqlite_ledger(dir.path());
    // Another connection takes the write lock when told to, and keeps it until told
    // again: meanwhile the ledger cannot be written.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let locker_path = path.clone();
    let mut locker = Some(std::thread::spawn(move || {
        let _ = rx.recv();
        let c = rusqlite::Connection::open(&locker_path).expect("open");
        c.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        let _ = rx.recv();
        c.execute_batch("COMMIT").expect("unlock");
    }));
    let take_tx = tx.clone();
    let mut take = || take_tx.send(()).expect("locker");
    let mut give_back = || {
        let _ = tx.send(());
        if let Some(t) = locker.take() {
            t.join().expect("locker");
        }
    };
    let mut recorded = || {
        let c = rusqlite::Connection::open(&path).expect("open");
        c.query_row("SELECT SUM(total_tokens) FROM instances", [], |r| {
            r.get::<_, i64>(0)
        })
        .expect("sum") as u64
    };
    a_ledger_that_goes_away_mid_run_loses_no_usage(&path, &mut take, &mut give_back, &mut recorded);
}
