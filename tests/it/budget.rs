//! `orchestrator budget` as a user meets it: simulated runs recorded in a real SQLite
//! ledger, then the project's periodic budgets read back — exactly what the runs
//! recorded, what a live run holds, the table, the zone, and every kind of bad input.

use crate::common::{helper, orchestrator, run, stderr, stdout, tempdir, wait_for};
use crate::periodic::{simulated, total_tokens};
use orchestrator::core::usage::{fmt_count, Usd};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `orchestrator budget --ledger LEDGER` in `dir`.
fn budget(dir: &Path, ledger: &Path) -> Command {
    helper(dir, "budget", ledger)
}

/// `orchestrator budget … --json`: exit 0, one JSON document that the schema admits.
fn budget_json(dir: &Path, ledger: &Path, extra: &[&str]) -> Value {
    let o = run(budget(dir, ledger).args(extra).arg("--json"));
    assert_eq!(o.status.code(), Some(0), "budget failed: {}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "not one line: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    crate::scripting::schemas().check_budget(&v);
    v
}

/// Exit 2 with one line on stderr holding every one of `needles`, nothing on stdout.
fn assert_refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("orchestrator: error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n:?}");
    }
    assert!(stdout(o).is_empty(), "{}", stdout(o));
}

/// A temporary directory whose ledger holds one simulated `/review` run of project `p`;
/// the run's total tokens.
fn one_run() -> (tempfile::TempDir, PathBuf, u64) {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let (code, r, err) = simulated(dir.path(), &ledger, "p", &["/review"], 1);
    assert_eq!(code, 0, "{err}");
    (dir, ledger, total_tokens(&r))
}

fn nanos(dollars: &Value) -> i64 {
    Usd::from_dollars(dollars.as_f64().expect("dollars")).0
}

fn today_in(zone: &str) -> [String; 2] {
    let tz: chrono_tz::Tz = zone.parse().expect("zone");
    let day = || {
        chrono::Utc::now()
            .with_timezone(&tz)
            .format("%Y-%m-%d")
            .to_string()
    };
    // Either side of a midnight that falls between here and the command.
    [day(), day()]
}

