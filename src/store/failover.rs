//! Which backend serves a call: the one place that knows about `backend.mode` and about
//! what each capability does while Redis is down ([`DEGRADATION`]).
//!
//! - `memory`: the memory adapters alone, called directly; Redis is never contacted.
//! - `redis`: Redis alone, and no memory store is built. While Redis is down every call fails
//!   fast with `StoreError::Unavailable` (503 `backend_unavailable`) instead of waiting on it.
//! - `auto`: Redis while it answers. A call whose Redis round trip fails or misses its deadline,
//!   and for which a fresh connection cannot PING Redis either, turns the state degraded (a
//!   reset connection is not an outage: see `Failover::route`). Then each capability does what
//!   the table says: served from memory, or refused with 503. When the probe sees Redis answer
//!   again, the usage journal is replayed and what memory took is handed to Redis
//!   ([`super::handback`], unless `backend.handback = false`) before traffic moves back; then
//!   the memory backend is emptied, so nothing it held can be served by a later outage.
//!
//! The probe PINGs Redis every `backend.probe_interval_ms` in both Redis modes, so an outage is
//! also noticed between requests and `/health` tells the truth. When a request finds Redis down
//! the probe runs at once, and while Redis stays down it retries after 50 ms, doubling up to
//! the interval: a single slow or failed call costs a moment of memory (auto) or 503s (redis),
//! not a whole interval.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::{
    StoreError, StoreResult, Stores,
    handback::{HandBack, Note, Pair},
    memory::MemoryBackend,
    redis::{
        RedisPool,
        pool::{PoolFigures, RedisInfo, Refusal},
    },
};
use crate::capabilities::{
    agent_state::port::AgentStateStore, cache::port::CacheStore, lock::port::LockStore,
    pending_action::port::PendingActionStore, rate_limit::port::RateLimitStore,
    session::port::SessionStore, topic::port::TopicStore, usage::port::UsageStore,
};
use crate::{
    capabilities::{
        pending_action::model::TombstoneLife,
        rate_limit::model::{Check, Decision, RateLimitKey},
    },
    config::{BackendMode, LockDegraded, RateLimitDegraded, Settings},
    domain::ids::Tenant,
    metrics::{BackendLabels, BackendMetrics, Metrics, ModeLabels, StateLabels, SwitchLabels},
};

/// A capability, as the degradation table and `/health` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Cache,
    AgentStates,
    PendingActions,
    Sessions,
    RateLimits,
    Locks,
    Queues,
    Topics,
    Usage,
    Budgets,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::AgentStates => "agent_states",
            Self::PendingActions => "pending_actions",
            Self::Sessions => "sessions",
            Self::RateLimits => "rate_limits",
            Self::Locks => "locks",
            Self::Queues => "queues",
            Self::Topics => "topics",
            Self::Usage => "usage",
            Self::Budgets => "budgets",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        DEGRADATION
            .iter()
            .map(|row| row.capability)
            .find(|c| c.name() == name)
    }
}

/// What a capability does in `auto` mode while Redis is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhileDegraded {
    /// Served by the memory backend; `/health` says `degraded`.
    ServeFromMemory,
    /// 503 `backend_unavailable` with `Retry-After`: for state that two instances, each on its
    /// own memory, would get wrong (a lock granted twice, jobs that vanish on recovery).
    Refuse,
    /// Answered as if nothing limited it (rate limits that fail open), saying `degraded`.
    Allow,
    /// Taken by memory and journalled; the journal is replayed to Redis when it returns,
    /// before traffic goes back (usage events: nothing metered is lost).
    JournalAndReplay,
}

impl WhileDegraded {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServeFromMemory => "serve_from_memory",
            Self::Refuse => "refuse",
            Self::Allow => "allow",
            Self::JournalAndReplay => "journal_and_replay",
        }
    }

    /// Whether the memory backend takes the capability's calls.
    fn uses_memory(self) -> bool {
        matches!(self, Self::ServeFromMemory | Self::JournalAndReplay)
    }
}

/// One row of the degradation table.
pub struct Degradation {
    pub capability: Capability,
    pub while_degraded: WhileDegraded,
    pub why: &'static str,
    /// The setting that chooses the policy instead of `while_degraded`, for capabilities that
    /// have one (`rate_limits.degraded`, `locks.degraded`, `budgets.degraded`).
    pub configured: Option<fn(&Settings) -> WhileDegraded>,
}

