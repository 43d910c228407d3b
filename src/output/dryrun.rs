//! The dry run (SPEC section 8): from a validated `Plan` to the text and JSON that show
//! what would run, what each instance is estimated to spend, whether the budgets can hold
//! the plan, and what looks wrong. Pure: everything it would have to look up (the claude
//! binary, slash commands, prices) comes in through `DryRunEnv`.
//!
//! Admission is predicted the way the budget ledger admits (SPEC section 5), assuming
//! every instance spends exactly its estimate: in plan order, an instance whose estimate
//! alone exceeds a budget's limit would be blocked; one that fits alone but not on top of
//! the estimates of the (not blocked) instances before it would wait for headroom — and
//! would then be blocked if those spend their whole estimates.
//!
//! A periodic budget (`--daily-token-budget`, …) starts with what other runs recorded in
//! its current period and hold in reservation now (the ledger is seeded from the usage
//! ledger before the dry run): its `fits` and its instances' admission both count them.
//!
//! Beyond the three warnings of SPEC section 8 (claude not found, slash command not found,
//! unused command budget), a budget the plan's estimates cannot fit is also a warning, so
//! that `--dry-run --strict` in CI fails on a plan that cannot run as written.

use crate::core::budget::{Amount, BudgetKey, InstanceBudget, Ledger, Scope, Unit};
use crate::core::plan::{InstanceSpec, Mode, Plan};
use crate::core::predict::{predict, Prediction};
use crate::core::usage::Usd;
use crate::runtime::launch::{claude_args, shell_join};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the dry run needs from the outside world, passed in so that it stays testable.
pub struct DryRunEnv<'a> {
    /// The resolved claude executable, or `None` when it was not found.
    pub claude_found: Option<PathBuf>,
    /// Whether slash command `/name` (the base command) is known in a workspace.
    pub command_known: &'a dyn Fn(&str, &Path) -> bool,
    /// The run's budget ledger (`Ledger::for_plan`): its budgets and each instance's
    /// estimate, the same the run would admit with.
    pub ledger: Ledger,
}

/// The rendered plan. The caller decides the exit code from `warnings` and `--strict`.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    pub text: String,
    pub json: Value,
    pub warnings: Vec<String>,
}

/// One run-level budget (overall, per command or periodic) and what the plan puts on it.
struct BudgetRow {
    key: BudgetKey,
    limit: Amount,
    /// What other runs recorded in a periodic budget's current period (zero for the
    /// run's own budgets: nothing has run yet).
    used: Amount,
    /// What live runs hold in it in reservation now.
    reserved: Amount,
    /// The sum of the estimates of every instance that counts toward it.
    estimated: Amount,
    waiting: Vec<usize>,
    blocked: Vec<usize>,
}

impl BudgetRow {
    /// `overall tokens`, `/test usd`.
    fn label(&self) -> String {
        let key = self
            .key
            .scope
            .key_text()
            .unwrap_or_else(|| "overall".to_string());
        format!("{key} {}", self.key.unit.as_str())
    }

    /// The plan's estimates fit in what is left of the limit: for a periodic budget,
    /// on top of what other runs used in the period and hold now.
    fn fits(&self) -> bool {
        self.taken().saturating_add(self.estimated.raw()) <= self.limit.raw()
    }

    /// Used and held by other runs.
    fn taken(&self) -> i128 {
        self.used.raw().saturating_add(self.reserved.raw())
    }
}

/// Tokens as a plain count (`2500 tokens`), dollars as `$0.0123`: exact, for plans.
fn exact(a: Amount) -> String {
    match a {
        Amount::Tokens(t) => format!("{t} tokens"),
        Amount::Usd(u) => u.to_string(),
    }
}

/// The human reason for a prediction, or `None` when the instance simply launches.
fn reason(p: &Prediction) -> Option<String> {
    match p {
        Prediction::Launch => None,
        Prediction::Over(w) => Some(format!(
            "would go over (warn mode: launches with a warning): {}",
            w.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("; ")
        )),
        Prediction::Wait { budget, then } => Some(match then {
            None => format!(
                "would wait for headroom in the {budget} while the instances before it hold their estimates, then launch"
            ),
            Some(block) => format!(
                "would wait for headroom in the {budget}, then be blocked if those before it spend their estimates: {block}"
            ),
        }),
        Prediction::Blocked(block) => Some(format!("would be blocked: {block}")),
    }
}

