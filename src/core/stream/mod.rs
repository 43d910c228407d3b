//! Claude Code `stream-json` lines → typed events.
//!
//! This module owns the wire format: one stdout line in, one [`Event`] out, with no I/O
//! and no state. It extracts only what accounting and the live report need and skips the
//! rest without building it (a `user` line can carry megabytes of tool output twice over).
//!
//! How a line is read, and why:
//! - The top-level `type` is sniffed from the first bytes when the line starts with
//!   `{"type":"…"` (every Claude Code line does today); otherwise a generic pass finds it,
//!   because key order is not guaranteed.
//! - Types that carry nothing we need (`user`, unknown types, …) are only checked for JSON
//!   well-formedness with `serde_json::IgnoredAny`, which skips strings without decoding
//!   them, so a malformed line is still reported as malformed but costs one light pass.
//! - Relevant types are deserialized into borrowed structs; text we keep is truncated as it
//!   is read ([`Snippet`]) and numbers are read leniently, so an odd value in a field we
//!   do not rely on never turns a line with real usage into a "malformed" one.
//! - Invalid UTF-8 is tolerated: such a line is re-read after lossy conversion.

mod fast;
mod scan;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Longest first-text / tool-hint snippet kept from an `assistant` event, in bytes.
pub const SNIPPET_MAX: usize = 200;
/// Longest `result` text kept, in bytes.
pub const RESULT_TEXT_MAX: usize = 64 * 1024;

/// One classified stdout line.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// `system` / `init`.
    Init {
        model: Option<Cow<'a, str>>,
        session_id: Option<Cow<'a, str>>,
    },
    /// `system` / `api_retry`: Claude Code is retrying a failed API call.
    ApiRetry(ApiRetry),
    /// Any rate-limit notice (`rate_limit_event` and similar types or subtypes).
    RateLimit(RateLimit),
    /// One `assistant` event (Claude Code emits one per content block, same message id).
    Assistant(Assistant<'a>),
    /// `stream_event` / `message_start`.
    MessageStart(MessageStart<'a>),
    /// `stream_event` / `message_delta`: cumulative usage of the current message.
    MessageDelta {
        usage: RawUsage,
        parent_tool_use_id: Option<Cow<'a, str>>,
    },
    /// A `user` event carrying a finished subagent's `tool_use_result` with usage: the
    /// usage of the subagent's last API message, which never appears as an `assistant`
    /// event of its own.
    SubagentResult(SubagentResult<'a>),
    /// The `result` event that ends a session.
    Result(ResultEvent<'a>),
    /// Well-formed, but nothing in it matters to accounting or the report.
    Ignored,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiRetry {
    pub attempt: Option<u64>,
    pub max_retries: Option<u64>,
    pub error_status: Option<u64>,
    pub retry_delay_ms: Option<u64>,
    /// Claude Code's error category, e.g. `rate_limit` or `server_error`.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// `allowed`, `allowed_warning`, `rejected`, … when Claude Code says so.
    pub status: Option<String>,
    /// `rateLimitType`: `five_hour`, `seven_day`, …
    pub kind: Option<String>,
    /// `resetsAt`, Unix seconds.
    pub resets_at: Option<i64>,
}

/// Usage numbers as they appear on the wire; absent fields are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RawUsage {
    #[serde(deserialize_with = "lenient_u64")]
    pub input_tokens: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub output_tokens: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation: Option<CacheCreation>,
    pub server_tool_use: Option<ServerToolUse>,
    /// `usage.speed`: `Some(true)` for `"fast"`, `Some(false)` for any other string.
    #[serde(rename = "speed", deserialize_with = "lenient_fast")]
    pub speed_fast: Option<bool>,
}

/// Server-side tools the API ran for one message (priced per request, not per token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ServerToolUse {
    #[serde(deserialize_with = "lenient_u64")]
    pub web_search_requests: Option<u64>,
}

/// Split of `cache_creation_input_tokens` by cache lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CacheCreation {
    #[serde(deserialize_with = "lenient_u64")]
    pub ephemeral_1h_input_tokens: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub ephemeral_5m_input_tokens: Option<u64>,
}

impl RawUsage {
    /// Tokens written to the 1-hour cache (a subset of `cache_creation_input_tokens`).
    pub fn cache_write_1h(&self) -> u64 {
        self.cache_creation
            .and_then(|c| c.ephemeral_1h_input_tokens)
            .unwrap_or(0)
    }

    /// `server_tool_use.web_search_requests`, 0 when absent.
    pub fn web_search_requests(&self) -> u64 {
        self.server_tool_use
            .and_then(|s| s.web_search_requests)
            .unwrap_or(0)
    }

    /// `usage.speed == "fast"`.
    pub fn is_fast(&self) -> bool {
        self.speed_fast == Some(true)
    }
}

/// A finished subagent, from the Task tool's `user` event.
#[derive(Debug, Clone, PartialEq)]
pub struct SubagentResult<'a> {
    /// `tool_use_result.agentId`, else the line's `uuid`: what makes a replay recognisable.
    pub key: Option<Cow<'a, str>>,
    /// `tool_use_result.resolvedModel`: the model the subagent ran on.
    pub model: Option<Cow<'a, str>>,
    pub usage: RawUsage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolUse<'a> {
    pub id: Option<Cow<'a, str>>,
    pub name: Cow<'a, str>,
    /// Short one-line hint of the input: the Bash command, the file path, the pattern, …
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assistant<'a> {
    pub id: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    pub usage: Option<RawUsage>,
    pub parent_tool_use_id: Option<Cow<'a, str>>,
    pub tool_uses: Vec<ToolUse<'a>>,
    /// The first text block, truncated to [`SNIPPET_MAX`].
    pub text: Option<String>,
    /// The line's `error` (`rate_limit`, …) when Claude Code reports a failed call.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageStart<'a> {
    pub id: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    pub usage: Option<RawUsage>,
    pub parent_tool_use_id: Option<Cow<'a, str>>,
}

