//! `orchestrator budget`: a project's periodic budgets (daily, weekly, monthly) as a
//! table or one JSON object: for each, what every run used in the current period, what
//! live runs hold in reservation, the limit, when the period ends and the burn rate.
//!
//! Pure: the caller reads the ledger and the clock and passes [`Row`]s and the time; the
//! forecast is the live view's ([`forecast::burn`]), over the time elapsed in the period.

use crate::core::budget::{Amount, BudgetKey, Unit};
use crate::core::period::Window;
use crate::core::usage::{fmt_count, Usd};
use crate::output::events::percent;
use crate::output::report::{bar, display_width, fmt_duration, forecast, sanitize};
use crate::output::style::Styles;
use crate::output::usage::ts;
use chrono::{DateTime, Local, Utc};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// Where the budgets shown come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The periodic flags and/or `--config FILE`.
    Given,
    /// Recorded by this run, the project's newest that set one.
    Run { run_id: String, started_ms: i64 },
}

/// One budget in its current period, with the ledger's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// A periodic scope (`Scope::Periodic`) and a unit.
    pub key: BudgetKey,
    pub window: Window,
    pub limit: Amount,
    /// Recorded by every run that started in the window.
    pub used: Amount,
    /// Held by live runs (unexpired leases).
    pub reserved: Amount,
}

/// Everything `orchestrator budget` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub project: String,
    /// The zone's name: `UTC`, `local`, `Europe/Berlin`.
    pub zone: String,
    pub now: DateTime<Utc>,
    pub source: Source,
    /// `false`: the ledger does not exist yet (everything reads as zero).
    pub ledger_found: bool,
    pub rows: Vec<Row>,
}

/// The spending pace of one budget over its period so far, and where it leads.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pace {
    /// Units (tokens, dollars) per hour.
    per_hour: f64,
    /// Used at the period's end at that rate (units).
    projected: f64,
    /// When the limit is reached at that rate, if before the period ends.
    reaches_limit_at: Option<DateTime<Utc>>,
}

/// `amount` in its display unit: tokens, or dollars.
fn units(a: Amount) -> f64 {
    match a {
        Amount::Tokens(t) => t as f64,
        Amount::Usd(u) => u.as_dollars(),
    }
}

impl Row {
    fn elapsed(&self, now: DateTime<Utc>) -> Duration {
        (now - self.window.start).to_std().unwrap_or_default()
    }

    fn ends_in(&self, now: DateTime<Utc>) -> Duration {
        (self.window.end - now).to_std().unwrap_or_default()
    }

    /// `None` too early in the period (the live view's [`forecast::MIN_ELAPSED`]) or
    /// with nothing used yet.
    fn pace(&self, now: DateTime<Utc>) -> Option<Pace> {
        let (used, limit) = (units(self.used), units(self.limit));
        let burn = forecast::burn(used, limit, self.elapsed(now))?;
        let per_hour = burn.per_minute * 60.0;
        let left = self.ends_in(now);
        let reaches_limit_at = burn
            .runs_out_in
            .filter(|d| *d < left)
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| now + d);
        Some(Pace {
            per_hour,
            projected: used + per_hour * left.as_secs_f64() / 3600.0,
            reaches_limit_at,
        })
    }

    /// Limit less used and reserved, never below zero.
    fn remaining(&self) -> Amount {
        let left = self.limit.raw() - self.used.raw() - self.reserved.raw();
        Amount::from_raw(self.key.unit, left.max(0))
    }

    /// `day`, `week all`, `month /review`.
    fn key_text(&self) -> String {
        self.key.scope.key_text().unwrap_or_default()
    }
}

#[derive(Serialize)]
struct PaceOut {
    per_hour: f64,
    projected: f64,
    reaches_limit_at: Option<String>,
}

#[derive(Serialize)]
struct RowOut {
    scope: &'static str,
    key: String,
    unit: &'static str,
    period: &'static str,
    label: String,
    start: String,
    end: String,
    ends_in_secs: u64,
    limit: Amount,
    used: Amount,
    reserved: Amount,
    remaining: Amount,
    percent: f64,
    burn: Option<PaceOut>,
}

#[derive(Serialize)]
struct SourceOut {
    from: &'static str,
    run_id: Option<String>,
    started: Option<String>,
}

