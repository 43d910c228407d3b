//! Where human output goes: warnings and errors as lines on stderr, the periodic status
//! report (redrawn in place on a terminal, plain blocks otherwise) and the final summary.
//! Rendering itself is `report`'s; this only decides where and when text is written.

use crate::output::report::{self, Snapshot};
use crate::output::style::Styles;
use std::io::{IsTerminal, Write};

pub struct Console {
    styles: Styles,
    /// stderr is a terminal: redraw the status report in place.
    live: bool,
    quiet: bool,
    /// `--json`: stdout carries events, so the summary goes to stderr.
    json: bool,
    max_line: usize,
    /// Lines of the live region currently on screen.
    drawn: usize,
}

impl Console {
    pub fn new(styles: Styles, quiet: bool, json: bool, max_line: usize) -> Console {
        Console {
            styles,
            live: std::io::stderr().is_terminal(),
            quiet,
            json,
            max_line,
            drawn: 0,
        }
    }

    pub fn styles(&self) -> &Styles {
        &self.styles
    }

    fn width(&self) -> usize {
        terminal_width().unwrap_or(120)
    }

    /// Writes to stderr above the live region (which the next report redraws).
    fn emit(&mut self, text: &str) {
        self.clear_live();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
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

    /// An error; always shown.
    pub fn error(&mut self, text: &str) {
        let label = self.styles.red("error:");
        self.emit(&format!("{label} {}", report::sanitize(text)));
    }

    /// The periodic status report.
    pub fn status(&mut self, s: &Snapshot) {
        if self.quiet {
            return;
        }
        let width = self.width();
        let text = report::render_status(s, &self.styles, width, self.max_line);
        let mut err = std::io::stderr().lock();
        if self.live {
            let _ = err.write_all(report::live_region(self.drawn, &text).as_bytes());
            self.drawn = report::line_count(&text, width);
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    /// Removes the live region from the screen, so normal lines can follow.
    pub fn clear_live(&mut self) {
        if self.live && self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn);
            let _ = err.flush();
            self.drawn = 0;
        }
    }

    /// The final summary: stdout, or stderr when stdout carries JSON events.
    pub fn summary(&mut self, s: &Snapshot, exit_code: i32, reason: &str) {
        self.clear_live();
        let text = report::render_summary(
            s,
            &self.styles,
            self.width(),
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

/// Columns of the terminal on stderr, or `COLUMNS`.
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ only writes into the winsize struct we pass.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 {
        return Some(usize::from(ws.ws_col));
    }
    std::env::var("COLUMNS").ok()?.trim().parse().ok()
}