/// Per-model totals from `result.modelUsage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ModelUsage {
    #[serde(deserialize_with = "lenient_u64")]
    pub input_tokens: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub output_tokens: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(rename = "costUSD", deserialize_with = "lenient_f64")]
    pub cost_usd: Option<f64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub web_search_requests: Option<u64>,
}

/// `usage()`, the four token counts as a `Usage` (an absent one as 0), written once for
/// the wire structs that carry them under the same names.
macro_rules! impl_usage {
    ($($wire:ty),+) => {$(
        impl $wire {
            pub fn usage(&self) -> crate::core::usage::Usage {
                crate::core::usage::Usage::new(
                    self.input_tokens.unwrap_or(0),
                    self.output_tokens.unwrap_or(0),
                    self.cache_creation_input_tokens.unwrap_or(0),
                    self.cache_read_input_tokens.unwrap_or(0),
                )
            }
        }
    )+};
}
impl_usage!(RawUsage, ModelUsage);

#[derive(Debug, Clone, PartialEq)]
pub struct ResultEvent<'a> {
    pub subtype: Option<Cow<'a, str>>,
    pub is_error: Option<bool>,
    /// The final text, truncated to [`RESULT_TEXT_MAX`] bytes.
    pub result: Option<String>,
    pub total_cost_usd: Option<f64>,
    /// `None` when the field is absent; model name → totals otherwise.
    pub model_usage: Option<BTreeMap<Cow<'a, str>, ModelUsage>>,
    pub usage: Option<RawUsage>,
    pub num_turns: Option<u64>,
    pub session_id: Option<Cow<'a, str>>,
}

/// Why a line could not be read. The line is to be counted and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    message: String,
}

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        ParseError::new(format!("malformed stream-json line: {e}"))
    }
}

/// Reads one line (without its newline). Blank lines are [`Event::Ignored`].
///
/// Lines with invalid UTF-8 are handled by [`parse_into`], which can own a repaired copy;
/// this function reports them as errors when a string it decodes is not valid UTF-8.
#[inline]
pub fn parse(line: &[u8]) -> Result<Event<'_>, ParseError> {
    // The skimmer answers almost every line; what it is unsure of (and every malformed
    // line, for its error message) goes through serde_json, the reference.
    let mut event = Event::Ignored;
    match fast::parse(line, &mut event) {
        Ok(()) => Ok(event),
        Err(scan::Bail) => parse_reference(line),
    }
}

/// [`parse`] by serde_json alone: the reference the fast path must agree with.
fn parse_reference(line: &[u8]) -> Result<Event<'_>, ParseError> {
    let ty = match top_level_type(line)? {
        Some(ty) => ty,
        None => return Ok(Event::Ignored),
    };
    let mut kind = Kind::of(&ty);
    if kind == Kind::StreamEvent
        && !matches!(
            inner_event_type(line),
            None | Some("message_start" | "message_delta")
        )
    {
        // Most stream events are content-block frames: check and skip them wholesale.
        kind = Kind::Other;
    }
    if kind == Kind::User && memchr::memmem::find(line, b"\"tool_use_result\"").is_none() {
        // Most user lines are tool results without usage: skip them like unknown types.
        kind = Kind::Other;
    }
    if kind == Kind::Other {
        serde_json::from_slice::<IgnoredAny>(line)?;
        return Ok(Event::Ignored);
    }
    let text = std::str::from_utf8(line)
        .map_err(|e| ParseError::new(format!("invalid UTF-8 in stream-json line: {e}")))?;
    parse_kind(kind, text)
}

