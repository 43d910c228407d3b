//! The scripting and CI surface as a script sees it, through the real binary: `--json`
//! events checked against `schema/events.schema.json`, `--report` files against
//! `schema/report.schema.json` (after a normal, an interrupted and a budget-stopped run,
//! and never half-written), `--log-dir` files, slash-command listing, completions and
//! the man page, and every file in examples/.

use crate::common::{
    bin, call, file_names, init, instance, orchestrator, read_json, result, run, stderr, stdout,
    tempdir, FakeClaude,
};
use serde_json::Value;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------- schemas

fn schema(name: &str) -> Value {
    read_json(&repo().join("schema").join(name))
}

pub(crate) struct Schemas {
    report: jsonschema::Validator,
    event: jsonschema::Validator,
    budget: jsonschema::Validator,
}

pub(crate) fn schemas() -> Schemas {
    let report = schema("report.schema.json");
    let events = schema("events.schema.json");
    let budget = schema("budget.schema.json");
    for s in [&report, &events, &budget] {
        assert!(
            jsonschema::draft202012::meta::is_valid(s),
            "not a valid draft 2020-12 schema"
        );
    }
    let report_id = report["$id"].as_str().expect("$id").to_string();
    // The others refer to the report's definitions.
    let with_report = |schema: &Value, what: &str| {
        let resource = jsonschema::Resource::from_contents(report.clone()).expect("resource");
        jsonschema::options()
            .with_resource(report_id.clone(), resource)
            .build(schema)
            .unwrap_or_else(|e| panic!("{what} schema: {e}"))
    };
    Schemas {
        report: jsonschema::validator_for(&report).expect("report schema"),
        event: with_report(&events, "events"),
        budget: with_report(&budget, "budget"),
    }
}

impl Schemas {
    pub(crate) fn check_report(&self, report: &Value) {
        valid(&self.report, report, "report");
        assert_documented(report);
    }

    /// `orchestrator budget --json`; the schema allows no undeclared field.
    pub(crate) fn check_budget(&self, doc: &Value) {
        valid(&self.budget, doc, "budget document");
    }

    pub(crate) fn check_event(&self, event: &Value) {
        valid(&self.event, event, "event");
    }
}

/// Fails naming every way `doc` breaks `schema`.
fn valid(schema: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = schema
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what} invalid: {errors:#?}\n{doc:#}");
}

/// Every field the program writes into a report is declared in the schema (the schema
/// allows additions, so validation alone would not notice an undocumented field).
fn assert_documented(report: &Value) {
    let s = schema("report.schema.json");
    let props = |v: &Value| -> Vec<String> {
        v["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let check = |obj: &Value, declared: Vec<String>, what: &str| {
        for k in obj.as_object().expect("object").keys() {
            assert!(declared.contains(k), "{what}.{k} is not in the schema");
        }
    };
    check(report, props(&s), "report");
    check(&report["totals"], props(&s["$defs"]["usage"]), "totals");
    for b in report["budgets"].as_array().expect("budgets") {
        let mut declared = props(&s["$defs"]["budget"]);
        declared.extend(props(&s["$defs"]["budget_key"]));
        check(b, declared, "budget");
    }
    for i in report["instances"].as_array().expect("instances") {
        check(i, props(&s["$defs"]["instance"]), "instance");
        check(&i["usage"], props(&s["$defs"]["usage"]), "instance.usage");
    }
}

// ---------------------------------------------------------------- events

/// Every stdout line of a `--json` run: parsed, schema-checked, `event` and `ts` first.
fn events(o: &Output, schemas: &Schemas) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| {
            // `{"event":"NAME","ts":"…` — grep-able without a JSON parser.
            let rest = l
                .strip_prefix("{\"event\":\"")
                .unwrap_or_else(|| panic!("{l}"));
            let name_end = rest.find('"').unwrap_or(0);
            assert!(
                rest[name_end..].starts_with("\",\"ts\":\""),
                "ts not second: {l}"
            );
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            schemas.check_event(&v);
            v
        })
        .collect()
}

