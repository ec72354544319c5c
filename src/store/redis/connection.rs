//! What one connection is on each kind of Redis deployment, so that every store runs the same
//! code on a single server, a Redis Cluster and a Sentinel-managed master.
//!
//! - **Single server**: a multiplexed connection.
//! - **Cluster** (`redis.cluster_nodes`): the redis crate's async cluster connection, which
//!   routes each command and script by its key's slot and follows `MOVED`/`ASK` and failovers
//!   itself. Every script touches keys of one hash tag only (`keys.rs`). Classic pub/sub is
//!   cluster-wide, so subscribers use a plain connection to any one node.
//! - **Sentinel** (`redis.sentinel`): a multiplexed connection to the master the Sentinels
//!   name when the connection is opened. After a failover the old master's connections fail
//!   or answer `READONLY`; the pool then retires them (`pool.rs`) and the next connection is
//!   opened to the new master.

use std::sync::Arc;

use redis::{
    AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, MultiplexedConnection, PubSub},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use secrecy::ExposeSecret;

use crate::config::{RedisSettings, RedisTopology};

/// One connection, multiplexed: clones share it.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// `cmd` on the node `routing` names (a Cluster); on a single server, simply `cmd`.
    pub async fn routed(&mut self, cmd: &Cmd, routing: RoutingInfo) -> RedisResult<Value> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => c.route_command(cmd.clone(), routing).await,
        }
    }

    /// `cmd` on the master at `host:port` (a Cluster); on a single server, simply `cmd`.
    pub async fn at(&mut self, host: &str, port: u16, cmd: &Cmd) -> RedisResult<Value> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_string(),
            port,
        });
        self.routed(cmd, routing).await
    }
}

/// How connections to the deployment are opened.
#[derive(Clone)]
pub enum Topology {
    Single(Box<redis::Client>),
    Cluster {
        /// Each node's answer bounded by the command deadline, so that opening a connection
        /// does not hang on a node that accepts but never answers (a stopped master).
        client: Box<ClusterClient>,
        /// No response deadline: for readers that block (`XREAD BLOCK`).
        blocking: Box<ClusterClient>,
        /// One client per seed node: subscribers connect to the first that answers.
        seeds: Vec<redis::Client>,
    },
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

/// The redis crate's TLS settings for `redis.tls_ca_file`, if set.
fn certificates(settings: &RedisSettings) -> Result<Option<redis::TlsCertificates>, String> {
    let Some(path) = &settings.tls_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read redis.tls_ca_file {}: {e}", path.display()))?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

impl Topology {
    /// The deployment the settings name; nothing is connected yet. For `rediss://`, TLS is
    /// through rustls, trusting `redis.tls_ca_file` when set and the system's authorities
    /// otherwise.
    pub fn new(settings: &RedisSettings) -> Result<Self, String> {
        // One process-wide TLS provider; a second install (another pool) is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let invalid = |e: redis::RedisError| format!("invalid Redis address: {e}");
        let certificates = certificates(settings)?;
        let open = |url: &str| match &certificates {
            None => redis::Client::open(url).map_err(invalid),
            Some(certs) => redis::Client::build_with_tls(url, certs.clone()).map_err(invalid),
        };
        let password = settings.password.as_ref().map(|p| p.expose_secret());
        match settings.topology() {
            RedisTopology::Single => Ok(Self::Single(Box::new(open(
                settings.connection_url().expose_secret(),
            )?))),
            RedisTopology::Cluster => {
                let nodes = &settings.cluster_nodes;
                let build = |answer_within: Option<std::time::Duration>| {
                    let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .connection_timeout(std::time::Duration::from_millis(
                            settings.connect_timeout_ms,
                        ));
                    if let Some(within) = answer_within {
                        builder = builder.response_timeout(within);
                    }
                    // Each call's own deadline (`pool.rs`) bounds it, retries included.
                    builder = builder.overall_response_timeout(None);
                    if let Some(user) = &settings.username {
                        builder = builder.username(user);
                    }
                    if let Some(password) = password {
                        builder = builder.password(password);
                    }
                    if let Some(certs) = &certificates {
                        builder = builder.certs(certs.clone());
                    }
                    builder.build().map_err(invalid)
                };
                let client = build(Some(settings.command_timeout()))?;
                let blocking = build(None)?;
                let seeds = nodes
                    .iter()
                    .map(|node| {
                        let info = redis::IntoConnectionInfo::into_connection_info(node.as_str())
                            .map_err(invalid)?;
                        let mut redis_info = info.redis_settings().clone();
                        if let Some(user) = &settings.username {
                            redis_info = redis_info.set_username(user);
                        }
                        if let Some(password) = password {
                            redis_info = redis_info.set_password(password);
                        }
                        let info = info.set_redis_settings(redis_info);
                        match &certificates {
                            None => redis::Client::open(info).map_err(invalid),
                            Some(c) => {
                                redis::Client::build_with_tls(info, c.clone()).map_err(invalid)
                            }
                        }
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Self::Cluster {
                    client: Box::new(client),
                    blocking: Box::new(blocking),
                    seeds,
                })
            }
            RedisTopology::Sentinel => {
                let sentinel = settings.sentinel.as_ref().expect("topology is Sentinel");
                let mut master = redis::RedisConnectionInfo::default().set_db(settings.db);
                if let Some(user) = &settings.username {
                    master = master.set_username(user);
                }
                if let Some(password) = password {
                    master = master.set_password(password);
                }
                let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
                let client = SentinelClient::build(
                    sentinel.nodes.iter().map(String::as_str).collect(),
                    sentinel.master_name.as_str(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(invalid)?;
                Ok(Self::Sentinel(Arc::new(tokio::sync::Mutex::new(client))))
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// A client for the one server to talk to: the single server, or the master the
    /// Sentinels name now. `None` on a Cluster.
    pub async fn server(&self) -> Option<RedisResult<redis::Client>> {
        match self {
            Self::Single(client) => Some(Ok((**client).clone())),
            Self::Cluster { .. } => None,
            Self::Sentinel(sentinel) => Some(sentinel.lock().await.async_get_client().await),
        }
    }

    /// A new connection with `config`'s timeouts; on a Cluster, the client's own, and no
    /// response deadline if `blocking`.
    pub async fn connect(
        &self,
        config: &AsyncConnectionConfig,
        blocking: bool,
    ) -> RedisResult<Conn> {
        match self {
            Self::Cluster {
                client,
                blocking: b,
                ..
            } => {
                let client = if blocking { b } else { client };
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
            _ => {
                let client = self.server().await.expect("not a Cluster")?;
                Ok(Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(config)
                        .await?,
                ))
            }
        }
    }

    /// A subscriber connection. On a Cluster, `PUBLISH` reaches every node, so the first seed
    /// that answers will do.
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        match self {
            Self::Cluster { seeds, .. } => {
                let mut last = None;
                for seed in seeds {
                    match seed.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no seeds"))
                }))
            }
            _ => {
                self.server()
                    .await
                    .expect("not a Cluster")?
                    .get_async_pubsub()
                    .await
            }
        }
    }
}
