//! The JSON config file (SPEC section 3) and `build_plan`, which merges it with the command
//! line into a validated `Plan`. Every problem becomes a one-line `UsageError` that names
//! the file, the JSON path or flag, and how to fix it; nothing downstream re-validates.
//!
//! zen compatibility (netra-zen's `zen_orchestrator.py`): besides the keys of SPEC section 3
//! we accept zen's budget keys `overall_budget`, `command_budgets`, `overall_cost_budget`,
//! `command_cost_budgets`, `enforcement_mode`, `disable_visuals`, and also:
//! - `budget.budget_type` ("tokens" | "cost" | "mixed"): checked, then ignored, because we
//!   enforce every budget that is set rather than one kind;
//! - `instances[].clear_history` / `compact_history` (booleans): ignored, because every
//!   `claude -p` run starts a fresh session, so there is nothing to clear or compact;
//! - `instances[].pre_commands`: accepted only when empty — zen joins them into one prompt
//!   with `; `, which would change the instance's base command and so its budgets.

use crate::config::cli::{self, Cli};
use crate::core::plan::{BudgetConfig, InstanceSpec, Mode, OutputFormat, Plan, RunOptions};
use crate::core::pricing::Pricing;
use crate::core::usage::Usd;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A usage or config error: exit code 2, nothing launched. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages quote user input; a stray newline must not break the one-line promise.
        for c in self.0.trim_end().chars() {
            if c.is_control() {
                f.write_str(" ")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for UsageError {}

/// One instance as the config file states it, checked but not merged with the flags.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigInstance {
    pub name: Option<String>,
    pub command: String,
    pub description: Option<String>,
    pub workspace: Option<PathBuf>,
    pub permission_mode: Option<String>,
    pub allowed_tools: Option<Vec<String>>,
    pub disallowed_tools: Vec<String>,
    pub model: Option<String>,
    pub output_format: Option<OutputFormat>,
    pub max_tokens: Option<u64>,
    pub max_cost: Option<Usd>,
    pub timeout: Option<Duration>,
    pub session_id: Option<String>,
    pub extra_args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// The `budget` object of a config file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigBudget {
    pub overall_tokens: Option<u64>,
    pub overall_cost: Option<Usd>,
    pub command_tokens: BTreeMap<String, u64>,
    pub command_costs: BTreeMap<String, Usd>,
    pub mode: Option<Mode>,
    pub warn_at_percent: Option<f64>,
    pub disable_visuals: Option<bool>,
    /// `budget.periodic`: daily, weekly and monthly budgets by scope.
    pub periodic: Vec<crate::core::plan::PeriodicLimit>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigFile {
    pub instances: Vec<ConfigInstance>,
    pub budget: ConfigBudget,
    /// Named budget sets (`"profiles": {"testing": {…}}`), chosen with `--profile NAME`;
    /// the chosen one's keys override `budget`'s.
    pub profiles: BTreeMap<String, ConfigBudget>,
}

const TOP_KEYS: &[&str] = &["instances", "budget", "profiles"];

const INSTANCE_KEYS: &[&str] = &[
    "name",
    "command",
    "prompt",
    "description",
    "workspace",
    "permission_mode",
    "allowed_tools",
    "disallowed_tools",
    "model",
    "output_format",
    "max_tokens_per_command",
    "max_cost_usd",
    "timeout",
    "session_id",
    "extra_args",
    "env",
    "clear_history",
    "compact_history",
    "pre_commands",
];

const BUDGET_KEYS: &[&str] = &[
    "overall_tokens",
    "overall_budget",
    "overall_cost_usd",
    "overall_cost_budget",
    "commands",
    "command_budgets",
    "command_costs",
    "command_cost_budgets",
    "enforcement_mode",
    "warn_at_percent",
    "disable_visuals",
    "budget_type",
    "periodic",
];

const PERIODIC_KEYS: &[&str] = &["period", "scope", "command", "tokens", "usd"];

fn ignored_key(k: &str) -> bool {
    k == "$schema" || k.starts_with("//")
}

/// Where an error is: the config file as the user named it, and the JSON path inside it.
struct Ctx<'a> {
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: &str, msg: impl fmt::Display) -> UsageError {
        UsageError(format!("{}: {path}: {msg}", self.origin))
    }

    /// The object's keys that are not ignored, after rejecting unknown ones.
    fn keys<'v>(
        &self,
        obj: &'v Map<String, Value>,
        path: &str,
        known: &[&str],
    ) -> Result<Vec<(&'v str, &'v Value)>, UsageError> {
        let mut out = Vec::new();
        for (k, v) in obj {
            if ignored_key(k) {
                continue;
            }
            if !known.contains(&k.as_str()) {
                let at = join(path, k);
                let hint = match cli::closest(k, known.iter().copied()) {
                    Some(c) => format!("did you mean {c:?}?"),
                    None => format!("known keys: {}", known.join(", ")),
                };
                return Err(self.err(&at, format!("unknown key {k:?}; {hint}")));
            }
            out.push((k.as_str(), v));
        }
        Ok(out)
    }
}

fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[{key:?}]"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What was found, for an error message: short scalars are shown, anything else by type.
fn found(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("found {n}"),
        Value::Bool(b) => format!("found {b}"),
        Value::String(s) if s.chars().count() <= 40 => format!("found {s:?}"),
        _ => format!("found {}", type_name(v)),
    }
}

impl Ctx<'_> {
    fn string(&self, v: &Value, path: &str) -> Result<String, UsageError> {
        match v {
            Value::String(s) if s.contains('\0') => {
                Err(self.err(path, "must not contain a NUL character"))
            }
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.err(path, format!("expected a string, {}", found(v)))),
        }
    }

    fn non_empty(&self, v: &Value, path: &str) -> Result<String, UsageError> {
        let s = self.string(v, path)?;
        if s.trim().is_empty() {
            Err(self.err(path, "must not be empty"))
        } else {
            Ok(s.trim().to_string())
        }
    }

    fn boolean(&self, v: &Value, path: &str) -> Result<bool, UsageError> {
        v.as_bool()
            .ok_or_else(|| self.err(path, format!("expected true or false, {}", found(v))))
    }

    fn tokens(&self, v: &Value, path: &str) -> Result<u64, UsageError> {
        let n = match v {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            }),
            // "50K", "5,000": the forms the command line takes.
            Value::String(s) => {
                return crate::config::units::parse_tokens(s)
                    .map_err(|e| self.err(path, format!("{e}, {}", found(v))))
            }
            _ => {
                return Err(self.err(
                    path,
                    format!("expected a whole number of tokens, {}", found(v)),
                ))
            }
        };
        match n {
            Some(0) => Err(self.err(path, "must be greater than 0 (leave it out for no limit)")),
            Some(n) => Ok(n),
            None => Err(self.err(
                path,
                format!(
                    "expected a whole number of tokens greater than 0, {}",
                    found(v)
                ),
            )),
        }
    }

    fn number(&self, v: &Value, path: &str, what: &str) -> Result<f64, UsageError> {
        v.as_f64()
            .ok_or_else(|| self.err(path, format!("expected {what}, {}", found(v))))
    }

    fn usd(&self, v: &Value, path: &str) -> Result<Usd, UsageError> {
        if let Value::String(s) = v {
            // "$5", "2.50": the forms the command line takes.
            return crate::config::units::parse_dollars(s)
                .map_err(|e| self.err(path, format!("{e}, {}", found(v))));
        }
        let d = self.number(v, path, "an amount of US dollars")?;
        cli::usd_from_f64(d).ok_or_else(|| {
            self.err(
                path,
                format!(
                    "must be an amount of US dollars greater than 0, {}",
                    found(v)
                ),
            )
        })
    }

    fn strings(&self, v: &Value, path: &str) -> Result<Vec<String>, UsageError> {
        let Value::Array(items) = v else {
            return Err(self.err(path, format!("expected an array of strings, {}", found(v))));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
            .collect()
    }

    /// Tools: an array, or one comma-separated string as on the command line.
    fn tools(&self, v: &Value, path: &str) -> Result<Vec<String>, UsageError> {
        if let Value::String(s) = v {
            return Ok(cli::split_tools(s));
        }
        let raw = self.strings(v, path)?;
        Ok(raw
            .into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect())
    }

    fn object<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, UsageError> {
        v.as_object()
            .ok_or_else(|| self.err(path, format!("expected an object, {}", found(v))))
    }
}

