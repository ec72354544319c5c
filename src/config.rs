//! Settings, layered: built-in defaults < `config/default.toml` < the file named by
//! `--config`/`STATEKEEPER_CONFIG` < the seed services' `REDIS_*` variables <
//! `STATEKEEPER__{SECTION}__{KEY}` environment variables.
//!
//! Secrets (the Redis password, a URL that carries one) are accepted from the environment
//! only: a config file that holds one is refused, so a password never lands in a repository.

use std::{collections::BTreeMap, path::Path, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::ids::valid_tenant_name;

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
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            mode: BackendMode::Auto,
            probe_interval_ms: 1_000,
            refuse_while_degraded: Vec::new(),
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
        }
    }
}

impl RedisSettings {
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// TTL of a value written without `ttl_seconds`; `0` keeps such values until deleted.
    pub default_ttl_seconds: u64,
    pub max_value_bytes: usize,
    /// Most keys in one `_mget` or `_mset` (422 beyond).
    pub max_batch_keys: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            default_ttl_seconds: 3600,
            max_value_bytes: 512 * 1024,
            max_batch_keys: 1000,
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

impl SessionSettings {
    /// The session rules every session store call is given.
    pub fn rules(&self) -> crate::domain::session::SessionRules {
        crate::domain::session::SessionRules {
            rolling: self.rolling,
            max_lifetime_ms: self.max_lifetime_seconds as i64 * 1000,
            max_bytes: self.max_session_bytes,
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
    fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

/// The sources of one load; `from_process` fills it from the real process.
pub struct Sources<'a> {
    /// `config/default.toml`, read when it exists.
    pub default_file: Option<&'a Path>,
    /// `--config PATH` or `STATEKEEPER_CONFIG`: must exist.
    pub explicit_file: Option<&'a Path>,
    pub env: BTreeMap<String, String>,
}

impl Settings {
    /// Loads settings from `config/default.toml`, `config_path` and the process environment.
    pub fn load(config_path: Option<&Path>) -> Result<Self, SettingsError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let env_file = env.get("STATEKEEPER_CONFIG").map(Path::new);
        Self::load_from(Sources {
            default_file: Some(Path::new("config/default.toml")),
            explicit_file: config_path.or(env_file),
            env: env.clone(),
        })
    }

    pub fn load_from(sources: Sources<'_>) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = sources.default_file.filter(|p| p.exists()) {
            refuse_file_secrets(path)?;
            builder = builder.add_source(config::File::from(path).required(true));
        }
        if let Some(path) = sources.explicit_file {
            if !path.exists() {
                return Err(SettingsError::new(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            refuse_file_secrets(path)?;
            builder = builder.add_source(config::File::from(path).required(true));
        }
        for (setting, value) in seed_variables(&sources.env)? {
            builder = builder
                .set_override(setting, value)
                .map_err(|e| SettingsError::new(setting, e.to_string()))?;
        }
        builder = builder.add_source(
            config::Environment::with_prefix("STATEKEEPER")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(sources.env.clone().into_iter().collect())),
        );
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(config_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rules serde cannot express. Each failure names its setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            ("server.max_connections", self.server.max_connections as u64),
            ("backend.probe_interval_ms", self.backend.probe_interval_ms),
            ("redis.connect_timeout_ms", self.redis.connect_timeout_ms),
            ("redis.command_timeout_ms", self.redis.command_timeout_ms),
            ("limits.max_ttl_seconds", self.limits.max_ttl_seconds),
            ("redis.max_connections", self.redis.max_connections as u64),
            ("limits.max_body_bytes", self.limits.max_body_bytes as u64),
            ("cache.max_value_bytes", self.cache.max_value_bytes as u64),
            ("cache.max_batch_keys", self.cache.max_batch_keys as u64),
            (
                "pending_actions.default_ttl_seconds",
                self.pending_actions.default_ttl_seconds,
            ),
            (
                "agent_states.default_ttl_seconds",
                self.agent_states.default_ttl_seconds,
            ),
            (
                "agent_states.max_messages_per_append",
                self.agent_states.max_messages_per_append as u64,
            ),
            (
                "sessions.default_ttl_seconds",
                self.sessions.default_ttl_seconds,
            ),
            (
                "sessions.max_session_bytes",
                self.sessions.max_session_bytes as u64,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(SettingsError::new(name, "must be at least 1"));
            }
        }
        if self.server.worker_threads > MAX_WORKER_THREADS {
            return Err(SettingsError::new(
                "server.worker_threads",
                format!("must be at most {MAX_WORKER_THREADS} (0 means one per CPU core)"),
            ));
        }
        if self.cache.default_ttl_seconds > self.limits.max_ttl_seconds {
            return Err(SettingsError::new(
                "cache.default_ttl_seconds",
                "must not exceed limits.max_ttl_seconds",
            ));
        }
        let pending = [
            (
                "pending_actions.default_ttl_seconds",
                self.pending_actions.default_ttl_seconds,
            ),
            (
                "pending_actions.tombstone_seconds",
                self.pending_actions.tombstone_seconds,
            ),
        ];
        for (name, value) in pending {
            if value > self.limits.max_ttl_seconds {
                return Err(SettingsError::new(
                    name,
                    "must not exceed limits.max_ttl_seconds",
                ));
            }
        }
        if self.agent_states.default_ttl_seconds > self.limits.max_ttl_seconds {
            return Err(SettingsError::new(
                "agent_states.default_ttl_seconds",
                "must not exceed limits.max_ttl_seconds",
            ));
        }
        if self.sessions.max_lifetime_seconds < self.sessions.default_ttl_seconds {
            return Err(SettingsError::new(
                "sessions.max_lifetime_seconds",
                "must be at least sessions.default_ttl_seconds",
            ));
        }
        if self.sessions.max_lifetime_seconds > self.limits.max_ttl_seconds {
            return Err(SettingsError::new(
                "sessions.max_lifetime_seconds",
                "must not exceed limits.max_ttl_seconds",
            ));
        }
        let prefix = &self.redis.key_prefix;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(SettingsError::new(
                "redis.key_prefix",
                "must be 1 or more of [A-Za-z0-9_.-]",
            ));
        }
        if let Some(url) = &self.redis.url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(SettingsError::new(
                    "redis.url",
                    "must start with redis:// or rediss://",
                ));
            }
        }
        if let Some(path) = &self.redis.tls_ca_file {
            let readable = std::fs::metadata(path).is_ok_and(|m| m.is_file());
            if !readable {
                return Err(SettingsError::new(
                    "redis.tls_ca_file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            if !self
                .redis
                .connection_url()
                .expose_secret()
                .starts_with("rediss://")
            {
                return Err(SettingsError::new(
                    "redis.tls_ca_file",
                    "applies only to a rediss:// URL (redis.url or REDIS_URL)",
                ));
            }
        }
        for (i, key) in self.auth.keys.iter().enumerate() {
            let name = |field: &str| format!("auth.keys[{i}].{field}");
            if key.sha256.len() != 64 || hex::decode(&key.sha256).is_err() {
                return Err(SettingsError::new(
                    name("sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)",
                ));
            }
            if !valid_tenant_name(&key.tenant) {
                return Err(SettingsError::new(
                    name("tenant"),
                    "must be 1-64 of [A-Za-z0-9_-]",
                ));
            }
            if key.scopes.is_empty() {
                return Err(SettingsError::new(
                    name("scopes"),
                    "must name at least one scope",
                ));
            }
        }
        for name in &self.backend.refuse_while_degraded {
            if crate::store::failover::Capability::from_name(name).is_none() {
                return Err(SettingsError::new(
                    "backend.refuse_while_degraded",
                    format!(
                        "{name:?} is no capability: cache, sessions, agent_states, pending_actions"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A config file may not carry a Redis password, neither as `redis.password` nor in `redis.url`.
fn refuse_file_secrets(path: &Path) -> Result<(), SettingsError> {
    let file = config::Config::builder()
        .add_source(config::File::from(path).required(true))
        .build()
        .map_err(config_error)?;
    let refused = "a Redis password may not be stored in a config file; set REDIS_PASSWORD or \
                   STATEKEEPER__REDIS__PASSWORD in the environment";
    if file.get_string("redis.password").is_ok() {
        return Err(SettingsError::new("redis.password", refused));
    }
    if let Ok(url) = file.get_string("redis.url")
        && url_has_password(&url)
    {
        return Err(SettingsError::new("redis.url", refused));
    }
    Ok(())
}

fn url_has_password(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty()))
}

/// The variables the seed services use, as settings; a `STATEKEEPER__` variable for the same
/// setting wins, because it is added after these as a later source.
fn seed_variables(
    env: &BTreeMap<String, String>,
) -> Result<Vec<(&'static str, String)>, SettingsError> {
    let mut out = Vec::new();
    let mapping = [
        ("REDIS_URL", "redis.url"),
        ("REDIS_HOST", "redis.host"),
        ("REDIS_PORT", "redis.port"),
        ("REDIS_DB", "redis.db"),
        ("REDIS_PASSWORD", "redis.password"),
        ("REDIS_KEY_PREFIX", "redis.key_prefix"),
        ("REDIS_MAX_CONNECTIONS", "redis.max_connections"),
    ];
    for (var, setting) in mapping {
        let own = format!("STATEKEEPER__{}", setting.replace('.', "__").to_uppercase());
        if let Some(value) = env.get(var).filter(|_| !env.contains_key(&own)) {
            out.push((setting, value.clone()));
        }
    }
    if let Some(enabled) = env.get("REDIS_ENABLED") {
        match enabled.to_ascii_lowercase().as_str() {
            "false" | "0" | "no" | "off" => {
                if !env.contains_key("STATEKEEPER__BACKEND__MODE") {
                    out.push(("backend.mode", "memory".into()));
                }
            }
            "true" | "1" | "yes" | "on" => {}
            _ => {
                return Err(SettingsError::new("REDIS_ENABLED", "must be true or false"));
            }
        }
    }
    Ok(out)
}

/// Turns the config crate's error into one line naming the setting where it can.
fn config_error(error: config::ConfigError) -> SettingsError {
    match &error {
        config::ConfigError::Type { key: Some(key), .. } => {
            SettingsError::new(key.clone(), error.to_string())
        }
        config::ConfigError::Message(message) => {
            let setting = message
                .split("for key `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("configuration");
            SettingsError::new(setting, message.clone())
        }
        _ => SettingsError::new("configuration", error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut tmp = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        if let Some(text) = file {
            tmp.write_all(text.as_bytes()).unwrap();
        }
        Settings::load_from(Sources {
            default_file: None,
            explicit_file: file.map(|_| tmp.path()),
            env: env(vars),
        })
    }

    #[test]
    fn env_overrides_file_and_seed_variables() {
        let s = load(
            Some("[server]\nport = 7000\n[redis]\nhost = \"file-host\"\n"),
            &[
                ("STATEKEEPER__SERVER__PORT", "9000"),
                ("REDIS_HOST", "seed-host"),
                ("REDIS_PORT", "6390"),
                ("STATEKEEPER__REDIS__PORT", "6391"),
            ],
        )
        .unwrap();
        assert_eq!(s.server.port, 9000);
        assert_eq!(s.redis.host, "seed-host");
        assert_eq!(s.redis.port, 6391);
    }

    #[test]
    fn redis_enabled_false_means_memory() {
        let s = load(None, &[("REDIS_ENABLED", "false")]).unwrap();
        assert_eq!(s.backend.mode, BackendMode::Memory);
        assert!(load(None, &[("REDIS_ENABLED", "maybe")]).is_err());
    }

    #[test]
    fn password_in_file_is_refused_but_env_is_fine() {
        let err = load(Some("[redis]\npassword = \"hunter2\"\n"), &[]).unwrap_err();
        assert_eq!(err.setting, "redis.password");
        let err = load(Some("[redis]\nurl = \"redis://u:hunter2@h:1/0\"\n"), &[]).unwrap_err();
        assert_eq!(err.setting, "redis.url");
        assert!(!err.to_string().contains("hunter2"));
        let s = load(None, &[("REDIS_URL", "redis://:hunter2@h:1/0")]).unwrap();
        assert!(s.redis.display_address().contains("***"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let err = load(None, &[("STATEKEEPER__BACKEND__MODE", "sometimes")]).unwrap_err();
        assert!(err.to_string().contains("backend.mode"), "{err}");
        let err = load(None, &[("STATEKEEPER__REDIS__COMMAND_TIMEOUT_MS", "0")]).unwrap_err();
        assert_eq!(err.setting, "redis.command_timeout_ms");
        let err = load(
            Some("[auth]\nkeys = [{ sha256 = \"ab\", tenant = \"t\", scopes = [\"read\"] }]\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.setting, "auth.keys[0].sha256");
        let err = load(
            None,
            &[("STATEKEEPER__SESSIONS__MAX_LIFETIME_SECONDS", "60")],
        )
        .unwrap_err();
        assert_eq!(err.setting, "sessions.max_lifetime_seconds");
        let s = load(Some("[sessions]\nrolling = true\n"), &[]).unwrap();
        assert!(s.sessions.rules().rolling);
        let err = load(None, &[("STATEKEEPER__SERVER__WORKER_THREADS", "1025")]).unwrap_err();
        assert_eq!(err.setting, "server.worker_threads");
        let s = load(None, &[("STATEKEEPER__SERVER__WORKER_THREADS", "1")]).unwrap();
        assert_eq!(s.server.worker_threads, 1);
        let err = load(
            Some("[redis]\ntls_ca_file = \"/nonexistent/ca.pem\"\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.setting, "redis.tls_ca_file");
        let ca = tempfile::NamedTempFile::new().unwrap();
        let file = format!(
            "[redis]\ntls_ca_file = {:?}\n",
            ca.path().display().to_string()
        );
        let err = load(Some(&file), &[]).unwrap_err();
        assert!(err.to_string().contains("rediss://"), "{err}");
        let s = load(Some(&file), &[("REDIS_URL", "rediss://h:6380/0")]).unwrap();
        assert_eq!(s.redis.tls_ca_file.as_deref(), Some(ca.path()));
    }

    #[test]
    fn pending_action_settings_are_bounded() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.pending_actions.default_ttl_seconds, 60);
        assert_eq!(s.pending_actions.tombstone_seconds, 0);
        let err = load(
            None,
            &[("STATEKEEPER__PENDING_ACTIONS__DEFAULT_TTL_SECONDS", "0")],
        )
        .unwrap_err();
        assert_eq!(err.setting, "pending_actions.default_ttl_seconds");
        let file = "[limits]\nmax_ttl_seconds = 100\n\
                    [cache]\ndefault_ttl_seconds = 10\n\
                    [pending_actions]\ntombstone_seconds = 101\n";
        let err = load(Some(file), &[]).unwrap_err();
        assert_eq!(err.setting, "pending_actions.tombstone_seconds");
    }

    #[test]
    fn password_detection() {
        assert!(url_has_password("redis://user:pw@host:6379/0"));
        assert!(url_has_password("rediss://:pw@host"));
        assert!(!url_has_password("redis://user@host"));
        assert!(!url_has_password("redis://host:6379/0"));
    }
}