/// Like [`parse`], but repairs invalid UTF-8 (as U+FFFD) into `scratch` and reads that, so
/// a stray byte inside some text never loses the usage on the same line.
///
/// The event goes into `out`, which the caller owns and which is written only on
/// success. Events are a few hundred bytes: handing them back through each layer's
/// `Result` cost copies that stalled on the stores just made (10–15% of the time on
/// short lines).
#[inline]
pub fn parse_into<'a>(
    line: &'a [u8],
    scratch: &'a mut String,
    out: &mut Event<'a>,
) -> Result<(), ParseError> {
    if fast::parse(line, out).is_ok() {
        return Ok(());
    }
    // UTF-8 is checked only where it matters: the fast path checks the strings it
    // decodes, and only a line that failed is scanned again to see whether repairing it
    // helps.
    *out = match parse_reference(line) {
        Err(_) if std::str::from_utf8(line).is_err() => {
            *scratch = String::from_utf8_lossy(line).into_owned();
            let repaired: &'a String = scratch;
            parse(repaired.as_bytes())?
        }
        r => r?,
    };
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    System,
    Assistant,
    StreamEvent,
    Result,
    RateLimit,
    User,
    Other,
}

impl Kind {
    fn of(ty: &str) -> Kind {
        match ty {
            "system" => Kind::System,
            "assistant" => Kind::Assistant,
            "stream_event" => Kind::StreamEvent,
            "result" => Kind::Result,
            "user" => Kind::User,
            t if t.contains("rate_limit") => Kind::RateLimit,
            _ => Kind::Other,
        }
    }
}

/// Finds the top-level `type`; `Ok(None)` for a blank line, `""` when there is none.
fn top_level_type(line: &[u8]) -> Result<Option<Cow<'_, str>>, ParseError> {
    let Some(start) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(None);
    };
    if let Some(ty) = sniff_type(&line[start..]) {
        return Ok(Some(Cow::Borrowed(ty)));
    }
    #[derive(Deserialize)]
    struct TypeOnly<'a> {
        #[serde(rename = "type", borrow, default)]
        ty: Option<BStr<'a>>,
    }
    let t: TypeOnly<'_> = serde_json::from_slice(line)?;
    Ok(Some(t.ty.map(|b| b.0).unwrap_or(Cow::Borrowed(""))))
}

/// `{"type":"name"` at the very start, the shape Claude Code writes. Anything else
/// (other key first, escapes in the name) returns `None` and takes the generic path.
fn sniff_type(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(b"{")?;
    let rest = skip_ws(rest).strip_prefix(b"\"type\"")?;
    let rest = skip_ws(rest).strip_prefix(b":")?;
    let rest = skip_ws(rest).strip_prefix(b"\"")?;
    match scan::skip_str(rest, 0) {
        Ok((end, false)) => utf8(&rest[..end - 1]),
        _ => None,
    }
}

/// `b` as text. Ids, types and model names are ASCII, which needs no more than a look at
/// the high bits; anything else gets the full UTF-8 check.
#[inline]
fn utf8(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

/// For `{"type":"stream_event","event":{"type":"name"`, the inner name; `None` when the
/// line is shaped any other way (the full parse then decides).
fn inner_event_type(line: &[u8]) -> Option<&str> {
    let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = line[start..].strip_prefix(b"{\"type\":\"stream_event\"")?;
    let rest = skip_ws(rest).strip_prefix(b",")?;
    let rest = skip_ws(rest).strip_prefix(b"\"event\"")?;
    let rest = skip_ws(rest).strip_prefix(b":")?;
    let rest = skip_ws(rest);
    sniff_type(rest)
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(s.len());
    &s[n..]
}

fn parse_kind(kind: Kind, text: &str) -> Result<Event<'_>, ParseError> {
    Ok(match kind {
        Kind::System => system_event(serde_json::from_str(text)?),
        Kind::RateLimit => {
            let r: RateLimitLine = serde_json::from_str(text)?;
            Event::RateLimit(rate_limit(r.rate_limit_info.unwrap_or_default(), r.status))
        }
        Kind::Assistant => assistant_event(serde_json::from_str(text)?),
        Kind::StreamEvent => stream_event(serde_json::from_str(text)?),
        Kind::Result => result_event(serde_json::from_str(text)?),
        Kind::User => {
            let u: UserLine<'_> = serde_json::from_str(text)?;
            user_event(u.uuid, u.tool_use_result.map(|r| r.get().as_bytes()))
        }
        Kind::Other => Event::Ignored,
    })
}

