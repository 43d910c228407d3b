//! The fast path of [`super::parse`]: one validating pass over the line with the
//! [`scan`] skimmer, reading only the fields the wire structs have and building the
//! same wire structs serde_json would, so the conversion to events is shared.
//!
//! Lines that carry no usage (tool results, content-block frames, unknown types) are only
//! validated. Strings are borrowed from the line when they have no escapes; a value in
//! an unusual shape (an escape in a key, a number that is not a plain integer, a string
//! with escapes) is handed to serde_json on its own span, with the field's own
//! deserializer, so it reads exactly as it would inside the whole line. Anything else —
//! a duplicate field, a type serde would reject, invalid UTF-8 in a string we decode, a
//! malformed line — returns [`Bail`], and the caller asks serde_json about the whole
//! line. The fast path therefore never decides anything serde_json would decide
//! differently; it only decides it sooner.

use super::scan::{self, array, object, skip_value, ws, Bail, Scan};
use super::*;
use serde_json::de::StrRead;

type Reader<'a> = serde_json::Deserializer<StrRead<'a>>;

/// Reads `line` into `out`, which is written only when the answer is `Ok`.
#[inline]
pub(super) fn parse<'a>(line: &'a [u8], out: &mut Event<'a>) -> Scan<()> {
    let start = ws(line, 0);
    if start == line.len() {
        *out = Event::Ignored;
        return Ok(());
    }
    let (kind, validated) = match sniff_type(&line[start..]) {
        Some(ty) => (Kind::of(ty), false),
        None => (Kind::of(&type_anywhere(line, start)?), true),
    };
    let only_check = match kind {
        Kind::Other => true,
        // Most stream events are content-block frames: nothing to read in them.
        Kind::StreamEvent => !matches!(
            inner_event_type(line),
            None | Some("message_start" | "message_delta")
        ),
        _ => false,
    };
    if only_check {
        if !validated {
            scan::validate(line)?;
        }
        *out = Event::Ignored;
        return Ok(());
    }
    // The wire structs are filled in place and turned into the event where it is to
    // live: these are the largest values of a line, and each move of one showed.
    match kind {
        Kind::System => whole_event(line, start, out, system_line, system_event)?,
        Kind::Assistant => whole_event(line, start, out, assistant_line, assistant_event)?,
        Kind::StreamEvent => whole_event(line, start, out, stream_line, stream_event)?,
        Kind::Result => whole_event(line, start, out, result_line, result_event)?,
        Kind::User => {
            let mut parts = (None, None);
            whole(line, start, &mut parts, user_line)?;
            let (uuid, body) = parts;
            if let Some(b) = body {
                // A subagent's result is decoded: its strings must be valid UTF-8 (the
                // reference repairs the line first otherwise).
                if utf8(b).is_err() {
                    return Err(Bail);
                }
            }
            *out = user_event(uuid, body);
        }
        // Rare; serde_json reads them.
        Kind::RateLimit | Kind::Other => return Err(Bail),
    }
    Ok(())
}

/// [`whole`] into a fresh wire struct, then `out` = the event `event` makes of it.
#[inline(always)]
fn whole_event<'a, T: Default>(
    line: &'a [u8],
    start: usize,
    out: &mut Event<'a>,
    read: Read<'a, T>,
    event: fn(T) -> Event<'a>,
) -> Scan<()> {
    let mut wire = T::default();
    whole(line, start, &mut wire, read)?;
    *out = event(wire);
    Ok(())
}

/// A reader of one value into its slot: the index after it.
type Read<'a, T> = fn(&'a [u8], usize, &mut T) -> Scan<usize>;

/// Reads the top-level object at `start` into `out` with `read`; nothing but whitespace
/// may follow.
#[inline]
fn whole<'a, T>(line: &'a [u8], start: usize, out: &mut T, read: Read<'a, T>) -> Scan<()> {
    let end = read(line, start, out)?;
    if ws(line, end) == line.len() {
        Ok(())
    } else {
        Err(Bail)
    }
}

