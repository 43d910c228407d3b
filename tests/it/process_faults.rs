//! Real child processes misbehaving the ways Claude and its tools can: ignoring SIGTERM,
//! leaving grandchildren behind, printing 100 MB lines, flooding stderr.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{proc_state, FakeClaude};
use orchestrator::runtime::process::{
    become_child_subreaper, drain_to_tail, group_alive, spawn, Child, ChildStderr, ChildStdout,
    LaunchSpec, LineReader, SIGKILL, SIGTERM,
};

/// Upper bound for operations that must finish; only catches hangs, never asserts speed.
const HANG_GUARD: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_millis(200);

fn start(dir: &Path, script: FakeClaude) -> (Child, LineReader<ChildStdout>, ChildStderr) {
    // Without it, killed grandchildren stay zombies under a non-reaping pid 1 and their
    // group never disappears.
    if let Err(e) = become_child_subreaper() {
        panic!("subreaper: {e}");
    }
    // Run by `sh`, not exec'd: a file this (multi-threaded) process has just written can
    // still be open for writing in a child another test forked, and exec would fail with
    // ETXTBSY.
    let spec = LaunchSpec {
        program: PathBuf::from("sh"),
        args: vec![script.write(dir, "script.sh").into_os_string()],
        cwd: dir.to_path_buf(),
        env: vec![("SIM_TEST_VAR".into(), "from-spec".into())],
    };
    match spawn(&spec) {
        Ok((child, out, err)) => (child, LineReader::new(out), err),
        Err(e) => panic!("spawn failed: {e}"),
    }
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

async fn next(lines: &mut LineReader<ChildStdout>) -> Option<Vec<u8>> {
    match tokio::time::timeout(HANG_GUARD, lines.next_line()).await {
        Ok(Ok(line)) => line.map(<[u8]>::to_vec),
        Ok(Err(e)) => panic!("read error: {e}"),
        Err(_) => panic!("stdout read hung"),
    }
}

async fn guarded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(HANG_GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} hung"),
    }
}

/// Starts a grandchild, says `ready` on stdout (the handshake) and runs on.
fn grandchild_then_ready() -> FakeClaude {
    FakeClaude::new().sh("sleep 1000 &").line("ready").hang()
}

/// Ignores SIGTERM, says `ready` on stdout (the handshake) and runs on.
fn stubborn_then_ready() -> FakeClaude {
    FakeClaude::new().ignore_sigterm().line("ready").hang()
}

#[tokio::test]
async fn terminate_kills_the_whole_group_including_grandchildren() {
    let dir = tempdir();
    let (mut child, mut out, _err) = start(dir.path(), grandchild_then_ready());
    assert_eq!(next(&mut out).await.as_deref(), Some(&b"ready"[..]));
    let pgid = child.pid();
    assert!(group_alive(pgid));

    assert!(child.terminate());
    let exit = guarded("terminate", child.wait()).await;

    assert_eq!(exit.signal, Some(SIGTERM), "{exit}");
    assert!(!group_alive(pgid), "grandchild survived termination");
    assert_eq!(next(&mut out).await, None, "stdout must reach EOF");
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = tempdir();
    let (mut child, mut out, _err) = start(dir.path(), stubborn_then_ready());
    assert_eq!(next(&mut out).await.as_deref(), Some(&b"ready"[..]));
    let pgid = child.pid();

    assert!(child.terminate());
    assert!(
        tokio::time::timeout(GRACE, child.wait()).await.is_err(),
        "SIGTERM is ignored"
    );
    assert!(child.kill());
    let exit = guarded("kill", child.wait()).await;

    assert_eq!(exit.signal, Some(SIGKILL), "{exit}");
    assert!(!group_alive(pgid));
}

#[tokio::test]
async fn dispatcher_style_escalation_through_a_group_handle() {
    let dir = tempdir();
    let (mut child, mut out, _err) = start(dir.path(), stubborn_then_ready());
    assert_eq!(next(&mut out).await.as_deref(), Some(&b"ready"[..]));
    let handle = child.group();

    assert!(handle.terminate());
    // The child ignores SIGTERM, so only the escalation below can end it.
    let killer = tokio::spawn(async move {
        tokio::time::sleep(GRACE).await;
        handle.kill()
    });
    let exit = guarded("wait", child.wait()).await;
    assert_eq!(exit.signal, Some(SIGKILL));
    assert!(matches!(killer.await, Ok(true)));

    // After the leader is reaped its group id may be reused: no more signals.
    let handle = child.group();
    assert!(!handle.terminate());
    assert!(!handle.kill());
}

