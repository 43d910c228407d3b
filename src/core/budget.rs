//! The two-tier budget ledger (SPEC section 5): which budgets exist, what each has used,
//! what running instances hold in reservation, whether an instance may launch, and what
//! must happen when usage crosses a threshold.
//!
//! The ledger is pure and synchronous. It never kills, sleeps or prints: it answers
//! `admit` with an [`Admission`] and `record` with [`Decision`]s, and the dispatcher
//! carries them out. Amounts are kept as `i128` in the budget's base unit (tokens or
//! nanodollars) so sums are exact and cannot overflow on any realistic run.

use crate::core::estimate::{Estimate, EstimateSource};
use crate::core::period::{Period, PeriodScope};
use crate::core::plan::{BudgetConfig, InstanceId, InstanceSpec, Mode, Plan};
use crate::core::pricing::Pricing;
use crate::core::usage::fmt_count;
use crate::core::usage::Usd;
use serde::Serialize;
use std::fmt;

/// What a budget covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Overall,
    /// A base command such as `/test`.
    Command(String),
    /// One instance's own cap (`max_tokens_per_command` / `max_cost_usd`).
    Instance(InstanceId),
    /// The project's budget for the current day, ISO week or month (issue 12): every
    /// instance counts toward it, and so does what other runs of the project recorded in
    /// the period (`set_elsewhere`).
    Periodic(Period, PeriodScope),
}

impl Scope {
    /// The budget's key as the report and events give it: the base command (`/test`),
    /// the period (`day`, `week all`, `month /review`); `None` for the overall budget and
    /// an instance cap, which the caller names.
    pub fn key_text(&self) -> Option<String> {
        match self {
            Scope::Command(c) => Some(c.clone()),
            Scope::Periodic(p, s) => Some(s.key(*p)),
            Scope::Overall | Scope::Instance(_) => None,
        }
    }

    /// `overall`, `command` or `instance`, as the JSON report names scopes.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Overall => "overall",
            Scope::Command(_) => "command",
            Scope::Instance(_) => "instance",
            Scope::Periodic(..) => "periodic",
        }
    }
}

/// The unit a budget is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Tokens,
    Usd,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Tokens => "tokens",
            Unit::Usd => "usd",
        }
    }
}

/// Names one budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BudgetKey {
    pub scope: Scope,
    pub unit: Unit,
}

/// Reads like the CLI flags: `overall budget`, `overall cost budget`,
/// `command budget /test`, `command cost budget /test`, `instance budget`,
/// `instance cost budget`. Instance scopes carry no name because an instance-scope
/// message always concerns exactly the instance it is reported for; the caller, which
/// knows the name, puts it in front.
impl fmt::Display for BudgetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Tokens => "",
            Unit::Usd => "cost ",
        };
        match &self.scope {
            Scope::Overall => write!(f, "overall {unit}budget"),
            Scope::Command(c) => write!(f, "command {unit}budget {c}"),
            Scope::Instance(_) => write!(f, "instance {unit}budget"),
            Scope::Periodic(p, PeriodScope::Project) => {
                write!(f, "{} {unit}budget", p.adjective())
            }
            Scope::Periodic(p, PeriodScope::All) => {
                write!(f, "{} {unit}budget of all projects", p.adjective())
            }
            Scope::Periodic(p, PeriodScope::Command(c)) => {
                write!(f, "{} {unit}budget {c}", p.adjective())
            }
        }
    }
}

/// A quantity in a budget's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Tokens(u64),
    Usd(Usd),
}

/// `v` as an `i64`, or the nearest end of its range.
pub fn saturating_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl Amount {
    /// An amount from the base unit (tokens or nanodollars), saturating.
    pub fn from_raw(unit: Unit, raw: i128) -> Amount {
        match unit {
            Unit::Tokens => Amount::Tokens(u64::try_from(raw.max(0)).unwrap_or(u64::MAX)),
            Unit::Usd => Amount::Usd(Usd(saturating_i64(raw))),
        }
    }

    /// In the base unit: tokens or nanodollars.
    pub fn raw(self) -> i128 {
        match self {
            Amount::Tokens(t) => i128::from(t),
            Amount::Usd(u) => i128::from(u.0),
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Amount::Tokens(_) => Unit::Tokens,
            Amount::Usd(_) => Unit::Usd,
        }
    }

    pub fn usd(self) -> Option<Usd> {
        match self {
            Amount::Usd(u) => Some(u),
            Amount::Tokens(_) => None,
        }
    }

    /// `1.2K/1.0K tokens` or `$1.2000/$1.0000`. When the compact forms of two different
    /// amounts would read the same (`1.0K/1.0K` for 1001 of 1000), exact figures are
    /// shown instead, so an "exceeded" message never looks like it is within the limit.
    pub fn ratio(used: Amount, limit: Amount) -> String {
        match (used, limit) {
            (Amount::Tokens(u), Amount::Tokens(l)) => {
                let (us, ls) = (fmt_count(u), fmt_count(l));
                if us == ls && u != l {
                    format!("{u}/{l} tokens")
                } else {
                    format!("{us}/{ls} tokens")
                }
            }
            (Amount::Usd(u), Amount::Usd(l)) => {
                let (us, ls) = (u.to_string(), l.to_string());
                if us == ls && u != l {
                    format!("{}/{}", exact_usd(u), exact_usd(l))
                } else {
                    format!("{us}/{ls}")
                }
            }
            // Never built by the ledger; shown plainly rather than failing.
            (u, l) => format!("{u}/{l}"),
        }
    }
}

/// `1.2K tokens` or `$0.0123`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Tokens(t) => write!(f, "{} tokens", fmt_count(*t)),
            Amount::Usd(u) => write!(f, "{u}"),
        }
    }
}

/// Tokens as a plain number, dollars as dollars (the JSON report's `limit`/`used`).
impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Tokens(t) => s.serialize_u64(*t),
            Amount::Usd(u) => u.serialize(s),
        }
    }
}

fn exact_usd(u: Usd) -> String {
    let sign = if u.0 < 0 { "-" } else { "" };
    let n = u.0.unsigned_abs();
    let per = Usd::NANOS_PER_DOLLAR.unsigned_abs();
    format!("{sign}${}.{:09}", n / per, n % per)
}

/// Which threshold a warning is about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WarningKind {
    /// Use reached `warn_at_percent` of the limit (the configured percent).
    WarnAt { percent: f64 },
    /// Use went past the limit (warn mode; block mode terminates instead).
    Exceeded,
    /// Warn-mode admission: used + reservations + the instance's estimate does not fit.
    WontFit { reserved: Amount, estimate: Amount },
}

/// A budget warning: the budget, its use and limit when it was given, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub budget: BudgetKey,
    pub used: Amount,
    pub limit: Amount,
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ratio = Amount::ratio(self.used, self.limit);
        match self.kind {
            // One update can jump past the threshold and the limit at once; then say
            // so, rather than "passed 80%: … (111%)" right before "exceeded".
            WarningKind::WarnAt { percent } if self.used.raw() > self.limit.raw() => write!(
                f,
                "{} passed {}% and its limit in one step: {ratio} ({:.0}%)",
                self.budget,
                format_percent(percent),
                percent_of(self.used.raw(), self.limit.raw())
            ),
            WarningKind::WarnAt { percent } => write!(
                f,
                "{} passed {}%: {ratio} ({:.0}%)",
                self.budget,
                format_percent(percent),
                percent_of(self.used.raw(), self.limit.raw())
            ),
            WarningKind::Exceeded => write!(f, "{} exceeded: {ratio}", self.budget),
            WarningKind::WontFit { reserved, estimate } => write!(
                f,
                "{} may be exceeded: {} used + {} reserved + {} estimate > {}",
                self.budget, self.used, reserved, estimate, self.limit
            ),
        }
    }
}

fn format_percent(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

/// The answer to "may this instance launch now?".
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Launch it; it now holds its reservations. Warn mode lists each budget that the
    /// estimate does not fit.
    Admit { warnings: Vec<Warning> },
    /// Block mode: it would fit but for other running instances' reservations; ask
    /// again after one of them finishes.
    Wait { budget: BudgetKey },
    /// Block mode: what is already used leaves no room for its estimate (or the budget
    /// was already exceeded); it is never launched.
    Block {
        budget: BudgetKey,
        used: Amount,
        limit: Amount,
        estimate: Amount,
    },
}

/// `waiting for command budget /test`, `command budget /test leaves no room: 900/1.0K tokens used, estimate 200 tokens`.
impl fmt::Display for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Admission::Admit { .. } => write!(f, "admitted"),
            Admission::Wait { budget } => write!(f, "waiting for {budget}"),
            Admission::Block {
                budget,
                used,
                limit,
                estimate,
            } => {
                if used.raw() > limit.raw() {
                    write!(f, "{budget} exceeded: {}", Amount::ratio(*used, *limit))
                } else {
                    write!(
                        f,
                        "{budget} leaves no room: {} used, estimate {estimate}",
                        Amount::ratio(*used, *limit)
                    )
                }
            }
        }
    }
}

