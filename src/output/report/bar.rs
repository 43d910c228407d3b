//! Budget bars: 20 cells, coloured by how close the budget is to its limit.

use super::format::fmt_percent;
use super::line::Line;
use crate::output::style::{Paint, Styles};

pub const BAR_CELLS: usize = 20;

/// Percent of `limit` used, rounded to the tenth that is displayed, or `None` when there
/// is no budget (limit zero, negative or not finite). Colour and cell count are derived
/// from this displayed value so the bar never disagrees with the number next to it.
pub(crate) fn shown_percent(used: f64, limit: f64) -> Option<f64> {
    if !(limit.is_finite() && limit > 0.0) {
        return None;
    }
    let used = if used.is_finite() && used > 0.0 {
        used
    } else if used == f64::INFINITY {
        return Some(f64::INFINITY);
    } else {
        0.0
    };
    // Multiply before dividing: 900 * 100 / 1000 is exactly 90, while 0.9 * 100 is not.
    Some((used * 1000.0 / limit).round() / 10.0)
}

/// Green below 70%, yellow from 70% to 90% inclusive, red above 90%.
pub(crate) fn level_paint(percent: f64) -> Paint {
    if percent < 70.0 {
        Paint::Green
    } else if percent <= 90.0 {
        Paint::Yellow
    } else {
        Paint::Red
    }
}

/// A bar of `cells` cells; `ascii` draws `#`/`-` for terminals whose locale is not UTF-8.
pub(crate) fn push_bar_cells(line: &mut Line, used: f64, limit: f64, cells: usize, ascii: bool) {
    let Some(pct) = shown_percent(used, limit) else {
        line.plain("[NO BUDGET SET]");
        return;
    };
    let paint = level_paint(pct);
    // Capped at a full bar; the number beside it keeps the real percentage.
    let filled = ((pct.min(100.0) * cells as f64 / 100.0).floor() as usize).min(cells);
    let (full, empty) = if ascii { ("#", "-") } else { ("█", "░") };
    line.plain("[")
        .push(&full.repeat(filled), paint)
        .plain(&empty.repeat(cells - filled))
        .plain("] ")
        .push(&fmt_percent(pct), paint);
}

/// `[████████░░░░░░░░░░░░] 40.0%` (`#`/`-` with ASCII styles), or `[NO BUDGET SET]`
/// when `limit` is not positive. Used cells and the percentage are painted
/// green/yellow/red; free cells never are.
pub fn bar(used: f64, limit: f64, styles: &Styles) -> String {
    let mut line = Line::new();
    push_bar_cells(&mut line, used, limit, BAR_CELLS, styles.is_ascii());
    line.render(styles, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(used: f64, limit: f64) -> String {
        bar(used, limit, &Styles::plain())
    }

    #[test]
    fn plain_bars_at_thresholds() {
        assert_eq!(plain(0.0, 1000.0), "[░░░░░░░░░░░░░░░░░░░░] 0.0%");
        assert_eq!(plain(699.0, 1000.0), "[█████████████░░░░░░░] 69.9%");
        assert_eq!(plain(700.0, 1000.0), "[██████████████░░░░░░] 70.0%");
        assert_eq!(plain(899.0, 1000.0), "[█████████████████░░░] 89.9%");
        assert_eq!(plain(900.0, 1000.0), "[██████████████████░░] 90.0%");
        assert_eq!(plain(901.0, 1000.0), "[██████████████████░░] 90.1%");
        assert_eq!(plain(1000.0, 1000.0), "[████████████████████] 100.0%");
        assert_eq!(plain(2500.0, 1000.0), "[████████████████████] 250.0%");
        assert_eq!(plain(6234.0, 5000.0), "[████████████████████] 124.7%");
    }

    #[test]
    fn ascii_and_short_bars() {
        let mut l = Line::new();
        push_bar_cells(&mut l, 400.0, 1000.0, 10, true);
        assert_eq!(l.render(&Styles::plain(), 80), "[####------] 40.0%");
        let mut l = Line::new();
        push_bar_cells(&mut l, 400.0, 1000.0, 10, false);
        assert_eq!(l.render(&Styles::plain(), 80), "[████░░░░░░] 40.0%");
    }

    #[test]
    fn no_budget() {
        assert_eq!(plain(10.0, 0.0), "[NO BUDGET SET]");
        assert_eq!(plain(10.0, -1.0), "[NO BUDGET SET]");
        assert_eq!(plain(10.0, f64::NAN), "[NO BUDGET SET]");
        assert_eq!(bar(10.0, 0.0, &Styles::colored()), "[NO BUDGET SET]");
    }

    #[test]
    fn odd_usage_values_do_not_break_the_bar() {
        assert_eq!(plain(-5.0, 100.0), "[░░░░░░░░░░░░░░░░░░░░] 0.0%");
        assert_eq!(plain(f64::NAN, 100.0), "[░░░░░░░░░░░░░░░░░░░░] 0.0%");
        assert_eq!(plain(f64::INFINITY, 100.0), "[████████████████████] -");
    }

    #[test]
    fn colour_follows_thresholds() {
        let g = "\x1b[32m";
        let y = "\x1b[33m";
        let r = "\x1b[31m";
        let end = "\x1b[39m";
        let c = |used: f64| bar(used, 1000.0, &Styles::colored());
        assert_eq!(c(0.0), format!("[░░░░░░░░░░░░░░░░░░░░] {g}0.0%{end}"));
        assert_eq!(
            c(699.0),
            format!("[{g}█████████████{end}░░░░░░░] {g}69.9%{end}")
        );
        assert_eq!(
            c(700.0),
            format!("[{y}██████████████{end}░░░░░░] {y}70.0%{end}")
        );
        assert_eq!(
            c(899.0),
            format!("[{y}█████████████████{end}░░░] {y}89.9%{end}")
        );
        assert_eq!(
            c(900.0),
            format!("[{y}██████████████████{end}░░] {y}90.0%{end}")
        );
        assert_eq!(
            c(901.0),
            format!("[{r}██████████████████{end}░░] {r}90.1%{end}")
        );
        assert_eq!(
            c(1000.0),
            format!("[{r}████████████████████{end}] {r}100.0%{end}")
        );
        assert_eq!(
            c(2500.0),
            format!("[{r}████████████████████{end}] {r}250.0%{end}")
        );
    }

    #[test]
    fn colour_matches_the_displayed_number() {
        // 89.96% displays as 90.0%: it must be yellow like every other "90.0%".
        assert_eq!(
            level_paint(shown_percent(899.6, 1000.0).unwrap_or(0.0)),
            Paint::Yellow
        );
        // 90.06% displays as 90.1%: red.
        assert_eq!(
            level_paint(shown_percent(900.6, 1000.0).unwrap_or(0.0)),
            Paint::Red
        );
    }
}
