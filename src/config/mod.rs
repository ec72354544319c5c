//! Settings, layered: built-in defaults < `config/default.toml` < the file named by
//! `--config`/`STATEKEEPER_CONFIG` < the seed services' `REDIS_*` variables <
//! `STATEKEEPER__{SECTION}__{KEY}` environment variables.
//!
//! Secrets (the Redis password, a URL that carries one) are accepted from the environment
//! only: a config file that holds one is refused, so a password never lands in a repository.

//!
//! `load` reads the layers, `validate` holds the rules serde cannot state; this file holds the
//! settings themselves.

mod capabilities;
mod load;
mod validate;

pub use self::capabilities::*;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use self::load::Sources;

/// Every setting of the service. `Default` gives the built-in defaults, which
/// `config/default.toml` repeats with a comment on each.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub backend: BackendSettings,
    pub redis: RedisSettings,
    pub limits: LimitSettings,
    pub cache: CacheSettings,
    pub pending_actions: PendingActionSettings,
    pub agent_states: AgentStateSettings,
    pub sessions: SessionSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub memory: MemorySettings,
    pub rate_limits: RateLimitSettings,
    pub locks: LockSettings,
    pub queues: QueueSettings,
    pub topics: TopicSettings,
    pub usage: UsageSettings,
    pub budgets: BudgetSettings,
    pub metrics: MetricsSettings,
    pub health: HealthSettings,
    pub docs: DocsSettings,
    pub mcp: McpSettings,
    /// A deliberate bug, for the history checker's self-test (`tests/api/histories`): set only
    /// by Rust code that builds `Settings`, never from a file or the environment.
    #[serde(skip)]
    #[doc(hidden)]
    pub inject_bug: Option<InjectedBug>,
}

/// The bugs the history checker must catch (its self-test): each breaks one promise at its
/// door, the way a real regression would.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedBug {
    /// The cache's compare-and-set writes without comparing.
    CasSkipsCompare,
    /// A fence check accepts any token, ignoring later holders.
    FenceIgnoresToken,
    /// A topic stream leaves out its `reset` events.
    TopicDropsReset,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpSettings {
    /// Whether `/mcp` serves the Model Context Protocol tools (Streamable HTTP).
    pub enabled: bool,
    /// Live MCP sessions on this instance at most; an `initialize` past it gets 503
    /// `over_capacity` with `Retry-After`. A session ends with `DELETE /mcp`, or after five
    /// idle minutes.
    pub max_sessions: usize,
    /// Browser origins (`https://app.example.com:443`, `http://localhost:*`) whose pages may
    /// call `/mcp`. A request with any other `Origin` header gets 403, as the MCP transport
    /// requires; requests without one (every non-browser client) are not affected.
    pub allowed_origins: Vec<String>,
}

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_sessions: 1000,
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocsSettings {
    /// Whether `/docs` serves the interactive API docs (no API key needed to read them; calls
    /// made from them carry the key given to "Authorize").
    pub enabled: bool,
}

impl Default for DocsSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Whether `GET /metrics` serves the Prometheus exposition (404 when off, and no request
    /// is counted).
    pub enabled: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// `/health` warns when Redis's `used_memory` exceeds this share of its `maxmemory`.
    pub redis_memory_warn_ratio: f64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            redis_memory_warn_ratio: 0.9,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// What the memory backend may hold, in bytes of keys and values (an estimate per entry:
    /// its bytes plus a fixed overhead). Past it, writes get 507 `backend_full`; reads, deletes
    /// and expiry keep working. `0`: a quarter of the machine's memory.
    pub max_bytes: u64,
}

impl MemorySettings {
    /// `max_bytes`, with `0` resolved to a quarter of the machine's memory (1 GiB when that
    /// cannot be read).
    pub fn bound(&self) -> u64 {
        if self.max_bytes > 0 {
            return self.max_bytes;
        }
        total_memory_bytes().map_or(1 << 30, |total| total / 4)
    }
}

/// `MemTotal` of `/proc/meminfo` (Linux); `None` elsewhere.
fn total_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// `0` binds any free port; the real one is logged.
    pub port: u16,
    pub request_timeout_ms: u64,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub shutdown_grace_ms: u64,
    /// Threads of the async runtime; `0` means one per CPU core.
    pub worker_threads: usize,
    /// How long a client may take to send a request's head (request line and headers). A
    /// keep-alive connection waiting for its next request is on the same clock, so this is
    /// also the idle timeout: a connection idle this long is closed.
    pub header_read_timeout_ms: u64,
    /// Open client connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
}

/// The most `server.worker_threads` accepted.
pub const MAX_WORKER_THREADS: usize = 1024;

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            request_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            worker_threads: 0,
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendMode {
    /// Redis while it answers, memory while it does not.
    Auto,
    /// Redis only: 503 `backend_unavailable` while it is down.
    Redis,
    /// The embedded memory backend only.
    Memory,
}