/// What the dispatcher must do after a usage delta.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Warn(Warning),
    /// Block mode: `budget` went past its limit; terminate these running instances
    /// (possibly none, when usage arrived after they all finished). Given once per budget.
    Terminate {
        instances: Vec<InstanceId>,
        budget: BudgetKey,
        used: Amount,
        limit: Amount,
    },
}

/// `command budget /test exceeded: 1.2K/1.0K tokens` — the SPEC's reason text.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Warn(w) => w.fmt(f),
            Decision::Terminate {
                budget,
                used,
                limit,
                ..
            } => write!(f, "{budget} exceeded: {}", Amount::ratio(*used, *limit)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    Ok,
    /// Use has reached the warning threshold.
    Warned,
    /// Use went past the limit at some point (sticky, even after a downward correction).
    Exceeded,
}

impl BudgetState {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetState::Ok => "ok",
            BudgetState::Warned => "warned",
            BudgetState::Exceeded => "exceeded",
        }
    }
}

/// A snapshot of one budget, for reports and the dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    pub key: BudgetKey,
    pub limit: Amount,
    pub used: Amount,
    /// Held by running instances.
    pub reserved: Amount,
    /// Sum of the estimates of every instance that counts toward it (the dry run's
    /// "does the plan fit").
    pub planned: Amount,
    pub state: BudgetState,
    /// used / limit × 100, not capped.
    pub percent: f64,
}

/// What the ledger needs to know about one instance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceBudget {
    pub base_command: Option<String>,
    pub max_tokens: Option<u64>,
    pub max_cost: Option<Usd>,
    /// E for token budgets: `max_tokens`, else `--estimate`.
    pub estimate_tokens: u64,
    /// E for dollar budgets: `max_cost`, else E tokens priced conservatively.
    pub estimate_cost: Usd,
}

impl InstanceBudget {
    /// Applies SPEC 5's estimate rule to a plan entry. `priced_estimate` is the caller's
    /// conservative price of the token estimate for this instance's model (pricing is
    /// not this module's business); it is used only when the instance has no `max_cost`.
    pub fn from_spec(
        spec: &InstanceSpec,
        cfg: &BudgetConfig,
        priced_estimate: Usd,
    ) -> InstanceBudget {
        InstanceBudget {
            base_command: spec.base_command().map(str::to_owned),
            max_tokens: spec.max_tokens,
            max_cost: spec.max_cost,
            estimate_tokens: Self::token_estimate_for(spec, cfg),
            estimate_cost: spec.max_cost.unwrap_or(priced_estimate),
        }
    }

    /// The token estimate `estimate_tokens` would be for this spec, to price it.
    pub fn token_estimate_for(spec: &InstanceSpec, cfg: &BudgetConfig) -> u64 {
        Self::estimate_for(spec, cfg).tokens
    }

    /// The estimate and its source: the cap, else the one worked out from history
    /// (`core::estimate`), else `--estimate` (pinned or its default).
    pub fn estimate_for(spec: &InstanceSpec, cfg: &BudgetConfig) -> Estimate {
        if let Some(tokens) = spec.max_tokens {
            return Estimate {
                tokens,
                source: EstimateSource::Cap,
            };
        }
        if let Some(e) = spec.estimate {
            return e;
        }
        Estimate {
            tokens: cfg.estimate_tokens,
            source: if cfg.estimate_pinned {
                EstimateSource::Pinned
            } else {
                EstimateSource::Default
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Pending,
    Running,
    Finished,
}

#[derive(Debug, Clone)]
struct Inst {
    run: RunState,
    /// Estimates per unit, never negative.
    est_tokens: i128,
    est_cost: i128,
    used_tokens: u64,
    used_cost: Usd,
    /// What it had used when it was last restarted from scratch (`--retries`): a new
    /// attempt reserves its whole estimate again.
    used_before: (i128, i128),
    /// Indices into `Ledger::budgets`, in the ledger's order.
    budgets: Vec<usize>,
}

impl Inst {
    fn estimate(&self, unit: Unit) -> i128 {
        match unit {
            Unit::Tokens => self.est_tokens,
            Unit::Usd => self.est_cost,
        }
    }

    fn used(&self, unit: Unit) -> i128 {
        match unit {
            Unit::Tokens => i128::from(self.used_tokens),
            Unit::Usd => i128::from(self.used_cost.0),
        }
    }

    /// max(estimate − use of this attempt, 0).
    fn reservation(&self, unit: Unit) -> i128 {
        let before = match unit {
            Unit::Tokens => self.used_before.0,
            Unit::Usd => self.used_before.1,
        };
        (self.estimate(unit) - (self.used(unit) - before)).max(0)
    }
}

#[derive(Debug, Clone)]
struct Budget {
    key: BudgetKey,
    limit: i128,
    /// Smallest use at which the warn_at warning is due.
    warn_threshold: i128,
    /// Everything counted toward it: this run's use plus `elsewhere_used`.
    used: i128,
    /// Part of `used` recorded by other runs (a budget shared through a store).
    elsewhere_used: i128,
    /// Reservations other runs hold on it.
    elsewhere_reserved: i128,
    warned: bool,
    exceeded: bool,
    members: Vec<InstanceId>,
}

/// This run's part of one budget ([`Ledger::own_share`]), in the budget's base unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnShare {
    pub used: i128,
    pub reserved: i128,
    pub limit: i128,
}

/// The budget ledger for one run. `InstanceId`s are indices into the `instances`
/// given to [`Ledger::new`]; any other id is ignored.
#[derive(Debug, Clone)]
pub struct Ledger {
    mode: Mode,
    warn_at_percent: f64,
    budgets: Vec<Budget>,
    instances: Vec<Inst>,
    /// How many times `set_elsewhere` changed a budget's figures: credits handed out before such a
    /// change are recomputed (`core::credit`).
    elsewhere_changes: u64,
}

/// How far one budget's use may still grow before the ledger must decide something
/// (a warning or a stop), for sharing that room out as credit (`core::credit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// The budget's index, stable for the ledger's life.
    pub budget: usize,
    pub unit: Unit,
    /// The largest growth that decides nothing; `None` when nothing is left to decide.
    pub room: Option<i128>,
    /// Running instances that count toward it.
    pub running: usize,
}

impl Ledger {
    /// The ledger of a plan: every budget it sets, each instance's estimate priced
    /// conservatively for its model. The run and the dry run both start from this.
    pub fn for_plan(plan: &Plan, pricing: &Pricing) -> Ledger {
        let budgets = plan
            .instances
            .iter()
            .map(|spec| {
                let tokens = InstanceBudget::token_estimate_for(spec, &plan.budgets);
                let priced = pricing.estimate_cost(spec.model.as_deref(), tokens);
                InstanceBudget::from_spec(spec, &plan.budgets, priced)
            })
            .collect();
        Ledger::new(&plan.budgets, budgets)
    }