/// What each capability does while Redis is down in `auto` mode (the README's degradation
/// table repeats it). A capability listed in `backend.refuse_while_degraded` refuses instead;
/// a row with a setting (`configured`) follows it.
pub const DEGRADATION: [Degradation; 10] = [
    Degradation {
        capability: Capability::Cache,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "availability first: a cache miss is the caller's normal case",
        configured: None,
    },
    Degradation {
        capability: Capability::Sessions,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "availability first: signed-in users stay signed in on this instance",
        configured: None,
    },
    Degradation {
        capability: Capability::AgentStates,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "availability first: a conversation goes on from what this instance holds",
        configured: None,
    },
    Degradation {
        capability: Capability::PendingActions,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "a token lives in the one store that made it, so exactly-once holds",
        configured: None,
    },
    Degradation {
        capability: Capability::RateLimits,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "per-instance limits (`rate_limits.degraded`: local, allow or refuse): the caller \
              picks fail-open or fail-closed",
        configured: Some(|settings| match settings.rate_limits.degraded {
            RateLimitDegraded::Local => WhileDegraded::ServeFromMemory,
            RateLimitDegraded::Allow => WhileDegraded::Allow,
            RateLimitDegraded::Refuse => WhileDegraded::Refuse,
        }),
    },
    Degradation {
        capability: Capability::Locks,
        while_degraded: WhileDegraded::Refuse,
        why: "two instances on their own memory would grant one lock twice (`locks.degraded = \
              \"local\"` serves from memory, for a single instance)",
        configured: Some(|settings| local_or_refuse(settings.locks.degraded)),
    },
    Degradation {
        capability: Capability::Queues,
        while_degraded: WhileDegraded::Refuse,
        why: "a job accepted into memory would vanish, or run twice, when Redis returns",
        configured: None,
    },
    Degradation {
        capability: Capability::Topics,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "local fan-out from memory; every open stream gets a reset at each switch, since ids \
              of one backend mean nothing in the other",
        configured: None,
    },
    Degradation {
        capability: Capability::Usage,
        while_degraded: WhileDegraded::JournalAndReplay,
        why: "nothing metered is lost: events are counted in memory and replayed to Redis \
              (deduplicated by event_id) before traffic returns; reading totals refuses",
        configured: None,
    },
    Degradation {
        capability: Capability::Budgets,
        while_degraded: WhileDegraded::Refuse,
        why: "two instances on their own memory would each grant the whole budget \
              (`budgets.degraded = \"local\"` serves from memory, for a single instance)",
        configured: Some(|settings| local_or_refuse(settings.budgets.degraded)),
    },
];

/// `local` (memory) or `refuse`: the settings of locks and budgets.
fn local_or_refuse(degraded: LockDegraded) -> WhileDegraded {
    match degraded {
        LockDegraded::Refuse => WhileDegraded::Refuse,
        LockDegraded::Local => WhileDegraded::ServeFromMemory,
    }
}

/// The usage journal of the memory fallback and the Redis store it is replayed into.
struct Replay {
    journal: Arc<crate::capabilities::usage::memory::Journal>,
    redis: Arc<dyn UsageStore>,
}

impl Replay {
    /// Counts every journalled event in Redis (each once: Redis deduplicates by `event_id`).
    /// On the first failure the rest goes back to the journal, to be tried again.
    async fn run(&self) -> StoreResult<usize> {
        let mut entries = self.journal.take().into_iter();
        let mut replayed = 0;
        while let Some(entry) = entries.next() {
            let counted = self
                .redis
                .record(&entry.tenant, &entry.subject, &entry.event, entry.limits)
                .await;
            if let Err(e) = counted {
                let mut rest = vec![entry];
                rest.extend(entries);
                self.journal.put_back(rest);
                return Err(e);
            }
            replayed += 1;
        }
        Ok(replayed)
    }
}

/// Whether Redis answers: what decides between up and down. `RedisPool` in the service, a fake
/// in the tests of the state machine.
#[async_trait]
pub trait Reachability: Send + Sync {
    async fn reachable(&self) -> StoreResult<Duration>;
}

#[async_trait]
impl Reachability for RedisPool {
    async fn reachable(&self) -> StoreResult<Duration> {
        RedisPool::reachable(self).await
    }
}

/// The backend state shared by every failover store and the health routes.
pub struct Failover {
    mode: BackendMode,
    /// The pool, for the figures of the health report.
    pool: Option<RedisPool>,
    redis: Option<Arc<dyn Reachability>>,
    /// Built only when some capability is served from it.
    memory: Option<MemoryBackend>,
    policies: Vec<(Capability, WhileDegraded)>,
    redis_down: AtomicBool,
    degraded_since: Mutex<Option<OffsetDateTime>>,
    /// Wakes the probe when a request finds Redis down.
    recheck: Arc<Notify>,
    /// Time spent degraded in stretches that have ended.
    degraded_before: Mutex<Duration>,
    /// What memory journalled while degraded, to hand to Redis when it returns.
    replay: Option<Replay>,
    /// What memory took while degraded, to write to Redis when it returns
    /// (`backend.handback`); `None` drops it instead.
    handback: Option<HandBack>,
    metrics: BackendMetrics,
    /// Counts the switches between Redis and memory: open topic streams end with a reset at
    /// each one.
    pub(crate) switches: tokio::sync::watch::Sender<u64>,
}

/// Everything `/health` reports of the backends.
#[derive(Debug, Clone)]
pub struct BackendReport {
    pub mode: BackendMode,
    /// Whether calls go to Redis now (false in `memory` mode and while degraded).
    pub active_is_redis: bool,
    pub redis_down: bool,
    pub degraded_since: Option<OffsetDateTime>,
    /// Bytes the memory backend holds and its bound, when there is one.
    pub memory: Option<(usize, usize)>,
    pub redis: Option<RedisReport>,
    /// What each capability does while degraded (in `redis` mode: refuse).
    pub capabilities: Vec<(Capability, WhileDegraded)>,
}