fn of<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn json_events_follow_the_schema_and_add_up() {
    let schemas = schemas();
    let dir = tempdir();
    let report_path = dir.path().join("report.json");
    let prompts = ["/test --unit", "/lint src", "explain the build"];
    // Warn mode with tight budgets: warnings fire, nothing stops.
    let out = run(orchestrator(dir.path())
        .args(["--simulate", "--json", "--overall-token-budget", "60000"])
        .args([
            "--command-budget",
            "/lint=30000",
            "--overall-cost-budget",
            "5",
        ])
        .arg("--report")
        .arg(&report_path)
        .args(prompts));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let ev = events(&out, &schemas);

    assert_eq!(ev[0]["event"], "run_started");
    assert_eq!(ev[0]["instances"].as_array().map(Vec::len), Some(3));
    assert_eq!(ev[0]["budgets"].as_array().map(Vec::len), Some(3));
    let last = ev.last().expect("events");
    assert_eq!(last["event"], "run_finished");
    assert_eq!(of(&ev, "run_finished").len(), 1);

    // Exactly one instance_started and one instance_finished per instance; the run's
    // totals are the sum of the instance_finished totals, field by field.
    let finished = of(&ev, "instance_finished");
    assert_eq!(finished.len(), 3);
    assert_eq!(of(&ev, "instance_started").len(), 3);
    for field in [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "total_tokens",
    ] {
        let sum: u64 = finished
            .iter()
            .map(|e| e["usage"][field].as_u64().expect(field))
            .sum();
        assert_eq!(last["totals"][field].as_u64(), Some(sum), "{field}");
    }
    // Coalesced usage events still carry every token: per instance, the deltas add up
    // to its final total, and totals never go down.
    let mut deltas: HashMap<String, u64> = HashMap::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for u in of(&ev, "usage") {
        let name = u["name"].as_str().expect("name").to_string();
        let total = u["total_tokens"].as_u64().expect("total");
        assert!(
            total >= *seen.get(&name).unwrap_or(&0),
            "total went down: {u}"
        );
        seen.insert(name.clone(), total);
        *deltas.entry(name).or_default() += u["delta"].as_u64().expect("delta");
    }
    for f in &finished {
        let name = f["name"].as_str().expect("name");
        assert_eq!(
            deltas.get(name).copied(),
            f["usage"]["total_tokens"].as_u64(),
            "deltas of {name}"
        );
    }
    // Warnings name the instance that crossed the threshold and the budget by key.
    let warnings = of(&ev, "budget_warning");
    assert!(!warnings.is_empty(), "expected budget warnings");
    for w in &warnings {
        assert!(w["name"].is_string(), "{w}");
    }
    let lint = warnings
        .iter()
        .find(|w| w["budget"]["scope"] == "command")
        .expect("a /lint warning");
    assert_eq!(lint["budget"]["key"], "/lint");
    assert_eq!(lint["name"], "lint-src");

    // The report file is the run_finished event, and both follow the report schema.
    let file = read_json(&report_path);
    assert_eq!(&file, last);
    schemas.check_report(&file);
    let keys: Vec<(&Value, &Value)> = file["budgets"]
        .as_array()
        .expect("budgets")
        .iter()
        .map(|b| (&b["scope"], &b["key"]))
        .collect();
    assert!(keys.contains(&(&Value::from("overall"), &Value::Null)));
    assert!(keys.contains(&(&Value::from("command"), &Value::from("/lint"))));
}

