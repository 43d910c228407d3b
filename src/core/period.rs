//! Budget periods (issue 12): which calendar day, ISO week or month an instant falls in,
//! in a given time zone, and where that period starts and ends.
//!
//! Pure: the caller passes the instant and the zone (`chrono::Utc`, `chrono::Local` or a
//! `chrono_tz::Tz`); nothing here reads the clock or the system's zone. A period is named
//! by its label (`2026-12-06`, `2026-W49`, `2026-12`) together with the zone's name, and
//! that name is part of a periodic budget's key: a new period is a new budget, so nothing
//! is ever reset or zeroed.
//!
//! Local midnight does not always exist (a DST gap at 00:00, as in America/Santiago) and
//! can happen twice (a fall-back at 00:00). A period starts at the first instant whose
//! local date is the period's first day, so the windows of consecutive periods tile the
//! timeline with no gap and no overlap.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::fmt;

/// The length of a periodic budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// A calendar day.
    Day,
    /// An ISO 8601 week: Monday to Sunday, numbered by the year that holds its Thursday.
    Week,
    /// A calendar month.
    Month,
}

impl Period {
    pub const NAMES: [&'static str; 3] = ["day", "week", "month"];

    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// `daily`, `weekly`, `monthly`, as the flags name them.
    pub fn adjective(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
        }
    }

