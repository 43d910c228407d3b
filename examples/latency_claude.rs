//! A fake `claude` for measuring budget enforcement latency (benches/latency.sh).
//!
//! It streams background stream-json (a `message_delta` with one more output token every
//! `LATENCY_LINE_MS` ms, default 20, and a 64 KB tool result every 50th line), then,
//! 0.3–2.3 s after it started, writes one `message_start` whose 2,000,000 input tokens
//! cross any per-instance cap below that. It reads CLOCK_MONOTONIC just before writing
//! that line and again in its SIGTERM handler, and appends `T_WRITE_NS T_SIGTERM_NS` to
//! the file named by `LATENCY_OUT` (T_SIGTERM_NS is 0 when no SIGTERM came within 5 s).
//! CLOCK_MONOTONIC is one clock for the whole machine, so the difference is the time from
//! the crossing line leaving this process to the orchestrator's SIGTERM arriving.
//!
//! Arguments (the `claude -p …` argv the orchestrator passes) are ignored.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static SIGTERM_AT: AtomicU64 = AtomicU64::new(0);

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into `ts`; it is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

extern "C" fn on_sigterm(_: libc::c_int) {
    let _ = SIGTERM_AT.compare_exchange(0, now_ns(), Ordering::SeqCst, Ordering::SeqCst);
}

fn install_handler() -> bool {
    // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid; the
    // handler only calls async-signal-safe code.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut()) == 0
    }
}

const SESSION: &str = "0a7e1a7e-0000-4000-8000-000000000000";

fn message_start(id: &str, input_tokens: u64) -> String {
    format!(
        "{{\"type\":\"stream_event\",\"event\":{{\"type\":\"message_start\",\"message\":{{\"id\":\"{id}\",\
         \"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\
         \"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{input_tokens},\
         \"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}}}},\
         \"session_id\":\"{SESSION}\",\"parent_tool_use_id\":null}}\n"
    )
}

fn message_delta(output_tokens: u64) -> String {
    format!(
        "{{\"type\":\"stream_event\",\"event\":{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":null,\
         \"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{output_tokens}}}}},\
         \"session_id\":\"{SESSION}\",\"parent_tool_use_id\":null}}\n"
    )
}

fn tool_result(k: u64) -> String {
    let body = "   Compiling crate v0.1.0 (/home/dev/project)\\n".repeat(64 * 1024 / 48);
    format!(
        "{{\"type\":\"user\",\"message\":{{\"role\":\"user\",\"content\":[{{\"tool_use_id\":\"toolu_{k}\",\
         \"type\":\"tool_result\",\"content\":\"{body}\",\"is_error\":false}}]}},\
         \"parent_tool_use_id\":null,\"session_id\":\"{SESSION}\"}}\n"
    )
}

fn main() {
    let Some(out_path) = std::env::var_os("LATENCY_OUT") else {
        eprintln!("latency_claude: set LATENCY_OUT to the results file");
        std::process::exit(2);
    };
    if !install_handler() {
        eprintln!("latency_claude: cannot install a SIGTERM handler");
        std::process::exit(2);
    }
    let line_every = Duration::from_millis(
        std::env::var("LATENCY_LINE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    // Spread the crossings of the instances over two seconds.
    let seed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ now_ns();
    let cross_after = Duration::from_millis(300 + (seed >> 17) % 2000);

    let mut out = std::io::stdout().lock();
    let init = format!(
        "{{\"type\":\"system\",\"subtype\":\"init\",\"cwd\":\"/\",\"session_id\":\"{SESSION}\",\
         \"tools\":[],\"model\":\"claude-sonnet-4-5\",\"permissionMode\":\"default\"}}\n"
    );
    let _ = out.write_all(init.as_bytes());
    let _ = out.write_all(message_start("msg_background", 10).as_bytes());
    let _ = out.flush();
    let start = Instant::now();
    let mut k = 1;
    while start.elapsed() < cross_after {
        k += 1;
        let _ = out.write_all(message_delta(k).as_bytes());
        if k % 50 == 0 {
            let _ = out.write_all(tool_result(k).as_bytes());
        }
        let _ = out.flush();
        std::thread::sleep(line_every);
    }
    let crossing = message_start("msg_crossing", 2_000_000);
    let t_write = now_ns();
    let _ = out.write_all(crossing.as_bytes());
    let _ = out.flush();
    let deadline = Instant::now() + Duration::from_secs(5);
    while SIGTERM_AT.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t_term = SIGTERM_AT.load(Ordering::SeqCst);
    let record = format!("{t_write} {t_term}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .and_then(|mut f| f.write_all(record.as_bytes()));
    if let Err(e) = written {
        eprintln!("latency_claude: {}: {e}", out_path.to_string_lossy());
        std::process::exit(1);
    }
}
