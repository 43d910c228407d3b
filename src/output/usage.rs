//! `orchestrator usage`: the ledger's groups as a table (bars on a terminal) or one JSON
//! object. The store sums exactly (integer tokens and nanodollars); this module only
//! derives ratios and percentiles and lays them out.

use crate::core::efficiency::efficiency;
use crate::core::estimate::percentile;
use crate::core::usage::{fmt_count, Usage, Usd};
use crate::output::report::{bar, display_width, fmt_percent, sanitize};
use crate::output::style::Styles;
use crate::store::{GroupBy, GroupSums, RunStatus};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Default `--since`: the last 30 days.
pub const DEFAULT_SINCE_DAYS: i64 = 30;

/// `7d`, `24h`, `90m`, `2w` (ago), `2026-12-01` (UTC midnight) or an RFC 3339 time, as
/// Unix milliseconds.
pub fn parse_when(s: &str, now: DateTime<Utc>) -> Result<i64, String> {
    let t = s.trim();
    let unit_ms = |u: char| match u {
        'm' => Some(60_000i64),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        'w' => Some(7 * 86_400_000),
        _ => None,
    };
    if let Some(u) = t.chars().last() {
        if let (Some(ms), Ok(n)) = (unit_ms(u), t[..t.len() - 1].parse::<i64>()) {
            if n >= 0 {
                return Ok(now.timestamp_millis() - n.saturating_mul(ms));
            }
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(dt) = d.and_hms_opt(0, 0, 0) {
            return Ok(Utc.from_utc_datetime(&dt).timestamp_millis());
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    Err(format!(
        "'{s}' is not a time: give 7d, 24h, 90m, 2w (ago), a date like 2026-12-01 (UTC) or an RFC 3339 time"
    ))
}

fn day_date(day: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(day.checked_mul(86_400)?, 0).map(|d| d.date_naive())
}

/// The display key of a day number under `by`: `2026-12-06`, `2026-W49`, `2026-12`.
fn period_key(day: i64, by: GroupBy) -> String {
    let Some(d) = day_date(day) else {
        return day.to_string();
    };
    match by {
        GroupBy::Week => {
            let w = d.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        GroupBy::Month => format!("{}-{:02}", d.year(), d.month()),
        _ => d.format("%Y-%m-%d").to_string(),
    }
}

/// The store's groups with their display keys; days merged into weeks or months.
pub fn finalize(groups: Vec<GroupSums>, by: GroupBy) -> Vec<GroupSums> {
    if !matches!(by, GroupBy::Day | GroupBy::Week | GroupBy::Month) {
        return groups;
    }
    let mut merged: BTreeMap<String, GroupSums> = BTreeMap::new();
    for g in groups {
        let key = g
            .key
            .parse::<i64>()
            .map_or_else(|_| g.key.clone(), |d| period_key(d, by));
        let m = merged.entry(key.clone()).or_insert_with(|| GroupSums {
            key,
            ..GroupSums::default()
        });
        // A run belongs to the day it started, so run counts add up across days.
        m.runs += g.runs;
        m.instances += g.instances;
        m.completed += g.completed;
        m.usage += g.usage;
        m.cost += g.cost;
        m.tool_calls += g.tool_calls;
        m.completed_tokens.extend(g.completed_tokens);
    }
    merged
        .into_values()
        .map(|mut g| {
            g.completed_tokens.sort_unstable();
            g
        })
        .collect()
}

fn pct(g: &GroupSums, p: u32) -> Option<u64> {
    (!g.completed_tokens.is_empty()).then(|| percentile(&g.completed_tokens, p))
}

fn run_status(g: &GroupSums, now_ms: i64, stale_ms: i64) -> Option<RunStatus> {
    g.run
        .as_ref()
        .map(|r| RunStatus::of(r.ended, r.heartbeat_ms, now_ms, stale_ms))
}

/// UTC, RFC 3339 with milliseconds, as every JSON output writes times.
pub(crate) fn ts(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The usage object of the events: the four classes, `total_tokens` and `cost_usd`.
#[derive(Serialize)]
struct UsageOut {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    total_tokens: u64,
    cost_usd: Usd,
}

impl UsageOut {
    fn of(u: &Usage, cost: Usd) -> UsageOut {
        UsageOut {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            total_tokens: u.total(),
            cost_usd: cost,
        }
    }
}

#[derive(Serialize)]
struct RunOut {
    status: Option<&'static str>,
    exit_code: Option<i32>,
    started: Option<String>,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    key: &'a str,
    runs: u64,
    instances: u64,
    completed: u64,
    usage: UsageOut,
    tool_calls: u64,
    cache_hit_rate: Option<f64>,
    tokens_per_tool_call: Option<f64>,
    cost_per_completed_usd: Option<Usd>,
    p50_tokens: Option<u64>,
    p75_tokens: Option<u64>,
    p95_tokens: Option<u64>,
    #[serde(flatten)]
    run: Option<RunOut>,
}

#[derive(Serialize)]
struct Out<'a> {
    groups: Vec<GroupOut<'a>>,
    totals: UsageOut,
}

/// The `--json` object: `{"groups": [...], "totals": {usage}}`, as one line. Serialised
/// straight from structs: with 10,000 groups (`--by run`) a `Value` tree cost a third of
/// the command's time.
pub fn to_json(groups: &[GroupSums], by: GroupBy, now_ms: i64, stale_ms: i64) -> String {
    let mut totals = Usage::default();
    let mut cost = Usd::ZERO;
    let list: Vec<GroupOut> = groups
        .iter()
        .map(|g| {
            totals += g.usage;
            cost += g.cost;
            let e = efficiency(&g.usage, g.cost, g.tool_calls, g.completed);
            GroupOut {
                key: &g.key,
                runs: g.runs,
                instances: g.instances,
                completed: g.completed,
                usage: UsageOut::of(&g.usage, g.cost),
                tool_calls: g.tool_calls,
                cache_hit_rate: e.cache_hit_rate,
                tokens_per_tool_call: e.tokens_per_tool_call,
                cost_per_completed_usd: e.cost_per_completed,
                p50_tokens: pct(g, 50),
                p75_tokens: pct(g, 75),
                p95_tokens: pct(g, 95),
                run: (by == GroupBy::Run).then(|| RunOut {
                    status: run_status(g, now_ms, stale_ms).map(RunStatus::as_str),
                    exit_code: g.run.as_ref().and_then(|r| r.exit_code),
                    started: g.run.as_ref().map(|r| ts(r.started_ms)),
                }),
            }
        })
        .collect();
    let out = Out {
        groups: list,
        totals: UsageOut::of(&totals, cost),
    };
    serde_json::to_string(&out).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The table: one row per group, then the totals; a cost bar per group (relative to the
/// most expensive group) when `bars`.
pub fn render_table(
    groups: &[GroupSums],
    by: GroupBy,
    styles: &Styles,
    bars: bool,
    now_ms: i64,
    stale_ms: i64,
) -> String {
    let mut out = String::new();
    if groups.is_empty() {
        out.push_str("no usage recorded in this period\n");
        return out;
    }
    let dash = || "-".to_string();
    let mut head: Vec<&str> = vec!["KEY"];
    if by == GroupBy::Run {
        head.extend(["STATUS", "STARTED", "EXIT"]);
    }
    head.extend([
        "RUNS", "INST", "DONE", "INPUT", "OUTPUT", "CACHE-W", "CACHE-R", "TOTAL", "COST", "HIT",
        "TOK/TOOL", "$/DONE", "P50", "P75", "P95",
    ]);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut totals = Usage::default();
    let mut total_cost = Usd::ZERO;
    let (mut runs, mut insts, mut done, mut tools) = (0u64, 0u64, 0u64, 0u64);
    for g in groups {
        totals += g.usage;
        total_cost += g.cost;
        runs += g.runs;
        insts += g.instances;
        done += g.completed;
        tools += g.tool_calls;
        let e = efficiency(&g.usage, g.cost, g.tool_calls, g.completed);
        let mut r = vec![sanitize(&g.key)];
        if by == GroupBy::Run {
            r.push(run_status(g, now_ms, stale_ms).map_or_else(dash, |s| s.as_str().to_string()));
            r.push(g.run.as_ref().map_or_else(dash, |i| {
                DateTime::from_timestamp_millis(i.started_ms)
                    .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default()
            }));
            r.push(
                g.run
                    .as_ref()
                    .and_then(|i| i.exit_code)
                    .map_or_else(dash, |c| c.to_string()),
            );
        }
        r.extend(counts(g.runs, g.instances, g.completed, &g.usage, g.cost));
        r.push(
            e.cache_hit_rate
                .map_or_else(dash, |h| fmt_percent(h * 100.0)),
        );
        r.push(
            e.tokens_per_tool_call
                .map_or_else(dash, |t| fmt_count(t.round() as u64)),
        );
        r.push(e.cost_per_completed.map_or_else(dash, |c| c.to_string()));
        for p in [50, 75, 95] {
            r.push(pct(g, p).map_or_else(dash, fmt_count));
        }
        rows.push(r);
    }
    let e = efficiency(&totals, total_cost, tools, done);
    let mut t = vec!["TOTAL".to_string()];
    if by == GroupBy::Run {
        t.extend([String::new(), String::new(), String::new()]);
    }
    t.extend(counts(runs, insts, done, &totals, total_cost));
    // One run can fall into several groups of these; its runs would be counted twice.
    if matches!(by, GroupBy::Command | GroupBy::Model | GroupBy::Instance) {
        t[1] = String::new();
    }
    t.push(
        e.cache_hit_rate
            .map_or_else(dash, |h| fmt_percent(h * 100.0)),
    );
    t.push(
        e.tokens_per_tool_call
            .map_or_else(dash, |x| fmt_count(x.round() as u64)),
    );
    t.push(e.cost_per_completed.map_or_else(dash, |c| c.to_string()));
    t.extend([String::new(), String::new(), String::new()]);

    let mut widths: Vec<usize> = head.iter().map(|h| display_width(h)).collect();
    for r in rows.iter().chain(std::iter::once(&t)) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(display_width(c));
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = w.saturating_sub(display_width(c));
            if i == 0 || (by == GroupBy::Run && i <= 2) {
                let _ = write!(l, "{c}{}", " ".repeat(pad));
            } else {
                let _ = write!(l, "{}{c}", " ".repeat(pad));
            }
        }
        l
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    let _ = writeln!(out, "{}", styles.bold(line(&head).trim_end()));
    let max_cost = groups.iter().map(|g| g.cost.0).max().unwrap_or(0) as f64;
    for (r, g) in rows.iter().zip(groups) {
        let mut l = line(r);
        if bars && max_cost > 0.0 {
            l.push_str("  ");
            l.push_str(&bar(g.cost.0 as f64, max_cost, styles));
        }
        let _ = writeln!(out, "{}", l.trim_end());
    }
    let _ = writeln!(out, "{}", styles.bold(line(&t).trim_end()));
    out
}

fn counts(runs: u64, insts: u64, done: u64, u: &Usage, cost: Usd) -> Vec<String> {
    vec![
        runs.to_string(),
        insts.to_string(),
        done.to_string(),
        fmt_count(u.input_tokens),
        fmt_count(u.output_tokens),
        fmt_count(u.cache_creation_input_tokens),
        fmt_count(u.cache_read_input_tokens),
        fmt_count(u.total()),
        cost.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn when_accepts_relative_dates_and_rfc3339() {
        let n = now().timestamp_millis();
        assert_eq!(parse_when("7d", now()), Ok(n - 7 * 86_400_000));
        assert_eq!(parse_when("24h", now()), Ok(n - 86_400_000));
        assert_eq!(parse_when("2w", now()), Ok(n - 14 * 86_400_000));
        assert_eq!(
            parse_when("2026-12-01", now()),
            Ok(Utc
                .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                .single()
                .expect("t")
                .timestamp_millis())
        );
        assert_eq!(parse_when("2026-12-06T11:00:00Z", now()), Ok(n - 3_600_000));
        let e = parse_when("yesterday", now()).expect_err("bad");
        assert!(e.contains("'yesterday' is not a time"), "{e}");
        assert!(parse_when("-3d", now()).is_err());
    }

    #[test]
    fn days_merge_into_iso_weeks_and_months() {
        // 2026-11-30 (Monday, W49) and 2026-12-06 (Sunday, W49), 2026-12-07 (W50).
        let day = |y, m, d| {
            NaiveDate::from_ymd_opt(y, m, d)
                .expect("date")
                .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
                .num_days()
        };
        let g = |d: i64, tokens: u64| GroupSums {
            key: d.to_string(),
            runs: 1,
            instances: 1,
            completed: 1,
            usage: Usage::new(tokens, 0, 0, 0),
            cost: Usd(1),
            completed_tokens: vec![tokens],
            ..GroupSums::default()
        };
        let groups = vec![
            g(day(2026, 11, 30), 1),
            g(day(2026, 12, 6), 2),
            g(day(2026, 12, 7), 3),
        ];
        let w = finalize(groups.clone(), GroupBy::Week);
        let keys: Vec<&str> = w.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, vec!["2026-W49", "2026-W50"]);
        assert_eq!(w[0].runs, 2);
        assert_eq!(w[0].completed_tokens, vec![1, 2]);
        let m = finalize(groups.clone(), GroupBy::Month);
        let keys: Vec<&str> = m.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, vec!["2026-11", "2026-12"]);
        assert_eq!(m[1].cost, Usd(2));
        let d = finalize(groups, GroupBy::Day);
        assert_eq!(d[0].key, "2026-11-30");
    }

    #[test]
    fn json_has_the_documented_shape() {
        let g = GroupSums {
            key: "/review".into(),
            runs: 2,
            instances: 4,
            completed: 3,
            usage: Usage::new(100, 50, 100, 800),
            cost: Usd(3_000_000_001),
            tool_calls: 10,
            completed_tokens: vec![10, 20, 30],
            run: None,
        };
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&[g], GroupBy::Command, 0, 30_000)).expect("JSON");
        let g0 = &v["groups"][0];
        assert_eq!(g0["key"], "/review");
        assert_eq!(g0["usage"]["total_tokens"], 1050);
        assert_eq!(g0["usage"]["cost_usd"], 3.000000001);
        assert_eq!(g0["cache_hit_rate"], 0.8);
        assert_eq!(g0["tokens_per_tool_call"], 105.0);
        assert_eq!(g0["cost_per_completed_usd"], 1.0);
        assert_eq!(g0["p50_tokens"], 20);
        assert_eq!(g0["p75_tokens"], 30);
        assert_eq!(g0["p95_tokens"], 30);
        assert!(g0.get("status").is_none());
        assert_eq!(v["totals"]["total_tokens"], 1050);
    }
}