    /// The first local date of the period holding local date `d`.
    pub fn first_day(self, d: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => d,
            Period::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Period::Month => d.with_day(1).unwrap_or(d),
        }
    }

    /// The first local date of the period after the one starting on `first`.
    pub fn next_first_day(self, first: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => first + Duration::days(1),
            Period::Week => first + Duration::days(7),
            Period::Month => {
                let (y, m) = if first.month() == 12 {
                    (first.year() + 1, 1)
                } else {
                    (first.year(), first.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(first + Duration::days(31))
            }
        }
    }

    /// The label of the period starting on local date `first`: `2026-12-06`,
    /// `2026-W49` (ISO year and week, so 2020-12-28 is in `2020-W53` and 2021-01-03
    /// too), `2026-12`.
    pub fn label(self, first: NaiveDate) -> String {
        match self {
            Period::Day => first.format("%Y-%m-%d").to_string(),
            Period::Week => {
                let w = first.iso_week();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Period::Month => first.format("%Y-%m").to_string(),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One period in one zone: `[start, end)` in UTC, and its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Window {
    pub period: Period,
    /// `2026-12-06`, `2026-W49`, `2026-12`.
    pub label: String,
    /// The zone's name (`UTC`, `Europe/Berlin`, or `local` with its offset at start).
    pub zone: String,
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Exclusive: the next period's start.
    pub end: DateTime<Utc>,
}

impl Window {
    /// The period's key in the ledger: `day:2026-12-06@UTC`.
    pub fn key(&self) -> String {
        format!("{}:{}@{}", self.period, self.label, self.zone)
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// The first instant whose local date (in `tz`) is `date` or later. At an ordinary local
/// midnight that is midnight; at a fall-back that repeats midnight, the earlier one; in a
/// gap that skips midnight, the end of the gap.
pub fn start_of_local_date<Tz: TimeZone>(tz: &Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight: NaiveDateTime = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    if let Some(t) = tz.from_local_datetime(&midnight).earliest() {
        return t.with_timezone(&Utc);
    }
    // A gap: midnight does not exist. Gaps are shorter than a day; find the first
    // instant with that local date by bisection on whole UTC seconds (offsets change on
    // whole seconds).
    let guess = midnight.and_utc().timestamp();
    let mut lo = guess - 86_400;
    let mut hi = guess + 2 * 86_400;
    let local_date = |secs: i64| {
        Utc.timestamp_opt(secs, 0)
            .single()
            .map(|t| t.with_timezone(tz).date_naive())
    };
    // Invariant: local date at lo < date <= local date at hi (whole seconds).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_date(mid).is_some_and(|d| d >= date) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Utc.timestamp_opt(hi, 0)
        .single()
        .unwrap_or_else(|| midnight.and_utc())
}

/// The period of `period` kind holding instant `at`, in zone `tz` named `zone`.
pub fn window_at<Tz: TimeZone>(period: Period, at: DateTime<Utc>, tz: &Tz, zone: &str) -> Window {
    let local_date = at.with_timezone(tz).date_naive();
    let first = period.first_day(local_date);
    let next = period.next_first_day(first);
    Window {
        period,
        label: period.label(first),
        zone: zone.to_string(),
        start: start_of_local_date(tz, first),
        end: start_of_local_date(tz, next),
    }
}

/// Whose runs a periodic budget counts (config `budget.periodic[].scope`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum PeriodScope {
    /// Every run of `--project` (the flags' scope).
    #[default]
    Project,
    /// Every run recorded in the ledger, whatever its project.
    All,
    /// One base command (`/review`) within the project.
    Command(String),
}

impl PeriodScope {
    /// The budget's key in the report and events: `day` (project), `day all`,
    /// `day /review`.
    pub fn key(&self, period: Period) -> String {
        match self {
            PeriodScope::Project => period.as_str().to_string(),
            PeriodScope::All => format!("{period} all"),
            PeriodScope::Command(c) => format!("{period} {c}"),
        }
    }

    /// The inverse of [`PeriodScope::key`]: `day`, `week all`, `month /review`.
    pub fn parse_key(key: &str) -> Option<(Period, PeriodScope)> {
        let (period, rest) = match key.split_once(' ') {
            Some((p, rest)) => (p, Some(rest)),
            None => (key, None),
        };
        let period = Period::parse(period)?;
        let scope = match rest {
            None => PeriodScope::Project,
            Some("all") => PeriodScope::All,
            Some(c) if c.starts_with('/') && c.len() > 1 => PeriodScope::Command(c.to_string()),
            Some(_) => return None,
        };
        Some((period, scope))
    }
}

/// The zone periods are counted in (`--budget-timezone`): UTC by default, the machine's
/// local zone, or an IANA zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Utc,
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `utc`, `local` (any case) or an IANA name such as `Europe/Berlin`.
    pub fn parse(s: &str) -> Option<Zone> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "utc" => Some(Zone::Utc),
            "local" => Some(Zone::Local),
            _ => t.parse::<chrono_tz::Tz>().ok().map(Zone::Named),
        }
    }

    /// The name that goes into a period's key: `UTC`, `local`, `Europe/Berlin`.
    pub fn name(&self) -> &str {
        match self {
            Zone::Utc => "UTC",
            Zone::Local => "local",
            Zone::Named(tz) => tz.name(),
        }
    }

    /// The period of `period` kind holding instant `at`, counted in this zone.
    pub fn window(&self, period: Period, at: DateTime<Utc>) -> Window {
        match self {
            Zone::Utc => window_at(period, at, &Utc, self.name()),
            Zone::Local => window_at(period, at, &chrono::Local, self.name()),
            Zone::Named(tz) => window_at(period, at, tz, self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn w<Tz: TimeZone>(p: Period, at: &str, tz: &Tz) -> Window {
        window_at(p, utc(at), tz, "z")
    }

    #[test]
    fn scope_keys_parse_back() {
        for scope in [
            PeriodScope::Project,
            PeriodScope::All,
            PeriodScope::Command("/review".into()),
        ] {
            for p in [Period::Day, Period::Week, Period::Month] {
                assert_eq!(
                    PeriodScope::parse_key(&scope.key(p)),
                    Some((p, scope.clone()))
                );
            }
        }
        for bad in ["", "year", "day everything", "day /", "day  all"] {
            assert_eq!(PeriodScope::parse_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn utc_day_week_month() {
        let d = w(Period::Day, "2026-12-06T01:17:00Z", &Utc);
        assert_eq!(d.label, "2026-12-06");
        assert_eq!(d.start, utc("2026-12-06T00:00:00Z"));
        assert_eq!(d.end, utc("2026-12-07T00:00:00Z"));
        assert_eq!(d.key(), "day:2026-12-06@z");
        // 2026-12-06 is a Sunday: the ISO week began on Monday 2026-11-30.
        let wk = w(Period::Week, "2026-12-06T23:59:59Z", &Utc);
        assert_eq!(wk.label, "2026-W49");
        assert_eq!(wk.start, utc("2026-11-30T00:00:00Z"));
        assert_eq!(wk.end, utc("2026-12-07T00:00:00Z"));
        let m = w(Period::Month, "2026-12-06T01:17:00Z", &Utc);
        assert_eq!(m.label, "2026-12");
        assert_eq!(m.start, utc("2026-12-01T00:00:00Z"));
        assert_eq!(m.end, utc("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn boundaries_are_inclusive_at_start_exclusive_at_end() {
        let d = w(Period::Day, "2026-12-07T00:00:00Z", &Utc);
        assert_eq!(d.label, "2026-12-07");
        let d = w(Period::Day, "2026-12-06T23:59:59.999Z", &Utc);
        assert_eq!(d.label, "2026-12-06");
        assert!(d.contains(utc("2026-12-06T00:00:00Z")));
        assert!(!d.contains(utc("2026-12-07T00:00:00Z")));
    }

    #[test]
    fn iso_week_53_and_year_ends() {
        // 2020 has 53 ISO weeks; 2021-01-01..03 belong to 2020-W53.
        let a = w(Period::Week, "2021-01-03T12:00:00Z", &Utc);
        assert_eq!(a.label, "2020-W53");
        assert_eq!(a.start, utc("2020-12-28T00:00:00Z"));
        assert_eq!(a.end, utc("2021-01-04T00:00:00Z"));
        let b = w(Period::Week, "2021-01-04T00:00:00Z", &Utc);
        assert_eq!(b.label, "2021-W01");
        // 2024-12-30 (Monday) starts 2025-W01.
        let c = w(Period::Week, "2024-12-31T10:00:00Z", &Utc);
        assert_eq!(c.label, "2025-W01");
        assert_eq!(c.start, utc("2024-12-30T00:00:00Z"));
        // 2026 has 53 weeks too (it starts on a Thursday).
        let d = w(Period::Week, "2026-12-31T10:00:00Z", &Utc);
        assert_eq!(d.label, "2026-W53");
        assert_eq!(d.end, utc("2027-01-04T00:00:00Z"));
        let m = w(Period::Month, "2026-12-31T23:59:59Z", &Utc);
        assert_eq!(m.end, utc("2027-01-01T00:00:00Z"));
        let y = w(Period::Day, "2026-12-31T23:59:59Z", &Utc);
        assert_eq!(y.end, utc("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn leap_february() {
        let m = w(Period::Month, "2024-02-29T12:00:00Z", &Utc);
        assert_eq!(m.label, "2024-02");
        assert_eq!(m.end, utc("2024-03-01T00:00:00Z"));
        let m = w(Period::Month, "2026-02-28T12:00:00Z", &Utc);
        assert_eq!(m.end, utc("2026-03-01T00:00:00Z"));
    }

    #[test]
    fn zones_shift_the_day() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // 20:00 UTC on the 6th is 05:00 on the 7th in Tokyo.
        let d = w(Period::Day, "2026-12-06T20:00:00Z", &tokyo);
        assert_eq!(d.label, "2026-12-07");
        assert_eq!(d.start, utc("2026-12-06T15:00:00Z"));
        assert_eq!(d.end, utc("2026-12-07T15:00:00Z"));
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        let d = w(Period::Day, "2026-12-06T01:00:00Z", &la);
        assert_eq!(d.label, "2026-12-05");
    }

    #[test]
    fn dst_days_are_23_and_25_hours_long() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Spring forward 2026-03-29 02:00 -> 03:00.
        let d = w(Period::Day, "2026-03-29T12:00:00Z", &berlin);
        assert_eq!(d.start, utc("2026-03-28T23:00:00Z"));
        assert_eq!(d.end, utc("2026-03-29T22:00:00Z"));
        assert_eq!(d.end - d.start, Duration::hours(23));
        // Fall back 2026-10-25 03:00 -> 02:00.
        let d = w(Period::Day, "2026-10-25T12:00:00Z", &berlin);
        assert_eq!(d.end - d.start, Duration::hours(25));
        // The month holding the change is an hour short.
        let m = w(Period::Month, "2026-03-15T12:00:00Z", &berlin);
        assert_eq!(m.start, utc("2026-02-28T23:00:00Z"));
        assert_eq!(m.end, utc("2026-03-31T22:00:00Z"));
    }

    #[test]
    fn a_gap_at_midnight_starts_the_day_at_the_end_of_the_gap() {
        // Chile springs forward at local midnight: 2022-09-11 00:00 does not exist,
        // clocks go from 2022-09-10 23:59:59 -04 to 2022-09-11 01:00:00 -03.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let d = w(Period::Day, "2022-09-11T12:00:00Z", &santiago);
        assert_eq!(d.label, "2022-09-11");
        assert_eq!(d.start, utc("2022-09-11T04:00:00Z"));
        let before = w(Period::Day, "2022-09-11T03:59:59Z", &santiago);
        assert_eq!(before.label, "2022-09-10");
        assert_eq!(before.end, d.start);
    }

    #[test]
    fn a_repeated_midnight_starts_the_day_at_the_first() {
        // Chile falls back at midnight: 2022-04-03 00:00 -03 -> 2022-04-02 23:00 -04,
        // so local 2022-04-02 23:xx happens twice and 2022-04-03 begins once,
        // at 2022-04-03 00:00 -04 = 04:00Z.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let d = w(Period::Day, "2022-04-03T12:00:00Z", &santiago);
        assert_eq!(d.label, "2022-04-03");
        assert_eq!(d.start, utc("2022-04-03T04:00:00Z"));
        let prev = w(Period::Day, "2022-04-03T03:30:00Z", &santiago);
        assert_eq!(prev.label, "2022-04-02");
        assert_eq!(prev.end, d.start);
        assert_eq!(prev.end - prev.start, Duration::hours(25));
    }

    #[test]
    fn zones_parse() {
        assert_eq!(Zone::parse("UTC"), Some(Zone::Utc));
        assert_eq!(Zone::parse("local"), Some(Zone::Local));
        assert_eq!(
            Zone::parse(" Europe/Berlin "),
            Some(Zone::Named(chrono_tz::Europe::Berlin))
        );
        assert_eq!(
            Zone::parse("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(Zone::parse("Mars/Olympus"), None);
        assert_eq!(Zone::parse(""), None);
    }

    #[test]
    fn names_round_trip() {
        for n in Period::NAMES {
            assert_eq!(Period::parse(n).unwrap().as_str(), n);
        }
        assert_eq!(Period::parse("year"), None);
        assert_eq!(Period::Week.adjective(), "weekly");
    }

    const ZONES: [&str; 7] = [
        "UTC",
        "Europe/Berlin",
        "America/Santiago",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "Pacific/Apia",
        "America/St_Johns",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every instant is in its window; the window's next and previous neighbours
        /// touch it (no gap, no overlap); its label is the local date of its start.
        #[test]
        fn windows_tile_time(secs in 0i64..4_102_444_800, zi in 0usize..7, pi in 0usize..3) {
            let tz: Tz = ZONES[zi].parse().unwrap();
            let p = Period::parse(Period::NAMES[pi]).unwrap();
            let at = Utc.timestamp_opt(secs, 0).unwrap();
            let win = window_at(p, at, &tz, ZONES[zi]);
            prop_assert!(win.contains(at), "{at} not in {win:?}");
            let next = window_at(p, win.end, &tz, ZONES[zi]);
            prop_assert_eq!(next.start, win.end);
            prop_assert_ne!(&next.label, &win.label);
            let prev = window_at(p, win.start - Duration::seconds(1), &tz, ZONES[zi]);
            prop_assert_eq!(prev.end, win.start);
            let first = win.start.with_timezone(&tz).date_naive();
            prop_assert_eq!(p.label(first), win.label.clone());
            prop_assert_eq!(p.first_day(first), first);
            let hours = (win.end - win.start).num_hours();
            let (lo, hi) = match p {
                Period::Day => (21, 27),
                // Pacific/Apia skipped 2011-12-30 entirely: that week and month are a day short.
                Period::Week => (6 * 24 - 3, 7 * 24 + 3),
                Period::Month => (27 * 24 - 3, 31 * 24 + 3),
            };
            prop_assert!(lo <= hours && hours <= hi, "{hours} h in {win:?}");
        }
    }
}
