//! Per-instance token and dollar accounting from Claude Code's `stream-json` output.
//!
//! A [`Tracker`] is fed every stdout line of one instance and keeps SPEC §4's rules, as
//! Claude Code 2.1.197 itself counts (docs/real-claude-notes.md):
//!
//! - **Dedupe by message id.** One API response appears as several `assistant` events and
//!   a `message_start` stream event with the same `message.id`; per id the tracker keeps
//!   the field-wise maximum of the usage, so nothing is counted twice.
//! - **`message_delta`** carries the cumulative usage of the message most recently started
//!   (`message_start`) with the same `parent_tool_use_id`. Its output count raises that
//!   message's; an input, cache-write or cache-read count above 0 *replaces* the
//!   `message_start` one (Claude Code does the same), and later frames no longer raise it.
//! - **A failed streamed attempt is not counted.** When a stream fails after its
//!   `message_start`, Claude Code re-issues the call without streaming: the retry appears
//!   only as `assistant` events under a new id, and the failed attempt's `message_start`
//!   (and later a stray `message_delta`) stay in the stream. A started message that never
//!   got an `assistant` event and is followed, for the same parent, by another message is
//!   such an attempt: its usage is taken back out, and frames still attributed to it are
//!   ignored. Claude leaves it out of `modelUsage` and `total_cost_usd` too.
//! - **Subagents.** A subagent's messages appear as `assistant` events with its
//!   `parent_tool_use_id`, except its last one: that one's usage is in the Task tool's
//!   `user` event, `tool_use_result.usage` (model: `tool_use_result.resolvedModel`), and is
//!   counted from there.
//! - **`<synthetic>`** messages count no tokens and cost nothing. An `assistant` event
//!   without a `message.id` cannot be deduplicated and is not counted live (the `result`
//!   still covers it).
//! - **`result` is the authority, both ways.** Its `modelUsage` summed over models becomes
//!   the token total and per-class breakdown, even when smaller than what was counted live;
//!   its `total_cost_usd` replaces the live cost estimate. How far live counting was off is
//!   kept in [`ResultSummary::live_tokens_over`] / [`ResultSummary::live_cost_over`]. Results
//!   are running totals: a later `result` replaces an earlier one. Lines after a result add
//!   on top of it until the next result. (If a result has no `modelUsage`, its `usage` is
//!   used only if larger than the live count: it describes the last message only.)
//!
//! **Deltas.** Every [`Observation`] carries `tokens_delta` and `cost_delta` such that the
//! sum of all deltas equals [`Tracker::total_tokens`] and [`Tracker::cost`] at every moment.
//! Both are negative only when a count is corrected downward: a `result` smaller than the
//! live count, a failed attempt taken back, or a `message_delta` input count replacing a
//! larger `message_start` one.
//!
//! **Live cost** is each message's tokens at its own model's price ([`Pricing`]), times the
//! model's fast-mode factor when `usage.speed` is `"fast"`, plus $0.01 per
//! `server_tool_use.web_search_requests`, with 1-hour cache writes at the 1-hour rate. A model
//! the table does not know is priced at the table's `"unknown"` row (what Claude Code
//! charges), with one warning. On each `result`, every model's `costUSD` is checked against
//! the table; on a mismatch the shared [`Calibration`] scales that model's live estimate by
//! Claude's ratio for the rest of the run (one warning per model and run).
//!
//! **Memory is bounded.** The dedupe map keeps the [`MESSAGE_WINDOW`] most recently
//! started message ids (as 64-bit hashes); older messages stay in the totals but can no
//! longer be deduplicated, so an id that reappeared after that many newer messages would be
//! counted again (an over-count, never an under-count). Claude Code emits all events of one
//! message within one turn, far inside that window. Tool-use ids and `message_delta`
//! associations are bounded the same way.

use crate::core::pricing::{self, Calibration, ModelPrice, Pricing, Ratio};
use crate::core::signal::{LimitStatus, Signal};
use crate::core::stream::{self, Event, RawUsage};
use crate::core::usage::{Usage, Usd};
use memchr::memmem;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Message ids remembered for dedupe (see the module doc).
pub const MESSAGE_WINDOW: usize = 512;
/// Tool-use ids remembered so a replayed line does not count a tool twice.
const TOOL_WINDOW: usize = 512;
/// Distinct `parent_tool_use_id`s whose current message is remembered.
const PARENT_WINDOW: usize = 64;
/// Most distinct models priced per instance (beyond it, new models share the last row).
const MAX_ROWS: usize = 256;
/// The result text kept in [`ResultSummary`].
pub const RESULT_TEXT_MAX: usize = stream::RESULT_TEXT_MAX;

const SYNTHETIC_MODEL: &str = "<synthetic>";

