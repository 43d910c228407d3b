//! Per-instance token and dollar accounting from Claude Code's `stream-json` output.
//!
//! A [`Tracker`] is fed every stdout line of one instance and keeps SPEC §4's rules:
//!
//! - **Dedupe by message id.** One API response appears as several `assistant` events and
//!   a `message_start` stream event with the same `message.id`; per id the tracker keeps
//!   the field-wise maximum of the usage, so nothing is counted twice.
//! - **`message_delta`** carries the cumulative usage of the message most recently started
//!   (`message_start`) with the same `parent_tool_use_id`; its fields raise that message's
//!   maximum, they are never added.
//! - **`<synthetic>`** messages count no tokens and cost nothing. An `assistant` event
//!   without a `message.id` cannot be deduplicated and is not counted live (the `result`
//!   still covers it).
//! - **`result` is the authority.** Its `modelUsage` summed over models becomes the token
//!   total if it is larger than what was counted live (the per-class breakdown then becomes
//!   the result's); otherwise the live numbers stay. Its `total_cost_usd` *replaces* the
//!   live cost estimate exactly. Results are running totals: a later `result` replaces an
//!   earlier one. Lines after a result add on top of it until the next result.
//!   (If a result has no `modelUsage`, its `usage` is used under the same "only if larger"
//!   rule; `usage` is never preferred to `modelUsage`.)
//!
//! **Deltas.** Every [`Observation`] carries `tokens_delta` (never negative) and
//! `cost_delta` such that the sum of all deltas equals [`Tracker::total_tokens`] and
//! [`Tracker::cost`] at every moment. `cost_delta` is negative in exactly one case: when a
//! `result`'s `total_cost_usd` is lower than the live estimate it replaces (the live
//! estimate prices each message at list price and cannot know Claude's own discounts).
//!
//! **Live cost** is each message's tokens at its own model's price ([`Pricing`]); a model
//! the table does not know is priced as the most expensive known model, with one warning.
//!
//! **Memory is bounded.** The dedupe map keeps the [`MESSAGE_WINDOW`] most recently
//! started message ids (as 64-bit hashes); older messages stay in the totals but can no
//! longer be deduplicated, so an id that reappeared after that many newer messages would be
//! counted again (an over-count, never an under-count). Claude Code emits all events of one
//! message within one turn, far inside that window. Tool-use ids and `message_delta`
//! associations are bounded the same way.

use crate::core::pricing::{cost_with, ModelPrice, Pricing};
use crate::core::signal::{LimitStatus, Signal};
use crate::core::stream::{self, Event, RawUsage};
use crate::core::usage::{Usage, Usd};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// Message ids remembered for dedupe (see the module doc).
pub const MESSAGE_WINDOW: usize = 512;
/// Tool-use ids remembered so a replayed line does not count a tool twice.
const TOOL_WINDOW: usize = 512;
/// Distinct `parent_tool_use_id`s whose current message is remembered.
const PARENT_WINDOW: usize = 64;
/// The result text kept in [`ResultSummary`].
pub const RESULT_TEXT_MAX: usize = stream::RESULT_TEXT_MAX;

const SYNTHETIC_MODEL: &str = "<synthetic>";

/// What one line changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub tokens_delta: u64,
    pub cost_delta: Usd,
    /// New live detail for the report, e.g. `Bash: cargo test`, `api_retry 2/10 (529)`.
    pub activity: Option<String>,
    /// Something the user should know, given once per tracker (unknown model, first
    /// malformed line).
    pub warning: Option<String>,
    /// This line was a `result` event.
    pub result: bool,
    /// What the line says about the API's limits (retry, rate limit, usage limit,
    /// spend cap).
    pub signal: Option<Signal>,
}

/// The last `result` event of the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSummary {
    pub subtype: String,
    pub is_error: bool,
    /// At most [`RESULT_TEXT_MAX`] bytes.
    pub text: Option<String>,
    pub num_turns: Option<u64>,
}

/// One deduplicated API message.
#[derive(Debug, Clone, Copy)]
struct Msg {
    usage: Usage,
    cache_1h: u64,
    /// Index into `Tracker::prices`, or [`SYNTHETIC`] for free, uncounted messages.
    price: u16,
}

const SYNTHETIC: u16 = u16::MAX;

/// Accounting state of one instance. Pure: no I/O, no clock.
#[derive(Debug)]
pub struct Tracker {
    pricing: Arc<Pricing>,