/// At most this many instance names are listed in one line of text.
const NAMES_SHOWN: usize = 5;

fn names_line(plan: &Plan, ids: &[usize]) -> String {
    let mut s = ids
        .iter()
        .take(NAMES_SHOWN)
        .map(|&i| plan.instances[i].name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > NAMES_SHOWN {
        let _ = write!(s, " and {} more", ids.len() - NAMES_SHOWN);
    }
    s
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn render(plan: &Plan, cfg: &DryRunEnv) -> DryRun {
    let b = &plan.budgets;
    let n = plan.instances.len();
    let ledger = &cfg.ledger;
    let estimates: Vec<(u64, Usd)> = (0..n).map(|i| ledger.estimate(i)).collect();
    let admission = predict(ledger.clone(), n);

    // Run-level budgets, in the ledger's order, with the plan's estimates on them.
    let mut budgets: Vec<BudgetRow> = ledger
        .budgets()
        .into_iter()
        .filter(|bs| !matches!(bs.key.scope, Scope::Instance(_)))
        .map(|bs| BudgetRow {
            estimated: Amount::from_raw(bs.key.unit, 0),
            key: bs.key,
            limit: bs.limit,
            used: bs.used,
            reserved: bs.reserved,
            waiting: Vec::new(),
            blocked: Vec::new(),
        })
        .collect();
    for (i, p) in admission.iter().enumerate() {
        let keys = ledger.keys_for(i);
        for row in budgets.iter_mut().filter(|r| keys.contains(&r.key)) {
            let e = match row.key.unit {
                Unit::Tokens => i128::from(estimates[i].0),
                Unit::Usd => i128::from(estimates[i].1 .0),
            };
            row.estimated = Amount::from_raw(row.key.unit, row.estimated.raw() + e);
            if p.budget() == Some(&row.key) {
                match p {
                    Prediction::Blocked(_) => row.blocked.push(i),
                    _ => row.waiting.push(i),
                }
            }
        }
    }

    // Warnings.
    let mut warnings = Vec::new();
    let program: String = match &cfg.claude_found {
        Some(p) => p.display().to_string(),
        None => plan.options.claude_path.display().to_string(),
    };
    if cfg.claude_found.is_none() && !plan.options.simulate {
        warnings.push(format!(
            "claude executable not found: {program}; install Claude Code, or pass --claude-path (or set ORCHESTRATOR_CLAUDE_PATH)"
        ));
    }
    let mut missing: BTreeMap<(&str, &Path), Vec<usize>> = BTreeMap::new();
    let mut checked: BTreeMap<(&str, &Path), bool> = BTreeMap::new();
    let mut slash_found: Vec<Option<bool>> = vec![None; n];
    for (i, inst) in plan.instances.iter().enumerate() {
        let Some(base) = inst.base_command() else {
            continue;
        };
        let key = (base, inst.workspace.as_path());
        let known = *checked
            .entry(key)
            .or_insert_with(|| (cfg.command_known)(base, &inst.workspace));
        slash_found[i] = Some(known);
        if !known {
            missing.entry(key).or_default().push(i);
        }
    }
    for ((base, ws), ids) in &missing {
        warnings.push(format!(
            "slash command {base} not found in {}/.claude/commands or ~/.claude/commands (used by {})",
            ws.display(),
            names_line(plan, ids)
        ));
    }
    let used: BTreeSet<&str> = plan
        .instances
        .iter()
        .filter_map(InstanceSpec::base_command)
        .collect();
    for bud in &budgets {
        if let Scope::Command(c) = &bud.key.scope {
            if !used.contains(c.as_str()) {
                warnings.push(format!(
                    "command budget {} is not used by any instance; check the command name",
                    bud.label()
                ));
            }
        }
    }
    for bud in &budgets {
        if !bud.fits() {
            let consequence = match b.mode {
                Mode::Block => {
                    let mut parts = Vec::new();
                    if !bud.waiting.is_empty() {
                        parts.push(format!(
                            "{} would wait",
                            plural(bud.waiting.len(), "instance", "instances")
                        ));
                    }
                    if !bud.blocked.is_empty() {
                        parts.push(format!(
                            "{} would be blocked",
                            plural(bud.blocked.len(), "instance", "instances")
                        ));
                    }
                    parts.join(", ")
                }
                Mode::Warn => "warn mode: it will be exceeded with a warning".to_string(),
            };
            let elsewhere = if bud.taken() > 0 {
                format!(
                    " on top of {} used and {} reserved by other runs this period",
                    exact(bud.used),
                    exact(bud.reserved)
                )
            } else {
                String::new()
            };
            warnings.push(format!(
                "the {} budget ({}) cannot fit the plan's estimate of {}{elsewhere}; {consequence}",
                bud.label(),
                exact(bud.limit),
                exact(bud.estimated)
            ));
        }
    }

    // Per-instance details shared by text and JSON.
    let argvs: Vec<Vec<String>> = plan
        .instances
        .iter()
        .map(|inst| {
            let mut v = vec![program.clone()];
            if plan.options.simulate {
                // The simulated Claude is this binary re-executed in its hidden mode.
                v.push(crate::simulate::HIDDEN_SUBCOMMAND.to_string());
            }
            v.extend(claude_args(inst));
            v
        })
        .collect();
    let command_lines: Vec<String> = argvs.iter().map(|a| shell_join(a)).collect();
    let budget_keys: Vec<Vec<String>> = plan
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let counted = ledger.keys_for(i);
            let mut keys: Vec<String> = budgets
                .iter()
                .filter(|bud| counted.contains(&bud.key))
                .map(BudgetRow::label)
                .collect();
            if let Some(t) = inst.max_tokens {
                keys.push(format!("instance tokens ({t})"));
            }
            if let Some(c) = inst.max_cost {
                keys.push(format!("instance usd ({c})"));
            }
            keys
        })
        .collect();

    let text = render_text(
        plan,
        &program,
        cfg,
        &budgets,
        &admission,
        &command_lines,
        &budget_keys,
        &estimates,
        &warnings,
    );

    let instances_json: Vec<Value> = plan
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            json!({
                "name": inst.name,
                "command": inst.command,
                "base_command": inst.base_command(),
                "description": inst.description,
                "workspace": inst.workspace.display().to_string(),
                "model": inst.model,
                "budgets": budget_keys[i],
                "estimate": {
                    "tokens": estimates[i].0,
                    "cost_usd": estimates[i].1,
                },
                "estimate_source": InstanceBudget::estimate_for(inst, b).source.to_string(),
                "argv": argvs[i],
                "command_line": command_lines[i],
                "env_keys": inst.env.keys().collect::<Vec<_>>(),
                "timeout_secs": inst.timeout.map(|d| d.as_secs_f64()),
                "slash_command_found": slash_found[i],
                "admission": admission[i].as_str(),
                "admission_reason": reason(&admission[i]),
            })
        })
        .collect();
    let budgets_json: Vec<Value> = budgets
        .iter()
        .map(|bud| {
            let key = json!(bud.key.scope.key_text());
            json!({
                "scope": bud.key.scope.kind(),
                "key": key,
                "unit": bud.key.unit.as_str(),
                "limit": bud.limit,
                "used": bud.used,
                "reserved": bud.reserved,
                "estimated": bud.estimated,
                "fits": bud.fits(),
                "waiting": bud.waiting.iter().map(|&i| &plan.instances[i].name).collect::<Vec<_>>(),
                "blocked": bud.blocked.iter().map(|&i| &plan.instances[i].name).collect::<Vec<_>>(),
            })
        })
        .collect();
    let o = &plan.options;
    let mut json = json!({
        "dry_run": true,
        "claude": {"path": program, "found": cfg.claude_found.is_some()},
        "simulate": o.simulate,
        "workspace": o.workspace.display().to_string(),
        "mode": b.mode,
        "warn_at_percent": b.warn_at_percent,
        "estimate_tokens": b.estimate_tokens,
        "max_parallel": o.max_parallel,
        "start_at": o.start_at.map(|t| t.to_rfc3339()),
    });
    // Moved in rather than through `json!`, which would re-serialise (deep-copy) them.
    if let Value::Object(map) = &mut json {
        map.insert("instances".into(), Value::Array(instances_json));
        map.insert("budgets".into(), Value::Array(budgets_json));
        map.insert(
            "warnings".into(),
            Value::Array(warnings.iter().cloned().map(Value::String).collect()),
        );
    }

    DryRun {
        text,
        json,
        warnings,
    }
}