    /// Builds every budget that applies: overall tokens and USD, each configured base
    /// command's tokens and USD, and each instance's caps, in that order (the order
    /// `budgets()` reports and admission names a failing budget in).
    pub fn new(cfg: &BudgetConfig, instances: Vec<InstanceBudget>) -> Ledger {
        let warn_at_percent = if cfg.warn_at_percent.is_finite() {
            cfg.warn_at_percent.clamp(0.0, 100.0)
        } else {
            100.0
        };
        let mut budgets: Vec<Budget> = Vec::new();
        let mut add = |key: BudgetKey, limit: i128| -> usize {
            let limit = limit.max(0);
            // ceil so that "reaching 80%" means at least 80%, never a token short of it.
            let warn_threshold = ((limit as f64) * warn_at_percent / 100.0).ceil() as i128;
            budgets.push(Budget {
                key,
                limit,
                warn_threshold: warn_threshold.clamp(0, limit),
                used: 0,
                elsewhere_used: 0,
                elsewhere_reserved: 0,
                warned: false,
                exceeded: false,
                members: Vec::new(),
            });
            budgets.len() - 1
        };
        let overall_tokens = cfg.overall_tokens.map(|l| {
            add(
                BudgetKey {
                    scope: Scope::Overall,
                    unit: Unit::Tokens,
                },
                i128::from(l),
            )
        });
        let overall_cost = cfg.overall_cost.map(|l| {
            add(
                BudgetKey {
                    scope: Scope::Overall,
                    unit: Unit::Usd,
                },
                i128::from(l.0),
            )
        });
        let mut command_budgets: Vec<(String, usize)> = Vec::new();
        for (cmd, l) in &cfg.command_tokens {
            let key = BudgetKey {
                scope: Scope::Command(cmd.clone()),
                unit: Unit::Tokens,
            };
            command_budgets.push((cmd.clone(), add(key, i128::from(*l))));
        }
        for (cmd, l) in &cfg.command_costs {
            let key = BudgetKey {
                scope: Scope::Command(cmd.clone()),
                unit: Unit::Usd,
            };
            command_budgets.push((cmd.clone(), add(key, i128::from(l.0))));
        }

        // (budget, base command it is limited to)
        let mut periodic: Vec<(usize, Option<String>)> = Vec::new();
        for p in &cfg.periodic {
            let only = match &p.scope {
                PeriodScope::Command(c) => Some(c.clone()),
                _ => None,
            };
            if let Some(l) = p.tokens {
                let key = BudgetKey {
                    scope: Scope::Periodic(p.period, p.scope.clone()),
                    unit: Unit::Tokens,
                };
                periodic.push((add(key, i128::from(l)), only.clone()));
            }
            if let Some(l) = p.usd {
                let key = BudgetKey {
                    scope: Scope::Periodic(p.period, p.scope.clone()),
                    unit: Unit::Usd,
                };
                periodic.push((add(key, i128::from(l.0)), only));
            }
        }

        let mut insts = Vec::with_capacity(instances.len());
        for (id, ib) in instances.iter().enumerate() {
            let mut mine: Vec<usize> = overall_tokens.into_iter().chain(overall_cost).collect();
            mine.extend(
                periodic
                    .iter()
                    .filter(|(_, only)| only.is_none() || *only == ib.base_command)
                    .map(|(b, _)| *b),
            );
            if let Some(base) = &ib.base_command {
                mine.extend(
                    command_budgets
                        .iter()
                        .filter(|(c, _)| c == base)
                        .map(|(_, b)| *b),
                );
            }
            if let Some(cap) = ib.max_tokens {
                mine.push(add(
                    BudgetKey {
                        scope: Scope::Instance(id),
                        unit: Unit::Tokens,
                    },
                    i128::from(cap),
                ));
            }
            if let Some(cap) = ib.max_cost {
                mine.push(add(
                    BudgetKey {
                        scope: Scope::Instance(id),
                        unit: Unit::Usd,
                    },
                    i128::from(cap.0),
                ));
            }
            insts.push(Inst {
                run: RunState::Pending,
                est_tokens: i128::from(ib.estimate_tokens),
                est_cost: i128::from(ib.estimate_cost.0).max(0),
                used_tokens: 0,
                used_cost: Usd::ZERO,
                used_before: (0, 0),
                budgets: mine,
            });
        }
        for (id, inst) in insts.iter().enumerate() {
            for &b in &inst.budgets {
                budgets[b].members.push(id);
            }
        }
        Ledger {
            mode: cfg.mode,
            warn_at_percent,
            budgets,
            instances: insts,
            elsewhere_changes: 0,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Decides whether instance `id` may launch now. On `Admit` the instance is running
    /// and holds its reservations. Admitting an instance that is already running
    /// changes nothing and admits it again; an unknown id counts toward no budget and is
    /// admitted with nothing reserved.
    pub fn admit(&mut self, id: InstanceId) -> Admission {
        let Some(inst) = self.instances.get(id) else {
            return Admission::Admit {
                warnings: Vec::new(),
            };
        };
        if inst.run == RunState::Running {
            return Admission::Admit {
                warnings: Vec::new(),
            };
        }
        let mut first_block: Option<Admission> = None;
        let mut first_wait: Option<BudgetKey> = None;
        let mut warnings = Vec::new();
        for &b in &inst.budgets {
            let budget = &self.budgets[b];
            let unit = budget.key.unit;
            // What this instance will hold once running: its reservation — its estimate
            // less what it has already used (an instance resumed after a usage limit),
            // or more if a downward correction left its own use negative (keeps used +
            // reservations ≤ limit exact after admission).
            let need = inst.reservation(unit);
            let reserved: i128 = budget
                .members
                .iter()
                .filter_map(|&m| self.instances.get(m))
                .filter(|m| m.run == RunState::Running)
                .map(|m| m.reservation(unit))
                .sum::<i128>()
                .saturating_add(budget.elsewhere_reserved);
            let over_used = budget.used.saturating_add(need) > budget.limit;
            let over_reserved =
                budget.used.saturating_add(reserved).saturating_add(need) > budget.limit;
            let blocked_for_good = self.mode == Mode::Block && budget.exceeded;
            if !(over_used || over_reserved || blocked_for_good) {
                continue;
            }
            match self.mode {
                Mode::Warn => warnings.push(Warning {
                    budget: budget.key.clone(),
                    used: Amount::from_raw(unit, budget.used),
                    limit: Amount::from_raw(unit, budget.limit),
                    kind: WarningKind::WontFit {
                        reserved: Amount::from_raw(unit, reserved),
                        estimate: Amount::from_raw(unit, need),
                    },
                }),
                Mode::Block if over_used || blocked_for_good => {
                    if first_block.is_none() {
                        first_block = Some(Admission::Block {
                            budget: budget.key.clone(),
                            used: Amount::from_raw(unit, budget.used),
                            limit: Amount::from_raw(unit, budget.limit),
                            estimate: Amount::from_raw(unit, need),
                        });
                    }
                }
                Mode::Block => {
                    if first_wait.is_none() {
                        first_wait = Some(budget.key.clone());
                    }
                }
            }
        }
        // A budget that can never fit outranks one that only has to wait: waiting for
        // it would be pointless.
        if let Some(block) = first_block {
            return block;
        }
        if let Some(budget) = first_wait {
            return Admission::Wait { budget };
        }
        if let Some(inst) = self.instances.get_mut(id) {
            inst.run = RunState::Running;
        }
        Admission::Admit { warnings }
    }

    /// Records a usage delta of instance `id` and returns what must happen now. A
    /// negative `tokens` or `cost` is a downward correction (Claude's `result` counted less
    /// than live accounting did): it is booked but never triggers a warning or a
    /// termination. Usage of an instance that is not running (late lines after `finish`)
    /// is booked all the same: spent is spent.
    pub fn record(&mut self, id: InstanceId, tokens: i64, cost: Usd) -> Vec<Decision> {
        let Some(inst) = self.instances.get_mut(id) else {
            return Vec::new();
        };
        inst.used_tokens = inst.used_tokens.saturating_add_signed(tokens);
        inst.used_cost += cost;
        let mut decisions = Vec::new();
        for i in 0..self.instances[id].budgets.len() {
            let b = self.instances[id].budgets[i];
            let delta = match self.budgets[b].key.unit {
                Unit::Tokens => i128::from(tokens),
                Unit::Usd => i128::from(cost.0),
            };
            let budget = &mut self.budgets[b];
            budget.used = budget.used.saturating_add(delta);
            if delta > 0 {
                self.crossings(b, &mut decisions);
            }
        }
        decisions
    }

    /// The budget `key` as other runs see it: what they have recorded in it and what
    /// they hold in reservation (the store's latest figures; each call replaces the
    /// previous ones). Admission counts both; growth of the use elsewhere crosses
    /// thresholds like use here, so a limit passed by another run stops this run's
    /// instances in block mode. An unknown key changes nothing.
    pub fn set_elsewhere(
        &mut self,
        key: &BudgetKey,
        used: Amount,
        reserved: Amount,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        let Some(b) = self.budgets.iter().position(|b| &b.key == key) else {
            return decisions;
        };
        let budget = &mut self.budgets[b];
        if used.raw() != budget.elsewhere_used || reserved.raw().max(0) != budget.elsewhere_reserved
        {
            self.elsewhere_changes += 1;
        }
        let delta = used.raw() - budget.elsewhere_used;
        budget.elsewhere_used = used.raw();
        budget.elsewhere_reserved = reserved.raw().max(0);
        budget.used = budget.used.saturating_add(delta);
        if delta > 0 {
            self.crossings(b, &mut decisions);
        }
        decisions
    }

    /// Number of budgets; [`Headroom::budget`] indices are below it.
    pub fn budget_count(&self) -> usize {
        self.budgets.len()
    }

    /// How many times use recorded elsewhere changed ([`Ledger::set_elsewhere`]).
    pub fn elsewhere_changes(&self) -> u64 {
        self.elsewhere_changes
    }

    /// The headroom of every budget instance `id` counts toward (none for an unknown id).
    pub fn headroom(&self, id: InstanceId) -> impl Iterator<Item = Headroom> + '_ {
        self.instances
            .get(id)
            .map(|i| i.budgets.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|&b| self.headroom_of(b))
    }

    /// The headroom of budget `b` (see [`Headroom`]); a growth of `room + 1` would cross
    /// the warning threshold (`used >= warn_threshold`) or the limit (`used > limit`).
    pub fn headroom_of(&self, b: usize) -> Headroom {
        let budget = &self.budgets[b];
        let to_limit = budget.limit.saturating_sub(budget.used);
        let room = if budget.exceeded {
            None
        } else if !budget.warned {
            let to_warning = budget.warn_threshold.saturating_sub(budget.used) - 1;
            Some(to_warning.min(to_limit))
        } else {
            Some(to_limit)
        };
        Headroom {
            budget: b,
            unit: budget.key.unit,
            room: room.map(|r| r.max(0)),
            running: self.running_members(b).count(),
        }
    }

    /// Running instances that count toward budget `b`.
    pub fn running_members(&self, b: usize) -> impl Iterator<Item = InstanceId> + '_ {
        self.budgets[b]
            .members
            .iter()
            .copied()
            .filter(|&m| self.instances.get(m).map(|i| i.run) == Some(RunState::Running))
    }