/// A key given twice in one object is an error naming its JSON path (serde_json would
/// silently keep the last one).
fn check_duplicate_keys(text: &str, origin: &str) -> Result<(), UsageError> {
    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

    struct Dup(String);

    impl<'de> DeserializeSeed<'de> for Dup {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Dup {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Dup(format!("{}[{i}]", self.0)))?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                // Never echo what follows a '=' (a value typed as an env key).
                let shown = match k.split_once('=') {
                    Some((name, _)) => format!("{name}=…"),
                    None => k.clone(),
                };
                let at = join(&self.0, &shown);
                if !seen.insert(k) {
                    return Err(A::Error::custom(format!(
                        "{at}: duplicate key {shown:?}; give each key once"
                    )));
                }
                map.next_value_seed(Dup(at))?;
            }
            Ok(())
        }
    }

    let mut de = serde_json::Deserializer::from_str(text);
    Dup(String::new()).deserialize(&mut de).map_err(|e| {
        let msg = e.to_string();
        let reason = match msg.rfind(" at line ") {
            Some(i) => &msg[..i],
            None => msg.as_str(),
        };
        UsageError(format!("{origin}:{}:{}: {reason}", e.line(), e.column()))
    })
}

/// Parses and checks a config file's text. `origin` is how the file is named in errors.
pub fn parse_config(text: &str, origin: &str) -> Result<ConfigFile, UsageError> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let reason = match msg.rfind(" at line ") {
            Some(i) => &msg[..i],
            None => msg.as_str(),
        };
        UsageError(format!(
            "{origin}:{}:{}: invalid JSON: {reason}",
            e.line(),
            e.column()
        ))
    })?;
    check_duplicate_keys(text, origin)?;
    let cx = Ctx { origin };
    let Value::Object(top) = &root else {
        return Err(UsageError(format!(
            "{origin}: expected a JSON object with \"instances\" and/or \"budget\", found {}",
            type_name(&root)
        )));
    };
    let mut file = ConfigFile::default();
    for (k, v) in cx.keys(top, "", TOP_KEYS)? {
        match k {
            "instances" => {
                let Value::Array(items) = v else {
                    return Err(cx.err("instances", format!("expected an array, {}", found(v))));
                };
                for (i, item) in items.iter().enumerate() {
                    file.instances
                        .push(parse_instance(&cx, item, &format!("instances[{i}]"))?);
                }
            }
            "profiles" => {
                for (name, p) in cx.object(v, "profiles")? {
                    if ignored_key(name) {
                        continue;
                    }
                    let at = join("profiles", name);
                    file.profiles
                        .insert(name.clone(), parse_budget_at(&cx, p, &at)?);
                }
            }
            _ => file.budget = parse_budget(&cx, v)?,
        }
    }
    Ok(file)
}

fn parse_instance(cx: &Ctx, v: &Value, path: &str) -> Result<ConfigInstance, UsageError> {
    let obj = cx.object(v, path)?;
    let mut inst = ConfigInstance::default();
    let mut command: Option<(&str, String)> = None;
    for (k, v) in cx.keys(obj, path, INSTANCE_KEYS)? {
        let at = join(path, k);
        match k {
            "name" => inst.name = Some(check_name(cx, cx.non_empty(v, &at)?, &at)?),
            "command" | "prompt" => {
                if let Some((other, _)) = command {
                    return Err(cx.err(
                        &at,
                        format!("{other:?} is already set; use either \"command\" or \"prompt\", not both"),
                    ));
                }
                command = Some((k, cx.non_empty(v, &at)?));
            }
            "description" => inst.description = Some(cx.string(v, &at)?),
            "workspace" => inst.workspace = Some(PathBuf::from(cx.non_empty(v, &at)?)),
            "permission_mode" => {
                let m = cx.non_empty(v, &at)?;
                inst.permission_mode =
                    Some(cli::parse_permission_mode(&m).map_err(|e| cx.err(&at, e))?);
            }
            "allowed_tools" => inst.allowed_tools = Some(cx.tools(v, &at)?),
            "disallowed_tools" => inst.disallowed_tools = cx.tools(v, &at)?,
            "model" => inst.model = Some(cx.non_empty(v, &at)?),
            "output_format" => {
                let s = cx.string(v, &at)?;
                inst.output_format = Some(
                    cli::parse_output_format(&s)
                        .map_err(|e| cx.err(&at, format!("{e}, {}", found(v))))?,
                );
            }
            "max_tokens_per_command" => inst.max_tokens = Some(cx.tokens(v, &at)?),
            "max_cost_usd" => inst.max_cost = Some(cx.usd(v, &at)?),
            "timeout" => {
                let d = match v {
                    // "15m", "1.5h", "900s": the forms the command line takes.
                    Value::String(s) => Some(
                        crate::config::units::parse_duration(s, true)
                            .map_err(|e| cx.err(&at, format!("{e}, {}", found(v))))?,
                    ),
                    _ => cli::secs_from_f64(cx.number(
                        v,
                        &at,
                        "a number of seconds or a duration such as \"15m\"",
                    )?),
                };
                inst.timeout = Some(d.filter(|d| !d.is_zero()).ok_or_else(|| {
                    cx.err(
                        &at,
                        format!(
                            "must be a number of seconds or a duration greater than 0, {}",
                            found(v)
                        ),
                    )
                })?);
            }
            "session_id" => {
                let s = cx.string(v, &at)?;
                if !is_uuid(&s) {
                    return Err(cx.err(
                        &at,
                        format!(
                            "{} is not a UUID; use the form 123e4567-e89b-12d3-a456-426614174000",
                            found(v).trim_start_matches("found ")
                        ),
                    ));
                }
                inst.session_id = Some(s.to_ascii_lowercase());
            }
            "extra_args" => inst.extra_args = cx.strings(v, &at)?,
            "env" => inst.env = parse_env(cx, v, &at)?,
            "clear_history" | "compact_history" => {
                cx.boolean(v, &at)?;
            }
            _ => {
                // pre_commands
                if !cx.strings(v, &at)?.is_empty() {
                    return Err(cx.err(
                        &at,
                        "is not supported (it would change the base command); run them as separate instances or put them in \"command\"",
                    ));
                }
            }
        }
    }
    match command {
        Some((_, c)) => inst.command = c,
        None => return Err(cx.err(
            path,
            "missing \"command\": the prompt to run, e.g. \"/test --unit\" (\"prompt\" also works)",
        )),
    }
    Ok(inst)
}

/// Environment for one instance. Values are secrets as far as we know: no message ever
/// shows one.
fn parse_env(cx: &Ctx, v: &Value, path: &str) -> Result<BTreeMap<String, String>, UsageError> {
    let obj = cx.object(v, path)?;
    let mut env = BTreeMap::new();
    for (k, val) in obj {
        if ignored_key(k) {
            continue;
        }
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            // Never echo what follows a '=': `"TOKEN=secret"` is a value typed as a key.
            let shown = match k.split_once('=') {
                Some((name, _)) => format!("{name}=…"),
                None => k.replace('\0', "\\0"),
            };
            return Err(cx.err(
                &join(path, &shown),
                "is not a valid environment variable name (no '=' or NUL; put the value on the right of the ':')",
            ));
        }
        let at = join(path, k);
        match val {
            Value::String(s) if !s.contains('\0') => {
                env.insert(k.clone(), s.clone());
            }
            Value::String(_) => {
                return Err(cx.err(
                    &at,
                    "value must not contain a NUL character (value not shown)",
                ))
            }
            _ => {
                return Err(cx.err(
                    &at,
                    format!(
                        "expected a string value, found {} (value not shown)",
                        type_name(val)
                    ),
                ))
            }
        }
    }
    Ok(env)
}

fn parse_budget(cx: &Ctx, v: &Value) -> Result<ConfigBudget, UsageError> {
    parse_budget_at(cx, v, "budget")
}

