//! The pre-launch token estimate of an instance, and where it came from.
//!
//! One rule (README, "How estimates work"):
//! 1. an instance with its own token cap (`max_tokens_per_command`) is estimated at its cap;
//! 2. an explicit `--estimate N` pins every other instance's estimate to N;
//! 3. else the 75th percentile of the total tokens of the last [`HISTORY_WINDOW`]
//!    completed instances recorded in the ledger with the same project, base command and
//!    configured model, when there are at least [`MIN_HISTORY`];
//! 4. else [`DEFAULT_ESTIMATE`].
//!
//! Pure: the caller loads the history (`store::UsageStore::history`).

use std::fmt;

/// Estimate when nothing better is known.
pub const DEFAULT_ESTIMATE: u64 = 1000;
/// How many of the most recent completed instances the percentile looks at.
pub const HISTORY_WINDOW: usize = 50;
/// Fewer completed instances than this and history is not trusted.
pub const MIN_HISTORY: usize = 3;

/// Where an estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EstimateSource {
    /// The instance's own token cap.
    Cap,
    /// `--estimate N` given on the command line.
    Pinned,
    /// The 75th percentile of this many recorded completed instances.
    History { runs: usize },
    /// No cap, no `--estimate`, too little history.
    Default,
}

impl fmt::Display for EstimateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EstimateSource::Cap => f.write_str("cap"),
            EstimateSource::Pinned => f.write_str("--estimate"),
            EstimateSource::History { runs } => write!(f, "p75 of {runs} runs"),
            EstimateSource::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub tokens: u64,
    pub source: EstimateSource,
}

/// The estimate rule. `history` is the total tokens of recorded completed instances of
/// the same key, newest first (only the first [`HISTORY_WINDOW`] are used).
pub fn estimate(cap: Option<u64>, pinned: Option<u64>, history: &[u64]) -> Estimate {
    if let Some(tokens) = cap {
        return Estimate {
            tokens,
            source: EstimateSource::Cap,
        };
    }
    if let Some(tokens) = pinned {
        return Estimate {
            tokens,
            source: EstimateSource::Pinned,
        };
    }
    let window = &history[..history.len().min(HISTORY_WINDOW)];
    if window.len() >= MIN_HISTORY {
        let mut sorted = window.to_vec();
        sorted.sort_unstable();
        return Estimate {
            tokens: percentile(&sorted, 75),
            source: EstimateSource::History { runs: sorted.len() },
        };
    }
    Estimate {
        tokens: DEFAULT_ESTIMATE,
        source: EstimateSource::Default,
    }
}

/// Nearest-rank percentile of ascending `sorted` (0 for an empty slice): the smallest
/// value with at least `p`% of the values at or below it.
pub fn percentile(sorted: &[u64], p: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = (u64::from(p.min(100)) * n as u64).div_ceil(100).max(1) as usize;
    sorted[rank.min(n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cap_wins_then_pin_then_history_then_default() {
        let h = [10, 20, 30, 40];
        assert_eq!(
            estimate(Some(5), Some(7), &h),
            Estimate {
                tokens: 5,
                source: EstimateSource::Cap
            }
        );
        assert_eq!(estimate(None, Some(7), &h).source, EstimateSource::Pinned);
        assert_eq!(estimate(None, Some(7), &h).tokens, 7);
        assert_eq!(
            estimate(None, None, &h),
            Estimate {
                tokens: 30,
                source: EstimateSource::History { runs: 4 }
            }
        );
        assert_eq!(
            estimate(None, None, &[10, 20]),
            Estimate {
                tokens: DEFAULT_ESTIMATE,
                source: EstimateSource::Default
            }
        );
    }

    #[test]
    fn three_runs_are_enough_and_only_the_newest_fifty_count() {
        assert_eq!(estimate(None, None, &[1, 2, 3]).tokens, 3);
        // 50 small newest values, then huge old ones that must be ignored.
        let mut h = vec![100u64; 50];
        h.extend([1_000_000u64; 20]);
        let e = estimate(None, None, &h);
        assert_eq!(e.tokens, 100);
        assert_eq!(e.source, EstimateSource::History { runs: 50 });
    }

    #[test]
    fn sources_read_as_documented() {
        assert_eq!(
            EstimateSource::History { runs: 12 }.to_string(),
            "p75 of 12 runs"
        );
        assert_eq!(EstimateSource::Default.to_string(), "default");
        assert_eq!(EstimateSource::Pinned.to_string(), "--estimate");
        assert_eq!(EstimateSource::Cap.to_string(), "cap");
    }

    #[test]
    fn percentile_is_nearest_rank() {
        assert_eq!(percentile(&[], 75), 0);
        assert_eq!(percentile(&[7], 50), 7);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 75), 75);
        assert_eq!(percentile(&v, 95), 95);
        assert_eq!(percentile(&v, 100), 100);
        assert_eq!(percentile(&[1, 2, 3, 4], 75), 3);
    }

    proptest! {
        #[test]
        fn percentile_has_p_percent_at_or_below(mut v in proptest::collection::vec(0u64..1_000_000, 1..200), p in 1u32..=100) {
            v.sort_unstable();
            let x = percentile(&v, p);
            let at_or_below = v.iter().filter(|&&y| y <= x).count();
            let below = v.iter().filter(|&&y| y < x).count();
            // At least p% at or below it, and fewer than p% strictly below.
            prop_assert!(at_or_below * 100 >= p as usize * v.len());
            prop_assert!(below * 100 < p as usize * v.len());
        }

        #[test]
        fn history_estimate_is_one_of_the_recorded_values(h in proptest::collection::vec(0u64..1_000_000, 3..120)) {
            let e = estimate(None, None, &h);
            prop_assert!(h[..h.len().min(HISTORY_WINDOW)].contains(&e.tokens));
        }
    }
}