    /// The warnings and stops due now that budget `b`'s use grew.
    fn crossings(&mut self, b: usize, decisions: &mut Vec<Decision>) {
        let budget = &mut self.budgets[b];
        let unit = budget.key.unit;
        let used = Amount::from_raw(unit, budget.used);
        let limit = Amount::from_raw(unit, budget.limit);
        if !budget.warned && budget.used >= budget.warn_threshold {
            budget.warned = true;
            decisions.push(Decision::Warn(Warning {
                budget: budget.key.clone(),
                used,
                limit,
                kind: WarningKind::WarnAt {
                    percent: self.warn_at_percent,
                },
            }));
        }
        if !budget.exceeded && budget.used > budget.limit {
            budget.exceeded = true;
            match self.mode {
                Mode::Warn => decisions.push(Decision::Warn(Warning {
                    budget: budget.key.clone(),
                    used,
                    limit,
                    kind: WarningKind::Exceeded,
                })),
                Mode::Block => {
                    let budget = &self.budgets[b];
                    decisions.push(Decision::Terminate {
                        instances: budget
                            .members
                            .iter()
                            .copied()
                            .filter(|&m| {
                                self.instances.get(m).map(|i| i.run) == Some(RunState::Running)
                            })
                            .collect(),
                        budget: budget.key.clone(),
                        used,
                        limit,
                    });
                }
            }
        }
    }

    /// Undoes an `Admit` of instance `id` that was not carried out (a budget shared with
    /// other runs refused it): it holds nothing and waits again.
    pub fn unadmit(&mut self, id: InstanceId) {
        if let Some(inst) = self.instances.get_mut(id) {
            if inst.run == RunState::Running {
                inst.run = RunState::Pending;
            }
        }
    }

    /// This run's own part of budget `key`, in its base unit: what it used (without the
    /// other runs' use) and what its running instances hold; `None` for a budget it does
    /// not keep. What a budget shared with other runs needs from this run.
    pub fn own_share(&self, key: &BudgetKey) -> Option<OwnShare> {
        let b = self.budgets.iter().find(|b| &b.key == key)?;
        let unit = key.unit;
        let reserved = b
            .members
            .iter()
            .filter_map(|&m| self.instances.get(m))
            .filter(|m| m.run == RunState::Running)
            .map(|m| m.reservation(unit))
            .sum();
        Some(OwnShare {
            used: b.used - b.elsewhere_used,
            reserved,
            limit: b.limit,
        })
    }

    /// The instance starts again from scratch (a retry): its next admission reserves
    /// its whole estimate, on top of the use it keeps.
    pub fn restart(&mut self, id: InstanceId) {
        if let Some(inst) = self.instances.get_mut(id) {
            inst.used_before = (i128::from(inst.used_tokens), i128::from(inst.used_cost.0));
        }
    }

    /// The instance has ended (any way): its reservations are released; its use stays.
    pub fn finish(&mut self, id: InstanceId) {
        if let Some(inst) = self.instances.get_mut(id) {
            if inst.run == RunState::Running {
                inst.run = RunState::Finished;
            }
        }
    }

    /// Every budget, in the order described at [`Ledger::new`].
    pub fn budgets(&self) -> Vec<BudgetStatus> {
        self.budgets
            .iter()
            .map(|b| {
                let unit = b.key.unit;
                let members = || b.members.iter().filter_map(|&m| self.instances.get(m));
                let reserved: i128 = members()
                    .filter(|m| m.run == RunState::Running)
                    .map(|m| m.reservation(unit))
                    .sum::<i128>()
                    .saturating_add(b.elsewhere_reserved);
                let planned: i128 = members().map(|m| m.estimate(unit)).sum();
                BudgetStatus {
                    key: b.key.clone(),
                    limit: Amount::from_raw(unit, b.limit),
                    used: Amount::from_raw(unit, b.used),
                    reserved: Amount::from_raw(unit, reserved),
                    planned: Amount::from_raw(unit, planned),
                    state: if b.exceeded {
                        BudgetState::Exceeded
                    } else if b.warned {
                        BudgetState::Warned
                    } else {
                        BudgetState::Ok
                    },
                    percent: percent_of(b.used, b.limit),
                }
            })
            .collect()
    }

