//! Human-readable output (SPEC section 7): the periodic status report, the final
//! summary and the in-place redraw of the live region on a terminal.
//!
//! Everything here is a pure function of a [`Snapshot`], a [`Styles`], the terminal
//! width and the line-length limit, so the same state always renders the same text and
//! tests compare exact strings. The dispatcher owns the state and builds the snapshot.

mod bar;
pub mod forecast;
mod format;
mod line;
mod table;
#[cfg(test)]
mod tests;

pub use bar::{bar, BAR_CELLS};
pub use format::{
    display_width, fit_width, fmt_count, fmt_duration, fmt_percent, sanitize, truncate,
};

use crate::core::budget::BudgetState;
use crate::core::plan::{Mode, Status};
use crate::core::usage::{Usage, Usd};
use crate::output::style::{Paint, Styles};
use line::Line;
use std::time::Duration;

/// Everything a report shows, captured by the dispatcher at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub elapsed: Duration,
    pub mode: Mode,
    pub totals: Usage,
    pub total_cost: Usd,
    /// In display order. Empty means no budget at all, shown as `[NO BUDGET SET]`.
    pub budgets: Vec<BudgetLine>,
    pub instances: Vec<InstanceLine<'a>>,
    /// `false` for `--disable-budget-visuals`: numbers without bars.
    pub visuals: bool,
    /// `--start-at`: time left before the first launch; `None` once launching began.
    pub starts_in: Option<Duration>,
    /// Why launches are held back right now (fleet backoff, a usage limit), with a
    /// countdown; shown under the header.
    pub launches: Option<String>,
}

/// One budget as shown to a human. The amounts are `f64` for rendering only; budgets
/// themselves are kept exactly elsewhere. USD amounts are dollars.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetLine {
    /// `overall`, `/test`, `instance unit-tests`, …
    pub label: String,
    pub unit_is_usd: bool,
    /// Zero (or less) means "no budget set" for this line.
    pub limit: f64,
    pub used: f64,
    pub state: BudgetState,
}

/// One instance's row in the table and its entry in the summary.
#[derive(Debug, Clone)]
pub struct InstanceLine<'a> {
    pub name: &'a str,
    pub status: Status,
    pub model: Option<&'a str>,
    pub duration: Option<Duration>,
    pub usage: Usage,
    pub cost: Usd,
    /// Tool calls made so far.
    pub tools: u64,
    /// Highest use, in percent, of any budget the instance counts toward.
    pub budget_percent: Option<f64>,
    /// Last live detail: tool in use, API retry, rate limiting…
    pub activity: Option<&'a str>,
    /// Claude's final result text.
    pub result: Option<&'a str>,
    /// Why it failed, was blocked or terminated.
    pub reason: Option<String>,
    /// Time since it ended; `None` while it has not. Orders the live view's rows.
    pub ended_ago: Option<Duration>,
}

const STATUS_ORDER: [Status; 10] = [
    Status::Pending,
    Status::Waiting,
    Status::Running,
    Status::Completed,
    Status::Failed,
    Status::TimedOut,
    Status::Blocked,
    Status::Terminated,
    Status::Interrupted,
    Status::RateLimited,
];

/// Widest a budget label column gets before labels are cut.
const LABEL_MAX: usize = 24;

/// `2.0K/5.0K tokens` or `$0.0200/$0.0500`.
fn amounts(b: &BudgetLine) -> String {
    if b.unit_is_usd {
        format!(
            "{}/{}",
            Usd::from_dollars(b.used),
            Usd::from_dollars(b.limit)
        )
    } else {
        format!(
            "{}/{} tokens",
            fmt_count(to_count(b.used)),
            fmt_count(to_count(b.limit))
        )
    }
}

fn to_count(x: f64) -> u64 {
    // `as` saturates and maps NaN to 0, which is what a display wants.
    x.round() as u64
}

/// Instances in a final state.
fn done_count(s: &Snapshot<'_>) -> usize {
    s.instances.iter().filter(|i| i.status.is_final()).count()
}

/// The run's ETA from finished instances, when there is one.
pub fn run_eta(s: &Snapshot<'_>) -> Option<Duration> {
    forecast::eta(done_count(s), s.instances.len(), s.elapsed)
}