/// Marks field `bit` as seen; a second occurrence is serde's "duplicate field" error.
#[inline]
fn once(seen: &mut u32, bit: u32) -> Scan<()> {
    if *seen & bit != 0 {
        return Err(Bail);
    }
    *seen |= bit;
    Ok(())
}

/// One field of an object, as a match arm's value: marks `bit` in `seen` ([`once`]: a
/// duplicate bails), then `$read` (a `Scan<usize>`, the index after the value). A macro,
/// not a function taking a closure, so the arm compiles exactly as written out: this is
/// the hot loop of the parser.
macro_rules! field {
    ($seen:ident, $bit:expr, $read:expr) => {{
        once(&mut $seen, $bit)?;
        $read?
    }};
}

/// [`field!`] for a reader that returns the value: `$read` (a `Scan<(value, end)>`) is
/// stored in `$slot`.
macro_rules! set {
    ($seen:ident, $bit:expr, $slot:expr, $read:expr) => {{
        once(&mut $seen, $bit)?;
        let (x, end) = $read?;
        $slot = x;
        end
    }};
}

/// The top-level `type` of a line that does not start with it ("" when absent), found in
/// a pass that also validates the whole line.
fn type_anywhere(line: &[u8], start: usize) -> Scan<Cow<'_, str>> {
    let mut ty = None;
    let mut seen = 0u32;
    let end = object(line, start, |k, v| {
        Ok(match k {
            b"type" => set!(seen, 1, ty, bstr(line, v)),
            _ => skip_value(line, v)?,
        })
    })?;
    if ws(line, end) != line.len() {
        return Err(Bail);
    }
    Ok(ty.map(|b| b.0).unwrap_or(Cow::Borrowed("")))
}

fn utf8(s: &[u8]) -> Scan<&str> {
    super::utf8(s).ok_or(Bail)
}

/// The value at `i` deserialized by serde_json on its own span with `read` (the field's
/// own deserializer); the index after it.
fn via_serde<'a, T>(
    s: &'a [u8],
    i: usize,
    read: impl FnOnce(&mut Reader<'a>) -> serde_json::Result<T>,
) -> Scan<(T, usize)> {
    let end = skip_value(s, i)?;
    let mut d = serde_json::Deserializer::from_str(utf8(&s[i..end])?);
    let v = read(&mut d).map_err(|_| Bail)?;
    d.end().map_err(|_| Bail)?;
    Ok((v, end))
}

/// `null` at `i`: the index after it.
#[inline]
fn null(s: &[u8], i: usize) -> Option<usize> {
    (s.get(i..i + 4) == Some(b"null")).then_some(i + 4)
}

