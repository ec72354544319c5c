//! The settings of each capability (`[cache]`, `[sessions]`, `[locks]`, ...).

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageSettings {
    /// An event's `event_id` is counted once within this window (a retried POST is safe).
    pub dedup_window_seconds: u64,
    /// How long a day's totals are kept (a month's, 31 days longer).
    pub retention_days: u64,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            dedup_window_seconds: 7 * 86_400,
            retention_days: 400,
        }
    }
}

impl UsageSettings {
    pub fn limits(&self) -> crate::capabilities::usage::model::UsageLimits {
        crate::capabilities::usage::model::UsageLimits {
            dedup_window_ms: self.dedup_window_seconds.saturating_mul(1000),
            retention_ms: self.retention_days.saturating_mul(86_400_000),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// What reservations (and budget changes) do in `auto` mode while Redis is down: `refuse`
    /// (503) or `local` (memory: only safe for a single-instance deployment).
    pub degraded: LockDegraded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicSettings {
    /// Messages kept per topic for resuming subscribers (approximately, on Redis).
    pub max_len: u64,
    /// How long a message is kept; a topic without a publish this long is gone.
    pub retention_seconds: u64,
    /// Messages a subscriber may fall behind before its stream ends with a reset.
    pub subscriber_buffer: usize,
    /// Largest message (its `data`), in bytes of JSON: larger ones get 413.
    pub max_message_bytes: usize,
    /// Seconds between the comment lines that keep an idle stream open through proxies.
    pub heartbeat_seconds: u64,
    /// Open event streams on this instance at most; each holds a connection, so this stays
    /// below `server.max_connections` and probes and other calls always get through. Past it:
    /// 503 `over_capacity` with `Retry-After`.
    pub max_streams: usize,
    /// Open event streams of one tenant at most (503 `over_capacity` past it), so one tenant
    /// cannot take every stream.
    pub max_streams_per_tenant: usize,
    /// Ends every stream this long after it opened (cleanly: `EventSource` reconnects with
    /// `Last-Event-ID` and resumes exactly), to spread long-lived connections over instances
    /// behind a load balancer; 0: streams stay open.
    pub max_stream_ms: u64,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            max_len: 10_000,
            retention_seconds: 86_400,
            subscriber_buffer: 1024,
            max_message_bytes: 64 * 1024,
            heartbeat_seconds: 15,
            max_streams: 512,
            max_streams_per_tenant: 256,
            max_stream_ms: 0,
        }
    }
}

impl TopicSettings {
    pub fn limits(&self) -> crate::capabilities::topic::port::TopicLimits {
        crate::capabilities::topic::port::TopicLimits {
            max_len: self.max_len,
            retention_ms: self.retention_seconds.saturating_mul(1000),
            buffer: self.subscriber_buffer,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// TTL of a value written without `ttl_seconds`; `0` keeps such values until deleted.
    pub default_ttl_seconds: u64,
    pub max_value_bytes: usize,
    /// Most keys in one `_mget` or `_mset` (422 beyond).
    pub max_batch_keys: usize,
    /// Namespaces whose reads are near-cached in this process (Redis modes only).
    pub near: Vec<NearCacheSettings>,
}

/// One namespace whose repeated reads are served from this process while Redis has not
/// invalidated the key (`capabilities::cache::near`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearCacheSettings {
    pub namespace: String,
    /// Most values kept for the namespace (the oldest go first).
    #[serde(default = "NearCacheSettings::default_entries")]
    pub max_entries: usize,
    /// Most bytes kept for the namespace.
    #[serde(default = "NearCacheSettings::default_bytes")]
    pub max_bytes: usize,
}

impl NearCacheSettings {
    fn default_entries() -> usize {
        10_000
    }

    fn default_bytes() -> usize {
        64 << 20
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            default_ttl_seconds: 3600,
            max_value_bytes: 512 * 1024,
            max_batch_keys: 1000,
            near: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PendingActionSettings {
    /// TTL of a pending action created without `ttl_seconds`.
    pub default_ttl_seconds: u64,
    /// How long a confirmed or cancelled token keeps answering 409 (and its idempotent replay);
    /// `0` means the token's remaining lifetime, at least 60 s.
    pub tombstone_seconds: u64,
}

impl Default for PendingActionSettings {
    fn default() -> Self {
        Self {
            default_ttl_seconds: 60,
            tombstone_seconds: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// TTL of a session created without `ttl_seconds`.
    pub default_ttl_seconds: u64,
    /// Whether reading or changing a session renews its TTL.
    pub rolling: bool,
    /// No session lives longer than this after its creation, whatever renews or extends it.
    pub max_lifetime_seconds: u64,
    /// Largest `data` + `context` of one session, in bytes of compact JSON.
    pub max_session_bytes: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            default_ttl_seconds: 3600,
            rolling: false,
            max_lifetime_seconds: 24 * 3600,
            max_session_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentStateSettings {
    /// TTL of a thread written without `ttl_seconds` (30 days); renewed by every write.
    pub default_ttl_seconds: u64,
    /// Most messages one request may carry (create, replace or append); more is a 413.
    pub max_messages_per_append: usize,
}

impl Default for AgentStateSettings {
    fn default() -> Self {
        Self {
            default_ttl_seconds: 30 * 24 * 3600,
            max_messages_per_append: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// What checks answer in `auto` mode while Redis is down: `local` (per-instance limits
    /// from memory, `degraded: true`), `allow` (fail open) or `refuse` (503).
    pub degraded: RateLimitDegraded,
    /// Named rules, so callers send `{"rules": [{"policy": "api"}]}`.
    pub policies: Vec<RateLimitPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Largest job payload, in bytes of JSON (413 beyond).
    pub max_payload_bytes: usize,
    /// How long an enqueue's `dedup_key` returns the first job.
    pub dedup_window_seconds: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
            dedup_window_seconds: 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LockSettings {
    /// What locks do in `auto` mode while Redis is down: `refuse` (503) or `local` (memory
    /// locks: only safe for a single-instance deployment).
    pub degraded: LockDegraded,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockDegraded {
    #[default]
    Refuse,
    Local,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitDegraded {
    #[default]
    Local,
    Allow,
    Refuse,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    pub name: String,
    pub algorithm: crate::capabilities::rate_limit::model::Algorithm,
    pub limit: u64,
    pub window_ms: u64,
    /// `token_bucket` only; `limit` when absent.
    pub burst: Option<u64>,
}

impl RateLimitSettings {
    /// The policy named `name`, as a rule.
    pub fn policy(&self, name: &str) -> Option<crate::capabilities::rate_limit::model::Rule> {
        let p = self.policies.iter().find(|p| p.name == name)?;
        crate::capabilities::rate_limit::model::Rule::new(
            Some(p.name.clone()),
            p.algorithm,
            p.limit,
            p.window_ms,
            p.burst,
        )
        .ok()
    }
}

impl SessionSettings {
    /// The session rules every session store call is given.
    pub fn rules(&self) -> crate::capabilities::session::model::SessionRules {
        crate::capabilities::session::model::SessionRules {
            rolling: self.rolling,
            max_lifetime_ms: self.max_lifetime_seconds as i64 * 1000,
            max_bytes: self.max_session_bytes,
        }
    }
}
