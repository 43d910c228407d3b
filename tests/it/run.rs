//! The binary as a user runs it: real child processes (the simulated Claude and small fake
//! `claude` scripts), budgets enforced, exit codes, reports and no process left behind.

use crate::common::{
    call, events, gone, init, instance, orchestrator, proc_state, result, run, stderr, stdout,
    tempdir, wait_for, wait_ready, FakeClaude,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn finished(o: &Output) -> Value {
    let ev = events(o);
    let last = ev.last().cloned().expect("no events");
    assert_eq!(last["event"], "run_finished", "last event: {last}");
    last
}

/// The orchestrator (test defaults) running `claude` as its Claude Code.
fn with_claude(dir: &Path, claude: &Path) -> Command {
    let mut c = orchestrator(dir);
    c.arg("--claude-path").arg(claude);
    c
}

/// [`with_claude`] in block mode, with `--json` events.
fn blocking(dir: &Path, claude: &Path) -> Command {
    let mut c = with_claude(dir, claude);
    c.args(["--json", "--budget-enforcement-mode", "block"]);
    c
}

/// A complete, well-behaved run: one call of 1000 in / 200 out. It records its argv (one
/// per line) in `argv.txt`.
fn good_claude(dir: &Path) -> PathBuf {
    FakeClaude::new()
        .record_argv("argv.txt")
        .line(&init())
        .lines(call("m1", 1000, 200))
        .line(&result(1000, 200, 0.006, false, "all good"))
        .write(dir, "claude-good")
}

/// Starts [`with_claude`] with `args`, its output discarded, and returns once its one
/// Claude has passed [`FakeClaude::ready`]: the orchestrator and that Claude's pid.
fn start_until_ready(dir: &Path, claude: &Path, args: &[&str]) -> (Child, i32) {
    let mut child = with_claude(dir, claude)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = wait_ready(dir, 1, &mut child)[0];
    (child, pid)
}

/// `calls` calls of 1000 in / 200 out, 0.2 s apart (as the API paces them).
fn paced_calls(mut claude: FakeClaude, calls: usize) -> FakeClaude {
    for i in 0..calls {
        claude = claude.lines(call(&format!("m{i}"), 1000, 200)).sleep(0.2);
    }
    claude
}

// ---------------------------------------------------------------- simulated runs

#[test]
fn simulated_run_reports_exact_totals() {
    let dir = tempdir();
    let prompts = ["/test --unit", "/lint src", "explain the build"];
    let out = run(orchestrator(dir.path())
        .args(["--simulate", "--json"])
        .args(prompts));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report = finished(&out);
    let mut want_total = 0;
    let mut want_cost = 0i64;
    for (i, p) in prompts.iter().enumerate() {
        let (usage, cost) = orchestrator::simulate::expected_totals(p, None);
        let inst = &report["instances"][i];
        assert_eq!(inst["status"], "completed");
        assert_eq!(inst["usage"]["total_tokens"], usage.total(), "{p}");
        assert_eq!(inst["usage"]["input_tokens"], usage.input_tokens);
        assert_eq!(inst["usage"]["output_tokens"], usage.output_tokens);
        assert_eq!(
            inst["usage"]["cache_read_input_tokens"],
            usage.cache_read_input_tokens
        );
        assert_eq!(
            inst["usage"]["cache_creation_input_tokens"],
            usage.cache_creation_input_tokens
        );
        let got = orchestrator::core::usage::Usd::from_dollars(
            inst["usage"]["cost_usd"].as_f64().unwrap(),
        );
        assert_eq!(got, cost, "{p}");
        want_total += usage.total();
        want_cost += cost.nanos();
    }
    assert_eq!(report["totals"]["total_tokens"], want_total);
    let total_cost = report["totals"]["cost_usd"].as_f64().unwrap();
    assert_eq!(
        orchestrator::core::usage::Usd::from_dollars(total_cost).nanos(),
        want_cost
    );
    // The human summary went to stderr and names the exit reason.
    assert!(stderr(&out).contains("exit code 0"), "{}", stderr(&out));
}

#[test]
fn json_events_are_one_object_per_line_and_totals_add_up() {
    let dir = tempdir();
    let out = run(orchestrator(dir.path()).args(["--simulate", "--json", "/a", "/b"]));
    let ev = events(&out);
    for e in &ev {
        assert!(e["event"].is_string() && e["ts"].is_string(), "{e}");
    }
    assert_eq!(ev[0]["event"], "run_started");
    let report = finished(&out);
    let sum: u64 = ev
        .iter()
        .filter(|e| e["event"] == "instance_finished")
        .map(|e| e["usage"]["total_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(report["totals"]["total_tokens"].as_u64(), Some(sum));
    assert_eq!(
        ev.iter()
            .filter(|e| e["event"] == "instance_started")
            .count(),
        2
    );
}

#[test]
fn block_mode_terminates_simulated_instance_within_one_turn() {
    let dir = tempdir();
    let report_path = dir.path().join("report.json");
    let out = run(orchestrator(dir.path())
        .env("ORCHESTRATOR_SIMULATE_PACE", "0.2")
        .args(["--simulate", "--json", "--budget-enforcement-mode", "block"])
        .args(["--overall-token-budget", "5000", "--kill-grace", "1"])
        .arg("--report")
        .arg(&report_path)
        .arg("/test refactor the parser"));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let report = finished(&out);
    let inst = instance(&report, "test-refactor-the-parser");
    assert_eq!(inst["status"], "terminated");
    let reason = inst["reason"].as_str().unwrap();
    assert!(reason.contains("overall budget exceeded"), "{reason}");
    // Overrun bounded by what one turn (one API call) can spend.
    let used = inst["usage"]["total_tokens"].as_u64().unwrap();
    assert!(
        used > 5000 && used < 5000 + 3000 + 900 + 3000,
        "used {used}"
    );
    let (full, _) = orchestrator::simulate::expected_totals("/test refactor the parser", None);
    assert!(
        used < full.total(),
        "terminated run spent the whole transcript"
    );
    // The report file holds the same run_finished object.
    let file: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(file["exit_code"], 3);
    assert_eq!(file["totals"], report["totals"]);
    let ev = events(&out);
    assert!(ev.iter().any(|e| e["event"] == "budget_exceeded"));
    assert!(ev
        .iter()
        .any(|e| e["event"] == "instance_terminated" && e["reason"] == "budget"));
}

// ---------------------------------------------------------------- fake claude runs

#[test]
fn command_budget_terminates_only_its_instances_and_caps_one_call() {
    let dir = tempdir();
    // Each call spends 1000 + 200 tokens; ten calls with pauses between.
    let slow = paced_calls(FakeClaude::new().line(&init()), 10)
        .line(&result(10_000, 2000, 0.06, false, "done"))
        .write(dir.path(), "claude-slow");
    let out = run(blocking(dir.path(), &slow)
        .args(["--kill-grace", "1"])
        .args(["--command-budget", "/test=2500", "--estimate", "100"])
        .args(["/test one", "/lint"]));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let report = finished(&out);
    let t = instance(&report, "test-one");
    assert_eq!(t["status"], "terminated");
    assert!(t["reason"]
        .as_str()
        .unwrap()
        .contains("command budget /test exceeded"));
    let used = t["usage"]["total_tokens"].as_u64().unwrap();
    // Crossed during the third call: 2 × 1200 + the call in flight.
    assert!((2501..=3600).contains(&used), "used {used}");
    let lint = instance(&report, "lint");
    assert_eq!(lint["status"], "completed");
    assert_eq!(lint["usage"]["total_tokens"], 12_000);
}

#[test]
fn instance_cap_terminates_that_instance() {
    let dir = tempdir();
    let slow = paced_calls(FakeClaude::new().line(&init()), 10).write(dir.path(), "claude-slow");
    let config = dir.path().join("c.json");
    std::fs::write(
        &config,
        r#"{"instances":[{"name":"capped","command":"/x","max_tokens_per_command":2000}],
            "budget":{"enforcement_mode":"block"}}"#,
    )
    .unwrap();
    let out = run(with_claude(dir.path(), &slow)
        .args(["--json", "--kill-grace", "1", "-c"])
        .arg(&config));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let inst = instance(&finished(&out), "capped").clone();
    assert_eq!(inst["status"], "terminated");
    assert!(
        inst["reason"].as_str().unwrap().contains("instance budget"),
        "{inst}"
    );
    assert!(inst["usage"]["total_tokens"].as_u64().unwrap() <= 3600);
}

#[test]
fn warn_mode_never_stops_and_warns_once_per_threshold() {
    let dir = tempdir();
    let mut claude = FakeClaude::new().line(&init());
    for i in 0..5 {
        claude = claude.lines(call(&format!("m{i}"), 1000, 200));
    }
    let claude = claude
        .line(&result(5000, 1000, 0.03, false, "done"))
        .write(dir.path(), "claude-five");
    let out = run(with_claude(dir.path(), &claude).args([
        "--json",
        "--overall-token-budget",
        "3000",
        "/a",
    ]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let ev = events(&out);
    let warnings: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event"] == "budget_warning" && e["budget"]["scope"] == "overall")
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let report = finished(&out);
    assert_eq!(instance(&report, "a")["status"], "completed");
    assert_eq!(report["totals"]["total_tokens"], 6000);
    assert_eq!(report["budgets"][0]["state"], "exceeded");
}

#[test]
fn admission_makes_an_instance_wait_then_run() {
    let dir = tempdir();
    let claude = good_claude(dir.path()); // spends 1200 tokens
    let out = run(blocking(dir.path(), &claude)
        .args(["--overall-token-budget", "5000", "--estimate", "3000"])
        .args(["/first", "/second"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let ev = events(&out);
    let waiting = ev
        .iter()
        .position(|e| e["event"] == "instance_waiting" && e["name"] == "second")
        .expect("second waited");
    let first_done = ev
        .iter()
        .position(|e| e["event"] == "instance_finished" && e["name"] == "first")
        .unwrap();
    let second_start = ev
        .iter()
        .position(|e| e["event"] == "instance_started" && e["name"] == "second")
        .unwrap();
    assert!(waiting < first_done && first_done < second_start);
    assert_eq!(finished(&out)["totals"]["total_tokens"], 2400);
}

#[test]
fn blocked_instance_is_never_spawned() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .marker("was-run")
        .write(dir.path(), "claude-marker");
    let out = run(blocking(dir.path(), &claude).args([
        "--overall-token-budget",
        "1000",
        "--estimate",
        "2000",
        "/big",
    ]));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(!dir.path().join("was-run").exists());
    let report = finished(&out);
    let inst = instance(&report, "big");
    assert_eq!(inst["status"], "blocked");
    assert!(inst["reason"].as_str().unwrap().contains("overall budget"));
    assert!(!events(&out)
        .iter()
        .any(|e| e["event"] == "instance_started"));
}

#[test]
fn timeout_terminates_and_exit_code_is_1() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .hang()
        .write(dir.path(), "claude-hang");
    let out = run(with_claude(dir.path(), &claude).args([
        "--json",
        "--timeout",
        "0.5",
        "--kill-grace",
        "1",
        "/slow",
    ]));
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let inst = instance(&finished(&out), "slow").clone();
    assert_eq!(inst["status"], "timed_out");
    assert!(inst["reason"].as_str().unwrap().contains("timed out"));
}

#[test]
fn child_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .ignore_sigterm()
        .line(&init())
        .hang()
        .write(dir.path(), "claude-stubborn");
    let out = run(with_claude(dir.path(), &claude).args([
        "--json",
        "--timeout",
        "0.3",
        "--kill-grace",
        "0.3",
        "/stubborn",
    ]));
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report = finished(&out);
    let inst = instance(&report, "stubborn");
    assert_eq!(inst["status"], "timed_out");
    assert_eq!(inst["signal"], 9);
}

#[test]
fn child_without_result_fails_with_a_reason() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 500, 50))
        .write(dir.path(), "claude-noresult");
    let out = run(with_claude(dir.path(), &claude).args(["--json", "/x"]));
    assert_eq!(out.status.code(), Some(1));
    let report = finished(&out);
    let inst = instance(&report, "x");
    assert_eq!(inst["status"], "failed");
    assert!(inst["reason"]
        .as_str()
        .unwrap()
        .contains("without a result"));
    // What it did spend is still accounted.
    assert_eq!(inst["usage"]["total_tokens"], 550);
}

#[test]
fn error_result_and_unknown_command_fail() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .line(&result(0, 0, 0.0, false, "Unknown command: /nosuch"))
        .write(dir.path(), "claude-unknown");
    let out = run(with_claude(dir.path(), &claude).args(["--json", "/nosuch"]));
    assert_eq!(out.status.code(), Some(1));
    let report = finished(&out);
    let inst = instance(&report, "nosuch");
    assert_eq!(inst["status"], "failed");
    assert_eq!(inst["reason"], "Unknown command: /nosuch");
}

