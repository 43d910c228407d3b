//! Credit: how much usage an instance may report without waiting for the run to decide.
//!
//! A supervising task used to wait for the run's acknowledgement of every usage delta, so
//! that a budget decision is taken before the instance's next line is read. Far from any
//! threshold nothing can be decided, and the round trip is wasted. So each running
//! instance holds a [`Credit`]: a share of the room left below the nearest threshold (the
//! warning or the limit) of every budget it counts toward. A delta that its credit covers
//! is paid from it and passed on without waiting; only a delta that could reach a
//! threshold waits for the decision, as before.
//!
//! [`Credits`] is the run's book of what is handed out. For every budget `b` it keeps
//! `held(b)`, the credit its running members hold that the run has not yet seen spent
//! (unspent, or spent and in flight). Grants keep `held(b) <= room(b)`; a paid delta
//! moves an amount from `held(b)` to the budget's use, which keeps it. So paid deltas
//! alone can never reach a threshold. Use that arrives without credit (a delta too large
//! for its sender's credit, use recorded by other runs) shrinks the room: the credit of
//! the members of a budget whose room no longer covers `held(b)` is revoked
//! ([`Credits::overdrawn`], [`Credits::returned`]) and granted anew from what is left.
//!
//! What this keeps (tests below, by simulating tasks and the run in random
//! interleavings): a budget's use overshoots its limit by no more than the sum, over its
//! members, of one delta each — the bound the wait on every line gave — and with one
//! instance at a time every decision is still taken on a delta that waited.

use crate::core::budget::{Ledger, Unit};
use crate::core::plan::InstanceId;
use crate::core::usage::Usd;

/// Usage an instance may report without waiting: tokens and nanodollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credit {
    pub tokens: u64,
    pub nanos: u64,
}

impl Credit {
    pub const ZERO: Credit = Credit {
        tokens: 0,
        nanos: 0,
    };

    /// What a delta costs in credit: only growth does (a downward correction decides
    /// nothing).
    pub fn of(tokens: i64, cost: Usd) -> Credit {
        Credit {
            tokens: u64::try_from(tokens).unwrap_or(0),
            nanos: u64::try_from(cost.0).unwrap_or(0),
        }
    }

    /// Pays `delta` from this credit when it covers it; `false` (and no change) when not.
    pub fn pay(&mut self, delta: Credit) -> bool {
        if delta.tokens > self.tokens || delta.nanos > self.nanos {
            return false;
        }
        self.tokens -= delta.tokens;
        self.nanos -= delta.nanos;
        true
    }

    /// `self + other`, saturating.
    pub fn plus(self, other: Credit) -> Credit {
        Credit {
            tokens: self.tokens.saturating_add(other.tokens),
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }

    fn get(self, unit: Unit) -> u64 {
        match unit {
            Unit::Tokens => self.tokens,
            Unit::Usd => self.nanos,
        }
    }
}

/// The run's book of credit handed out (pure; the runtime holds the credit itself).
#[derive(Debug, Clone, Default)]
pub struct Credits {
    /// Per instance: granted and not yet seen spent.
    held: Vec<Credit>,
    /// Per budget (the ledger's index): the sum of `held` over its members, in its unit.
    held_in: Vec<i128>,
}

impl Credits {
    pub fn new(ledger: &Ledger, instances: usize) -> Credits {
        Credits {
            held: vec![Credit::ZERO; instances],
            held_in: vec![0; ledger.budget_count()],
        }
    }

    /// What instance `id` holds that the run has not seen spent.
    pub fn held(&self, id: InstanceId) -> Credit {
        self.held.get(id).copied().unwrap_or_default()
    }

    /// Grants `id` its share of the room left in each budget it counts toward: the room
    /// not held by others, divided by the running members. A unit no budget with room
    /// covers is unlimited. The caller adds the result to the instance's credit.
    pub fn grant(&mut self, ledger: &Ledger, id: InstanceId) -> Credit {
        if id >= self.held.len() {
            return Credit::ZERO;
        }
        let mut grant = Credit {
            tokens: u64::MAX,
            nanos: u64::MAX,
        };
        for h in ledger.headroom(id) {
            let Some(room) = h.room else { continue };
            let free = room - self.held_in.get(h.budget).copied().unwrap_or(0);
            let share = (free / h.running.max(1) as i128).max(0);
            let share = u64::try_from(share).unwrap_or(u64::MAX);
            match h.unit {
                Unit::Tokens => grant.tokens = grant.tokens.min(share),
                Unit::Usd => grant.nanos = grant.nanos.min(share),
            }
        }
        self.change(ledger, id, grant, 1);
        grant
    }

