//! What the pool reports: Redis's refusals, its `INFO` figures and the pool's own, and its reachability.

use super::*;

/// Why a Redis that answers refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `OOM`: `maxmemory` reached under the `noeviction` policy.
    OutOfMemory,
    /// `READONLY`: a replica, e.g. during a failover.
    ReadOnly,
    /// `LOADING`: loading its dataset after a restart.
    Loading,
    /// `MASTERDOWN`, `CLUSTERDOWN`, `TRYAGAIN`: the deployment cannot serve now.
    NotServing,
    /// `BUSY`: a script runs past its time limit.
    Busy,
}

impl Refusal {
    pub(super) fn of(code: &str) -> Option<Self> {
        Some(match code {
            "OOM" => Self::OutOfMemory,
            "READONLY" => Self::ReadOnly,
            "LOADING" => Self::Loading,
            "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN" => Self::NotServing,
            "BUSY" => Self::Busy,
            _ => return None,
        })
    }

    /// The name `/health` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfMemory => "out_of_memory",
            Self::ReadOnly => "read_only",
            Self::Loading => "loading",
            Self::NotServing => "not_serving",
            Self::Busy => "busy_script",
        }
    }
}

/// What `GET /health` reports of Redis.
#[derive(Debug, Clone, Default)]
pub struct RedisInfo {
    pub latency_ms: f64,
    pub redis_version: Option<String>,
    pub connected_clients: Option<u64>,
    pub used_memory_human: Option<String>,
    pub used_memory: Option<u64>,
    /// 0: no limit.
    pub maxmemory: Option<u64>,
    pub maxmemory_policy: Option<String>,
    pub evicted_keys: Option<u64>,
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

impl RedisPool {
    /// The refusal Redis last answered with, if within `CONDITION_REPORTED_FOR`.
    pub fn recent_refusal(&self) -> Option<Refusal> {
        self.last_refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|(_, at)| at.elapsed() < CONDITION_REPORTED_FOR)
            .map(|(refusal, _)| refusal)
    }

    /// A `PING`: what the failover probe and readiness use.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let ping = redis::cmd("PING");
        let pong: String = if self.is_cluster() {
            // Every master that serves slots (not the replicas, nor a failed master its
            // replica has replaced).
            let masters = RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllMasters,
                Some(ResponsePolicy::AllSucceeded),
            ));
            self.routed("PING", &ping, masters).await?
        } else {
            self.query(&ping).await?
        };
        if pong != "PONG" {
            return Err(StoreError::Internal(format!("PING answered {pong:?}")));
        }
        Ok(started.elapsed())
    }

    /// Whether Redis answers a PING: on a connection failure once more, on a fresh connection
    /// (the failed one is retired), so a reset connection does not read as Redis being down.
    pub async fn reachable(&self) -> Result<Duration, StoreError> {
        match self.ping().await {
            Err(StoreError::Unavailable(_)) => self.ping().await,
            answered => answered,
        }
    }

    /// Server figures for `/health`: latency, version, clients, memory, key count.
    pub async fn info(&self) -> Result<RedisInfo, StoreError> {
        let latency = self.ping().await?;
        let mut info = redis::cmd("INFO");
        info.arg("server").arg("clients").arg("memory").arg("stats");
        let (info, keys): (String, u64) = if self.is_cluster() {
            // One master's figures, and the key count summed over the masters.
            let one = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
            let info = self.routed("INFO", &info, one).await?;
            (info, self.query(&redis::cmd("DBSIZE")).await?)
        } else {
            let mut pipe = redis::pipe();
            pipe.add_command(info).cmd("DBSIZE");
            self.pipeline(&pipe).await?
        };
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
            used_memory: field("used_memory").and_then(|v| v.parse().ok()),
            maxmemory: field("maxmemory").and_then(|v| v.parse().ok()),
            maxmemory_policy: field("maxmemory_policy"),
            evicted_keys: field("evicted_keys").and_then(|v| v.parse().ok()),
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