/// An `Option<BStr>` field.
fn bstr(s: &[u8], i: usize) -> Scan<(Option<BStr<'_>>, usize)> {
    if s.get(i) == Some(&b'"') {
        let (end, escaped) = scan::skip_str(s, i + 1)?;
        if !escaped {
            let text = utf8(&s[i + 1..end - 1])?;
            return Ok((Some(BStr(Cow::Borrowed(text))), end));
        }
    } else if let Some(end) = null(s, i) {
        return Ok((None, end));
    }
    via_serde(s, i, |d| Option::<BStr<'_>>::deserialize(d))
}

/// An `Option<Snippet<N>>` field.
fn snippet<const N: usize>(s: &[u8], i: usize) -> Scan<(Option<Snippet<N>>, usize)> {
    if s.get(i) == Some(&b'"') {
        let (end, escaped) = scan::skip_str(s, i + 1)?;
        if !escaped {
            let text = utf8(&s[i + 1..end - 1])?;
            return Ok((Some(Snippet(Some(truncate(text, N).to_owned()))), end));
        }
    } else if let Some(end) = null(s, i) {
        return Ok((None, end));
    }
    via_serde(s, i, |d| Option::<Snippet<N>>::deserialize(d))
}

/// A `lenient_u64` field.
fn count(s: &[u8], i: usize) -> Scan<(Option<u64>, usize)> {
    // A plain integer of up to 19 digits (always fits) ends at a delimiter.
    let digits = s[i.min(s.len())..]
        .iter()
        .take(20)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let next = s.get(i + digits).copied();
    let plain = (1..=19).contains(&digits)
        && (digits == 1 || s[i] != b'0')
        && !matches!(next, Some(b'.' | b'e' | b'E'));
    if plain {
        let n = s[i..i + digits]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        return Ok((Some(n), i + digits));
    }
    if let Some(end) = null(s, i) {
        return Ok((None, end));
    }
    via_serde(s, i, |d| lenient_u64(d))
}

/// A field read by serde_json on its span whatever it holds (rare fields).
fn serde_field<'a, T: Deserialize<'a>>(s: &'a [u8], i: usize) -> Scan<(T, usize)> {
    via_serde(s, i, |d| T::deserialize(d))
}

/// An `Option<Struct>` field read into `out` by `read` when it is an object; `null` is
/// `None`; any other value goes to serde_json with the whole line. (Big values are
/// filled in place rather than returned: moving them showed in profiles.)
#[inline]
fn opt_object<'a, T: Default>(
    s: &'a [u8],
    i: usize,
    out: &mut Option<T>,
    read: fn(&'a [u8], usize, &mut T) -> Scan<usize>,
) -> Scan<usize> {
    if let Some(end) = null(s, i) {
        *out = None;
        return Ok(end);
    }
    read(s, i, out.insert(T::default()))
}

/// An `Option<RawUsage>` field, read into `out`.
fn usage(s: &[u8], i: usize, out: &mut Option<RawUsage>) -> Scan<usize> {
    if let Some(end) = null(s, i) {
        *out = None;
        return Ok(end);
    }
    if s.get(i) != Some(&b'{') {
        return serde_into(s, i, out);
    }
    let u = out.insert(RawUsage::default());
    let mut seen = 0u32;
    let fast = object(s, i, |k, v| {
        Ok(match k {
            b"input_tokens" => set!(seen, 1, u.input_tokens, count(s, v)),
            b"output_tokens" => set!(seen, 2, u.output_tokens, count(s, v)),
            b"cache_creation_input_tokens" => {
                set!(seen, 4, u.cache_creation_input_tokens, count(s, v))
            }
            b"cache_read_input_tokens" => {
                set!(seen, 8, u.cache_read_input_tokens, count(s, v))
            }
            b"cache_creation" => field!(
                seen,
                16,
                opt_object(s, v, &mut u.cache_creation, cache_creation)
            ),
            b"server_tool_use" => field!(
                seen,
                32,
                opt_object(s, v, &mut u.server_tool_use, server_tool_use)
            ),
            b"speed" => set!(seen, 64, u.speed_fast, speed(s, v)),
            _ => skip_value(s, v)?,
        })
    });
    match fast {
        Ok(end) => Ok(end),
        // An escaped key, a duplicate, …: serde_json decides on the object alone.
        Err(Bail) => serde_into(s, i, out),
    }
}

/// `out` deserialized by serde_json from the value at `i` alone.
fn serde_into<'a, T: Deserialize<'a>>(s: &'a [u8], i: usize, out: &mut T) -> Scan<usize> {
    let (v, end) = serde_field(s, i)?;
    *out = v;
    Ok(end)
}

fn cache_creation(s: &[u8], i: usize, c: &mut CacheCreation) -> Scan<usize> {
    let mut seen = 0u32;
    let fast = object(s, i, |k, v| {
        Ok(match k {
            b"ephemeral_1h_input_tokens" => {
                set!(seen, 1, c.ephemeral_1h_input_tokens, count(s, v))
            }
            b"ephemeral_5m_input_tokens" => {
                set!(seen, 2, c.ephemeral_5m_input_tokens, count(s, v))
            }
            _ => skip_value(s, v)?,
        })
    });
    match fast {
        Ok(end) => Ok(end),
        Err(Bail) => serde_into(s, i, c),
    }
}

fn server_tool_use(s: &[u8], i: usize, t: &mut ServerToolUse) -> Scan<usize> {
    let mut seen = 0u32;
    let fast = object(s, i, |k, v| {
        Ok(match k {
            b"web_search_requests" => set!(seen, 1, t.web_search_requests, count(s, v)),
            _ => skip_value(s, v)?,
        })
    });
    match fast {
        Ok(end) => Ok(end),
        Err(Bail) => serde_into(s, i, t),
    }
}

/// `result.modelUsage`: model name → totals. A name given twice keeps its last entry,
/// as serde's map does.
fn model_usage<'a>(s: &'a [u8], i: usize) -> Scan<(Option<BTreeMap<BStr<'a>, ModelUsage>>, usize)> {
    if let Some(end) = null(s, i) {
        return Ok((None, end));
    }
    let mut map = BTreeMap::new();
    let fast = object(s, i, |name, v| {
        let mut m = ModelUsage::default();
        let end = model_totals(s, v, &mut m)?;
        map.insert(BStr(Cow::Borrowed(utf8(name)?)), m);
        Ok(end)
    });
    match fast {
        Ok(end) => Ok((Some(map), end)),
        Err(Bail) => serde_field(s, i),
    }
}

