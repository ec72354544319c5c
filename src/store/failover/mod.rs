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

mod build;
mod degradation;
mod route;

use self::{
    degradation::policies,
    route::{RateLimitFailover, degraded},
};
pub use self::{degradation::*, route::*};

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
    Capability, agent_state::port::AgentStateStore, cache::port::CacheStore, lock::port::LockStore,
    pending_action::port::PendingActionStore, rate_limit::port::RateLimitStore,
    session::port::SessionStore, topic::port::TopicStore, usage::port::UsageStore,
};
use crate::{
    capabilities::{
        pending_action::model::TombstoneLife,
        rate_limit::model::{Check, Decision, RateLimitKey},
    },
    config::{BackendMode, LockDegraded, Settings},
    domain::ids::Tenant,
    metrics::{BackendLabels, BackendMetrics, Metrics, ModeLabels, StateLabels, SwitchLabels},
};

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
    /// Set when traffic moved back to Redis with a hand-back, until memory is emptied after
    /// everything it took is in Redis.
    unsettled: AtomicBool,
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
            unsettled: AtomicBool::new(false),
            metrics: BackendMetrics::default(),
            switches: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Tells every open topic stream that the backend switched.
    fn announce_switch(&self) {
        self.switches.send_modify(|count| *count += 1);
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
                // (no I/O there); what they wrote is handed over next, by `settle_late`.
                self.unsettled.store(true, Ordering::Release);
                tokio::time::sleep(SETTLE).await;
            }
        }
    }

    /// Whether something memory took has yet to reach Redis although traffic is back on it:
    /// writes of calls that finished in memory just after the switch, or a catch-up that
    /// failed part-way (a connection reset while handing over).
    fn late_pending(&self) -> bool {
        self.handback
            .as_ref()
            .is_some_and(|handback| !handback.ledger.is_empty())
            || self
                .replay
                .as_ref()
                .is_some_and(|replay| !replay.journal.is_empty())
    }

    /// Hands what is still pending to Redis while traffic is on it, then empties memory. The
    /// probe calls it whenever Redis answers and something is pending, and retries it soon
    /// after a failure, so a write memory acknowledged reaches Redis without waiting for
    /// another outage (and memory never keeps it to serve in one).
    async fn settle_late(&self) -> StoreResult<()> {
        let unsettled = self.unsettled.load(Ordering::Acquire);
        if self.is_down() || !(unsettled || self.late_pending()) {
            return Ok(());
        }
        if let Err(e) = self.catch_up().await {
            tracing::warn!(
                error = %e,
                "writes that memory took around the switch back are not in Redis yet; retrying"
            );
            return Err(e);
        }
        // Emptied only when everything it took is in Redis and traffic is still on Redis: a
        // write noted meanwhile is handed over at the next turn first.
        if !self.is_down() && !self.late_pending() {
            if self.handback.is_some()
                && let Some(memory) = &self.memory
            {
                memory.clear();
            }
            self.unsettled.store(false, Ordering::Release);
        }
        Ok(())
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
                // What memory took while the catch-up ran (calls already under way), or what
                // an earlier try could not hand over: retried soon, as a failed PING is.
                if failover.settle_late().await.is_ok() {
                    retry = None;
                    wait = every;
                } else {
                    let next = retry.map_or(FIRST_RETRY, |r| r * 2).min(every);
                    retry = Some(next);
                    wait = next;
                }
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

#[cfg(test)]
mod tests;