    msgs: HashMap<u64, Msg>,
    msg_order: VecDeque<u64>,
    /// Price rows in use, each copied once from the table (so bounded by its size).
    prices: Vec<ModelPrice>,
    /// Sum over every message ever seen (including ones evicted from `msgs`).
    live: Usage,
    live_cost: Usd,

    /// What the last `result` set (or the live totals at that moment, if larger), and the
    /// live totals at that moment; lines after it add `live - live_at_base`.
    base: Usage,
    base_cost: Usd,
    live_at_base: Usage,
    live_cost_at_base: Usd,

    reported_tokens: u64,
    reported_cost: Usd,

    /// Message most recently started per `parent_tool_use_id` (hashed; `None` = main).
    current: VecDeque<(Option<u64>, u64)>,
    tool_ids: HashSet<u64>,
    tool_order: VecDeque<u64>,
    tool_uses: u64,

    init_model: Option<String>,
    msg_model: Option<String>,
    session_id: Option<String>,
    result: Option<ResultSummary>,
    malformed: u64,
    last_activity: Option<String>,
    warned_unknown_model: bool,
    warned_malformed: bool,
    /// `resetsAt` of the last `rejected` rate-limit notice: when a usage limit ends.
    limit_resets_at: Option<i64>,
}

impl Tracker {
    pub fn new(pricing: Arc<Pricing>) -> Tracker {
        Tracker {
            pricing,
            msgs: HashMap::new(),
            msg_order: VecDeque::new(),
            prices: Vec::new(),
            live: Usage::default(),
            live_cost: Usd::ZERO,
            base: Usage::default(),
            base_cost: Usd::ZERO,
            live_at_base: Usage::default(),
            live_cost_at_base: Usd::ZERO,
            reported_tokens: 0,
            reported_cost: Usd::ZERO,
            current: VecDeque::new(),
            tool_ids: HashSet::new(),
            tool_order: VecDeque::new(),
            tool_uses: 0,
            init_model: None,
            msg_model: None,
            session_id: None,
            result: None,
            malformed: 0,
            last_activity: None,
            warned_unknown_model: false,
            warned_malformed: false,
            limit_resets_at: None,
        }
    }

    /// Feeds one stdout line (without its newline).
    pub fn observe(&mut self, line: &[u8]) -> Observation {
        let mut obs = Observation::default();
        // Only lines with invalid UTF-8 ever fill this; it is dropped with the line.
        let mut scratch = String::new();
        match stream::parse_with(line, &mut scratch) {
            Ok(ev) => self.apply(ev, &mut obs),
            Err(e) => {
                self.malformed += 1;
                if !self.warned_malformed {
                    self.warned_malformed = true;
                    obs.warning = Some(format!("skipped a line that is not valid stream-json ({e}); further ones are only counted"));
                }
            }
        }
        let usage = self.usage();
        let total = usage.total().max(self.reported_tokens);
        obs.tokens_delta = total - self.reported_tokens;
        self.reported_tokens = total;
        let cost = self.effective_cost();
        obs.cost_delta = Usd(cost.0.saturating_sub(self.reported_cost.0));
        self.reported_cost = cost;
        if let Some(a) = &obs.activity {
            self.last_activity = Some(a.clone());
        }
        obs
    }

    /// Tokens per class: the live counts, or the last `result`'s when larger (plus
    /// anything counted after that result).
    pub fn usage(&self) -> Usage {
        let since = Usage {
            input_tokens: self.live.input_tokens - self.live_at_base.input_tokens,
            output_tokens: self.live.output_tokens - self.live_at_base.output_tokens,
            cache_creation_input_tokens: self.live.cache_creation_input_tokens
                - self.live_at_base.cache_creation_input_tokens,
            cache_read_input_tokens: self.live.cache_read_input_tokens
                - self.live_at_base.cache_read_input_tokens,
        };
        self.base + since
    }

    /// Dollars: the live estimate, or the last `result`'s `total_cost_usd` (plus the
    /// estimate for anything after it). Equals the sum of all `cost_delta`s.
    pub fn cost(&self) -> Usd {
        self.reported_cost
    }

    /// Equals the sum of all `tokens_delta`s.
    pub fn total_tokens(&self) -> u64 {
        self.reported_tokens
    }