#[tokio::test]
async fn grandchild_holding_stdout_is_cleaned_up_when_the_child_exits() {
    let dir = tempdir();
    // The background sleep inherits stdout; without cleanup the reader never sees EOF.
    let script = FakeClaude::new().sh("sleep 1000 &").line("done").exit(4);
    let (mut child, mut out, _err) = start(dir.path(), script);
    let pgid = child.pid();
    let reader = async {
        let mut lines = Vec::new();
        while let Some(l) = next(&mut out).await {
            lines.push(l);
        }
        lines
    };
    let (exit, lines) = guarded("exit cleanup", async { tokio::join!(child.wait(), reader) }).await;

    assert_eq!(exit.code, Some(4));
    assert_eq!(lines, vec![b"done".to_vec()]);
    assert!(!group_alive(pgid), "orphaned grandchild left behind");
}

#[tokio::test]
async fn exit_code_and_environment_pass_through_and_nothing_is_left_to_reap() {
    let dir = tempdir();
    let script = FakeClaude::new()
        .sh("echo \"$SIM_TEST_VAR\"")
        .sh("pwd")
        .exit(3);
    let (mut child, mut out, _err) = start(dir.path(), script);
    let pid = child.pid();
    assert_eq!(next(&mut out).await.as_deref(), Some(&b"from-spec"[..]));
    let cwd = next(&mut out).await.unwrap_or_default();
    let expected = std::fs::canonicalize(dir.path()).unwrap_or_default();
    assert_eq!(
        PathBuf::from(String::from_utf8_lossy(&cwd).as_ref()),
        expected
    );

    let exit = guarded("wait", child.wait()).await;
    assert_eq!(exit.code, Some(3));
    assert!(!exit.success());
    // No zombie: the pid itself is gone, not just exited.
    assert!(!group_alive(pid));
    assert_eq!(child.wait().await, exit, "wait is repeatable");
}