#[derive(Serialize)]
struct Out {
    project: String,
    zone: String,
    now: String,
    source: SourceOut,
    budgets: Vec<RowOut>,
}

/// The `--json` document (one line); README "orchestrator budget" and
/// `schema/budget.schema.json` describe it.
pub fn to_json(v: &View) -> String {
    let rows = v
        .rows
        .iter()
        .map(|r| RowOut {
            scope: r.key.scope.kind(),
            key: r.key_text(),
            unit: r.key.unit.as_str(),
            period: r.window.period.as_str(),
            label: r.window.label.clone(),
            start: ts(r.window.start.timestamp_millis()),
            end: ts(r.window.end.timestamp_millis()),
            ends_in_secs: r.ends_in(v.now).as_secs(),
            limit: r.limit,
            used: r.used,
            reserved: r.reserved,
            remaining: r.remaining(),
            percent: percent(r.used, r.limit),
            burn: r.pace(v.now).map(|p| PaceOut {
                per_hour: round_to(p.per_hour, r.key.unit),
                projected: round_to(p.projected, r.key.unit),
                reaches_limit_at: p.reaches_limit_at.map(|t| ts(t.timestamp_millis())),
            }),
        })
        .collect();
    let source = match &v.source {
        Source::Given => SourceOut {
            from: "given",
            run_id: None,
            started: None,
        },
        Source::Run { run_id, started_ms } => SourceOut {
            from: "run",
            run_id: Some(run_id.clone()),
            started: Some(ts(*started_ms)),
        },
    };
    let out = Out {
        project: v.project.clone(),
        zone: v.zone.clone(),
        now: ts(v.now.timestamp_millis()),
        source,
        budgets: rows,
    };
    serde_json::to_string(&out).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Whole tokens; dollars to the nanodollar.
fn round_to(x: f64, unit: Unit) -> f64 {
    match unit {
        Unit::Tokens => x.round(),
        Unit::Usd => Usd::from_dollars(x).as_dollars(),
    }
}

/// `1.2M` or `$3.1000`.
fn amount_text(a: Amount) -> String {
    match a {
        Amount::Tokens(t) => fmt_count(t),
        Amount::Usd(u) => u.to_string(),
    }
}

/// A rate per hour in the budget's unit: `81.4K/h`, `$1.9200/h`.
fn rate_text(per_hour: f64, unit: Unit) -> String {
    match unit {
        Unit::Tokens => format!("{}/h", fmt_count(per_hour.round() as u64)),
        Unit::Usd => format!("{}/h", Usd::from_dollars(per_hour)),
    }
}

/// A time span for periods as long as a month: `4.2s`, `1m05s`, `5h12m`, `17d04h`.
pub fn fmt_span(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 86_400 {
        fmt_duration(d)
    } else {
        format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600)
    }
}

/// Local wall-clock time: `2026-12-07 01:00`.
fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

/// What the pace leads to, in words.
fn outlook(r: &Row, now: DateTime<Utc>) -> String {
    if r.used.raw() >= r.limit.raw() {
        return "limit reached".to_string();
    }
    match r.pace(now) {
        None => "-".to_string(),
        Some(Pace {
            reaches_limit_at: Some(t),
            ..
        }) => {
            let left = (t - now).to_std().unwrap_or_default();
            format!("limit at {} (in {})", local(t), fmt_span(left))
        }
        Some(p) => {
            let at_end = if p.projected.is_finite() {
                p.projected * 100.0 / units(r.limit)
            } else {
                0.0
            };
            format!("stays under (~{at_end:.0}% at the end)")
        }
    }
}