    /// The budgets instance `id` counts toward (empty for an unknown id).
    pub fn keys_for(&self, id: InstanceId) -> Vec<BudgetKey> {
        self.instances
            .get(id)
            .map(|i| {
                i.budgets
                    .iter()
                    .map(|&b| self.budgets[b].key.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What instance `id` is expected to spend before it runs: tokens and dollars.
    pub fn estimate(&self, id: InstanceId) -> (u64, Usd) {
        self.instances
            .get(id)
            .map(|i| {
                (
                    u64::try_from(i.est_tokens.max(0)).unwrap_or(u64::MAX),
                    Amount::from_raw(Unit::Usd, i.est_cost)
                        .usd()
                        .unwrap_or(Usd::ZERO),
                )
            })
            .unwrap_or((0, Usd::ZERO))
    }

    /// Tokens and dollars recorded for instance `id` (zero for an unknown id).
    pub fn instance_use(&self, id: InstanceId) -> (u64, Usd) {
        self.instances
            .get(id)
            .map(|i| (i.used_tokens, i.used_cost))
            .unwrap_or((0, Usd::ZERO))
    }

    /// The instance's own use as a percentage of each budget limit that applies to it,
    /// highest first; `None` when no budget applies (the report's "budget use" column).
    pub fn instance_budget_percent(&self, id: InstanceId) -> Option<f64> {
        let inst = self.instances.get(id)?;
        inst.budgets
            .iter()
            .map(|&b| {
                let budget = &self.budgets[b];
                percent_of(inst.used(budget.key.unit), budget.limit)
            })
            .reduce(f64::max)
    }
}

/// used / limit × 100; a zero limit counts as one base unit so that any use of a zero
/// budget reads as far over, never as a division by zero. The one percentage of the
/// crate: renderers only round it.
fn percent_of(used: i128, limit: i128) -> f64 {
    used as f64 * 100.0 / limit.max(1) as f64
}

impl Amount {
    /// `self` as a percentage of `limit` (see [`percent_of`]); amounts of different
    /// units are not comparable and give 0.
    pub fn percent_of(self, limit: Amount) -> f64 {
        if self.unit() != limit.unit() {
            return 0.0;
        }
        percent_of(self.raw(), limit.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(mode: Mode) -> BudgetConfig {
        BudgetConfig {
            mode,
            warn_at_percent: 80.0,
            estimate_tokens: 1000,
            ..BudgetConfig::default()
        }
    }

    fn inst(cmd: Option<&str>, est: u64) -> InstanceBudget {
        InstanceBudget {
            base_command: cmd.map(str::to_owned),
            estimate_tokens: est,
            ..InstanceBudget::default()
        }
    }

    fn inst_usd(cmd: Option<&str>, est: f64) -> InstanceBudget {
        InstanceBudget {
            base_command: cmd.map(str::to_owned),
            estimate_cost: Usd::from_dollars(est),
            ..InstanceBudget::default()
        }
    }

    fn usd(d: f64) -> Usd {
        Usd::from_dollars(d)
    }

    fn overall(unit: Unit) -> BudgetKey {
        BudgetKey {
            scope: Scope::Overall,
            unit,
        }
    }

    fn command(c: &str, unit: Unit) -> BudgetKey {
        BudgetKey {
            scope: Scope::Command(c.to_owned()),
            unit,
        }
    }

    fn status(l: &Ledger, key: &BudgetKey) -> BudgetStatus {
        match l.budgets().into_iter().find(|b| &b.key == key) {
            Some(s) => s,
            None => panic!("no budget {key}"),
        }
    }

    fn is_admit(a: &Admission) -> bool {
        matches!(a, Admission::Admit { .. })
    }

    fn terminations(ds: &[Decision]) -> Vec<(BudgetKey, Vec<InstanceId>)> {
        ds.iter()
            .filter_map(|d| match d {
                Decision::Terminate {
                    instances, budget, ..
                } => Some((budget.clone(), instances.clone())),
                Decision::Warn(_) => None,
            })
            .collect()
    }

    fn warnings(ds: &[Decision]) -> Vec<(BudgetKey, WarningKind)> {
        ds.iter()
            .filter_map(|d| match d {
                Decision::Warn(w) => Some((w.budget.clone(), w.kind)),
                Decision::Terminate { .. } => None,
            })
            .collect()
    }

    fn with_tests(mut c: BudgetConfig, limit: u64) -> BudgetConfig {
        c.command_tokens = BTreeMap::from([("/test".to_owned(), limit)]);
        c
    }

    // ---- admission, block mode, tokens ----

    #[test]
    fn block_admits_what_fits_and_reserves_its_estimate() {
        let mut c = with_tests(cfg(Mode::Block), 1000);
        c.overall_tokens = Some(5000);
        let mut l = Ledger::new(&c, vec![inst(Some("/test"), 1000)]);
        assert_eq!(
            l.admit(0),
            Admission::Admit {
                warnings: Vec::new()
            }
        );
        assert_eq!(
            status(&l, &overall(Unit::Tokens)).reserved,
            Amount::Tokens(1000)
        );
        assert_eq!(
            status(&l, &command("/test", Unit::Tokens)).reserved,
            Amount::Tokens(1000)
        );
    }

    #[test]
    fn block_waits_on_reservations_then_admits_after_finish() {
        let c = with_tests(cfg(Mode::Block), 1500);
        let mut l = Ledger::new(
            &c,
            vec![inst(Some("/test"), 1000), inst(Some("/test"), 1000)],
        );
        assert!(is_admit(&l.admit(0)));
        let second = l.admit(1);
        assert_eq!(
            second,
            Admission::Wait {
                budget: command("/test", Unit::Tokens)
            }
        );
        assert_eq!(second.to_string(), "waiting for command budget /test");
        l.record(0, 300, Usd::ZERO);
        // Still waiting: 300 used + 700 reserved + 1000 > 1500.
        assert!(matches!(l.admit(1), Admission::Wait { .. }));
        l.finish(0);
        assert_eq!(
            status(&l, &command("/test", Unit::Tokens)).reserved,
            Amount::Tokens(0)
        );
        assert!(is_admit(&l.admit(1)));
    }

    #[test]
    fn block_blocks_when_used_alone_leaves_no_room() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(2000);
        let mut l = Ledger::new(&c, vec![inst(None, 1000), inst(None, 1000)]);
        assert!(is_admit(&l.admit(0)));
        assert!(l
            .record(0, 1500, Usd::ZERO)
            .iter()
            .all(|d| matches!(d, Decision::Warn(_))));
        l.finish(0);
        let a = l.admit(1);
        assert_eq!(
            a,
            Admission::Block {
                budget: overall(Unit::Tokens),
                used: Amount::Tokens(1500),
                limit: Amount::Tokens(2000),
                estimate: Amount::Tokens(1000),
            }
        );
        assert_eq!(
            a.to_string(),
            "overall budget leaves no room: 1.5K/2.0K tokens used, estimate 1.0K tokens"
        );
    }

    #[test]
    fn block_outranks_wait_across_budgets() {
        // Overall only has to wait for the big /lint run; /test can never fit again.
        let mut c = with_tests(cfg(Mode::Block), 1000);
        c.overall_tokens = Some(3000);
        let mut l = Ledger::new(
            &c,
            vec![
                inst(Some("/lint"), 2500),
                inst(Some("/test"), 500),
                inst(Some("/test"), 1000),
            ],
        );
        assert!(is_admit(&l.admit(1)));
        l.record(1, 500, Usd::ZERO);
        l.finish(1);
        assert!(is_admit(&l.admit(0)));
        match l.admit(2) {
            Admission::Block { budget, .. } => assert_eq!(budget, command("/test", Unit::Tokens)),
            other => panic!("expected Block on /test, got {other:?}"),
        }
    }

    #[test]
    fn instance_cap_smaller_than_estimate_is_blocked_not_waiting() {
        let c = cfg(Mode::Block);
        let mut l = Ledger::new(
            &c,
            vec![InstanceBudget {
                max_tokens: Some(500),
                estimate_tokens: 800,
                ..InstanceBudget::default()
            }],
        );
        match l.admit(0) {
            Admission::Block { budget, .. } => assert_eq!(
                budget,
                BudgetKey {
                    scope: Scope::Instance(0),
                    unit: Unit::Tokens
                }
            ),
            other => panic!("expected Block, got {other:?}"),
        }
    }

    #[test]
    fn instance_with_its_cap_as_estimate_is_admitted() {
        let c = cfg(Mode::Block);
        let spec = InstanceSpec {
            command: "/test --unit".into(),
            max_tokens: Some(20_000),
            max_cost: Some(usd(0.5)),
            ..InstanceSpec::default()
        };
        let ib = InstanceBudget::from_spec(&spec, &c, usd(9.0));
        assert_eq!(ib.base_command.as_deref(), Some("/test"));
        assert_eq!(ib.estimate_tokens, 20_000);
        assert_eq!(ib.estimate_cost, usd(0.5));
        let mut l = Ledger::new(&c, vec![ib]);
        assert!(is_admit(&l.admit(0)));
    }

    #[test]
    fn from_spec_without_caps_uses_the_default_estimate_and_the_priced_one() {
        let c = cfg(Mode::Block);
        let spec = InstanceSpec {
            command: "fix the bug".into(),
            ..InstanceSpec::default()
        };
        let ib = InstanceBudget::from_spec(&spec, &c, usd(0.03));
        assert_eq!(ib.base_command, None);
        assert_eq!(ib.estimate_tokens, 1000);
        assert_eq!(ib.estimate_cost, usd(0.03));
        assert_eq!(InstanceBudget::token_estimate_for(&spec, &c), 1000);
    }

    #[test]
    fn reservation_shrinks_with_use_and_never_goes_negative() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(10_000);
        let mut l = Ledger::new(&c, vec![inst(None, 1000)]);
        assert!(is_admit(&l.admit(0)));
        l.record(0, 300, Usd::ZERO);
        let s = status(&l, &overall(Unit::Tokens));
        assert_eq!(
            (s.used, s.reserved),
            (Amount::Tokens(300), Amount::Tokens(700))
        );
        l.record(0, 1200, Usd::ZERO);
        let s = status(&l, &overall(Unit::Tokens));
        assert_eq!(
            (s.used, s.reserved),
            (Amount::Tokens(1500), Amount::Tokens(0))
        );
    }

    #[test]
    fn running_instance_past_its_estimate_frees_room_only_by_finishing() {
        // used + reservation of a running instance is max(estimate, use): an instance
        // using part of its estimate does not make room for another.
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(1800);
        let mut l = Ledger::new(&c, vec![inst(None, 1000), inst(None, 900)]);
        assert!(is_admit(&l.admit(0)));
        l.record(0, 400, Usd::ZERO);
        assert!(matches!(l.admit(1), Admission::Wait { .. }));
        l.record(0, 300, Usd::ZERO); // 700 used, 300 reserved
        assert!(matches!(l.admit(1), Admission::Wait { .. }));
        l.finish(0);
        assert!(is_admit(&l.admit(1)));
    }

    #[test]
    fn instance_without_budgets_is_always_admitted() {
        let mut l = Ledger::new(&cfg(Mode::Block), vec![inst(Some("/x"), u64::MAX)]);
        assert!(is_admit(&l.admit(0)));
        assert!(l.keys_for(0).is_empty());
        assert!(l.record(0, 5_000_000, Usd::ZERO).is_empty());
        assert_eq!(l.instance_budget_percent(0), None);
    }

    #[test]
    fn admitting_a_running_instance_twice_does_not_double_reserve() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(1000);
        let mut l = Ledger::new(&c, vec![inst(None, 1000)]);
        assert!(is_admit(&l.admit(0)));
        assert!(is_admit(&l.admit(0)));
        assert_eq!(
            status(&l, &overall(Unit::Tokens)).reserved,
            Amount::Tokens(1000)
        );
    }

    // ---- admission, warn mode ----

    #[test]
    fn warn_mode_admits_and_names_each_budget_that_does_not_fit() {
        let mut c = with_tests(cfg(Mode::Warn), 500);
        c.overall_tokens = Some(1500);
        let mut l = Ledger::new(
            &c,
            vec![inst(Some("/test"), 1000), inst(Some("/test"), 1000)],
        );
        match l.admit(0) {
            Admission::Admit { warnings } => {
                assert_eq!(warnings.len(), 1);
                assert_eq!(warnings[0].budget, command("/test", Unit::Tokens));
                assert_eq!(
                    warnings[0].to_string(),
                    "command budget /test may be exceeded: 0 tokens used + 0 tokens reserved + 1.0K tokens estimate > 500 tokens"
                );
            }
            other => panic!("expected Admit, got {other:?}"),
        }
        match l.admit(1) {
            Admission::Admit { warnings } => {
                let keys: Vec<_> = warnings.iter().map(|w| w.budget.clone()).collect();
                assert_eq!(
                    keys,
                    vec![overall(Unit::Tokens), command("/test", Unit::Tokens)]
                );
                assert_eq!(
                    warnings[0].kind,
                    WarningKind::WontFit {
                        reserved: Amount::Tokens(1000),
                        estimate: Amount::Tokens(1000)
                    }
                );
            }
            other => panic!("expected Admit, got {other:?}"),
        }
    }

    #[test]
    fn warn_mode_admits_even_after_a_budget_is_exceeded() {
        let mut c = cfg(Mode::Warn);
        c.overall_tokens = Some(100);
        let mut l = Ledger::new(&c, vec![inst(None, 10), inst(None, 10)]);
        assert!(is_admit(&l.admit(0)));
        l.record(0, 500, Usd::ZERO);
        assert!(is_admit(&l.admit(1)));
    }

    // ---- runtime, block mode ----

    #[test]
    fn block_terminates_every_running_instance_of_the_command_once() {
        let mut c = with_tests(cfg(Mode::Block), 1000);
        c.overall_tokens = Some(100_000);
        let mut l = Ledger::new(
            &c,
            vec![
                inst(Some("/test"), 400),
                inst(Some("/test"), 400),
                inst(Some("/lint"), 400),
                inst(Some("/test"), 100),
                inst(Some("/lint"), 100),
            ],
        );
        for id in 0..3 {
            assert!(is_admit(&l.admit(id)));
        }
        assert!(l.record(0, 600, Usd::ZERO).is_empty());
        let ds = l.record(1, 500, Usd::ZERO);
        assert_eq!(
            warnings(&ds),
            vec![(
                command("/test", Unit::Tokens),
                WarningKind::WarnAt { percent: 80.0 }
            )]
        );
        assert_eq!(
            terminations(&ds),
            vec![(command("/test", Unit::Tokens), vec![0, 1])]
        );
        let term = ds.iter().find(|d| matches!(d, Decision::Terminate { .. }));
        assert_eq!(
            term.map(ToString::to_string).as_deref(),
            Some("command budget /test exceeded: 1.1K/1.0K tokens")
        );
        // In-flight usage after the crossing terminates nothing again.
        assert!(terminations(&l.record(0, 50, Usd::ZERO)).is_empty());
        // Nothing more that counts toward /test launches; other commands still do.
        assert!(matches!(l.admit(3), Admission::Block { .. }));
        assert!(is_admit(&l.admit(4)));
        assert_eq!(
            status(&l, &command("/test", Unit::Tokens)).state,
            BudgetState::Exceeded
        );
    }

    #[test]
    fn overall_budget_terminates_all_running_instances_only() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(1000);
        let mut l = Ledger::new(
            &c,
            vec![
                inst(Some("/test"), 0),
                inst(Some("/lint"), 0),
                inst(None, 0),
                inst(None, 0),
            ],
        );
        for id in [0, 1, 3] {
            assert!(is_admit(&l.admit(id)));
        }
        l.finish(3);
        let ds = l.record(0, 1001, Usd::ZERO);
        assert_eq!(terminations(&ds), vec![(overall(Unit::Tokens), vec![0, 1])]);
        assert!(matches!(l.admit(2), Admission::Block { .. }));
    }

    #[test]
    fn reaching_the_limit_exactly_is_not_exceeding_it() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(1000);
        let mut l = Ledger::new(&c, vec![inst(None, 0)]);
        assert!(is_admit(&l.admit(0)));
        let ds = l.record(0, 1000, Usd::ZERO);
        assert!(terminations(&ds).is_empty());
        assert_eq!(
            status(&l, &overall(Unit::Tokens)).state,
            BudgetState::Warned
        );
        assert_eq!(terminations(&l.record(0, 1, Usd::ZERO)).len(), 1);
    }

    #[test]
    fn instance_cap_in_block_mode_terminates_just_that_instance() {
        let mut c = with_tests(cfg(Mode::Block), 100_000);
        c.overall_tokens = Some(100_000);
        let capped = InstanceBudget {
            base_command: Some("/test".into()),
            max_tokens: Some(500),
            estimate_tokens: 500,
            ..InstanceBudget::default()
        };
        let mut l = Ledger::new(&c, vec![capped, inst(Some("/test"), 500)]);
        assert!(is_admit(&l.admit(0)));
        assert!(is_admit(&l.admit(1)));
        let ds = l.record(0, 501, Usd::ZERO);
        let cap = BudgetKey {
            scope: Scope::Instance(0),
            unit: Unit::Tokens,
        };
        assert_eq!(terminations(&ds), vec![(cap, vec![0])]);
        let term = ds.iter().find(|d| matches!(d, Decision::Terminate { .. }));
        assert_eq!(
            term.map(ToString::to_string).as_deref(),
            Some("instance budget exceeded: 501/500 tokens")
        );
        assert_eq!(l.instance_budget_percent(0), Some(100.2));
    }

    #[test]
    fn block_mode_still_warns_at_the_threshold() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(1000);
        let mut l = Ledger::new(&c, vec![inst(None, 0)]);
        assert!(is_admit(&l.admit(0)));
        assert!(l.record(0, 799, Usd::ZERO).is_empty());
        let ds = l.record(0, 1, Usd::ZERO);
        assert_eq!(ds.len(), 1);
        assert_eq!(
            ds[0].to_string(),
            "overall budget passed 80%: 800/1.0K tokens (80%)"
        );
    }

