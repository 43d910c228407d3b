//! Where human output goes: warnings and errors as lines on stderr, the status report
//! and the final summary.
//!
//! On a terminal the status is a live region redrawn in place: it is drawn at once,
//! refreshed several times a second ([`Console::tick`], called by the run loop every
//! [`LIVE_REFRESH`]) and redrawn at once on a resize ([`Console::resized`]) and after
//! every message printed above it. It always fits the terminal (see
//! [`report::render_live`]). Elsewhere (a pipe, CI, `TERM=dumb`, or `--json` whose lines
//! go to the same terminal) the status is a plain block every `--status-report-interval`
//! ([`Console::status`]), and the cursor is never moved.
//!
//! Rendering itself is `report`'s; this only decides where and when text is written.

use crate::output::report::{self, Snapshot};
use crate::output::style::{self, Styles};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the live region is refreshed on a terminal.
pub const LIVE_REFRESH: Duration = Duration::from_millis(200);

pub struct Console {
    styles: Styles,
    /// Redraw the status in place (see the module documentation).
    live: bool,
    quiet: bool,
    /// `--json`: stdout carries events, so the summary goes to stderr.
    json: bool,
    max_line: usize,
    /// Terminal rows of the live region currently on screen.
    drawn: usize,
    /// The live region's text as last drawn, and the width it was drawn at: a message
    /// redraws it at once, and a resize counts the rows it occupies at the new width.
    last_text: String,
    last_width: usize,
    last_draw: Option<Instant>,
    /// `(columns, rows)` of the last frame; a change means a redraw is due.
    last_size: Option<(usize, usize)>,
}

impl Console {
    pub fn new(styles: Styles, quiet: bool, json: bool, max_line: usize) -> Console {
        let stderr_tty = std::io::stderr().is_terminal();
        let stdout_tty = std::io::stdout().is_terminal();
        let dumb = style::term_is_dumb(std::env::var_os("TERM").as_deref());
        Console {
            styles,
            live: live_allowed(stderr_tty, stdout_tty, json, dumb),
            quiet,
            json,
            max_line,
            drawn: 0,
            last_text: String::new(),
            last_width: 0,
            last_draw: None,
            last_size: None,
        }
    }

    /// No live region: plain status blocks instead. For `-v`/`RUST_LOG`, whose
    /// diagnostics are written to stderr behind the console's back and would be erased
    /// or left half-covered by redraws.
    pub fn without_live(mut self) -> Console {
        self.live = false;
        self
    }

    pub fn styles(&self) -> &Styles {
        &self.styles
    }

    /// Whether the run loop should call [`Console::tick`] every [`LIVE_REFRESH`].
    pub fn is_live(&self) -> bool {
        self.live && !self.quiet
    }

    fn size(&self) -> (usize, usize) {
        terminal_size().unwrap_or((120, 40))
    }

    /// Writes to stderr above the live region, then redraws the region at once.
    fn emit(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        let mut out = String::new();
        if self.live && self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A\x1b[J", self.rows_on_screen()));
        }
        out.push_str(text);
        out.push('\n');
        if self.live && self.drawn > 0 {
            out.push_str(&self.last_text);
            self.drawn = report::line_count(&self.last_text, self.size().0);
        }
        // One write, so the region never flickers away between the two.
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }

    /// Rows the last frame occupies now: lines fit the width they were drawn at, but a
    /// terminal that reflows on a resize wraps them at the new width, so count both ways
    /// and take the larger. Erasing a row too many beats leaving stale lines for good.
    fn rows_on_screen(&self) -> usize {
        let (w, _) = self.size();
        if w == self.last_width {
            self.drawn
        } else {
            self.drawn.max(report::line_count(&self.last_text, w))
        }
    }

    /// Information; hidden by `--quiet`.
    pub fn line(&mut self, text: &str) {
        if !self.quiet {
            self.emit(text);
        }
    }

    /// A warning; hidden by `--quiet`.
    pub fn warn(&mut self, text: &str) {
        if !self.quiet {
            let label = self.styles.yellow("warning:");
            self.emit(&format!("{label} {}", report::sanitize(text)));
        }
    }

