//! Machine-readable output: `--json` events (one JSON object per line on stdout) and the
//! `run_finished` object that `--report FILE` writes atomically. Field names follow SPEC
//! section 7; the report's JSON Schema is `schema/report.schema.json`.

use crate::budget::{Decision, Ledger, Scope, Warning};
use crate::dispatcher::{InstanceState, RunOutcome};
use crate::plan::{InstanceSpec, Plan};
use crate::usage::{Usage, Usd};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// `usage` events are coalesced to at most one per instance per this interval.
const USAGE_EVERY: Duration = Duration::from_millis(100);

pub struct EventSink {
    json: bool,
    last_usage: HashMap<String, Instant>,
    /// The `run_finished` object, once the run is over.
    pub finished: Option<Value>,
}

pub fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl EventSink {
    pub fn new(json: bool) -> EventSink {
        EventSink {
            json,
            last_usage: HashMap::new(),
            finished: None,
        }
    }

    fn emit(&self, event: &str, mut body: Value) {
        if !self.json {
            return;
        }
        if let Value::Object(map) = &mut body {
            map.insert("event".into(), json!(event));
            map.insert("ts".into(), json!(now_ts()));
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{body}");
        let _ = out.flush();
    }

    pub fn run_started(&self, plan: &Plan) {
        let names: Vec<&str> = plan.instances.iter().map(|i| i.name.as_str()).collect();
        self.emit(
            "run_started",
            json!({
                "instances": names,
                "mode": plan.budgets.mode,
                "simulate": plan.options.simulate,
            }),
        );
    }

    pub fn instance_started(&self, name: &str, pid: u32, argv: &[String]) {
        self.emit(
            "instance_started",
            json!({"name": name, "pid": pid, "argv": argv}),
        );
    }

    pub fn usage(&mut self, name: &str, s: &InstanceState, delta: u64, now: Instant) {
        if !self.json {
            return;
        }
        if let Some(last) = self.last_usage.get(name) {
            if now.saturating_duration_since(*last) < USAGE_EVERY {
                return;
            }
        }
        self.last_usage.insert(name.to_string(), now);
        let mut body = usage_json(&s.usage, s.cost);
        body["name"] = json!(name);
        body["delta"] = json!(delta);
        self.emit("usage", body);
    }

    pub fn budget_warning(&self, name: &str, w: &Warning) {
        let mut body = json!({
            "budget": budget_key_json(&w.budget.scope, w.budget.unit.as_str()),
            "used": w.used,
            "limit": w.limit,
            "message": w.to_string(),
        });
        if !name.is_empty() {
            body["name"] = json!(name);
        }
        self.emit("budget_warning", body);
    }

    pub fn budget_exceeded(&self, d: &Decision, reason: &str) {
        if let Decision::Terminate {
            budget,
            used,
            limit,
            ..
        } = d
        {
            self.emit(
                "budget_exceeded",
                json!({
                    "budget": budget_key_json(&budget.scope, budget.unit.as_str()),
                    "used": used,
                    "limit": limit,
                    "message": reason,
                }),
            );
        }
    }

    pub fn instance_waiting(&self, name: &str, reason: &str) {
        self.emit("instance_waiting", json!({"name": name, "reason": reason}));
    }

    pub fn instance_blocked(&self, name: &str, reason: &str) {
        self.emit("instance_blocked", json!({"name": name, "reason": reason}));
    }

    pub fn instance_terminated(&self, name: &str, kind: &str, reason: &str) {
        self.emit(
            "instance_terminated",
            json!({"name": name, "reason": kind, "message": reason}),
        );
    }

    pub fn instance_finished(&self, spec: &InstanceSpec, s: &InstanceState) {
        self.emit("instance_finished", instance_json(spec, s, Instant::now()));
    }

    pub fn run_finished(
        &mut self,
        plan: &Plan,
        states: &[InstanceState],
        ledger: &Ledger,
        outcome: &RunOutcome,
        started: Instant,
        now: Instant,
    ) {
        let mut totals = Usage::default();
        let mut cost = Usd::ZERO;
        for s in states {
            totals += s.usage;
            cost += s.cost;
        }
        let budgets: Vec<Value> = ledger
            .budgets()
            .iter()
            .map(|b| {
                let mut v = budget_key_json(&b.key.scope, b.key.unit.as_str());
                if let Scope::Instance(i) = b.key.scope {
                    v["key"] = json!(plan.instances.get(i).map(|s| s.name.as_str()));
                }
                v["limit"] = serde_json::to_value(b.limit).unwrap_or(Value::Null);
                v["used"] = serde_json::to_value(b.used).unwrap_or(Value::Null);
                v["state"] = json!(b.state.as_str());
                v
            })
            .collect();
        let instances: Vec<Value> = plan
            .instances
            .iter()
            .zip(states)
            .map(|(spec, s)| instance_json(spec, s, now))
            .collect();
        let body = json!({
            "exit_code": outcome.exit_code,
            "exit_reason": outcome.exit_reason,
            "duration_ms": now.saturating_duration_since(started).as_millis() as u64,
            "mode": plan.budgets.mode,
            "totals": usage_json(&totals, cost),
            "budgets": budgets,
            "instances": instances,
        });
        self.emit("run_finished", body.clone());
        let mut report = body;
        report["event"] = json!("run_finished");
        report["ts"] = json!(now_ts());
        self.finished = Some(report);
    }
}

fn budget_key_json(scope: &Scope, unit: &str) -> Value {
    let key = match scope {
        Scope::Overall => Value::Null,
        Scope::Command(c) => json!(c),
        Scope::Instance(i) => json!(i),
    };
    json!({"scope": scope.kind(), "key": key, "unit": unit})
}

pub fn usage_json(u: &Usage, cost: Usd) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
        "total_tokens": u.total(),
        "cost_usd": cost,
    })
}

fn instance_json(spec: &InstanceSpec, s: &InstanceState, now: Instant) -> Value {
    json!({
        "name": spec.name,
        "command": spec.command,
        "status": s.status,
        "reason": s.reason,
        "exit_code": s.exit.and_then(|e| e.code),
        "signal": s.exit.and_then(|e| e.signal),
        "usage": usage_json(&s.usage, s.cost),
        "model": s.model.as_deref().or(spec.model.as_deref()),
        "duration_ms": s.duration(now).map(|d| d.as_millis() as u64).unwrap_or(0),
        "result": s.result.as_ref().and_then(|r| r.text.as_deref()),
        "tools": s.tools,
        "malformed_lines": s.malformed_lines,
    })
}

/// Writes `value` to `path` atomically: a temporary file in the same directory, synced,
/// then renamed over the target, so a reader never sees half a report.
pub fn write_report(path: &Path, value: &Value) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.json".into());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        // Buffered: serde_json writes token by token, which unbuffered was one write(2)
        // per token (about 100,000 for a 500-instance report).
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut f, value)?;
        f.write_all(b"\n")?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
