//! Forecasts from a snapshot and the run time: each budget's burn rate (tokens or
//! dollars per minute, averaged over the run so far) and when it runs out at that rate,
//! and the run's ETA from the pace at which instances have finished.
//!
//! Pure arithmetic on what the reports already show; nothing here is a promise. Too
//! early in a run (under [`MIN_ELAPSED`]) or with nothing spent or finished yet there is
//! no forecast at all rather than a wild one.

use std::time::Duration;

/// No forecast before this much run time: the first seconds say little about the rate.
pub const MIN_ELAPSED: Duration = Duration::from_secs(3);

/// One budget's spending pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burn {
    /// Units (tokens or dollars) per minute, averaged over the run so far.
    pub per_minute: f64,
    /// Time until `used` reaches `limit` at that rate; `None` when it has already.
    pub runs_out_in: Option<Duration>,
}

/// The burn rate of a budget with `limit` (> 0) of which `used` is spent after `elapsed`.
/// `None` before [`MIN_ELAPSED`], without a limit, or when nothing is spent yet.
pub fn burn(used: f64, limit: f64, elapsed: Duration) -> Option<Burn> {
    if elapsed < MIN_ELAPSED || !(limit.is_finite() && limit > 0.0) {
        return None;
    }
    if !(used.is_finite() && used > 0.0) {
        return None;
    }
    let minutes = elapsed.as_secs_f64() / 60.0;
    let per_minute = used / minutes;
    let left = limit - used;
    let runs_out_in = if left <= 0.0 {
        None
    } else {
        Duration::try_from_secs_f64(left / per_minute * 60.0).ok()
    };
    Some(Burn {
        per_minute,
        runs_out_in,
    })
}

/// Time until every instance has finished, at the pace instances have finished so far:
/// `elapsed / done` per instance for the `total - done` left. `None` until one has
/// finished (and before [`MIN_ELAPSED`]), and once all have.
pub fn eta(done: usize, total: usize, elapsed: Duration) -> Option<Duration> {
    if done == 0 || done >= total || elapsed < MIN_ELAPSED {
        return None;
    }
    let left = (total - done) as f64;
    Duration::try_from_secs_f64(elapsed.as_secs_f64() / done as f64 * left).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn burn_rate_and_runway() {
        // 1,000 of 5,000 tokens in 2 minutes: 500/min, 4,000 left = 8 minutes.
        let b = burn(1000.0, 5000.0, 2 * MIN).unwrap();
        assert_eq!(b.per_minute, 500.0);
        assert_eq!(b.runs_out_in, Some(8 * MIN));
        // Dollars work the same way.
        let b = burn(0.5, 2.0, 30 * Duration::from_secs(1) * 2).unwrap();
        assert_eq!(b.per_minute, 0.5);
        assert_eq!(b.runs_out_in, Some(3 * MIN));
        // Spent in full or beyond: a rate, no runway.
        let b = burn(6000.0, 5000.0, MIN).unwrap();
        assert_eq!(b.runs_out_in, None);
        assert_eq!(burn(5000.0, 5000.0, MIN).unwrap().runs_out_in, None);
    }

    #[test]
    fn no_forecast_without_evidence() {
        assert_eq!(burn(0.0, 5000.0, MIN), None);
        assert_eq!(burn(100.0, 0.0, MIN), None);
        assert_eq!(burn(100.0, f64::NAN, MIN), None);
        assert_eq!(burn(f64::NAN, 100.0, MIN), None);
        assert_eq!(burn(100.0, 5000.0, Duration::from_secs(2)), None);
        assert_eq!(eta(0, 10, MIN), None);
        assert_eq!(eta(10, 10, MIN), None);
        assert_eq!(eta(3, 10, Duration::from_secs(1)), None);
    }

    #[test]
    fn eta_from_finished_instances() {
        // 12 of 60 done in 2 minutes: 10 s each, 48 left = 8 minutes.
        assert_eq!(eta(12, 60, 2 * MIN), Some(8 * MIN));
        assert_eq!(eta(1, 2, MIN), Some(MIN));
    }

    proptest! {
        #[test]
        fn runway_reaches_the_limit(used in 1u64..1_000_000, extra in 1u64..1_000_000, secs in 3u64..100_000) {
            let limit = (used + extra) as f64;
            let elapsed = Duration::from_secs(secs);
            let b = burn(used as f64, limit, elapsed).unwrap();
            let at_end = b.per_minute * (elapsed + b.runs_out_in.unwrap()).as_secs_f64() / 60.0;
            prop_assert!((at_end - limit).abs() <= limit * 1e-6);
        }

        #[test]
        fn eta_shrinks_as_instances_finish(total in 2usize..500, secs in 3u64..100_000) {
            let elapsed = Duration::from_secs(secs);
            let mut last = None;
            for done in 1..total {
                let e = eta(done, total, elapsed).unwrap();
                if let Some(prev) = last {
                    prop_assert!(e <= prev);
                }
                last = Some(e);
            }
        }
    }
}
