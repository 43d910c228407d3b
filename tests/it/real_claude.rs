//! Opt-in (ignored by default): the orchestrator against the real Claude Code CLI,
//! offline, talking to `scripts/fake-anthropic-api.py` on loopback. Needs
//! `ORCHESTRATOR_REAL_CLAUDE` naming a Claude Code executable
//! (`npm install @anthropic-ai/claude-code`):
//!
//! ```sh
//! ORCHESTRATOR_REAL_CLAUDE=/path/to/node_modules/.bin/claude cargo test --test it real_claude -- --ignored
//! ```

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &Path, args: &[&str]) -> Server {
    let port_file = dir.join("port");
    let child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fake-anthropic-api.py"))
        .args(["--port", "0", "--port-file"])
        .arg(&port_file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fake API server");
    // Owned from here on, so Drop stops and reaps it whatever happens below.
    let mut server = Server { child, port: 0 };
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.port == 0 {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            server.port = p.trim().parse().unwrap_or(0);
        }
        assert!(Instant::now() < deadline, "fake API server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn real_claude() -> PathBuf {
    let p = std::env::var_os("ORCHESTRATOR_REAL_CLAUDE")
        .map(PathBuf::from)
        .expect("set ORCHESTRATOR_REAL_CLAUDE to a Claude Code executable");
    assert!(
        p.exists(),
        "ORCHESTRATOR_REAL_CLAUDE: {} does not exist",
        p.display()
    );
    p
}

fn run(dir: &Path, server: &Server, claude: &Path, args: &[&str]) -> (i32, Value) {
    let home = dir.join("home");
    let project = dir.join("project");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&project).unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("orchestrator"))
        .current_dir(&project)
        .env("HOME", &home)
        .env(
            "ANTHROPIC_BASE_URL",
            format!("http://127.0.0.1:{}", server.port),
        )
        .env("ANTHROPIC_API_KEY", "test")
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .arg("--claude-path")
        .arg(claude)
        .args([
            "--json",
            "--status-report-interval",
            "0",
            "--startup-delay",
            "0",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run orchestrator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("events");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(last).unwrap(),
    )
}

#[test]
#[ignore = "needs ORCHESTRATOR_REAL_CLAUDE (see the module doc)"]
fn real_claude_totals_match_its_own_result_and_unknown_commands_fail() {
    let claude = real_claude();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(
        dir.path(),
        &[
            "--turns",
            "3",
            "--input-tokens",
            "2500",
            "--cache-read",
            "1500",
            "--output-tokens",
            "420",
        ],
    );
    let (code, report) = run(
        dir.path(),
        &server,
        &claude,
        &[
            "--model",
            "claude-opus-4-8",
            "--allowed-tools",
            "Bash",
            "hi",
            "/nosuchcommand",
        ],
    );
    assert_eq!(code, 1, "{report}");
    let hi = &report["instances"][0];
    assert_eq!(hi["status"], "completed", "{hi}");
    // Claude Code's own modelUsage for this set-up (shared/fixtures multi-turn-partial).
    assert_eq!(hi["usage"]["input_tokens"], 7500);
    assert_eq!(hi["usage"]["output_tokens"], 1260);
    assert_eq!(hi["usage"]["cache_read_input_tokens"], 4500);
    assert_eq!(hi["usage"]["total_tokens"], 13260);
    assert!((hi["usage"]["cost_usd"].as_f64().unwrap() - 0.07125).abs() < 1e-9);
    let unknown = &report["instances"][1];
    assert_eq!(unknown["status"], "failed");
    assert_eq!(unknown["reason"], "Unknown command: /nosuchcommand");
}

fn assert_dead(marker: &Path) {
    let pid = std::fs::read_to_string(marker).expect("the tool ran and wrote its pid");
    let pid: i32 = pid.trim().parse().unwrap();
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "Claude's Bash tool process {pid} survived the run");
}

/// Claude Code runs Bash tools in a session of their own and does not stop them on
/// SIGTERM; a timeout must still leave none behind.
#[test]
#[ignore = "needs ORCHESTRATOR_REAL_CLAUDE (see the module doc)"]
fn real_claude_timeout_kills_its_running_tool() {
    let claude = real_claude();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("tool.pid");
    let tool = format!("echo $$ > {}; exec sleep 1000", marker.display());
    let server = start_server(dir.path(), &["--turns", "3", "--tool-command", &tool]);
    let (code, report) = run(
        dir.path(),
        &server,
        &claude,
        &[
            "--allowed-tools",
            "Bash",
            "--timeout",
            "5",
            "--kill-grace",
            "2",
            "work",
        ],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["instances"][0]["status"], "timed_out");
    assert_dead(&marker);
}

/// A block-mode budget stops Claude mid-run; a tool it left running in the background
/// does not outlive the orchestrator.
#[test]
#[ignore = "needs ORCHESTRATOR_REAL_CLAUDE (see the module doc)"]
fn real_claude_is_stopped_by_a_block_mode_budget_and_leaves_nothing() {
    let claude = real_claude();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("tool.pid");
    let tool = format!(
        "sleep 1000 > /dev/null 2>&1 & echo $! > {}",
        marker.display()
    );
    let server = start_server(
        dir.path(),
        &[
            "--turns",
            "10",
            "--input-tokens",
            "2000",
            "--output-tokens",
            "300",
            "--tool-command",
            &tool,
        ],
    );
    let (code, report) = run(
        dir.path(),
        &server,
        &claude,
        &[
            "--allowed-tools",
            "Bash",
            "--budget-enforcement-mode",
            "block",
            "--overall-token-budget",
            "4000",
            "--kill-grace",
            "2",
            "work",
        ],
    );
    assert_eq!(code, 3, "{report}");
    let inst = &report["instances"][0];
    assert_eq!(inst["status"], "terminated");
    // Crossed by the second call's input; the overrun is that one call.
    let used = inst["usage"]["total_tokens"].as_u64().unwrap();
    assert!((4001..=4600).contains(&used), "used {used}");
    assert_dead(&marker);
}