    #[test]
    fn usage_after_finish_still_counts_and_can_exceed() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(1000);
        let mut l = Ledger::new(&c, vec![inst(None, 0), inst(None, 0)]);
        assert!(is_admit(&l.admit(0)));
        l.finish(0);
        let ds = l.record(0, 2000, Usd::ZERO);
        assert_eq!(terminations(&ds), vec![(overall(Unit::Tokens), vec![])]);
        assert_eq!(l.instance_use(0).0, 2000);
        assert!(matches!(l.admit(1), Admission::Block { .. }));
    }

    // ---- runtime, warn mode ----

    #[test]
    fn warn_mode_warns_once_at_threshold_and_once_past_limit() {
        let mut c = cfg(Mode::Warn);
        c.overall_tokens = Some(1000);
        let mut l = Ledger::new(&c, vec![inst(None, 0)]);
        assert!(is_admit(&l.admit(0)));
        let mut all = Vec::new();
        for step in [700, 100, 100, 101, 500, 1, 1] {
            let ds = l.record(0, step, Usd::ZERO);
            assert!(
                terminations(&ds).is_empty(),
                "warn mode never stops anything"
            );
            all.push(warnings(&ds));
        }
        let o = overall(Unit::Tokens);
        assert_eq!(
            all,
            vec![
                vec![],
                vec![(o.clone(), WarningKind::WarnAt { percent: 80.0 })],
                vec![],
                vec![(o.clone(), WarningKind::Exceeded)],
                vec![],
                vec![],
                vec![],
            ]
        );
        assert_eq!(status(&l, &o).state, BudgetState::Exceeded);
        assert_eq!(status(&l, &o).percent, 150.3);
    }

    #[test]
    fn a_warning_past_the_limit_says_so() {
        let w = |used: u64| {
            Warning {
                budget: overall(Unit::Tokens),
                used: Amount::Tokens(used),
                limit: Amount::Tokens(5000),
                kind: WarningKind::WarnAt { percent: 80.0 },
            }
            .to_string()
        };
        assert_eq!(w(4100), "overall budget passed 80%: 4.1K/5.0K tokens (82%)");
        assert_eq!(
            w(5000),
            "overall budget passed 80%: 5.0K/5.0K tokens (100%)"
        );
        assert_eq!(
            w(5550),
            "overall budget passed 80% and its limit in one step: 5.6K/5.0K tokens (111%)"
        );
    }

    #[test]
    fn one_jump_past_both_thresholds_gives_both_warnings() {
        let mut c = with_tests(cfg(Mode::Warn), 1000);
        c.overall_tokens = Some(100_000);
        let mut l = Ledger::new(&c, vec![inst(Some("/test"), 0)]);
        assert!(is_admit(&l.admit(0)));
        let ds = l.record(0, 1200, Usd::ZERO);
        let t = command("/test", Unit::Tokens);
        assert_eq!(
            warnings(&ds),
            vec![
                (t.clone(), WarningKind::WarnAt { percent: 80.0 }),
                (t, WarningKind::Exceeded)
            ]
        );
        assert_eq!(
            ds[1].to_string(),
            "command budget /test exceeded: 1.2K/1.0K tokens"
        );
    }

    #[test]
    fn warn_at_100_warns_at_the_limit_and_again_past_it() {
        let mut c = cfg(Mode::Warn);
        c.overall_tokens = Some(1000);
        c.warn_at_percent = 100.0;
        let mut l = Ledger::new(&c, vec![inst(None, 0)]);
        assert!(is_admit(&l.admit(0)));
        assert_eq!(
            warnings(&l.record(0, 1000, Usd::ZERO)),
            vec![(
                overall(Unit::Tokens),
                WarningKind::WarnAt { percent: 100.0 }
            )]
        );
        assert_eq!(
            warnings(&l.record(0, 1, Usd::ZERO)),
            vec![(overall(Unit::Tokens), WarningKind::Exceeded)]
        );
    }

    // ---- USD ----

    #[test]
    fn usd_budgets_admit_wait_warn_and_terminate() {
        let mut c = cfg(Mode::Block);
        c.overall_cost = Some(usd(1.0));
        c.command_costs = BTreeMap::from([("/test".to_owned(), usd(0.5))]);
        let mut l = Ledger::new(
            &c,
            vec![inst_usd(Some("/test"), 0.3), inst_usd(Some("/test"), 0.3)],
        );
        assert!(is_admit(&l.admit(0)));
        assert_eq!(
            l.admit(1),
            Admission::Wait {
                budget: command("/test", Unit::Usd)
            }
        );
        let ds = l.record(0, 0, usd(0.45));
        assert_eq!(
            warnings(&ds),
            vec![(
                command("/test", Unit::Usd),
                WarningKind::WarnAt { percent: 80.0 }
            )]
        );
        let ds = l.record(0, 0, usd(0.06));
        assert_eq!(
            terminations(&ds),
            vec![(command("/test", Unit::Usd), vec![0])]
        );
        assert_eq!(
            ds[0].to_string(),
            "command cost budget /test exceeded: $0.5100/$0.5000"
        );
        assert!(matches!(l.admit(1), Admission::Block { .. }));
    }