/// A budget object at JSON path `base`: `budget` itself or `profiles.NAME`.
fn parse_budget_at(cx: &Ctx, v: &Value, base: &str) -> Result<ConfigBudget, UsageError> {
    let obj = cx.object(v, base)?;
    let mut b = ConfigBudget::default();
    // Canonical key and zen alias name the same setting; both at once is ambiguous.
    let pairs = [
        ("overall_tokens", "overall_budget"),
        ("overall_cost_usd", "overall_cost_budget"),
        ("commands", "command_budgets"),
        ("command_costs", "command_cost_budgets"),
    ];
    for (a, z) in pairs {
        if obj.contains_key(a) && obj.contains_key(z) {
            return Err(cx.err(
                &join(base, z),
                format!("is the zen name of {a:?}, which is also set; keep one"),
            ));
        }
    }
    for (k, v) in cx.keys(obj, base, BUDGET_KEYS)? {
        let at = join(base, k);
        match k {
            "overall_tokens" | "overall_budget" => b.overall_tokens = Some(cx.tokens(v, &at)?),
            "overall_cost_usd" | "overall_cost_budget" => b.overall_cost = Some(cx.usd(v, &at)?),
            "commands" | "command_budgets" => {
                b.command_tokens = command_map(cx, v, &at, |cx, v, p| cx.tokens(v, p))?
            }
            "command_costs" | "command_cost_budgets" => {
                b.command_costs = command_map(cx, v, &at, |cx, v, p| cx.usd(v, p))?
            }
            "enforcement_mode" => {
                let s = cx.string(v, &at)?;
                b.mode = Some(
                    cli::parse_mode(&s).map_err(|e| cx.err(&at, format!("{e}, {}", found(v))))?,
                );
            }
            "warn_at_percent" => {
                let p = cx.number(v, &at, "a percentage")?;
                b.warn_at_percent = Some(
                    cli::check_not_fraction(p)
                        .and_then(|()| cli::check_percent(p))
                        .map_err(|e| cx.err(&at, format!("{e}, {}", found(v))))?,
                );
            }
            "disable_visuals" => b.disable_visuals = Some(cx.boolean(v, &at)?),
            "periodic" => b.periodic = parse_periodic(cx, v, &at)?,
            _ => {
                // budget_type (zen)
                let s = cx.string(v, &at)?;
                if !matches!(s.as_str(), "tokens" | "cost" | "mixed") {
                    return Err(
                        cx.err(&at, format!("expected tokens, cost or mixed, {}", found(v)))
                    );
                }
            }
        }
    }
    Ok(b)
}

/// `budget.periodic`: `[{"period": "day"|"week"|"month", "scope": "project"|"all"|"command",
/// "command": "/review", "tokens": N, "usd": X}]`; scope defaults to project, `command` is
/// required with scope command and only then, at least one of tokens and usd.
fn parse_periodic(
    cx: &Ctx,
    v: &Value,
    path: &str,
) -> Result<Vec<crate::core::plan::PeriodicLimit>, UsageError> {
    use crate::core::period::{Period, PeriodScope};
    let Value::Array(items) = v else {
        return Err(cx.err(path, format!("expected an array of budgets, {}", found(v))));
    };
    let mut out: Vec<crate::core::plan::PeriodicLimit> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let obj = cx.object(item, &at)?;
        let (mut period, mut scope, mut command, mut tokens, mut usd) =
            (None, None, None, None, None);
        for (k, v) in cx.keys(obj, &at, PERIODIC_KEYS)? {
            let kat = join(&at, k);
            match k {
                "period" => {
                    let s = cx.string(v, &kat)?;
                    period = Some(Period::parse(&s).ok_or_else(|| {
                        cx.err(&kat, format!("expected day, week or month, {}", found(v)))
                    })?);
                }
                "scope" => {
                    let s = cx.string(v, &kat)?;
                    if !matches!(s.as_str(), "project" | "all" | "command") {
                        return Err(cx.err(
                            &kat,
                            format!("expected project, all or command, {}", found(v)),
                        ));
                    }
                    scope = Some(s);
                }
                "command" => {
                    let s = cx.string(v, &kat)?;
                    command = Some(cli::normalize_command_key(&s).map_err(|e| cx.err(&kat, e))?);
                }
                "tokens" => tokens = Some(cx.tokens(v, &kat)?),
                _ => usd = Some(cx.usd(v, &kat)?),
            }
        }
        let Some(period) = period else {
            return Err(cx.err(&at, "needs \"period\": \"day\", \"week\" or \"month\""));
        };
        let scope = match (scope.as_deref(), command) {
            (Some("command"), Some(c)) => PeriodScope::Command(c),
            (Some("command"), None) => {
                return Err(cx.err(&at, "scope command needs \"command\": \"/name\""))
            }
            (_, Some(_)) => {
                return Err(cx.err(
                    &join(&at, "command"),
                    "only goes with \"scope\": \"command\"; add it or drop command",
                ))
            }
            (Some("all"), None) => PeriodScope::All,
            _ => PeriodScope::Project,
        };
        if tokens.is_none() && usd.is_none() {
            return Err(cx.err(&at, "sets no limit; give \"tokens\", \"usd\" or both"));
        }
        if out.iter().any(|o| o.period == period && o.scope == scope) {
            return Err(cx.err(
                &at,
                format!(
                    "a {} budget for {} is already set; keep one",
                    period.adjective(),
                    scope.key(period)
                ),
            ));
        }
        out.push(crate::core::plan::PeriodicLimit {
            period,
            scope,
            tokens,
            usd,
        });
    }
    Ok(out)
}

fn command_map<T>(
    cx: &Ctx,
    v: &Value,
    path: &str,
    limit: impl Fn(&Ctx, &Value, &str) -> Result<T, UsageError>,
) -> Result<BTreeMap<String, T>, UsageError> {
    let obj = cx.object(v, path)?;
    let mut out = BTreeMap::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (k, v) in obj {
        if ignored_key(k) {
            continue;
        }
        let at = join(path, k);
        let key = cli::normalize_command_key(k).map_err(|e| cx.err(&at, e))?;
        if let Some(first) = seen.insert(key.clone(), k.clone()) {
            return Err(cx.err(
                &at,
                format!("{first:?} and {k:?} are the same command {key}; keep one"),
            ));
        }
        out.insert(key, limit(cx, v, &at)?);
    }
    Ok(out)
}

impl ConfigBudget {
    /// `self` with every setting `over` states replacing this one's; per-command limits
    /// are replaced command by command.
    fn overlay(mut self, over: &ConfigBudget) -> ConfigBudget {
        self.overall_tokens = over.overall_tokens.or(self.overall_tokens);
        self.overall_cost = over.overall_cost.or(self.overall_cost);
        self.command_tokens.extend(over.command_tokens.clone());
        self.command_costs.extend(over.command_costs.clone());
        self.mode = over.mode.or(self.mode);
        self.warn_at_percent = over.warn_at_percent.or(self.warn_at_percent);
        self.disable_visuals = over.disable_visuals.or(self.disable_visuals);
        self.periodic = merge_periodic(over.periodic.clone(), self.periodic);
        self
    }
}

/// The config's budget with `--profile NAME` applied.
fn select_profile(
    profile: Option<&str>,
    file: Option<&ConfigFile>,
    origin: &str,
) -> Result<ConfigBudget, UsageError> {
    let Some(name) = profile else {
        return Ok(file.map(|f| f.budget.clone()).unwrap_or_default());
    };
    let Some(file) = file else {
        return Err(UsageError(format!(
            "--profile {name}: profiles come from a config file; add --config FILE with \"profiles\": {{\"{name}\": {{…}}}}"
        )));
    };
    match file.profiles.get(name) {
        Some(p) => Ok(file.budget.clone().overlay(p)),
        None if file.profiles.is_empty() => Err(UsageError(format!(
            "--profile {name}: {origin} has no \"profiles\"; add \"profiles\": {{\"{name}\": {{…budget keys…}}}}"
        ))),
        None => {
            let names: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
            let hint = match cli::closest(name, names.iter().copied()) {
                Some(c) => format!("did you mean {c}? "),
                None => String::new(),
            };
            Err(UsageError(format!(
                "--profile {name}: no such profile in {origin}; {hint}profiles: {}",
                names.join(", ")
            )))
        }
    }
}

/// Names end up in file names (`--log-dir`), so they must be safe as one.
fn check_name(cx: &Ctx, name: String, at: &str) -> Result<String, UsageError> {
    if name.starts_with('.')
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
        || name.chars().count() > 100
    {
        return Err(cx.err(
            at,
            format!("{name:?} is not a usable name: it names log files, so use letters, digits, '-', '_' (no '/', not starting with '.', at most 100 characters)"),
        ));
    }
    Ok(name)
}

pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A readable, file-name-safe slug of a command: `/test --unit` → `test-unit`.
pub fn slug(command: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::new();
    let mut gap = false;
    for c in command.chars() {
        if c == '\'' || c == '\u{2019}' {
            // "it's" reads better as "its" than as "it-s".
            continue;
        }
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    if out.chars().count() > MAX {
        let cut: String = out.chars().take(MAX).collect();
        // Prefer to cut at a word boundary when one is not too far back.
        out = match cut.rfind('-') {
            Some(i) if i >= MAX / 2 => cut[..i].to_string(),
            _ => cut,
        };
    }
    if out.is_empty() {
        "instance".to_string()
    } else {
        out
    }
}

/// Reads and checks the config file at `path` (resolved against `cwd`); errors name the
/// path as the user gave it.
pub fn load_config(path: &Path, cwd: &Path) -> Result<ConfigFile, UsageError> {
    let shown = path.display().to_string();
    let full = cwd.join(path);
    let text = read_input_file(&full)
        .map_err(|reason| UsageError(format!("--config {shown}: {reason}")))?;
    let text = String::from_utf8(text).map_err(|_| {
        UsageError(format!(
            "--config {shown}: not UTF-8 text; save the file as UTF-8 JSON"
        ))
    })?;
    parse_config(&text, &shown)
}

/// Largest config or pricing file read: far above any real one, and it keeps
/// `--config /dev/zero` from eating memory.
pub const MAX_INPUT_FILE: u64 = 16 * 1024 * 1024;

/// Reads `--pricing FILE`: a replacement price table in the built-in table's format.
pub fn load_pricing(path: &Path) -> anyhow::Result<Pricing> {
    let shown = path.display();
    let bytes = read_input_file(path)
        .map_err(|reason| anyhow::anyhow!("pricing file {shown}: {reason}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("pricing file {shown}: not UTF-8 text"))?;
    Pricing::parse(&text, &shown.to_string())
}

/// Reads a small input file (config, price table). Errors are a reason for a one-line
/// message: not a regular file, too large, or the OS's own reason.
pub fn read_input_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read the file: {}", os_reason(&e));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err("not a regular file; give the path of a JSON file".into());
    }
    let mut text = Vec::new();
    file.take(MAX_INPUT_FILE + 1)
        .read_to_end(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_INPUT_FILE {
        return Err(format!(
            "larger than {} MiB; is this the right file?",
            MAX_INPUT_FILE / (1024 * 1024)
        ));
    }
    Ok(text)
}

fn os_reason(e: &std::io::Error) -> String {
    // "No such file or directory (os error 2)" → without the errno, which helps nobody.
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn existing_dir(path: &Path, what: impl Fn() -> String) -> Result<PathBuf, UsageError> {
    let fail =
        |reason: String| UsageError(format!("{}: {reason}; give an existing directory", what()));
    let meta = std::fs::metadata(path).map_err(|e| fail(os_reason(&e)))?;
    if !meta.is_dir() {
        return Err(fail("not a directory".into()));
    }
    std::fs::canonicalize(path).map_err(|e| fail(os_reason(&e)))
}

/// Where an instance came from, for messages.
fn position(i: usize, n_config: usize) -> String {
    if i < n_config {
        format!("instances[{i}]")
    } else {
        format!("PROMPT #{}", i - n_config + 1)
    }
}

/// Merges the config file, the positional prompts and the flags into a validated plan.
/// Config instances come first. Flags override the config; an instance's own values
/// override the global defaults (`--model`, `--permission-mode`, `--allowed-tools`,
/// `--output-format`, `--timeout`).
pub fn build_plan(cli: &Cli, cwd: &Path) -> Result<Plan, UsageError> {
    let workspace = match &cli.workspace {
        Some(w) => existing_dir(&cwd.join(w), || format!("--workspace {}", w.display()))?,
        None => existing_dir(cwd, || format!("current directory {}", cwd.display()))?,
    };

    let file = match &cli.config {
        Some(p) => Some(load_config(p, cwd)?),
        None => None,
    };
    let origin = cli
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();

    let cfg_budget = select_profile(cli.profile.as_deref(), file.as_ref(), &origin)?;
    let file = file.unwrap_or_default();
    let n_config = file.instances.len();
    let mut raw: Vec<ConfigInstance> = file.instances;
    for (i, p) in cli.prompts.iter().enumerate() {
        let command = p.trim();
        if command.is_empty() {
            return Err(UsageError(format!(
                "PROMPT #{} is empty; give a slash command such as /test or some text",
                i + 1
            )));
        }
        if command.contains('\0') {
            return Err(UsageError(format!(
                "PROMPT #{} contains a NUL character",
                i + 1
            )));
        }
        raw.push(ConfigInstance {
            command: command.to_string(),
            ..ConfigInstance::default()
        });
    }
    apply_direct_flags(cli, &mut raw[n_config..], &origin)?;

    if raw.is_empty() && !cli.list_commands && cli.inspect_command.is_none() {
        return Err(UsageError(
            "nothing to run: give at least one PROMPT (e.g. orchestrator /test) or --config FILE with \"instances\"".into(),
        ));
    }

    let names = assign_names(&raw, n_config, &origin)?;

    let mut sessions: HashMap<&str, usize> = HashMap::new();
    let mut instances: Vec<InstanceSpec> = Vec::with_capacity(raw.len());
    for (i, (inst, name)) in raw.iter().zip(names).enumerate() {
        if let Some(sid) = inst.session_id.as_deref() {
            if let Some(first) = sessions.insert(sid, i) {
                return Err(UsageError(format!(
                    "{origin}: instances[{i}].session_id: the same session_id as instances[{first}]; each instance needs its own session"
                )));
            }
        }
        let ws = match &inst.workspace {
            Some(sub) => existing_dir(&workspace.join(sub), || {
                format!(
                    "{origin}: {}.workspace: {} (relative to {})",
                    position(i, n_config),
                    sub.display(),
                    workspace.display()
                )
            })?,
            None => workspace.clone(),
        };
        let global_tools = cli.allowed_tools.as_ref().map(|t| t.0.clone());
        instances.push(InstanceSpec {
            name,
            command: inst.command.clone(),
            description: inst.description.clone(),
            workspace: ws,
            permission_mode: inst
                .permission_mode
                .clone()
                .or_else(|| cli.permission_mode.clone()),
            allowed_tools: inst
                .allowed_tools
                .clone()
                .or(global_tools)
                .unwrap_or_default(),
            disallowed_tools: inst.disallowed_tools.clone(),
            model: inst.model.clone().or_else(|| cli.model.clone()),
            output_format: inst.output_format.or(cli.output_format).unwrap_or_default(),
            max_tokens: inst.max_tokens,
            max_cost: inst.max_cost,
            timeout: inst.timeout.or(cli.timeout),
            session_id: inst.session_id.clone(),
            extra_args: inst.extra_args.clone(),
            env: inst.env.clone(),
            estimate: None,
        });
    }

    let disable_visuals = cfg_budget.disable_visuals.unwrap_or(false);
    let budgets = merge_budgets(cli, cfg_budget)?;
    check_unaccounted_under_block(&instances, &budgets, &origin, n_config)?;

    let abs = |p: &PathBuf| cwd.join(p);
    let claude_path = match &cli.claude_path {
        // A bare name is looked up on PATH later; only a path is anchored to `cwd`.
        Some(p) if p.components().count() > 1 => cwd.join(p),
        Some(p) => p.clone(),
        None => PathBuf::from("claude"),
    };
    let project = cli
        .project
        .clone()
        .unwrap_or_else(|| default_project(&workspace));
    let options = RunOptions {
        run_id: String::new(),
        project,
        claude_path,
        workspace,
        max_parallel: cli.max_parallel,
        startup_delay: cli.startup_delay,
        kill_grace: cli.kill_grace,
        on_usage_limit: cli.on_usage_limit,
        ledger_failure: cli.ledger_failure.unwrap_or(match budgets.mode {
            crate::core::plan::Mode::Block => crate::core::plan::LedgerFailure::Closed,
            crate::core::plan::Mode::Warn => crate::core::plan::LedgerFailure::Open,
        }),
        max_wait: cli.max_wait,
        backoff_quiet: cli.backoff_quiet,
        start_at: cli.start_at.map(|s| s.resolve(chrono::Local::now())),
        dry_run: cli.dry_run,
        strict: cli.strict,
        simulate: cli.simulate,
        disable_visuals: cli.disable_budget_visuals || disable_visuals,
        // zen's --max-console-lines 0: no live status; errors and the summary stay.
        status_interval: if cli.max_console_lines == Some(0) {
            Duration::ZERO
        } else {
            cli.status_report_interval
        },
        max_line_length: cli.max_line_length,
        quiet: cli.effective_quiet(),
        verbose: cli.effective_verbose(),
        color: cli.color,
        json: cli.json,
        report: cli.report.as_ref().map(abs),
        log_dir: cli.log_dir.as_ref().map(abs),
        pricing_file: cli.pricing.as_ref().map(abs),
        retries: cli.retries,
        fail_fast: cli.fail_fast,
        rerun_failed: cli.rerun_failed.as_ref().map(abs),
    };
    if let Some(report) = &cli.rerun_failed {
        instances = rerun_selection(&cwd.join(report), report, instances)?;
    }
    Ok(Plan {
        instances,
        budgets,
        options,
    })
}

/// Block mode must hold for every instance. One with `output_format: "json"` prints its
/// usage only at the very end, so nothing can stop it in time: under a block-mode cost
/// budget it is admitted only with its own `max_cost_usd` (Claude Code stops itself there,
/// `--max-budget-usd`) no larger than the budget, which admission then reserves; under a
/// block-mode token budget it cannot be bounded at all.
fn check_unaccounted_under_block(
    instances: &[InstanceSpec],
    b: &BudgetConfig,
    origin: &str,
    n_config: usize,
) -> Result<(), UsageError> {
    if b.mode != Mode::Block {
        return Ok(());
    }
    let at = |i: usize| {
        let p = position(i, n_config);
        if origin.is_empty() || i >= n_config {
            p
        } else {
            format!("{origin}: {p}")
        }
    };
    for (i, spec) in instances.iter().enumerate() {
        if spec.output_format != OutputFormat::Json {
            continue;
        }
        let base = spec.base_command();
        let tokens = [
            b.overall_tokens.map(|l| ("overall budget".to_string(), l)),
            base.and_then(|c| b.command_tokens.get(c).copied())
                .map(|l| (format!("command budget {}", base.unwrap_or("")), l)),
        ];
        if let Some((name, limit)) = tokens.into_iter().flatten().next() {
            return Err(UsageError(format!(
                "{}: output format json reports no usage until the instance ends, so the block-mode {name} ({}) cannot stop it in time; use --output-format stream-json for it, or enforcement_mode warn",
                at(i),
                crate::core::usage::fmt_count(limit)
            )));
        }
        let costs = [
            b.overall_cost
                .map(|l| ("overall cost budget".to_string(), l)),
            base.and_then(|c| b.command_costs.get(c).copied())
                .map(|l| (format!("command cost budget {}", base.unwrap_or("")), l)),
        ];
        for (name, limit) in costs.into_iter().flatten() {
            match spec.max_cost {
                Some(cap) if cap <= limit => {}
                Some(cap) => {
                    return Err(UsageError(format!(
                        "{}: output format json reports no usage until the instance ends, and its max_cost_usd {cap} is larger than the block-mode {name} {limit}; lower max_cost_usd to at most {limit} or use stream-json",
                        at(i)
                    )))
                }
                None => {
                    return Err(UsageError(format!(
                        "{}: output format json reports no usage until the instance ends, so under the block-mode {name} {limit} it needs its own max_cost_usd (at most {limit}; Claude stops itself there); set max_cost_usd or use stream-json",
                        at(i)
                    )))
                }
            }
        }
    }
    Ok(())
}

/// `--rerun-failed REPORT`: the instances of `instances` that did not complete in the
/// report (matched by name), in plan order. Every name in the report must still be in the
/// plan, so that a changed config cannot silently drop work.
fn rerun_selection(
    path: &Path,
    shown: &Path,
    instances: Vec<InstanceSpec>,
) -> Result<Vec<InstanceSpec>, UsageError> {
    let fail = |why: String| UsageError(format!("--rerun-failed {}: {why}", shown.display()));
    let bytes = read_input_file(path).map_err(fail)?;
    let report: Value = serde_json::from_slice(&bytes).map_err(|e| {
        fail(format!(
            "not a JSON report ({e}); give a file written by --report"
        ))
    })?;
    let Some(items) = report.get("instances").and_then(Value::as_array) else {
        return Err(fail(
            "has no \"instances\" list; give a file written by --report".into(),
        ));
    };
    let mut again: HashSet<String> = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let (Some(name), Some(status)) = (
            item.get("name").and_then(Value::as_str),
            item.get("status").and_then(Value::as_str),
        ) else {
            return Err(fail(format!(
                "instances[{i}] has no name and status; give a file written by --report"
            )));
        };
        if !instances.iter().any(|s| s.name == name) {
            return Err(fail(format!(
                "instance {name:?} of the report is not in this run; give the same --config and PROMPTs as the run that wrote it"
            )));
        }
        if status != "completed" {
            again.insert(name.to_string());
        }
    }
    if again.is_empty() {
        return Err(fail(
            "every instance in it completed; there is nothing to rerun".into(),
        ));
    }
    Ok(instances
        .into_iter()
        .filter(|s| again.contains(&s.name))
        .collect())
}

/// zen's direct-command flags (`--instance-name`, `--instance-description`,
/// `--session-id`) describe the one instance given as a PROMPT.
fn apply_direct_flags(
    cli: &Cli,
    prompts: &mut [ConfigInstance],
    origin: &str,
) -> Result<(), UsageError> {
    let given: Vec<&str> = [
        ("--instance-name", cli.instance_name.is_some()),
        ("--instance-description", cli.instance_description.is_some()),
        ("--session-id", cli.session_id.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(f, _)| *f)
    .collect();
    let Some(first) = given.first() else {
        return Ok(());
    };
    let [inst] = prompts else {
        let what = if prompts.is_empty() {
            "no PROMPT was given".to_string()
        } else {
            format!("{} PROMPTs were given", prompts.len())
        };
        let cfg = if origin.is_empty() {
            String::new()
        } else {
            format!(" (instances from {origin} set their own in the file)")
        };
        return Err(UsageError(format!(
            "{first} describes the one PROMPT on the command line, but {what}{cfg}; give exactly one PROMPT, or set \"name\"/\"description\"/\"session_id\" per instance in a --config file"
        )));
    };
    if let Some(name) = &cli.instance_name {
        let cx = Ctx { origin: "" };
        inst.name = Some(
            check_name(&cx, name.clone(), "--instance-name")
                .map_err(|e| UsageError(e.0.trim_start_matches(": ").to_string()))?,
        );
    }
    if let Some(d) = &cli.instance_description {
        inst.description = Some(d.clone());
    }
    if let Some(sid) = &cli.session_id {
        inst.session_id = Some(sid.clone());
    }
    Ok(())
}

/// Explicit names must be unique; defaulted names (slugs) are made unique with `-2`, `-3`.
fn assign_names(
    raw: &[ConfigInstance],
    n_config: usize,
    origin: &str,
) -> Result<Vec<String>, UsageError> {
    let mut explicit: HashMap<&str, usize> = HashMap::new();
    for (i, inst) in raw.iter().enumerate() {
        if let Some(n) = inst.name.as_deref() {
            if let Some(first) = explicit.insert(n, i) {
                return Err(UsageError(format!(
                    "{origin}: instances[{i}].name: duplicate instance name {n:?}, also used by {}; give each instance its own name",
                    position(first, n_config)
                )));
            }
        }
    }
    let mut taken: HashSet<String> = explicit.keys().map(|s| s.to_string()).collect();
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    let mut names = Vec::with_capacity(raw.len());
    for inst in raw {
        let name = match &inst.name {
            Some(n) => n.clone(),
            None => {
                let base = slug(&inst.command);
                let mut candidate = base.clone();
                // Remember where the suffix search stopped, so that a thousand instances
                // of the same command stay linear rather than quadratic.
                let k = next_suffix.entry(base.clone()).or_insert(2);
                while taken.contains(&candidate) {
                    candidate = format!("{base}-{k}");
                    *k += 1;
                }
                taken.insert(candidate.clone());
                candidate
            }
        };
        names.push(name);
    }
    Ok(names)
}

fn merge_budgets(cli: &Cli, cfg: ConfigBudget) -> Result<BudgetConfig, UsageError> {
    let mut command_tokens = cfg.command_tokens;
    let mut seen = HashSet::new();
    for cb in cli.command_tokens() {
        if !seen.insert(cb.command.as_str()) {
            return Err(UsageError(format!(
                "--command-budget: {} is given twice; give each command one limit",
                cb.command
            )));
        }
        command_tokens.insert(cb.command.clone(), cb.tokens);
    }
    let mut command_costs = cfg.command_costs;
    let mut seen = HashSet::new();
    for cc in cli.command_costs() {
        if !seen.insert(cc.command.as_str()) {
            return Err(UsageError(format!(
                "--command-cost-budget: {} is given twice; give each command one limit",
                cc.command
            )));
        }
        command_costs.insert(cc.command.clone(), cc.usd);
    }
    Ok(BudgetConfig {
        overall_tokens: cli.overall_token_budget.or(cfg.overall_tokens),
        overall_cost: cli.overall_cost_budget.or(cfg.overall_cost),
        command_tokens,
        command_costs,
        mode: cli.budget_enforcement_mode.or(cfg.mode).unwrap_or_default(),
        warn_at_percent: cli.warn_at.or(cfg.warn_at_percent).unwrap_or(80.0),
        estimate_tokens: cli
            .estimate
            .unwrap_or(crate::core::estimate::DEFAULT_ESTIMATE),
        estimate_pinned: cli.estimate.is_some(),
        periodic: merge_periodic(cli.periodic.limits(), cfg.periodic),
        zone: cli.periodic.budget_timezone.unwrap_or_default(),
    })
}

/// The project a run is labelled with when `--project` is not given: the name of the
/// git top-level directory holding `workspace` (the nearest ancestor with a `.git`),
/// else the workspace directory's own name.
pub fn default_project(workspace: &Path) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
    };
    workspace
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .and_then(name)
        .or_else(|| name(workspace))
        .unwrap_or_else(|| "/".to_string())
}

/// The periodic budgets `orchestrator budget` is asked about: the flags', then those of
/// `--config FILE` (with `--profile NAME` applied), merged exactly as a run merges them.
pub fn periodic_budgets(
    flags: &cli::PeriodicFlags,
    config: Option<&Path>,
    profile: Option<&str>,
    cwd: &Path,
) -> Result<Vec<crate::core::plan::PeriodicLimit>, UsageError> {
    let file = config.map(|p| load_config(p, cwd)).transpose()?;
    let origin = config.map(|p| p.display().to_string()).unwrap_or_default();
    let cfg = select_profile(profile, file.as_ref(), &origin)?;
    Ok(merge_periodic(flags.limits(), cfg.periodic))
}

/// The flags' periodic budgets, then the config file's; a flag replaces the config's limit
/// of the same unit for the same period and scope.
fn merge_periodic(
    flags: Vec<crate::core::plan::PeriodicLimit>,
    config: Vec<crate::core::plan::PeriodicLimit>,
) -> Vec<crate::core::plan::PeriodicLimit> {
    let mut out = flags;
    for c in config {
        match out
            .iter_mut()
            .find(|o| o.period == c.period && o.scope == c.scope)
        {
            Some(o) => {
                o.tokens = o.tokens.or(c.tokens);
                o.usd = o.usd.or(c.usd);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn the_default_project_is_the_git_top_level_else_the_workspace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().join("myrepo");
        let sub = top.join("crates").join("inner");
        std::fs::create_dir_all(&sub).expect("mkdir");
        assert_eq!(default_project(&sub), "inner");
        std::fs::create_dir(top.join(".git")).expect("mkdir .git");
        assert_eq!(default_project(&sub), "myrepo");
        assert_eq!(default_project(&top), "myrepo");
    }

    #[test]
    fn a_missing_pricing_file_is_named_in_the_error() {
        let missing = Path::new("/nonexistent/prices.json");
        let e = format!("{:#}", load_pricing(missing).expect_err("missing"));
        assert!(e.contains("/nonexistent/prices.json"), "{e}");
    }

    fn cfg(text: &str) -> Result<ConfigFile, String> {
        parse_config(text, "c.json").map_err(|e| e.to_string())
    }

    fn cfg_err(text: &str) -> String {
        let e = cfg(text).expect_err("expected an error");
        assert_eq!(e.lines().count(), 1, "not one line: {e:?}");
        e
    }

    fn cli(args: &[&str]) -> Cli {
        let v: Vec<OsString> = std::iter::once("orchestrator")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        cli::parse_args(v).expect("args parse")
    }

    #[test]
    fn spec_example_parses_in_full() {
        let f = cfg(r#"{
          "$schema": "optional",
          "// comment": "ignored",
          "instances": [{
            "name": "unit-tests", "command": "/test --unit", "description": "d",
            "workspace": "services/api", "permission_mode": "acceptEdits",
            "allowed_tools": ["Read", "Bash(cargo test:*)"], "disallowed_tools": [],
            "model": "sonnet", "output_format": "stream-json",
            "max_tokens_per_command": 20000, "max_cost_usd": 0.5, "timeout": 900,
            "session_id": "3F1C2B4A-0000-4000-8000-00000000abcd",
            "extra_args": ["--append-system-prompt", "Be brief."], "env": {"FOO": "bar"},
            "// note": "also ignored"
          }],
          "budget": {"overall_tokens": 50000, "overall_cost_usd": 5.0,
                     "commands": {"/test": 10000}, "command_costs": {"test": 1.0},
                     "enforcement_mode": "block", "warn_at_percent": 80}
        }"#)
        .unwrap();
        let i = &f.instances[0];
        assert_eq!(i.name.as_deref(), Some("unit-tests"));
        assert_eq!(
            i.allowed_tools.as_deref(),
            Some(&["Read".to_string(), "Bash(cargo test:*)".to_string()][..])
        );
        assert_eq!(i.max_tokens, Some(20000));
        assert_eq!(i.max_cost, Some(Usd(500_000_000)));
        assert_eq!(i.timeout, Some(Duration::from_secs(900)));
        assert_eq!(
            i.session_id.as_deref(),
            Some("3f1c2b4a-0000-4000-8000-00000000abcd")
        );
        assert_eq!(i.env.get("FOO").map(String::as_str), Some("bar"));
        assert_eq!(f.budget.overall_tokens, Some(50000));
        assert_eq!(
            f.budget.command_costs.get("/test"),
            Some(&Usd(1_000_000_000))
        );
        assert_eq!(f.budget.mode, Some(Mode::Block));
    }

    #[test]
    fn config_numbers_take_the_command_line_forms() {
        let f = cfg(
            r#"{"instances": [{"command": "/a", "max_tokens_per_command": "20K",
                                       "max_cost_usd": "$0.50", "timeout": "15m"},
                                      {"command": "/b", "timeout": "1.5h"}],
            "budget": {"overall_tokens": "1.5M", "overall_cost_usd": "$5",
                       "commands": {"/a": "5,000"}, "command_costs": {"/a": "$1"}}}"#,
        )
        .unwrap();
        assert_eq!(f.instances[0].max_tokens, Some(20_000));
        assert_eq!(f.instances[0].max_cost, Some(Usd(500_000_000)));
        assert_eq!(f.instances[0].timeout, Some(Duration::from_secs(900)));
        assert_eq!(f.instances[1].timeout, Some(Duration::from_secs(5400)));
        assert_eq!(f.budget.overall_tokens, Some(1_500_000));
        assert_eq!(f.budget.overall_cost, Some(Usd(5_000_000_000)));
        assert_eq!(f.budget.command_tokens.get("/a"), Some(&5000));
        assert_eq!(f.budget.command_costs.get("/a"), Some(&Usd(1_000_000_000)));
        let e = cfg_err(r#"{"budget": {"warn_at_percent": 0.8}}"#);
        assert!(
            e.contains("budget.warn_at_percent") && e.contains("write 80"),
            "{e}"
        );
        let e = cfg_err(r#"{"instances": [{"command": "/a", "timeout": "0s"}]}"#);
        assert!(e.contains("instances[0].timeout"), "{e}");
    }

    #[test]
    fn zen_aliases_are_accepted() {
        let f = cfg(r#"{"instances": [{"prompt": "/analyze", "clear_history": true, "compact_history": false, "pre_commands": []}],
            "budget": {"overall_budget": 100, "command_budgets": {"/analyze": 50},
                       "overall_cost_budget": 2, "command_cost_budgets": {"/analyze": 1},
                       "enforcement_mode": "warn", "disable_visuals": true, "budget_type": "mixed"}}"#)
        .unwrap();
        assert_eq!(f.instances[0].command, "/analyze");
        assert_eq!(f.budget.overall_tokens, Some(100));
        assert_eq!(f.budget.command_tokens.get("/analyze"), Some(&50));
        assert_eq!(f.budget.overall_cost, Some(Usd(2_000_000_000)));
        assert_eq!(f.budget.disable_visuals, Some(true));
    }

    #[test]
    fn unknown_keys_name_path_and_suggestion() {
        let e = cfg_err(
            r#"{"instances": [{"command": "/a"}, {"command": "/b"}, {"command": "/c", "permision_mode": "plan"}]}"#,
        );
        assert!(
            e.contains("c.json: instances[2].permision_mode: unknown key"),
            "{e}"
        );
        assert!(e.contains("\"permission_mode\""), "{e}");
        let e = cfg_err(r#"{"budgets": {}}"#);
        assert!(e.contains("budgets") && e.contains("\"budget\""), "{e}");
        let e = cfg_err(r#"{"budget": {"overal_tokens": 5}}"#);
        assert!(
            e.contains("budget.overal_tokens") && e.contains("\"overall_tokens\""),
            "{e}"
        );
        let e = cfg_err(r#"{"instances": [{"command": "/a", "zzz": 1}]}"#);
        assert!(
            e.contains("instances[0].zzz") && e.contains("known keys:"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_and_values_name_the_path() {
        let cases = [
            (r#"{"instances": {}}"#, "instances: expected an array"),
            (
                r#"{"instances": [{"command": 5}]}"#,
                "instances[0].command: expected a string",
            ),
            (
                r#"{"instances": [{"command": "  "}]}"#,
                "instances[0].command: must not be empty",
            ),
            (
                r#"{"instances": [{"name": "x"}]}"#,
                "instances[0]: missing \"command\"",
            ),
            (
                r#"{"instances": [{"command": "/a", "prompt": "/b"}]}"#,
                "not both",
            ),
            (
                r#"{"instances": [{"command": "/a", "max_tokens_per_command": -5}]}"#,
                "instances[0].max_tokens_per_command",
            ),
            (
                r#"{"instances": [{"command": "/a", "max_tokens_per_command": "5 tokens"}]}"#,
                "not a number of tokens",
            ),
            (
                r#"{"instances": [{"command": "/a", "max_tokens_per_command": 1.5}]}"#,
                "max_tokens_per_command",
            ),
            (
                r#"{"instances": [{"command": "/a", "max_cost_usd": -1}]}"#,
                "instances[0].max_cost_usd",
            ),
            (
                r#"{"instances": [{"command": "/a", "timeout": 0}]}"#,
                "instances[0].timeout: must be a number of seconds or a duration greater than 0",
            ),
            (
                r#"{"instances": [{"command": "/a", "session_id": "perf-1"}]}"#,
                "instances[0].session_id: \"perf-1\" is not a UUID",
            ),
            (
                r#"{"instances": [{"command": "/a", "output_format": "text"}]}"#,
                "instances[0].output_format",
            ),
            (
                r#"{"instances": [{"command": "/a", "allowed_tools": [1]}]}"#,
                "instances[0].allowed_tools[0]: expected a string",
            ),
            (
                r#"{"instances": [{"command": "/a", "name": "a/b"}]}"#,
                "instances[0].name",
            ),
            (
                r#"{"instances": [{"command": "/a", "pre_commands": ["/clear"]}]}"#,
                "instances[0].pre_commands",
            ),
            (
                r#"{"instances": [{"command": "/a", "permission_mode": "acceptedit"}]}"#,
                "did you mean acceptEdits",
            ),
            (
                r#"{"budget": {"overall_tokens": 0}}"#,
                "budget.overall_tokens: must be greater than 0",
            ),
            (
                r#"{"budget": {"commands": {"/test": "lots"}}}"#,
                "budget.commands[\"/test\"]: not a number of tokens",
            ),
            (
                r#"{"budget": {"commands": {"test": 1, "/test": 2}}}"#,
                "same command /test",
            ),
            (
                r#"{"budget": {"enforcement_mode": "hard"}}"#,
                "budget.enforcement_mode: expected warn or block",
            ),
            (
                r#"{"budget": {"warn_at_percent": 120}}"#,
                "budget.warn_at_percent",
            ),
            (
                r#"{"budget": {"overall_tokens": 1, "overall_budget": 2}}"#,
                "budget.overall_budget: is the zen name",
            ),
            (
                r#"{"budget": {"budget_type": "money"}}"#,
                "budget.budget_type",
            ),
            (r#"[1]"#, "expected a JSON object"),
        ];
        for (text, needle) in cases {
            let e = cfg_err(text);
            assert!(e.contains(needle), "{text}: {e:?} lacks {needle:?}");
            assert!(e.starts_with("c.json"), "{e}");
        }
    }

    #[test]
    fn env_values_never_appear_in_errors() {
        let e = cfg_err(r#"{"instances": [{"command": "/a", "env": {"TOKEN": 12345678}}]}"#);
        assert!(e.contains("instances[0].env.TOKEN"), "{e}");
        assert!(!e.contains("12345678"), "{e}");
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = cfg_err("{\n  \"instances\": [\n    {\"command\": \"/a\",}\n  ]\n}");
        assert!(e.starts_with("c.json:3:"), "{e}");
        assert!(!e.contains(" at line "), "{e}");
    }

    #[test]
    fn slugs_are_readable_and_safe() {
        assert_eq!(slug("/test --unit"), "test-unit");
        assert_eq!(slug("/lint src/main.rs"), "lint-src-main-rs");
        assert_eq!(slug("Fix the BUG!"), "fix-the-bug");
        assert_eq!(slug("???"), "instance");
        assert_eq!(slug("it's a prompt"), "its-a-prompt");
        let long = slug("please refactor the entire authentication module into smaller pieces");
        assert!(long.chars().count() <= 40 && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn defaulted_names_stay_unique_at_scale() {
        let mut raw: Vec<ConfigInstance> = (0..1000)
            .map(|_| ConfigInstance {
                command: "/test".into(),
                ..ConfigInstance::default()
            })
            .collect();
        raw[500].name = Some("test-7".into());
        let names = assign_names(&raw, raw.len(), "c.json").unwrap();
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 1000);
        assert_eq!(names[0], "test");
        assert_eq!(names[1], "test-2");
        // The explicit name is kept and the defaulted ones step around it.
        assert_eq!(names[500], "test-7");
        assert_eq!(names[6], "test-8");
    }

    #[test]
    fn uuid_check() {
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
    }

    #[test]
    fn zen_direct_command_flags_describe_the_one_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let sid = "3F1C2B4A-0000-4000-8000-00000000ABCD";
        let c = cli(&[
            "--instance-name",
            "analyzer",
            "--instance-description",
            "Direct run",
            "--session-id",
            sid,
            "--clear-history",
            "--compact-history",
            "--budget-parameter-type",
            "mixed",
            "/analyze-code",
        ]);
        let plan = build_plan(&c, dir.path()).unwrap();
        let i = &plan.instances[0];
        assert_eq!(i.name, "analyzer");
        assert_eq!(i.description.as_deref(), Some("Direct run"));
        assert_eq!(
            i.session_id.as_deref(),
            Some(sid.to_ascii_lowercase().as_str())
        );

        let e = build_plan(&cli(&["--instance-name", "a", "/x", "/y"]), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--instance-name describes the one PROMPT") && e.contains("2 PROMPTs"),
            "{e}"
        );
        let e = build_plan(&cli(&["--instance-name", "../x", "/x"]), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--instance-name: \"../x\" is not a usable name"),
            "{e}"
        );
        let e = cli::parse_args(
            ["orchestrator", "--session-id", "abc", "/x"]
                .map(OsString::from)
                .to_vec(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--session-id") && e.contains("not a UUID"),
            "{e}"
        );
    }

    #[test]
    fn zen_log_level_and_console_lines() {
        let dir = tempfile::tempdir().unwrap();
        let opts = |a: &[&str]| build_plan(&cli(a), dir.path()).unwrap().options;
        let o = opts(&["--log-level", "silent", "/x"]);
        assert!(o.quiet);
        let o = opts(&["--log-level", "detailed", "/x"]);
        assert_eq!((o.quiet, o.verbose), (false, 1));
        let o = opts(&["--log-level", "concise", "--quiet", "/x"]);
        assert!(!o.quiet, "--log-level wins over --quiet, as in zen");
        let o = opts(&["--max-console-lines", "0", "/x"]);
        assert_eq!(o.status_interval, Duration::ZERO);
        let o = opts(&["--max-console-lines", "5", "/x"]);
        assert_eq!(o.status_interval, Duration::from_secs(5));
    }

    #[test]
    fn rerun_failed_keeps_what_did_not_complete() {
        let dir = tempfile::tempdir().unwrap();
        let report = |body: &str| {
            std::fs::write(dir.path().join("r.json"), body).unwrap();
        };
        report(
            r#"{"instances": [{"name": "a", "status": "completed"}, {"name": "b", "status": "failed"},
                              {"name": "c", "status": "terminated"}]}"#,
        );
        let plan = build_plan(
            &cli(&[
                "--rerun-failed",
                "r.json",
                "--retries",
                "2",
                "--fail-fast",
                "/a",
                "/b",
                "/c",
            ]),
            dir.path(),
        )
        .unwrap();
        let names: Vec<&str> = plan.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(plan.options.retries, 2);
        assert!(plan.options.fail_fast);
        let err = |args: &[&str]| build_plan(&cli(args), dir.path()).unwrap_err().to_string();
        let e = err(&["--rerun-failed", "r.json", "/a", "/b"]);
        assert!(e.contains("\"c\" of the report is not in this run"), "{e}");
        report(r#"{"instances": [{"name": "a", "status": "completed"}]}"#);
        let e = err(&["--rerun-failed", "r.json", "/a"]);
        assert!(e.contains("nothing to rerun"), "{e}");
        report("[1, 2]");
        let e = err(&["--rerun-failed", "r.json", "/a"]);
        assert!(
            e.starts_with("--rerun-failed r.json: has no \"instances\""),
            "{e}"
        );
        let e = err(&["--rerun-failed", "missing.json", "/a"]);
        assert!(
            e.starts_with("--rerun-failed missing.json: cannot read"),
            "{e}"
        );
        let e = cli::parse_args(
            ["orchestrator", "--retries", "-1", "/x"]
                .map(OsString::from)
                .to_vec(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--retries") && e.contains("0 to 100"), "{e}");
    }

    #[test]
    fn profiles_override_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"instances": [{"command": "/test"}],
               "budget": {"overall_tokens": 100, "commands": {"/test": 50, "/lint": 20}},
               "profiles": {"testing": {"overall_tokens": "1K", "commands": {"/test": 70}},
                            "production": {"overall_cost_usd": "$5", "enforcement_mode": "block"}}}"#,
        )
        .unwrap();
        let budgets = |a: &[&str]| build_plan(&cli(a), dir.path()).map(|p| p.budgets);
        let b = budgets(&["-c", "c.json"]).unwrap();
        assert_eq!(b.overall_tokens, Some(100));
        let b = budgets(&["-c", "c.json", "--profile", "testing"]).unwrap();
        assert_eq!(b.overall_tokens, Some(1000));
        assert_eq!(b.command_tokens.get("/test"), Some(&70));
        assert_eq!(b.command_tokens.get("/lint"), Some(&20));
        let b = budgets(&["-c", "c.json", "--profile", "production"]).unwrap();
        assert_eq!(b.overall_tokens, Some(100));
        assert_eq!(b.overall_cost, Some(Usd(5_000_000_000)));
        assert_eq!(b.mode, Mode::Block);
        // Flags still win over the profile.
        let b = budgets(&[
            "-c",
            "c.json",
            "--profile",
            "testing",
            "--overall-token-budget",
            "9",
        ])
        .unwrap();
        assert_eq!(b.overall_tokens, Some(9));
        let e = budgets(&["-c", "c.json", "--profile", "testin"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("did you mean testing?") && e.contains("production"),
            "{e}"
        );
        let e = budgets(&["--profile", "testing", "/x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--config"), "{e}");
        let e = cfg_err(r#"{"profiles": {"t": {"overal_tokens": 5}}}"#);
        assert!(e.contains("profiles.t.overal_tokens"), "{e}");
    }

    #[test]
    fn a_profiles_periodic_budgets_apply() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"instances": [{"command": "/test"}],
               "budget": {"periodic": [{"period": "day", "scope": "project", "tokens": 100}]},
               "profiles": {"nightly": {"periodic": [{"period": "day", "scope": "project", "tokens": 500},
                                                     {"period": "month", "scope": "all", "usd": 20}]}}}"#,
        )
        .unwrap();
        let b = build_plan(&cli(&["-c", "c.json", "--profile", "nightly"]), dir.path())
            .unwrap()
            .budgets;
        let day = b
            .periodic
            .iter()
            .find(|p| p.period == crate::core::period::Period::Day)
            .expect("day budget");
        assert_eq!(day.tokens, Some(500));
        assert!(b
            .periodic
            .iter()
            .any(|p| p.period == crate::core::period::Period::Month && p.usd.is_some()));
    }

    #[test]
    fn plan_merges_config_prompts_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("api")).unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"instances": [
                 {"command": "/test --unit", "workspace": "api", "model": "opus", "allowed_tools": []},
                 {"name": "test-unit-2", "command": "/lint"}
               ],
               "budget": {"overall_tokens": 100, "commands": {"/test": 10, "/lint": 20},
                          "enforcement_mode": "block", "warn_at_percent": 50, "disable_visuals": true}}"#,
        )
        .unwrap();
        let c = cli(&[
            "-c",
            "c.json",
            "--model",
            "sonnet",
            "--allowed-tools",
            "Read",
            "--command-budget",
            "/test=30",
            "--overall-token-budget",
            "500",
            "--timeout",
            "60",
            "/test --unit",
            "/test --unit",
        ]);
        let plan = build_plan(&c, dir.path()).unwrap();
        let names: Vec<&str> = plan.instances.iter().map(|i| i.name.as_str()).collect();
        // Defaulted names avoid the explicit "test-unit-2".
        assert_eq!(
            names,
            ["test-unit", "test-unit-2", "test-unit-3", "test-unit-4"]
        );
        let ws = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(plan.instances[0].workspace, ws.join("api"));
        assert_eq!(plan.instances[1].workspace, ws);
        assert_eq!(plan.instances[0].model.as_deref(), Some("opus"));
        assert_eq!(plan.instances[1].model.as_deref(), Some("sonnet"));
        assert!(plan.instances[0].allowed_tools.is_empty());
        assert_eq!(plan.instances[2].allowed_tools, ["Read"]);
        assert_eq!(plan.instances[3].timeout, Some(Duration::from_secs(60)));
        assert_eq!(plan.budgets.overall_tokens, Some(500));
        assert_eq!(plan.budgets.command_tokens.get("/test"), Some(&30));
        assert_eq!(plan.budgets.command_tokens.get("/lint"), Some(&20));
        assert_eq!(plan.budgets.mode, Mode::Block);
        assert_eq!(plan.budgets.warn_at_percent, 50.0);
        assert!(plan.options.disable_visuals);
        assert_eq!(plan.budgets.estimate_tokens, 1000);
    }

    #[test]
    fn plan_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = build_plan(&cli(&[]), d).unwrap_err().to_string();
        assert!(e.contains("nothing to run"), "{e}");
        assert!(build_plan(&cli(&["--list-commands"]), d).is_ok());
        let e = build_plan(&cli(&["-w", "nope", "/a"]), d)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--workspace nope: ") && e.contains("No such file"),
            "{e}"
        );
        std::fs::write(d.join("f"), "x").unwrap();
        let e = build_plan(&cli(&["-w", "f", "/a"]), d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
        let e = build_plan(&cli(&["-c", "missing.json"]), d)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--config missing.json: cannot read") && !e.contains("os error"),
            "{e}"
        );
        let e = build_plan(&cli(&["", "/a"]), d).unwrap_err().to_string();
        assert!(e.contains("PROMPT #1 is empty"), "{e}");
        let e = build_plan(
            &cli(&["--command-budget", "/a=1", "--command-budget", "a=2", "/a"]),
            d,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--command-budget: /a is given twice"), "{e}");

        std::fs::write(d.join("dup.json"), r#"{"instances": [{"name": "x", "command": "/a"}, {"command": "/b"}, {"name": "x", "command": "/c"}]}"#).unwrap();
        let e = build_plan(&cli(&["-c", "dup.json"]), d)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("instances[2].name") && e.contains("instances[0]") && e.contains("\"x\""),
            "{e}"
        );

        std::fs::write(
            d.join("ws.json"),
            r#"{"instances": [{"command": "/a", "workspace": "sub"}]}"#,
        )
        .unwrap();
        let e = build_plan(&cli(&["-c", "ws.json"]), d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ws.json: instances[0].workspace: sub"), "{e}");

        let sid = "123e4567-e89b-12d3-a456-426614174000";
        std::fs::write(d.join("sid.json"), format!(r#"{{"instances": [{{"command": "/a", "session_id": "{sid}"}}, {{"command": "/b", "session_id": "{sid}"}}]}}"#)).unwrap();
        let e = build_plan(&cli(&["-c", "sid.json"]), d)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("instances[1].session_id") && e.contains("instances[0]"),
            "{e}"
        );
    }

    #[test]
    fn shipped_examples_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let names = [
            "zen-style.json",
            "per-command-budgets.json",
            "cost-budgets.json",
            "ci-dry-run.json",
        ];
        for name in names {
            let path = format!("examples/{name}");
            let plan =
                build_plan(&cli(&["-c", &path]), root).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(plan.instances.len() >= 2, "{name}");
            let has_budget = plan.budgets.overall_tokens.is_some()
                || plan.budgets.overall_cost.is_some()
                || !plan.budgets.command_tokens.is_empty();
            assert!(has_budget, "{name} sets no budget");
        }
        let zen = build_plan(&cli(&["-c", "examples/zen-style.json"]), root).unwrap();
        assert_eq!(zen.budgets.overall_tokens, Some(100_000));
        assert_eq!(zen.instances[1].command, "/generate-docs");
        let ci = build_plan(&cli(&["-c", "examples/ci-dry-run.json"]), root).unwrap();
        assert_eq!(ci.budgets.mode, Mode::Block);
        assert_eq!(ci.instances[1].allowed_tools.len(), 3);
    }

    #[test]
    fn usage_error_display_is_one_line() {
        let e = UsageError("a\nb\r\nc".into());
        assert_eq!(e.to_string().lines().count(), 1);
    }
}
