//! A line of report text kept as painted segments, so it can be cut to the terminal
//! width by its visible columns and still be coloured correctly afterwards.

use super::format::{char_width, display_width, sanitize};
use crate::output::style::{Paint, Styles};

#[derive(Debug, Default, Clone)]
pub(crate) struct Line {
    segs: Vec<(String, Paint)>,
}

impl Line {
    pub(crate) fn new() -> Line {
        Line::default()
    }

    /// Appends text; it is sanitized here so no segment can carry a control character.
    pub(crate) fn push(&mut self, text: &str, paint: Paint) -> &mut Line {
        let clean = sanitize(text);
        if !clean.is_empty() {
            self.segs.push((clean, paint));
        }
        self
    }

    pub(crate) fn plain(&mut self, text: &str) -> &mut Line {
        self.push(text, Paint::Plain)
    }

    pub(crate) fn width(&self) -> usize {
        self.segs.iter().map(|(s, _)| display_width(s)).sum()
    }

    /// Renders at most `width` columns; when cut, the line ends in `…`. Trailing spaces
    /// are dropped so padded tables leave no invisible tails.
    pub(crate) fn render(&self, styles: &Styles, width: usize) -> String {
        let mut segs = self.segs.clone();
        while let Some((text, _)) = segs.last_mut() {
            let trimmed_len = text.trim_end().len();
            if trimmed_len == 0 {
                segs.pop();
            } else {
                text.truncate(trimmed_len);
                break;
            }
        }
        let total: usize = segs.iter().map(|(s, _)| display_width(s)).sum();
        let mut out = String::new();
        if total <= width {
            for (text, paint) in &segs {
                out.push_str(&styles.paint(*paint, text));
            }
            return out;
        }
        if width == 0 {
            return out;
        }
        let budget = width - 1;
        let mut used = 0;
        let mut last_paint = Paint::Plain;
        'outer: for (text, paint) in &segs {
            let mut piece = String::new();
            for c in text.chars() {
                let w = char_width(c);
                if used + w > budget {
                    out.push_str(&styles.paint(*paint, &piece));
                    last_paint = *paint;
                    break 'outer;
                }
                used += w;
                piece.push(c);
            }
            out.push_str(&styles.paint(*paint, &piece));
            last_paint = *paint;
        }
        out.push_str(&styles.paint(last_paint, "…"));
        out
    }
}
