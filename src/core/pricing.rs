//! The per-model price table and all dollar arithmetic on token counts.
//!
//! The table is data (`src/pricing.json`, embedded with `include_str!`, replaceable with
//! `--pricing FILE` in the same format) in US dollars per million tokens. Internally every
//! price is held as integer picodollars per token (1e-12 USD; $/Mtok × 10⁶), so prices with
//! up to six decimals ($0.08/M = 80 000 p$/token) are exact, and costs are summed in `u128`
//! and rounded once per call to whole nanodollars ([`Usd`]).
//!
//! An unknown model is never free. Live, it is priced as Claude Code 2.1.197 prices it (the
//! table's `"unknown"` row, $5/$25); the pre-launch estimate ([`Pricing::estimate_cost`])
//! stays conservative and uses the most expensive known model (highest output price).
//!
//! Besides tokens, a message can cost per web search request (`web_search_per_request`,
//! $0.01) and run in fast mode (`usage.speed == "fast"`), which multiplies its token cost by
//! the model's `fast` factor (×2 on Opus 4.8, ×6 on Opus 4.6/4.7).
//!
//! [`Calibration`] keeps the table honest: when Claude's own `costUSD` for a model disagrees
//! with what the table gives for the same tokens, the run scales that model's live estimate
//! by Claude's ratio from then on (and warns once).

use crate::core::usage::{Usage, Usd};
use anyhow::{anyhow, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

const BUILTIN: &str = include_str!("pricing.json");

/// Picodollars per token in one dollar-per-million-tokens.
const PICO_PER_DOLLAR_PER_MTOK: f64 = 1_000_000.0;
/// Most models a table may list (accounting indexes rows with a `u16`).
pub const MAX_MODELS: usize = 4096;
/// Sanity ceiling for a price in the file ($/Mtok); anything above is a typo.
const MAX_DOLLARS_PER_MTOK: f64 = 1_000_000.0;

/// Prices of one model, in picodollars (1e-12 USD) per token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// Normalised model name, as in the table.
    pub name: String,
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
    /// Fast-mode multiplier in thousandths (1000 = none).
    pub fast_milli: u64,
}

impl ModelPrice {
    /// The highest per-token price of this model (output, in practice).
    pub fn max_per_token(&self) -> u64 {
        self.input
            .max(self.output)
            .max(self.cache_write_5m)
            .max(self.cache_write_1h)
            .max(self.cache_read)
    }
}

/// A validated price table.
#[derive(Debug, Clone)]
pub struct Pricing {
    models: Vec<ModelPrice>,
    by_name: HashMap<String, usize>,
    aliases: HashMap<String, usize>,
    worst: usize,
    /// Live price of a model the table does not list.
    unknown: ModelPrice,
    /// Nanodollars per web search request.
    web_search: u64,
}

impl Pricing {
    /// The table shipped with the program.
    pub fn builtin() -> Pricing {
        // The embedded file is checked by `builtin_table_parses` below; it is not input.
        Self::parse(BUILTIN, "built-in pricing.json")
            .expect("the embedded pricing.json is valid (checked by a unit test)")
    }

    /// Parses a table in the format of the built-in one; `origin` names it in errors
    /// (`config::file::load_pricing` reads `--pricing FILE` and calls this).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Pricing> {
        #[derive(Deserialize)]
        struct File {
            models: BTreeMap<String, serde_json::Value>,
            #[serde(default)]
            aliases: BTreeMap<String, String>,
            #[serde(default)]
            unknown: Option<serde_json::Value>,
            #[serde(default)]
            web_search_per_request: Option<f64>,
            #[serde(flatten)]
            other: BTreeMap<String, serde_json::Value>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Spec {
            input: f64,
            output: f64,
            cache_write_5m: Option<f64>,
            cache_write_1h: Option<f64>,
            cache_read: Option<f64>,
            fast: Option<f64>,
        }

