//! Numbers as people write them, accepted everywhere a number is taken (flags, `/cmd=…`
//! budgets, config strings): token counts with `K`/`M` suffixes and `5,000`/`5_000`
//! separators, dollars with an optional `$`, and durations with units (`90s`, `10m`,
//! `1.5h`, `1m30s`, `500ms`). Pure functions; each error is a reason for one line.
//!
//! Decimal parsing is exact (integer mantissa and scale), so `1.5K` is exactly 1500 and
//! `1.2345K` is rejected rather than rounded.

use crate::core::usage::Usd;
use std::time::Duration;

/// An exact non-negative decimal: `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: u128,
    scale: u32,
}

/// Digits with an optional `.` fraction. Separators (`,` `_`) are allowed between digits
/// of the whole part only. No sign, no exponent, no spaces.
fn parse_decimal(s: &str) -> Option<Decimal> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    if whole.is_empty() && frac.is_none_or(str::is_empty) {
        return None;
    }
    // Separators group digits in threes: 5,000 and 1_234_567, never 1,5 (a decimal
    // comma elsewhere) or 50,00.
    let groups: Vec<&str> = whole.split([',', '_']).collect();
    if groups.len() > 1
        && (groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3))
    {
        return None;
    }
    let mut mantissa: u128 = 0;
    for b in groups.iter().flat_map(|g| g.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(b - b'0'))?;
    }
    let mut scale = 0u32;
    if let Some(f) = frac {
        if f.is_empty() && whole.is_empty() {
            return None;
        }
        for b in f.bytes() {
            if !b.is_ascii_digit() || scale >= 30 {
                return None;
            }
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(u128::from(b - b'0'))?;
            scale += 1;
        }
    }
    Some(Decimal { mantissa, scale })
}

/// `d * mult`, when that is a whole number.
fn whole_times(d: Decimal, mult: u128) -> Option<u128> {
    let n = d.mantissa.checked_mul(mult)?;
    let div = 10u128.checked_pow(d.scale)?;
    (n % div == 0).then_some(n / div)
}

const TOKENS_HINT: &str = "e.g. 5000, 5,000, 5_000, 50K or 1.5M";

/// A token count greater than zero: `5000`, `5,000`, `5_000`, `50K`, `50k`, `1.5M`.
/// `K` is a thousand and `M` a million (as the reports print them); the result must be a
/// whole number of tokens.
pub fn parse_tokens(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "must be a whole number greater than 0, {TOKENS_HINT}"
        ));
    }
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1_000u128),
        Some((i, 'm' | 'M')) => (&t[..i], 1_000_000u128),
        _ => (t, 1u128),
    };
    let d = parse_decimal(num.trim_end())
        .ok_or_else(|| format!("not a number of tokens, {TOKENS_HINT}"))?;
    let n = whole_times(d, mult)
        .ok_or_else(|| format!("not a whole number of tokens, {TOKENS_HINT}"))?;
    match u64::try_from(n) {
        Ok(0) => Err("must be greater than 0 (leave the budget out for no limit)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("too large a number of tokens".into()),
    }
}

const USD_HINT: &str = "e.g. 2.50, $2.50 or $5";

/// US dollars greater than zero: `2.50`, `$2.50`, `$5`, `1,000`, `$0.0113`. Exact to the
/// nanodollar; finer amounts are rejected rather than rounded to zero.
pub fn parse_dollars(s: &str) -> Result<Usd, String> {
    let t = s.trim();
    let t = t.strip_prefix('$').unwrap_or(t).trim_start();
    if t.starts_with('-') {
        return Err(format!(
            "must be an amount of US dollars greater than 0, {USD_HINT}"
        ));
    }
    let d = parse_decimal(t).ok_or_else(|| format!("not an amount of US dollars, {USD_HINT}"))?;
    let nanos = whole_times(d, Usd::NANOS_PER_DOLLAR as u128)
        .ok_or_else(|| "is finer than a billionth of a dollar".to_string())?;
    match i64::try_from(nanos) {
        Ok(0) => Err(format!(
            "must be an amount of US dollars greater than 0, {USD_HINT}"
        )),
        Ok(n) => Ok(Usd(n)),
        Err(_) => Err("too large an amount of US dollars".into()),
    }
}

const DURATION_HINT: &str = "e.g. 90, 90s, 10m, 1.5h, 1m30s or 500ms";

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ms" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000_000,
        _ => return None,
    })
}

