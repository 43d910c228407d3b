//! The one place that makes text safe to show: every string that reaches a terminal
//! (Claude's result, tool names, instance names, prompts, stderr tails, config values)
//! goes through [`sanitize`] (one line) or [`sanitize_block`] (several lines), and is cut
//! with [`truncate`] (characters, with `…`) or [`prefix_bytes`] (bytes, on a character
//! boundary). [`redact`] hides configured secrets in captured text.

/// Characters that reorder text (bidirectional controls, "Trojan Source"): shown, they
/// can make a line read differently from what it contains.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Dropped everywhere: control characters (ESC, BEL, …) and bidi controls.
fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Makes arbitrary text safe for one line of a report: whitespace runs containing a line
/// break become one space, tabs become spaces, and control and bidi characters are
/// dropped so the text can never move the cursor, change colours, ring the bell or
/// reorder what is shown.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_ws = String::new();
    let mut ws_has_break = false;
    for c in s.chars() {
        if c.is_whitespace() {
            if c == '\n' || c == '\r' || c == '\u{2028}' || c == '\u{2029}' || c == '\u{85}' {
                ws_has_break = true;
            }
            pending_ws.push(if c.is_control() { ' ' } else { c });
            continue;
        }
        if !pending_ws.is_empty() {
            if ws_has_break {
                out.push(' ');
            } else {
                out.push_str(&pending_ws);
            }
            pending_ws.clear();
            ws_has_break = false;
        }
        if !is_unsafe(c) {
            out.push(c);
        }
    }
    if !pending_ws.is_empty() {
        out.push_str(if ws_has_break { " " } else { &pending_ws });
    }
    out
}

/// Like [`sanitize`] but keeps line breaks (`\n`) and tabs: for multi-line text such as
/// the dry run or a command file.
pub fn sanitize_block(s: &str) -> String {
    s.chars()
        .filter(|&c| c == '\n' || c == '\t' || !is_unsafe(c))
        .collect()
}

/// One-line text of at most `max_chars` characters: sanitized, trimmed, and cut on a
/// character boundary with a trailing `…` when too long.
pub fn truncate(s: &str, max_chars: usize) -> String {
    let clean = sanitize(s);
    let clean = clean.trim();
    if clean.chars().count() <= max_chars {
        return clean.to_string();
    }
    if max_chars == 0 {
        return String::new();
    }
    let mut out: String = clean.chars().take(max_chars - 1).collect();
    out.push('…');
    out
}

/// Longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn prefix_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Secrets shorter than this are not redacted: hiding every `1` or `on` in a text would
/// destroy it while protecting nothing.
pub const REDACT_MIN_LEN: usize = 4;

/// `text` with every occurrence of each secret (of at least [`REDACT_MIN_LEN`] bytes)
/// replaced by `[redacted]`; longer secrets first, so one that contains another is hidden
/// whole.
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut secrets: Vec<&str> = secrets
        .into_iter()
        .filter(|s| s.len() >= REDACT_MIN_LEN)
        .collect();
    if secrets.is_empty() {
        return text.to_string();
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s) {
            out = out.replace(s, "[redacted]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_escapes_bell_and_bidi() {
        assert_eq!(sanitize("a\x1b[2Jb\x07c"), "a[2Jbc");
        assert_eq!(sanitize("user\u{202E}gnp.exe"), "usergnp.exe");
        assert_eq!(sanitize("x\u{2066}y\u{2069}z\u{200F}"), "xyz");
        assert_eq!(sanitize("one\r\n  two\tthree"), "one two three");
    }

    #[test]
    fn block_keeps_lines_and_drops_the_rest() {
        assert_eq!(
            sanitize_block("a\x1b]0;title\x07\n\tb\u{202E}c\r\n"),
            "a]0;title\n\tbc\n"
        );
    }

    #[test]
    fn truncate_and_prefix_are_char_safe() {
        assert_eq!(truncate("héllo world", 5), "héll…");
        assert_eq!(truncate("a\u{202E}b", 5), "ab");
        assert_eq!(prefix_bytes("héllo", 2), "h");
        assert_eq!(prefix_bytes("hé", 3), "hé");
    }

    #[test]
    fn redact_hides_long_secrets_only() {
        let t = "token sk-123456 and sk-123456789 and on";
        assert_eq!(
            redact(t, ["sk-123456", "sk-123456789", "on"]),
            "token [redacted] and [redacted] and on"
        );
        assert_eq!(redact("nothing", Vec::<&str>::new()), "nothing");
    }

    proptest::proptest! {
        #[test]
        fn sanitized_text_has_no_unsafe_characters(s in "\\PC*|[\\x00-\\x1f\\u{202a}-\\u{202e}a-z]*") {
            let one = sanitize(&s);
            proptest::prop_assert!(!one.chars().any(|c| c.is_control() || is_bidi_control(c)));
            let block = sanitize_block(&s);
            proptest::prop_assert!(!block.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c)));
        }

        #[test]
        fn redacted_text_never_contains_the_secret(prefix in "[a-z ]{0,10}", secret in "[A-Za-z0-9]{4,12}", suffix in "[a-z ]{0,10}") {
            let text = format!("{prefix}{secret}{suffix}{secret}");
            let out = redact(&text, [secret.as_str()]);
            proptest::prop_assert!(!out.contains(&secret));
        }
    }
}