        let file: File = serde_json::from_str(text).map_err(|e| {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let msg = full.strip_suffix(&suffix).unwrap_or(&full);
            anyhow!("{origin}:{}:{}: {msg}", e.line(), e.column())
        })?;
        if let Some(k) = file.other.keys().find(|k| !k.starts_with("//")) {
            bail!("{origin}: unknown key \"{k}\" (expected \"models\", \"aliases\" or a \"//\" comment)");
        }

        let row = |raw_name: &str, value: &serde_json::Value| -> anyhow::Result<ModelPrice> {
            let spec: Spec = serde_json::from_value(value.clone())
                .map_err(|e| anyhow!("{origin}: model \"{raw_name}\": {e}"))?;
            let price = |field: &str, v: f64| -> anyhow::Result<u64> {
                if !v.is_finite() || !(0.0..=MAX_DOLLARS_PER_MTOK).contains(&v) {
                    bail!("{origin}: model \"{raw_name}\": {field} = {v} is not a price in dollars per million tokens (0 to {MAX_DOLLARS_PER_MTOK})");
                }
                Ok((v * PICO_PER_DOLLAR_PER_MTOK).round() as u64)
            };
            let fast = spec.fast.unwrap_or(1.0);
            if !fast.is_finite() || !(1.0..=100.0).contains(&fast) {
                bail!("{origin}: model \"{raw_name}\": fast = {fast} is not a fast-mode multiplier (1 to 100)");
            }
            Ok(ModelPrice {
                name: normalize(raw_name),
                input: price("input", spec.input)?,
                output: price("output", spec.output)?,
                cache_write_5m: price(
                    "cache_write_5m",
                    spec.cache_write_5m.unwrap_or(spec.input * 1.25),
                )?,
                cache_write_1h: price(
                    "cache_write_1h",
                    spec.cache_write_1h.unwrap_or(spec.input * 2.0),
                )?,
                cache_read: price("cache_read", spec.cache_read.unwrap_or(spec.input * 0.1))?,
                fast_milli: (fast * 1000.0).round() as u64,
            })
        };
        let mut models = Vec::new();
        let mut by_name = HashMap::new();
        for (raw_name, value) in &file.models {
            if raw_name.starts_with("//") {
                continue;
            }
            let mp = row(raw_name, value)?;
            let name = mp.name.clone();
            if by_name.insert(name.clone(), models.len()).is_some() {
                bail!("{origin}: model \"{raw_name}\" is listed twice (as \"{name}\" after normalisation)");
            }
            models.push(mp);
        }
        if models.len() > MAX_MODELS {
            bail!(
                "{origin}: {} models listed; at most {MAX_MODELS} are supported",
                models.len()
            );
        }
        if models.is_empty() {
            bail!("{origin}: \"models\" is empty; at least one model is needed to price unknown models");
        }

        let mut aliases = HashMap::new();
        for (alias, target) in &file.aliases {
            if alias.starts_with("//") {
                continue;
            }
            let Some(&i) = by_name.get(&normalize(target)) else {
                bail!("{origin}: alias \"{alias}\" points at \"{target}\", which is not in \"models\"");
            };
            aliases.insert(normalize(alias), i);
        }

        let worst = models
            .iter()
            .enumerate()
            .max_by_key(|(_, m)| (m.output, m.input, m.max_per_token()))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let unknown = match &file.unknown {
            Some(v) => ModelPrice {
                name: "unknown".into(),
                ..row("unknown", v)?
            },
            // A table without an "unknown" row prices unknown models as its worst one.
            None => models[worst].clone(),
        };
        let web_search = match file.web_search_per_request {
            None => WEB_SEARCH_DEFAULT_NANOS,
            Some(d) if d.is_finite() && (0.0..=1000.0).contains(&d) => (d * 1e9).round() as u64,
            Some(d) => bail!(
                "{origin}: web_search_per_request = {d} is not a price in dollars (0 to 1000)"
            ),
        };
        Ok(Pricing {
            models,
            by_name,
            aliases,
            worst,
            unknown,
            web_search,
        })
    }

    /// Same as the free function [`normalize`].
    pub fn normalize(model: &str) -> String {
        normalize(model)
    }