    /// The session model from `system/init`, else the model of the latest message.
    pub fn model(&self) -> Option<&str> {
        self.init_model.as_deref().or(self.msg_model.as_deref())
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    pub fn result(&self) -> Option<&ResultSummary> {
        self.result.as_ref()
    }

    pub fn malformed_lines(&self) -> u64 {
        self.malformed
    }

    pub fn tool_uses(&self) -> u64 {
        self.tool_uses
    }

    pub fn last_activity(&self) -> Option<&str> {
        self.last_activity.as_deref()
    }

    fn effective_cost(&self) -> Usd {
        Usd(self
            .base_cost
            .0
            .saturating_add(self.live_cost.0 - self.live_cost_at_base.0))
    }

    fn apply(&mut self, ev: Event<'_>, obs: &mut Observation) {
        match ev {
            Event::Init { model, session_id } => {
                if let Some(m) = model {
                    self.init_model = Some(m.into_owned());
                }
                if let Some(s) = session_id {
                    self.session_id = Some(s.into_owned());
                }
            }
            Event::ApiRetry(r) => {
                let signal = Signal::Retry {
                    status: r.error_status.and_then(|s| u16::try_from(s).ok()),
                    attempt: r.attempt,
                    max: r.max_retries,
                    delay: Duration::from_millis(r.retry_delay_ms.unwrap_or(0)),
                    error: r.error,
                };
                obs.activity = signal.activity();
                obs.signal = Some(signal);
            }
            Event::RateLimit(r) => {
                let status = LimitStatus::parse(r.status.as_deref().unwrap_or(""));
                if status == LimitStatus::Rejected {
                    self.limit_resets_at = r.resets_at.or(self.limit_resets_at);
                }
                let signal = Signal::RateLimit {
                    status,
                    resets_at: r.resets_at,
                    kind: r.kind,
                };
                if let Some(a) = signal.activity() {
                    obs.activity = Some(a);
                }
                obs.signal = Some(signal);
            }
            Event::Assistant(a) => {
                if let Some(signal) = self.limit_signal(a.error.as_deref(), a.text.as_deref()) {
                    obs.activity = signal.activity();
                    obs.signal = Some(signal);
                }
                if let Some(id) = &a.id {
                    self.record(hash(id), a.model.as_deref(), a.usage.as_ref(), obs);
                }
                let msg_key = a.id.as_deref().unwrap_or("");
                for t in &a.tool_uses {
                    let key = match &t.id {
                        Some(id) => hash(id),
                        None => hash(&(msg_key, &t.name, &t.hint)),
                    };
                    if self.remember_tool(key) {
                        self.tool_uses += 1;
                        obs.activity = Some(match &t.hint {
                            Some(h) => format!("{}: {h}", t.name),
                            None => t.name.to_string(),
                        });
                    }
                }
            }
            Event::MessageStart(m) => {
                if let Some(id) = &m.id {
                    let key = hash(id);
                    self.record(key, m.model.as_deref(), m.usage.as_ref(), obs);
                    let parent = m.parent_tool_use_id.as_deref().map(hash);
                    self.current.retain(|(p, _)| *p != parent);
                    self.current.push_back((parent, key));
                    if self.current.len() > PARENT_WINDOW {
                        self.current.pop_front();
                    }
                }
            }
            Event::MessageDelta {
                usage,
                parent_tool_use_id,
            } => {
                let parent = parent_tool_use_id.as_deref().map(hash);
                if let Some(&(_, key)) = self.current.iter().rev().find(|(p, _)| *p == parent) {
                    // The message is known (message_start created it), so no model needed.
                    self.record(key, None, Some(&usage), obs);
                }
            }
            Event::Result(r) => {
                obs.result = true;
                let from_result = match (&r.model_usage, &r.usage) {
                    (Some(models), _) => Some(
                        models
                            .iter()
                            .filter(|(m, _)| m.as_ref() != SYNTHETIC_MODEL)
                            .fold(Usage::default(), |acc, (_, u)| acc + u.usage()),
                    ),
                    (None, Some(u)) => Some(u.usage()),
                    (None, None) => None,
                };
                let now = self.usage();
                self.base = match from_result {
                    Some(u) if u.total() > now.total() => u,
                    _ => now,
                };
                self.live_at_base = self.live;
                self.base_cost = match r.total_cost_usd {
                    Some(d) => Usd::from_dollars(d),
                    None => self.effective_cost(),
                };
                self.live_cost_at_base = self.live_cost;
                if let Some(s) = r.session_id {
                    self.session_id = Some(s.into_owned());
                }
                let subtype = r.subtype.map(|s| s.into_owned()).unwrap_or_default();
                let is_error = r.is_error.unwrap_or_else(|| subtype.starts_with("error"));
                if is_error && obs.signal.is_none() {
                    obs.signal = self.limit_signal(None, r.result.as_deref());
                }
                self.result = Some(ResultSummary {
                    subtype,
                    is_error,
                    text: r.result,
                    num_turns: r.num_turns,
                });
            }
            Event::Ignored => {}
        }
    }

    /// A usage limit or a spend cap, from an `assistant` line's `error` and text (or a
    /// failed result's text). A usage limit is Claude's `rate_limit` error whose text is
    /// not an API error (a 429 that ran out of retries reads `API Error: …`); its reset
    /// time comes from the last `rejected` rate-limit notice, never from the prose.
    fn limit_signal(&self, error: Option<&str>, text: Option<&str>) -> Option<Signal> {
        let text = text.unwrap_or("");
        if text.contains("enforced_spend_limit_reached")
            || error.is_some_and(|e| e.contains("spend_limit"))
        {
            return Some(Signal::SpendCap);
        }
        if error == Some("rate_limit") && !text.starts_with("API Error") {
            return Some(Signal::UsageLimit {
                resets_at: self.limit_resets_at,
            });
        }
        None
    }

    /// Raises message `key` to at least `usage`, field by field; creates it (priced by
    /// `model`) when new.
    fn record(
        &mut self,
        key: u64,
        model: Option<&str>,
        usage: Option<&RawUsage>,
        obs: &mut Observation,
    ) {
        let (u, h1) = match usage {
            Some(r) => (r.usage(), r.cache_write_1h()),
            None => (Usage::default(), 0),
        };
        if !self.msgs.contains_key(&key) {
            let price = self.price_for(model, obs);
            self.msgs.insert(
                key,
                Msg {
                    usage: Usage::default(),
                    cache_1h: 0,
                    price,
                },
            );
            self.msg_order.push_back(key);
            if self.msg_order.len() > MESSAGE_WINDOW {
                if let Some(old) = self.msg_order.pop_front() {
                    // Its tokens and cost stay in `live`; only its dedupe entry goes.
                    self.msgs.remove(&old);
                }
            }
        }
        let Some(msg) = self.msgs.get_mut(&key) else {
            return;
        };
        let Some(price) = self.prices.get(usize::from(msg.price)) else {
            return; // <synthetic>: free and uncounted.
        };
        let new_usage = msg.usage.max(&u);
        let new_1h = msg.cache_1h.max(h1);
        if new_usage == msg.usage && new_1h == msg.cache_1h {
            return;
        }
        let old_cost = cost_with(price, &msg.usage, msg.cache_1h);
        let new_cost = cost_with(price, &new_usage, new_1h);
        self.live += Usage {
            input_tokens: new_usage.input_tokens - msg.usage.input_tokens,
            output_tokens: new_usage.output_tokens - msg.usage.output_tokens,
            cache_creation_input_tokens: new_usage.cache_creation_input_tokens
                - msg.usage.cache_creation_input_tokens,
            cache_read_input_tokens: new_usage.cache_read_input_tokens
                - msg.usage.cache_read_input_tokens,
        };
        self.live_cost += Usd(new_cost.0 - old_cost.0);
        msg.usage = new_usage;
        msg.cache_1h = new_1h;
    }

    /// Price row for a new message; [`SYNTHETIC`] for `<synthetic>`.
    fn price_for(&mut self, model: Option<&str>, obs: &mut Observation) -> u16 {
        if model == Some(SYNTHETIC_MODEL) {
            return SYNTHETIC;
        }
        if let Some(m) = model {
            if self.msg_model.as_deref() != Some(m) {
                self.msg_model = Some(m.to_string());
            }
        }
        let name = model.or(self.model()).unwrap_or("").to_string();
        let (price, known) = self.pricing.price_or_worst(&name);
        let idx = match self.prices.iter().position(|p| p == price) {
            Some(i) => i,
            None => {
                self.prices.push(price.clone());
                self.prices.len() - 1
            }
        };
        if !known && !self.warned_unknown_model {
            self.warned_unknown_model = true;
            let shown = if name.is_empty() {
                "(none given)"
            } else {
                &name
            };
            obs.warning = Some(format!(
                "unknown model {shown}: priced as {} (the most expensive known model) until Claude reports the real cost",
                price.name
            ));
        }
        u16::try_from(idx).unwrap_or(SYNTHETIC)
    }

    /// True when the tool-use id is new.
    fn remember_tool(&mut self, key: u64) -> bool {
        if !self.tool_ids.insert(key) {
            return false;
        }
        self.tool_order.push_back(key);
        if self.tool_order.len() > TOOL_WINDOW {
            if let Some(old) = self.tool_order.pop_front() {
                self.tool_ids.remove(&old);
            }
        }
        true
    }
}

fn hash<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn tracker() -> Tracker {
        Tracker::new(Arc::new(Pricing::builtin()))
    }