    #[test]
    fn usd_block_when_used_leaves_no_room() {
        let mut c = cfg(Mode::Block);
        c.overall_cost = Some(usd(1.0));
        let mut l = Ledger::new(&c, vec![inst_usd(None, 0.5), inst_usd(None, 0.5)]);
        assert!(is_admit(&l.admit(0)));
        l.record(0, 0, usd(0.6));
        l.finish(0);
        assert_eq!(
            l.admit(1),
            Admission::Block {
                budget: overall(Unit::Usd),
                used: Amount::Usd(usd(0.6)),
                limit: Amount::Usd(usd(1.0)),
                estimate: Amount::Usd(usd(0.5)),
            }
        );
    }

    #[test]
    fn usd_instance_cap_terminates_just_that_instance() {
        let mut c = cfg(Mode::Block);
        c.overall_cost = Some(usd(10.0));
        let capped = InstanceBudget {
            max_cost: Some(usd(0.10)),
            estimate_cost: usd(0.10),
            ..InstanceBudget::default()
        };
        let mut l = Ledger::new(&c, vec![capped, inst_usd(None, 0.1)]);
        assert!(is_admit(&l.admit(0)));
        assert!(is_admit(&l.admit(1)));
        let ds = l.record(0, 0, usd(0.11));
        let cap = BudgetKey {
            scope: Scope::Instance(0),
            unit: Unit::Usd,
        };
        assert_eq!(terminations(&ds), vec![(cap, vec![0])]);
        assert_eq!(
            ds.last().map(ToString::to_string).as_deref(),
            Some("instance cost budget exceeded: $0.1100/$0.1000")
        );
    }

    #[test]
    fn usd_warn_mode_warns_once_per_threshold() {
        let mut c = cfg(Mode::Warn);
        c.overall_cost = Some(usd(1.0));
        let mut l = Ledger::new(&c, vec![inst_usd(None, 0.1)]);
        assert!(is_admit(&l.admit(0)));
        let mut kinds = Vec::new();
        for _ in 0..30 {
            kinds.extend(
                warnings(&l.record(0, 0, usd(0.05)))
                    .into_iter()
                    .map(|w| w.1),
            );
        }
        assert_eq!(
            kinds,
            vec![WarningKind::WarnAt { percent: 80.0 }, WarningKind::Exceeded]
        );
    }

    #[test]
    fn negative_cost_correction_is_booked_but_triggers_nothing() {
        let mut c = cfg(Mode::Block);
        c.overall_cost = Some(usd(1.0));
        c.overall_tokens = Some(1000);
        let mut l = Ledger::new(&c, vec![inst_usd(None, 0.1)]);
        assert!(is_admit(&l.admit(0)));
        assert!(l.record(0, 0, usd(0.7)).is_empty());
        // A correction down, even one carrying tokens past the token threshold, raises
        // nothing about the dollar budget.
        let ds = l.record(0, 900, Usd(-usd(0.2).0));
        assert_eq!(
            warnings(&ds),
            vec![(overall(Unit::Tokens), WarningKind::WarnAt { percent: 80.0 })]
        );
        assert_eq!(l.instance_use(0), (900, usd(0.5)));
        assert_eq!(status(&l, &overall(Unit::Usd)).used, Amount::Usd(usd(0.5)));
        // Climbing back over 80% does not warn a second time either... but first time it
        // reaches 80% it does.
        assert_eq!(warnings(&l.record(0, 0, usd(0.3))).len(), 1);
        assert!(l.record(0, 0, Usd(-usd(0.5).0)).is_empty());
        assert!(warnings(&l.record(0, 0, usd(0.5))).is_empty());
    }

    #[test]
    fn a_corrected_exceeded_budget_still_blocks_new_launches() {
        let mut c = cfg(Mode::Block);
        c.overall_cost = Some(usd(1.0));
        let mut l = Ledger::new(&c, vec![inst_usd(None, 0.1), inst_usd(None, 0.1)]);
        assert!(is_admit(&l.admit(0)));
        assert_eq!(terminations(&l.record(0, 0, usd(1.2))).len(), 1);
        assert!(l.record(0, 0, Usd(-usd(0.9).0)).is_empty());
        l.finish(0);
        match l.admit(1) {
            Admission::Block { used, limit, .. } => {
                assert_eq!(
                    (used, limit),
                    (Amount::Usd(usd(0.3)), Amount::Usd(usd(1.0)))
                );
            }
            other => panic!("expected Block, got {other:?}"),
        }
    }

