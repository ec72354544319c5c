//! Reading the layers: defaults < `config/default.toml` < `--config` < `REDIS_*` <
//! `STATEKEEPER__*`, refusing a file that holds a Redis password.

use std::{collections::BTreeMap, path::Path};

use super::{Settings, SettingsError};

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
        ("REDIS_CLUSTER_NODES", "redis.cluster_nodes"),
        ("REDIS_SENTINEL_MASTER", "redis.sentinel.master_name"),
        ("REDIS_SENTINEL_NODES", "redis.sentinel.nodes"),
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
    use crate::config::*;
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
    fn cluster_and_sentinel_come_from_lists_or_commas() {
        let s = load(
            None,
            &[("REDIS_CLUSTER_NODES", "redis://a:7000, redis://b:7001,")],
        )
        .unwrap();
        assert_eq!(s.redis.cluster_nodes, ["redis://a:7000", "redis://b:7001"]);
        assert_eq!(s.redis.topology(), RedisTopology::Cluster);
        let s = load(
            Some("[redis.sentinel]\nmaster_name = \"m\"\nnodes = [\"redis://s:26379\"]\n"),
            &[],
        )
        .unwrap();
        assert_eq!(s.redis.topology(), RedisTopology::Sentinel);
        let s = load(
            None,
            &[
                ("REDIS_SENTINEL_MASTER", "m"),
                ("REDIS_SENTINEL_NODES", "redis://s1:26379,redis://s2:26379"),
            ],
        )
        .unwrap();
        assert_eq!(s.redis.sentinel.unwrap().nodes.len(), 2);
        let refused = |vars: &[(&str, &str)], setting: &str| {
            assert_eq!(load(None, vars).unwrap_err().setting, setting, "{vars:?}");
        };
        refused(&[("REDIS_CLUSTER_NODES", "a:7000")], "redis.cluster_nodes");
        refused(
            &[
                ("REDIS_CLUSTER_NODES", "redis://a:7000"),
                ("REDIS_SENTINEL_MASTER", "m"),
                ("REDIS_SENTINEL_NODES", "redis://s:26379"),
            ],
            "redis.sentinel",
        );
        refused(
            &[("REDIS_SENTINEL_MASTER", "m"), ("REDIS_SENTINEL_NODES", "")],
            "redis.sentinel.nodes",
        );
        refused(
            &[
                ("STATEKEEPER__REDIS__WAIT_REPLICAS", "1"),
                ("STATEKEEPER__REDIS__WAIT_TIMEOUT_MS", "250"),
            ],
            "redis.wait_timeout_ms",
        );
        let near = "[[cache.near]]\nnamespace = \"flags\"\n";
        let err = load(Some(near), &[("REDIS_CLUSTER_NODES", "redis://a:7000")]).unwrap_err();
        assert_eq!(err.setting, "cache.near");
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
