//! Number, duration and text formatting shared by every human-readable report.

use std::time::Duration;
use unicode_width::UnicodeWidthChar;

pub use crate::core::usage::fmt_count;

/// Elapsed time: `4.2s` under a minute, `1m05s` under an hour, `1h02m` beyond.
///
/// Truncates rather than rounds, so a clock never shows time that has not passed yet
/// (59.96 s is `59.9s`, not `60.0s`).
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{}.{}s", secs, d.subsec_millis() / 100)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// `42.0%`: one decimal. Non-finite values (a zero limit upstream) show as `-`.
pub fn fmt_percent(p: f64) -> String {
    if p.is_finite() {
        format!("{p:.1}%")
    } else {
        "-".to_string()
    }
}

/// Text safety lives in one place, `core::text`; re-exported for the renderers.
pub use crate::core::text::{sanitize, truncate};

/// Terminal columns `s` occupies (wide CJK and emoji count two, combining marks zero).
/// Assumes `s` is sanitized: control characters count as zero.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

pub(crate) fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// Sanitized text cut to at most `cols` terminal columns, with `…` when cut.
/// Unlike [`truncate`] it does not trim, so padding survives.
pub fn fit_width(s: &str, cols: usize) -> String {
    let clean = sanitize(s);
    if display_width(&clean) <= cols {
        return clean;
    }
    if cols == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in clean.chars() {
        let w = char_width(c);
        if used + w > cols - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_at_unit_boundaries() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1.0K"),
            (1049, "1.0K"),
            (1050, "1.1K"),
            (1234, "1.2K"),
            (999_949, "999.9K"),
            (999_950, "1.0M"),
            (999_999, "1.0M"),
            (1_000_000, "1.0M"),
            (3_400_000, "3.4M"),
            (999_950_000, "1.0B"),
            (1_000_000_000, "1.0B"),
            (1_000_000_000_000, "1000.0B"),
            (u64::MAX, "18446744073.7B"),
        ];
        for (n, want) in cases {
            assert_eq!(fmt_count(n), want, "fmt_count({n})");
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(fmt_duration(Duration::ZERO), "0.0s");
        assert_eq!(fmt_duration(ms(4_250)), "4.2s");
        assert_eq!(fmt_duration(ms(59_960)), "59.9s");
        assert_eq!(fmt_duration(ms(60_000)), "1m00s");
        assert_eq!(fmt_duration(ms(65_900)), "1m05s");
        assert_eq!(fmt_duration(ms(3_599_999)), "59m59s");
        assert_eq!(fmt_duration(ms(3_600_000)), "1h00m");
        assert_eq!(fmt_duration(ms(3_725_000)), "1h02m");
        assert_eq!(fmt_duration(Duration::from_secs(360_000)), "100h00m");
    }

    #[test]
    fn percent_has_one_decimal() {
        assert_eq!(fmt_percent(0.0), "0.0%");
        assert_eq!(fmt_percent(123.44), "123.4%");
        assert_eq!(fmt_percent(f64::INFINITY), "-");
    }

    #[test]
    fn truncate_is_char_safe_and_marks_the_cut() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello!", 5), "hell…");
        assert_eq!(truncate("héllo wörld", 4), "hél…");
        assert_eq!(truncate("日本語テキスト", 3), "日本…");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(truncate("abc", 1), "…");
        assert_eq!(truncate("", 3), "");
    }

    #[test]
    fn truncate_collapses_line_breaks_and_strips_controls() {
        assert_eq!(
            truncate("\nAll 42 tests passed.\n\nDone.\n", 100),
            "All 42 tests passed. Done."
        );
        assert_eq!(truncate("a\r\n  b", 100), "a b");
        assert_eq!(truncate("a\tb", 100), "a b");
        assert_eq!(truncate("red \x1b[31mtext\x1b[0m", 100), "red [31mtext[0m");
        assert_eq!(truncate("keep  two spaces", 100), "keep  two spaces");
    }

    #[test]
    fn fit_width_counts_wide_characters_as_two_columns() {
        assert_eq!(display_width("日本"), 4);
        assert_eq!(fit_width("日本語", 5), "日本…");
        assert_eq!(fit_width("日本語", 6), "日本語");
        assert_eq!(fit_width("abcdef", 4), "abc…");
        assert_eq!(fit_width("ab  ", 4), "ab  ");
        assert_eq!(fit_width("abc", 0), "");
    }
}