// ---- wire structs → events: shared by the serde path and the fast path ----

#[inline]
fn system_event(s: SystemLine<'_>) -> Event<'_> {
    let subtype = s.subtype.as_ref().map(|b| b.0.as_ref()).unwrap_or("");
    match subtype {
        "init" => Event::Init {
            model: s.model.map(|b| b.0),
            session_id: s.session_id.map(|b| b.0),
        },
        "api_retry" => Event::ApiRetry(ApiRetry {
            attempt: s.attempt,
            max_retries: s.max_retries,
            error_status: s.error_status,
            retry_delay_ms: s.retry_delay_ms,
            error: s.error.and_then(|e| e.0),
        }),
        t if t.contains("rate_limit") => {
            Event::RateLimit(rate_limit(s.rate_limit_info.unwrap_or_default(), s.status))
        }
        _ => Event::Ignored,
    }
}

#[inline]
fn assistant_event(a: AssistantLine<'_>) -> Event<'_> {
    let m = a.message.unwrap_or_default();
    let Blocks { text, tool_uses } = m.content.unwrap_or_default();
    Event::Assistant(Assistant {
        id: m.id.map(|b| b.0),
        model: m.model.map(|b| b.0),
        usage: m.usage,
        parent_tool_use_id: a.parent_tool_use_id.map(|b| b.0),
        tool_uses,
        text,
        error: a.error.and_then(|e| e.0),
    })
}

#[inline]
fn stream_event(s: StreamLine<'_>) -> Event<'_> {
    let parent = s.parent_tool_use_id.map(|b| b.0);
    let Some(ev) = s.event else {
        return Event::Ignored;
    };
    match ev.ty.as_ref().map(|t| t.0.as_ref()) {
        Some("message_start") => {
            let m = ev.message.unwrap_or_default();
            Event::MessageStart(MessageStart {
                id: m.id.map(|b| b.0),
                model: m.model.map(|b| b.0),
                usage: m.usage,
                parent_tool_use_id: parent,
            })
        }
        Some("message_delta") => match ev.usage {
            Some(usage) => Event::MessageDelta {
                usage,
                parent_tool_use_id: parent,
            },
            None => Event::Ignored,
        },
        _ => Event::Ignored,
    }
}

#[inline]
fn result_event(r: ResultLine<'_>) -> Event<'_> {
    Event::Result(ResultEvent {
        subtype: r.subtype.map(|b| b.0),
        is_error: r.is_error,
        result: r.result.and_then(|t| t.0),
        total_cost_usd: r.total_cost_usd,
        model_usage: r
            .model_usage
            .map(|m| m.into_iter().map(|(k, v)| (k.0, v)).collect()),
        usage: r.usage,
        num_turns: r.num_turns,
        session_id: r.session_id.map(|b| b.0),
    })
}

/// A `user` line's `uuid` and raw `tool_use_result`, when it has one.
#[inline]
fn user_event<'a>(uuid: Option<BStr<'a>>, tool_use_result: Option<&'a [u8]>) -> Event<'a> {
    let Some(body) = tool_use_result else {
        return Event::Ignored;
    };
    // Only a Task/Agent result is an object with `usage`; other tools' results
    // (file contents, command output, plain strings) are not read any further.
    if !body.starts_with(b"{") || memchr::memmem::find(body, b"\"usage\"").is_none() {
        return Event::Ignored;
    }
    let Ok(t) = serde_json::from_slice::<TaskResult<'_>>(body) else {
        return Event::Ignored;
    };
    match t.usage {
        Some(usage) => Event::SubagentResult(SubagentResult {
            key: t.agent_id.map(|b| b.0).or(uuid.map(|b| b.0)),
            model: t.resolved_model.map(|b| b.0),
            usage,
        }),
        None => Event::Ignored,
    }
}

fn rate_limit(info: RateLimitInfo, top_status: Option<Snippet<SNIPPET_MAX>>) -> RateLimit {
    RateLimit {
        status: info
            .status
            .and_then(|s| s.0)
            .or(top_status.and_then(|s| s.0)),
        kind: info.limit_type.and_then(|t| t.0),
        resets_at: info.resets_at.and_then(|s| i64::try_from(s).ok()),
    }
}

/// The part of a tool's input that says what it is doing, on one line.
fn tool_hint(input_json: &str) -> Option<String> {
    serde_json::from_str::<ToolInput>(input_json).ok()?.hint()
}

/// The fields of a tool's input that can say what it does, in order of preference.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolInput {
    command: Option<Snippet<SNIPPET_MAX>>,
    file_path: Option<Snippet<SNIPPET_MAX>>,
    notebook_path: Option<Snippet<SNIPPET_MAX>>,
    path: Option<Snippet<SNIPPET_MAX>>,
    pattern: Option<Snippet<SNIPPET_MAX>>,
    url: Option<Snippet<SNIPPET_MAX>>,
    query: Option<Snippet<SNIPPET_MAX>>,
    skill: Option<Snippet<SNIPPET_MAX>>,
    description: Option<Snippet<SNIPPET_MAX>>,
    prompt: Option<Snippet<SNIPPET_MAX>>,
}

impl ToolInput {
    fn hint(self) -> Option<String> {
        let raw = [
            self.command,
            self.file_path,
            self.notebook_path,
            self.path,
            self.pattern,
            self.url,
            self.query,
            self.skill,
            self.description,
            self.prompt,
        ]
        .into_iter()
        .flatten()
        .find_map(|s| s.0.filter(|t| !t.trim().is_empty()))?;
        Some(one_line(raw))
    }
}

/// `s` with each run of whitespace made one space and none at either end (what
/// `split_whitespace` and `join(" ")` give), reusing `s` when it is already so.
fn one_line(s: String) -> String {
    let mut prev_space = true;
    let tidy = s.chars().all(|c| {
        let ok = if c.is_whitespace() {
            c == ' ' && !prev_space
        } else {
            true
        };
        prev_space = c.is_whitespace();
        ok
    }) && !prev_space;
    if tidy {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

// ---- wire structs (private): only the fields we read; everything else is skipped ----

#[derive(Deserialize, Default)]
struct SystemLine<'a> {
    #[serde(borrow, default)]
    subtype: Option<BStr<'a>>,
    #[serde(borrow, default)]
    model: Option<BStr<'a>>,
    #[serde(borrow, default)]
    session_id: Option<BStr<'a>>,
    #[serde(default, deserialize_with = "lenient_u64")]
    attempt: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    max_retries: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    retry_delay_ms: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    error_status: Option<u64>,
    #[serde(default)]
    error: Option<Snippet<SNIPPET_MAX>>,
    #[serde(default)]
    status: Option<Snippet<SNIPPET_MAX>>,
    #[serde(default)]
    rate_limit_info: Option<RateLimitInfo>,
}

#[derive(Deserialize)]
struct RateLimitLine {
    #[serde(default)]
    status: Option<Snippet<SNIPPET_MAX>>,
    #[serde(default)]
    rate_limit_info: Option<RateLimitInfo>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RateLimitInfo {
    status: Option<Snippet<SNIPPET_MAX>>,
    #[serde(rename = "rateLimitType")]
    limit_type: Option<Snippet<SNIPPET_MAX>>,
    #[serde(rename = "resetsAt", deserialize_with = "lenient_u64")]
    resets_at: Option<u64>,
}

#[derive(Deserialize, Default)]
struct AssistantLine<'a> {
    #[serde(borrow, default)]
    message: Option<AssistantMsg<'a>>,
    #[serde(default)]
    error: Option<Snippet<SNIPPET_MAX>>,
    #[serde(borrow, default)]
    parent_tool_use_id: Option<BStr<'a>>,
}

#[derive(Deserialize, Default)]
struct AssistantMsg<'a> {
    #[serde(borrow, default)]
    id: Option<BStr<'a>>,
    #[serde(borrow, default)]
    model: Option<BStr<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(borrow, default)]
    content: Option<Blocks<'a>>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<BStr<'a>>,
    #[serde(borrow, default)]
    id: Option<BStr<'a>>,
    #[serde(borrow, default)]
    name: Option<BStr<'a>>,
    #[serde(default)]
    text: Option<Snippet<SNIPPET_MAX>>,
    #[serde(borrow, default)]
    input: Option<BlockInput<'a>>,
}

/// A tool call's `input`: raw JSON from serde_json, or the hint the fast path already
/// read from it in the same pass.
enum BlockInput<'a> {
    Raw(&'a serde_json::value::RawValue),
    Hint(Option<String>),
}

impl BlockInput<'_> {
    fn hint(self) -> Option<String> {
        match self {
            BlockInput::Raw(raw) => tool_hint(raw.get()),
            BlockInput::Hint(h) => h,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for BlockInput<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a serde_json::value::RawValue>::deserialize(d).map(BlockInput::Raw)
    }
}

#[derive(Deserialize, Default)]
struct StreamLine<'a> {
    #[serde(borrow, default)]
    event: Option<StreamInner<'a>>,
    #[serde(borrow, default)]
    parent_tool_use_id: Option<BStr<'a>>,
}