    /// A notice the user caused (an interrupt); always shown, not labelled an error.
    pub fn notice(&mut self, text: &str) {
        self.emit(&report::sanitize(text));
    }

    /// An error; always shown.
    pub fn error(&mut self, text: &str) {
        let label = self.styles.red("error:");
        self.emit(&format!("{label} {}", report::sanitize(text)));
    }

    /// The periodic status report, every `--status-report-interval`: a plain block off a
    /// terminal; on one, a redraw of the live region.
    pub fn status(&mut self, s: &Snapshot) {
        if self.quiet {
            return;
        }
        if self.live {
            self.draw_live(s, Instant::now());
            return;
        }
        let (width, _) = self.size();
        let text = report::render_status(s, &self.styles, width, self.max_line);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
        let _ = err.flush();
    }

    /// The fast refresh on a terminal: redraws when [`LIVE_REFRESH`] has passed since the
    /// last frame or the terminal changed size. Does nothing off a terminal.
    pub fn tick(&mut self, s: &Snapshot, now: Instant) {
        if !self.is_live() {
            return;
        }
        let due = self.last_draw.is_none_or(|t| {
            now.saturating_duration_since(t) + Duration::from_millis(20) >= LIVE_REFRESH
        });
        if due || self.last_size != Some(self.size()) {
            self.draw_live(s, now);
        }
    }

    /// The terminal changed size (SIGWINCH): redraw now.
    pub fn resized(&mut self, s: &Snapshot) {
        if self.is_live() {
            self.draw_live(s, Instant::now());
        }
    }

    fn draw_live(&mut self, s: &Snapshot, now: Instant) {
        let (width, height) = self.size();
        let text = report::render_live(s, &self.styles, width, height, self.max_line);
        let frame = report::live_region(self.rows_on_screen(), &text);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(frame.as_bytes());
        let _ = err.flush();
        self.drawn = report::line_count(&text, width);
        self.last_text = text;
        self.last_width = width;
        self.last_draw = Some(now);
        self.last_size = Some((width, height));
    }

    /// Removes the live region from the screen, so normal lines can follow.
    pub fn clear_live(&mut self) {
        if self.live && self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}A\x1b[J", self.rows_on_screen());
            let _ = err.flush();
            self.drawn = 0;
            self.last_text.clear();
        }
    }

    /// The final summary: stdout, or stderr when stdout carries JSON events.
    pub fn summary(&mut self, s: &Snapshot, exit_code: i32, reason: &str) {
        self.clear_live();
        let text = report::render_summary(
            s,
            &self.styles,
            self.size().0,
            self.max_line,
            exit_code,
            reason,
        );
        if self.json {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

/// Whether the status may be a live region: stderr is a terminal that can move its
/// cursor, and `--json` lines are not written to a terminal too (the region's cursor
/// movement would erase them).
fn live_allowed(stderr_tty: bool, stdout_tty: bool, json: bool, dumb: bool) -> bool {
    stderr_tty && !dumb && !(json && stdout_tty)
}

/// `(columns, rows)` of the terminal on stderr, or `COLUMNS`/`LINES`.
fn terminal_size() -> Option<(usize, usize)> {
    // SAFETY: TIOCGWINSZ only writes into the winsize struct we pass.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
        return Some((usize::from(ws.ws_col), usize::from(ws.ws_row)));
    }
    let env = |k: &str| -> Option<usize> { std::env::var(k).ok()?.trim().parse().ok() };
    Some((env("COLUMNS")?, env("LINES").unwrap_or(40)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_only_on_a_capable_terminal_that_json_does_not_share() {
        // (stderr tty, stdout tty, --json, TERM=dumb) -> live
        assert!(live_allowed(true, true, false, false));
        assert!(live_allowed(true, false, true, false), "--json piped away");
        assert!(
            !live_allowed(true, true, true, false),
            "--json on the same terminal"
        );
        assert!(!live_allowed(false, true, false, false));
        assert!(!live_allowed(true, true, false, true), "TERM=dumb");
    }
}