/// A duration, 0 or more: `90` (seconds, when `bare_is_secs`), `90s`, `2.5s`, `10m`,
/// `1.5h`, `500ms`, `1m30s`, `2h 15m`. Units: ms, s/sec, m/min, h/hr (and their long
/// forms). Exact to the nanosecond; finer amounts are rejected.
pub fn parse_duration(s: &str, bare_is_secs: bool) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(format!("expected a duration, {DURATION_HINT}"));
    }
    if t.starts_with('-') {
        return Err(format!("a duration must be 0 or more, {DURATION_HINT}"));
    }
    let bad = || format!("not a duration, {DURATION_HINT}");
    let mut rest = t.as_str();
    let mut total: u128 = 0;
    let mut parts = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_' || c == ','))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let d = parse_decimal(num).ok_or_else(bad)?;
        let per = if unit.is_empty() {
            if parts > 0 || !after.trim().is_empty() {
                return Err(bad());
            }
            if !bare_is_secs {
                return Err(format!(
                    "a duration needs a unit (s, m or h), {DURATION_HINT}"
                ));
            }
            1_000_000_000
        } else {
            unit_nanos(unit).ok_or_else(bad)?
        };
        let nanos = whole_times(d, per).ok_or_else(|| "is finer than a nanosecond".to_string())?;
        total = total.checked_add(nanos).ok_or_else(bad)?;
        parts += 1;
        rest = after.trim_start();
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| "too long a duration".to_string())?;
    // Far beyond any run; keeps `now + d` arithmetic safe everywhere.
    if secs > 10 * 365 * 24 * 3600 {
        return Err("too long a duration (at most 10 years)".into());
    }
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_token_form() {
        let ok = [
            ("5000", 5000),
            (" 5000 ", 5000),
            ("5,000", 5000),
            ("5_000", 5000),
            ("1,234,567", 1_234_567),
            ("50K", 50_000),
            ("50k", 50_000),
            ("1k", 1000),
            ("1.5K", 1500),
            ("1.5M", 1_500_000),
            ("2m", 2_000_000),
            ("0.001M", 1000),
            ("1,000K", 1_000_000),
            ("50 K", 50_000),
            (".5K", 500),
            ("18446744073709551615", u64::MAX),
        ];
        for (s, want) in ok {
            assert_eq!(parse_tokens(s), Ok(want), "{s}");
        }
        for bad in [
            "",
            "0",
            "0K",
            "-5",
            "abc",
            "1.5",
            "1.2345K",
            "5,00,",
            ",5",
            "5__0",
            "5.5.5",
            "1e3",
            "K",
            "5G",
            "18446744073709551616",
            "1,5",
            "50,00",
            "1,5000",
            "nan",
        ] {
            assert!(parse_tokens(bad).is_err(), "{bad} should be rejected");
        }
        assert!(parse_tokens("1.5").unwrap_err().contains("whole number"));
        assert!(parse_tokens("0").unwrap_err().contains("greater than 0"));
    }

    #[test]
    fn every_dollar_form() {
        let ok = [
            ("5", 5_000_000_000),
            ("$5", 5_000_000_000),
            ("$ 5", 5_000_000_000),
            ("2.50", 2_500_000_000),
            ("$2.50", 2_500_000_000),
            ("0.0113", 11_300_000),
            ("$1,000", 1_000_000_000_000),
            ("1_000.5", 1_000_500_000_000),
            ("0.000000001", 1),
        ];
        for (s, want) in ok {
            assert_eq!(parse_dollars(s), Ok(Usd(want)), "{s}");
        }
        for bad in [
            "",
            "$",
            "0",
            "$0",
            "-1",
            "$-1",
            "NaN",
            "inf",
            "lots",
            "0.0000000001",
            "1e3",
            "5 USD",
        ] {
            assert!(parse_dollars(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn every_duration_form() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let ok = [
            ("90", s(90)),
            ("0", s(0)),
            ("2.5", ms(2500)),
            ("90s", s(90)),
            ("90 s", s(90)),
            ("2.5s", ms(2500)),
            ("90sec", s(90)),
            ("10m", s(600)),
            ("10min", s(600)),
            ("10 minutes", s(600)),
            ("1.5h", s(5400)),
            ("2hr", s(7200)),
            ("1 hour", s(3600)),
            ("500ms", ms(500)),
            ("1m30s", s(90)),
            ("2h 15m", s(8100)),
            ("1H", s(3600)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text, true), Ok(want), "{text}");
        }
        for bad in [
            "",
            "-5",
            "-5s",
            "5d",
            "abc",
            "1.5.5s",
            "s",
            "m5",
            "10m5",
            "5 5",
            "1e3s",
            "99999999999h",
        ] {
            assert!(
                parse_duration(bad, true).is_err(),
                "{bad} should be rejected"
            );
        }
        assert!(parse_duration("45", false).unwrap_err().contains("unit"));
        assert_eq!(parse_duration("45s", false), Ok(s(45)));
    }

    proptest! {
        #[test]
        fn tokens_round_trip_every_spelling(n in 1u64..1_000_000_000_000) {
            prop_assert_eq!(parse_tokens(&n.to_string()), Ok(n));
            let grouped = group(n, ',');
            prop_assert_eq!(parse_tokens(&grouped), Ok(n));
            prop_assert_eq!(parse_tokens(&group(n, '_')), Ok(n));
            if n % 1000 == 0 {
                prop_assert_eq!(parse_tokens(&format!("{}K", n / 1000)), Ok(n));
            }
            if n % 100 == 0 {
                let k = format!("{}.{}K", n / 1000, (n % 1000) / 100);
                prop_assert_eq!(parse_tokens(&k), Ok(n));
            }
        }

        #[test]
        fn dollars_match_nanodollars(n in 1i64..1_000_000_000_000_000) {
            let text = format!("${}.{:09}", n / 1_000_000_000, n % 1_000_000_000);
            prop_assert_eq!(parse_dollars(&text), Ok(Usd(n)));
        }

        #[test]
        fn durations_in_any_unit_agree(secs in 0u64..1_000_000) {
            let want = Duration::from_secs(secs);
            prop_assert_eq!(parse_duration(&secs.to_string(), true), Ok(want));
            prop_assert_eq!(parse_duration(&format!("{secs}s"), false), Ok(want));
            prop_assert_eq!(parse_duration(&format!("{}ms", secs * 1000), false), Ok(want));
            let text = format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60);
            prop_assert_eq!(parse_duration(&text, false), Ok(want));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,20}") {
            let _ = parse_tokens(&s);
            let _ = parse_dollars(&s);
            let _ = parse_duration(&s, true);
        }
    }

    fn group(n: u64, sep: char) -> String {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(sep);
            }
            out.push(c);
        }
        out
    }
}