/// One model's `ModelUsage`; anything unusual is serde_json's to read.
fn model_totals(s: &[u8], i: usize, m: &mut ModelUsage) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"inputTokens" => set!(seen, 1, m.input_tokens, count(s, v)),
            b"outputTokens" => set!(seen, 2, m.output_tokens, count(s, v)),
            b"cacheReadInputTokens" => set!(seen, 4, m.cache_read_input_tokens, count(s, v)),
            b"cacheCreationInputTokens" => {
                set!(seen, 8, m.cache_creation_input_tokens, count(s, v))
            }
            b"costUSD" => set!(seen, 16, m.cost_usd, via_serde(s, v, |d| lenient_f64(d))),
            b"webSearchRequests" => set!(seen, 32, m.web_search_requests, count(s, v)),
            _ => skip_value(s, v)?,
        })
    })
}

/// `usage.speed` (`lenient_fast`).
fn speed(s: &[u8], i: usize) -> Scan<(Option<bool>, usize)> {
    if s.get(i) == Some(&b'"') {
        let (end, escaped) = scan::skip_str(s, i + 1)?;
        if !escaped {
            let text = utf8(&s[i + 1..end - 1])?;
            return Ok((Some(truncate(text, 16) == "fast"), end));
        }
    }
    via_serde(s, i, |d| lenient_fast(d))
}

fn system_line<'a>(s: &'a [u8], i: usize, l: &mut SystemLine<'a>) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"subtype" => set!(seen, 1, l.subtype, bstr(s, v)),
            b"model" => set!(seen, 2, l.model, bstr(s, v)),
            b"session_id" => set!(seen, 4, l.session_id, bstr(s, v)),
            b"attempt" => set!(seen, 8, l.attempt, count(s, v)),
            b"max_retries" => set!(seen, 16, l.max_retries, count(s, v)),
            b"retry_delay_ms" => set!(seen, 32, l.retry_delay_ms, count(s, v)),
            b"error_status" => set!(seen, 64, l.error_status, count(s, v)),
            b"error" => set!(seen, 128, l.error, snippet(s, v)),
            b"status" => set!(seen, 256, l.status, snippet(s, v)),
            b"rate_limit_info" => {
                set!(seen, 512, l.rate_limit_info, serde_field(s, v))
            }
            _ => skip_value(s, v)?,
        })
    })
}

fn assistant_line<'a>(s: &'a [u8], i: usize, l: &mut AssistantLine<'a>) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"message" => field!(seen, 1, opt_object(s, v, &mut l.message, assistant_msg)),
            b"error" => set!(seen, 2, l.error, snippet(s, v)),
            b"parent_tool_use_id" => set!(seen, 4, l.parent_tool_use_id, bstr(s, v)),
            _ => skip_value(s, v)?,
        })
    })
}