    /// Price of `model` (any spelling [`normalize`] understands, or an alias).
    pub fn lookup(&self, model: &str) -> Option<&ModelPrice> {
        let n = normalize(model);
        self.by_name
            .get(&n)
            .or_else(|| self.aliases.get(&n))
            .and_then(|&i| self.models.get(i))
    }

    /// The most expensive known model (by output price), used for unknown models.
    pub fn worst(&self) -> &ModelPrice {
        &self.models[self.worst]
    }

    /// Price of `model`, or of the most expensive known model when unknown; the flag says
    /// whether the model was known. For conservative estimates.
    pub fn price_or_worst(&self, model: &str) -> (&ModelPrice, bool) {
        match self.lookup(model) {
            Some(p) => (p, true),
            None => (self.worst(), false),
        }
    }

    /// Price of `model` for live accounting: the table's row, or the `"unknown"` row (what
    /// Claude Code charges for a model it does not know); the flag says whether it was known.
    pub fn price_live(&self, model: &str) -> (&ModelPrice, bool) {
        match self.lookup(model) {
            Some(p) => (p, true),
            None => (&self.unknown, false),
        }
    }

    /// Nanodollars per web search request.
    pub fn web_search_nanos(&self) -> u64 {
        self.web_search
    }

    /// Cost of one message as Claude Code computes it: tokens at `p` (times the fast-mode
    /// factor when `fast`), plus `web_searches` requests.
    pub fn message_cost(
        &self,
        p: &ModelPrice,
        usage: &Usage,
        cache_write_1h_tokens: u64,
        web_searches: u64,
        fast: bool,
    ) -> Usd {
        let pico = token_pico(p, usage, cache_write_1h_tokens);
        let pico = if fast {
            pico * u128::from(p.fast_milli) / 1000
        } else {
            pico
        };
        let nanos = nanos_from_pico(pico + 500);
        Usd(nanos.0.saturating_add(
            i64::try_from(web_searches.saturating_mul(self.web_search)).unwrap_or(i64::MAX),
        ))
    }

    /// Cost of `usage` on `model`. `cache_write_1h_tokens` is the part of
    /// `usage.cache_creation_input_tokens` written to the 1-hour cache (the rest is 5-minute).
    pub fn cost(&self, model: &str, usage: &Usage, cache_write_1h_tokens: u64) -> Usd {
        let (p, _) = self.price_or_worst(model);
        cost_with(p, usage, cache_write_1h_tokens)
    }

    /// Conservative admission estimate: all `tokens` at the model's highest per-token price;
    /// an unknown or unnamed model at the most expensive known model's. Rounded up.
    pub fn estimate_cost(&self, model: Option<&str>, tokens: u64) -> Usd {
        let p = model
            .and_then(|m| self.lookup(m))
            .unwrap_or_else(|| self.worst());
        let pico = u128::from(tokens) * u128::from(p.max_per_token());
        nanos_from_pico(pico.div_ceil(1000) * 1000)
    }
}

/// $0.01 per web search request (Claude Code 2.1.197).
const WEB_SEARCH_DEFAULT_NANOS: u64 = 10_000_000;

/// Cost of `usage` at price `p`, rounded to the nearest nanodollar.
pub fn cost_with(p: &ModelPrice, usage: &Usage, cache_write_1h_tokens: u64) -> Usd {
    nanos_from_pico(token_pico(p, usage, cache_write_1h_tokens) + 500)
}

/// Token cost in picodollars. 1-hour writes are min(`cache_write_1h_tokens`, cache
/// writes) at the 1-hour rate, the rest at the 5-minute rate (as Claude Code prices them).
fn token_pico(p: &ModelPrice, usage: &Usage, cache_write_1h_tokens: u64) -> u128 {
    let h1 = cache_write_1h_tokens.min(usage.cache_creation_input_tokens);
    let m5 = usage.cache_creation_input_tokens - h1;
    u128::from(usage.input_tokens) * u128::from(p.input)
        + u128::from(usage.output_tokens) * u128::from(p.output)
        + u128::from(m5) * u128::from(p.cache_write_5m)
        + u128::from(h1) * u128::from(p.cache_write_1h)
        + u128::from(usage.cache_read_input_tokens) * u128::from(p.cache_read)
}