fn header_lines(s: &Snapshot<'_>, title: &str, styles: &Styles, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut l = Line::new();
    let eta = match (s.starts_in, run_eta(s)) {
        (Some(d), _) => format!(" · starts in {}", fmt_duration(d)),
        (None, Some(d)) => format!(" · ETA ~{}", fmt_duration(d)),
        (None, None) => String::new(),
    };
    let progress = format!("{}/{} done{eta}", done_count(s), s.instances.len());
    l.push(&format!("=== orchestrator {title}"), Paint::Bold)
        .plain(&format!(
            " · run time {} · {progress} ===",
            fmt_duration(s.elapsed)
        ));
    if l.width() > width {
        // Narrow: the same facts without the decoration.
        l = Line::new();
        l.push(title, Paint::Bold)
            .plain(&format!(" · {} · {progress}", fmt_duration(s.elapsed)));
    }
    out.push(l.render(styles, width));

    let mut l = Line::new();
    l.plain(&format!("instances {}", s.instances.len()));
    let mut first = true;
    for status in STATUS_ORDER {
        let n = s.instances.iter().filter(|i| i.status == status).count();
        if n == 0 {
            continue;
        }
        l.plain(if first { ": " } else { ", " });
        first = false;
        l.plain(&format!("{n} "))
            .push(status.as_str(), table::status_paint(status));
    }
    out.push(l.render(styles, width));

    let mut l = Line::new();
    l.plain(&format!(
        "total {} tokens · {}",
        fmt_count(s.totals.total()),
        s.total_cost
    ));
    out.push(l.render(styles, width));
    out
}

fn label_width(budgets: &[BudgetLine]) -> usize {
    budgets
        .iter()
        .map(|b| display_width(&sanitize(&b.label)))
        .max()
        .unwrap_or(0)
        .clamp("overall".len(), LABEL_MAX)
}

fn push_label(l: &mut Line, label: &str, w: usize) {
    let text = fit_width(label, w);
    let pad = " ".repeat(w.saturating_sub(display_width(&text)));
    l.plain("  ").plain(&text).plain(&pad).plain("  ");
}

fn title(text: &str, styles: &Styles, width: usize) -> String {
    let mut l = Line::new();
    l.push(text, Paint::Bold);
    l.render(styles, width)
}

fn budget_status_lines(s: &Snapshot<'_>, styles: &Styles, width: usize) -> Vec<String> {
    let mut out = vec![title(
        &format!("BUDGET STATUS · {} mode", s.mode.as_str()),
        styles,
        width,
    )];
    let w = label_width(&s.budgets);
    if s.budgets.is_empty() {
        let mut l = Line::new();
        push_label(&mut l, "overall", w);
        l.plain(if s.visuals && width >= 2 + w + 2 + 15 {
            "[NO BUDGET SET]"
        } else {
            "no budget set"
        });
        out.push(l.render(styles, width));
    }
    // Every budget in the same form: the richest one in which all of them fit.
    let candidates: Vec<Vec<Line>> = s
        .budgets
        .iter()
        .map(|b| budget_forms(s, b, w, styles))
        .collect();
    let forms = candidates.iter().map(Vec::len).max().unwrap_or(0);
    let pick = |lines: &Vec<Line>, k: usize| lines[k.min(lines.len() - 1)].clone();
    let k = (0..forms)
        .find(|&k| candidates.iter().all(|c| pick(c, k).width() <= width))
        .unwrap_or(forms.saturating_sub(1));
    for c in &candidates {
        // The last resort is cut by `render`.
        out.push(pick(c, k).render(styles, width));
    }
    out
}

/// ` · 1.2K/min · out in ~4m10s`: the budget's burn rate and runway, or nothing.
fn burn_text(b: &BudgetLine, elapsed: Duration) -> String {
    let Some(burn) = forecast::burn(b.used, b.limit, elapsed) else {
        return String::new();
    };
    let rate = if b.unit_is_usd {
        format!("{}/min", Usd::from_dollars(burn.per_minute))
    } else {
        format!("{}/min", fmt_count(to_count(burn.per_minute)))
    };
    match burn.runs_out_in {
        Some(d) => format!(" · {rate} · out in ~{}", fmt_duration(d)),
        None => format!(" · {rate}"),
    }
}

/// One budget of the status report in each form, richest first: full bar and short bar
/// with the forecast, short bar without it, then numbers with and without it. The
/// forecast goes before the bar does; with `--disable-budget-visuals` there are no bars.
fn budget_forms(s: &Snapshot<'_>, b: &BudgetLine, w: usize, styles: &Styles) -> Vec<Line> {
    let mut base = Line::new();
    push_label(&mut base, &b.label, w);
    let Some(pct) = bar::shown_percent(b.used, b.limit) else {
        let mut l = base;
        l.plain(if s.visuals {
            "[NO BUDGET SET]"
        } else {
            "no budget set"
        });
        return vec![l];
    };
    let burn = burn_text(b, s.elapsed);
    let with_bar = |cells: usize, forecast: bool| {
        let mut l = base.clone();
        bar::push_bar_cells(&mut l, b.used, b.limit, cells, styles.is_ascii());
        l.plain(&format!(" ({})", amounts(b)));
        if forecast {
            l.plain(&burn);
        }
        l
    };
    let numbers = |forecast: bool| {
        let mut l = base.clone();
        l.plain(&format!("{} (", amounts(b)))
            .push(&fmt_percent(pct), bar::level_paint(pct))
            .plain(")");
        if forecast {
            l.plain(&burn);
        }
        l
    };
    let mut candidates = Vec::new();
    if s.visuals {
        candidates.push(with_bar(BAR_CELLS, true));
        candidates.push(with_bar(BAR_CELLS / 2, true));
    }
    if s.visuals {
        candidates.push(with_bar(BAR_CELLS / 2, false));
    }
    candidates.push(numbers(true));
    candidates.push(numbers(false));
    candidates
}