#[derive(Deserialize, Default)]
struct StreamInner<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<BStr<'a>>,
    #[serde(borrow, default)]
    message: Option<StartMsg<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize, Default)]
struct StartMsg<'a> {
    #[serde(borrow, default)]
    id: Option<BStr<'a>>,
    #[serde(borrow, default)]
    model: Option<BStr<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct UserLine<'a> {
    #[serde(borrow, default)]
    tool_use_result: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    uuid: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct TaskResult<'a> {
    #[serde(rename = "agentId", borrow, default)]
    agent_id: Option<BStr<'a>>,
    #[serde(rename = "resolvedModel", borrow, default)]
    resolved_model: Option<BStr<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize, Default)]
struct ResultLine<'a> {
    #[serde(borrow, default)]
    subtype: Option<BStr<'a>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    is_error: Option<bool>,
    #[serde(default)]
    result: Option<Snippet<RESULT_TEXT_MAX>>,
    #[serde(default, deserialize_with = "lenient_f64")]
    total_cost_usd: Option<f64>,
    #[serde(rename = "modelUsage", borrow, default)]
    model_usage: Option<BTreeMap<BStr<'a>, ModelUsage>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default, deserialize_with = "lenient_u64")]
    num_turns: Option<u64>,
    #[serde(borrow, default)]
    session_id: Option<BStr<'a>>,
}

