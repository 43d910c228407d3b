//! What Claude Code says about the API's limits, typed: retries, rate-limit notices,
//! a subscription usage limit, an organisation's spend cap. The accounting recognises
//! them in the stream; the run state acts on them (fleet backoff, waiting for a reset,
//! resuming); only the output renders them as text.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// `system/api_retry`: Claude Code retries an API call after `delay`.
    Retry {
        /// HTTP status: 429 rate limited, 529 overloaded, …; `None` for a refused
        /// connection.
        status: Option<u16>,
        attempt: Option<u64>,
        max: Option<u64>,
        delay: Duration,
        /// Claude Code's category: `rate_limit`, `overloaded`, `server_error`, …
        error: Option<String>,
    },
    /// `rate_limit_event` (subscription logins only).
    RateLimit {
        status: LimitStatus,
        /// Unix seconds.
        resets_at: Option<i64>,
        /// `five_hour`, `seven_day`, …
        kind: Option<String>,
    },
    /// The subscription's usage limit is reached: Claude stops (exit 1) until it
    /// resets. `resets_at` in Unix seconds when Claude Code said so in a structured
    /// field.
    UsageLimit { resets_at: Option<i64> },
    /// The organisation's spend cap (`enforced_spend_limit_reached`).
    SpendCap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitStatus {
    Allowed,
    AllowedWarning,
    Rejected,
    Other(String),
}

impl LimitStatus {
    pub fn parse(s: &str) -> LimitStatus {
        match s {
            "allowed" => LimitStatus::Allowed,
            "allowed_warning" => LimitStatus::AllowedWarning,
            "rejected" => LimitStatus::Rejected,
            other => LimitStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            LimitStatus::Allowed => "allowed",
            LimitStatus::AllowedWarning => "allowed_warning",
            LimitStatus::Rejected => "rejected",
            LimitStatus::Other(s) => s,
        }
    }
}

impl Signal {
    /// A retry the whole fleet should back off from: the API is rate limiting (429) or
    /// overloaded (529), not an error of this one request.
    pub fn is_backoff(&self) -> bool {
        match self {
            Signal::Retry { status, error, .. } => {
                matches!(status, Some(429) | Some(529))
                    || matches!(error.as_deref(), Some("rate_limit") | Some("overloaded"))
            }
            _ => false,
        }
    }

    /// A notice that the limit is near: launch more slowly.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Signal::RateLimit {
                status: LimitStatus::AllowedWarning,
                ..
            }
        )
    }

    /// Short text for the activity column.
    pub fn activity(&self) -> Option<String> {
        Some(match self {
            Signal::Retry {
                status,
                attempt,
                max,
                error,
                ..
            } => {
                let n = |v: &Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
                let mut a = format!("api_retry {}/{}", n(attempt), n(max));
                if let Some(s) = status {
                    a.push_str(&format!(" ({s})"));
                } else if let Some(e) = error {
                    a.push_str(&format!(" ({e})"));
                }
                a
            }
            Signal::RateLimit {
                status: LimitStatus::Allowed,
                ..
            } => return None,
            Signal::RateLimit {
                status,
                resets_at,
                kind,
            } => {
                let mut a = format!("rate limit {}", status.as_str());
                if let Some(k) = kind {
                    a.push_str(&format!(" ({k})"));
                }
                if let Some(at) = resets_at.and_then(|s| chrono::DateTime::from_timestamp(s, 0)) {
                    a.push_str(&format!(", resets {}", at.format("%Y-%m-%d %H:%M UTC")));
                }
                a
            }
            Signal::UsageLimit { .. } => "usage limit reached".to_string(),
            Signal::SpendCap => "organisation spend cap reached".to_string(),
        })
    }
}

/// The reason launches are held back, for the status report and the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseReason {
    /// The status that caused it (429, 529) or the notice (`allowed_warning`).
    pub cause: String,
    /// Instance names that reported it, in order, without repeats.
    pub from: Vec<String>,
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.cause, self.from.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(status: Option<u16>, error: Option<&str>) -> Signal {
        Signal::Retry {
            status,
            attempt: Some(2),
            max: Some(10),
            delay: Duration::from_millis(500),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn only_rate_limits_and_overload_make_the_fleet_back_off() {
        assert!(retry(Some(429), None).is_backoff());
        assert!(retry(Some(529), None).is_backoff());
        assert!(retry(None, Some("overloaded")).is_backoff());
        assert!(!retry(Some(500), Some("server_error")).is_backoff());
        assert!(!retry(None, Some("unknown")).is_backoff());
        assert!(!Signal::SpendCap.is_backoff());
    }

    #[test]
    fn activity_text_is_made_at_the_edge() {
        assert_eq!(
            retry(Some(529), None).activity().as_deref(),
            Some("api_retry 2/10 (529)")
        );
        assert_eq!(
            retry(None, Some("unknown")).activity().as_deref(),
            Some("api_retry 2/10 (unknown)")
        );
        let rl = Signal::RateLimit {
            status: LimitStatus::Rejected,
            resets_at: Some(1_800_000_000),
            kind: Some("five_hour".into()),
        };
        assert_eq!(
            rl.activity().as_deref(),
            Some("rate limit rejected (five_hour), resets 2027-01-15 08:00 UTC")
        );
        let ok = Signal::RateLimit {
            status: LimitStatus::Allowed,
            resets_at: None,
            kind: None,
        };
        assert_eq!(ok.activity(), None);
        assert!(!ok.is_warning());
        let warn = Signal::RateLimit {
            status: LimitStatus::parse("allowed_warning"),
            resets_at: None,
            kind: None,
        };
        assert!(warn.is_warning());
    }
}