#[test]
fn without_json_stdout_stays_free_of_events_and_the_report_is_still_written() {
    let schemas = schemas();
    let dir = tempdir();
    let out = run(orchestrator(dir.path()).args(["--simulate", "--report", "r.json", "/a"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(!stdout(&out).contains("\"event\""), "{}", stdout(&out));
    schemas.check_report(&read_json(&dir.path().join("r.json")));
}

// ---------------------------------------------------------------- fake claude

/// A fake `claude` in `dir`: `calls` API calls of 1000 in / 200 out each, `pause`
/// seconds apart, then a result.
fn slow_claude(dir: &Path, calls: usize, pause: f64) -> PathBuf {
    let mut claude = FakeClaude::new().line(&init());
    for i in 0..calls {
        claude = claude.lines(call(&format!("m{i}"), 1000, 200)).sleep(pause);
    }
    let n = calls as u64;
    claude
        .line(&result(1000 * n, 200 * n, 0.01, false, "done"))
        .write(dir, "claude-slow")
}

// ---------------------------------------------------------------- --report

#[test]
fn report_after_a_budget_terminated_run_names_instance_budgets() {
    let schemas = schemas();
    let dir = tempdir();
    let claude = slow_claude(dir.path(), 10, 0.2);
    std::fs::create_dir(dir.path().join("out")).expect("mkdir");
    let config = dir.path().join("c.json");
    std::fs::write(
        &config,
        r#"{"instances":[{"name":"capped","command":"/x","max_tokens_per_command":2000},
                         {"name":"free","command":"/y"}],
            "budget":{"enforcement_mode":"block","commands":{"/y":5000}}}"#,
    )
    .expect("config");
    let out = run(orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--json", "--kill-grace", "1", "--estimate", "100"])
        .args(["--report", "out/report.json", "-c"])
        .arg(&config));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let ev = events(&out, &schemas);
    let report = read_json(&dir.path().join("out/report.json"));
    schemas.check_report(&report);
    assert_eq!(report["exit_code"], 3);
    assert_eq!(instance(&report, "capped")["status"], "terminated");
    assert_eq!(instance(&report, "free")["status"], "terminated");
    // Instance caps are keyed by the instance's name, command budgets by the command.
    let budget = |scope: &str, key: &str| {
        report["budgets"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|b| b["scope"] == scope && b["key"] == key)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no {scope} budget {key}: {report:#}"))
    };
    assert_eq!(budget("instance", "capped")["state"], "exceeded");
    assert_eq!(budget("instance", "capped")["limit"], 2000);
    assert_eq!(budget("command", "/y")["state"], "exceeded");
    let exceeded = of(&ev, "budget_exceeded");
    let capped = exceeded
        .iter()
        .find(|e| e["budget"]["scope"] == "instance")
        .expect("instance budget_exceeded");
    assert_eq!(capped["budget"]["key"], "capped");
    assert_eq!(capped["instances"], serde_json::json!(["capped"]));
    let terminated = of(&ev, "instance_terminated");
    assert_eq!(terminated.len(), 2);
    assert!(terminated.iter().all(|t| t["reason"] == "budget"));
    // Nothing but the report is left in its directory.
    assert_eq!(file_names(&dir.path().join("out")), ["report.json"]);
}

#[test]
fn blocked_instances_end_with_instance_finished_too() {
    let schemas = schemas();
    let dir = tempdir();
    let out = run(orchestrator(dir.path())
        .args(["--simulate", "--json", "--budget-enforcement-mode", "block"])
        .args([
            "--overall-token-budget",
            "500",
            "--estimate",
            "1000",
            "/big",
        ]));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let ev = events(&out, &schemas);
    assert_eq!(of(&ev, "instance_blocked").len(), 1);
    let fin = of(&ev, "instance_finished");
    assert_eq!(fin.len(), 1);
    assert_eq!(fin[0]["status"], "blocked");
    assert!(of(&ev, "instance_started").is_empty());
}

/// SIGINT mid-run: the report is still written, complete and valid, exit 130.
#[test]
fn report_after_an_interrupted_run() {
    use std::io::BufRead;
    let schemas = schemas();
    let dir = tempdir();
    let report_path = dir.path().join("r.json");
    let mut child = orchestrator(dir.path())
        .env("ORCHESTRATOR_SIMULATE_PACE", "1")
        .args(["--simulate", "--json", "--kill-grace", "2", "--report"])
        .arg(&report_path)
        .args(["/lint src", "/test --unit", "never started"])
        .args(["--max-parallel", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    // Interrupt once both running instances have reported usage.
    let mut used = std::collections::HashSet::new();
    while used.len() < 2 {
        let mut l = String::new();
        if reader.read_line(&mut l).expect("read") == 0 {
            panic!("orchestrator ended early: {lines:?}");
        }
        let v: Value = serde_json::from_str(&l).expect("json");
        if v["event"] == "usage" {
            used.insert(v["name"].as_str().unwrap_or("").to_string());
        }
        lines.push(l);
    }
    assert!(!report_path.exists(), "report written before the run ended");
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("read");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    for l in rest.lines() {
        schemas.check_event(&serde_json::from_str(l).expect("json"));
    }
    let report = read_json(&report_path);
    schemas.check_report(&report);
    assert_eq!(report["exit_code"], 130);
    assert_eq!(instance(&report, "lint-src")["status"], "interrupted");
    assert_eq!(instance(&report, "never-started")["status"], "interrupted");
    assert!(instance(&report, "lint-src")["usage"]["total_tokens"].as_u64() > Some(0));
    let terminated: Vec<Value> = rest
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "instance_terminated")
        .collect();
    assert_eq!(terminated.len(), 2);
    assert!(terminated.iter().all(|t| t["reason"] == "interrupt"));
}

/// A reader polling the report path during two runs only ever sees no file or a
/// complete, valid report (the previous one, then the new one); no temp file is left.
#[test]
fn report_is_never_half_written() {
    let schemas = Arc::new(schemas());
    let dir = tempdir();
    let path = dir.path().join("report.json");
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (path, stop, schemas) = (path.clone(), stop.clone(), schemas.clone());
        std::thread::spawn(move || {
            let (mut absent, mut complete) = (0u64, 0u64);
            let mut exit_codes = Vec::new();
            let mut last = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match std::fs::read(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => absent += 1,
                    Err(e) => panic!("reading the report: {e}"),
                    // Same bytes as last time: already checked.
                    Ok(bytes) if bytes == last => complete += 1,
                    Ok(bytes) => {
                        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                            panic!(
                                "half-written report ({e}): {}",
                                String::from_utf8_lossy(&bytes)
                            )
                        });
                        schemas.check_report(&v);
                        complete += 1;
                        exit_codes.push(v["exit_code"].clone());
                        last = bytes;
                    }
                }
            }
            (absent, complete, exit_codes)
        })
    };
    // Many instances make a large report, so a non-atomic write would be caught mid-way.
    let prompts: Vec<String> = (0..40).map(|i| format!("/task number {i}")).collect();
    let first = run(orchestrator(dir.path())
        .args(["--simulate", "--report"])
        .arg(&path)
        .args(&prompts));
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let second = run(orchestrator(dir.path())
        .args(["--simulate", "--budget-enforcement-mode", "block"])
        .args(["--overall-token-budget", "1000", "--report"])
        .arg(&path)
        .args(&prompts));
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    stop.store(true, Ordering::Relaxed);
    let (absent, complete, exit_codes) = poller.join().expect("poller panicked");
    assert!(
        absent > 0 && complete > 0,
        "poller saw {absent} absent, {complete} complete"
    );
    // Only whole reports were seen: the first run's, then the second's.
    assert!(
        exit_codes.iter().all(|c| c == 0 || c == 3),
        "{exit_codes:?}"
    );
    let report = read_json(&path);
    schemas.check_report(&report);
    assert_eq!(report["exit_code"], 3);
    assert_eq!(file_names(dir.path()), ["report.json"]);
}

