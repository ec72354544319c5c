//! The Redis connection pool and the deadline every call runs under.
//!
//! The pool is deadpool's, with a manager of our own rather than deadpool-redis's: that one
//! recycles a connection on every checkout with an `UNWATCH` + `PING` round trip, which halved
//! the benchmark's throughput (cache GET on Redis: 9.7k rps with it). Ours checks nothing on
//! checkout. When a call fails with a connection error or misses its deadline, every connection
//! opened so far is retired (a reset such as `CLIENT KILL TYPE normal` closes them all at once),
//! so the next checkout opens a fresh connection: that is what lets the failover tell a reset
//! connection from a Redis that is down. A pooled connection is one server's multiplexed
//! connection or a Redis Cluster connection (`connection.rs`); a `READONLY` answer also retires
//! them all, so that after a Sentinel failover the next one opens to the new master.
//!
//! Error replies are sorted by kind here, once: connection trouble is `Unavailable`, `OOM` is
//! `Full`, `READONLY`/`LOADING`/`MASTERDOWN`/`BUSY`/`TRYAGAIN`/`CLUSTERDOWN` are `Refused`, and
//! the last refusal is remembered for `/health`. With `redis.wait_replicas`, a write is
//! followed by `WAIT` on its master, and too few replicas is `NotReplicated`.

mod report;
mod scan;

pub use self::report::*;
use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{
    self, Metrics as PoolMetrics, PoolError, QueueMode, RecycleResult, TimeoutType, Timeouts,
};
use redis::{
    AsyncConnectionConfig, FromRedisValue, RedisError,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_routing::{
        MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo,
        SlotAddr,
    },
};

use crate::metrics::{self, ErrorLabels, OperationLabels, RedisMetrics};

type Pool = managed::Pool<Manager>;

/// Opens connections for the pool (`connection.rs`: one server, a Cluster, or the master
/// Sentinel names), each numbered in opening order.
struct Manager {
    topology: Topology,
    config: AsyncConnectionConfig,
    generations: Arc<Generations>,
}

/// Connection numbers: the next to hand out, and the lowest still trusted.
#[derive(Default)]
struct Generations {
    next: AtomicU64,
    trusted_from: AtomicU64,
}

impl Generations {
    /// Retires every connection opened so far: a reset (`CLIENT KILL`, a proxy or network
    /// blip) usually takes them all, and one that survived costs only a reconnect.
    fn retire_all(&self) {
        let next = self.next.load(Ordering::Acquire);
        self.trusted_from.fetch_max(next, Ordering::AcqRel);
    }
}

/// One multiplexed connection and its number.
struct Shared {
    connection: Conn,
    generation: u64,
}

impl managed::Manager for Manager {
    type Type = Shared;
    type Error = RedisError;

    async fn create(&self) -> Result<Shared, RedisError> {
        let generation = self.generations.next.fetch_add(1, Ordering::AcqRel);
        // Boxed: opening a Cluster or Sentinel connection is a large future, and the pool's
        // `get` future (moved on every call, also when an idle connection is at hand) would
        // otherwise carry its 10 KiB.
        let connection = Box::pin(self.topology.connect(&self.config, false)).await?;
        Ok(Shared {
            connection,
            generation,
        })
    }

    async fn recycle(&self, shared: &mut Shared, _: &PoolMetrics) -> RecycleResult<RedisError> {
        if shared.generation < self.generations.trusted_from.load(Ordering::Acquire) {
            return Err(managed::RecycleError::message(
                "retired after a failed call",
            ));
        }
        Ok(())
    }
}

use super::{
    connection::{Conn, Topology},
    keys::Keys,
    script::Invocation,
};
use crate::{config::RedisSettings, store::StoreError};

/// How much longer than the deadline a checkout may take before it counts as Redis not
/// answering rather than the pool being busy.
const CHECKOUT_MARGIN: Duration = Duration::from_millis(20);

/// How long `/health` reports a refusal (out of memory, read-only, ...) after Redis last
/// answered with one.
const CONDITION_REPORTED_FOR: Duration = Duration::from_secs(30);

/// A pooled Redis with a deadline per call. Cheap to clone.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool,
    /// For connections outside the pool (a pub/sub subscriber).
    topology: Topology,
    connect: Duration,
    keys: Keys,
    deadline: Duration,
    generations: Arc<Generations>,
    /// The connection the pool last handed out, while it is trusted: calls take a clone of it
    /// without a checkout (the pool's two lock round trips, and its wait timer). Every call
    /// then shares, and pipelines on, one multiplexed connection; a connection failure retires
    /// it (`Generations`), and the next call checks a fresh one out of the pool.
    current: Arc<RwLock<Option<(Conn, u64)>>>,
    last_refusal: Arc<Mutex<Option<(Refusal, Instant)>>>,
    /// `None` when `metrics.enabled` is false: nothing is measured.
    metrics: Option<RedisMetrics>,
    /// `redis.wait_replicas` (when not 0) and `redis.wait_timeout_ms`.
    wait: Option<(u32, Duration)>,
}