fn finish(lines: Vec<String>) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The periodic report: header (run time, mode, counts per status, totals), the
/// BUDGET STATUS section and the instance table. Every line fits in `width` columns.
/// The activity text is cut to `max_line` characters, then to what the width leaves.
pub fn render_status(s: &Snapshot<'_>, styles: &Styles, width: usize, max_line: usize) -> String {
    let mut lines = header_lines(s, "status", styles, width);
    if let Some(l) = &s.launches {
        let mut line = Line::new();
        line.push(l, Paint::Yellow);
        lines.push(line.render(styles, width));
    }
    lines.push(String::new());
    lines.extend(budget_status_lines(s, styles, width));
    lines.push(String::new());
    lines.extend(table::render_table(&s.instances, styles, width, max_line));
    finish(lines)
}

/// The order of the live view's instance rows: running first (in launch order), then
/// those that ended, most recent first, then waiting and pending ones.
pub fn live_order(instances: &[InstanceLine<'_>]) -> Vec<usize> {
    let rank = |i: &InstanceLine<'_>| match i.status {
        Status::Running => 0,
        s if s.is_final() => 1,
        Status::Waiting => 2,
        _ => 3,
    };
    let mut order: Vec<usize> = (0..instances.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&instances[a], &instances[b]);
        rank(x)
            .cmp(&rank(y))
            .then_with(|| match (x.ended_ago, y.ended_ago) {
                (Some(p), Some(q)) => p.cmp(&q),
                _ => std::cmp::Ordering::Equal,
            })
            .then(a.cmp(&b))
    });
    order
}

/// The live region on a terminal of `width` x `height`: always at most `height - 1`
/// rows (the cursor's row stays free, so moving up over the region always reaches its
/// top) and every line fits `width`, so each line is exactly one row.
///
/// Pinned first: the header (run time, `N/M done`, ETA, counts per status, totals) and
/// every budget with its bar and forecast. Then as many instance rows as fit, in
/// [`live_order`], and `… N more` for the rest. Columns keep stable widths between
/// frames. When even the pinned part does not fit, it is cut from the bottom.
pub fn render_live(
    s: &Snapshot<'_>,
    styles: &Styles,
    width: usize,
    height: usize,
    max_line: usize,
) -> String {
    let rows = height.saturating_sub(1).max(1);
    let mut pinned = header_lines(s, "status", styles, width);
    if let Some(l) = &s.launches {
        let mut line = Line::new();
        line.push(l, Paint::Yellow);
        pinned.push(line.render(styles, width));
    }
    let budgets = budget_status_lines(s, styles, width);
    let roomy = pinned.len() + 1 + budgets.len() + 1 + 2 <= rows;
    if roomy {
        pinned.push(String::new());
    }
    pinned.extend(budgets);
    if roomy {
        pinned.push(String::new());
    }
    let mut lines = pinned;
    let n = s.instances.len();
    // Room for the table: its header plus rows, keeping one for "… N more" if needed.
    let room = rows.saturating_sub(lines.len());
    if n > 0 && room >= 2 {
        let fit_all = room > n;
        let shown = if fit_all { n } else { room - 2 };
        let order = live_order(&s.instances);
        lines.extend(table::render_rows(
            &s.instances,
            &order[..shown],
            true,
            styles,
            width,
            max_line,
        ));
        if !fit_all {
            let mut l = Line::new();
            let dots = if styles.is_ascii() { "..." } else { "…" };
            l.push(&format!("{dots} {} more", n - shown), Paint::Dim);
            lines.push(l.render(styles, width));
        }
    } else if n > 0 && room == 1 {
        let mut l = Line::new();
        l.push(
            &format!("… {n} instances (enlarge the terminal to see them)"),
            Paint::Dim,
        );
        lines.push(l.render(styles, width));
    }
    lines.truncate(rows);
    finish(lines)
}

