//! The instance table, laid out to fit the terminal width.
//!
//! Layout rule: start from each column's natural width; if the table is too wide, drop
//! the least useful columns until it fits with the flexible ones (activity, name,
//! model) at a readable width, then shrink those only as much as needed, further only
//! when nothing is left to drop. Any line that still cannot fit (a terminal narrower
//! than status + name) is cut by `Line`.

use super::bar::{level_paint, shown_percent};
use super::format::{display_width, fit_width, fmt_count, fmt_duration, fmt_percent, truncate};
use super::line::Line;
use super::InstanceLine;
use crate::core::plan::Status;
use crate::output::style::{Paint, Styles};

const SEP: &str = "  ";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Col {
    Status,
    Name,
    Model,
    Time,
    Tokens,
    InOut,
    Cache,
    Tools,
    Cost,
    Budget,
    Activity,
}

const COLS: [Col; 11] = [
    Col::Status,
    Col::Name,
    Col::Model,
    Col::Time,
    Col::Tokens,
    Col::InOut,
    Col::Cache,
    Col::Tools,
    Col::Cost,
    Col::Budget,
    Col::Activity,
];

/// Dropped first to last when the terminal is narrow; status and name always stay.
const DROP_ORDER: [Col; 9] = [
    Col::Cache,
    Col::InOut,
    Col::Tools,
    Col::Model,
    Col::Budget,
    Col::Activity,
    Col::Time,
    Col::Cost,
    Col::Tokens,
];

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Status => "STATUS",
            Col::Name => "NAME",
            Col::Model => "MODEL",
            Col::Time => "TIME",
            Col::Tokens => "TOKENS",
            Col::InOut => "IN/OUT",
            Col::Cache => "CACHE W/R",
            Col::Tools => "TOOLS",
            Col::Cost => "COST",
            Col::Budget => "BUDGET",
            Col::Activity => "ACTIVITY",
        }
    }

    fn align(self) -> Align {
        match self {
            Col::Status | Col::Name | Col::Model | Col::Activity => Align::Left,
            _ => Align::Right,
        }
    }

    /// For flexible columns: (natural width cap, width below which the column is
    /// better dropped than shrunk, absolute minimum once nothing is left to drop).
    /// `None` = fixed width.
    /// Width kept for the column in the live view whatever its cells hold now, so the
    /// set of columns shown does not change from frame to frame as numbers grow.
    fn reserved(self) -> usize {
        match self {
            Col::Status => "rate_limited".len(),
            Col::Name => 0,
            Col::Model => 10,
            Col::Time => "59m59s".len(),
            Col::Tokens => "999.9K".len(),
            Col::InOut | Col::Cache => "999.9K/999.9K".len(),
            Col::Tools => "TOOLS".len(),
            Col::Cost => "$99.9999".len(),
            Col::Budget => "100.0%".len(),
            Col::Activity => 16,
        }
    }

    fn flex(self) -> Option<(usize, usize, usize)> {
        match self {
            Col::Name => Some((32, 16, 3)),
            Col::Model => Some((24, 10, 3)),
            Col::Activity => Some((usize::MAX, 16, 3)),
            _ => None,
        }
    }
}

pub(crate) fn status_paint(status: Status) -> Paint {
    match status {
        Status::Running => Paint::Cyan,
        Status::Completed => Paint::Green,
        Status::Failed | Status::TimedOut | Status::Terminated | Status::RateLimited => Paint::Red,
        Status::Blocked | Status::Interrupted => Paint::Yellow,
        Status::Pending | Status::Waiting => Paint::Dim,
    }
}

fn cell(inst: &InstanceLine<'_>, col: Col, max_line: usize) -> (String, Paint) {
    let u = &inst.usage;
    match col {
        Col::Status => (inst.status.as_str().to_string(), status_paint(inst.status)),
        Col::Name => (inst.name.to_string(), Paint::Plain),
        Col::Model => (inst.model.unwrap_or("-").to_string(), Paint::Plain),
        Col::Time => (
            inst.duration.map_or_else(|| "-".to_string(), fmt_duration),
            Paint::Plain,
        ),
        Col::Tokens => (fmt_count(u.total()), Paint::Plain),
        Col::InOut => (
            format!(
                "{}/{}",
                fmt_count(u.input_tokens),
                fmt_count(u.output_tokens)
            ),
            Paint::Plain,
        ),
        Col::Cache => (
            format!(
                "{}/{}",
                fmt_count(u.cache_creation_input_tokens),
                fmt_count(u.cache_read_input_tokens)
            ),
            Paint::Plain,
        ),
        Col::Tools => (inst.tools.to_string(), Paint::Plain),
        Col::Cost => (inst.cost.to_string(), Paint::Plain),
        Col::Budget => match inst.budget_percent {
            // The same rounding and colours as the bars, so 90.0% here is 90.0% there.
            Some(p) => match shown_percent(p, 100.0) {
                Some(shown) => (fmt_percent(shown), level_paint(shown)),
                None => ("-".to_string(), Paint::Plain),
            },
            None => ("-".to_string(), Paint::Plain),
        },
        Col::Activity => (truncate(inst.activity.unwrap_or(""), max_line), Paint::Dim),
    }
}

