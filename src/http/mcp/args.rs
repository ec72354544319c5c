//! The arguments of each MCP tool, with their JSON Schemas.

use super::*;

/// The cache entry's path.
pub(crate) fn key_uri(namespace: &str, key: &str) -> String {
    format!("/v1/cache/{}/{}", url_part(namespace), url_part(key))
}

/// A path segment or query value, percent-encoded.
pub(crate) fn url_part(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Deserialize, JsonSchema)]
pub struct KeyArgs {
    /// The namespace: 1–256 of `[A-Za-z0-9._:@-]`, e.g. the agent's role or task.
    pub namespace: String,
    /// The key within the namespace: 1–256 of `[A-Za-z0-9._:@-]`, not starting with `_`.
    pub key: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct WriteArgs {
    pub namespace: String,
    pub key: String,
    /// Any JSON value to store.
    pub value: Value,
    /// Seconds until it expires (default: the service's `cache.default_ttl_seconds`).
    pub ttl_seconds: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ListArgs {
    pub namespace: String,
    /// A Redis-style glob over the keys (`*`, `?`, `[a-z]`); default `*`.
    pub pattern: Option<String>,
    /// `next_cursor` of the previous call, to continue a long listing.
    pub cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct NamespaceArgs {
    pub namespace: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct ThreadArgs {
    /// The conversation's thread id: 1–256 of `[A-Za-z0-9._:@-]`.
    pub thread_id: String,
    /// Only the last N messages (default: all).
    pub last: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
pub struct AppendArgs {
    pub thread_id: String,
    /// Messages in LangChain's shape: `{"role": "human"|"ai"|"system"|"tool", "content": ...}`.
    pub messages: Vec<Value>,
}

#[derive(Deserialize, JsonSchema)]
pub struct CreateActionArgs {
    /// What the action does, e.g. `send_email`.
    pub intent_name: String,
    /// The action's parameters, kept with it.
    pub entities: Option<serde_json::Map<String, Value>>,
    /// A sentence for the human who confirms it.
    pub summary: Option<String>,
    /// How long it can be confirmed (default 60 s).
    pub ttl_seconds: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
pub struct TokenArgs {
    /// The token `pending_action_create` returned.
    pub token: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct AcquireArgs {
    /// The lock's name: 1–256 of `[A-Za-z0-9._:@-]`.
    pub name: String,
    /// How long the lock is held unless released or extended, in ms.
    pub ttl_ms: u64,
    /// Who holds it, shown to others.
    pub owner: Option<String>,
    /// Wait up to this many ms for the lock to be free (default: answer at once).
    pub wait_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ReleaseArgs {
    pub name: String,
    /// The `lock_token` `lock_acquire` returned.
    pub lock_token: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct RateLimitArgs {
    /// What is limited, e.g. a user id: 1–256 of `[A-Za-z0-9._:@-]`.
    pub key: String,
    /// Most requests per window.
    pub limit: u64,
    /// The window, in ms.
    pub window_ms: u64,
    /// `sliding_window` (default), `fixed_window` or `token_bucket`.
    pub algorithm: Option<String>,
    /// What this request costs (default 1).
    pub cost: Option<u64>,
}
