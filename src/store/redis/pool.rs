//! The Redis connection pool and the deadline every call runs under.
//!
//! The pool is deadpool's, with a manager of our own rather than deadpool-redis's: that one
//! recycles a connection on every checkout with an `UNWATCH` + `PING` round trip, which halved
//! the benchmark's throughput (cache GET on Redis: 9.7k rps with it). Ours checks nothing on
//! checkout; a connection whose call fails with a connection error or misses its deadline is
//! detached from the pool instead, so a broken connection is never handed out twice.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{self, Metrics, PoolError, RecycleResult, TimeoutType, Timeouts};
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError, aio::MultiplexedConnection};
use secrecy::ExposeSecret;

type Pool = managed::Pool<Manager>;

/// Opens multiplexed connections for the pool.
struct Manager {
    client: redis::Client,
    config: AsyncConnectionConfig,
}

/// One multiplexed connection and whether a call found it broken.
struct Shared {
    connection: MultiplexedConnection,
    broken: Arc<AtomicBool>,
}

impl managed::Manager for Manager {
    type Type = Shared;
    type Error = RedisError;

    async fn create(&self) -> Result<Shared, RedisError> {
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok(Shared {
            connection,
            broken: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn recycle(&self, shared: &mut Shared, _: &Metrics) -> RecycleResult<RedisError> {
        if shared.broken.load(Ordering::Acquire) {
            return Err(managed::RecycleError::message("a call found it broken"));
        }
        Ok(())
    }
}

use super::keys::Keys;
use crate::{config::RedisSettings, store::StoreError};

/// How much longer than the deadline a checkout may take before it counts as Redis not
/// answering rather than the pool being busy.
const CHECKOUT_MARGIN: Duration = Duration::from_millis(20);

/// A pooled Redis with a deadline per call. Cheap to clone.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool,
    keys: Keys,
    deadline: Duration,
}

/// What `GET /health` reports of Redis.
#[derive(Debug, Clone, Default)]
pub struct RedisInfo {
    pub latency_ms: f64,
    pub redis_version: Option<String>,
    pub connected_clients: Option<u64>,
    pub used_memory_human: Option<String>,
    pub keys: Option<u64>,
}

/// The pool's figures, as deadpool counts them.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolFigures {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

/// The Redis client for the settings: for `rediss://`, TLS through rustls, trusting
/// `redis.tls_ca_file` when set and the system's certificate authorities otherwise.
fn client(settings: &RedisSettings) -> Result<redis::Client, String> {
    // One process-wide TLS provider; a second install (another pool) is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = settings.connection_url();
    let invalid = |e: redis::RedisError| format!("invalid Redis address: {e}");
    match &settings.tls_ca_file {
        None => redis::Client::open(url.expose_secret()).map_err(invalid),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read redis.tls_ca_file {}: {e}", path.display()))?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(url.expose_secret(), certificates).map_err(invalid)
        }
    }
}

impl RedisPool {
    /// Builds the pool; connections are opened lazily, so this succeeds while Redis is down.
    pub fn new(settings: &RedisSettings) -> Result<Self, String> {
        let client = client(settings)?;
        let connect = Duration::from_millis(settings.connect_timeout_ms);
        let manager = Manager {
            client,
            // Our own deadline bounds every call; the connection's timeout would only race it.
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect))
                .set_response_timeout(None),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections)
            .timeouts(Timeouts {
                wait: Some(settings.command_timeout()),
                create: Some(connect),
                recycle: Some(settings.command_timeout()),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| format!("cannot configure the Redis pool: {e}"))?;
        Ok(Self {
            pool,
            keys: Keys::new(&settings.key_prefix),
            deadline: settings.command_timeout(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let (mut conn, broken) = self.connection().await?;
        let result = self.within_deadline(cmd.query_async(&mut conn)).await;
        mark_if_broken(&broken, result)
    }

    /// Runs a pipeline: many commands, one round trip.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let (mut conn, broken) = self.connection().await?;
        let result = self.within_deadline(pipe.query_async(&mut conn)).await;
        mark_if_broken(&broken, result)
    }

    /// Runs a script by SHA (loading it on the first `NOSCRIPT`).
    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let (mut conn, broken) = self.connection().await?;
        let result = self
            .within_deadline(invocation.invoke_async(&mut conn))
            .await;
        mark_if_broken(&broken, result)
    }

    /// A pooled connection, within the deadline (plus a margin so that the pool's own wait
    /// timeout, also the deadline, fires first). Waiting for a free connection that never comes
    /// is `Busy`; checking or opening one that does not answer is `Unavailable`.
    async fn connection(&self) -> Result<(MultiplexedConnection, Arc<AtomicBool>), StoreError> {
        let checkout = tokio::time::timeout(self.deadline + CHECKOUT_MARGIN, self.pool.get());
        match checkout.await {
            // A clone of the multiplexed connection; the pooled object goes back at once, so
            // concurrent calls share (and pipeline on) the pool's connections.
            Ok(Ok(shared)) => Ok((shared.connection.clone(), shared.broken.clone())),
            Ok(Err(PoolError::Timeout(TimeoutType::Wait))) => Err(StoreError::Busy(format!(
                "no free Redis connection within {} ms",
                self.deadline.as_millis()
            ))),
            Ok(Err(PoolError::Backend(e))) => Err(redis_error(e)),
            Ok(Err(other)) => Err(StoreError::Unavailable(format!(
                "cannot get a Redis connection: {other}"
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no Redis connection ready within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }

    async fn within_deadline<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from Redis within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }

    /// A `PING`: what the failover probe and readiness use.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(StoreError::Internal(format!("PING answered {pong:?}")));
        }
        Ok(started.elapsed())
    }

    /// Server figures for `/health`: latency, version, clients, memory, key count.
    pub async fn info(&self) -> Result<RedisInfo, StoreError> {
        let latency = self.ping().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("INFO")
            .arg("server")
            .arg("clients")
            .arg("memory")
            .cmd("DBSIZE");
        let (info, keys): (String, u64) = self.pipeline(&pipe).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        Ok(RedisInfo {
            latency_ms: latency.as_secs_f64() * 1000.0,
            redis_version: field("redis_version"),
            connected_clients: field("connected_clients").and_then(|v| v.parse().ok()),
            used_memory_human: field("used_memory_human"),
            keys: Some(keys),
        })
    }

    pub fn figures(&self) -> PoolFigures {
        let status = self.pool.status();
        PoolFigures {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }
}

/// Marks a connection whose call failed for want of Redis, so the pool replaces it at its next
/// checkout; a connection that answered (even with an error reply) stays.
fn mark_if_broken<T>(broken: &AtomicBool, result: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(StoreError::Unavailable(_)) = &result {
        broken.store(true, Ordering::Release);
    }
    result
}

/// Connection trouble is `Unavailable` (fail over); anything else is a bug.
fn redis_error(error: RedisError) -> StoreError {
    if error.is_io_error()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
    {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Internal(error.to_string())
    }
}