fn assistant_msg<'a>(s: &'a [u8], i: usize, m: &mut AssistantMsg<'a>) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"id" => set!(seen, 1, m.id, bstr(s, v)),
            b"model" => set!(seen, 2, m.model, bstr(s, v)),
            b"usage" => field!(seen, 4, usage(s, v, &mut m.usage)),
            b"content" => set!(seen, 8, m.content, blocks(s, v)),
            _ => skip_value(s, v)?,
        })
    })
}

/// `message.content`: blocks when it is an array; any other value holds none.
fn blocks(s: &[u8], i: usize) -> Scan<(Option<Blocks<'_>>, usize)> {
    if let Some(end) = null(s, i) {
        return Ok((None, end));
    }
    let mut blocks = Blocks::default();
    if s.get(i) != Some(&b'[') {
        return Ok((Some(blocks), skip_value(s, i)?));
    }
    let end = array(s, i, |j| {
        let (b, e) = block(s, j)?;
        blocks.add(b);
        Ok(e)
    })?;
    Ok((Some(blocks), end))
}

fn block(s: &[u8], i: usize) -> Scan<(Block<'_>, usize)> {
    let mut b = Block {
        ty: None,
        id: None,
        name: None,
        text: None,
        input: None,
    };
    let mut seen = 0u32;
    let end = object(s, i, |k, v| {
        Ok(match k {
            b"type" => set!(seen, 1, b.ty, bstr(s, v)),
            b"id" => set!(seen, 2, b.id, bstr(s, v)),
            b"name" => set!(seen, 4, b.name, bstr(s, v)),
            b"text" => set!(seen, 8, b.text, snippet(s, v)),
            b"input" => {
                once(&mut seen, 16)?;
                if let Some(e) = null(s, v) {
                    e
                } else {
                    let (hint, e) = input_hint(s, v)?;
                    b.input = Some(BlockInput::Hint(hint));
                    e
                }
            }
            _ => skip_value(s, v)?,
        })
    })?;
    Ok((b, end))
}

/// A tool call's `input` read for its hint in the same pass (`tool_hint`).
fn input_hint(s: &[u8], i: usize) -> Scan<(Option<String>, usize)> {
    let fast = if s.get(i) == Some(&b'{') {
        let mut t = ToolInput::default();
        let mut seen = 0u32;
        object(s, i, |k, v| {
            let (slot, bit) = match k {
                b"command" => (&mut t.command, 1),
                b"file_path" => (&mut t.file_path, 2),
                b"notebook_path" => (&mut t.notebook_path, 4),
                b"path" => (&mut t.path, 8),
                b"pattern" => (&mut t.pattern, 16),
                b"url" => (&mut t.url, 32),
                b"query" => (&mut t.query, 64),
                b"skill" => (&mut t.skill, 128),
                b"description" => (&mut t.description, 256),
                b"prompt" => (&mut t.prompt, 512),
                _ => return skip_value(s, v),
            };
            Ok(set!(seen, bit, *slot, snippet(s, v)))
        })
        .map(|end| (t, end))
    } else {
        Err(Bail)
    };
    match fast {
        Ok((t, end)) => Ok((t.hint(), end)),
        // Not an object, or odd inside: serde_json's reading of the input alone (a
        // failure there is no hint, as in `tool_hint`).
        Err(Bail) => {
            let end = skip_value(s, i)?;
            Ok((tool_hint(utf8(&s[i..end])?), end))
        }
    }
}

fn stream_line<'a>(s: &'a [u8], i: usize, l: &mut StreamLine<'a>) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"event" => field!(seen, 1, opt_object(s, v, &mut l.event, stream_inner)),
            b"parent_tool_use_id" => set!(seen, 2, l.parent_tool_use_id, bstr(s, v)),
            _ => skip_value(s, v)?,
        })
    })
}