#[allow(clippy::too_many_arguments)]
fn render_text(
    plan: &Plan,
    program: &str,
    cfg: &DryRunEnv,
    budgets: &[BudgetRow],
    admission: &[Prediction],
    command_lines: &[String],
    budget_keys: &[Vec<String>],
    estimates: &[(u64, Usd)],
    warnings: &[String],
) -> String {
    let b = &plan.budgets;
    let o = &plan.options;
    let mut t = String::new();
    let _ = writeln!(t, "Dry run: nothing is started.");
    let found = if cfg.claude_found.is_some() {
        ""
    } else {
        " (NOT FOUND)"
    };
    let _ = writeln!(t, "  claude:     {program}{found}");
    if o.simulate {
        let _ = writeln!(
            t,
            "              --simulate: the built-in simulated Claude runs instead"
        );
    }
    let _ = writeln!(t, "  workspace:  {}", o.workspace.display());
    let mode = b.mode.as_str();
    let estimate_rule = if b.estimate_pinned {
        format!("estimate {} tokens (--estimate)", b.estimate_tokens)
    } else {
        format!(
            "estimate p75 of the ledger's history, else {} tokens,",
            b.estimate_tokens
        )
    };
    let _ = writeln!(
        t,
        "  budgets:    {mode} mode, warn at {}%, {estimate_rule} per instance without a cap",
        b.warn_at_percent
    );
    let parallel = if o.max_parallel == 0 {
        "no limit".to_string()
    } else {
        o.max_parallel.to_string()
    };
    let _ = writeln!(
        t,
        "  parallel:   {parallel}, {}s between launches",
        o.startup_delay.as_secs_f64()
    );
    if let Some(at) = o.start_at {
        let _ = writeln!(t, "  start at:   {}", at.format("%Y-%m-%d %H:%M:%S"));
    }

    let _ = writeln!(t, "\nInstances ({})", plan.instances.len());
    for (i, inst) in plan.instances.iter().enumerate() {
        let base = inst.base_command().unwrap_or("(free text)");
        let _ = writeln!(t, "  {}. {}  {}", i + 1, inst.name, base);
        if let Some(d) = &inst.description {
            let _ = writeln!(t, "     about:     {d}");
        }
        let keys = if budget_keys[i].is_empty() {
            "none".to_string()
        } else {
            budget_keys[i].join(", ")
        };
        let _ = writeln!(t, "     budgets:   {keys}");
        let _ = writeln!(
            t,
            "     estimate:  {} tokens, {} ({})",
            estimates[i].0,
            estimates[i].1,
            InstanceBudget::estimate_for(inst, b).source
        );
        let _ = writeln!(t, "     workspace: {}", inst.workspace.display());
        let _ = writeln!(t, "     argv:      {}", command_lines[i]);
        if !inst.env.is_empty() {
            let keys: Vec<&str> = inst.env.keys().map(String::as_str).collect();
            let _ = writeln!(t, "     env:       {} (values hidden)", keys.join(", "));
        }
        if let Some(r) = reason(&admission[i]) {
            let _ = writeln!(t, "     admission: {r}");
        }
    }

    let _ = writeln!(t, "\nBudgets");
    if budgets.is_empty() {
        let _ = writeln!(t, "  [NO BUDGET SET]");
    }
    for bud in budgets {
        let plain = |a: Amount| match a {
            Amount::Tokens(t) => t.to_string(),
            Amount::Usd(u) => u.to_string(),
        };
        let verdict = if bud.fits() {
            "fits".to_string()
        } else {
            let over = Amount::from_raw(
                bud.key.unit,
                bud.taken() + bud.estimated.raw() - bud.limit.raw(),
            );
            let mut v = format!("CANNOT FIT (over by {})", plain(over));
            if !bud.waiting.is_empty() {
                let _ = write!(v, "; would wait: {}", names_line(plan, &bud.waiting));
            }
            if !bud.blocked.is_empty() {
                let _ = write!(v, "; would be blocked: {}", names_line(plan, &bud.blocked));
            }
            v
        };
        // A periodic budget also shows what the period already holds.
        let period = if matches!(bud.key.scope, Scope::Periodic(..)) {
            format!(
                "  used {} + reserved {} by other runs",
                plain(bud.used),
                plain(bud.reserved)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "  {:<20} limit {:>12}  estimated {:>12}{period}  {verdict}",
            bud.label(),
            plain(bud.limit),
            plain(bud.estimated)
        );
    }

    if warnings.is_empty() {
        let _ = writeln!(t, "\nNo warnings.");
    } else {
        let _ = writeln!(t, "\nWarnings ({})", warnings.len());
        for w in warnings {
            let _ = writeln!(t, "  - {w}");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{BudgetConfig, RunOptions};
    use std::collections::BTreeMap;

    fn inst(name: &str, command: &str) -> InstanceSpec {
        InstanceSpec {
            name: name.into(),
            command: command.into(),
            workspace: PathBuf::from("/ws"),
            ..InstanceSpec::default()
        }
    }

    fn plan(instances: Vec<InstanceSpec>, budgets: BudgetConfig) -> Plan {
        Plan {
            instances,
            budgets,
            options: RunOptions {
                workspace: PathBuf::from("/ws"),
                ..RunOptions::default()
            },
        }
    }

    fn budgets(mode: Mode) -> BudgetConfig {
        BudgetConfig {
            mode,
            warn_at_percent: 80.0,
            estimate_tokens: 1000,
            ..BudgetConfig::default()
        }
    }

    /// $3 per million tokens, whatever the model.
    fn pricing() -> crate::core::pricing::Pricing {
        crate::core::pricing::Pricing::parse(r#"{"models": {"m": {"input": 1, "output": 3}}}"#, "t")
            .expect("valid table")
    }

    fn known_all(_: &str, _: &Path) -> bool {
        true
    }

    fn run(p: &Plan, known: &dyn Fn(&str, &Path) -> bool, claude: Option<&str>) -> DryRun {
        render(
            p,
            &DryRunEnv {
                claude_found: claude.map(PathBuf::from),
                command_known: known,
                ledger: Ledger::for_plan(p, &pricing()),
            },
        )
    }

    #[test]
    fn shows_each_instance_with_quoted_argv_and_estimates() {
        let mut a = inst("unit", "/test --unit");
        a.max_tokens = Some(2500);
        a.env = BTreeMap::from([("SECRET".to_string(), "hunter2".to_string())]);
        let mut bc = budgets(Mode::Warn);
        bc.overall_tokens = Some(10_000);
        bc.command_tokens.insert("/test".into(), 5000);
        let p = plan(vec![a, inst("notes", "write notes")], bc);
        let d = run(&p, &known_all, Some("/bin/claude"));
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert!(d.text.contains(
            "argv:      /bin/claude -p --output-format stream-json --verbose --include-partial-messages -- '/test --unit'"
        ), "{}", d.text);
        assert!(d
            .text
            .contains("budgets:   overall tokens, /test tokens, instance tokens (2500)"));
        assert!(d.text.contains("estimate:  2500 tokens, $0.0075"));
        assert!(d.text.contains("SECRET (values hidden)"));
        assert!(!d.text.contains("hunter2") && !d.json.to_string().contains("hunter2"));
        let j = &d.json["instances"][0];
        assert_eq!(j["estimate"]["tokens"], 2500);
        assert_eq!(j["base_command"], "/test");
        assert_eq!(j["argv"][0], "/bin/claude");
        assert_eq!(d.json["instances"][1]["base_command"], Value::Null);
        assert_eq!(d.json["budgets"][0]["estimated"], 3500);
        assert_eq!(d.json["budgets"][1]["estimated"], 2500);
        assert_eq!(d.json["budgets"][1]["fits"], true);
    }

    #[test]
    fn block_mode_predicts_waiting_and_blocked_instances() {
        let mut big = inst("big", "/test big");
        big.max_tokens = Some(5000);
        let mut bc = budgets(Mode::Block);
        bc.command_tokens.insert("/test".into(), 1500);
        let p = plan(
            vec![
                inst("a", "/test"),
                big,
                inst("b", "/test"),
                inst("c", "/lint"),
            ],
            bc,
        );
        let d = run(&p, &known_all, Some("/bin/claude"));
        let adm: Vec<&str> = (0..4)
            .map(|i| d.json["instances"][i]["admission"].as_str().unwrap())
            .collect();
        // big never fits; b fits alone but not after a; c does not count toward /test.
        assert_eq!(adm, ["ok", "blocked", "wait", "ok"]);
        let bud = &d.json["budgets"][0];
        assert_eq!(bud["estimated"], 7000);
        assert_eq!(bud["fits"], false);
        assert_eq!(bud["blocked"], json!(["big"]));
        assert_eq!(bud["waiting"], json!(["b"]));
        assert!(d.text.contains("CANNOT FIT"), "{}", d.text);
        assert!(
            d.warnings.iter().any(
                |w| w.contains("/test tokens budget (1500 tokens) cannot fit")
                    && w.contains("1 instance would wait, 1 instance would be blocked")
            ),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn warn_mode_marks_overruns_without_blocking() {
        let mut bc = budgets(Mode::Warn);
        bc.overall_tokens = Some(1500);
        let p = plan(vec![inst("a", "/x"), inst("b", "/y")], bc);
        let d = run(&p, &known_all, Some("/bin/claude"));
        assert_eq!(d.json["instances"][0]["admission"], "ok");
        assert_eq!(d.json["instances"][1]["admission"], "over");
        assert!(d.warnings.iter().any(|w| w.contains("warn mode")));
    }

    #[test]
    fn usd_budgets_use_caps_then_the_estimator() {
        let mut a = inst("a", "/test");
        a.max_cost = Some(Usd::from_dollars(0.5));
        let mut bc = budgets(Mode::Block);
        bc.overall_cost = Some(Usd::from_dollars(0.502));
        let p = plan(vec![a, inst("b", "/test")], bc);
        let d = run(&p, &known_all, Some("/bin/claude"));
        assert_eq!(d.json["instances"][1]["estimate"]["cost_usd"], 0.003);
        let bud = &d.json["budgets"][0];
        assert_eq!(bud["unit"], "usd");
        assert_eq!(bud["limit"], 0.502);
        assert_eq!(bud["estimated"], 0.503);
        assert_eq!(d.json["instances"][1]["admission"], "wait");
        assert!(d.text.contains("--max-budget-usd 0.5"));
    }

    #[test]
    fn warns_about_missing_claude_commands_and_unused_budgets() {
        let mut bc = budgets(Mode::Warn);
        bc.command_tokens.insert("/deploy".into(), 100_000);
        bc.command_costs
            .insert("/test".into(), Usd::from_dollars(1.0));
        let p = plan(
            vec![
                inst("a", "/test"),
                inst("b", "/nope"),
                inst("c", "/nope --x"),
            ],
            bc,
        );
        let calls = std::cell::Cell::new(0);
        let known = |c: &str, ws: &Path| {
            calls.set(calls.get() + 1);
            assert_eq!(ws, Path::new("/ws"));
            c == "/test"
        };
        let d = run(&p, &known, None);
        assert_eq!(
            calls.get(),
            2,
            "each command is looked up once per workspace"
        );
        assert_eq!(d.warnings.len(), 3, "{:?}", d.warnings);
        assert!(d.warnings[0].contains("claude executable not found: claude"));
        assert!(
            d.warnings[1].contains("slash command /nope not found")
                && d.warnings[1].contains("(used by b, c)")
        );
        assert!(d.warnings[2].contains("/deploy tokens is not used"));
        assert_eq!(d.json["instances"][1]["slash_command_found"], false);
        assert_eq!(d.json["claude"]["found"], false);
        assert!(d.text.contains("(NOT FOUND)"));
    }

    #[test]
    fn simulate_does_not_need_claude() {
        let mut p = plan(vec![inst("a", "hello")], budgets(Mode::Warn));
        p.options.simulate = true;
        let d = run(&p, &known_all, None);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert!(d.text.contains("[NO BUDGET SET]"));
    }

    #[test]
    fn a_periodic_budget_fits_on_top_of_what_other_runs_used_and_hold() {
        use crate::core::period::{Period, PeriodScope};
        use crate::core::plan::PeriodicLimit;
        let mut bc = budgets(Mode::Block);
        bc.periodic = vec![PeriodicLimit {
            period: Period::Day,
            scope: PeriodScope::Project,
            tokens: Some(5000),
            usd: None,
        }];
        let p = plan(vec![inst("a", "/x"), inst("b", "/y")], bc);
        let day = BudgetKey {
            scope: Scope::Periodic(Period::Day, PeriodScope::Project),
            unit: Unit::Tokens,
        };
        let render_with = |used: u64, reserved: u64| {
            let mut ledger = Ledger::for_plan(&p, &pricing());
            let _ = ledger.set_elsewhere(&day, Amount::Tokens(used), Amount::Tokens(reserved));
            render(
                &p,
                &DryRunEnv {
                    claude_found: Some(PathBuf::from("/c")),
                    command_known: &known_all,
                    ledger,
                },
            )
        };
        // 2000 estimated on top of 2500 used and 500 held: exactly the limit.
        let d = render_with(2500, 500);
        let bud = &d.json["budgets"][0];
        assert_eq!(bud["key"], "day");
        assert_eq!(bud["used"], 2500);
        assert_eq!(bud["reserved"], 500);
        assert_eq!(bud["estimated"], 2000);
        assert_eq!(bud["fits"], true, "{bud}");
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert!(
            d.text
                .contains("used 2500 + reserved 500 by other runs  fits"),
            "{}",
            d.text
        );
        // One token more held elsewhere: b would wait for it.
        let d = render_with(2500, 501);
        let bud = &d.json["budgets"][0];
        assert_eq!(bud["fits"], false, "{bud}");
        assert_eq!(bud["waiting"], json!(["b"]));
        assert!(d.text.contains("CANNOT FIT (over by 1)"), "{}", d.text);
        assert!(
            d.warnings.iter().any(|w| w.contains(
                "the day tokens budget (5000 tokens) cannot fit the plan's estimate of 2000 tokens on top of 2500 tokens used and 501 tokens reserved by other runs this period"
            )),
            "{:?}",
            d.warnings
        );
        // The run's own budgets have nothing used or held before it starts.
        let mut bc = budgets(Mode::Warn);
        bc.overall_tokens = Some(10);
        let d = run(&plan(vec![inst("a", "/x")], bc), &known_all, Some("/c"));
        assert_eq!(d.json["budgets"][0]["used"], 0);
        assert_eq!(d.json["budgets"][0]["reserved"], 0);
    }

    #[test]
    fn long_name_lists_are_cut_in_text() {
        let mut bc = budgets(Mode::Block);
        bc.overall_tokens = Some(1000);
        let instances = (0..20).map(|i| inst(&format!("i{i}"), "/x")).collect();
        let d = run(&plan(instances, bc), &known_all, Some("/c"));
        assert!(
            d.text.contains("i1, i2, i3, i4, i5 and 14 more"),
            "{}",
            d.text
        );
        assert_eq!(
            d.json["budgets"][0]["waiting"].as_array().map(Vec::len),
            Some(19)
        );
    }
}