/// A string borrowed from the line when it has no escapes, owned otherwise. (serde's own
/// `Option<Cow<str>>` always copies.)
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Text kept only up to `N` bytes (cut on a char boundary). Any non-string value reads as
/// `None` instead of failing the line: these fields are for display only.
struct Snippet<const N: usize>(Option<String>);

impl<'de, const N: usize> Deserialize<'de> for Snippet<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = Snippet<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Snippet(Some(truncate(v, N).to_owned())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Snippet(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Snippet(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Snippet(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Snippet(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Snippet(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Snippet(None))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Snippet(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Snippet(None))
            }
        }
        d.deserialize_any(V::<N>)
    }
}

/// Longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub use crate::core::text::prefix_bytes as truncate;

/// Content blocks as the event keeps them, folded in as they are read (no list of
/// blocks is built): the first text and the tool calls. A non-array `content` (a plain
/// string, say) holds none.
#[derive(Default)]
struct Blocks<'a> {
    text: Option<String>,
    tool_uses: Vec<ToolUse<'a>>,
}

impl<'a> Blocks<'a> {
    fn add(&mut self, b: Block<'a>) {
        match b.ty.as_ref().map(|t| t.0.as_ref()) {
            Some("text") if self.text.is_none() => self.text = b.text.and_then(|t| t.0),
            Some("tool_use") | Some("server_tool_use") => self.tool_uses.push(ToolUse {
                id: b.id.map(|i| i.0),
                name: b.name.map(|n| n.0).unwrap_or(Cow::Borrowed("?")),
                hint: b.input.and_then(BlockInput::hint),
            }),
            _ => {}
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Blocks<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Blocks<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("content blocks")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Blocks::default();
                while let Some(b) = a.next_element::<Block<'a>>()? {
                    blocks.add(b);
                }
                Ok(blocks)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Blocks::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Blocks::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Blocks::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Blocks::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Blocks::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Blocks::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Blocks::default())
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A JSON number read as a token count: non-negative integers (or integral-valued
/// floats); `null`, negatives and other types read as absent rather than failing the line.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(d.deserialize_any(Lenient)?.and_then(|n| match n {
        Num::U(u) => Some(u),
        Num::I(i) => u64::try_from(i).ok(),
        Num::F(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Some(f as u64),
        Num::F(_) => None,
    }))
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(d.deserialize_any(Lenient)?.map(|n| match n {
        Num::U(u) => u as f64,
        Num::I(i) => i as f64,
        Num::F(f) => f,
    }))
}

/// `"fast"` → `Some(true)`, any other string → `Some(false)`, anything else → `None`.
fn lenient_fast<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Snippet::<16>::deserialize(d)?.0.map(|s| s == "fast"))
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

enum Num {
    U(u64),
    I(i64),
    F(f64),
}

struct Lenient;