fn stream_inner<'a>(s: &'a [u8], i: usize, l: &mut StreamInner<'a>) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"type" => set!(seen, 1, l.ty, bstr(s, v)),
            b"message" => field!(seen, 2, opt_object(s, v, &mut l.message, start_msg)),
            b"usage" => field!(seen, 4, usage(s, v, &mut l.usage)),
            _ => skip_value(s, v)?,
        })
    })
}

fn start_msg<'a>(s: &'a [u8], i: usize, m: &mut StartMsg<'a>) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"id" => set!(seen, 1, m.id, bstr(s, v)),
            b"model" => set!(seen, 2, m.model, bstr(s, v)),
            b"usage" => field!(seen, 4, usage(s, v, &mut m.usage)),
            _ => skip_value(s, v)?,
        })
    })
}

fn result_line<'a>(s: &'a [u8], i: usize, r: &mut ResultLine<'a>) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"subtype" => set!(seen, 1, r.subtype, bstr(s, v)),
            b"is_error" => {
                once(&mut seen, 2)?;
                let (x, e) = match s.get(v) {
                    Some(b't') if s.get(v..v + 4) == Some(b"true") => (Some(true), v + 4),
                    Some(b'f') if s.get(v..v + 5) == Some(b"false") => (Some(false), v + 5),
                    _ => via_serde(s, v, |d| lenient_bool(d))?,
                };
                r.is_error = x;
                e
            }
            b"result" => set!(seen, 4, r.result, snippet(s, v)),
            b"total_cost_usd" => set!(
                seen,
                8,
                r.total_cost_usd,
                via_serde(s, v, |d| lenient_f64(d))
            ),
            b"modelUsage" => set!(seen, 16, r.model_usage, model_usage(s, v)),
            b"usage" => field!(seen, 32, usage(s, v, &mut r.usage)),
            b"num_turns" => set!(seen, 64, r.num_turns, count(s, v)),
            b"session_id" => set!(seen, 128, r.session_id, bstr(s, v)),
            _ => skip_value(s, v)?,
        })
    })
}

/// A `user` line: its `uuid`, and its `tool_use_result` when that is an object with a
/// `usage` key (anything else is no subagent result).
type UserParts<'a> = (Option<BStr<'a>>, Option<&'a [u8]>);

fn user_line<'a>(s: &'a [u8], i: usize, (uuid, body): &mut UserParts<'a>) -> Scan<usize> {
    let mut seen = 0u32;
    object(s, i, |k, v| {
        Ok(match k {
            b"uuid" => set!(seen, 1, *uuid, bstr(s, v)),
            b"tool_use_result" => {
                once(&mut seen, 2)?;
                let (usage, e) = has_usage_key(s, v)?;
                if usage {
                    *body = Some(&s[v..e]);
                }
                e
            }
            _ => skip_value(s, v)?,
        })
    })
}