/// The final summary: header, instance table, each instance's result or reason
/// (cut to `max_line` characters), the budget verdicts and `exit code N: REASON`.
///
/// Header and table fit in `width`; result lines are bounded by `max_line` instead, as
/// `--max-line-length` asks, and may wrap on a narrow terminal.
pub fn render_summary(
    s: &Snapshot<'_>,
    styles: &Styles,
    width: usize,
    max_line: usize,
    exit_code: i32,
    exit_reason: &str,
) -> String {
    let mut lines = header_lines(s, "summary", styles, width);
    lines.push(String::new());
    lines.extend(table::render_table(&s.instances, styles, width, max_line));

    if !s.instances.is_empty() {
        lines.push(String::new());
        lines.push(title("RESULTS", styles, width));
        for inst in &s.instances {
            let (main, extra) = match (inst.reason.as_deref(), inst.result) {
                (Some(reason), result) => (Some(reason), result),
                (None, Some(result)) => (Some(result), None),
                (None, None) => (None, None),
            };
            let main = main.map_or_else(|| "(no result)".to_string(), |t| truncate(t, max_line));
            lines.push(format!(
                "  {} [{}]: {}",
                styles.bold(&truncate(inst.name, max_line)),
                styles.paint(table::status_paint(inst.status), inst.status.as_str()),
                main
            ));
            if let Some(result) = extra {
                lines.push(format!("    result: {}", truncate(result, max_line)));
            }
        }
    }

    lines.push(String::new());
    lines.push(title(
        &format!("BUDGETS · {} mode", s.mode.as_str()),
        styles,
        width,
    ));
    if s.budgets.is_empty() {
        lines.push("  no budget set".to_string());
    }
    let w = label_width(&s.budgets);
    for b in &s.budgets {
        let mut l = Line::new();
        push_label(&mut l, &b.label, w);
        match bar::shown_percent(b.used, b.limit) {
            Some(pct) => {
                let paint = match b.state {
                    BudgetState::Ok => Paint::Green,
                    BudgetState::Warned => Paint::Yellow,
                    BudgetState::Exceeded => Paint::Red,
                };
                let state = b.state.as_str();
                l.push(state, paint)
                    .plain(&" ".repeat("exceeded".len().saturating_sub(state.len())))
                    .plain("  ");
                let mut numbers = l.clone();
                numbers.plain(&format!("{} ({})", amounts(b), fmt_percent(pct)));
                bar::push_bar_cells(&mut l, b.used, b.limit, BAR_CELLS, styles.is_ascii());
                l.plain(&format!(" ({})", amounts(b)));
                let burn = burn_text(b, s.elapsed);
                let mut numbers_burn = numbers.clone();
                numbers_burn.plain(&burn);
                l.plain(&burn);
                l = if s.visuals && l.width() <= width {
                    l
                } else if numbers_burn.width() <= width {
                    numbers_burn
                } else {
                    numbers
                };
            }
            None => {
                l.plain("no budget set");
            }
        }
        lines.push(l.render(styles, width));
    }

    lines.push(String::new());
    lines.push(efficiency_line(s));
    lines.push(String::new());
    let exit_line = format!("exit code {exit_code}: {}", sanitize(exit_reason));
    lines.push(if exit_code == 0 {
        styles.green(&exit_line)
    } else {
        styles.red(&exit_line)
    });
    finish(lines)
}

/// `efficiency: cache hit 61.5%, 1.2K tokens per tool call, $0.0123 per completed instance`
/// (`-` where there is nothing to divide by).
fn efficiency_line(s: &Snapshot<'_>) -> String {
    let tools: u64 = s.instances.iter().map(|i| i.tools).sum();
    let completed = s
        .instances
        .iter()
        .filter(|i| i.status == Status::Completed)
        .count() as u64;
    let e = crate::core::efficiency::efficiency(&s.totals, s.total_cost, tools, completed);
    let dash = || "-".to_string();
    format!(
        "efficiency: cache hit {}, {} tokens per tool call, {} per completed instance",
        e.cache_hit_rate
            .map_or_else(dash, |r| fmt_percent(r * 100.0)),
        e.tokens_per_tool_call
            .map_or_else(dash, |t| fmt_count(t.round() as u64)),
        e.cost_per_completed.map_or_else(dash, |c| c.to_string()),
    )
}

/// Terminal rows `text` occupies at `width` columns, counting wrapped lines; the
/// caller passes this as `previous_lines` to the next [`live_region`]. Escape codes
/// are not counted as columns.
pub fn line_count(text: &str, width: usize) -> usize {
    let width = width.max(1);
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() && text.is_empty() {
        return 0;
    }
    body.split('\n')
        .map(|l| {
            let w = display_width(&strip_escapes(l));
            w.div_ceil(width).max(1)
        })
        .sum()
}

fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Redraws the live region on a terminal: moves the cursor up over the `previous_lines`
/// rows drawn last time, clears to the end of the screen and writes `text`. With nothing
/// drawn before it is just `text`. `text` should end with a newline so the cursor is at
/// the start of a line when the next redraw moves up.
pub fn live_region(previous_lines: usize, text: &str) -> String {
    if previous_lines == 0 {
        text.to_string()
    } else {
        format!("\x1b[{previous_lines}A\x1b[J{text}")
    }
}