impl<'de> Visitor<'de> for Lenient {
    type Value = Option<Num>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Num::U(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Num::I(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Num::F(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.trim().parse::<u64>().ok().map(Num::U))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Event<'_> {
        parse(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn init_gives_model_and_session() {
        let e = ok(
            r#"{"type":"system","subtype":"init","cwd":"/x","session_id":"s1","tools":["Bash"],"model":"claude-opus-4-8[1m]"}"#,
        );
        assert_eq!(
            e,
            Event::Init {
                model: Some("claude-opus-4-8[1m]".into()),
                session_id: Some("s1".into())
            }
        );
    }

    #[test]
    fn api_retry_fields_are_optional() {
        let e = ok(
            r#"{"type":"system","subtype":"api_retry","attempt":3,"max_retries":10,"retry_delay_ms":2000,"error_status":null,"error":"server_error"}"#,
        );
        let Event::ApiRetry(r) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (r.attempt, r.max_retries, r.error_status, r.retry_delay_ms),
            (Some(3), Some(10), None, Some(2000))
        );
        assert_eq!(r.error.as_deref(), Some("server_error"));
        assert!(matches!(
            ok(r#"{"type":"system","subtype":"api_retry"}"#),
            Event::ApiRetry(_)
        ));
    }

    #[test]
    fn assistant_gives_usage_tools_and_text() {
        let e = ok(
            r#"{"type":"assistant","message":{"id":"msg_1","model":"claude-opus-4-8","content":[{"type":"text","text":"Let me \"check\"."},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"description":"list","command":"ls -la\n  /tmp"}}],"usage":{"input_tokens":10,"output_tokens":2,"cache_creation_input_tokens":5,"cache_read_input_tokens":7,"cache_creation":{"ephemeral_1h_input_tokens":3,"ephemeral_5m_input_tokens":2}}},"parent_tool_use_id":"toolu_0"}"#,
        );
        let Event::Assistant(a) = e else {
            panic!("{e:?}")
        };
        assert_eq!(a.id.as_deref(), Some("msg_1"));
        assert!(
            matches!(a.id, Some(Cow::Borrowed(_))),
            "ids borrow from the line"
        );
        assert_eq!(a.parent_tool_use_id.as_deref(), Some("toolu_0"));
        assert_eq!(a.text.as_deref(), Some("Let me \"check\"."));
        assert_eq!(a.tool_uses.len(), 1);
        assert_eq!(a.tool_uses[0].name, "Bash");
        assert_eq!(a.tool_uses[0].hint.as_deref(), Some("ls -la /tmp"));
        let u = a.usage.expect("usage");
        assert_eq!(u.usage().total(), 24);
        assert_eq!(u.cache_write_1h(), 3);
    }

    #[test]
    fn stream_events_message_start_and_delta() {
        let e = ok(
            r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"m","model":"x","usage":{"input_tokens":4,"output_tokens":1}}},"parent_tool_use_id":null}"#,
        );
        let Event::MessageStart(m) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (m.id.as_deref(), m.model.as_deref()),
            (Some("m"), Some("x"))
        );
        assert_eq!(m.parent_tool_use_id, None);
        let e = ok(
            r#"{"parent_tool_use_id":"toolu_9","event":{"usage":{"output_tokens":77,"cache_read_input_tokens":null},"delta":{"stop_reason":"end_turn"},"type":"message_delta"},"type":"stream_event"}"#,
        );
        let Event::MessageDelta {
            usage,
            parent_tool_use_id,
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(usage.output_tokens, Some(77));
        assert_eq!(usage.cache_read_input_tokens, None);
        assert_eq!(parent_tool_use_id.as_deref(), Some("toolu_9"));
        assert_eq!(
            ok(
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}}"#
            ),
            Event::Ignored
        );
    }

    #[test]
    fn result_gives_model_usage_and_cost() {
        let e = ok(
            r#"{"type":"result","subtype":"success","is_error":false,"num_turns":3,"result":"ok","session_id":"s","total_cost_usd":0.07125000000000001,"usage":{"input_tokens":1},"modelUsage":{"claude-opus-4-8[1m]":{"inputTokens":7500,"outputTokens":1260,"cacheReadInputTokens":4500,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.07125,"contextWindow":1000000}}}"#,
        );
        let Event::Result(r) = e else { panic!("{e:?}") };
        assert_eq!(r.subtype.as_deref(), Some("success"));
        assert_eq!((r.is_error, r.num_turns), (Some(false), Some(3)));
        assert_eq!(r.total_cost_usd, Some(0.07125000000000001));
        let mu = r.model_usage.expect("modelUsage");
        assert_eq!(mu["claude-opus-4-8[1m]"].usage().total(), 13260);
        assert_eq!(mu["claude-opus-4-8[1m]"].cost_usd, Some(0.07125));
    }

    #[test]
    fn rate_limit_events_keep_their_fields() {
        let e = ok(
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","rateLimitType":"seven_day","resetsAt":1800000000},"uuid":"u"}"#,
        );
        let Event::RateLimit(r) = e else {
            panic!("{e:?}")
        };
        assert_eq!(r.status.as_deref(), Some("allowed_warning"));
        assert_eq!(r.kind.as_deref(), Some("seven_day"));
        assert_eq!(r.resets_at, Some(1_800_000_000));
        let Event::RateLimit(r) =
            ok(r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}"#)
        else {
            panic!()
        };
        assert_eq!(r.status.as_deref(), Some("allowed"));
        assert_eq!(r.resets_at, None);
    }

    #[test]
    fn an_assistant_error_is_kept() {
        let e = ok(
            r#"{"type":"assistant","message":{"id":"x","model":"<synthetic>","content":[{"type":"text","text":"You've hit your session limit · resets 4:20am (Europe/Warsaw)"}]},"error":"rate_limit"}"#,
        );
        let Event::Assistant(a) = e else {
            panic!("{e:?}")
        };
        assert_eq!(a.error.as_deref(), Some("rate_limit"));
        assert!(a
            .text
            .as_deref()
            .is_some_and(|t| t.starts_with("You've hit")));
    }

    #[test]
    fn type_need_not_come_first() {
        let e =
            ok(r#"  {"message":{"id":"m\u0031","usage":{"input_tokens":1}},"type":"assistant"}"#);
        let Event::Assistant(a) = e else {
            panic!("{e:?}")
        };
        assert_eq!(a.id.as_deref(), Some("m1"), "escaped ids are decoded");
    }

    #[test]
    fn user_lines_and_unknown_types_are_ignored_but_checked() {
        let big = "x".repeat(1 << 20);
        let line = format!(
            r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","content":"{big}"}}]}}}}"#
        );
        assert_eq!(ok(&line), Event::Ignored);
        assert!(
            parse(&line.as_bytes()[..line.len() - 3]).is_err(),
            "truncated"
        );
        assert_eq!(
            ok(r#"{"type":"brand_new","x":[1,2,{"y":null}]}"#),
            Event::Ignored
        );
        assert_eq!(ok(""), Event::Ignored);
        assert_eq!(ok("   \r"), Event::Ignored);
        assert!(parse(b"[1,2]").is_err());
        assert!(parse(b"\"type\"").is_err());
        assert!(parse(b"{\"type\":\"assistant\"").is_err());
    }

    #[test]
    fn invalid_utf8_is_repaired_only_where_needed() {
        let mut line = br#"{"type":"user","message":{"content":"ab"}}"#.to_vec();
        let at = line.windows(2).position(|w| w == b"ab").expect("ab");
        line[at] = 0xff;
        assert_eq!(
            parse(&line),
            Ok(Event::Ignored),
            "ignored lines need no repair"
        );

        let mut line = br#"{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"ab"}],"usage":{"input_tokens":9}}}"#.to_vec();
        let at = line.windows(2).position(|w| w == b"ab").expect("ab");
        line[at] = 0xc3; // a lone UTF-8 lead byte
        assert!(parse(&line).is_err());
        let (mut scratch, mut event) = (String::new(), Event::Ignored);
        assert_eq!(parse_into(&line, &mut scratch, &mut event), Ok(()));
        let Event::Assistant(a) = event else { panic!() };
        assert_eq!(a.text.as_deref(), Some("\u{fffd}b"));
        assert_eq!(a.usage.map(|u| u.usage().total()), Some(9));
    }

    #[test]
    fn odd_values_in_unused_fields_do_not_fail_the_line() {
        let e = ok(
            r#"{"type":"assistant","message":{"id":"m","content":"plain","usage":{"input_tokens":"12","output_tokens":-3,"cache_read_input_tokens":2.0,"server_tool_use":{"web_search_requests":0}}}}"#,
        );
        let Event::Assistant(a) = e else {
            panic!("{e:?}")
        };
        let u = a.usage.expect("usage").usage();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_input_tokens),
            (12, 0, 2)
        );
    }

    #[test]
    fn hints_are_one_line() {
        for s in [
            "ls -la",
            " ls",
            "ls ",
            "ls  -la",
            "ls\t-la",
            "a\n\n b \u{a0}c",
            "x",
            "é  ü",
        ] {
            let want = s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(one_line(s.to_string()), want, "{s:?}");
        }
    }

    #[test]
    fn snippets_are_truncated_on_char_boundaries() {
        let text = "é".repeat(SNIPPET_MAX);
        let line = format!(
            r#"{{"type":"assistant","message":{{"id":"m","content":[{{"type":"text","text":"{text}"}}]}}}}"#
        );
        let Event::Assistant(a) = ok(&line) else {
            panic!()
        };
        let t = a.text.expect("text");
        assert!(t.len() <= SNIPPET_MAX && t.chars().all(|c| c == 'é'));
    }
}