/// What one line changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// Change of [`Tracker::total_tokens`]; negative only for a downward correction.
    pub tokens_delta: i64,
    pub cost_delta: Usd,
    /// New live detail for the report, e.g. `Bash: cargo test`, `api_retry 2/10 (529)`.
    pub activity: Option<String>,
    /// Something the user should know, given once per tracker (unknown model, first
    /// malformed line) or once per run and model (price table disagrees with Claude).
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
    /// Live tokens just before this result minus the result's: positive when live counting
    /// over-counted, negative when it under-counted.
    pub live_tokens_over: i64,
    /// Live dollars just before this result minus the result's `total_cost_usd`.
    pub live_cost_over: Usd,
}

/// Which kind of line a usage frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// `message_start`, `assistant`, or a subagent's `tool_use_result`: field-wise maximum.
    Snapshot,
    /// `message_delta`: counts above 0 replace input and cache counts.
    Delta,
}

const LOCK_INPUT: u8 = 1;
const LOCK_CACHE_WRITE: u8 = 2;
const LOCK_CACHE_READ: u8 = 4;
const LOCK_1H: u8 = 8;

/// One deduplicated API message.
#[derive(Debug, Clone, Copy)]
struct Msg {
    usage: Usage,
    cache_1h: u64,
    web_search: u64,
    fast: bool,
    /// `LOCK_*` fields set by a `message_delta`.
    locked: u8,
    /// Index into `Tracker::rows`, or [`SYNTHETIC`] for free, uncounted messages.
    row: u16,
    /// Cost counted for it (calibrated).
    cost: Usd,
    /// Cost at the table's price (uncalibrated).
    table_cost: Usd,
    /// An `assistant` event with its id was seen.
    assistant_seen: bool,
    /// A failed attempt, taken back: counts nothing.
    dead: bool,
    /// Number of results seen when it was first counted.
    epoch: u32,
}

const SYNTHETIC: u16 = u16::MAX;

/// Live totals of one model within one instance.
#[derive(Debug, Clone)]
struct Row {
    /// Normalised model name the row prices.
    key: String,
    price: ModelPrice,
    usage: Usage,
    table_cost: Usd,
    fast_seen: bool,
}

/// Accounting state of one instance. Pure: no I/O, no clock.
#[derive(Debug)]
pub struct Tracker {
    pricing: Arc<Pricing>,
    calibration: Calibration,

    msgs: HashMap<u64, Msg, KeyHash>,
    msg_order: VecDeque<u64>,
    rows: Vec<Row>,
    /// Sum over every message ever seen (including ones evicted from `msgs`).
    live: Usage,
    live_cost: Usd,

    /// What the last `result` set, and the live totals at that moment; lines after it add
    /// `live - live_at_base`.
    base: Usage,
    base_cost: Usd,
    live_at_base: Usage,
    live_cost_at_base: Usd,
    results_seen: u32,

    reported_tokens: u64,
    reported_cost: Usd,

    /// Message most recently started per `parent_tool_use_id` (hashed; `None` = main).
    current: VecDeque<(Option<u64>, u64)>,
    tool_ids: HashSet<u64, KeyHash>,
    tool_order: VecDeque<u64>,
    tool_uses: u64,

    init_model: Option<String>,
    msg_model: Option<String>,
    session_id: Option<String>,
    result: Option<ResultSummary>,
    malformed: u64,
    warned_unknown_model: bool,
    warned_malformed: bool,
    /// The last model name `row_for` priced, and its row.
    last_row: Option<(String, u16)>,
    /// `resetsAt` of the last `rejected` rate-limit notice: when a usage limit ends.
    limit_resets_at: Option<i64>,
}

impl Tracker {
    /// A tracker with its own (unshared) calibration.
    pub fn new(pricing: Arc<Pricing>) -> Tracker {
        Tracker::with_calibration(pricing, Calibration::new())
    }

    /// A tracker sharing `calibration` with the other trackers of the run.
    pub fn with_calibration(pricing: Arc<Pricing>, calibration: Calibration) -> Tracker {
        Tracker {
            pricing,
            calibration,
            msgs: HashMap::default(),
            msg_order: VecDeque::new(),
            rows: Vec::new(),
            live: Usage::default(),
            live_cost: Usd::ZERO,
            base: Usage::default(),
            base_cost: Usd::ZERO,
            live_at_base: Usage::default(),
            live_cost_at_base: Usd::ZERO,
            results_seen: 0,
            reported_tokens: 0,
            reported_cost: Usd::ZERO,
            current: VecDeque::new(),
            tool_ids: HashSet::default(),
            tool_order: VecDeque::new(),
            tool_uses: 0,
            init_model: None,
            msg_model: None,
            session_id: None,
            result: None,
            malformed: 0,
            warned_unknown_model: false,
            warned_malformed: false,
            last_row: None,
            limit_resets_at: None,
        }
    }