impl BackendMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Redis => "redis",
            Self::Memory => "memory",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSettings {
    pub mode: BackendMode,
    pub probe_interval_ms: u64,
    /// Capabilities answered with 503 while Redis is down in `auto` mode, instead of being
    /// served from memory (e.g. `["sessions"]` where a session must never exist on one
    /// instance only).
    pub refuse_while_degraded: Vec<String>,
    /// Whether what memory took while degraded is written to Redis when it returns
    /// (`store::handback`), instead of being dropped.
    pub handback: bool,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            mode: BackendMode::Auto,
            probe_interval_ms: 1_000,
            refuse_while_degraded: Vec::new(),
            handback: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db`. When set it wins over host/port/db.
    pub url: Option<SecretString>,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    /// From the environment only (`REDIS_PASSWORD` or `STATEKEEPER__REDIS__PASSWORD`).
    pub password: Option<SecretString>,
    pub key_prefix: String,
    pub max_connections: usize,
    pub connect_timeout_ms: u64,
    /// Deadline of every Redis command; waiting for a pooled connection is bounded by it too.
    pub command_timeout_ms: u64,
    /// For `rediss://`: a PEM file of the certificate authorities to trust instead of the
    /// system's (a Redis with a private CA).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Redis Cluster: seed nodes as `redis://host:port` (or `rediss://`), in a list or one
    /// comma-separated string (`REDIS_CLUSTER_NODES`). When set, the Redis adapter uses the
    /// redis crate's cluster connection, and `url`, `host`, `port` and `db` are not used;
    /// `username` and `password` apply to every node.
    #[serde(deserialize_with = "list_or_commas")]
    pub cluster_nodes: Vec<String>,
    /// A master found through Redis Sentinel; `url`, `host` and `port` are then not used.
    pub sentinel: Option<SentinelSettings>,
    /// When not 0, every write is confirmed with `WAIT` for this many replicas before it is
    /// answered as done; a write they do not all take within `wait_timeout_ms` is answered
    /// 503 (it happened on the master, but a failover could lose it). One more round trip
    /// per write.
    pub wait_replicas: u32,
    /// How long `WAIT` waits for the replicas; less than `command_timeout_ms`.
    pub wait_timeout_ms: u64,
}

/// Where Sentinel names the master: `master_name` as the Sentinels know it, and the Sentinels
/// as `redis://host:port` (a list, or one comma-separated string: `REDIS_SENTINEL_NODES`).
/// `redis.username`, `redis.password` and `redis.db` apply to the master.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelSettings {
    pub master_name: String,
    #[serde(deserialize_with = "list_or_commas")]
    pub nodes: Vec<String>,
}

/// A list of strings from a list, or from one comma-separated string (an environment variable).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Commas(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Commas(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Which kind of Redis deployment the settings name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisTopology {
    Single,
    Cluster,
    Sentinel,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            host: "127.0.0.1".into(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            key_prefix: "statekeeper".into(),
            max_connections: 32,
            connect_timeout_ms: 1_000,
            command_timeout_ms: 250,
            tls_ca_file: None,
            cluster_nodes: Vec::new(),
            sentinel: None,
            wait_replicas: 0,
            wait_timeout_ms: 100,
        }
    }
}

impl RedisSettings {
    pub fn topology(&self) -> RedisTopology {
        if !self.cluster_nodes.is_empty() {
            RedisTopology::Cluster
        } else if self.sentinel.is_some() {
            RedisTopology::Sentinel
        } else {
            RedisTopology::Single
        }
    }

    /// The connection URL, password included; never log it.
    pub fn connection_url(&self) -> SecretString {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let auth = match (&self.username, &self.password) {
            (None, None) => String::new(),
            (user, password) => format!(
                "{}:{}@",
                user.as_deref().unwrap_or(""),
                password.as_ref().map(|p| p.expose_secret()).unwrap_or("")
            ),
        };
        format!("redis://{auth}{}:{}/{}", self.host, self.port, self.db).into()
    }

    /// Where Redis is, without credentials: for logs and health.
    pub fn display_address(&self) -> String {
        if !self.cluster_nodes.is_empty() {
            let nodes: Vec<_> = self.cluster_nodes.iter().map(|n| redact_url(n)).collect();
            return format!("cluster {}", nodes.join(","));
        }
        if let Some(sentinel) = &self.sentinel {
            let nodes: Vec<_> = sentinel.nodes.iter().map(|n| redact_url(n)).collect();
            return format!("sentinel {} via {}", sentinel.master_name, nodes.join(","));
        }
        match &self.url {
            Some(url) => redact_url(url.expose_secret()),
            None => format!("redis://{}:{}/{}", self.host, self.port, self.db),
        }
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub max_body_bytes: usize,
    pub max_ttl_seconds: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_ttl_seconds: 30 * 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub keys: Vec<ApiKeySettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// Hex SHA-256 of the key; the key itself is never configured.
    pub sha256: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// A setting that stops start-up: which one and why, printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct SettingsError {
    pub setting: String,
    pub reason: String,
}

impl SettingsError {
    pub(crate) fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}
