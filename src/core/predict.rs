//! What a run would admit, found by replaying the run's own [`Ledger`] (the dry run's
//! prediction): every instance admitted together is assumed to spend exactly its
//! estimate and finish; then those that had to wait ask again, in plan order, until
//! nothing changes. No second budget model: the ledger's `admit` decides every step.

use crate::core::budget::{Admission, BudgetKey, Ledger, Warning};
use crate::core::plan::InstanceId;

/// The predicted fate of one instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Launches at the start.
    Launch,
    /// Warn mode: launches with these warnings (its estimate does not fit).
    Over(Vec<Warning>),
    /// Block mode: waits for `budget` while others hold their estimates; `then` is what
    /// happens once they have spent them: `None` it launches, `Some` it is blocked.
    Wait {
        budget: BudgetKey,
        then: Option<Admission>,
    },
    /// Block mode: never launches, even alone.
    Blocked(Admission),
}

impl Prediction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Prediction::Launch => "ok",
            Prediction::Over(_) => "over",
            Prediction::Wait { .. } => "wait",
            Prediction::Blocked(_) => "blocked",
        }
    }

    /// The budget it waits for or is blocked by.
    pub fn budget(&self) -> Option<&BudgetKey> {
        match self {
            Prediction::Wait { budget, .. } => Some(budget),
            Prediction::Blocked(Admission::Block { budget, .. }) => Some(budget),
            _ => None,
        }
    }
}

/// Replays admission of instances `0..n` on `ledger` (consumed: it ends up holding the
/// predicted spend).
pub fn predict(mut ledger: Ledger, n: usize) -> Vec<Prediction> {
    let mut out = vec![Prediction::Launch; n];
    let mut pending: Vec<InstanceId> = (0..n).collect();
    let mut first = true;
    while !pending.is_empty() {
        let mut admitted = Vec::new();
        let mut waiting = Vec::new();
        for id in pending {
            let answer = ledger.admit(id);
            let p = &mut out[id];
            match answer {
                Admission::Admit { warnings } => {
                    if first && !warnings.is_empty() {
                        *p = Prediction::Over(warnings);
                    }
                    admitted.push(id);
                }
                Admission::Wait { budget } => {
                    if first {
                        *p = Prediction::Wait { budget, then: None };
                    }
                    waiting.push(id);
                }
                block @ Admission::Block { .. } => match p {
                    Prediction::Wait { then, .. } => *then = Some(block),
                    _ => *p = Prediction::Blocked(block),
                },
            }
        }
        if admitted.is_empty() {
            // Nothing runs that could free headroom: cannot happen with a consistent
            // ledger (waiting needs someone's reservation), but never loop forever.
            break;
        }
        for id in admitted {
            let (tokens, cost) = ledger.estimate(id);
            let _ = ledger.record(id, i64::try_from(tokens).unwrap_or(i64::MAX), cost);
            ledger.finish(id);
        }
        pending = waiting;
        first = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::{InstanceBudget, Scope, Unit};
    use crate::core::plan::{BudgetConfig, Mode};
    use crate::core::usage::Usd;

    fn ledger(mode: Mode, overall: u64, estimates: &[u64]) -> Ledger {
        let cfg = BudgetConfig {
            mode,
            overall_tokens: Some(overall),
            warn_at_percent: 80.0,
            estimate_tokens: 1000,
            ..BudgetConfig::default()
        };
        let insts = estimates
            .iter()
            .map(|&e| InstanceBudget {
                estimate_tokens: e,
                estimate_cost: Usd::ZERO,
                ..InstanceBudget::default()
            })
            .collect();
        Ledger::new(&cfg, insts)
    }

    const OVERALL: BudgetKey = BudgetKey {
        scope: Scope::Overall,
        unit: Unit::Tokens,
    };

    #[test]
    fn everything_that_fits_together_launches() {
        let p = predict(ledger(Mode::Block, 3000, &[1000, 1000, 1000]), 3);
        assert_eq!(p, vec![Prediction::Launch; 3]);
    }

    #[test]
    fn block_mode_waits_then_launches_or_is_blocked_as_the_run_would() {
        // 4000: a, b and c launch (3000 held); d (1000) fits, e (1500) waits. After the
        // first wave spends 3000 (+ d's 1000 = 4000), e is blocked: no room left.
        let p = predict(
            ledger(Mode::Block, 4000, &[1000, 1000, 1000, 1000, 1500]),
            5,
        );
        assert_eq!(p[3], Prediction::Launch);
        match &p[4] {
            Prediction::Wait { budget, then } => {
                assert_eq!(*budget, OVERALL);
                assert!(matches!(then, Some(Admission::Block { .. })), "{then:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_waiter_launches_when_the_first_wave_leaves_room() {
        let p = predict(ledger(Mode::Block, 2500, &[1000, 1000, 400]), 3);
        // a and b hold 2000; c (400) fits: launches.
        assert_eq!(p[2], Prediction::Launch);
        let p = predict(ledger(Mode::Block, 2500, &[1000, 1000, 600, 100]), 4);
        // c waits while a and b hold 2000 + d? d fits (2100); then 2100 spent, c 600 >
        // 400 left: blocked.
        assert!(
            matches!(p[2], Prediction::Wait { then: Some(_), .. }),
            "{:?}",
            p[2]
        );
        assert_eq!(p[3], Prediction::Launch);
    }

    #[test]
    fn an_estimate_over_the_limit_alone_is_blocked() {
        let p = predict(ledger(Mode::Block, 500, &[1000]), 1);
        assert!(
            matches!(&p[0], Prediction::Blocked(Admission::Block { budget, .. }) if *budget == OVERALL)
        );
        assert_eq!(p[0].as_str(), "blocked");
    }

    #[test]
    fn warn_mode_launches_everything_and_names_what_goes_over() {
        let p = predict(ledger(Mode::Warn, 1500, &[1000, 1000]), 2);
        assert_eq!(p[0], Prediction::Launch);
        assert!(matches!(&p[1], Prediction::Over(w) if w.len() == 1));
    }
}