/// Whether the value at `i` is an object that `user_event` will read for usage: one with
/// a top-level `usage` key. Its end either way, in one pass over a tool result that may
/// be megabytes long.
fn has_usage_key(s: &[u8], i: usize) -> Scan<(bool, usize)> {
    if s.get(i) != Some(&b'{') {
        return Ok((false, skip_value(s, i)?));
    }
    let mut found = false;
    let walked = object(s, i, |k, v| {
        found |= k == b"usage";
        skip_value(s, v)
    });
    match walked {
        Ok(end) => Ok((found, end)),
        // An escaped key: say yes when `user_event`'s own test (the text `"usage"`
        // anywhere) would, and let it decide.
        Err(Bail) => {
            let end = skip_value(s, i)?;
            Ok((
                memchr::memmem::find(&s[i..end], b"\"usage\"").is_some(),
                end,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fast path's answer, when it has one.
    fn fast(line: &[u8]) -> Scan<Event<'_>> {
        let mut ev = Event::Ignored;
        parse(line, &mut ev)?;
        Ok(ev)
    }

    /// The fast path either gives up or says exactly what serde_json says.
    fn agrees(line: &[u8]) {
        if let Ok(fast) = fast(line) {
            let scratch;
            let repaired = match parse_reference(line) {
                Err(_) if std::str::from_utf8(line).is_err() => {
                    scratch = String::from_utf8_lossy(line).into_owned();
                    parse_reference(scratch.as_bytes())
                }
                r => r,
            };
            assert_eq!(
                Ok(fast),
                repaired,
                "fast path disagrees on {}",
                String::from_utf8_lossy(line)
            );
        }
    }

    fn fixture_lines() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut out = Vec::new();
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).expect("fixtures").flatten() {
                let p = entry.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().and_then(|e| e.to_str()) == Some("jsonl") {
                    let bytes = std::fs::read(&p).expect("read");
                    out.extend(
                        bytes
                            .split(|b| *b == b'\n')
                            .filter(|l| !l.is_empty())
                            .map(<[u8]>::to_vec),
                    );
                }
            }
        }
        out
    }

    #[test]
    fn every_fixture_line_is_read_fast_and_the_same() {
        let lines = fixture_lines();
        assert!(lines.len() > 100, "{} lines", lines.len());
        for line in &lines {
            assert!(
                fast(line).is_ok(),
                "fast path gave up on {}",
                String::from_utf8_lossy(line)
            );
            agrees(line);
        }
    }

    #[test]
    fn damaged_fixture_lines_agree() {
        for line in fixture_lines().iter().take(150) {
            for k in 0..line.len().min(300) {
                agrees(&line[..k]);
                for b in [b'"', b'\\', b'}', b'1', b'n', 0xff, b' '] {
                    let mut m = line.clone();
                    m[k] = b;
                    agrees(&m);
                }
            }
        }
    }

    #[test]
    fn odd_shapes_agree() {
        let lines = [
            r#"{"type":"assistant","message":{"id":"m","usage":{"input_tokens":1,"input_tokens":2}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"input_tokens":"12","output_tokens":-3,"cache_read_input_tokens":2.0,"cache_creation_input_tokens":1e3}}}"#,
            r#"{"type":"assistant","message":{"id":"m\u0031","model":7}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"in\u0070ut_tokens":5}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":[1,2,3,4]}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"speed":"fast","server_tool_use":{"web_search_requests":2}}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"speed":"fastfastfastfastfast"}}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"a\nb"},{"type":"tool_use","name":"Bash","input":{"command":"  ls\t -la "}}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"X","input":["a"]}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"X","input":{"path":1,"path":2}}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"X","input":{"path":3}}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"X","input":null}]}}"#,
            r#"{"type":"assistant","message":{"content":["x"]}}"#,
            r#"{"type":"assistant","message":{"content":{"a":1}}}"#,
            r#"{"type":"assistant","message":"x"}"#,
            r#"{"type":"assistant","message":null,"error":{"x":1}}"#,
            r#"{"type":"user","uuid":"u","tool_use_result":{"agentId":"a","usage":{"input_tokens":3}}}"#,
            r#"{"type":"user","uuid":"u","tool_use_result":{"x":{"usage":1}}}"#,
            r#"{"type":"user","uuid":"u","tool_use_result":{"us\u0061ge":{"input_tokens":3},"y":"\"usage\""}}"#,
            r#"{"type":"user","uuid":5,"tool_use_result":"plain"}"#,
            r#"{"type":"user","uuid":5}"#,
            r#"{"type":"user","tool_use_result":1,"tool_use_result":2}"#,
            r#"{"message":{"id":"m","usage":{"input_tokens":1}},"type":"assistant"}"#,
            r#"{"message":{"id":"m"},"type":"assistant","type":"user"}"#,
            r#"{"message":{},"type":7}"#,
            r#"{"type":"result","is_error":"yes","total_cost_usd":"1.5","num_turns":1.5,"modelUsage":{"a":{"inputTokens":1,"costUSD":0.1}},"result":12}"#,
            r#"{"type":"result","total_cost_usd":0.07125000000000001,"modelUsage":{"a":{},"a":{"inputTokens":2}}}"#,
            r#"{"type":"result","modelUsage":null}"#,
            r#"{"type":"result","modelUsage":[]}"#,
            r#"{"type":"result","modelUsage":{"a":null}}"#,
            r#"{"type":"result","modelUsage":{"a":{"costUSD":"0.5","inputTokens":1.0,"webSearchRequests":-1}}}"#,
            r#"{"type":"result","modelUsage":{"a\u0062":{"inputTokens":1},"ab":{"inputTokens":2}}}"#,
            r#"{"type":"result","modelUsage":{"a":{"inputTokens":1,"inputTokens":2}}}"#,
            r#"{"type":"result","modelUsage":{"b":{"outputTokens":1},"a":{"cacheReadInputTokens":2,"costUSD":1e-3},"b":{}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"server_tool_use":null}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"server_tool_use":{"web_search_requests":"3","x":[1]}}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"server_tool_use":[1]}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"server_tool_use":{"web_search_requests":1,"web_search_requests":2}}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"server_tool_use":{"web_search_requests":4}}}}"#,
            r#"{"type":"system","subtype":"api_retry","attempt":3,"error_status":null,"error":"server_error"}"#,
            r#"{"type":"system","subtype":"rate_limit","rate_limit_info":{"status":"rejected","resetsAt":17}}"#,
            r#"{"type":"stream_event","event":{"type":"message_delta","usage":{"output_tokens":77}},"parent_tool_use_id":"t"}"#,
            r#"{"type":"stream_event","event":{"usage":{"output_tokens":77},"type":"message_delta"}}"#,
            r#"{"type":"stream_event","event":{"type":"message_start","message":null}}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta"},"x":[1,2}"#,
            r#"  {"type":"assistant"}  "#,
            r#"{"type":"assistant"} x"#,
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"input_tokens":99999999999999999999}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"input_tokens":01}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"input_tokens":1e400}}}"#,
        ];
        for l in lines {
            agrees(l.as_bytes());
        }
    }

    proptest! {
        /// Lines assembled from the keys and values the fast path reads, in any order and
        /// shape: it never disagrees with serde_json.
        #[test]
        fn assembled_lines_agree(
            ty in prop_oneof![Just("assistant"), Just("user"), Just("system"), Just("result"), Just("stream_event"), Just("x")],
            fields in proptest::collection::vec((
                prop_oneof![
                    Just("message"), Just("id"), Just("model"), Just("usage"), Just("content"),
                    Just("input_tokens"), Just("output_tokens"), Just("cache_creation"),
                    Just("tool_use_result"), Just("uuid"), Just("event"), Just("type"),
                    Just("text"), Just("input"), Just("command"), Just("subtype"),
                    Just("parent_tool_use_id"), Just("result"), Just("speed"), Just("error"),
                    Just("modelUsage"), Just("server_tool_use"), Just("web_search_requests"),
                    Just("inputTokens"), Just("costUSD"),
                ],
                prop_oneof![
                    Just("1"), Just("null"), Just("\"s\""), Just("\"a\\nb\""), Just("-2"),
                    Just("1.5"), Just("true"), Just("[]"), Just("{}"), Just("\"fast\""),
                    Just("{\"input_tokens\":4,\"output_tokens\":2}"),
                    Just("[{\"type\":\"text\",\"text\":\"hi\"}]"),
                    Just("{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3}}}"),
                    Just("{\"usage\":{\"input_tokens\":9},\"agentId\":\"a\"}"),
                    Just("[{\"type\":\"tool_use\",\"name\":\"B\",\"input\":{\"command\":\"ls\"}}]"),
                    Just("{\"m\":{\"inputTokens\":3,\"costUSD\":0.5},\"n\":{}}"),
                    Just("{\"web_search_requests\":2}"),
                ],
            ), 0..6),
            nested in any::<bool>(),
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let inner = body.join(",");
            let line = if nested {
                format!("{{\"type\":\"{ty}\",\"message\":{{{inner}}},{inner}}}").replace(",}", "}")
            } else {
                format!("{{\"type\":\"{ty}\",{inner}}}").replace(",}", "}")
            };
            agrees(line.as_bytes());
        }
    }
}