#[derive(Debug, Clone)]
pub struct RedisReport {
    /// `None` when Redis did not answer.
    pub info: Option<RedisInfo>,
    pub pool: PoolFigures,
    pub condition: Option<Refusal>,
}

/// The policy of each capability for these settings.
fn policies(settings: &Settings) -> Vec<(Capability, WhileDegraded)> {
    DEGRADATION
        .iter()
        .map(|row| {
            let refused = settings
                .backend
                .refuse_while_degraded
                .iter()
                .any(|name| name == row.capability.name());
            let policy = if refused || settings.backend.mode == BackendMode::Redis {
                WhileDegraded::Refuse
            } else {
                row.configured
                    .map_or(row.while_degraded, |configured| configured(settings))
            };
            (row.capability, policy)
        })
        .collect()
}

impl Failover {
    /// The state machine on its own: `redis` decides up and down, `memory` serves the
    /// capabilities whose policy says so.
    pub fn new(
        mode: BackendMode,
        redis: Option<Arc<dyn Reachability>>,
        memory: Option<MemoryBackend>,
        policies: Vec<(Capability, WhileDegraded)>,
    ) -> Self {
        Self {
            mode,
            pool: None,
            redis,
            memory,
            policies,
            redis_down: AtomicBool::new(false),
            degraded_since: Mutex::new(None),
            recheck: Arc::new(Notify::new()),
            degraded_before: Mutex::new(Duration::ZERO),
            replay: None,
            handback: None,
            metrics: BackendMetrics::default(),
            switches: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Tells every open topic stream that the backend switched.
    fn announce_switch(&self) {
        self.switches.send_modify(|count| *count += 1);
    }

    /// Builds the stores for `settings.backend.mode`, counting in `metrics`. In the Redis modes
    /// a probe task runs until the returned `Failover` is dropped. Must be called inside a
    /// tokio runtime.
    pub fn build(
        settings: &Settings,
        metrics: &mut Metrics,
    ) -> Result<(Stores, Arc<Failover>), String> {
        let policies = policies(settings);
        let bound = settings.memory.bound();
        if settings.backend.mode == BackendMode::Memory {
            metrics.register_memory();
            let memory = MemoryBackend::new(bound);
            let stores = memory.stores();
            let mut failover = Failover::new(BackendMode::Memory, None, Some(memory), policies);
            failover.metrics = metrics.backend.clone();
            return Ok((stores, Arc::new(failover)));
        }
        metrics.register_redis();
        let observed = settings.metrics.enabled.then(|| metrics.redis.clone());
        let pool = RedisPool::observed(&settings.redis, observed)?;
        let serves = |capability: Capability| {
            policies
                .iter()
                .any(|(c, policy)| *c == capability && policy.uses_memory())
        };
        let memory = policies
            .iter()
            .any(|(_, policy)| policy.uses_memory())
            .then(|| {
                metrics.register_memory();
                MemoryBackend::new(bound)
            });
        let mut failover = Failover::new(
            settings.backend.mode,
            Some(Arc::new(pool.clone())),
            memory.clone(),
            policies.clone(),
        );
        failover.pool = Some(pool.clone());
        failover.metrics = metrics.backend.clone();
        let redis = super::redis::stores_with(&pool, settings);
        let fallback = |capability| memory.as_ref().filter(|_| serves(capability));
        // Usage (journalled) and local budgets share one memory store, so that a commit while
        // degraded counts in the same totals and the same journal.
        let journal = Arc::new(crate::capabilities::usage::memory::Journal::default());
        let memory_usage = fallback(Capability::Usage).map(|m| {
            failover.replay = Some(Replay {
                journal: journal.clone(),
                redis: redis.usage.clone(),
            });
            Arc::new(crate::capabilities::usage::memory::MemoryUsage::journalled(
                m,
                journal.clone(),
            ))
        });
        let memory_cache = fallback(Capability::Cache).map(|m| {
            Arc::new(crate::capabilities::cache::memory::MemoryCache::new(m)) as Arc<dyn CacheStore>
        });
        let memory_actions = fallback(Capability::PendingActions).map(|m| {
            Arc::new(crate::capabilities::pending_action::memory::MemoryPendingActions::new(m))
                as Arc<dyn PendingActionStore>
        });
        let memory_states = fallback(Capability::AgentStates).map(|m| {
            Arc::new(crate::capabilities::agent_state::memory::MemoryAgentStates::new(m))
                as Arc<dyn AgentStateStore>
        });
        let memory_sessions = fallback(Capability::Sessions).map(|m| {
            Arc::new(crate::capabilities::session::memory::MemorySessions::new(m))
                as Arc<dyn SessionStore>
        });
        if settings.backend.mode == BackendMode::Auto && settings.backend.handback {
            fn pair<S: ?Sized>(memory: &Option<Arc<S>>, redis: &Arc<S>) -> Option<Pair<S>> {
                memory.as_ref().map(|memory| Pair {
                    memory: memory.clone(),
                    redis: redis.clone(),
                })
            }
            failover.handback = Some(HandBack {
                ledger: Default::default(),
                cache: pair(&memory_cache, &redis.cache),
                sessions: pair(&memory_sessions, &redis.sessions),
                agent_states: pair(&memory_states, &redis.agent_states),
                pending_actions: pair(&memory_actions, &redis.pending_actions),
                session_rules: settings.sessions.rules(),
                tombstone: TombstoneLife::from_setting(settings.pending_actions.tombstone_seconds),
                counts: failover.metrics.handback.clone(),
            });
        }
        let failover = Arc::new(failover);
        tokio::spawn(probe(
            Arc::downgrade(&failover),
            failover.recheck.clone(),
            Duration::from_millis(settings.backend.probe_interval_ms),
        ));
        let memory_budgets = fallback(Capability::Budgets).map(|m| match &memory_usage {
            Some(usage) => usage.clone(),
            None => Arc::new(crate::capabilities::usage::memory::MemoryUsage::new(m)),
        });
        let memory_locks = fallback(Capability::Locks).map(|m| {
            Arc::new(crate::capabilities::lock::memory::MemoryLocks::new(m)) as Arc<dyn LockStore>
        });
        let memory_topics = fallback(Capability::Topics).map(|m| {
            Arc::new(crate::capabilities::topic::memory::MemoryTopics::new(m))
                as Arc<dyn TopicStore>
        });
        // Each capability's Redis store with its memory store (when it serves from memory).
        macro_rules! wrap {
            ($redis:expr, $memory:expr) => {
                Arc::new(FailoverStore::new(&failover, $redis, $memory))
            };
        }
        let stores = Stores {
            cache: wrap!(redis.cache, memory_cache),
            pending_actions: wrap!(redis.pending_actions, memory_actions),
            agent_states: wrap!(redis.agent_states, memory_states),
            sessions: wrap!(redis.sessions, memory_sessions),
            locks: wrap!(redis.locks, memory_locks),
            queues: wrap!(redis.queues, None),
            topics: wrap!(redis.topics, memory_topics),
            usage: wrap!(redis.usage, memory_usage.map(|m| m as _)),
            budgets: wrap!(redis.budgets, memory_budgets.map(|m| m as _)),
            rate_limits: Arc::new(RateLimitFailover {
                fail_open: policies.contains(&(Capability::RateLimits, WhileDegraded::Allow)),
                store: FailoverStore::new(
                    &failover,
                    redis.rate_limits,
                    fallback(Capability::RateLimits).map(|m| {
                        Arc::new(crate::capabilities::rate_limit::memory::MemoryRateLimits::new(m))
                            as _
                    }),
                ),
            }),
        };
        Ok((stores, failover))
    }

    pub fn mode(&self) -> BackendMode {
        self.mode
    }

    /// Whether calls are served by memory now (`auto` mode while Redis is down).
    pub fn is_degraded(&self) -> bool {
        self.mode == BackendMode::Auto && self.is_down()
    }

    pub(crate) fn is_down(&self) -> bool {
        self.redis_down.load(Ordering::Acquire)
    }

    /// What `/health` shows; asks Redis for its figures when there is one.
    pub async fn report(&self) -> BackendReport {
        let redis = match &self.pool {
            None => None,
            Some(pool) => Some(RedisReport {
                info: pool.info().await.ok(),
                pool: pool.figures(),
                condition: pool.recent_refusal(),
            }),
        };
        let down = self.is_down();
        BackendReport {
            mode: self.mode,
            active_is_redis: self.mode != BackendMode::Memory && !down,
            redis_down: down,
            degraded_since: *self
                .degraded_since
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            memory: self.memory.as_ref().map(MemoryBackend::usage),
            redis,
            capabilities: self.policies.clone(),
        }
    }

    /// Sets the gauges that describe the backend now, for a scrape of `/metrics`: one `INFO`
    /// round trip while Redis answers.
    pub async fn observe(&self) {
        let m = &self.metrics;
        let down = self.is_down();
        let on_redis = self.mode != BackendMode::Memory && !down;
        // In `redis` mode memory serves nothing, down or not: neither backend is active then.
        let on_memory = !on_redis && self.memory.is_some();
        for (backend, on) in [("redis", on_redis), ("memory", on_memory)] {
            m.active
                .get_or_create(&BackendLabels { backend })
                .set(i64::from(on));
        }
        m.mode
            .get_or_create(&ModeLabels {
                mode: self.mode.as_str(),
            })
            .set(1);
        m.degraded.set(i64::from(down));
        let current = self
            .degraded_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map_or(Duration::ZERO, |since| {
                (OffsetDateTime::now_utc() - since).unsigned_abs()
            });
        let before = *self
            .degraded_before
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.degraded_seconds.set((before + current).as_secs_f64());
        if let Some(pool) = &self.pool {
            let info = if down { None } else { pool.info().await.ok() };
            if let Some(info) = info {
                let gauge =
                    |value: Option<u64>| i64::try_from(value.unwrap_or(0)).unwrap_or(i64::MAX);
                m.redis_used_bytes.set(gauge(info.used_memory));
                m.redis_max_bytes.set(gauge(info.maxmemory));
                m.redis_evicted_keys.set(gauge(info.evicted_keys));
            }
            let figures = pool.figures();
            for (state, value) in [
                ("max", figures.max_size),
                ("open", figures.size),
                ("available", figures.available),
                ("waiting", figures.waiting),
            ] {
                m.pool
                    .get_or_create(&StateLabels { state })
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        if let Some(memory) = &self.memory {
            let (used, max) = memory.usage();
            let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
            m.memory_bytes.set(gauge(used));
            m.memory_max_bytes.set(gauge(max));
            m.memory_entries.set(gauge(memory.entries()));
        }
    }

    /// Whether requests can be served: always, except in `redis` mode while Redis is down.
    pub async fn ready(&self) -> bool {
        match (&self.redis, self.mode) {
            (Some(redis), BackendMode::Redis) => redis.reachable().await.is_ok(),
            _ => true,
        }
    }

    /// Serves one store call: on Redis (`on_redis` makes the call; it may be made twice) or,
    /// while Redis is down, on memory when the capability is served from it (`on_memory`), or
    /// else `Unavailable`.
    ///
    /// A connection error is not yet an outage: the pool has retired the failed connection, a
    /// call that is safe to repeat (`repeatable`) is made once more on a fresh one, and only
    /// when a fresh connection cannot even PING is Redis declared down. A call that is not safe
    /// to repeat (an `incr`, an append, a confirm) whose connection broke mid-call while Redis
    /// still answers gets `Interrupted`: it may have taken effect, and it is neither repeated
    /// nor handed to memory, where a write would be acknowledged and then lost.
    pub(crate) async fn route<T, R, RF, M, MF>(
        &self,
        repeatable: bool,
        on_redis: R,
        on_memory: Option<M>,
    ) -> StoreResult<T>
    where
        R: Fn() -> RF,
        RF: Future<Output = StoreResult<T>>,
        M: FnOnce() -> MF,
        MF: Future<Output = StoreResult<T>>,
    {
        if self.is_down() {
            return degraded(on_memory, "Redis is down".into()).await;
        }
        let mut why = match on_redis().await {
            Err(StoreError::Unavailable(why)) => why,
            // Waited for a pooled connection: if the calls holding them found Redis down
            // meanwhile, this one is degraded too.
            Err(StoreError::Busy(why)) if self.is_down() && on_memory.is_some() => {
                return degraded(on_memory, why).await;
            }
            other => return other,
        };
        if repeatable {
            match on_redis().await {
                Err(StoreError::Unavailable(again)) => why = again,
                other => return other,
            }
        }
        if let Some(redis) = &self.redis
            && redis.reachable().await.is_ok()
        {
            return Err(StoreError::Interrupted(why));
        }
        if self.mark_down(&why) {
            self.recheck.notify_one();
        }
        degraded(on_memory, why).await
    }

    fn count_switch(&self, to: &'static str) {
        self.metrics
            .switches
            .get_or_create(&SwitchLabels { to })
            .inc();
    }

    /// Replays the usage journal to Redis; a failure keeps the rest journalled.
    async fn replay_journal(&self) -> StoreResult<()> {
        let Some(replay) = &self.replay else {
            return Ok(());
        };
        match replay.run().await {
            Ok(0) => Ok(()),
            Ok(replayed) => {
                tracing::info!(
                    replayed,
                    "usage events taken while degraded are now in Redis"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "replaying usage events to Redis failed; still degraded");
                Err(e)
            }
        }
    }

    /// Notes what a call served by memory wrote, for the hand-back.
    pub(crate) fn note(&self, notes: impl IntoIterator<Item = Note>) {
        if let Some(handback) = &self.handback {
            handback.ledger.note(notes);
        }
    }

    /// Writes what memory took while degraded to Redis; a failure keeps the rest noted.
    async fn hand_back(&self) -> StoreResult<()> {
        let Some(handback) = &self.handback else {
            return Ok(());
        };
        if handback.ledger.is_empty() {
            return Ok(());
        }
        match handback.run().await {
            Ok(report) => {
                tracing::info!(
                    written = report.written,
                    deleted = report.deleted,
                    conflicts = report.conflicts,
                    failed = report.failed,
                    "what memory took while degraded is now in Redis"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "handing memory's writes to Redis failed; still degraded");
                Err(e)
            }
        }
    }

    /// What Redis must take before traffic moves back to it: the usage journal, then the
    /// hand-back.
    async fn catch_up(&self) -> StoreResult<()> {
        self.replay_journal().await?;
        self.hand_back().await
    }

    /// Returns whether Redis was up until now.
    fn mark_down(&self, why: &str) -> bool {
        let was_up = !self.redis_down.swap(true, Ordering::AcqRel);
        if was_up {
            if self.memory.is_some() {
                // In `redis` mode nothing switches: every call is refused until Redis returns.
                self.count_switch("memory");
                self.announce_switch();
            }
            *self
                .degraded_since
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(OffsetDateTime::now_utc());
            match &self.memory {
                Some(_) => tracing::warn!(
                    reason = why,
                    "Redis unavailable: degraded (serving from memory where the capability allows)"
                ),
                None => tracing::error!(reason = why, "Redis unavailable: answering 503"),
            }
        }
        was_up
    }

    /// Moves traffic back to Redis. Memory is emptied (after the hand-back, when there is
    /// one), so what it held can never be served by a later outage.
    async fn mark_up(&self) {
        if self.redis_down.load(Ordering::Acquire) {
            if self.handback.is_none()
                && let Some(memory) = &self.memory
            {
                // Empty memory before traffic returns to Redis, so a request never sees a mix.
                memory.clear();
            }
            self.redis_down.store(false, Ordering::Release);
            if self.memory.is_some() {
                self.announce_switch();
            }
            let since = self
                .degraded_since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(since) = since {
                *self
                    .degraded_before
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) +=
                    (OffsetDateTime::now_utc() - since).unsigned_abs();
            }
            if self.memory.is_some() {
                self.count_switch("redis");
            }
            tracing::info!("Redis answers again: traffic is back on Redis");
            if self.handback.is_some() {
                // Calls that were given to memory just before the switch finish in memory
                // (no I/O there); then what they wrote is handed over, and memory emptied.
                tokio::time::sleep(SETTLE).await;
                let late = self.catch_up().await;
                match (&self.memory, late) {
                    (Some(memory), Ok(())) => memory.clear(),
                    (_, Err(e)) => tracing::warn!(
                        error = %e,
                        "writes that memory took during the switch back are kept for the next \
                         recovery"
                    ),
                    _ => {}
                }
            }
        }
    }
}

/// How long the switch back to Redis waits for calls already given to memory to finish
/// before their writes are handed over and memory is emptied.
const SETTLE: Duration = Duration::from_millis(100);

/// The first retry after a failed PING; each further one waits twice as long, up to the
/// probe interval.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// PINGs Redis at once, then every `every`; while Redis is down, after `FIRST_RETRY`, doubling
/// up to `every`. A request that finds Redis down wakes it early through `recheck`.
async fn probe(failover_weak: std::sync::Weak<Failover>, recheck: Arc<Notify>, every: Duration) {
    let mut wait = Duration::ZERO;
    // The last wait after a failed PING; `None` while Redis answers.
    let mut retry: Option<Duration> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = recheck.notified() => {}
        }
        let Some(failover) = failover_weak.upgrade() else {
            return;
        };
        let Some(redis) = failover.redis.clone() else {
            return;
        };
        drop(failover);
        let answered = redis.reachable().await;
        let Some(failover) = failover_weak.upgrade() else {
            return;
        };
        let outcome = if answered.is_ok() { "up" } else { "down" };
        failover.metrics.probes.count(outcome);
        let answered = match answered {
            Ok(latency) if failover.is_down() => failover.catch_up().await.map(|_| latency),
            other => other,
        };
        match answered {
            Ok(_) => {
                failover.mark_up().await;
                // What memory took while the replay ran (calls already under way).
                if failover.replay_journal().await.is_err() {
                    tracing::warn!("usage journalled during the recovery is kept for the next one");
                }
                retry = None;
                wait = every;
            }
            Err(e) => {
                failover.mark_down(&e.to_string());
                let next = retry.map_or(FIRST_RETRY, |r| r * 2).min(every);
                retry = Some(next);
                wait = next;
            }
        }
    }
}

/// Serves a call while degraded: from memory when the capability allows, else `Unavailable`.
async fn degraded<T, M, MF>(on_memory: Option<M>, why: String) -> StoreResult<T>
where
    M: FnOnce() -> MF,
    MF: Future<Output = StoreResult<T>>,
{
    match on_memory {
        Some(on_memory) => on_memory().await,
        None => Err(StoreError::Unavailable(why)),
    }
}

/// One capability's store with failover: a Redis adapter, the memory adapter when the
/// capability is served from memory while degraded, and the shared state.
pub struct FailoverStore<S: ?Sized> {
    pub(crate) redis: Arc<S>,
    pub(crate) memory: Option<Arc<S>>,
    pub(crate) failover: Arc<Failover>,
}

impl<S: ?Sized> FailoverStore<S> {
    fn new(failover: &Arc<Failover>, redis: Arc<S>, memory: Option<Arc<S>>) -> Self {
        Self {
            redis,
            memory,
            failover: failover.clone(),
        }
    }
}

/// Implements a store trait for `FailoverStore` by routing each method through
/// `Failover::route`. `#[repeat(expr)]` says whether a call is safe to make twice (same effect,
/// same answer); it may look at the arguments. `#[memory(false)]` keeps a method on Redis even
/// where the capability has a memory store. The arguments are references and `Copy` values:
/// a second call or the memory call copies nothing. `#[note(when => notes)]` names what a call
/// served by memory wrote, for the hand-back: `when` looks at the call's answer, `notes` are
/// [`Note`]s built from the arguments.
macro_rules! route_each_method {
    ($store:ident {
        $(
            #[repeat($repeat:expr)]
            $(#[memory($serves:expr)])?
            $(#[note($when:expr => $notes:expr)])?
            async fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty;
        )*
    } $(also { $($also:tt)* })?) => {
        #[::async_trait::async_trait]
        impl $store for $crate::store::failover::FailoverStore<dyn $store> {
            $($($also)*)?

            $(
                #[allow(clippy::clone_on_copy, clippy::redundant_closure_call)]
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let repeatable: bool = $repeat;
                    self.failover
                        .route(
                            repeatable,
                            || self.redis.$name($(Clone::clone(&$arg)),*),
                            self.memory.as_ref()$(.filter(|_| $serves))?.map(|memory| {
                                move || async move {
                                    let answer = memory.$name($($arg),*).await;
                                    $(
                                        if let Ok(out) = &answer
                                            && ($when)(out)
                                        {
                                            self.failover.note($notes);
                                        }
                                    )?
                                    answer
                                }
                            }),
                        )
                        .await
                }
            )*
        }
    };
}

pub(crate) use route_each_method;

/// Rate limits with failover: while degraded, a check is decided by this instance's memory
/// (`local`) and says `degraded`, or allowed without counting (`allow`), or refused.
struct RateLimitFailover {
    fail_open: bool,
    store: FailoverStore<dyn RateLimitStore>,
}

#[async_trait]
impl RateLimitStore for RateLimitFailover {
    async fn check(
        &self,
        tenant: &Tenant,
        key: &RateLimitKey,
        check: &Check,
    ) -> StoreResult<Decision> {
        let store = &self.store;
        let local = store.memory.as_ref().map(|memory| {
            move || async move {
                let mut decision = memory.check(tenant, key, check).await?;
                decision.degraded = true;
                Ok(decision)
            }
        });
        let open = self
            .fail_open
            .then_some(|| async { Ok(Decision::fail_open(check)) });
        // A consuming check is not safe to repeat: a second script run would count twice.
        let repeatable = !check.consumes();
        let on_redis = || store.redis.check(tenant, key, check);
        match (local, open) {
            (Some(local), _) => {
                store
                    .failover
                    .route(repeatable, on_redis, Some(local))
                    .await
            }
            (None, open) => store.failover.route(repeatable, on_redis, open).await,
        }
    }

    async fn reset(&self, tenant: &Tenant, key: &RateLimitKey) -> StoreResult<()> {
        let store = &self.store;
        let local = store
            .memory
            .as_ref()
            .map(|memory| move || memory.reset(tenant, key));
        store
            .failover
            .route(true, || store.redis.reset(tenant, key), local)
            .await
    }
}

#[cfg(test)]
mod tests {
    //! The state machine against a fake Redis that fails on command: mode × Redis up, down,
    //! hung or reset × policy, the probe's back-off, and the return to Redis.

    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::{
        capabilities::cache::{model::CacheValue, port::PutCondition},
        domain::{
            ids::{CacheKey, Namespace},
            ttl::Expiry,
        },
    };

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        Up,
        Down,
        /// Answers nothing until the deadline.
        Hung,
        /// The next call's connection breaks; Redis itself answers.
        ResetOnce,
    }

    const DEADLINE: Duration = Duration::from_millis(250);

    #[derive(Default)]
    struct FakeRedis {
        fault: Mutex<Option<Fault>>,
        calls: AtomicUsize,
        pings: AtomicUsize,
    }

    impl FakeRedis {
        fn set(&self, fault: Fault) {
            *self.fault.lock().unwrap() = Some(fault);
        }

        fn fault(&self) -> Fault {
            self.fault.lock().unwrap().unwrap_or(Fault::Up)
        }

        async fn call(&self) -> StoreResult<&'static str> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.fault() {
                Fault::Up => Ok("redis"),
                Fault::Down => Err(StoreError::Unavailable("connection refused".into())),
                Fault::Hung => {
                    tokio::time::sleep(DEADLINE).await;
                    Err(StoreError::Unavailable("no answer".into()))
                }
                Fault::ResetOnce => {
                    self.set(Fault::Up);
                    Err(StoreError::Unavailable("connection reset".into()))
                }
            }
        }
    }

    #[async_trait]
    impl Reachability for FakeRedis {
        async fn reachable(&self) -> StoreResult<Duration> {
            self.pings.fetch_add(1, Ordering::SeqCst);
            match self.fault() {
                Fault::Up | Fault::ResetOnce => Ok(Duration::from_millis(1)),
                Fault::Down => Err(StoreError::Unavailable("connection refused".into())),
                Fault::Hung => {
                    tokio::time::sleep(DEADLINE).await;
                    Err(StoreError::Unavailable("no answer".into()))
                }
            }
        }
    }

    fn machine(mode: BackendMode, policy: WhileDegraded) -> (Arc<Failover>, Arc<FakeRedis>) {
        let redis = Arc::new(FakeRedis::default());
        let memory =
            (policy == WhileDegraded::ServeFromMemory).then(|| MemoryBackend::new(1 << 20));
        let failover = Failover::new(
            mode,
            Some(redis.clone() as Arc<dyn Reachability>),
            memory,
            vec![(Capability::Cache, policy)],
        );
        (Arc::new(failover), redis)
    }

    async fn call(
        failover: &Failover,
        redis: &FakeRedis,
        repeatable: bool,
        memory_allowed: bool,
    ) -> StoreResult<&'static str> {
        let on_memory = memory_allowed.then_some(|| async { Ok("memory") });
        failover.route(repeatable, || redis.call(), on_memory).await
    }

    #[tokio::test(start_paused = true)]
    async fn up_serves_from_redis_in_every_mode() {
        for mode in [BackendMode::Auto, BackendMode::Redis] {
            let (failover, redis) = machine(mode, WhileDegraded::ServeFromMemory);
            assert_eq!(call(&failover, &redis, true, true).await.unwrap(), "redis");
            assert!(!failover.is_down());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn down_serves_from_memory_or_refuses_as_the_policy_says() {
        for fault in [Fault::Down, Fault::Hung] {
            let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
            redis.set(fault);
            assert_eq!(
                call(&failover, &redis, false, true).await.unwrap(),
                "memory"
            );
            assert!(failover.is_down(), "{fault:?}");
            let before = redis.calls.load(Ordering::SeqCst);
            assert_eq!(call(&failover, &redis, true, true).await.unwrap(), "memory");
            assert_eq!(
                redis.calls.load(Ordering::SeqCst),
                before,
                "while down, calls go straight to memory"
            );

            let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::Refuse);
            redis.set(fault);
            let refused = call(&failover, &redis, true, false).await;
            assert!(
                matches!(refused, Err(StoreError::Unavailable(_))),
                "{refused:?}"
            );
            assert!(failover.is_down());
        }
        let (failover, redis) = machine(BackendMode::Redis, WhileDegraded::Refuse);
        redis.set(Fault::Down);
        assert!(matches!(
            call(&failover, &redis, true, false).await,
            Err(StoreError::Unavailable(_))
        ));
        let report = failover.report().await;
        assert!(report.redis_down && !report.active_is_redis);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_connection_is_no_outage() {
        let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
        redis.set(Fault::ResetOnce);
        assert_eq!(
            call(&failover, &redis, true, true).await.unwrap(),
            "redis",
            "a repeatable call is made again on a fresh connection"
        );
        redis.set(Fault::ResetOnce);
        let interrupted = call(&failover, &redis, false, true).await;
        assert!(
            matches!(interrupted, Err(StoreError::Interrupted(_))),
            "a call that may have applied is neither repeated nor sent to memory: {interrupted:?}"
        );
        assert!(!failover.is_down());
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_pool_is_no_outage() {
        let (failover, _) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
        let busy = failover
            .route(
                true,
                || async { Err::<&str, _>(StoreError::Busy("no free connection".into())) },
                Some(|| async { Ok("memory") }),
            )
            .await;
        assert!(matches!(busy, Err(StoreError::Busy(_))));
        assert!(!failover.is_down());
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_backs_off_and_brings_traffic_back() {
        let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
        redis.set(Fault::Down);
        let every = Duration::from_millis(1000);
        tokio::spawn(probe(
            Arc::downgrade(&failover),
            failover.recheck.clone(),
            every,
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(failover.is_down(), "the first PING runs at once");
        let pings_at = |ms| {
            let redis = redis.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                redis.pings.load(Ordering::SeqCst)
            }
        };
        // PINGs at 0, 50, 150, 350, 750, 1550, 2550 ms: 50 ms doubling up to the interval.
        assert_eq!(pings_at(40).await, 1);
        assert_eq!(pings_at(20).await, 2, "at 60 ms");
        assert_eq!(pings_at(100).await, 3, "at 160 ms");
        assert_eq!(pings_at(600).await, 5, "at 760 ms");
        assert_eq!(pings_at(1000).await, 6, "at 1760 ms");
        assert_eq!(
            pings_at(1000).await,
            7,
            "at 2760 ms: capped at the interval"
        );

        let memory = failover.memory.clone().unwrap();
        let cache = crate::capabilities::cache::memory::MemoryCache::new(&memory);
        let (t, n, k) = (
            Tenant::new("t"),
            Namespace::parse("n").unwrap(),
            CacheKey::parse("k").unwrap(),
        );
        let value = CacheValue::parse(bytes::Bytes::from_static(b"1"), 10).unwrap();
        cache
            .put(&t, &n, &k, &value, Expiry::Never, PutCondition::Always)
            .await
            .unwrap();
        redis.set(Fault::Up);
        tokio::time::sleep(every).await;
        assert!(!failover.is_down(), "the probe saw Redis answer");
        assert_eq!(call(&failover, &redis, true, true).await.unwrap(), "redis");
        assert_eq!(
            cache.get(&t, &n, &k).await.unwrap(),
            None,
            "what memory took while degraded is dropped on the way back"
        );
    }
}
