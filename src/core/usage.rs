//! Token counts and money: the two quantities every budget is kept in.
//!
//! Dollars are held as integer nanodollars (`Usd`), never floats, so that a sum of
//! deltas equals the final total exactly and comparisons against a limit are exact.

use serde::Serialize;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// Token usage of one instance (or a sum of instances), in Claude's four classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Usage {
    pub const fn new(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_creation_input_tokens: cache_write,
            cache_read_input_tokens: cache_read,
        }
    }

    /// Tokens as budgets count them: input + output + cache creation + cache read.
    pub fn total(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens)
    }

    /// Field-wise maximum (used for message-id dedupe).
    pub fn max(&self, other: &Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.max(other.input_tokens),
            output_tokens: self.output_tokens.max(other.output_tokens),
            cache_creation_input_tokens: self
                .cache_creation_input_tokens
                .max(other.cache_creation_input_tokens),
            cache_read_input_tokens: self
                .cache_read_input_tokens
                .max(other.cache_read_input_tokens),
        }
    }
}

impl Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(o.input_tokens),
            output_tokens: self.output_tokens.saturating_add(o.output_tokens),
            cache_creation_input_tokens: self
                .cache_creation_input_tokens
                .saturating_add(o.cache_creation_input_tokens),
            cache_read_input_tokens: self
                .cache_read_input_tokens
                .saturating_add(o.cache_read_input_tokens),
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        *self = *self + o;
    }
}

/// An amount of US dollars in nanodollars (1e-9 USD). Signed so that the one downward
/// correction the accounting makes (a live estimate replaced by Claude's own
/// `total_cost_usd`) can be expressed as a delta.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub i64);

impl Usd {
    pub const ZERO: Usd = Usd(0);
    pub const NANOS_PER_DOLLAR: i64 = 1_000_000_000;

    /// Converts dollars given as a float (JSON input), rounding to the nearest nanodollar.
    /// Non-finite or negative inputs are the caller's to reject; they map to zero here.
    pub fn from_dollars(d: f64) -> Usd {
        if !d.is_finite() || d <= 0.0 {
            return Usd(0);
        }
        let n = (d * Self::NANOS_PER_DOLLAR as f64).round();
        if n >= i64::MAX as f64 {
            Usd(i64::MAX)
        } else {
            Usd(n as i64)
        }
    }

    pub fn as_dollars(self) -> f64 {
        self.0 as f64 / Self::NANOS_PER_DOLLAR as f64
    }

    pub fn nanos(self) -> i64 {
        self.0
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, o: Usd) -> Usd {
        Usd(self.0.saturating_add(o.0))
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, o: Usd) {
        self.0 = self.0.saturating_add(o.0);
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, o: Usd) -> Usd {
        Usd(self.0.saturating_sub(o.0))
    }
}

/// `$0.0123` style: four decimals (rounded half away from zero, in integer math so that
/// `$0.07125` reads `$0.0713`), six when the amount is below a hundredth of a cent and not
/// zero, so that small spends never read as `$0.0000`.
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let n = self.0.unsigned_abs();
        let (unit, places) = if n != 0 && n < 100_000 {
            (1_000u64, 6)
        } else {
            (100_000u64, 4)
        };
        let scaled = (n + unit / 2) / unit;
        let per_dollar = Usd::NANOS_PER_DOLLAR as u64 / unit;
        write!(
            f,
            "{sign}${}.{:0places$}",
            scaled / per_dollar,
            scaled % per_dollar
        )
    }
}

impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_dollars())
    }
}

/// Compact token count: `999`, `1.2K`, `3.4M`, `1.0B` (tenths rounded half up).
///
/// Integer arithmetic, so `1050` is `1.1K` on every platform, and a value that would
/// round to `1000.0K` moves up to `1.0M` instead.
pub fn fmt_count(n: u64) -> String {
    if n < 1000 {
        return n.to_string();
    }
    const UNITS: [(u128, &str); 3] = [(1_000, "K"), (1_000_000, "M"), (1_000_000_000, "B")];
    let n = u128::from(n);
    let mut out = String::new();
    for (i, (div, suffix)) in UNITS.iter().enumerate() {
        let tenths = (n * 10 + div / 2) / div;
        if tenths < 10_000 || i == UNITS.len() - 1 {
            out = format!("{}.{}{}", tenths / 10, tenths % 10, suffix);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_counts_all_four_classes() {
        let u = Usage {
            input_tokens: 1200,
            output_tokens: 57,
            cache_creation_input_tokens: 300,
            cache_read_input_tokens: 4000,
        };
        assert_eq!(u.total(), 5557);
    }

    #[test]
    fn dollars_round_trip_exactly() {
        assert_eq!(Usd::from_dollars(0.0113), Usd(11_300_000));
        assert_eq!(Usd::from_dollars(0.07125).to_string(), "$0.0713");
        assert_eq!(Usd(0).to_string(), "$0.0000");
        assert_eq!(Usd(25_000).to_string(), "$0.000025");
        assert_eq!(Usd::from_dollars(-1.0), Usd(0));
    }
}