/// What the table says one model's `result.modelUsage` entry should cost. `modelUsage`
/// does not say which cache writes were 1-hour ones nor which messages ran in fast mode, so
/// this is a range: `low` prices every write at the 5-minute rate and nothing as fast;
/// `high` prices every write at the 1-hour rate and, when `fast_seen`, everything as fast.
pub fn expected_range(
    pricing: &Pricing,
    p: &ModelPrice,
    usage: &Usage,
    web_searches: u64,
    fast_seen: bool,
) -> (Usd, Usd) {
    let low = pricing.message_cost(p, usage, 0, web_searches, false);
    let high = pricing.message_cost(
        p,
        usage,
        usage.cache_creation_input_tokens,
        web_searches,
        fast_seen,
    );
    (low, high)
}

/// Claude's price over the table's for one model, as an exact ratio of nanodollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub claude: i64,
    pub table: i64,
}

impl Ratio {
    /// `amount` scaled by this ratio, rounded to the nearest nanodollar.
    pub fn apply(self, amount: Usd) -> Usd {
        if self.table <= 0 {
            return amount;
        }
        let n = i128::from(amount.0) * i128::from(self.claude);
        let d = i128::from(self.table);
        Usd(i64::try_from((n + d / 2) / d).unwrap_or(i64::MAX))
    }

    pub fn as_f64(self) -> f64 {
        if self.table <= 0 {
            1.0
        } else {
            self.claude as f64 / self.table as f64
        }
    }
}

/// Whether Claude's `claude` charge agrees with the table's range `(low, high)`: inside it,
/// give or take rounding (Claude sums floats per message; we round once per message).
pub fn agrees(claude: Usd, (low, high): (Usd, Usd)) -> bool {
    // 0.01% or 100 nanodollars, whichever is larger.
    let slack = |x: Usd| (x.0 / 10_000).max(100);
    claude.0 >= low.0 - slack(low) && claude.0 <= high.0 + slack(high)
}

/// Per-model corrections learnt from Claude's own `costUSD` during one run, shared by every
/// instance's tracker (a clone shares the same table). Keyed by normalised model name.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    ratios: Arc<Mutex<HashMap<String, Ratio>>>,
}

impl Calibration {
    pub fn new() -> Calibration {
        Calibration::default()
    }

    /// The ratio to apply to `model`'s live estimate, if the table was found wrong for it.
    pub fn ratio(&self, model: &str) -> Option<Ratio> {
        self.ratio_of_key(&normalize(model))
    }

    /// [`Calibration::ratio`] for a name already normalised (a price row's key): no
    /// allocation on the per-frame path.
    pub fn ratio_of_key(&self, key: &str) -> Option<Ratio> {
        let map = self.ratios.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied()
    }

    /// Sets `model`'s ratio; true when the model had none (the caller warns then).
    pub fn set(&self, model: &str, ratio: Ratio) -> bool {
        let mut map = self.ratios.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(normalize(model), ratio).is_none()
    }
}

fn nanos_from_pico(pico: u128) -> Usd {
    Usd(i64::try_from(pico / 1000).unwrap_or(i64::MAX))
}

