//! The inputs of benches/stream_parse.rs, shared with examples/observe_lines.rs (which
//! counts instructions on them): the real transcripts, and synthetic sessions with
//! multi-MB tool results, `"type"` first or last.

use serde_json::json;
use std::path::Path;

pub fn fixture_lines() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut lines = Vec::new();
    for name in [
        "single-turn-cache.jsonl",
        "multi-turn-tools.jsonl",
        "multi-turn-partial.jsonl",
        "killed-midway.jsonl",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        lines.extend(jsonl_lines(&bytes));
    }
    lines
}

/// The non-empty lines of `bytes`, without their newlines.
pub fn jsonl_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Build-log-like text: printable ASCII with newlines, tabs and quotes to escape.
fn tool_output(bytes: usize, seed: usize) -> String {
    let mut s = String::with_capacity(bytes + 100);
    let mut i = seed;
    while s.len() < bytes {
        i += 1;
        s.push_str(&format!(
            "   Compiling crate-{i} v0.{}.{} (/home/dev/project/crates/c{i})\twarning: \"unused\" x{}\n",
            i % 13,
            i % 7,
            i % 100
        ));
    }
    s
}

/// A line with `"type"` first, as Claude Code writes it (`json!` sorts keys).
fn typed(ty: &str, rest: serde_json::Value) -> String {
    let rest = rest.to_string();
    format!("{{\"type\":\"{ty}\",{}", &rest[1..])
}

pub fn synthetic_lines(turns: usize, result_bytes: usize) -> Vec<Vec<u8>> {
    let mut lines = vec![typed(
        "system",
        json!({"subtype": "init", "session_id": "s",
        "model": "claude-opus-4-8[1m]", "tools": ["Bash", "Read", "Write"]}),
    )];
    for t in 0..turns {
        let id = format!("msg_{t:08}");
        let tool_id = format!("toolu_{t:08}");
        let usage = json!({"input_tokens": 1500, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 30000, "output_tokens": 1});
        lines.push(typed(
            "stream_event",
            json!({"event": {"type": "message_start",
            "message": {"id": id, "model": "claude-opus-4-8", "content": [], "usage": usage}},
            "parent_tool_use_id": null, "session_id": "s"}),
        ));
        lines.push(typed(
            "assistant",
            json!({"message": {"id": id, "model": "claude-opus-4-8",
            "content": [{"type": "text", "text": "Running the tests now."}], "usage": usage},
            "parent_tool_use_id": null, "session_id": "s"}),
        ));
        let input = if t % 3 == 2 {
            json!({"file_path": "/home/dev/project/src/big.rs", "content": tool_output(1 << 20, t)})
        } else {
            json!({"command": "cargo test --workspace", "description": "run tests"})
        };
        let name = if t % 3 == 2 { "Write" } else { "Bash" };
        lines.push(typed(
            "assistant",
            json!({"message": {"id": id, "model": "claude-opus-4-8",
            "content": [{"type": "tool_use", "id": tool_id, "name": name, "input": input}],
            "usage": usage}, "parent_tool_use_id": null, "session_id": "s"}),
        ));
        lines.push(typed(
            "stream_event",
            json!({"event": {"type": "message_delta",
            "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 350}},
            "parent_tool_use_id": null, "session_id": "s"}),
        ));
        let out = tool_output(result_bytes / 2, t);
        lines.push(typed(
            "user",
            json!({"message": {"role": "user", "content": [
            {"tool_use_id": tool_id, "type": "tool_result", "content": out, "is_error": false}]},
            "parent_tool_use_id": null, "session_id": "s",
            "tool_use_result": {"stdout": out, "stderr": "", "interrupted": false}}),
        ));
    }
    lines.push(typed(
        "result",
        json!({"subtype": "success", "is_error": false,
        "num_turns": turns, "result": "done", "session_id": "s", "total_cost_usd": 1.25,
        "modelUsage": {"claude-opus-4-8[1m]": {"inputTokens": 1500 * turns,
            "outputTokens": 350 * turns, "cacheReadInputTokens": 30000 * turns,
            "cacheCreationInputTokens": 0, "costUSD": 1.25}}}),
    ));
    lines.into_iter().map(String::into_bytes).collect()
}

/// Moves `"type":"…",` from the front of each line to the back.
pub fn type_last(lines: &[Vec<u8>]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .filter_map(|l| {
            let s = std::str::from_utf8(l).ok()?;
            let rest = s.strip_prefix("{\"type\":\"")?;
            let end = rest.find('"')?;
            let ty = &rest[..end];
            let body = rest[end + 1..].strip_prefix(',')?;
            let body = body.strip_suffix('}')?;
            Some(format!("{{{body},\"type\":\"{ty}\"}}").into_bytes())
        })
        .collect()
}