#[test]
fn hundred_megabyte_line_and_invalid_utf8_are_survived() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .lines(call("m1", 1000, 200))
        // A user event carrying a 100 MB tool result, then a line with invalid UTF-8.
        .sh("printf '{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"content\":\"'; head -c 100000000 /dev/zero | tr '\\0' a; printf '\"}]}}\\n'")
        .sh("printf '{\"type\":\"assistant\",\"message\":{\"id\":\"m2\",\"model\":\"claude-sonnet-4-5\",\"content\":[{\"type\":\"text\",\"text\":\"bad \\377\\376 bytes\"}],\"usage\":{\"input_tokens\":10,\"output_tokens\":5}}}\\n'")
        .line(&result(1010, 205, 0.01, false, "survived"))
        .write(dir.path(), "claude-huge");
    let out = run(with_claude(dir.path(), &claude).args(["--json", "/huge"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report = finished(&out);
    let inst = instance(&report, "huge");
    assert_eq!(inst["status"], "completed");
    assert_eq!(inst["usage"]["total_tokens"], 1215);
    assert_eq!(inst["result"], "survived");
}

#[test]
fn missing_claude_is_a_usage_error_before_anything_launches() {
    let dir = tempdir();
    let out = run(orchestrator(dir.path()).args([
        "--json",
        "--claude-path",
        "/nonexistent/claude",
        "/x",
        "/y",
    ]));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in ["/nonexistent/claude", "--claude-path", "--simulate"] {
        assert!(err.contains(needle), "{err}");
    }
    assert!(
        stdout(&out).is_empty(),
        "nothing may start: {}",
        stdout(&out)
    );
    // A bare name not on PATH says so.
    let out = run(orchestrator(dir.path())
        .env("PATH", dir.path())
        .args(["/x"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`claude` is not on PATH"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn prompt_starting_with_dashes_stays_a_prompt() {
    let dir = tempdir();
    let claude = good_claude(dir.path());
    let out = run(with_claude(dir.path(), &claude).args([
        "--json",
        "--model",
        "opus",
        "--",
        "--version please",
    ]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let argv = std::fs::read_to_string(dir.path().join("argv.txt")).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(
        argv,
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--model",
            "opus",
            "--",
            "--version please"
        ]
    );
}

#[test]
fn no_instances_is_a_usage_error() {
    let dir = tempdir();
    let out = run(&mut orchestrator(dir.path()));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn max_parallel_runs_one_at_a_time_and_shows_the_rest_waiting() {
    let dir = tempdir();
    let claude = good_claude(dir.path());
    let out =
        run(with_claude(dir.path(), &claude)
            .args(["--json", "-j", "1", "/first", "/second", "/third"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let ev = events(&out);
    let waiting = ev
        .iter()
        .find(|e| e["event"] == "instance_waiting" && e["name"] == "second")
        .expect("second waited for a slot");
    assert!(waiting["reason"]
        .as_str()
        .unwrap()
        .contains("--max-parallel 1"));
    // Never two running at once: every start follows the previous finish.
    let mut running = 0;
    for e in &ev {
        match e["event"].as_str() {
            Some("instance_started") => {
                running += 1;
                assert!(running <= 1, "two instances running at once");
            }
            Some("instance_finished") => running -= 1,
            _ => {}
        }
    }
    assert_eq!(finished(&out)["totals"]["total_tokens"], 3600);
}

/// Claude Code runs Bash tools in sessions of their own, outside its process group; a
/// budget stop or the end of the run must still leave none of them behind.
#[test]
fn tool_processes_in_their_own_session_do_not_survive() {
    let dir = tempdir();
    // A "tool" in a new session, like Claude Code's Bash tool, recording its pid.
    let tool = "setsid sleep 1000 & echo $! > \"$(dirname \"$0\")/tool-$(basename \"$0\").pid\"";
    let stopped = paced_calls(FakeClaude::new().line(&init()).sh(tool), 10)
        .write(dir.path(), "claude-stopped");
    // The same, but the claude exits normally and leaves its tool behind.
    let leaky = FakeClaude::new()
        .line(&init())
        .sh(tool)
        .line(&result(10, 10, 0.0001, false, "done"))
        .write(dir.path(), "claude-leaky");
    let out = run(blocking(dir.path(), &stopped)
        .args(["--kill-grace", "1"])
        .args(["--overall-token-budget", "2000", "/x"]));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let out = run(with_claude(dir.path(), &leaky).args(["--json", "/y"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    for name in ["claude-stopped", "claude-leaky"] {
        let pid: i32 = std::fs::read_to_string(dir.path().join(format!("tool-{name}.pid")))
            .expect("tool pid")
            .trim()
            .parse()
            .unwrap();
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "{name}: tool process {pid} survived the run");
    }
}

/// Even when the orchestrator is SIGKILLed (OOM killer, `kill -9` in CI) and can clean
/// nothing up, Claude does not go on spending unwatched: the kernel terminates it.
#[test]
fn claude_dies_with_a_killed_orchestrator() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .ready()
        .hang()
        .write(dir.path(), "claude-forever");
    let (mut child, pid) = start_until_ready(dir.path(), &claude, &["--json", "/x"]);
    child.kill().unwrap();
    child.wait().unwrap();
    // The watchdog's SIGKILL is asynchronous: wait (bounded) for the process to go. A
    // zombie counts as gone (`kill(pid, 0)` would still succeed on one).
    wait_for(
        &format!("claude {pid} ended with its orchestrator"),
        &mut child,
        |_| gone(pid).then_some(()),
    );
}

/// Instances waiting for a slot or for budget headroom cost nothing while they wait: the
/// orchestrator sleeps until something happens (it once spun a core at 100% here). The
/// bound is a hundred times what an idle wait costs, so load cannot make it flaky.
#[test]
fn waiting_instances_do_not_spin_the_cpu() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .sleep(2.0)
        .line(&result(100, 10, 0.001, false, "ok"))
        .write(dir.path(), "claude-sleepy");
    let out = run(orchestrator(dir.path())
        .env("ORCHESTRATOR_RUSAGE", "1")
        .arg("--claude-path")
        .arg(&claude)
        .args(["-j", "1", "/a", "/b"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    let field = |name: &str| -> f64 {
        let at = err
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in {err}"))
            + name.len();
        err[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let cpu = field("user_s=") + field("sys_s=");
    assert!(cpu < 1.0, "{cpu:.3} s of CPU over a 4 s mostly idle run");
}

/// Ctrl-Z stops the instances with the orchestrator, as a shell stops a job, so nothing
/// spends while budgets cannot be enforced; SIGCONT continues them all.
#[test]
fn ctrl_z_stops_every_instance_and_sigcont_continues_them() {
    let dir = tempdir();
    let claude = FakeClaude::new()
        .line(&init())
        .ready()
        .sh("while :; do sleep 0.05; done")
        .write(dir.path(), "claude-busy");
    let (mut child, pid) = start_until_ready(dir.path(), &claude, &["--kill-grace", "1s", "/x"]);
    let orch = child.id() as i32;
    unsafe { libc::kill(orch, libc::SIGTSTP) };
    wait_for("the orchestrator stopped", &mut child, |_| {
        proc_state(orch).filter(|&s| s == 'T')
    });
    wait_for("claude stopped", &mut child, |_| {
        proc_state(pid).filter(|&s| s == 'T')
    });
    unsafe { libc::kill(orch, libc::SIGCONT) };
    wait_for("claude continued", &mut child, |_| {
        proc_state(pid).filter(|&s| s == 'S' || s == 'R')
    });
    unsafe { libc::kill(orch, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

/// A supervising task that fails (here: no thread or process can be created under a
/// tiny RLIMIT_NPROC) ends its instance as failed; the run still ends with a report
/// instead of hanging for good.
#[test]
fn a_run_under_a_tiny_process_limit_ends_instead_of_hanging() {
    if unsafe { libc::geteuid() } != 0 || Command::new("runuser").arg("--help").output().is_err() {
        eprintln!("skipped: needs root and runuser to run as nobody");
        return;
    }
    let dir = tempdir();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let claude = good_claude(dir.path());
    let bin = crate::common::bin();
    let script = format!(
        "ulimit -u 4; exec {} --startup-delay 0 --status-report-interval 0 --claude-path {} \
         --log-dir logs --report report.json a b c",
        bin.display(),
        claude.display()
    );
    let mut child = Command::new("runuser")
        .args(["-u", "nobody", "--", "bash", "-c", &script])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(
        "the run under a tiny process limit ended",
        &mut child,
        |c| c.try_wait().unwrap(),
    );
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    // Whatever could not be started or supervised failed with a reason; nothing hung.
    assert_ne!(status.code(), Some(0), "{err}");
    if let Ok(text) = std::fs::read_to_string(dir.path().join("report.json")) {
        let report: Value = serde_json::from_str(&text).unwrap();
        for i in report["instances"].as_array().unwrap() {
            assert!(i["status"] == "completed" || i["reason"].is_string(), "{i}");
        }
    }
}