    #[test]
    fn token_and_usd_budgets_are_independent() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(1000);
        c.overall_cost = Some(usd(1.0));
        let mut l = Ledger::new(&c, vec![inst(None, 100)]);
        assert!(is_admit(&l.admit(0)));
        let ds = l.record(0, 0, usd(1.5));
        assert_eq!(terminations(&ds), vec![(overall(Unit::Usd), vec![0])]);
        assert_eq!(status(&l, &overall(Unit::Tokens)).state, BudgetState::Ok);
    }

    // ---- queries, unknown ids ----

    #[test]
    fn unknown_ids_are_ignored() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(10);
        let mut l = Ledger::new(&c, vec![inst(None, 5)]);
        assert!(is_admit(&l.admit(7)));
        assert!(l.record(7, 1_000, usd(5.0)).is_empty());
        l.finish(7);
        assert_eq!(l.instance_use(7), (0, Usd::ZERO));
        assert_eq!(l.instance_budget_percent(7), None);
        assert!(l.keys_for(7).is_empty());
        assert_eq!(status(&l, &overall(Unit::Tokens)).used, Amount::Tokens(0));
    }

    #[test]
    fn instance_budget_percent_is_its_highest_share_of_a_limit() {
        let mut c = with_tests(cfg(Mode::Warn), 1000);
        c.overall_tokens = Some(10_000);
        let mut l = Ledger::new(&c, vec![inst(Some("/test"), 0), inst(Some("/lint"), 0)]);
        l.record(0, 250, Usd::ZERO);
        l.record(1, 5000, Usd::ZERO);
        assert_eq!(l.instance_budget_percent(0), Some(25.0));
        assert_eq!(l.instance_budget_percent(1), Some(50.0));
    }

    #[test]
    fn budgets_are_listed_overall_then_command_then_instance() {
        let mut c = with_tests(cfg(Mode::Warn), 1000);
        c.overall_tokens = Some(10_000);
        c.overall_cost = Some(usd(2.0));
        c.command_costs = BTreeMap::from([("/test".to_owned(), usd(0.5))]);
        let capped = InstanceBudget {
            base_command: Some("/test".into()),
            max_tokens: Some(300),
            estimate_tokens: 300,
            ..InstanceBudget::default()
        };
        let l = Ledger::new(&c, vec![capped, inst(Some("/test"), 1000)]);
        let names: Vec<String> = l.budgets().iter().map(|b| b.key.to_string()).collect();
        assert_eq!(
            names,
            [
                "overall budget",
                "overall cost budget",
                "command budget /test",
                "command cost budget /test",
                "instance budget"
            ]
        );
        assert_eq!(
            status(&l, &command("/test", Unit::Tokens)).planned,
            Amount::Tokens(1300)
        );
        assert_eq!(l.keys_for(1).len(), 4);
    }

    #[test]
    fn counts_and_ratios_read_well() {
        assert_eq!(Amount::Tokens(1249).to_string(), "1.2K tokens");
        assert_eq!(
            Amount::ratio(Amount::Tokens(1001), Amount::Tokens(1000)),
            "1001/1000 tokens"
        );
        assert_eq!(
            Amount::ratio(Amount::Usd(Usd(1_000_000_001)), Amount::Usd(usd(1.0))),
            "$1.000000001/$1.000000000"
        );
        assert_eq!(Amount::Usd(usd(0.0123)).to_string(), "$0.0123");
        assert_eq!(
            serde_json::to_string(&[Amount::Tokens(5), Amount::Usd(usd(0.5))]).ok(),
            Some("[5,0.5]".to_owned())
        );
    }

    // ---- properties ----

    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        #[derive(Debug, Clone)]
        enum Op {
            Admit(usize),
            Record(usize, u64, i64),
            Finish(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0usize..8).prop_map(Op::Admit),
                (0usize..8, 0u64..600, -300_000i64..600_000)
                    .prop_map(|(i, t, c)| Op::Record(i, t, c)),
                (0usize..8).prop_map(Op::Finish),
            ]
        }

        fn instance() -> impl Strategy<Value = InstanceBudget> {
            (
                prop_oneof![Just(None), Just(Some("/a")), Just(Some("/b"))],
                proptest::option::of(0u64..1500),
                proptest::option::of(0i64..1_500_000),
                0u64..1500,
                0i64..1_500_000,
            )
                .prop_map(|(cmd, mt, mc, et, ec)| InstanceBudget {
                    base_command: cmd.map(str::to_owned),
                    max_tokens: mt,
                    max_cost: mc.map(Usd),
                    estimate_tokens: mt.unwrap_or(et),
                    estimate_cost: Usd(mc.unwrap_or(ec)),
                })
        }

        fn config() -> impl Strategy<Value = BudgetConfig> {
            (
                prop_oneof![Just(Mode::Warn), Just(Mode::Block)],
                proptest::option::of(0u64..5000),
                proptest::option::of(0i64..5_000_000),
                proptest::option::of(0u64..3000),
                proptest::option::of(0i64..3_000_000),
                1u32..=100,
            )
                .prop_map(|(mode, ot, oc, at, ac, warn)| BudgetConfig {
                    overall_tokens: ot,
                    overall_cost: oc.map(Usd),
                    command_tokens: at.map(|l| ("/a".to_owned(), l)).into_iter().collect(),
                    command_costs: ac.map(|l| ("/a".to_owned(), Usd(l))).into_iter().collect(),
                    mode,
                    warn_at_percent: f64::from(warn),
                    estimate_tokens: 1000,
                    estimate_pinned: false,
                    periodic: Vec::new(),
                    zone: Default::default(),
                })
        }

        fn raw(a: Amount) -> i128 {
            a.raw()
        }

        proptest! {
            #[test]
            fn ledger_invariants_hold(
                c in config(),
                insts in proptest::collection::vec(instance(), 0..6),
                ops in proptest::collection::vec(op(), 0..60),
            ) {
                let n = insts.len();
                let mut l = Ledger::new(&c, insts);
                let mut recorded: HashMap<usize, (u64, i64)> = HashMap::new();
                let mut warned: HashMap<(BudgetKey, String), usize> = HashMap::new();
                let mut terminated: HashMap<BudgetKey, usize> = HashMap::new();
                let mut running = vec![false; n];
                for op in ops {
                    match op {
                        Op::Admit(id) => {
                            let a = l.admit(id);
                            let was_running = running.get(id).copied().unwrap_or(true);
                            if matches!(a, Admission::Admit { .. }) {
                                if let Some(r) = running.get_mut(id) {
                                    *r = true;
                                }
                            }
                            if c.mode == Mode::Block && !was_running && matches!(a, Admission::Admit { .. }) {
                                // (a) admission never over-commits a budget it counts toward.
                                let keys = l.keys_for(id);
                                for b in l.budgets().into_iter().filter(|b| keys.contains(&b.key)) {
                                    prop_assert!(
                                        raw(b.used) + raw(b.reserved) <= raw(b.limit),
                                        "{} over-committed: {:?}", b.key, b
                                    );
                                }
                            }
                        }
                        Op::Record(id, t, cost) => {
                            let ds = l.record(id, t as i64, Usd(cost));
                            if id < n {
                                let e = recorded.entry(id).or_default();
                                e.0 += t;
                                e.1 += cost;
                            }
                            for d in ds {
                                match d {
                                    Decision::Warn(w) => {
                                        prop_assert!(c.mode == Mode::Warn || !matches!(w.kind, WarningKind::Exceeded));
                                        let kind = match w.kind {
                                            WarningKind::WarnAt { .. } => "warn_at",
                                            WarningKind::Exceeded => "exceeded",
                                            WarningKind::WontFit { .. } => "wont_fit",
                                        };
                                        *warned.entry((w.budget, kind.to_owned())).or_default() += 1;
                                    }
                                    Decision::Terminate { budget, .. } => {
                                        prop_assert_eq!(c.mode, Mode::Block);
                                        *terminated.entry(budget).or_default() += 1;
                                    }
                                }
                            }
                        }
                        Op::Finish(id) => {
                            l.finish(id);
                            if let Some(r) = running.get_mut(id) {
                                *r = false;
                            }
                        }
                    }
                }
                // (b) use per instance is exactly the sum of its deltas.
                for id in 0..n + 2 {
                    let (t, c) = recorded.get(&id).copied().unwrap_or_default();
                    prop_assert_eq!(l.instance_use(id), (t, Usd(c)));
                }
                // (c) each (budget, threshold) warned at most once; each budget terminates once.
                for (k, count) in warned {
                    prop_assert!(count <= 1, "{:?} warned {} times", k, count);
                    prop_assert!(k.1 != "wont_fit");
                }
                for (k, count) in terminated {
                    prop_assert!(count <= 1, "{} terminated {} times", k, count);
                }
            }
        }
    }

    #[test]
    fn use_elsewhere_counts_toward_admission_and_blocks() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(5000);
        let mut l = Ledger::new(
            &c,
            vec![InstanceBudget::default(); 2]
                .into_iter()
                .map(|mut b| {
                    b.estimate_tokens = 1000;
                    b
                })
                .collect(),
        );
        let key = overall(Unit::Tokens);
        // Other runs used 4500: 500 left, an estimate of 1000 can never fit.
        assert!(
            l.set_elsewhere(&key, Amount::Tokens(4500), Amount::Tokens(0))
                .len()
                == 1
        );
        assert!(matches!(l.admit(0), Admission::Block { .. }));
        let st = &l.budgets()[0];
        assert_eq!(st.used, Amount::Tokens(4500));
    }

    #[test]
    fn reservations_elsewhere_make_an_instance_wait_not_block() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(5000);
        let est = |e| InstanceBudget {
            estimate_tokens: e,
            ..InstanceBudget::default()
        };
        let mut l = Ledger::new(&c, vec![est(1000)]);
        let key = overall(Unit::Tokens);
        l.set_elsewhere(&key, Amount::Tokens(1000), Amount::Tokens(3500));
        assert_eq!(
            l.admit(0),
            Admission::Wait {
                budget: key.clone()
            }
        );
        assert_eq!(l.budgets()[0].reserved, Amount::Tokens(3500));
        // The other runs finish: their holds go, their use stays.
        l.set_elsewhere(&key, Amount::Tokens(3000), Amount::Tokens(0));
        assert!(matches!(l.admit(0), Admission::Admit { .. }));
    }

    #[test]
    fn a_limit_passed_elsewhere_terminates_this_runs_members_once() {
        let mut c = cfg(Mode::Block);
        c.overall_tokens = Some(5000);
        let est = InstanceBudget {
            estimate_tokens: 100,
            ..InstanceBudget::default()
        };
        let mut l = Ledger::new(&c, vec![est.clone(), est]);
        let key = overall(Unit::Tokens);
        assert!(matches!(l.admit(0), Admission::Admit { .. }));
        assert!(matches!(l.admit(1), Admission::Admit { .. }));
        l.record(0, 1000, Usd::ZERO);
        let d = l.set_elsewhere(&key, Amount::Tokens(4100), Amount::Tokens(0));
        assert!(
            d.iter().any(
                |d| matches!(d, Decision::Terminate { instances, .. } if *instances == vec![0, 1])
            ),
            "{d:?}"
        );
        // Replacing the figures does not count them twice, nor stop anyone again.
        assert!(l
            .set_elsewhere(&key, Amount::Tokens(4200), Amount::Tokens(0))
            .is_empty());
        assert_eq!(l.budgets()[0].used, Amount::Tokens(5200));
        // Unknown keys change nothing.
        let other = BudgetKey {
            scope: Scope::Command("/x".into()),
            unit: Unit::Tokens,
        };
        assert!(l
            .set_elsewhere(&other, Amount::Tokens(1), Amount::Tokens(1))
            .is_empty());
    }

    #[test]
    fn periodic_budgets_hold_every_instance_and_count_the_period_elsewhere() {
        use crate::core::plan::PeriodicLimit;
        let mut c = cfg(Mode::Block);
        c.periodic = vec![
            PeriodicLimit {
                period: Period::Day,
                scope: PeriodScope::Project,
                tokens: Some(3000),
                usd: None,
            },
            PeriodicLimit {
                period: Period::Month,
                scope: PeriodScope::Project,
                tokens: None,
                usd: Some(Usd::from_dollars(1.0)),
            },
        ];
        let mut l = Ledger::new(&c, vec![inst(Some("/a"), 1000), inst(None, 1000)]);
        let day = BudgetKey {
            scope: Scope::Periodic(Period::Day, PeriodScope::Project),
            unit: Unit::Tokens,
        };
        let month = BudgetKey {
            scope: Scope::Periodic(Period::Month, PeriodScope::Project),
            unit: Unit::Usd,
        };
        assert_eq!(l.keys_for(0), vec![day.clone(), month.clone()]);
        assert_eq!(l.keys_for(1), vec![day.clone(), month.clone()]);
        assert_eq!(day.to_string(), "daily budget");
        assert_eq!(month.to_string(), "monthly cost budget");
        assert_eq!(day.scope.kind(), "periodic");
        // Earlier runs of the project used 1500 today: one estimate of 1000 fits, the
        // second does not.
        l.set_elsewhere(&day, Amount::Tokens(1500), Amount::Tokens(0));
        assert!(matches!(l.admit(0), Admission::Admit { .. }));
        assert!(matches!(
            l.admit(1),
            Admission::Block { .. } | Admission::Wait { .. }
        ));
        // This run's own use counts on top of the period's.
        let d = l.record(0, 1600, Usd::ZERO);
        assert!(
            d.iter()
                .any(|d| matches!(d, Decision::Terminate { budget, .. } if *budget == day)),
            "{d:?}"
        );
        assert_eq!(l.budgets()[0].used, Amount::Tokens(3100));
    }
}