/// Canonical model name: lowercase, without `[1m]`-style suffixes, provider prefixes
/// (`anthropic/`, `us.anthropic.`), Bedrock `-v1:0` and Vertex `@date` suffixes, `-YYYYMMDD`
/// date suffixes and `-latest`.
pub fn normalize(model: &str) -> String {
    let mut s = model.trim().to_ascii_lowercase();
    if s.ends_with(']') {
        if let Some(i) = s.rfind('[') {
            s.truncate(i);
        }
    }
    if let Some(i) = s.rfind('/') {
        s.drain(..=i);
    }
    if let Some(i) = s.rfind("anthropic.") {
        s.drain(..i + "anthropic.".len());
    }
    if let Some(i) = s.rfind('@') {
        s.truncate(i);
    }
    // Bedrock: `-v1:0`, `-v2`.
    if let Some(i) = s.rfind("-v") {
        let tail = &s[i + 2..];
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == ':') {
            s.truncate(i);
        }
    }
    if let Some(stripped) = s.strip_suffix("-latest") {
        s = stripped.to_string();
    }
    if let Some(i) = s.rfind('-') {
        let tail = &s[i + 1..];
        if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_digit()) {
            s.truncate(i);
        }
    }
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses() {
        assert!(Pricing::parse(BUILTIN, "built-in").is_ok());
    }

    #[test]
    fn opus_4_8_matches_claude_codes_own_prices() {
        let p = Pricing::builtin();
        let m = p.lookup("claude-opus-4-8").expect("known");
        // $5 / $25 / $6.25 / $0.50 per Mtok, in picodollars per token.
        assert_eq!(
            (m.input, m.output, m.cache_write_5m, m.cache_read),
            (5_000_000, 25_000_000, 6_250_000, 500_000)
        );
        // single-turn-cache fixture: 1200 in, 57 out, 300 cache write, 4000 read = $0.0113.
        assert_eq!(
            p.cost("claude-opus-4-8[1m]", &Usage::new(1200, 57, 300, 4000), 0),
            Usd::from_dollars(0.0113)
        );
    }

    #[test]
    fn listed_families_have_their_prices() {
        let p = Pricing::builtin();
        let io = |m: &str| {
            let x = p.lookup(m).unwrap_or_else(|| panic!("{m} missing"));
            (x.input, x.output)
        };
        for m in [
            "claude-opus-5-5",
            "claude-opus-5",
            "claude-opus-4-8",
            "claude-opus-4-7",
            "claude-opus-4-6",
            "claude-opus-4-5",
        ] {
            assert_eq!(io(m), (5_000_000, 25_000_000), "{m}");
        }
        for m in [
            "claude-opus-4-1",
            "claude-opus-4-20250514",
            "claude-opus-4-0",
        ] {
            assert_eq!(io(m), (15_000_000, 75_000_000), "{m}");
        }
        for m in [
            "claude-sonnet-5-5",
            "claude-sonnet-5",
            "claude-sonnet-4-6",
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4",
            "claude-3-7-sonnet-20250219",
        ] {
            assert_eq!(io(m), (3_000_000, 15_000_000), "{m}");
        }
        assert_eq!(io("claude-haiku-4-5-20251001"), (1_000_000, 5_000_000));
        let h35 = p.lookup("claude-3-5-haiku-20241022").expect("haiku 3.5");
        assert_eq!(
            (h35.input, h35.output, h35.cache_read),
            (800_000, 4_000_000, 80_000)
        );
        assert_eq!(io("claude-fable-5-1"), (10_000_000, 50_000_000));
        // Aliases as Claude Code 2.1.197 resolves them in -p mode.
        for (alias, model) in [
            ("opus", "claude-opus-4-8"),
            ("Sonnet", "claude-sonnet-5"),
            ("opusplan", "claude-sonnet-5"),
        ] {
            assert_eq!(p.lookup(alias).map(|m| m.name.as_str()), Some(model));
        }
        assert_eq!(
            p.lookup("haiku").map(|m| m.name.as_str()),
            Some("claude-haiku-4-5")
        );
    }

    #[test]
    fn normalize_strips_decorations() {
        assert_eq!(normalize("claude-opus-4-8[1m]"), "claude-opus-4-8");
        assert_eq!(normalize("Claude-Sonnet-4-5-20250929"), "claude-sonnet-4-5");
        assert_eq!(normalize("anthropic/claude-haiku-4-5"), "claude-haiku-4-5");
        assert_eq!(
            normalize("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            "claude-sonnet-4-5"
        );
        assert_eq!(normalize("claude-haiku-4-5@20251001"), "claude-haiku-4-5");
        assert_eq!(normalize("claude-3-7-sonnet-latest"), "claude-3-7-sonnet");
        // A version number is not a date.
        assert_eq!(normalize("claude-opus-4-1"), "claude-opus-4-1");
    }

    #[test]
    fn unknown_model_is_priced_as_the_most_expensive_never_free() {
        let p = Pricing::builtin();
        let (m, known) = p.price_or_worst("gpt-9-ultra");
        assert!(!known);
        assert_eq!(m.output, 75_000_000);
        assert_eq!(
            p.cost("gpt-9-ultra", &Usage::new(1_000_000, 0, 0, 0), 0),
            Usd::from_dollars(15.0)
        );
        assert!(p.price_or_worst("claude-opus-4-8").1);
    }

    /// Claude Code 2.1.197's own `total_cost_usd` for the cases measured with the fake API
    /// (docs/real-claude-notes.md, "Fidelity cases").
    #[test]
    fn message_cost_matches_claude_codes_measured_totals() {
        let p = Pricing::builtin();
        let cost = |model: &str, u: Usage, h1: u64, ws: u64, fast: bool| {
            let (row, _) = p.price_live(model);
            p.message_cost(row, &u, h1, ws, fast)
        };
        // Sonnet (claude-sonnet-5), 3 web searches: 1000 in, 100 out → $0.0345.
        assert_eq!(
            cost("claude-sonnet-5", Usage::new(1000, 100, 0, 0), 0, 3, false),
            Usd::from_dollars(0.0345)
        );
        // Fast mode, 1000 in/100 out/1000 write/1000 read: ×2 on Opus 4.8, ×6 on 4.6.
        let u = Usage::new(1000, 100, 1000, 1000);
        assert_eq!(
            cost("claude-opus-4-8", u, 0, 0, true),
            Usd::from_dollars(0.0285)
        );
        assert_eq!(
            cost("claude-opus-4-6", u, 0, 0, true),
            Usd::from_dollars(0.0855)
        );
        assert_eq!(
            cost("claude-opus-4-7", u, 0, 0, true),
            Usd::from_dollars(0.0855)
        );
        // Fast mode does not multiply web searches: $0.045 + 2 × $0.01.
        assert_eq!(
            cost("claude-opus-4-6", Usage::new(1000, 100, 0, 0), 0, 2, true),
            Usd::from_dollars(0.065)
        );
        // Fast on a model without a fast price changes nothing.
        assert_eq!(
            cost("claude-sonnet-5", Usage::new(1000, 100, 0, 0), 0, 0, true),
            Usd::from_dollars(0.0045)
        );
        // 10,000 cache writes, 4,000 of them 1-hour, on Sonnet: $0.051.
        assert_eq!(
            cost("sonnet", Usage::new(1000, 100, 10_000, 0), 4000, 0, false),
            Usd::from_dollars(0.051)
        );
        // Default model and unknown models: $5/$25 → $0.0075.
        let u = Usage::new(1000, 100, 0, 0);
        assert_eq!(
            cost("claude-opus-4-8[1m]", u, 0, 0, false),
            Usd::from_dollars(0.0075)
        );
        assert_eq!(
            cost("claude-foo-9", u, 0, 0, false),
            Usd::from_dollars(0.0075)
        );
        assert!(!p.price_live("claude-foo-9").1);
        // Haiku (claude-haiku-4-5-20251001): $1/$5.
        assert_eq!(
            cost(
                "claude-haiku-4-5-20251001",
                Usage::new(500, 100, 0, 0),
                0,
                0,
                false
            ),
            Usd::from_dollars(0.001)
        );
    }

    #[test]
    fn the_expected_range_covers_what_model_usage_cannot_tell() {
        let p = Pricing::builtin();
        let (row, _) = p.price_live("claude-opus-4-8");
        let u = Usage::new(1000, 100, 1000, 0);
        let (low, high) = expected_range(&p, row, &u, 1, false);
        // All writes 5-minute: $0.005 + $0.0025 + $0.00625 + $0.01.
        assert_eq!(low, Usd::from_dollars(0.02375));
        // All writes 1-hour: $0.005 + $0.0025 + $0.01 + $0.01.
        assert_eq!(high, Usd::from_dollars(0.0275));
        let (_, fast_high) = expected_range(&p, row, &u, 1, true);
        assert_eq!(fast_high, Usd::from_dollars(0.045));
        assert!(agrees(Usd::from_dollars(0.025), (low, high)));
        assert!(agrees(low, (low, high)) && agrees(high, (low, high)));
        // Float noise in Claude's sum is not a disagreement.
        assert!(agrees(Usd(high.0 + 50), (low, high)));
        assert!(!agrees(Usd::from_dollars(0.03), (low, high)));
        assert!(!agrees(Usd::from_dollars(0.02), (low, high)));
    }

    #[test]
    fn ratios_scale_exactly_and_calibration_is_shared() {
        let r = Ratio {
            claude: 3,
            table: 2,
        };
        assert_eq!(r.apply(Usd(1_000_000)), Usd(1_500_000));
        assert_eq!(r.apply(Usd(1)), Usd(2)); // 1.5 rounds half up
        assert_eq!(
            Ratio {
                claude: 5,
                table: 0
            }
            .apply(Usd(7)),
            Usd(7)
        );
        let c = Calibration::new();
        let shared = c.clone();
        assert!(c.ratio("claude-sonnet-5").is_none());
        assert!(shared.set("claude-sonnet-5[1m]", r), "first time: warn");
        assert!(!c.set("Claude-Sonnet-5", r), "second time: no warning");
        assert_eq!(c.ratio("claude-sonnet-5-20260101"), Some(r));
    }

    #[test]
    fn parse_reads_fast_unknown_and_web_search() {
        let f = r#"{"models": {"m": {"input": 1, "output": 2, "fast": 3}},
                    "unknown": {"input": 7, "output": 9}, "web_search_per_request": 0.02}"#;
        let p = Pricing::parse(f, "prices.json").expect("valid");
        assert_eq!(p.lookup("m").map(|m| m.fast_milli), Some(3000));
        assert_eq!(p.price_live("zzz").0.output, 9_000_000);
        assert_eq!(p.web_search_nanos(), 20_000_000);
        // Without an "unknown" row, unknown models are priced as the worst one.
        let f = r#"{"models": {"m": {"input": 1, "output": 2}}}"#;
        let p = Pricing::parse(f, "prices.json").expect("valid");
        assert_eq!(p.price_live("zzz").0.output, 2_000_000);
        assert_eq!(p.web_search_nanos(), 10_000_000);
        let f = r#"{"models": {"m": {"input": 1, "output": 2, "fast": 0.5}}}"#;
        let e = Pricing::parse(f, "prices.json")
            .expect_err("fast < 1")
            .to_string();
        assert!(e.contains("fast") && e.contains("\"m\""), "{e}");
    }

    #[test]
    fn one_hour_cache_writes_use_the_one_hour_rate() {
        let p = Pricing::builtin();
        // 1M cache-write tokens on Opus 4.8, 400k of them to the 1h cache:
        // 600k × $6.25/M + 400k × $10/M = $3.75 + $4.00.
        let u = Usage::new(0, 0, 1_000_000, 0);
        assert_eq!(
            p.cost("claude-opus-4-8", &u, 400_000),
            Usd::from_dollars(7.75)
        );
        assert_eq!(p.cost("claude-opus-4-8", &u, 0), Usd::from_dollars(6.25));
        // More 1h tokens than cache writes is clamped, never negative 5m tokens.
        assert_eq!(
            p.cost("claude-opus-4-8", &u, 5_000_000),
            Usd::from_dollars(10.0)
        );
    }

    #[test]
    fn small_prices_keep_their_precision() {
        let p = Pricing::builtin();
        // Haiku 3.5 cache read, $0.08/M: 80 n$ per token.
        assert_eq!(
            p.cost("claude-3-5-haiku", &Usage::new(0, 0, 0, 1_000_000), 0),
            Usd::from_dollars(0.08)
        );
        assert_eq!(
            p.cost("claude-3-5-haiku", &Usage::new(0, 0, 0, 13), 0),
            Usd(1040)
        );
        // A price that is not a whole number of nanodollars per token ($0.0625/M =
        // 62.5 n$) is kept exactly and rounded once, on the total.
        let f = r#"{"models": {"m": {"input": 0.0625, "output": 1}}}"#;
        let p = Pricing::parse(f, "prices.json").expect("valid");
        assert_eq!(p.cost("m", &Usage::new(3, 0, 0, 0), 0), Usd(188));
        assert_eq!(
            p.cost("m", &Usage::new(1_000_000, 0, 0, 0), 0),
            Usd(62_500_000)
        );
    }

    #[test]
    fn estimate_is_every_token_at_the_output_price() {
        let p = Pricing::builtin();
        assert_eq!(
            p.estimate_cost(Some("claude-opus-4-8"), 1000),
            Usd::from_dollars(0.025)
        );
        // The real output price: Sonnet 5 is $15/M.
        assert_eq!(
            p.estimate_cost(Some("sonnet"), 1_000_000),
            Usd::from_dollars(15.0)
        );
        assert_eq!(p.estimate_cost(None, 1000), Usd::from_dollars(0.075));
        assert_eq!(
            p.estimate_cost(Some("mystery"), 1000),
            Usd::from_dollars(0.075)
        );
        // Every token at the output price, even cheaper classes: 1 Haiku 3.5 token = 4000 n$.
        assert_eq!(p.estimate_cost(Some("claude-3-5-haiku"), 1), Usd(4000));
        // Rounded up, never down: 1 token at $0.0625/M is 62.5 n$ → 63.
        let f = r#"{"models": {"m": {"input": 0.01, "output": 0.0625}}}"#;
        let p = Pricing::parse(f, "prices.json").expect("valid");
        assert_eq!(p.estimate_cost(Some("m"), 1), Usd(63));
    }

    #[test]
    fn parse_reads_the_same_format_with_defaults() {
        let f = r#"{"// c": "x", "models": {"m-1": {"input": 2, "output": 8}}, "aliases": {"m": "m-1"}}"#;
        let p = Pricing::parse(f, "prices.json").expect("valid");
        let m = p.lookup("M").expect("alias");
        assert_eq!(
            (
                m.input,
                m.output,
                m.cache_write_5m,
                m.cache_write_1h,
                m.cache_read
            ),
            (2_000_000, 8_000_000, 2_500_000, 4_000_000, 200_000)
        );
    }

    #[test]
    fn parse_errors_name_the_file_and_the_problem() {
        let f = "{\n  \"models\": {\n    \"m\": {\"input\": 1,, }\n  }\n}";
        let e = Pricing::parse(f, "prices.json")
            .expect_err("syntax")
            .to_string();
        assert!(e.contains("prices.json"), "{e}");
        assert!(e.contains(":3:"), "line 3 expected: {e}");

        let f = r#"{"models": {"m": {"input": -1, "output": 1}}}"#;
        let e = Pricing::parse(f, "prices.json")
            .expect_err("negative")
            .to_string();
        assert!(e.contains("model \"m\"") && e.contains("input"), "{e}");

        let f = r#"{"models": {"m": {"input": 1, "output": 1, "outptu": 2}}}"#;
        let e = Pricing::parse(f, "prices.json")
            .expect_err("typo")
            .to_string();
        assert!(e.contains("outptu"), "{e}");

        let f = r#"{"models": {"m": {"input": 1, "output": 1}}, "alias": {}}"#;
        let e = Pricing::parse(f, "prices.json")
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("\"alias\""), "{e}");

        let f = r#"{"models": {"m": {"input": 1, "output": 1}}, "aliases": {"x": "nope"}}"#;
        let e = Pricing::parse(f, "prices.json")
            .expect_err("bad alias")
            .to_string();
        assert!(e.contains("nope"), "{e}");

        let f = r#"{"models": {}}"#;
        assert!(Pricing::parse(f, "prices.json").is_err());
    }
}