fn total_width(widths: &[usize], present: &[bool]) -> usize {
    let n = present.iter().filter(|p| **p).count();
    let sum: usize = widths
        .iter()
        .zip(present)
        .filter(|(_, p)| **p)
        .map(|(w, _)| *w)
        .sum();
    sum + SEP.len() * n.saturating_sub(1)
}

fn index(col: Col) -> usize {
    COLS.iter().position(|c| *c == col).unwrap_or(0)
}

/// The header and one line per instance, each at most `width` columns.
pub(crate) fn render_table(
    instances: &[InstanceLine<'_>],
    styles: &Styles,
    width: usize,
    max_line: usize,
) -> Vec<String> {
    let all: Vec<usize> = (0..instances.len()).collect();
    render_rows(instances, &all, false, styles, width, max_line)
}

/// The header and the lines of the instances at `rows`, in that order. Column widths
/// come from every instance, so that rows scrolled out of view still count; with
/// `stable` (the live view) each column also keeps its [`Col::reserved`] width.
pub(crate) fn render_rows(
    instances: &[InstanceLine<'_>],
    rows: &[usize],
    stable: bool,
    styles: &Styles,
    width: usize,
    max_line: usize,
) -> Vec<String> {
    let cells: Vec<Vec<(String, Paint)>> = instances
        .iter()
        .map(|inst| COLS.iter().map(|c| cell(inst, *c, max_line)).collect())
        .collect();

    let mut natural = [0usize; COLS.len()];
    let mut comfortable = [0usize; COLS.len()];
    let mut hard = [0usize; COLS.len()];
    for (i, col) in COLS.iter().enumerate() {
        let widest = cells
            .iter()
            .map(|row| display_width(&super::format::sanitize(&row[i].0)))
            .chain(std::iter::once(col.header().len()))
            .max()
            .unwrap_or(0);
        let (cap, comfy, min) = col.flex().unwrap_or((usize::MAX, usize::MAX, usize::MAX));
        let widest = if stable {
            widest.max(col.reserved())
        } else {
            widest
        };
        natural[i] = widest.min(cap);
        // Model and activity text come and go while a run goes on; names do not.
        comfortable[i] = if stable && matches!(col, Col::Model | Col::Activity) {
            comfy
        } else {
            natural[i].min(comfy)
        };
        hard[i] = natural[i].min(min);
    }

    // Drop columns while the rest would not fit without squeezing names and activity
    // below a readable width; a whole column gone reads better than every cell cut.
    let mut present = [true; COLS.len()];
    for col in DROP_ORDER {
        if total_width(&comfortable, &present) <= width {
            break;
        }
        present[index(col)] = false;
    }

    let mut widths = natural;
    for floor in [&comfortable, &hard] {
        for col in [Col::Activity, Col::Name, Col::Model] {
            let i = index(col);
            let excess = total_width(&widths, &present).saturating_sub(width);
            if excess == 0 || !present[i] {
                continue;
            }
            widths[i] -= excess.min(widths[i].saturating_sub(floor[i]));
        }
    }

    let mut out = Vec::with_capacity(rows.len() + 1);
    let header: Vec<(String, Paint)> = COLS
        .iter()
        .map(|c| (c.header().to_string(), Paint::Bold))
        .collect();
    let shown = rows.iter().filter_map(|&r| cells.get(r));
    for row in std::iter::once(&header).chain(shown) {
        let mut line = Line::new();
        let mut first = true;
        for (i, col) in COLS.iter().enumerate() {
            if !present[i] {
                continue;
            }
            if !first {
                line.plain(SEP);
            }
            first = false;
            let (text, paint) = &row[i];
            let text = fit_width(text, widths[i]);
            let pad = " ".repeat(widths[i].saturating_sub(display_width(&text)));
            // Padding stays outside the colour so escape codes never change alignment.
            match col.align() {
                Align::Left => line.push(&text, *paint).plain(&pad),
                Align::Right => line.plain(&pad).push(&text, *paint),
            };
        }
        out.push(line.render(styles, width));
    }
    out
}