    /// A delta `id` paid from its credit reached the run (after the ledger recorded it).
    pub fn paid(&mut self, ledger: &Ledger, id: InstanceId, delta: Credit) {
        let delta = Credit {
            tokens: delta.tokens.min(self.held(id).tokens),
            nanos: delta.nanos.min(self.held(id).nanos),
        };
        self.change(ledger, id, delta, -1);
    }

    /// `id` gave back `unspent` credit (revoked, or its task ended).
    pub fn returned(&mut self, ledger: &Ledger, id: InstanceId, unspent: Credit) {
        self.paid(ledger, id, unspent);
    }

    /// Instances whose credit must be revoked: the running members of a budget (of those
    /// instance `of` counts toward; all budgets when `None`) whose room no longer covers
    /// the credit its members hold.
    pub fn overdrawn(&self, ledger: &Ledger, of: Option<InstanceId>) -> Vec<InstanceId> {
        let check = |b: usize| {
            let h = ledger.headroom_of(b);
            matches!(h.room, Some(room) if self.held_in[b] > room)
        };
        let over: Vec<usize> = match of {
            Some(id) => ledger
                .headroom(id)
                .map(|h| h.budget)
                .filter(|&b| check(b))
                .collect(),
            None => (0..self.held_in.len()).filter(|&b| check(b)).collect(),
        };
        let mut ids: Vec<InstanceId> = over
            .into_iter()
            .flat_map(|b| ledger.running_members(b))
            .filter(|&m| self.held(m) != Credit::ZERO)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// `id` holds `sign * amount` more, and so do the sums of its budgets with room.
    fn change(&mut self, ledger: &Ledger, id: InstanceId, amount: Credit, sign: i128) {
        let Some(held) = self.held.get_mut(id) else {
            return;
        };
        *held = if sign > 0 {
            held.plus(amount)
        } else {
            Credit {
                tokens: held.tokens - amount.tokens.min(held.tokens),
                nanos: held.nanos - amount.nanos.min(held.nanos),
            }
        };
        for h in ledger.headroom(id) {
            // A budget without room decides nothing: what is held toward it is moot (and
            // may be unlimited).
            if h.room.is_some() {
                let v = i128::from(amount.get(h.unit));
                self.held_in[h.budget] = self.held_in[h.budget].saturating_add(sign * v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::{Decision, InstanceBudget};
    use crate::core::plan::{BudgetConfig, Mode};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, VecDeque};

    /// One line's usage as the tracker reports it.
    type Delta = (i64, Usd);

    /// What the simulated run saw.
    #[derive(Debug, Default)]
    struct Outcome {
        /// Final use of the overall token budget.
        used: i128,
        /// Decisions taken on a delta that was paid from credit (did not wait).
        decided_unwaited: usize,
        /// The ledger's terminate decisions.
        stops: usize,
        /// Deltas that waited for the run.
        waited: usize,
    }

    /// Tasks read their lines and send them to the run through one FIFO queue; the run
    /// records them in the ledger. `credit` selects the protocol: `false` is the old
    /// one (every delta waits for the run), `true` pays what credit covers. `schedule`
    /// picks who moves next among those who can. A stopped
    /// instance reads no further lines (its output ends at SIGTERM), but what it already
    /// sent is recorded: spent is spent.
    fn simulate(
        ledger: &mut Ledger,
        lines: &[Vec<Delta>],
        schedule: &[u8],
        credit: bool,
        sequential: bool,
    ) -> Outcome {
        let n = lines.len();
        let mut credits = Credits::new(ledger, n);
        let mut cells = vec![Credit::ZERO; n];
        let mut next = vec![0usize; n];
        let mut waiting = vec![false; n];
        let mut stopped = vec![false; n];
        let mut queue: VecDeque<(usize, Delta, bool)> = VecDeque::new();
        let mut out = Outcome::default();
        for (id, cell) in cells.iter_mut().enumerate() {
            assert!(matches!(
                ledger.admit(id),
                crate::core::budget::Admission::Admit { .. }
            ));
            if credit {
                *cell = cell.plus(credits.grant(ledger, id));
            }
        }
        let mut steps = schedule.iter().cycle();
        loop {
            // Who can move: the run (`None`) when a message waits, and each task that
            // can read a line. The schedule picks one.
            let mut can: Vec<Option<usize>> = Vec::new();
            if !queue.is_empty() {
                can.push(None);
            }
            can.extend(
                (0..n)
                    .filter(|&i| !stopped[i] && !waiting[i] && next[i] < lines[i].len())
                    .map(Some),
            );
            if can.is_empty() {
                break;
            }
            let step = usize::from(*steps.next().unwrap_or(&0));
            // Sequential: the run answers each message before anyone reads on.
            let pick = if sequential { 0 } else { step % can.len() };
            let pick = if sequential && queue.is_empty() {
                step % can.len()
            } else {
                pick
            };
            match can[pick] {
                None => {
                    let Some((id, (t, c), paid)) = queue.pop_front() else {
                        break;
                    };
                    let decisions = ledger.record(id, t, c);
                    if paid {
                        credits.paid(ledger, id, Credit::of(t, c));
                        if !decisions.is_empty() {
                            out.decided_unwaited += 1;
                        }
                    }
                    for d in &decisions {
                        if let Decision::Terminate { instances, .. } = d {
                            out.stops += 1;
                            for &i in instances {
                                stopped[i] = true;
                            }
                        }
                    }
                    if credit && !paid {
                        for other in credits.overdrawn(ledger, Some(id)) {
                            let unspent = std::mem::take(&mut cells[other]);
                            credits.returned(ledger, other, unspent);
                            cells[other] = cells[other].plus(credits.grant(ledger, other));
                        }
                        cells[id] = cells[id].plus(credits.grant(ledger, id));
                    }
                    if !paid {
                        waiting[id] = false;
                    }
                }
                Some(id) => {
                    let (t, c) = lines[id][next[id]];
                    next[id] += 1;
                    let paid = credit && cells[id].pay(Credit::of(t, c));
                    queue.push_back((id, (t, c), paid));
                    waiting[id] = !paid;
                    out.waited += usize::from(!paid);
                }
            }
        }
        out.used = ledger
            .budgets()
            .first()
            .map(|b| b.used.raw())
            .unwrap_or_default();
        out
    }

    fn ledger(n: usize, limit: u64, cap: Option<u64>, mode: Mode) -> Ledger {
        let cfg = BudgetConfig {
            mode,
            warn_at_percent: 80.0,
            overall_tokens: Some(limit),
            command_tokens: BTreeMap::from([("/a".to_string(), limit / 2)]),
            estimate_tokens: 0,
            ..BudgetConfig::default()
        };
        let instances = (0..n)
            .map(|i| InstanceBudget {
                base_command: (i % 2 == 0).then(|| "/a".to_string()),
                max_tokens: cap,
                ..InstanceBudget::default()
            })
            .collect();
        Ledger::new(&cfg, instances)
    }

    fn lines_strategy() -> impl Strategy<Value = Vec<Vec<Delta>>> {
        proptest::collection::vec(
            proptest::collection::vec(
                (
                    prop_oneof![4 => 0i64..500, 1 => 0i64..20_000, 1 => -300i64..0],
                    (0i64..1000).prop_map(Usd),
                ),
                0..40,
            ),
            1..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// The limit is overshot by at most one delta per member, with or without
        /// credit, whatever the interleaving — and never by more with credit than the
        /// old protocol's worst case.
        #[test]
        fn no_budget_overshoots_more_than_with_a_wait_on_every_line(
            lines in lines_strategy(),
            limit in 1u64..60_000,
            cap in proptest::option::of(1u64..30_000),
            schedule in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let n = lines.len();
            // Today's worst case: the crossing delta and one more in flight per member.
            let bound: i128 = lines
                .iter()
                .map(|l| l.iter().map(|d| i128::from(d.0.max(0))).max().unwrap_or(0))
                .sum();
            for credit in [false, true] {
                let mut l = ledger(n, limit, cap, Mode::Block);
                let out = simulate(&mut l, &lines, &schedule, credit, false);
                prop_assert!(
                    out.used <= i128::from(limit) + bound,
                    "credit {credit}: used {} > limit {limit} + {bound}", out.used
                );
                // Every budget, not only the overall one.
                for b in l.budgets() {
                    prop_assert!(b.used.raw() <= b.limit.raw() + bound, "{:?}", b);
                }
            }
        }

        /// With the run answering each message at once (no interleaving), every
        /// decision — warning or stop — is taken on a delta that waited for it, as
        /// before: credit never lets a line that could cross a threshold go unchecked.
        #[test]
        fn decisions_are_taken_on_deltas_that_wait(
            lines in lines_strategy(),
            limit in 1u64..60_000,
            cap in proptest::option::of(1u64..30_000),
            warn in any::<bool>(),
            schedule in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let n = lines.len();
            let mode = if warn { Mode::Warn } else { Mode::Block };
            let mut l = ledger(n, limit, cap, mode);
            let out = simulate(&mut l, &lines, &schedule, true, true);
            prop_assert_eq!(out.decided_unwaited, 0);
        }

        /// Paid and waited alike, every delta reaches the ledger exactly once.
        #[test]
        fn every_delta_is_recorded(
            lines in lines_strategy(),
            schedule in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let n = lines.len();
            // A limit no line can reach: nobody is stopped.
            let mut l = ledger(n, u64::MAX / 4, None, Mode::Block);
            let out = simulate(&mut l, &lines, &schedule, true, false);
            // The same deltas, each waited for, one instance after the other.
            let mut reference = ledger(n, u64::MAX / 4, None, Mode::Block);
            let sequential = simulate(&mut reference, &lines, &[0], false, true);
            prop_assert_eq!(out.used, sequential.used);
        }
    }

    #[test]
    fn far_from_any_threshold_nothing_waits() {
        let lines = vec![vec![(100, Usd(0)); 50]; 4];
        let mut l = ledger(4, 1_000_000, None, Mode::Block);
        let mut credits = Credits::new(&l, 4);
        for id in 0..4 {
            let _ = l.admit(id);
        }
        let grants: Vec<Credit> = (0..4).map(|id| credits.grant(&l, id)).collect();
        // Overall room to 80% is 799,999, shared by four; the command budget /a (500,000,
        // 80% = 400,000) by its two members.
        assert!(grants.iter().all(|g| g.tokens >= 5_000), "{grants:?}");
        assert!(
            grants.iter().all(|g| g.nanos == u64::MAX),
            "no dollar budget"
        );
        let out = simulate(&mut l, &lines, &[1, 3, 5, 7, 0], true, false);
        assert_eq!((out.used, out.waited, out.stops), (20_000, 0, 0));
        // The old protocol: 200 round trips.
        let mut l = ledger(4, 1_000_000, None, Mode::Block);
        let out = simulate(&mut l, &lines, &[1, 3, 5, 7, 0], false, false);
        assert_eq!((out.used, out.waited), (20_000, 200));
    }

    #[test]
    fn use_from_elsewhere_overdraws_held_credit() {
        use crate::core::budget::{Amount, BudgetKey, Scope};
        let mut l = ledger(2, 10_000, None, Mode::Block);
        let mut credits = Credits::new(&l, 2);
        let _ = (l.admit(0), l.admit(1));
        let g0 = credits.grant(&l, 0);
        let g1 = credits.grant(&l, 1);
        assert!(g0.tokens > 0 && g1.tokens > 0);
        assert!(credits.overdrawn(&l, None).is_empty());
        let key = BudgetKey {
            scope: Scope::Overall,
            unit: Unit::Tokens,
        };
        let _ = l.set_elsewhere(&key, Amount::Tokens(7_000), Amount::Tokens(0));
        assert_eq!(l.elsewhere_changes(), 1);
        assert_eq!(credits.overdrawn(&l, None), vec![0, 1]);
        credits.returned(&l, 0, g0);
        credits.returned(&l, 1, g1);
        assert!(credits.overdrawn(&l, None).is_empty());
        let again = credits.grant(&l, 0);
        assert!(again.tokens < g0.tokens, "{again:?} < {g0:?}");
    }
}
