//! Terminal colour, decided once per run.
//!
//! `Styles::resolve` turns `--color` plus the environment into one value that every
//! renderer receives; nothing below it looks at the environment or the terminal again,
//! so rendering stays a pure function and plain output never contains an escape code.

use crate::core::plan::ColorChoice;
use owo_colors::OwoColorize;
use std::ffi::OsStr;

/// What a piece of text should look like; `Plain` means no escape codes at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Plain,
    Green,
    Yellow,
    Red,
    Cyan,
    Bold,
    Dim,
}

/// Whether output is coloured. Cheap to copy; pass by reference to renderers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Styles {
    color: bool,
    /// Draw bars with `#` and `-` instead of `█` and `░` (a locale that is not UTF-8).
    ascii: bool,
}

/// Whether the terminal can be moved around in: `TERM=dumb` (Emacs shells, some CI
/// consoles) gets neither colour nor cursor movement.
pub fn term_is_dumb(term: Option<&OsStr>) -> bool {
    term.is_some_and(|t| t == "dumb")
}

/// Whether the locale's character set is UTF-8, from `LC_ALL`, `LC_CTYPE` and `LANG` in
/// that order of precedence (the first one set and non-empty decides). With none set the
/// locale is POSIX, which is ASCII.
pub fn locale_is_utf8(
    lc_all: Option<&OsStr>,
    lc_ctype: Option<&OsStr>,
    lang: Option<&OsStr>,
) -> bool {
    let chosen = [lc_all, lc_ctype, lang]
        .into_iter()
        .flatten()
        .find(|v| !v.is_empty());
    chosen.is_some_and(|v| {
        let v = v.to_string_lossy().to_ascii_lowercase();
        v.contains("utf-8") || v.contains("utf8")
    })
}