#[test]
fn json_shows_exactly_what_the_projects_runs_recorded() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let mut reports = Vec::new();
    for (n, prompts) in [&["/review", "/test"][..], &["/review"], &["write notes"]]
        .into_iter()
        .enumerate()
    {
        let (code, r, err) = simulated(dir.path(), &ledger, "p", prompts, n);
        assert_eq!(code, 0, "{err}");
        reports.push(r);
    }
    let (code, other, err) = simulated(dir.path(), &ledger, "q", &["/review"], 9);
    assert_eq!(code, 0, "{err}");
    let tokens: u64 = reports.iter().map(total_tokens).sum();
    let cost: i64 = reports
        .iter()
        .map(|r| nanos(&r["totals"]["cost_usd"]))
        .sum();

    let limit = tokens * 4;
    let v = budget_json(
        dir.path(),
        &ledger,
        &[
            "--project",
            "p",
            "--daily-token-budget",
            &limit.to_string(),
            "--monthly-cost-budget",
            "$1000",
        ],
    );
    assert_eq!(v["project"], "p");
    assert_eq!(v["zone"], "UTC");
    assert_eq!(v["source"]["from"], "given");
    assert_eq!(v["source"]["run_id"], Value::Null);
    let day = &v["budgets"][0];
    assert_eq!(day["scope"], "periodic");
    assert_eq!(day["key"], "day");
    assert_eq!(day["unit"], "tokens");
    assert_eq!(day["period"], "day");
    assert!(today_in("UTC").contains(&day["label"].as_str().unwrap_or("").to_string()));
    assert_eq!(day["used"], tokens, "{day}");
    assert_eq!(day["reserved"], 0);
    assert_eq!(day["limit"], limit);
    assert_eq!(day["remaining"], limit - tokens);
    assert_eq!(day["percent"], 25.0);
    let start = chrono::DateTime::parse_from_rfc3339(day["start"].as_str().expect("start"))
        .expect("start time");
    let end =
        chrono::DateTime::parse_from_rfc3339(day["end"].as_str().expect("end")).expect("end time");
    assert_eq!((end - start).num_hours(), 24);
    assert_eq!(start.format("%H:%M:%S").to_string(), "00:00:00");
    let ends_in = day["ends_in_secs"].as_u64().expect("ends_in_secs");
    assert!(ends_in <= 86_400, "{day}");
    // The pace: what was used over the time elapsed in the day; at most the projection.
    if let Some(burn) = day["burn"].as_object() {
        let per_hour = burn["per_hour"].as_f64().expect("per_hour");
        let projected = burn["projected"].as_f64().expect("projected");
        assert!(per_hour > 0.0);
        let expect = tokens as f64 + per_hour * ends_in as f64 / 3600.0;
        // Off by the second ends_in_secs drops and per_hour's rounding to whole tokens
        // (half a token for each hour left).
        let slack = per_hour / 3600.0 + ends_in as f64 / 3600.0 + 1.0;
        assert!((projected - expect).abs() <= slack, "{day}");
    }
    let month = &v["budgets"][1];
    assert_eq!(
        (month["key"].as_str(), month["unit"].as_str()),
        (Some("month"), Some("usd"))
    );
    // Dollars to the nanodollar.
    assert_eq!(nanos(&month["used"]), cost, "{month}");
    assert_eq!(month["limit"], 1000.0);

    // Another project's figures are its own.
    let q = budget_json(
        dir.path(),
        &ledger,
        &["--project", "q", "--weekly-token-budget", "1"],
    );
    assert_eq!(q["budgets"][0]["key"], "week");
    assert_eq!(q["budgets"][0]["used"], total_tokens(&other));
    assert_eq!(q["budgets"][0]["remaining"], 0);
    assert!(q["budgets"][0]["percent"].as_f64().unwrap_or(0.0) > 100.0);

    // Scopes from a config file: every project's day, and one command's week.
    let cfg = dir.path().join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"budget": {"periodic": [
            {"period": "day", "scope": "all", "tokens": 100000000},
            {"period": "week", "scope": "command", "command": "/review", "usd": 50}]}}"#,
    )
    .expect("config");
    let review: i64 = reports
        .iter()
        .flat_map(|r| r["instances"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["command"] == "/review")
        .map(|i| nanos(&i["usage"]["cost_usd"]))
        .sum();
    let c = budget_json(
        dir.path(),
        &ledger,
        &["--project", "p", "--config", &cfg.to_string_lossy()],
    );
    assert_eq!(c["budgets"][0]["key"], "day all");
    assert_eq!(c["budgets"][0]["used"], tokens + total_tokens(&other));
    assert_eq!(c["budgets"][1]["key"], "week /review");
    assert_eq!(nanos(&c["budgets"][1]["used"]), review);
    // A flag replaces the config's limit of the same period, unit and scope, as in a run.
    let c = budget_json(
        dir.path(),
        &ledger,
        &[
            "--project",
            "p",
            "-c",
            &cfg.to_string_lossy(),
            "--daily-token-budget",
            "7",
        ],
    );
    let keys: Vec<&str> = c["budgets"]
        .as_array()
        .expect("budgets")
        .iter()
        .map(|b| b["key"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(keys, ["day", "day all", "week /review"]);
}

#[test]
fn the_table_has_figures_a_bar_the_period_end_and_the_pace() {
    let (dir, ledger, used) = one_run();
    let limit = (used * 2).to_string();
    let table = |lang: &str, colour: bool| {
        let mut c = budget(dir.path(), &ledger);
        c.env("LANG", lang)
            .env_remove("LC_ALL")
            .env_remove("LC_CTYPE")
            .env("TZ", "UTC");
        if colour {
            c.env_remove("NO_COLOR").env("CLICOLOR_FORCE", "1");
        }
        let o = run(c.args(["--project", "p", "--daily-token-budget", &limit]));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    let text = table("C.UTF-8", false);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Periodic budgets of project p · periods in UTC · times local (UTC"),
        "{text}"
    );
    let head: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        head,
        [
            "BUDGET", "PERIOD", "USED", "RESERVED", "LIMIT", "USE", "ENDS", "BURN", "AT", "THIS",
            "RATE"
        ],
        "{text}"
    );
    let row = lines[3];
    assert!(row.starts_with("day tokens  "), "{text}");
    assert!(
        today_in("UTC").iter().any(|d| row.contains(d.as_str())),
        "{text}"
    );
    assert!(row.contains(&format!(" {} ", fmt_count(used))), "{text}");
    assert!(
        row.contains(&format!(" {} ", fmt_count(used * 2))),
        "{text}"
    );
    assert!(row.contains("[██████████░░░░░░░░░░] 50.0%"), "{text}");
    assert!(row.contains(" 00:00 (in "), "{text}");
    assert!(row.contains("/h") || row.ends_with('-'), "{text}");
    assert!(!text.contains('\x1b'), "no colour off a terminal: {text}");
    // Columns line up under their heads.
    assert_eq!(lines[2].find("PERIOD"), row.find(char::is_numeric));
    // ASCII where the locale is not UTF-8; colour when forced.
    assert!(table("C", false).contains("[##########----------] 50.0%"));
    assert!(table("C.UTF-8", true).contains("\x1b["));
}

#[test]
fn reserved_shows_what_live_runs_hold() {
    use orchestrator::core::period::{Period, PeriodScope, Zone};
    use orchestrator::core::plan::PeriodicLimit;
    use orchestrator::store::{self, sqlite::SqliteStore, Hold, ShareRequest, UsageStore};
    let (dir, ledger, used) = one_run();
    // Two live runs hold part of the day through the ledger, as a run's flush does; a
    // third run's hold has expired, and a hold in another project does not count.
    let day = [PeriodicLimit {
        period: Period::Day,
        scope: PeriodScope::Project,
        tokens: Some(1),
        usd: None,
    }];
    let now = chrono::Utc::now();
    let key = |project: &str| {
        store::periodic_shares(&day, Zone::Utc, project, now)[0]
            .1
            .clone()
    };
    let mut s = SqliteStore::open(&ledger).expect("ledger");
    let hold = |s: &mut SqliteStore, run_id: &str, project: &str, amount: i64, lease_ms: i64| {
        let b = key(project);
        s.share(&ShareRequest {
            run_id,
            project,
            now_ms: now.timestamp_millis(),
            lease_until_ms: now.timestamp_millis() + lease_ms,
            instances: &[],
            unflushed: &[],
            holds: &[Hold {
                key: b.key.clone(),
                amount,
            }],
            pause: None,
            budgets: &[b],
        })
        .expect("share");
    };
    hold(&mut s, "live-1", "p", 3_000, 60_000);
    hold(&mut s, "live-2", "p", 1_500, 60_000);
    hold(&mut s, "gone", "p", 100_000, -1);
    hold(&mut s, "elsewhere", "q", 7_000, 60_000);
    drop(s);
    let limit = used + 10_000;
    let v = budget_json(
        dir.path(),
        &ledger,
        &["--project", "p", "--daily-token-budget", &limit.to_string()],
    );
    let b = &v["budgets"][0];
    assert_eq!(b["used"], used, "{b}");
    assert_eq!(b["reserved"], 4_500, "{b}");
    assert_eq!(b["remaining"], 5_500, "{b}");
    let o = run(budget(dir.path(), &ledger).args([
        "--project",
        "p",
        "--daily-token-budget",
        &limit.to_string(),
    ]));
    assert!(
        stdout(&o).lines().nth(3).unwrap_or("").contains(" 4.5K "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_live_runs_reservations_show_while_it_runs_and_go_with_it() {
    let dir = tempdir();
    let ledger = dir.path().join("ledger.sqlite");
    let report = dir.path().join("report.json");
    // Block mode under a daily budget: each instance holds its estimate (less what it
    // has spent) in the ledger while it runs.
    let mut child = orchestrator(dir.path())
        .env("ORCHESTRATOR_SIMULATE_PACE", "1")
        .args(["--simulate", "-q", "--project", "p", "--ledger"])
        .arg(&ledger)
        .arg("--report")
        .arg(&report)
        .args([
            "--budget-enforcement-mode",
            "block",
            "--daily-token-budget",
            "50M",
        ])
        .args(["--estimate", "2M", "/a #secs=5", "/b #secs=5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let args = ["--project", "p", "--daily-token-budget", "50M"];
    let held = wait_for("the run's holds in the ledger", &mut child, |_| {
        let v = budget_json(dir.path(), &ledger, &args);
        let r = v["budgets"][0]["reserved"].as_u64()?;
        (r > 0).then_some(r)
    });
    assert!(held <= 4_000_000, "at most the two estimates: {held}");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).expect("report"))
        .expect("report JSON");
    let v = budget_json(dir.path(), &ledger, &args);
    assert_eq!(v["budgets"][0]["reserved"], 0, "released at the end: {v}");
    assert_eq!(v["budgets"][0]["used"], total_tokens(&r));
}

#[test]
fn without_budgets_it_shows_those_of_the_projects_newest_run_that_set_one() {
    let dir = tempdir();
    let ws = dir.path().join("myproj");
    std::fs::create_dir(&ws).expect("mkdir");
    let ledger = dir.path().join("ledger.sqlite");
    // Nothing recorded yet: one line saying how to give a budget.
    let o = run(&mut budget(&ws, &ledger));
    assert_refused(
        &o,
        &[
            "no periodic budget is configured for project myproj",
            "--daily-token-budget",
            "--config",
        ],
    );
    let (code, _, err) = simulated(&ws, &ledger, "myproj", &["/review"], 1);
    assert_eq!(code, 0, "{err}");
    assert_refused(&run(&mut budget(&ws, &ledger)), &["no periodic budget"]);

    let cfg = dir.path().join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"budget": {"periodic": [{"period": "week", "scope": "all", "usd": 25}]}}"#,
    )
    .expect("config");
    let (code, set, err) = simulated(
        &ws,
        &ledger,
        "myproj",
        &[
            "--daily-token-budget",
            "5M",
            "--budget-timezone",
            "Europe/Berlin",
            "--config",
            &cfg.to_string_lossy(),
            "/test",
        ],
        2,
    );
    assert_eq!(code, 0, "{err}");
    // Later runs without periodic budgets, and another project's, change nothing.
    let (code, _, err) = simulated(&ws, &ledger, "myproj", &["/lint"], 3);
    assert_eq!(code, 0, "{err}");
    // (Warn mode: it goes over its budget of 9 tokens with a warning.)
    let (code, _, err) = simulated(
        &ws,
        &ledger,
        "other",
        &["--daily-token-budget", "9", "/x"],
        4,
    );
    assert_eq!(code, 0, "{err}");

    // --project defaults to the current directory's name, as for a run.
    let v = budget_json(&ws, &ledger, &[]);
    assert_eq!(v["project"], "myproj");
    assert_eq!(v["source"]["from"], "run");
    assert_eq!(v["source"]["run_id"], set["run_id"]);
    assert_eq!(v["zone"], "Europe/Berlin");
    let keys: Vec<(&str, &str)> = v["budgets"]
        .as_array()
        .expect("budgets")
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap_or(""),
                b["unit"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(keys, [("day", "tokens"), ("week all", "usd")]);
    assert_eq!(v["budgets"][0]["limit"], 5_000_000);
    assert_eq!(v["budgets"][1]["limit"], 25.0);
    let o = run(&mut budget(&ws, &ledger));
    assert!(
        stdout(&o).contains(&format!(
            "as set by the project's newest run with one: {}",
            set["run_id"].as_str().unwrap_or("?")
        )),
        "{}",
        stdout(&o)
    );
    // --budget-timezone alone keeps the run's budgets, in another zone.
    let v = budget_json(&ws, &ledger, &["--budget-timezone", "Asia/Tokyo"]);
    assert_eq!(
        (v["zone"].as_str(), v["source"]["from"].as_str()),
        (Some("Asia/Tokyo"), Some("run"))
    );
    // Budgets given replace the recorded ones.
    let v = budget_json(&ws, &ledger, &["--monthly-token-budget", "1M"]);
    assert_eq!(v["source"]["from"], "given");
    assert_eq!(v["zone"], "UTC");
    assert_eq!(v["budgets"].as_array().map(Vec::len), Some(1));
}

#[test]
fn the_zone_sets_the_period_and_its_window() {
    let (dir, ledger, used) = one_run();
    // A run that just started is in today's window whatever the zone.
    for zone in ["Pacific/Kiritimati", "America/Adak", "UTC", "Europe/Berlin"] {
        let days = today_in(zone);
        let v = budget_json(
            dir.path(),
            &ledger,
            &[
                "--project",
                "p",
                "--budget-timezone",
                zone,
                "--daily-token-budget",
                "1M",
            ],
        );
        let b = &v["budgets"][0];
        assert_eq!(v["zone"], zone);
        assert_eq!(b["used"], used, "{zone}");
        assert!(
            days.contains(&b["label"].as_str().unwrap_or("").to_string()),
            "{zone}: {b}"
        );
        // The window is the zone's midnight to midnight.
        let tz: chrono_tz::Tz = zone.parse().expect("zone");
        for edge in ["start", "end"] {
            let t = chrono::DateTime::parse_from_rfc3339(b[edge].as_str().expect("time"))
                .expect("time")
                .with_timezone(&tz);
            assert_eq!(t.format("%H:%M").to_string(), "00:00", "{zone} {edge}: {b}");
        }
    }
    // `local` follows TZ.
    let o = run(budget(dir.path(), &ledger).env("TZ", "Asia/Kolkata").args([
        "--project",
        "p",
        "--budget-timezone",
        "local",
        "--daily-token-budget",
        "1M",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["zone"], "local");
    assert!(
        v["budgets"][0]["start"]
            .as_str()
            .unwrap_or("")
            .ends_with("T18:30:00.000Z"),
        "{v}"
    );
    // The table shows the end in local time.
    let o = run(budget(dir.path(), &ledger).env("TZ", "Asia/Kolkata").args([
        "--project",
        "p",
        "--daily-token-budget",
        "1M",
    ]));
    let text = stdout(&o);
    assert!(text.contains("times local (UTC+05:30)"), "{text}");
    assert!(
        text.contains(" 05:30 (in "),
        "UTC midnight in Kolkata: {text}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let (dir, ledger, _) = one_run();
    let bad_cfg = dir.path().join("bad.json");
    std::fs::write(
        &bad_cfg,
        r#"{"budget": {"periodic": [{"period": "year", "tokens": 1}]}}"#,
    )
    .expect("config");
    let bad_cfg = bad_cfg.to_string_lossy().to_string();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--daily-token-budget", "0"],
            vec!["--daily-token-budget", "'0'"],
        ),
        (
            vec!["--daily-cost-budget", "lots"],
            vec!["--daily-cost-budget", "'lots'"],
        ),
        (
            vec!["--weekly-token-budget", "-5"],
            vec!["--weekly-token-budget"],
        ),
        (
            vec![
                "--budget-timezone",
                "Mars/Olympus",
                "--daily-token-budget",
                "5",
            ],
            vec!["--budget-timezone", "Mars/Olympus", "Europe/Berlin"],
        ),
        (
            vec!["--daily-token-budget", "5", "/review"],
            vec!["'/review'"],
        ),
        (vec!["--by", "day"], vec!["--by"]),
        (vec!["--project", ""], vec!["--project"]),
        (
            vec!["--config", "missing.json"],
            vec!["--config missing.json"],
        ),
        (
            vec!["--config", &bad_cfg],
            vec!["budget.periodic", "day, week or month"],
        ),
        (
            vec!["--profile", "nightly", "--daily-token-budget", "5"],
            vec!["--profile nightly", "config file"],
        ),
    ];
    for (args, needles) in cases {
        let o = run(budget(dir.path(), &ledger)
            .args(["--project", "p"])
            .args(&args));
        assert_refused(&o, &needles);
    }
    // A file that is not a ledger.
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(
        &junk,
        "not a database, just text that is long enough to have a header",
    )
    .expect("junk");
    let o = run(budget(dir.path(), &junk).args(["--project", "p", "--daily-token-budget", "5"]));
    assert_refused(&o, &["budget --ledger", "junk.sqlite"]);
}

#[test]
fn a_missing_ledger_reads_as_empty_and_no_ledger_at_all_is_refused() {
    let dir = tempdir();
    let missing = dir.path().join("none.sqlite");
    let v = budget_json(
        dir.path(),
        &missing,
        &["--project", "p", "--daily-token-budget", "5K"],
    );
    let b = &v["budgets"][0];
    assert_eq!(
        (b["used"].as_u64(), b["reserved"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(b["burn"], Value::Null);
    let o =
        run(budget(dir.path(), &missing).args(["--project", "p", "--daily-token-budget", "5K"]));
    assert!(
        stdout(&o).contains("the ledger does not exist yet"),
        "{}",
        stdout(&o)
    );
    assert!(!missing.exists(), "reading never creates the ledger");
    // With no budget given there is nothing to show.
    assert_refused(
        &run(budget(dir.path(), &missing).args(["--project", "p"])),
        &["no periodic budget is configured for project p"],
    );
    // No --ledger and no default one.
    let o = run(Command::new(crate::common::bin())
        .current_dir(dir.path())
        .env_remove("HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("ORCHESTRATOR_LEDGER")
        .args(["budget", "--daily-token-budget", "5"]));
    assert_refused(&o, &["no default ledger", "--ledger PATH"]);
    // The default ledger and ORCHESTRATOR_LEDGER are read like --ledger.
    let o = run(Command::new(crate::common::bin())
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("XDG_DATA_HOME")
        .env("ORCHESTRATOR_LEDGER", &missing)
        .args([
            "budget",
            "--project",
            "p",
            "--daily-token-budget",
            "5",
            "--json",
        ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let dir = tempdir();
    let mut child = budget(dir.path(), &dir.path().join("none.sqlite"))
        .args([
            "--project",
            "p",
            "--daily-token-budget",
            "5",
            "--weekly-token-budget",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}
