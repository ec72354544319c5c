//! The rules serde cannot state. Each failure names its setting, so startup can say which
//! one is wrong in one line.

use secrecy::ExposeSecret;

use super::{MAX_WORKER_THREADS, Settings, SettingsError};
use crate::domain::ids::valid_tenant_name;

impl Settings {
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
        // Every TTL a capability applies by itself stays within the TTL a caller may ask for.
        let bounded_by_max_ttl = [
            ("cache.default_ttl_seconds", self.cache.default_ttl_seconds),
            (
                "pending_actions.default_ttl_seconds",
                self.pending_actions.default_ttl_seconds,
            ),
            (
                "pending_actions.tombstone_seconds",
                self.pending_actions.tombstone_seconds,
            ),
            (
                "agent_states.default_ttl_seconds",
                self.agent_states.default_ttl_seconds,
            ),
            (
                "sessions.max_lifetime_seconds",
                self.sessions.max_lifetime_seconds,
            ),
        ];
        for (name, value) in bounded_by_max_ttl {
            if value > self.limits.max_ttl_seconds {
                return Err(SettingsError::new(
                    name,
                    "must not exceed limits.max_ttl_seconds",
                ));
            }
        }
        if self.sessions.max_lifetime_seconds < self.sessions.default_ttl_seconds {
            return Err(SettingsError::new(
                "sessions.max_lifetime_seconds",
                "must be at least sessions.default_ttl_seconds",
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
        self.validate_topology()?;
        if let Some(path) = &self.redis.tls_ca_file {
            let readable = std::fs::metadata(path).is_ok_and(|m| m.is_file());
            if !readable {
                return Err(SettingsError::new(
                    "redis.tls_ca_file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            let tls = match self.redis.topology() {
                crate::config::RedisTopology::Cluster => self
                    .redis
                    .cluster_nodes
                    .iter()
                    .all(|n| n.starts_with("rediss://")),
                _ => self
                    .redis
                    .connection_url()
                    .expose_secret()
                    .starts_with("rediss://"),
            };
            if !tls {
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
            if crate::capabilities::Capability::from_name(name).is_none() {
                return Err(SettingsError::new(
                    "backend.refuse_while_degraded",
                    format!(
                        "{name:?} is no capability: {}",
                        crate::capabilities::ALL
                            .iter()
                            .map(|row| row.capability.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let topics = &self.topics;
        for (name, value, range) in [
            ("topics.max_len", topics.max_len, 1..=10_000_000),
            (
                "topics.retention_seconds",
                topics.retention_seconds,
                1..=30 * 86_400,
            ),
            (
                "topics.subscriber_buffer",
                topics.subscriber_buffer as u64,
                1..=1_000_000,
            ),
            (
                "topics.max_message_bytes",
                topics.max_message_bytes as u64,
                1..=16 << 20,
            ),
            (
                "topics.heartbeat_seconds",
                topics.heartbeat_seconds,
                1..=3600,
            ),
            (
                // Streams hold connections: at most half of them, so the rest always answer.
                "topics.max_streams",
                topics.max_streams as u64,
                1..=(self.server.max_connections as u64 / 2).max(1),
            ),
            (
                "topics.max_streams_per_tenant",
                topics.max_streams_per_tenant as u64,
                1..=topics.max_streams as u64,
            ),
            (
                "mcp.max_sessions",
                self.mcp.max_sessions as u64,
                1..=1_000_000,
            ),
            (
                "usage.dedup_window_seconds",
                self.usage.dedup_window_seconds,
                1..=400 * 86_400,
            ),
            ("usage.retention_days", self.usage.retention_days, 1..=3660),
        ] {
            if !range.contains(&value) {
                return Err(SettingsError::new(
                    name,
                    format!("must be {} to {}", range.start(), range.end()),
                ));
            }
        }
        for near in &self.cache.near {
            if crate::domain::ids::Namespace::parse(near.namespace.clone()).is_err()
                || near.max_entries == 0
                || near.max_bytes == 0
            {
                return Err(SettingsError::new(
                    "cache.near",
                    format!(
                        "{:?}: a namespace of 1-256 [A-Za-z0-9._:@-], max_entries and max_bytes \
                         above 0",
                        near.namespace
                    ),
                ));
            }
        }
        let ratio = self.health.redis_memory_warn_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(SettingsError::new(
                "health.redis_memory_warn_ratio",
                "must be above 0 and at most 1",
            ));
        }
        let policies = &self.rate_limits.policies;
        for (i, p) in policies.iter().enumerate() {
            if policies[..i].iter().any(|q| q.name == p.name) {
                return Err(SettingsError::new(
                    "rate_limits.policies",
                    format!("the policy name {:?} is used twice", p.name),
                ));
            }
            crate::capabilities::rate_limit::model::Rule::new(
                None,
                p.algorithm,
                p.limit,
                p.window_ms,
                p.burst,
            )
            .map_err(|e| {
                SettingsError::new("rate_limits.policies", format!("{:?}: {e}", p.name))
            })?;
        }
        Ok(())
    }
}

impl Settings {
    /// A Cluster or a Sentinel set-up, not both; each node an address; no near cache on a
    /// Cluster (its tracking connection follows one server's invalidations only).
    fn validate_topology(&self) -> Result<(), SettingsError> {
        let redis = &self.redis;
        let address = |setting: &str, node: &str| {
            if node.starts_with("redis://") || node.starts_with("rediss://") {
                Ok(())
            } else {
                Err(SettingsError::new(
                    setting,
                    format!("{node:?} must start with redis:// or rediss://"),
                ))
            }
        };
        for node in &redis.cluster_nodes {
            address("redis.cluster_nodes", node)?;
        }
        if let Some(sentinel) = &redis.sentinel {
            if !redis.cluster_nodes.is_empty() {
                return Err(SettingsError::new(
                    "redis.sentinel",
                    "cannot be combined with redis.cluster_nodes",
                ));
            }
            if sentinel.master_name.is_empty() {
                return Err(SettingsError::new(
                    "redis.sentinel.master_name",
                    "must name the master as the Sentinels know it",
                ));
            }
            if sentinel.nodes.is_empty() {
                return Err(SettingsError::new(
                    "redis.sentinel.nodes",
                    "must list at least one Sentinel",
                ));
            }
            for node in &sentinel.nodes {
                address("redis.sentinel.nodes", node)?;
            }
        }
        if redis.wait_replicas > 0 && redis.wait_timeout_ms >= redis.command_timeout_ms {
            return Err(SettingsError::new(
                "redis.wait_timeout_ms",
                "must be less than redis.command_timeout_ms (the write and its WAIT share it)",
            ));
        }
        if !redis.cluster_nodes.is_empty() && !self.cache.near.is_empty() {
            return Err(SettingsError::new(
                "cache.near",
                "is not available on Redis Cluster (its invalidations come from one server)",
            ));
        }
        Ok(())
    }
}