impl Styles {
    /// Decides colour once for the whole run.
    ///
    /// `always`/`never` win over the environment. In `auto`: a non-empty `NO_COLOR`
    /// disables colour (no-color.org), then a non-empty `CLICOLOR_FORCE` other than `0`
    /// forces it (bixense CLICOLOR), otherwise colour only on a terminal. `NO_COLOR` is
    /// checked first because a user who asked for no colour should never be overridden
    /// by a variable some CI system exports globally. A terminal whose `TERM` is `dumb`
    /// counts as no terminal.
    pub fn resolve(
        choice: ColorChoice,
        is_terminal: bool,
        no_color: Option<&OsStr>,
        clicolor_force: Option<&OsStr>,
        term: Option<&OsStr>,
    ) -> Styles {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                if no_color.is_some_and(|v| !v.is_empty()) {
                    false
                } else if clicolor_force.is_some_and(|v| !v.is_empty() && v != "0") {
                    true
                } else {
                    is_terminal && !term_is_dumb(term)
                }
            }
        };
        Styles {
            color,
            ascii: false,
        }
    }

    pub fn plain() -> Styles {
        Styles {
            color: false,
            ascii: false,
        }
    }

    pub fn colored() -> Styles {
        Styles {
            color: true,
            ascii: false,
        }
    }

    /// The same styles, with ASCII bars when `ascii`.
    pub fn with_ascii(self, ascii: bool) -> Styles {
        Styles { ascii, ..self }
    }

    pub fn is_ascii(&self) -> bool {
        self.ascii
    }

    pub fn is_colored(&self) -> bool {
        self.color
    }

    /// Paints `text`; returns it unchanged when plain, and also when it is empty so that
    /// coloured output carries no stray empty escape pairs.
    pub fn paint(&self, paint: Paint, text: &str) -> String {
        if !self.color || text.is_empty() {
            return text.to_string();
        }
        match paint {
            Paint::Plain => text.to_string(),
            Paint::Green => text.green().to_string(),
            Paint::Yellow => text.yellow().to_string(),
            Paint::Red => text.red().to_string(),
            Paint::Cyan => text.cyan().to_string(),
            Paint::Bold => text.bold().to_string(),
            Paint::Dim => text.dimmed().to_string(),
        }
    }

    pub fn green(&self, text: &str) -> String {
        self.paint(Paint::Green, text)
    }

    pub fn yellow(&self, text: &str) -> String {
        self.paint(Paint::Yellow, text)
    }

    pub fn red(&self, text: &str) -> String {
        self.paint(Paint::Red, text)
    }

    pub fn cyan(&self, text: &str) -> String {
        self.paint(Paint::Cyan, text)
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(Paint::Bold, text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint(Paint::Dim, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn resolution_table() {
        use ColorChoice::*;
        // (choice, is_terminal, NO_COLOR, CLICOLOR_FORCE, expected colour)
        type Case<'a> = (
            ColorChoice,
            bool,
            Option<&'a OsStr>,
            Option<&'a OsStr>,
            bool,
        );
        let cases: &[Case<'_>] = &[
            (Auto, true, None, None, true),
            (Auto, false, None, None, false),
            (Auto, true, os("1"), None, false),
            (Auto, true, os(""), None, true),
            (Auto, false, None, os("1"), true),
            (Auto, false, None, os("0"), false),
            (Auto, false, None, os(""), false),
            (Auto, true, None, os("0"), true),
            (Auto, false, os("1"), os("1"), false),
            (Always, false, None, None, true),
            (Always, false, os("1"), None, true),
            (Never, true, None, None, false),
            (Never, true, None, os("1"), false),
        ];
        for &(choice, tty, nc, cf, want) in cases {
            let got = Styles::resolve(choice, tty, nc, cf, os("xterm-256color")).is_colored();
            assert_eq!(
                got, want,
                "{choice:?} tty={tty} NO_COLOR={nc:?} CLICOLOR_FORCE={cf:?}"
            );
        }
    }

    #[test]
    fn dumb_terminals_get_no_colour_unless_forced() {
        use ColorChoice::*;
        let dumb = os("dumb");
        assert!(!Styles::resolve(Auto, true, None, None, dumb).is_colored());
        assert!(Styles::resolve(Auto, true, None, None, None).is_colored());
        assert!(Styles::resolve(Auto, true, None, os("1"), dumb).is_colored());
        assert!(Styles::resolve(Always, true, None, None, dumb).is_colored());
        assert!(term_is_dumb(dumb) && !term_is_dumb(os("xterm")) && !term_is_dumb(None));
    }

    #[test]
    fn utf8_locale_detection() {
        let u = |a: Option<&str>, c: Option<&str>, l: Option<&str>| {
            locale_is_utf8(a.map(OsStr::new), c.map(OsStr::new), l.map(OsStr::new))
        };
        assert!(u(None, None, Some("en_US.UTF-8")));
        assert!(u(None, None, Some("C.utf8")));
        assert!(!u(None, None, Some("C")));
        assert!(!u(None, None, None));
        assert!(!u(Some("POSIX"), None, Some("en_US.UTF-8")), "LC_ALL wins");
        assert!(
            u(Some(""), Some("de_DE.UTF-8"), Some("C")),
            "empty means unset"
        );
        assert!(!u(None, Some("en_US.ISO-8859-1"), Some("en_US.UTF-8")));
    }

    #[test]
    fn plain_paints_nothing() {
        let s = Styles::plain();
        for p in [
            Paint::Green,
            Paint::Red,
            Paint::Bold,
            Paint::Dim,
            Paint::Cyan,
        ] {
            assert_eq!(s.paint(p, "ok"), "ok");
        }
    }

    #[test]
    fn colored_uses_standard_sgr_codes() {
        let s = Styles::colored();
        assert_eq!(s.green("ok"), "\x1b[32mok\x1b[39m");
        assert_eq!(s.yellow("ok"), "\x1b[33mok\x1b[39m");
        assert_eq!(s.red("ok"), "\x1b[31mok\x1b[39m");
        assert_eq!(s.cyan("ok"), "\x1b[36mok\x1b[39m");
        assert_eq!(s.bold("ok"), "\x1b[1mok\x1b[0m");
        assert_eq!(s.dim("ok"), "\x1b[2mok\x1b[0m");
        assert_eq!(s.red(""), "");
    }
}