#[test]
fn report_into_a_missing_directory_is_a_usage_error_before_anything_runs() {
    let dir = tempdir();
    let out = run(orchestrator(dir.path()).args(["--simulate", "--report", "nope/r.json", "/a"]));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--report") && err.contains("nope"), "{err}");
}

#[test]
fn a_closed_stdout_does_not_stop_the_run_or_the_report() {
    let schemas = schemas();
    let dir = tempdir();
    let mut child = orchestrator(dir.path())
        .args(["--simulate", "--json", "--report", "r.json", "/a", "/b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let report = read_json(&dir.path().join("r.json"));
    schemas.check_report(&report);
    assert_eq!(report["instances"][1]["status"], "completed");
}

// ---------------------------------------------------------------- --log-dir

#[test]
fn log_dir_keeps_raw_output_privately() {
    let schemas = schemas();
    let dir = tempdir();
    let logs = dir.path().join("logs/run-1");
    let out = run(orchestrator(dir.path())
        .args(["--simulate", "--json", "--log-dir"])
        .arg(&logs)
        .args(["/test --unit", "explain the build"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&logs), 0o700);
    let names = file_names(&logs);
    assert_eq!(
        names,
        [
            "explain-the-build.jsonl",
            "explain-the-build.stderr",
            "test-unit.jsonl",
            "test-unit.stderr"
        ]
    );
    for n in &names {
        assert_eq!(mode(&logs.join(n)), 0o600, "{n}");
    }
    // Each .jsonl is byte for byte what the simulated claude prints for that argv.
    for started in of(&events(&out, &schemas), "instance_started") {
        let argv: Vec<&str> = started["argv"]
            .as_array()
            .expect("argv")
            .iter()
            .map(|a| a.as_str().expect("string"))
            .collect();
        let direct = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(dir.path())
            .env("ORCHESTRATOR_SIMULATE_PACE", "0")
            .stdin(Stdio::null())
            .output()
            .expect("simulated claude");
        let name = started["name"].as_str().expect("name");
        let logged = std::fs::read(logs.join(format!("{name}.jsonl"))).expect("log");
        assert!(!logged.is_empty());
        assert!(
            logged == direct.stdout,
            "{name}.jsonl differs from claude's stdout"
        );
    }
}

#[test]
fn log_dir_keeps_stderr_and_odd_bytes_and_leaves_an_existing_dir_alone() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A log file left by an earlier run, readable by everyone.
    std::fs::write(logs.join("noisy.jsonl"), "old").expect("old log");
    std::fs::set_permissions(
        logs.join("noisy.jsonl"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    // stdout: a result line, a line of invalid UTF-8 and CRLF; stderr: bytes with no
    // trailing newline.
    let claude = FakeClaude::new()
        .sh(r"printf 'warming up\n\377\376 not utf-8\r\n' >&2")
        .sh(r"printf '\377\376 odd\r\n'")
        .line(r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0.0,"modelUsage":{}}"#)
        .sh("printf 'last words' >&2")
        .write(dir.path(), "claude-noisy");
    let out = run(orchestrator(dir.path())
        .arg("--claude-path")
        .arg(&claude)
        .args(["--log-dir", "logs", "/noisy"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    // An existing directory keeps its mode (it may be shared); the files are private.
    let mode = std::fs::metadata(&logs).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
    for f in ["noisy.jsonl", "noisy.stderr"] {
        let mode = std::fs::metadata(logs.join(f))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let err = std::fs::read(logs.join("noisy.stderr")).expect("stderr log");
    assert_eq!(err, b"warming up\n\xff\xfe not utf-8\r\nlast words");
    let out_log = std::fs::read(logs.join("noisy.jsonl")).expect("stdout log");
    let mut want = b"\xff\xfe odd\r\n".to_vec();
    want.extend_from_slice(br#"{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0.0,"modelUsage":{}}"#);
    want.push(b'\n');
    assert_eq!(out_log, want);
}

#[test]
fn instance_names_that_could_escape_the_log_dir_are_refused() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"instances":[{"name":"../escape","command":"/x"}]}"#,
    )
    .expect("config");
    let out =
        run(orchestrator(dir.path()).args(["--simulate", "--log-dir", "logs", "-c", "c.json"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("../escape"), "{}", stderr(&out));
    assert!(!dir.path().join("escape.jsonl").exists());
}

// ---------------------------------------------------------------- slash commands

/// A workspace with project commands (one nested) and a HOME with a user command.
fn command_tree() -> tempfile::TempDir {
    let dir = tempdir();
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "ws/.claude/commands/test.md",
        "---\ndescription: Run the test suite\nallowed-tools: Bash(cargo test:*)\n---\nRun the $ARGUMENTS tests.\n",
    );
    write(
        "ws/.claude/commands/frontend/build.md",
        "---\ndescription: \"Build the web bundle\"\n---\nRun npm run build and report size changes.\n",
    );
    write(
        "home/.claude/commands/standup.md",
        "Summarise yesterday's commits for the standup.\n",
    );
    dir
}

fn in_tree(dir: &Path) -> Command {
    let mut c = orchestrator(&dir.join("ws"));
    c.env("HOME", dir.join("home"));
    c
}

#[test]
fn list_commands_shows_project_nested_and_user_commands() {
    let dir = command_tree();
    let out = run(in_tree(dir.path()).arg("--list-commands"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
            .to_string()
    };
    assert!(line("/test").contains("project") && line("/test").contains("Run the test suite"));
    let fe = line("/frontend:build");
    assert!(
        fe.contains("project") && fe.contains("Build the web bundle"),
        "{fe}"
    );
    let user = line("/standup");
    assert!(
        user.contains("user") && user.contains("Summarise yesterday"),
        "{user}"
    );
    // --workspace works from anywhere.
    let elsewhere = run(orchestrator(dir.path())
        .env("HOME", dir.path().join("home"))
        .args(["--list-commands", "-w", "ws"]));
    assert_eq!(stdout(&elsewhere), text);
}

#[test]
fn list_commands_without_any_folder_says_so() {
    let dir = tempdir();
    let out = run(orchestrator(dir.path()).arg("--list-commands"));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("No custom slash commands"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn inspect_command_prints_path_front_matter_and_body() {
    let dir = command_tree();
    let out = run(in_tree(dir.path()).args(["--inspect-command", "/frontend:build"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("frontend/build.md"), "{text}");
    assert!(text.contains("Build the web bundle"), "{text}");
    assert!(text.contains("Run npm run build"), "{text}");
}

#[test]
fn inspect_unknown_command_is_one_line_and_exit_2() {
    let dir = command_tree();
    let out = run(in_tree(dir.path()).args(["--inspect-command", "/nosuch"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nosuch"), "{err}");
}

#[test]
fn dry_run_warns_about_unknown_slash_commands_only() {
    let dir = command_tree();
    let out = run(in_tree(dir.path()).args([
        "--dry-run",
        "--simulate",
        "/nosuch x",
        "/test --unit",
        "/frontend:build",
        "/standup",
        "/review",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out) + &stderr(&out);
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("slash command") && l.contains("not found"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("/nosuch"), "{}", warnings[0]);
    // --strict turns the warning into a failure.
    let strict = run(in_tree(dir.path()).args(["--dry-run", "--simulate", "--strict", "/nosuch"]));
    assert_eq!(strict.status.code(), Some(2));
}

// ---------------------------------------------------------------- completions, man

/// The bare binary: helper commands must be the very first argument.
fn bare(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir).stdin(Stdio::null());
    c
}

#[test]
fn completions_and_man_page_are_generated() {
    let dir = tempdir();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(bare(dir.path()).args(["completions", shell]));
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("overall-token-budget"), "{shell}");
        assert!(text.contains("inspect-command"), "{shell}");
    }
    let bash = stdout(&run(bare(dir.path()).args(["completions", "bash"])));
    assert!(bash.contains("complete -F _orchestrator"), "{bash}");
    let man = run(bare(dir.path()).arg("man"));
    assert_eq!(man.status.code(), Some(0));
    let man = stdout(&man);
    assert!(man.contains(".TH orchestrator 1"), "{man}");
    assert!(man.contains(".SH OPTIONS") && man.contains("budget\\-enforcement\\-mode"));

    let bad = run(bare(dir.path()).args(["completions", "tcsh"]));
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
}

#[test]
fn a_prompt_named_man_is_still_a_prompt() {
    let schemas = schemas();
    let dir = tempdir();
    let out = run(orchestrator(dir.path()).args(["--simulate", "--json", "--", "man"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ev = events(&out, &schemas);
    assert_eq!(ev[0]["instances"][0]["command"], "man");
    let after_option = run(orchestrator(dir.path()).args(["--simulate", "--json", "completions"]));
    assert_eq!(after_option.status.code(), Some(0));
    assert_eq!(
        events(&after_option, &schemas)[0]["instances"][0]["command"],
        "completions"
    );
}

// ---------------------------------------------------------------- examples

#[test]
fn every_example_config_passes_a_dry_run() {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 3, "{configs:?}");
    let dir = tempdir();
    for config in configs {
        let out = run(orchestrator(&repo())
            .env("HOME", dir.path())
            .args(["--dry-run", "--simulate", "-c"])
            .arg(&config));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            config.display(),
            stderr(&out)
        );
        let json = run(orchestrator(&repo())
            .env("HOME", dir.path())
            .args(["--dry-run", "--simulate", "--json", "-c"])
            .arg(&config));
        assert_eq!(json.status.code(), Some(0));
        serde_json::from_slice::<Value>(&json.stdout)
            .unwrap_or_else(|e| panic!("{}: dry-run JSON: {e}", config.display()));
    }
}

#[test]
fn work_items_script_runs_with_and_without_jq() {
    let dir = tempdir();
    let script = repo().join("examples/work-items.sh");
    for use_jq in ["1", "0"] {
        let out_dir = dir.path().join(format!("out-{use_jq}"));
        std::fs::create_dir(&out_dir).expect("mkdir");
        let out = Command::new("sh")
            .arg(&script)
            .current_dir(dir.path())
            .env("ORCHESTRATOR", bin())
            .env("ORCHESTRATOR_SIMULATE_PACE", "0")
            .env("HOME", dir.path())
            .env("USE_JQ", use_jq)
            .env("OUT", &out_dir)
            .stdin(Stdio::null())
            .output()
            .expect("sh");
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
        // The demo items: three complete, /lint src runs over its 30000-token budget.
        assert!(
            text.contains("ok       /test --unit -> test-unit: completed, "),
            "{text}"
        );
        assert!(
            text.contains("budget   /lint src: stopped by its budget: overall budget exceeded"),
            "{text}"
        );
        assert!(
            text.contains("completed: 3, over budget: 1, failed: 0"),
            "{text}"
        );
        let report = read_json(&out_dir.join("item-3.report.json"));
        assert_eq!(report["exit_code"], 3);
    }
    // A failing item makes the script fail.
    let failing = FakeClaude::new()
        .stderr("claude: exploded")
        .exit(1)
        .write(dir.path(), "failing-claude");
    let out = Command::new("sh")
        .arg(&script)
        .arg("/x")
        .current_dir(dir.path())
        .env("ORCHESTRATOR", bin())
        .env("SIMULATE", "0")
        .env("ORCHESTRATOR_CLAUDE_PATH", &failing)
        .env("OUT", dir.path())
        .output()
        .expect("sh");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("FAILED   /x -> x: failed"),
        "{}",
        stdout(&out)
    );
}

// ---------------------------------------------------------------- docs

/// Fenced blocks of one language in a markdown file.
fn fenced(markdown: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Every `sh` block of the README's scripting sections ("Use in CI" through "JSON
/// events") runs as written and exits 0, with a `claude` on PATH that is the simulated
/// Claude; its JSON report example follows the schema.
#[test]
fn docs_examples_run() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let start = readme.find("## Use in CI").expect("README has Use in CI");
    let end = readme[start..]
        .find("## Decisions where the spec was silent")
        .map_or(readme.len(), |e| start + e);
    let doc = &readme[start..end];
    let dir = tempdir();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(dir.path().join("examples")).expect("mkdir");
    std::fs::create_dir(&bin_dir).expect("mkdir");
    std::os::unix::fs::symlink(bin(), bin_dir.join("orchestrator")).expect("symlink");
    FakeClaude::new()
        .sh(&format!(
            "exec '{}' __simulated-claude \"$@\"",
            bin().display()
        ))
        .write(&bin_dir, "claude");
    for f in ["ci-dry-run.json", "work-items.sh"] {
        std::fs::copy(
            repo().join("examples").join(f),
            dir.path().join("examples").join(f),
        )
        .expect("copy example");
    }
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let have_jq = Command::new("sh")
        .args(["-c", "command -v jq"])
        .output()
        .is_ok_and(|o| o.status.success());
    let blocks = fenced(doc, "sh");
    assert!(blocks.len() >= 4, "{blocks:?}");
    for block in blocks {
        if !have_jq && block.contains("jq ") {
            eprintln!("jq is not installed: skipping a docs example that needs it");
            continue;
        }
        let out = Command::new("sh")
            .args(["-c", &block])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("HOME", dir.path())
            .env("ORCHESTRATOR_SIMULATE_PACE", "0")
            .env_remove("ORCHESTRATOR_CLAUDE_PATH")
            .stdin(Stdio::null())
            .output()
            .expect("sh");
        assert_eq!(
            out.status.code(),
            Some(0),
            "docs example failed:\n{block}\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
    }
    assert!(dir.path().join("report.json").exists());
    let schemas = schemas();
    let examples = fenced(doc, "json");
    assert_eq!(examples.len(), 1);
    let example: Value = serde_json::from_str(&examples[0]).expect("json example");
    schemas.check_report(&example);
}

// ---------------------------------------------------------------- status events

#[test]
fn status_events_carry_progress_and_forecasts() {
    let schemas = schemas();
    let dir = tempdir();
    // A run of several seconds (one instance at a time), reported every second.
    let o = run(Command::new(bin())
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .env("ORCHESTRATOR_SIMULATE_PACE", "0.4")
        .stdin(Stdio::null())
        .args(["--simulate", "--json", "-j", "1", "--startup-delay", "0"])
        .args(["--status-report-interval", "1s"])
        .args(["--overall-token-budget", "10M", "/a", "/b", "/c"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ev = events(&o, &schemas);
    let status = of(&ev, "status");
    assert!(status.len() >= 3, "{} status events", status.len());
    let mut forecast_seen = false;
    for s in &status {
        assert_eq!(s["total"], 3);
        let counts: u64 = s["counts"]
            .as_object()
            .expect("counts")
            .values()
            .map(|v| v.as_u64().unwrap_or(0))
            .sum();
        assert_eq!(counts, 3, "{s}");
        let b = &s["budgets"][0];
        assert!(b["key"].is_null() && b["scope"] == "overall", "{s}");
        if let Some(rate) = b["per_minute"].as_f64() {
            forecast_seen = true;
            // The rate is what was used over the minutes elapsed.
            let used = b["used"].as_f64().unwrap_or(0.0);
            let minutes = s["elapsed_ms"].as_f64().unwrap_or(0.0) / 60_000.0;
            assert!((rate - used / minutes).abs() <= rate * 0.01, "{s}");
            let left_ms = (10_000_000.0 - used) / rate * 60_000.0;
            let runway = b["runs_out_in_ms"].as_f64().expect("runway");
            assert!((runway - left_ms).abs() <= left_ms * 0.01 + 1.0, "{s}");
        } else {
            assert!(
                s["elapsed_ms"].as_u64().unwrap_or(0) < 3000 || b["used"] == 0,
                "{s}"
            );
        }
        if s["done"].as_u64().unwrap_or(0) > 0 {
            assert!(s["eta_ms"].is_u64(), "{s}");
        }
    }
    assert!(forecast_seen, "no status event had a forecast");
    // Status events come before the end and never after it.
    assert_eq!(
        ev.last().map(|e| e["event"].clone()),
        Some("run_finished".into())
    );
}