impl RedisPool {
    /// Builds the pool; connections are opened lazily, so this succeeds while Redis is down.
    pub fn new(settings: &RedisSettings) -> Result<Self, String> {
        Self::observed(settings, None)
    }

    /// The pool, recording each call's duration and errors in `metrics`.
    pub fn observed(
        settings: &RedisSettings,
        metrics: Option<RedisMetrics>,
    ) -> Result<Self, String> {
        let topology = Topology::new(settings)?;
        let connect = Duration::from_millis(settings.connect_timeout_ms);
        let generations = Arc::new(Generations::default());
        let manager = Manager {
            topology: topology.clone(),
            generations: generations.clone(),
            // Our own deadline bounds every call; the connection's timeout would only race it.
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect))
                .set_response_timeout(None),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections)
            // The most recently used connection first: calls in flight together then share one
            // connection and go out in one write (FIFO spread them over every connection, one
            // write and one Redis read each).
            .queue_mode(QueueMode::Lifo)
            .timeouts(Timeouts {
                wait: Some(settings.command_timeout()),
                // A Cluster connection waits up to the connect timeout for its slowest node.
                create: Some(connect * 2),
                recycle: Some(settings.command_timeout()),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| format!("cannot configure the Redis pool: {e}"))?;
        Ok(Self {
            pool,
            topology,
            connect,
            keys: match settings.topology() {
                crate::config::RedisTopology::Cluster => Keys::for_cluster(&settings.key_prefix),
                _ => Keys::new(&settings.key_prefix),
            },
            deadline: settings.command_timeout(),
            generations,
            current: Arc::default(),
            last_refusal: Arc::default(),
            metrics,
            wait: (settings.wait_replicas > 0).then(|| {
                (
                    settings.wait_replicas,
                    Duration::from_millis(settings.wait_timeout_ms),
                )
            }),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// `redis.wait_replicas` and `redis.wait_timeout_ms`, when writes wait for replicas.
    pub fn waits_for_replicas(&self) -> Option<(u32, Duration)> {
        self.wait
    }

    /// A new pub/sub connection of its own (subscribed connections cannot be multiplexed).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, StoreError> {
        tokio::time::timeout(self.connect, self.topology.pubsub())
            .await
            .map_err(|_| StoreError::Unavailable("pub/sub connect timed out".into()))?
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.topology.is_cluster()
    }

    /// A connection of its own, outside the pool and without a response deadline: for a
    /// reader that blocks (`XREAD BLOCK`) and so would hold up every call sharing it.
    pub async fn dedicated(&self) -> Result<Conn, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect))
            .set_response_timeout(None);
        tokio::time::timeout(self.connect * 2, self.topology.connect(&config, true))
            .await
            .map_err(|_| StoreError::Unavailable("connect timed out".into()))?
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to Redis: {e}")))
    }

    /// A RESP3 connection of its own to the one server (the near cache's tracking
    /// connection, whose invalidations arrive as pushes through `config`'s push sender).
    /// Not on a Cluster, whose invalidations would come from each node.
    pub async fn dedicated_resp3(
        &self,
        config: AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, StoreError> {
        let unavailable =
            |e: RedisError| StoreError::Unavailable(format!("cannot connect to Redis: {e}"));
        let client = self
            .topology
            .server()
            .await
            .ok_or_else(|| StoreError::Unavailable("no near cache on a Redis Cluster".into()))?
            .map_err(unavailable)?;
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3)).map_err(unavailable)?;
        let config = config
            .set_connection_timeout(Some(self.connect))
            .set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)
    }

    /// A pipeline on a connection of one's own, within the deadline.
    pub async fn timeout_query<T: FromRedisValue>(
        &self,
        connection: &mut (impl ConnectionLike + Send),
        pipe: &redis::Pipeline,
    ) -> Result<T, RedisError> {
        self.within_deadline(pipe.query_async(connection)).await
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let operation = match cmd.args_iter().next() {
            Some(redis::Arg::Simple(name)) => metrics::command_label(name),
            _ => "other",
        };
        let started = Instant::now();
        let (mut conn, generation) = self.checkout(operation).await?;
        let mut args = cmd.args_iter();
        let writes = match args.next() {
            Some(redis::Arg::Simple(name)) => !reads_only(name),
            _ => true,
        };
        let key = match args.next() {
            Some(redis::Arg::Simple(key)) => Some(key),
            _ => None,
        };
        let result = self
            .within_deadline(async {
                let value = cmd.query_async(&mut conn).await?;
                self.replicated(&mut conn, writes, key, value).await
            })
            .await;
        self.confirmed(self.settle(generation, operation, started, result))
    }

    /// Runs `cmd` where `routing` says (on a Cluster; a single server runs it as it is).
    async fn routed<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &redis::Cmd,
        routing: RoutingInfo,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let (mut conn, generation) = self.checkout(operation).await?;
        let result = self
            .within_deadline(async {
                let value = conn.routed(cmd, routing).await?;
                Ok(redis::from_redis_value(value)?)
            })
            .await;
        self.settle(generation, operation, started, result)
    }

    /// Runs a pipeline: many commands, one round trip.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let (mut conn, generation) = self.checkout("pipeline").await?;
        // The first command's key: a pipeline's writes share one hash tag.
        let mut first = pipe.cmd_iter().next().map(|cmd| cmd.args_iter());
        let writes = match first.as_mut().and_then(Iterator::next) {
            Some(redis::Arg::Simple(name)) => !reads_only(name),
            _ => true,
        };
        let key = match first.as_mut().and_then(Iterator::next) {
            Some(redis::Arg::Simple(key)) => Some(key),
            _ => None,
        };
        let result = self
            .within_deadline(async {
                let value = pipe.query_async(&mut conn).await?;
                self.replicated(&mut conn, writes, key, value).await
            })
            .await;
        self.confirmed(self.settle(generation, "pipeline", started, result))
    }

    /// Runs a script by SHA (loading it on the first `NOSCRIPT`).
    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &Invocation<'_>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let (mut conn, generation) = self.checkout(invocation.name()).await?;
        let key = invocation.first_key();
        let result = self
            .within_deadline(async {
                let value = invocation.inner().invoke_async(&mut conn).await?;
                self.replicated(&mut conn, true, key, value).await
            })
            .await;
        self.confirmed(self.settle(generation, invocation.name(), started, result))
    }

    /// With `redis.wait_replicas` set and a call that `writes`: `WAIT` on the connection (on a
    /// Cluster, on the master of `key`'s slot) for that many replicas to hold the write, and
    /// how many did. Otherwise nothing is asked.
    async fn replicated<T>(
        &self,
        conn: &mut Conn,
        writes: bool,
        key: Option<&[u8]>,
        value: T,
    ) -> Result<(T, Option<u64>), RedisError> {
        let Some((replicas, timeout)) = self.wait.filter(|_| writes) else {
            return Ok((value, None));
        };
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout.as_millis() as u64);
        let routing = match key {
            Some(key) => {
                SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master))
            }
            None => SingleNodeRoutingInfo::RandomPrimary,
        };
        // Boxed, like the pool's connection opening: only some deployments wait, and every
        // call's future would otherwise be sized for it.
        let acked = Box::pin(conn.routed(&wait, RoutingInfo::SingleNode(routing))).await?;
        Ok((value, Some(redis::from_redis_value(acked)?)))
    }

    /// The value of a call `replicated` confirmed, or `NotReplicated` when fewer replicas than
    /// `redis.wait_replicas` took the write in time: it happened on the master, but a failover
    /// now could lose it.
    fn confirmed<T>(&self, settled: Result<(T, Option<u64>), StoreError>) -> Result<T, StoreError> {
        let (value, acked) = settled?;
        match (acked, self.wait) {
            (Some(acked), Some((wanted, timeout))) if acked < u64::from(wanted) => {
                self.count_error("WAIT", "not_replicated");
                Err(StoreError::NotReplicated(format!(
                    "the write reached {acked} of {wanted} replicas within {} ms",
                    timeout.as_millis()
                )))
            }
            _ => Ok(value),
        }
    }

    /// Records the call's duration, and sorts its error: connection trouble retires the
    /// connection (and every older one), a refusal is remembered for `/health`, anything else
    /// is logged with the operation's name (the script's, the command's).
    fn settle<T>(
        &self,
        generation: u64,
        operation: &'static str,
        started: Instant,
        result: Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        if let Some(metrics) = &self.metrics {
            metrics
                .duration
                .get_or_create(&OperationLabels { operation })
                .observe(started.elapsed().as_secs_f64());
        }
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let kind = if error.code().is_some_and(|c| Refusal::of(c).is_some()) {
            "refused"
        } else if error.is_timeout() {
            "timeout"
        } else if is_connection_trouble(&error) {
            "connection"
        } else {
            "unexpected"
        };
        self.count_error(operation, kind);
        if let Some(refusal) = error.code().and_then(Refusal::of) {
            if refusal == Refusal::ReadOnly {
                // A replica now: after a failover (Sentinel, or a managed Redis moving its
                // address) the next connection opened finds the new master.
                self.generations.retire_all();
            }
            *self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((refusal, Instant::now()));
            let why = format!("Redis refused the command: {error}");
            return Err(match refusal {
                Refusal::OutOfMemory => StoreError::Full(why),
                _ => StoreError::Refused(why),
            });
        }
        if is_connection_trouble(&error) {
            // Only a connection still trusted retires the others: the failures of a batch of
            // calls on connections retired already do not retire their fresh replacements.
            if generation >= self.generations.trusted_from.load(Ordering::Acquire) {
                self.generations.retire_all();
            }
            return Err(StoreError::Unavailable(error.to_string()));
        }
        tracing::error!(operation, error = %error, "Redis answered with an unexpected error");
        Err(StoreError::Internal(format!("{operation}: {error}")))
    }

    /// `connection`, counting a failure as an error of `operation` (`pool_exhausted` when no
    /// connection came free in time).
    async fn checkout(&self, operation: &'static str) -> Result<(Conn, u64), StoreError> {
        let checked_out = self.connection().await;
        if let Err(e) = &checked_out {
            let kind = match e {
                StoreError::Busy(_) => "pool_exhausted",
                _ => "connection",
            };
            self.count_error(operation, kind);
        }
        checked_out
    }

    fn count_error(&self, operation: &'static str, kind: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .errors
                .get_or_create(&ErrorLabels { operation, kind })
                .inc();
        }
    }

    /// A pooled connection, within the deadline (plus a margin so that the pool's own wait
    /// timeout, also the deadline, fires first). Waiting for a free connection that never comes
    /// is `Busy`; checking or opening one that does not answer is `Unavailable`.
    async fn connection(&self) -> Result<(Conn, u64), StoreError> {
        let trusted_from = self.generations.trusted_from.load(Ordering::Acquire);
        if let Some((conn, generation)) = &*self.current.read().unwrap_or_else(|p| p.into_inner())
            && *generation >= trusted_from
        {
            return Ok((conn.clone(), *generation));
        }
        let checked_out = self.checked_out().await?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(checked_out.clone());
        Ok(checked_out)
    }

    /// A connection from the pool (opened if none is idle).
    async fn checked_out(&self) -> Result<(Conn, u64), StoreError> {
        // Opening a Cluster connection opens one to each node; while a node accepts but does
        // not answer (a stopped master) that takes the connect timeout, so a checkout may
        // wait that much longer.
        let window = match self.is_cluster() {
            true => self.deadline + self.connect * 2 + CHECKOUT_MARGIN,
            false => self.deadline + CHECKOUT_MARGIN,
        };
        let checkout = tokio::time::timeout(window, self.pool.get());
        match checkout.await {
            // A clone of the multiplexed connection; the pooled object goes back at once, so
            // concurrent calls share (and pipeline on) the pool's connections.
            Ok(Ok(shared)) => Ok((shared.connection.clone(), shared.generation)),
            Ok(Err(PoolError::Timeout(TimeoutType::Wait))) => Err(StoreError::Busy(format!(
                "no free Redis connection within {} ms",
                self.deadline.as_millis()
            ))),
            Ok(Err(PoolError::Backend(e))) => Err(StoreError::Unavailable(format!(
                "cannot connect to Redis: {e}"
            ))),
            Ok(Err(other)) => Err(StoreError::Unavailable(format!(
                "cannot get a Redis connection: {other}"
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no Redis connection ready within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }

    /// The call, or a timeout error (a kind of connection trouble) at the deadline.
    async fn within_deadline<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer from Redis within {} ms",
                    self.deadline.as_millis()
                ),
            ))),
        }
    }
}

/// Whether a command only reads (no `WAIT` after it).
fn reads_only(name: &[u8]) -> bool {
    const READS: &[&[u8]] = &[
        b"GET",
        b"MGET",
        b"HGET",
        b"HGETALL",
        b"HMGET",
        b"EXISTS",
        b"PTTL",
        b"TTL",
        b"TYPE",
        b"LLEN",
        b"LRANGE",
        b"ZRANGE",
        b"ZSCORE",
        b"ZCARD",
        b"SMEMBERS",
        b"SCARD",
        b"STRLEN",
        b"SCAN",
        b"XRANGE",
        b"XREVRANGE",
        b"XLEN",
        b"INFO",
        b"PING",
        b"DBSIZE",
        b"CLUSTER",
        b"TIME",
    ];
    READS.iter().any(|read| read.eq_ignore_ascii_case(name))
}

/// Whether an error means the connection (or Redis) failed, rather than Redis answering.
fn is_connection_trouble(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
}