    fn u(i: u64, o: u64, cw: u64, cr: u64) -> Value {
        json!({"input_tokens": i, "output_tokens": o,
               "cache_creation_input_tokens": cw, "cache_read_input_tokens": cr})
    }

    fn assistant(id: &str, model: &str, usage: Value, parent: Option<&str>) -> String {
        json!({"type": "assistant", "message": {"id": id, "type": "message", "role": "assistant",
               "model": model, "content": [{"type": "text", "text": "hi"}], "usage": usage},
               "parent_tool_use_id": parent, "session_id": "s"})
        .to_string()
    }

    fn tool(id: &str, tool_id: &str, name: &str, input: Value) -> String {
        json!({"type": "assistant", "message": {"id": id, "model": "claude-opus-4-8",
               "content": [{"type": "tool_use", "id": tool_id, "name": name, "input": input}],
               "usage": u(10, 1, 0, 0)}, "parent_tool_use_id": null})
        .to_string()
    }

    fn start(id: &str, usage: Value, parent: Option<&str>) -> String {
        json!({"type": "stream_event", "event": {"type": "message_start", "message":
               {"id": id, "model": "claude-opus-4-8", "content": [], "usage": usage}},
               "parent_tool_use_id": parent})
        .to_string()
    }

    fn delta(out: u64, parent: Option<&str>) -> String {
        json!({"type": "stream_event", "event": {"type": "message_delta",
               "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": out}},
               "parent_tool_use_id": parent})
        .to_string()
    }

    fn result(model_usage: Value, cost: f64) -> String {
        json!({"type": "result", "subtype": "success", "is_error": false, "num_turns": 2,
               "result": "done", "session_id": "s", "total_cost_usd": cost,
               "usage": u(1, 1, 0, 0), "modelUsage": model_usage})
        .to_string()
    }

    fn mu(i: u64, o: u64, cw: u64, cr: u64) -> Value {
        json!({"inputTokens": i, "outputTokens": o, "cacheCreationInputTokens": cw,
               "cacheReadInputTokens": cr, "costUSD": 0.0})
    }

    /// Feeds all lines, checking the delta invariants after each one.
    fn feed(t: &mut Tracker, lines: &[String]) -> Vec<Observation> {
        let (mut tok, mut cost) = (t.total_tokens(), t.cost());
        lines
            .iter()
            .map(|l| {
                let o = t.observe(l.as_bytes());
                tok += o.tokens_delta;
                cost += o.cost_delta;
                assert_eq!(tok, t.total_tokens());
                assert_eq!(cost, t.cost());
                assert_eq!(t.usage().total(), t.total_tokens());
                o
            })
            .collect()
    }

    #[test]
    fn same_id_keeps_the_fieldwise_maximum() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[
                assistant("m1", "claude-opus-4-8", u(100, 1, 0, 0), None),
                assistant("m1", "claude-opus-4-8", u(100, 5, 0, 50), None),
                assistant("m1", "claude-opus-4-8", u(90, 2, 0, 0), None),
            ],
        );
        assert_eq!(t.usage(), Usage::new(100, 5, 0, 50));
        assert_eq!(
            obs.iter().map(|o| o.tokens_delta).collect::<Vec<_>>(),
            vec![101, 54, 0]
        );
        // 100 × $5/M + 5 × $25/M + 50 × $0.50/M = 500 + 125 + 25 µ$.
        assert_eq!(t.cost(), Usd(650_000));
    }

    #[test]
    fn message_start_and_assistant_of_one_id_count_once() {
        let mut t = tracker();
        feed(
            &mut t,
            &[
                start("m1", u(1000, 1, 0, 0), None),
                assistant("m1", "claude-opus-4-8", u(1000, 1, 0, 0), None),
                delta(250, None),
                assistant("m1", "claude-opus-4-8", u(1000, 1, 0, 0), None),
                delta(250, None),
            ],
        );
        assert_eq!(t.usage(), Usage::new(1000, 250, 0, 0));
    }

    #[test]
    fn message_delta_goes_to_the_last_start_with_the_same_parent() {
        let mut t = tracker();
        feed(
            &mut t,
            &[
                start("main1", u(1000, 1, 0, 0), None),
                start("sub1", u(200, 1, 0, 0), Some("toolu_A")),
                delta(40, Some("toolu_A")),
                delta(300, None),
                // A non-streamed subagent message is counted like any other.
                assistant("sub2", "claude-opus-4-8", u(50, 7, 0, 0), Some("toolu_B")),
                start("sub3", u(10, 1, 0, 0), Some("toolu_A")),
                delta(5, Some("toolu_A")),
                delta(320, None),
                // Cumulative: a smaller later frame never lowers the count.
                delta(20, Some("toolu_A")),
            ],
        );
        // main1 1000/320, sub1 200/40, sub2 50/7, sub3 10/20.
        assert_eq!(t.usage(), Usage::new(1260, 387, 0, 0));
    }

    #[test]
    fn delta_without_a_started_message_is_ignored() {
        let mut t = tracker();
        feed(&mut t, &[delta(500, None), delta(9, Some("toolu_X"))]);
        assert_eq!(t.total_tokens(), 0);
        assert_eq!(t.malformed_lines(), 0);
    }

    #[test]
    fn the_last_result_wins_and_replaces_the_live_numbers() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[
                assistant("m1", "claude-opus-4-8", u(1000, 1, 0, 0), None),
                result(json!({"claude-opus-4-8[1m]": mu(1000, 100, 0, 0)}), 0.01),
                assistant("m2", "claude-opus-4-8", u(1500, 1, 0, 0), None),
                result(
                    json!({"claude-opus-4-8[1m]": mu(2500, 300, 0, 0),
                           "claude-haiku-4-5": mu(100, 20, 0, 0)}),
                    0.03,
                ),
                result(
                    json!({"claude-opus-4-8[1m]": mu(2500, 300, 0, 0),
                           "claude-haiku-4-5": mu(100, 20, 0, 0)}),
                    0.03,
                ),
            ],
        );
        assert!(obs[1].result && obs[3].result && !obs[2].result);
        assert_eq!(t.usage(), Usage::new(2600, 320, 0, 0));
        assert_eq!(t.cost(), Usd::from_dollars(0.03));
        assert_eq!(obs[4].tokens_delta, 0);
        assert_eq!(obs[4].cost_delta, Usd::ZERO);
        let r = t.result().expect("result");
        assert_eq!(
            (r.subtype.as_str(), r.is_error, r.num_turns),
            ("success", false, Some(2))
        );
        assert_eq!(r.text.as_deref(), Some("done"));
    }

    #[test]
    fn result_smaller_than_live_keeps_live_tokens_but_takes_its_cost() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[
                assistant("m1", "claude-opus-4-8", u(10_000, 500, 0, 0), None),
                // Its usage field is ignored in favour of modelUsage, even when larger.
                json!({"type": "result", "subtype": "error_during_execution", "total_cost_usd": 0.001,
                       "usage": u(99_999, 0, 0, 0),
                       "modelUsage": {"claude-opus-4-8": mu(9_000, 400, 0, 0)}})
                .to_string(),
            ],
        );
        assert_eq!(t.usage(), Usage::new(10_000, 500, 0, 0));
        // Live estimate 10k × $5/M + 500 × $25/M = $0.0625, replaced by $0.001.
        assert_eq!(obs[0].cost_delta, Usd::from_dollars(0.0625));
        assert_eq!(obs[1].cost_delta, Usd(1_000_000 - 62_500_000));
        assert_eq!(t.cost(), Usd::from_dollars(0.001));
        let r = t.result().expect("result");
        assert!(
            r.is_error,
            "error_ subtypes are errors when is_error is absent"
        );
    }

    #[test]
    fn lines_after_a_result_add_on_top_of_it() {
        let mut t = tracker();
        feed(
            &mut t,
            &[
                assistant("m1", "claude-opus-4-8", u(1000, 1, 0, 0), None),
                result(json!({"claude-opus-4-8": mu(1000, 99, 0, 0)}), 0.0075),
                assistant("m2", "claude-opus-4-8", u(2000, 1, 0, 0), None),
            ],
        );
        assert_eq!(t.usage(), Usage::new(3000, 100, 0, 0));
        // $0.0075 + 2000 × $5/M + 1 × $25/M.
        assert_eq!(t.cost(), Usd::from_dollars(0.0075 + 0.010_025));
    }

    #[test]
    fn keys_in_any_order() {
        let mut t = tracker();
        feed(
            &mut t,
            &[
                r#"{"session_id":"s","message":{"usage":{"output_tokens":3,"input_tokens":10},"model":"claude-opus-4-8","id":"m1"},"type":"assistant"}"#.to_string(),
                r#"{"modelUsage":{"claude-opus-4-8":{"outputTokens":30,"inputTokens":10}},"total_cost_usd":0.5,"subtype":"success","type":"result"}"#.to_string(),
            ],
        );
        assert_eq!(t.usage(), Usage::new(10, 30, 0, 0));
        assert_eq!(t.cost(), Usd::from_dollars(0.5));
        assert_eq!(t.malformed_lines(), 0);
    }

    #[test]
    fn a_truncated_line_is_counted_warned_once_and_skipped() {
        let mut t = tracker();
        let full = assistant("m1", "claude-opus-4-8", u(100, 1, 0, 0), None);
        let cut = &full[..full.len() / 2];
        let o1 = t.observe(cut.as_bytes());
        let o2 = t.observe(b"{\"type\":\"user\",\"message\":{\"content\":\"abc");
        let o3 = t.observe(b"not json at all");
        assert_eq!(t.malformed_lines(), 3);
        assert!(o1.warning.is_some());
        assert!(o2.warning.is_none() && o3.warning.is_none());
        assert_eq!(t.total_tokens(), 0);
        t.observe(full.as_bytes());
        assert_eq!(t.total_tokens(), 101);
    }

    #[test]
    fn invalid_utf8_inside_a_string_keeps_the_usage() {
        let mut t = tracker();
        let mut line = assistant("m1", "claude-opus-4-8", u(100, 1, 0, 0), None).into_bytes();
        let at = line.windows(2).position(|w| w == b"hi").expect("text");
        line[at] = 0xff;
        line[at + 1] = 0xfe;
        let o = t.observe(&line);
        assert_eq!(t.malformed_lines(), 0);
        assert_eq!(o.tokens_delta, 101);
    }

    #[test]
    fn unknown_event_types_are_ignored_silently() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[
                r#"{"type":"telemetry_v9","usage":{"input_tokens":5000}}"#.to_string(),
                r#"{"type":"system","subtype":"hook_started","hook_name":"x"}"#.to_string(),
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}}"#.to_string(),
                String::new(),
            ],
        );
        assert_eq!(t.total_tokens(), 0);
        assert_eq!(t.malformed_lines(), 0);
        assert!(obs
            .iter()
            .all(|o| o.warning.is_none() && o.activity.is_none()));
    }

    #[test]
    fn synthetic_messages_cost_nothing_and_count_nothing() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[assistant("s1", "<synthetic>", u(500, 20, 0, 0), None)],
        );
        assert_eq!(t.total_tokens(), 0);
        assert_eq!(t.cost(), Usd::ZERO);
        assert!(
            obs[0].warning.is_none(),
            "synthetic is not an unknown model"
        );
    }

    #[test]
    fn unknown_model_is_warned_once_and_priced_as_the_worst() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[
                assistant("m1", "claude-nova-9", u(1_000_000, 0, 0, 0), None),
                assistant("m2", "claude-nova-9", u(0, 1_000_000, 0, 0), None),
            ],
        );
        let w = obs[0].warning.as_deref().expect("warning");
        assert!(
            w.contains("claude-nova-9") && w.contains("claude-opus-4"),
            "{w}"
        );
        assert!(obs[1].warning.is_none());
        // Opus 4/4.1: $15 + $75.
        assert_eq!(t.cost(), Usd::from_dollars(90.0));
    }

    #[test]
    fn one_hour_cache_writes_are_priced_at_the_one_hour_rate() {
        let mut t = tracker();
        let usage = json!({"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 1000,
            "cache_creation": {"ephemeral_1h_input_tokens": 600, "ephemeral_5m_input_tokens": 400}});
        feed(&mut t, &[assistant("m1", "claude-opus-4-8", usage, None)]);
        // 400 × $6.25/M + 600 × $10/M.
        assert_eq!(t.cost(), Usd(8_500_000));
        assert_eq!(t.usage(), Usage::new(0, 0, 1000, 0));
    }

    #[test]
    fn activity_reports_tools_retries_and_rate_limits() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[
                tool("m1", "toolu_1", "Bash", json!({"command": "cargo   test\n --all", "description": "run tests"})),
                tool("m1", "toolu_1", "Bash", json!({"command": "cargo test"})),
                tool("m2", "toolu_2", "Read", json!({"file_path": "/src/lib.rs"})),
                r#"{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":1200,"error_status":529,"error":"overloaded"}"#.to_string(),
                r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","rateLimitType":"five_hour"}}"#.to_string(),
                r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","rateLimitType":"five_hour","resetsAt":1784283600}}"#.to_string(),
            ],
        );
        let acts: Vec<_> = obs.iter().map(|o| o.activity.as_deref()).collect();
        assert_eq!(acts[0], Some("Bash: cargo test --all"));
        assert_eq!(acts[1], None, "a replayed tool use is not new activity");
        assert_eq!(acts[2], Some("Read: /src/lib.rs"));
        assert_eq!(acts[3], Some("api_retry 2/10 (529)"));
        assert_eq!(acts[4], None, "an allowed notice is not news");
        assert!(acts[5].is_some_and(|a| a.starts_with("rate limit rejected (five_hour)")));
        assert_eq!(t.tool_uses(), 2);
        assert_eq!(t.last_activity(), acts[5]);
    }

    #[test]
    fn init_sets_model_and_session() {
        let mut t = tracker();
        t.observe(br#"{"type":"system","subtype":"init","model":"claude-opus-4-8[1m]","session_id":"abc","tools":["Bash"]}"#);
        assert_eq!(t.model(), Some("claude-opus-4-8[1m]"));
        assert_eq!(t.session_id(), Some("abc"));
    }

    #[test]
    fn the_dedupe_window_is_bounded_and_totals_stay_exact() {
        let mut t = tracker();
        let n = MESSAGE_WINDOW as u64 * 3;
        let mut lines = Vec::new();
        for i in 0..n {
            lines.push(start(&format!("m{i}"), u(10, 1, 0, 0), None));
            lines.push(assistant(
                &format!("m{i}"),
                "claude-opus-4-8",
                u(10, 1, 0, 0),
                None,
            ));
            lines.push(delta(5, None));
        }
        feed(&mut t, &lines);
        assert_eq!(t.usage(), Usage::new(10 * n, 5 * n, 0, 0));
        assert!(t.msgs.len() <= MESSAGE_WINDOW && t.msg_order.len() <= MESSAGE_WINDOW);
    }

    #[test]
    fn result_text_is_capped() {
        let mut t = tracker();
        let big = "é".repeat(RESULT_TEXT_MAX);
        t.observe(
            json!({"type": "result", "subtype": "success", "result": big})
                .to_string()
                .as_bytes(),
        );
        let text = t.result().and_then(|r| r.text.as_deref()).expect("text");
        assert!(text.len() <= RESULT_TEXT_MAX && text.len() > RESULT_TEXT_MAX - 4);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn line() -> impl Strategy<Value = String> {
            let id = prop::sample::select(vec!["a", "b", "c", "d", "e"]);
            let parent = prop::option::of(prop::sample::select(vec!["toolu_1", "toolu_2"]));
            let model = prop::sample::select(vec![
                "claude-opus-4-8",
                "claude-haiku-4-5",
                "mystery",
                "<synthetic>",
            ]);
            let n = || 0u64..5000;
            prop_oneof![
                (id.clone(), model, n(), n(), n(), n(), parent.clone())
                    .prop_map(|(id, m, a, b, c, d, p)| assistant(id, m, u(a, b, c, d), p)),
                (id, n(), n(), parent.clone()).prop_map(|(id, a, b, p)| start(
                    id,
                    u(a, b, 0, 0),
                    p
                )),
                (n(), parent).prop_map(|(o, p)| delta(o, p)),
                (n(), n(), n(), n(), 0u32..100_000).prop_map(|(a, b, c, d, cents)| result(
                    json!({"claude-opus-4-8": mu(a, b, c, d)}),
                    f64::from(cents) / 1000.0
                )),
                Just(r#"{"type":"user","message":{"content":"x"}}"#.to_string()),
                Just(r#"{"type":"assistant","message":{"id":"#.to_string()),
            ]
        }

        proptest! {
            #[test]
            fn deltas_sum_to_totals_and_only_results_lower_cost(lines in prop::collection::vec(line(), 0..60)) {
                let mut t = tracker();
                let mut last_total = 0;
                for (l, o) in lines.iter().zip(feed(&mut t, &lines)) {
                    prop_assert!(t.total_tokens() >= last_total);
                    last_total = t.total_tokens();
                    if o.cost_delta < Usd::ZERO {
                        prop_assert!(l.contains("\"type\":\"result\""));
                    }
                }
            }

            #[test]
            fn replaying_every_line_twice_changes_nothing(lines in prop::collection::vec(line(), 0..60)) {
                let mut once = tracker();
                feed(&mut once, &lines);
                let twice_lines: Vec<String> = lines.iter().flat_map(|l| [l.clone(), l.clone()]).collect();
                let mut twice = tracker();
                feed(&mut twice, &twice_lines);
                prop_assert_eq!(once.usage(), twice.usage());
                prop_assert_eq!(once.total_tokens(), twice.total_tokens());
                prop_assert_eq!(once.cost(), twice.cost());
                prop_assert_eq!(once.tool_uses(), twice.tool_uses());
            }
        }
    }
}