/// The table: a header naming the project, zone and where the budgets come from, then
/// one row per budget. The bar is the live view's (used against the limit).
pub fn render_table(v: &View, styles: &Styles) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        styles.bold(&format!(
            "Periodic budgets of project {} · periods in {} · times local (UTC{})",
            sanitize(&v.project),
            v.zone,
            v.now.with_timezone(&Local).format("%:z")
        ))
    );
    match &v.source {
        Source::Given => {}
        Source::Run { run_id, started_ms } => {
            let started = DateTime::from_timestamp_millis(*started_ms)
                .map(local)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "as set by the project's newest run with one: {}, started {started}",
                sanitize(run_id)
            );
        }
    }
    if !v.ledger_found {
        let _ = writeln!(out, "the ledger does not exist yet: nothing is recorded");
    }
    out.push('\n');

    let head = [
        "BUDGET",
        "PERIOD",
        "USED",
        "RESERVED",
        "LIMIT",
        "USE",
        "ENDS",
        "BURN",
        "AT THIS RATE",
    ];
    // Columns that hold numbers are right-aligned.
    let right = [false, false, true, true, true, false, false, true, false];
    let rows: Vec<[String; 9]> = v
        .rows
        .iter()
        .map(|r| {
            [
                sanitize(&format!("{} {}", r.key_text(), r.key.unit.as_str())),
                r.window.label.clone(),
                amount_text(r.used),
                amount_text(r.reserved),
                amount_text(r.limit),
                bar(
                    units(r.used),
                    units(r.limit),
                    &Styles::plain().with_ascii(styles.is_ascii()),
                ),
                format!(
                    "{} (in {})",
                    local(r.window.end),
                    fmt_span(r.ends_in(v.now))
                ),
                r.pace(v.now)
                    .map_or_else(|| "-".to_string(), |p| rate_text(p.per_hour, r.key.unit)),
                outlook(r, v.now),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = head.iter().map(|h| display_width(h)).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(display_width(c));
        }
    }
    let line = |cells: &[String], paint: &dyn Fn(usize, &str) -> String| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = " ".repeat(w.saturating_sub(display_width(c)));
            let text = paint(i, c);
            if right[i] {
                let _ = write!(l, "{pad}{text}");
            } else {
                let _ = write!(l, "{text}{pad}");
            }
        }
        l.trim_end().to_string()
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    let _ = writeln!(out, "{}", styles.bold(&line(&head, &|_, c| c.to_string())));
    for (cells, r) in rows.iter().zip(&v.rows) {
        // The bar is measured plain and drawn in colour.
        let paint = |i: usize, c: &str| {
            if i == 5 {
                bar(units(r.used), units(r.limit), styles)
            } else {
                c.to_string()
            }
        };
        let _ = writeln!(out, "{}", line(cells, &paint));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::Scope;
    use crate::core::period::{Period, PeriodScope, Zone};
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, h, m, 0)
            .single()
            .expect("time")
    }

    fn day_row(used: u64, reserved: u64, limit: u64) -> Row {
        Row {
            key: BudgetKey {
                scope: Scope::Periodic(Period::Day, PeriodScope::Project),
                unit: Unit::Tokens,
            },
            window: Zone::Utc.window(Period::Day, at(12, 0)),
            limit: Amount::Tokens(limit),
            used: Amount::Tokens(used),
            reserved: Amount::Tokens(reserved),
        }
    }

    fn view(rows: Vec<Row>, now: DateTime<Utc>) -> View {
        View {
            project: "api".into(),
            zone: "UTC".into(),
            now,
            source: Source::Given,
            ledger_found: true,
            rows,
        }
    }

    #[test]
    fn json_carries_figures_window_and_pace() {
        // 600K in the first 12 hours of the day: 50K/h; 400K left reached in 8h.
        let v = view(vec![day_row(600_000, 40_000, 1_000_000)], at(12, 0));
        let j: serde_json::Value = serde_json::from_str(&to_json(&v)).expect("JSON");
        let b = &j["budgets"][0];
        assert_eq!(j["project"], "api");
        assert_eq!(j["zone"], "UTC");
        assert_eq!(j["now"], "2026-12-06T12:00:00.000Z");
        assert_eq!(j["source"]["from"], "given");
        assert_eq!(b["scope"], "periodic");
        assert_eq!(b["key"], "day");
        assert_eq!(b["unit"], "tokens");
        assert_eq!(b["period"], "day");
        assert_eq!(b["label"], "2026-12-06");
        assert_eq!(b["start"], "2026-12-06T00:00:00.000Z");
        assert_eq!(b["end"], "2026-12-07T00:00:00.000Z");
        assert_eq!(b["ends_in_secs"], 12 * 3600);
        assert_eq!(b["used"], 600_000);
        assert_eq!(b["reserved"], 40_000);
        assert_eq!(b["limit"], 1_000_000);
        assert_eq!(b["remaining"], 360_000);
        assert_eq!(b["percent"], 60.0);
        assert_eq!(b["burn"]["per_hour"], 50_000.0);
        assert_eq!(b["burn"]["projected"], 1_200_000.0);
        assert_eq!(b["burn"]["reaches_limit_at"], "2026-12-06T20:00:00.000Z");
        // A slower pace stays under until midnight.
        let v = view(vec![day_row(300_000, 0, 1_000_000)], at(12, 0));
        let j: serde_json::Value = serde_json::from_str(&to_json(&v)).expect("JSON");
        assert_eq!(j["budgets"][0]["burn"]["projected"], 600_000.0);
        assert_eq!(
            j["budgets"][0]["burn"]["reaches_limit_at"],
            serde_json::Value::Null
        );
        // Nothing used: no pace at all.
        let v = view(vec![day_row(0, 0, 1_000_000)], at(12, 0));
        let j: serde_json::Value = serde_json::from_str(&to_json(&v)).expect("JSON");
        assert_eq!(j["budgets"][0]["burn"], serde_json::Value::Null);
    }

    #[test]
    fn dollars_are_exact_and_the_source_run_is_named() {
        let mut r = day_row(0, 0, 1);
        r.key.unit = Unit::Usd;
        r.limit = Amount::Usd(Usd::from_dollars(40.0));
        r.used = Amount::Usd(Usd(12_345_678_901));
        r.reserved = Amount::Usd(Usd::ZERO);
        let mut v = view(vec![r], at(6, 0));
        v.source = Source::Run {
            run_id: "6f1c".into(),
            started_ms: at(1, 0).timestamp_millis(),
        };
        let j: serde_json::Value = serde_json::from_str(&to_json(&v)).expect("JSON");
        let b = &j["budgets"][0];
        assert_eq!(b["unit"], "usd");
        assert_eq!(b["used"], 12.345678901);
        assert_eq!(b["limit"], 40.0);
        assert_eq!(b["burn"]["per_hour"], 2.057613150);
        assert_eq!(j["source"]["from"], "run");
        assert_eq!(j["source"]["run_id"], "6f1c");
        assert_eq!(j["source"]["started"], "2026-12-06T01:00:00.000Z");
        let text = render_table(&v, &Styles::plain());
        assert!(
            text.contains("as set by the project's newest run with one: 6f1c"),
            "{text}"
        );
        assert!(text.contains("$12.3457"), "{text}");
        assert!(text.contains("$2.0576/h"), "{text}");
    }

    #[test]
    fn the_table_has_a_bar_the_end_and_the_outlook() {
        let v = view(
            vec![
                day_row(600_000, 40_000, 1_000_000),
                day_row(1_200_000, 0, 1_000_000),
            ],
            at(12, 0),
        );
        let text = render_table(&v, &Styles::plain());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Periodic budgets of project api · periods in UTC"));
        assert!(lines[2].starts_with("BUDGET"), "{text}");
        assert!(lines[3].starts_with("day tokens  2026-12-06"), "{text}");
        assert!(lines[3].contains("600.0K"), "{text}");
        assert!(lines[3].contains("40.0K"), "{text}");
        assert!(lines[3].contains("[████████████░░░░░░░░] 60.0%"), "{text}");
        assert!(lines[3].contains("(in 12h00m)"), "{text}");
        assert!(lines[3].contains("50.0K/h"), "{text}");
        assert!(lines[3].contains("limit at "), "{text}");
        assert!(lines[3].contains("(in 8h00m)"), "{text}");
        assert!(lines[4].contains("120.0%"), "{text}");
        assert!(lines[4].ends_with("limit reached"), "{text}");
        // Every row lines up under the header.
        let col = |l: &str| l.find("2026-12-06").expect("period");
        assert_eq!(col(lines[3]), col(lines[4]));
        assert_eq!(lines[2].find("PERIOD"), Some(col(lines[3])));
        // ASCII when the locale is not UTF-8; colour only in the bar and its number.
        let ascii = render_table(&v, &Styles::plain().with_ascii(true));
        assert!(ascii.contains("[############--------] 60.0%"), "{ascii}");
        let coloured = render_table(&v, &Styles::colored());
        assert!(coloured.contains("\x1b[32m60.0%"), "{coloured}");
    }

    #[test]
    fn spans_longer_than_a_day_count_days() {
        assert_eq!(fmt_span(Duration::from_secs(5 * 3600 + 12 * 60)), "5h12m");
        assert_eq!(
            fmt_span(Duration::from_secs(17 * 86_400 + 4 * 3600 + 59)),
            "17d04h"
        );
    }
}
