//! Efficiency of a run or a group of instances: cache hit rate, tokens per tool call and
//! dollars per completed instance. Each is `None` when its denominator is zero.

use crate::core::usage::{Usage, Usd};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Efficiency {
    /// cache reads ÷ (input + cache writes + cache reads), from 0 to 1.
    pub cache_hit_rate: Option<f64>,
    /// total tokens ÷ tool calls.
    pub tokens_per_tool_call: Option<f64>,
    /// dollars ÷ completed instances, rounded to the nearest nanodollar.
    pub cost_per_completed: Option<Usd>,
}

pub fn efficiency(usage: &Usage, cost: Usd, tool_calls: u64, completed: u64) -> Efficiency {
    let read = u128::from(usage.cache_read_input_tokens);
    let prompt =
        u128::from(usage.input_tokens) + u128::from(usage.cache_creation_input_tokens) + read;
    let cache_hit_rate = (prompt > 0).then(|| read as f64 / prompt as f64);
    let tokens_per_tool_call = (tool_calls > 0).then(|| usage.total() as f64 / tool_calls as f64);
    let cost_per_completed = (completed > 0).then(|| {
        let n = i128::from(completed);
        let c = i128::from(cost.0);
        // Round half away from zero.
        let q = (2 * c + n * c.signum()) / (2 * n);
        Usd(i64::try_from(q).unwrap_or(i64::MAX))
    });
    Efficiency {
        cache_hit_rate,
        tokens_per_tool_call,
        cost_per_completed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ratios_and_empty_denominators() {
        let e = efficiency(&Usage::new(10, 5, 30, 60), Usd(10), 4, 3);
        assert_eq!(e.cache_hit_rate, Some(0.6));
        assert_eq!(e.tokens_per_tool_call, Some(26.25));
        assert_eq!(e.cost_per_completed, Some(Usd(3)));
        let none = efficiency(&Usage::default(), Usd(5), 0, 0);
        assert_eq!(none.cache_hit_rate, None);
        assert_eq!(none.tokens_per_tool_call, None);
        assert_eq!(none.cost_per_completed, None);
        assert_eq!(
            efficiency(&Usage::default(), Usd(5), 0, 2).cost_per_completed,
            Some(Usd(3))
        );
    }

    proptest! {
        #[test]
        fn hit_rate_is_a_fraction_and_cost_per_completed_is_the_rounded_quotient(
            i in 0u64..1_000_000_000, w in 0u64..1_000_000_000, r in 0u64..1_000_000_000,
            cost in 0i64..1_000_000_000_000, n in 1u64..10_000,
        ) {
            let e = efficiency(&Usage::new(i, 0, w, r), Usd(cost), 0, n);
            if let Some(h) = e.cache_hit_rate {
                prop_assert!((0.0..=1.0).contains(&h));
            }
            let per = e.cost_per_completed.map(|u| u.0).unwrap_or(-1);
            let n = n as i64;
            // |per × n − cost| ≤ n / 2
            prop_assert!((per * n - cost).abs() * 2 <= n);
        }
    }
}