    /// Feeds one stdout line (without its newline).
    pub fn observe(&mut self, line: &[u8]) -> Observation {
        let mut obs = Observation::default();
        // Only lines with invalid UTF-8 ever fill this; it is dropped with the line.
        let mut scratch = String::new();
        let mut ev = Event::Ignored;
        match stream::parse_into(line, &mut scratch, &mut ev) {
            Ok(()) => self.apply(ev, &mut obs),
            Err(e) => {
                self.malformed += 1;
                if !self.warned_malformed {
                    self.warned_malformed = true;
                    obs.warning = Some(format!("skipped a line that is not valid stream-json ({e}); further ones are only counted"));
                }
            }
        }
        let total = self.usage().total();
        obs.tokens_delta = signed(total) - signed(self.reported_tokens);
        self.reported_tokens = total;
        let cost = self.effective_cost();
        obs.cost_delta = Usd(cost.0.saturating_sub(self.reported_cost.0));
        self.reported_cost = cost;
        obs
    }

    /// Tokens per class: the last `result`'s (plus anything counted after it), or the live
    /// counts before any result.
    pub fn usage(&self) -> Usage {
        let since = Usage {
            input_tokens: self
                .live
                .input_tokens
                .saturating_sub(self.live_at_base.input_tokens),
            output_tokens: self
                .live
                .output_tokens
                .saturating_sub(self.live_at_base.output_tokens),
            cache_creation_input_tokens: self
                .live
                .cache_creation_input_tokens
                .saturating_sub(self.live_at_base.cache_creation_input_tokens),
            cache_read_input_tokens: self
                .live
                .cache_read_input_tokens
                .saturating_sub(self.live_at_base.cache_read_input_tokens),
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

    fn effective_cost(&self) -> Usd {
        let since = self.live_cost.0.saturating_sub(self.live_cost_at_base.0);
        Usd(self.base_cost.0.saturating_add(since).max(0))
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
                    let key = hash(id);
                    let parent = a.parent_tool_use_id.as_deref().map(hash);
                    if !self.msgs.contains_key(&key) {
                        self.supersede(parent, key);
                    }
                    self.record(
                        key,
                        a.model.as_deref(),
                        a.usage.as_ref(),
                        Frame::Snapshot,
                        obs,
                    );
                    if let Some(m) = self.msgs.get_mut(&key) {
                        m.assistant_seen = true;
                    }
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
                            Some(h) => [&t.name, ": ", h.as_str()].concat(),
                            None => t.name.to_string(),
                        });
                    }
                }
            }
            Event::MessageStart(m) => {
                if let Some(id) = &m.id {
                    let key = hash(id);
                    let parent = m.parent_tool_use_id.as_deref().map(hash);
                    self.record(
                        key,
                        m.model.as_deref(),
                        m.usage.as_ref(),
                        Frame::Snapshot,
                        obs,
                    );
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
                    self.record(key, None, Some(&usage), Frame::Delta, obs);
                }
            }
            Event::SubagentResult(s) => {
                let key = match &s.key {
                    Some(k) => hash(&("subagent-last-message", k.as_ref())),
                    None => hash(&("subagent-last-message", format!("{:?}", s.usage))),
                };
                let model = s.model.as_deref().map(str::to_string);
                self.record(key, model.as_deref(), Some(&s.usage), Frame::Snapshot, obs);
            }
            Event::Result(r) => self.on_result(r, obs),
            Event::Ignored => {}
        }
    }

    fn on_result(&mut self, r: stream::ResultEvent<'_>, obs: &mut Observation) {
        obs.result = true;
        let before_tokens = self.usage().total();
        let before_cost = self.effective_cost();
        let from_result = match (&r.model_usage, &r.usage) {
            (Some(models), _) => Some(
                models
                    .iter()
                    .filter(|(m, _)| m.as_ref() != SYNTHETIC_MODEL)
                    .fold(Usage::default(), |acc, (_, u)| acc + u.usage()),
            ),
            // `usage` alone describes the last message only: a floor, never a replacement.
            (None, Some(u)) if u.usage().total() > self.usage().total() => Some(u.usage()),
            (None, _) => None,
        };
        if let Some(u) = from_result {
            self.base = u;
        } else {
            self.base = self.usage();
        }
        self.live_at_base = self.live;
        self.base_cost = match r.total_cost_usd {
            Some(d) => Usd::from_dollars(d),
            None => self.effective_cost(),
        };
        self.live_cost_at_base = self.live_cost;
        self.results_seen = self.results_seen.saturating_add(1);
        if let Some(models) = &r.model_usage {
            let mut warnings = Vec::new();
            for (name, mu) in models {
                if name.as_ref() == SYNTHETIC_MODEL {
                    continue;
                }
                if let Some(w) = self.check_price(name, mu) {
                    warnings.push(w);
                }
            }
            if !warnings.is_empty() {
                obs.warning = Some(warnings.join("; "));
            }
        }
        if let Some(s) = r.session_id {
            self.session_id = Some(s.into_owned());
        }
        let subtype = r.subtype.map(|s| s.into_owned()).unwrap_or_default();
        let is_error = r.is_error.unwrap_or_else(|| subtype.starts_with("error"));
        if is_error && obs.signal.is_none() {
            obs.signal = self.limit_signal(None, r.result.as_deref());
        }
        let after_tokens = self.usage().total();
        let after_cost = self.effective_cost();
        self.result = Some(ResultSummary {
            subtype,
            is_error,
            text: r.result,
            num_turns: r.num_turns,
            live_tokens_over: signed(before_tokens) - signed(after_tokens),
            live_cost_over: Usd(before_cost.0.saturating_sub(after_cost.0)),
        });
    }

    /// Compares Claude's `costUSD` for one model with the table; on a mismatch sets the
    /// run's calibration for that model and returns the warning (first time per run only).
    fn check_price(&mut self, name: &str, mu: &stream::ModelUsage) -> Option<String> {
        let claude = Usd::from_dollars(mu.cost_usd?);
        let usage = mu.usage();
        if usage.total() == 0 || claude.0 <= 0 {
            return None;
        }
        let key = pricing::normalize(name);
        let row = self.rows.iter().find(|r| r.key == key);
        let (price, _) = self.pricing.price_live(name);
        let searches = mu.web_search_requests.unwrap_or(0);
        let fast_seen = row.is_some_and(|r| r.fast_seen);
        let range = pricing::expected_range(&self.pricing, price, &usage, searches, fast_seen);
        if pricing::agrees(claude, range) {
            return None;
        }
        // The exact table price of these tokens when live counting saw all of them (it knows
        // the 1-hour writes and fast messages); else the range's low end.
        let table = match row {
            Some(r) if r.usage == usage && r.table_cost.0 > 0 => r.table_cost,
            _ => range.0,
        };
        if table.0 <= 0 {
            return None;
        }
        let ratio = Ratio {
            claude: claude.0,
            table: table.0,
        };
        let first = self.calibration.set(&key, ratio);
        first.then(|| {
            format!(
                "price table disagrees with Claude for {name}: Claude charged {claude} where the table gives {table} for the same tokens; live estimates for {key} are scaled by {:.4} for the rest of the run (pass a corrected table with --pricing FILE)",
                ratio.as_f64()
            )
        })
    }

    /// A new message `key` for `parent`: if the message last started for that parent never
    /// got an `assistant` event, it was a failed streamed attempt that Claude re-issued.
    fn supersede(&mut self, parent: Option<u64>, key: u64) {
        let Some(&(_, cur)) = self.current.iter().rev().find(|(p, _)| *p == parent) else {
            return;
        };
        if cur == key {
            return;
        }
        let Some(m) = self.msgs.get(&cur).copied() else {
            return;
        };
        if m.assistant_seen || m.dead {
            return;
        }
        let zero = Msg {
            usage: Usage::default(),
            cache_1h: 0,
            web_search: 0,
            fast: false,
            cost: Usd::ZERO,
            table_cost: Usd::ZERO,
            dead: true,
            ..m
        };
        self.replace(&m, &zero);
        self.msgs.insert(cur, zero);
    }

    /// A usage limit or a spend cap, from an `assistant` line's `error` and text (or a
    /// failed result's text). A usage limit is Claude's `rate_limit` error whose text is
    /// not an API error (a 429 that ran out of retries reads `API Error: …`); its reset
    /// time comes from the last `rejected` rate-limit notice, never from the prose.
    fn limit_signal(&self, error: Option<&str>, text: Option<&str>) -> Option<Signal> {
        let text = text.unwrap_or("");
        // Most lines have a short text or none: the finder is built once.
        static SPEND_CAP: LazyLock<memmem::Finder<'static>> =
            LazyLock::new(|| memmem::Finder::new("enforced_spend_limit_reached"));
        if SPEND_CAP.find(text.as_bytes()).is_some()
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

    /// Applies one frame of message `key`; creates it (priced by `model`) when new.
    fn record(
        &mut self,
        key: u64,
        model: Option<&str>,
        usage: Option<&RawUsage>,
        frame: Frame,
        obs: &mut Observation,
    ) {
        let raw = usage.copied().unwrap_or_default();
        if !self.msgs.contains_key(&key) {
            let row = self.row_for(model, obs);
            self.msgs.insert(
                key,
                Msg {
                    usage: Usage::default(),
                    cache_1h: 0,
                    web_search: 0,
                    fast: false,
                    locked: 0,
                    row,
                    cost: Usd::ZERO,
                    table_cost: Usd::ZERO,
                    assistant_seen: false,
                    dead: false,
                    epoch: self.results_seen,
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
        let Some(&old) = self.msgs.get(&key) else {
            return;
        };
        if old.dead || old.row == SYNTHETIC {
            return; // a failed attempt, or <synthetic>: free and uncounted.
        }
        let mut new = old;
        let u = raw.usage();
        let field = |lock: u8, cur: u64, v: u64, locked: &mut u8| -> u64 {
            match frame {
                Frame::Delta if v > 0 => {
                    *locked |= lock;
                    v
                }
                Frame::Delta => cur,
                Frame::Snapshot if old.locked & lock != 0 => cur,
                Frame::Snapshot => cur.max(v),
            }
        };
        let mut locked = old.locked;
        new.usage.input_tokens = field(
            LOCK_INPUT,
            old.usage.input_tokens,
            u.input_tokens,
            &mut locked,
        );
        new.usage.cache_creation_input_tokens = field(
            LOCK_CACHE_WRITE,
            old.usage.cache_creation_input_tokens,
            u.cache_creation_input_tokens,
            &mut locked,
        );
        new.usage.cache_read_input_tokens = field(
            LOCK_CACHE_READ,
            old.usage.cache_read_input_tokens,
            u.cache_read_input_tokens,
            &mut locked,
        );
        new.cache_1h = field(LOCK_1H, old.cache_1h, raw.cache_write_1h(), &mut locked);
        new.locked = locked;
        new.usage.output_tokens = old.usage.output_tokens.max(u.output_tokens);
        new.web_search = old.web_search.max(raw.web_search_requests());
        new.fast = old.fast || raw.is_fast();
        if new.usage == old.usage
            && new.cache_1h == old.cache_1h
            && new.web_search == old.web_search
            && new.fast == old.fast
        {
            self.msgs.insert(key, new);
            return;
        }
        let Some(row) = self.rows.get(usize::from(new.row)) else {
            return;
        };
        new.table_cost = self.pricing.message_cost(
            &row.price,
            &new.usage,
            new.cache_1h,
            new.web_search,
            new.fast,
        );
        new.cost = match self.calibration.ratio_of_key(&row.key) {
            Some(r) => r.apply(new.table_cost),
            None => new.table_cost,
        };
        self.replace(&old, &new);
        self.msgs.insert(key, new);
    }

    /// Moves the live totals (and the message's model row) from `old` to `new`. A
    /// message from before the last `result` is covered by that result, which is the
    /// authority for it: the base moves with it, so what counts since the result stays.
    fn replace(&mut self, old: &Msg, new: &Msg) {
        let moved = |total: Usd, old: Usd, new: Usd| {
            Usd(total.0.saturating_sub(old.0).saturating_add(new.0))
        };
        self.live = add_usage(&sub_usage(&self.live, &old.usage), &new.usage);
        self.live_cost = moved(self.live_cost, old.cost, new.cost);
        if old.epoch < self.results_seen {
            self.live_at_base = add_usage(&sub_usage(&self.live_at_base, &old.usage), &new.usage);
            self.live_cost_at_base = moved(self.live_cost_at_base, old.cost, new.cost);
        }
        if let Some(row) = self.rows.get_mut(usize::from(old.row)) {
            row.usage = add_usage(&sub_usage(&row.usage, &old.usage), &new.usage);
            row.table_cost = moved(row.table_cost, old.table_cost, new.table_cost);
            row.fast_seen |= new.fast;
        }
    }

    /// Price row for a new message; [`SYNTHETIC`] for `<synthetic>`.
    fn row_for(&mut self, model: Option<&str>, obs: &mut Observation) -> u16 {
        if model == Some(SYNTHETIC_MODEL) {
            return SYNTHETIC;
        }
        if let Some(m) = model {
            if self.msg_model.as_deref() != Some(m) {
                self.msg_model = Some(m.to_string());
            }
        }
        let name = model.or(self.model()).unwrap_or("");
        // Nearly every message names the model the last one did: skip normalising it.
        if let Some((last, row)) = &self.last_row {
            if last == name {
                return *row;
            }
        }
        let name = name.to_string();
        let row = self.new_row_for(name.clone(), obs);
        self.last_row = Some((name, row));
        row
    }

    /// [`Self::row_for`] without the cache: the row that prices `name`, added if new.
    /// The answer for a name never changes (rows are only ever added, up to
    /// [`MAX_ROWS`]), which is what lets `row_for` remember the last one.
    fn new_row_for(&mut self, name: String, obs: &mut Observation) -> u16 {
        let key = pricing::normalize(&name);
        if let Some(i) = self.rows.iter().position(|r| r.key == key) {
            return u16::try_from(i).unwrap_or(SYNTHETIC);
        }
        let (price, known) = self.pricing.price_live(&name);
        if !known && !self.warned_unknown_model {
            self.warned_unknown_model = true;
            let shown = if name.is_empty() {
                "(none given)"
            } else {
                &name
            };
            obs.warning = Some(format!(
                "unknown model {shown}: priced at ${} in / ${} out per million tokens (what Claude Code charges for a model it does not know) until Claude reports the real cost",
                price.input as f64 / 1e6,
                price.output as f64 / 1e6,
            ));
        }
        if self.rows.len() >= MAX_ROWS {
            return u16::try_from(self.rows.len() - 1).unwrap_or(SYNTHETIC);
        }
        self.rows.push(Row {
            key,
            price: price.clone(),
            usage: Usage::default(),
            table_cost: Usd::ZERO,
            fast_seen: false,
        });
        u16::try_from(self.rows.len() - 1).unwrap_or(SYNTHETIC)
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

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn sub_usage(a: &Usage, b: &Usage) -> Usage {
    Usage {
        input_tokens: a.input_tokens.saturating_sub(b.input_tokens),
        output_tokens: a.output_tokens.saturating_sub(b.output_tokens),
        cache_creation_input_tokens: a
            .cache_creation_input_tokens
            .saturating_sub(b.cache_creation_input_tokens),
        cache_read_input_tokens: a
            .cache_read_input_tokens
            .saturating_sub(b.cache_read_input_tokens),
    }
}

fn add_usage(a: &Usage, b: &Usage) -> Usage {
    *a + *b
}

/// The maps are keyed by [`hash`]es already: hashing them again (SipHash, per lookup)
/// only cost time on every usage line.
type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; anything else still spreads.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
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
    use crate::core::pricing::Calibration;
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

    #[test]
    fn a_late_frame_of_a_message_the_result_covers_changes_nothing() {
        let mut t = tracker();
        let late = json!({"type": "stream_event", "event": {"type": "message_delta",
               "usage": {"input_tokens": 50, "output_tokens": 10}}, "parent_tool_use_id": null})
        .to_string();
        feed(
            &mut t,
            &[
                start("m1", u(100, 1, 0, 0), None),
                result(json!({"claude-opus-4-8": mu(100, 1, 0, 0)}), 0.000525),
                late,
            ],
        );
        assert_eq!(t.usage(), Usage::new(100, 1, 0, 0));
        assert_eq!(t.cost(), Usd::from_dollars(0.000525));
    }

    #[test]
    fn huge_token_counts_saturate_instead_of_wrapping() {
        let mut t = tracker();
        // Each message alone costs more nanodollars than an i64 holds.
        let max = 2_000_000_000_000_000;
        feed(
            &mut t,
            &[
                assistant("a", "claude-opus-4-8", u(max, 0, 0, 0), None),
                assistant("b", "claude-opus-4-8", u(max, 0, 0, 0), None),
            ],
        );
        assert!(t.cost() > Usd::ZERO, "{:?}", t.cost());
    }

    /// Feeds all lines, checking the delta invariants after each one.
    fn feed(t: &mut Tracker, lines: &[String]) -> Vec<Observation> {
        let (mut tok, mut cost) = (t.total_tokens() as i64, t.cost());
        lines
            .iter()
            .map(|l| {
                let o = t.observe(l.as_bytes());
                tok += o.tokens_delta;
                cost += o.cost_delta;
                assert_eq!(tok, t.total_tokens() as i64);
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
    fn result_smaller_than_live_replaces_tokens_and_cost_and_says_by_how_much() {
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
        assert_eq!(t.usage(), Usage::new(9_000, 400, 0, 0));
        assert_eq!(obs[1].tokens_delta, -1100);
        // Live estimate 10k × $5/M + 500 × $25/M = $0.0625, replaced by $0.001.
        assert_eq!(obs[0].cost_delta, Usd::from_dollars(0.0625));
        assert_eq!(obs[1].cost_delta, Usd(1_000_000 - 62_500_000));
        assert_eq!(t.cost(), Usd::from_dollars(0.001));
        let r = t.result().expect("result");
        assert_eq!(r.live_tokens_over, 1100);
        assert_eq!(r.live_cost_over, Usd(62_500_000 - 1_000_000));
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
    fn unknown_model_is_warned_once_and_priced_as_claude_prices_it() {
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
            w.contains("claude-nova-9") && w.contains("$5 in / $25 out"),
            "{w}"
        );
        assert!(obs[1].warning.is_none());
        // Claude Code's price for models it does not know: $5 + $25.
        assert_eq!(t.cost(), Usd::from_dollars(30.0));
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

    fn start_model(id: &str, model: &str, usage: Value) -> String {
        json!({"type": "stream_event", "event": {"type": "message_start", "message":
               {"id": id, "model": model, "content": [], "usage": usage}},
               "parent_tool_use_id": null})
        .to_string()
    }

    fn delta_usage(usage: Value) -> String {
        json!({"type": "stream_event", "event": {"type": "message_delta",
               "delta": {"stop_reason": "end_turn"}, "usage": usage},
               "parent_tool_use_id": null})
        .to_string()
    }

    fn mu_cost(i: u64, o: u64, cw: u64, cr: u64, cost: f64) -> Value {
        json!({"inputTokens": i, "outputTokens": o, "cacheCreationInputTokens": cw,
               "cacheReadInputTokens": cr, "webSearchRequests": 0, "costUSD": cost})
    }

    #[test]
    fn a_failed_streamed_attempt_is_taken_back_when_the_retry_shows() {
        let mut t = tracker();
        let m = "claude-sonnet-5";
        let obs = feed(
            &mut t,
            &[
                start_model("failed", m, u(2000, 1, 0, 0)),
                // The retry: not streamed, so only assistant events under a new id.
                assistant("retry", m, u(2000, 200, 0, 0), None),
                // The stray delta carries the failed attempt's usage: ignored.
                delta_usage(u(2000, 1, 0, 0)),
                start_model("next", m, u(2000, 1, 0, 0)),
                assistant("next", m, u(2000, 1, 0, 0), None),
                delta(200, None),
            ],
        );
        assert_eq!(obs[1].tokens_delta, 2200 - 2001);
        assert_eq!(obs[2].tokens_delta, 0);
        assert_eq!(t.usage(), Usage::new(4000, 400, 0, 0));
        // 4000 × $3/M + 400 × $15/M.
        assert_eq!(t.cost(), Usd::from_dollars(0.018));
    }

    #[test]
    fn a_streamed_message_with_its_assistant_event_is_never_taken_back() {
        let mut t = tracker();
        feed(
            &mut t,
            &[
                start("m1", u(1000, 1, 0, 0), None),
                assistant("m1", "claude-opus-4-8", u(1000, 1, 0, 0), None),
                // A subagent's message (another parent) does not supersede m1.
                assistant("s1", "claude-opus-4-8", u(10, 1, 0, 0), Some("toolu_1")),
                assistant("m2", "claude-opus-4-8", u(500, 5, 0, 0), None),
                delta(50, None),
            ],
        );
        assert_eq!(t.usage(), Usage::new(1510, 56, 0, 0));
    }

    #[test]
    fn delta_input_above_zero_replaces_the_start_count() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[
                start_model("m1", "claude-haiku-4-5", u(1000, 1, 300, 40)),
                assistant("m1", "claude-haiku-4-5", u(1000, 1, 300, 40), None),
                delta_usage(u(500, 100, 0, 0)),
                // A replayed assistant frame does not raise the replaced count again.
                assistant("m1", "claude-haiku-4-5", u(1000, 1, 300, 40), None),
            ],
        );
        assert_eq!(obs[2].tokens_delta, 99 - 500);
        // Zero in the delta leaves the cache counts alone.
        assert_eq!(t.usage(), Usage::new(500, 100, 300, 40));
    }

    #[test]
    fn web_search_and_fast_mode_are_priced() {
        let mut t = tracker();
        let usage = json!({"input_tokens": 1000, "output_tokens": 100,
            "server_tool_use": {"web_search_requests": 3}, "speed": "standard"});
        feed(&mut t, &[assistant("m1", "claude-sonnet-5", usage, None)]);
        assert_eq!(t.cost(), Usd::from_dollars(0.0345));
        let mut t = tracker();
        let usage = json!({"input_tokens": 1000, "output_tokens": 100,
            "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 1000, "speed": "fast"});
        feed(&mut t, &[assistant("m1", "claude-opus-4-6", usage, None)]);
        assert_eq!(t.cost(), Usd::from_dollars(0.0855));
    }

    #[test]
    fn a_subagents_last_message_counts_from_the_task_result() {
        let mut t = tracker();
        let task = json!({"type": "user", "message": {"role": "user", "content": [
                {"tool_use_id": "toolu_1", "type": "tool_result", "content": "done"}]},
            "parent_tool_use_id": null, "uuid": "u1",
            "tool_use_result": {"status": "completed", "agentId": "a1",
                "resolvedModel": "claude-haiku-4-5-20251001", "totalTokens": 3300,
                "usage": {"input_tokens": 3000, "output_tokens": 300,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})
        .to_string();
        // Other tools' results, even with a `usage`-looking text, count nothing.
        let bash = json!({"type": "user", "message": {"role": "user", "content": "x"},
            "tool_use_result": {"stdout": "\"usage\": 5", "stderr": ""}})
        .to_string();
        let plain = json!({"type": "user", "tool_use_result": "Error: usage"}).to_string();
        let obs = feed(
            &mut t,
            &[
                start_model("main", "claude-sonnet-5", u(2000, 1, 0, 0)),
                assistant("main", "claude-sonnet-5", u(2000, 1, 0, 0), None),
                task.clone(),
                task,
                bash,
                plain,
            ],
        );
        assert_eq!(obs[2].tokens_delta, 3300);
        assert!(obs[3..].iter().all(|o| o.tokens_delta == 0));
        assert_eq!(t.usage(), Usage::new(5000, 301, 0, 0));
        // Haiku: 3000 × $1/M + 300 × $5/M; Sonnet: 2000 × $3/M + 1 × $15/M.
        assert_eq!(t.cost(), Usd(4_500_000 + 6_015_000));
        assert_eq!(t.malformed_lines(), 0);
    }

    #[test]
    fn a_wrong_table_is_warned_once_per_model_and_calibrated_for_the_run() {
        // The old table's Sonnet 5 price, $2/$10, where Claude charges $3/$15.
        let f = r#"{"models": {"claude-sonnet-5": {"input": 2, "output": 10},
                    "claude-haiku-4-5": {"input": 1, "output": 5}}}"#;
        let pricing = Arc::new(Pricing::parse(f, "old.json").expect("valid"));
        let cal = Calibration::new();
        let mut a = Tracker::with_calibration(pricing.clone(), cal.clone());
        let obs = feed(
            &mut a,
            &[
                assistant("m1", "claude-sonnet-5", u(1000, 100, 0, 0), None),
                result(
                    json!({"claude-sonnet-5": mu_cost(1000, 100, 0, 0, 0.0045),
                           "claude-haiku-4-5": mu_cost(0, 0, 0, 0, 0.0)}),
                    0.0045,
                ),
            ],
        );
        // Live at the wrong price: $0.002 + $0.001.
        assert_eq!(obs[0].cost_delta, Usd::from_dollars(0.003));
        let w = obs[1].warning.as_deref().expect("mismatch warning");
        assert!(
            w.contains("claude-sonnet-5")
                && w.contains("$0.0045")
                && w.contains("$0.0030")
                && w.contains("--pricing"),
            "{w}"
        );
        // Another instance of the same run: its live estimate is scaled by 1.5 from the
        // start, and the same mismatch is not warned again.
        let mut b = Tracker::with_calibration(pricing.clone(), cal.clone());
        let obs = feed(
            &mut b,
            &[
                assistant("m1", "claude-sonnet-5", u(2000, 200, 0, 0), None),
                result(
                    json!({"claude-sonnet-5": mu_cost(2000, 200, 0, 0, 0.009)}),
                    0.009,
                ),
            ],
        );
        assert_eq!(obs[0].cost_delta, Usd::from_dollars(0.009));
        assert!(obs.iter().all(|o| o.warning.is_none()));
        // A run of its own (fresh calibration) is not affected.
        let mut c = Tracker::new(pricing);
        feed(
            &mut c,
            &[assistant("m1", "claude-sonnet-5", u(2000, 200, 0, 0), None)],
        );
        assert_eq!(c.cost(), Usd::from_dollars(0.006));
    }

    #[test]
    fn a_matching_table_never_warns() {
        let mut t = tracker();
        let obs = feed(
            &mut t,
            &[
                assistant("m1", "claude-sonnet-5", u(1000, 100, 0, 0), None),
                result(
                    json!({"claude-sonnet-5": mu_cost(1000, 100, 0, 0, 0.0045000000000000005)}),
                    0.0045,
                ),
            ],
        );
        assert!(obs.iter().all(|o| o.warning.is_none()));
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
            fn deltas_sum_to_totals_and_results_are_exact(lines in prop::collection::vec(line(), 0..60)) {
                let mut t = tracker();
                for l in &lines {
                    let o = feed(&mut t, std::slice::from_ref(l)).remove(0);
                    if o.result {
                        // Right after a result, the totals are exactly the result's.
                        let v: Value = serde_json::from_str(l).expect("result line");
                        let mu = &v["modelUsage"]["claude-opus-4-8"];
                        let n = |k: &str| mu[k].as_u64().unwrap_or(0);
                        prop_assert_eq!(t.usage(), Usage::new(n("inputTokens"), n("outputTokens"),
                            n("cacheCreationInputTokens"), n("cacheReadInputTokens")));
                        prop_assert_eq!(t.cost(), Usd::from_dollars(v["total_cost_usd"].as_f64().unwrap_or(0.0)));
                    }
                    if o.tokens_delta < 0 || o.cost_delta < Usd::ZERO {
                        // Only a result, a superseded attempt or a delta's input lowers a count.
                        prop_assert!(l.contains("\"result\"") || l.contains("message_start")
                            || l.contains("\"assistant\"") || l.contains("message_delta"));
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