#[tokio::test]
async fn a_wait_cancelled_while_the_group_is_reaped_keeps_the_exit_status() {
    // The supervising task drops its wait when stdout ends, which can be after the
    // leader is reaped and while its killed tool is not yet: the next wait must give
    // the same status, and never reap the leader's pid again (it may be reused).
    // The tool holds 256 MiB, so that dying (freeing it) takes a while after SIGKILL.
    let tool = "perl -e '$| = 1; $x = \"a\" x (256 << 20); print \"big\\n\"; sleep 1000' &";
    let mut cancelled = 0;
    for _ in 0..3 {
        let dir = tempdir();
        let script = FakeClaude::new().sh(tool).line("ready").exit(3);
        let (mut child, mut out, _err) = start(dir.path(), script);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match next(&mut out).await {
                Some(line) => seen.push(line),
                None => panic!("stdout ended early: {seen:?}"),
            }
        }
        seen.sort();
        assert_eq!(seen, [b"big".to_vec(), b"ready".to_vec()]);
        let pid = child.pid() as i32;
        guarded("the leader to exit", async {
            while proc_state(pid) != Some('Z') {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        // Polled once: reaps the leader, kills the tool, then waits for it to be reaped.
        if tokio::time::timeout(Duration::ZERO, child.wait())
            .await
            .is_err()
        {
            cancelled += 1;
        }
        let exit = guarded("wait", child.wait()).await;
        assert_eq!(exit.code, Some(3), "after {cancelled} cancelled waits");
    }
    // Otherwise this test would not have tested anything.
    assert!(
        cancelled > 0,
        "no wait was ever cancelled between the leader and its tool"
    );
}

#[tokio::test]
async fn a_100_mb_line_is_read_in_bounded_memory_and_the_buffer_shrinks_afterwards() {
    use orchestrator::runtime::process::{LINE_CAP, LONG_LINE_CAP};
    let dir = tempdir();
    let script = FakeClaude::new()
        .sh(r"head -c 100000000 /dev/zero | tr '\0' a")
        .sh("echo")
        .line("small")
        .sh("printf 'last-without-newline'");
    let (mut child, mut out, _err) = start(dir.path(), script);

    // Not JSON and over LINE_CAP: only its first LONG_LINE_CAP bytes come back.
    let huge = guarded("huge line", out.next_line()).await;
    match huge {
        Ok(Some(line)) => {
            assert_eq!(line.len(), LONG_LINE_CAP);
            assert!(line.iter().all(|&b| b == b'a'));
        }
        other => panic!(
            "expected the huge line, got {:?}",
            other.map(|o| o.map(<[u8]>::len))
        ),
    }
    assert!(out.last_line_shortened());
    assert!(out.buffer_capacity() <= 2 * LINE_CAP);
    assert_eq!(next(&mut out).await.as_deref(), Some(&b"small"[..]));
    assert!(
        out.buffer_capacity() <= 64 * 1024,
        "buffer kept {} bytes",
        out.buffer_capacity()
    );
    assert_eq!(
        next(&mut out).await.as_deref(),
        Some(&b"last-without-newline"[..])
    );
    assert_eq!(next(&mut out).await, None);
    assert_eq!(guarded("wait", child.wait()).await.code, Some(0));
}

#[tokio::test]
async fn invalid_utf8_from_a_real_child_passes_through() {
    let dir = tempdir();
    let script = FakeClaude::new().sh(r"printf '\377\376ok\303\n'");
    let (mut child, mut out, _err) = start(dir.path(), script);
    assert_eq!(
        next(&mut out).await.as_deref(),
        Some(&b"\xff\xfeok\xc3"[..])
    );
    assert_eq!(next(&mut out).await, None);
    assert_eq!(guarded("wait", child.wait()).await.code, Some(0));
}

#[tokio::test]
async fn stderr_flood_while_writing_stdout_does_not_deadlock() {
    let dir = tempdir();
    let script = FakeClaude::new()
        .sh(r"head -c 3000000 /dev/zero | tr '\0' e >&2")
        .sh(r#"i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done"#)
        .sh(r"head -c 3000000 /dev/zero | tr '\0' f >&2")
        .sh("echo >&2")
        .stderr("STDERR-END");
    let (mut child, mut out, err) = start(dir.path(), script);
    let drain = tokio::spawn(drain_to_tail(err, 8 * 1024));
    let mut count = 0;
    while let Some(line) = next(&mut out).await {
        assert_eq!(line, format!("line {count}").into_bytes());
        count += 1;
    }
    assert_eq!(count, 2000);
    assert_eq!(guarded("wait", child.wait()).await.code, Some(0));
    let tail = match guarded("stderr drain", drain).await {
        Ok(t) => t,
        Err(e) => panic!("drain task: {e}"),
    };
    assert!(tail.truncated());
    // Starts at a line boundary: the 'f' run was cut, so only whole lines remain.
    assert_eq!(tail.text(), "STDERR-END\n");
}

#[tokio::test]
async fn dropping_an_unwaited_child_still_kills_its_group() {
    let dir = tempdir();
    let (child, mut out, _err) = start(dir.path(), grandchild_then_ready());
    assert_eq!(next(&mut out).await.as_deref(), Some(&b"ready"[..]));
    drop(child);
    // The group was SIGKILLed, so the inherited stdout closes.
    assert_eq!(next(&mut out).await, None);
}

#[tokio::test]
async fn missing_program_gives_an_error_naming_it() {
    let dir = tempdir();
    let spec = LaunchSpec {
        program: dir.path().join("no-such-claude"),
        args: vec![],
        cwd: dir.path().to_path_buf(),
        env: vec![],
    };
    let err = match spawn(&spec) {
        Ok(_) => panic!("spawned a missing program"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("no-such-claude"), "{err}");
}

#[tokio::test]
async fn non_executable_program_gives_permission_denied() {
    let dir = tempdir();
    let path = dir.path().join("not-executable");
    if let Err(e) = std::fs::write(&path, "#!/bin/sh\n") {
        panic!("{e}");
    }
    let spec = LaunchSpec {
        program: path,
        args: vec![],
        cwd: dir.path().to_path_buf(),
        env: vec![],
    };
    match spawn(&spec) {
        Ok(_) => panic!("spawned a non-executable file"),
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("not-executable"), "{e}");
        }
    }
}

#[tokio::test]
async fn missing_working_directory_is_named() {
    let dir = tempdir();
    let spec = LaunchSpec {
        program: PathBuf::from("sh"),
        args: vec![],
        cwd: dir.path().join("gone"),
        env: vec![],
    };
    match spawn(&spec) {
        Ok(_) => panic!("spawned in a missing directory"),
        Err(e) => assert!(e.to_string().contains("gone"), "{e}"),
    }
}
