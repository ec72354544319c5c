//! Which backend serves a call: the one place that knows about `backend.mode`.
//!
//! - `memory`: the memory adapters alone; Redis is never contacted.
//! - `redis`: Redis alone. While Redis is down every call fails fast with
//!   `StoreError::Unavailable` (503 `backend_unavailable`) instead of waiting on it.
//! - `auto`: Redis while it answers. A call whose Redis round trip fails or misses its deadline,
//!   and for which a fresh connection cannot PING Redis either, is served again by memory (a
//!   reset connection is not an outage: see `Failover::route`), the state turns degraded, and calls go straight to memory until
//!   the probe sees Redis answer. Then the memory backend is emptied, so entries written while
//!   degraded are gone (they were never in Redis) and can never be served by a later outage.
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
    AgentStateStore, Appended, CacheStore, CasOutcome, KeyPage, PendingActionStore, PutCondition,
    Replaced, SessionStore, SessionUpdate, StoreError, StoreResult, Stores, ThreadPage, TtlState,
    Versioned, memory::MemoryBackend, redis::RedisPool,
};
use crate::{
    config::{BackendMode, Settings},
    domain::{
        agent_state::{AgentState, JsonObject, Message, NewAgentState, RecentState, ThreadId},
        cache::{CacheValue, IncrError, Increment, ListCursor},
        ids::{CacheKey, Namespace, Tenant},
        pending_action::{
            ActionToken, Cancel, Confirm, IdempotencyKey, PendingAction, TombstoneLife,
        },
        session::{Session, SessionChange, SessionId, SessionRules, UserId},
        ttl::{Expiry, Ttl},
    },
};

/// The backend state shared by every failover store and the health routes.
pub struct Failover {
    mode: BackendMode,
    redis: Option<RedisPool>,
    memory: MemoryBackend,
    redis_down: AtomicBool,
    degraded_since: Mutex<Option<OffsetDateTime>>,
    /// Wakes the probe when a request finds Redis down.
    recheck: Arc<Notify>,
}

/// Which backend is serving, for `/health`.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    pub mode: BackendMode,
    pub redis_down: bool,
    pub degraded_since: Option<OffsetDateTime>,
}

impl BackendStatus {
    pub fn active_is_redis(&self) -> bool {
        self.mode != BackendMode::Memory && !self.redis_down
    }
}

impl Failover {
    /// Builds the stores for `settings.backend.mode`. In the Redis modes a probe task runs
    /// until the returned `Failover` is dropped. Must be called inside a tokio runtime.
    pub fn build(settings: &Settings) -> Result<(Stores, Arc<Failover>), String> {
        let memory = MemoryBackend::new(settings.memory.bound());
        let redis = match settings.backend.mode {
            BackendMode::Memory => None,
            BackendMode::Auto | BackendMode::Redis => Some(RedisPool::new(&settings.redis)?),
        };
        let failover = Arc::new(Failover {
            mode: settings.backend.mode,
            redis: redis.clone(),
            memory: memory.clone(),
            redis_down: AtomicBool::new(false),
            degraded_since: Mutex::new(None),
            recheck: Arc::new(Notify::new()),
        });
        let memory_stores = memory.stores();
        let stores = match &redis {
            None => memory_stores,
            Some(pool) => {
                let redis_stores = super::redis::stores(pool);
                tokio::spawn(probe(
                    Arc::downgrade(&failover),
                    failover.recheck.clone(),
                    Duration::from_millis(settings.backend.probe_interval_ms),
                ));
                Stores {
                    cache: Arc::new(FailoverStore {
                        redis: redis_stores.cache,
                        memory: memory_stores.cache,
                        failover: failover.clone(),
                    }),
                    pending_actions: Arc::new(FailoverStore {
                        redis: redis_stores.pending_actions,
                        memory: memory_stores.pending_actions,
                        failover: failover.clone(),
                    }),
                    agent_states: Arc::new(FailoverStore {
                        redis: redis_stores.agent_states,
                        memory: memory_stores.agent_states,
                        failover: failover.clone(),
                    }),
                    sessions: Arc::new(FailoverStore {
                        redis: redis_stores.sessions,
                        memory: memory_stores.sessions,
                        failover: failover.clone(),
                    }),
                }
            }
        };
        Ok((stores, failover))
    }

    pub fn mode(&self) -> BackendMode {
        self.mode
    }

    /// Bytes the memory backend holds, and its bound (`memory.max_bytes`).
    pub fn memory_usage(&self) -> (usize, usize) {
        self.memory.usage()
    }

    pub fn redis(&self) -> Option<&RedisPool> {
        self.redis.as_ref()
    }

    pub fn status(&self) -> BackendStatus {
        BackendStatus {
            mode: self.mode,
            redis_down: self.redis_down.load(Ordering::Acquire),
            degraded_since: *self
                .degraded_since
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Serves one store call: on Redis (`on_redis` makes the call; it may be made twice) or,
    /// as the mode says, on memory.
    ///
    /// A connection error is not yet an outage: the pool has retired the failed connection, a
    /// call that is safe to repeat (`repeatable`) is made once more on a fresh one, and only
    /// when a fresh connection cannot even PING is Redis declared down. A call that is not safe
    /// to repeat (an `incr`, an append, a confirm) whose connection broke mid-call while Redis
    /// still answers gets `Interrupted`: it may have taken effect, and it is neither repeated
    /// nor handed to memory, where a write would be acknowledged and then lost.
    async fn route<T, R, RF, M, MF>(
        &self,
        repeatable: bool,
        on_redis: R,
        on_memory: M,
    ) -> StoreResult<T>
    where
        R: Fn() -> RF,
        RF: Future<Output = StoreResult<T>>,
        M: FnOnce() -> MF,
        MF: Future<Output = StoreResult<T>>,
    {
        let down = self.redis_down.load(Ordering::Acquire);
        match (self.mode, down) {
            (BackendMode::Memory, _) | (BackendMode::Auto, true) => return on_memory().await,
            (BackendMode::Redis, true) => {
                return Err(StoreError::Unavailable("Redis is down".into()));
            }
            (BackendMode::Redis | BackendMode::Auto, false) => {}
        }
        let mut why = match on_redis().await {
            Err(StoreError::Unavailable(why)) => why,
            // Waited for a pooled connection: in auto mode, if the calls holding them found
            // Redis down meanwhile, memory serves this one too.
            Err(StoreError::Busy(why)) => {
                return if self.mode == BackendMode::Auto && self.redis_down.load(Ordering::Acquire)
                {
                    on_memory().await
                } else {
                    Err(StoreError::Busy(why))
                };
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
        if self.mode == BackendMode::Auto {
            on_memory().await
        } else {
            Err(StoreError::Unavailable(why))
        }
    }

    /// Returns whether Redis was up until now.
    fn mark_down(&self, why: &str) -> bool {
        let was_up = !self.redis_down.swap(true, Ordering::AcqRel);
        if was_up {
            *self
                .degraded_since
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(OffsetDateTime::now_utc());
            match self.mode {
                BackendMode::Auto => {
                    tracing::warn!(
                        reason = why,
                        "Redis unavailable: serving from memory (degraded)"
                    )
                }
                _ => tracing::error!(reason = why, "Redis unavailable: answering 503"),
            }
        }
        was_up
    }

    fn mark_up(&self) {
        if self.redis_down.load(Ordering::Acquire) {
            // Empty memory before traffic returns to Redis, so a request never sees a mix.
            if self.mode == BackendMode::Auto {
                self.memory.clear();
            }
            self.redis_down.store(false, Ordering::Release);
            *self
                .degraded_since
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            tracing::info!("Redis answers again: traffic is back on Redis");
        }
    }
}

/// The first retry after a failed PING; each further one waits twice as long, up to the
/// probe interval.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// PINGs Redis at once, then every `every`; while Redis is down, after `FIRST_RETRY`, doubling
/// up to `every`. A request that finds Redis down wakes it early through `recheck`.
async fn probe(failover: std::sync::Weak<Failover>, recheck: Arc<Notify>, every: Duration) {
    let mut wait = Duration::ZERO;
    // The last wait after a failed PING; `None` while Redis answers.
    let mut retry: Option<Duration> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = recheck.notified() => {}
        }
        let Some(failover) = failover.upgrade() else {
            return;
        };
        let Some(redis) = failover.redis.clone() else {
            return;
        };
        match redis.reachable().await {
            Ok(_) => {
                failover.mark_up();
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

/// One capability's store with failover: a Redis adapter, a memory adapter and the shared state.
pub struct FailoverStore<S: ?Sized> {
    redis: Arc<S>,
    memory: Arc<S>,
    failover: Arc<Failover>,
}

/// Implements a store trait for `FailoverStore` by routing each method through
/// `Failover::route`. `#[repeat(expr)]` says whether a call is safe to make twice (same effect,
/// same answer); it may look at the arguments. Arguments are cloned for each call (references
/// stay references).
macro_rules! route_each_method {
    ($store:ident { $(#[repeat($repeat:expr)] async fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty;)* }) => {
        #[async_trait]
        impl $store for FailoverStore<dyn $store> {
            $(
                #[allow(clippy::clone_on_copy)]
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let repeatable: bool = $repeat;
                    self.failover
                        .route(
                            repeatable,
                            || self.redis.$name($(Clone::clone(&$arg)),*),
                            || self.memory.$name($(Clone::clone(&$arg)),*),
                        )
                        .await
                }
            )*
        }
    };
}

route_each_method!(CacheStore {
    #[repeat(true)] async fn get(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<Option<CacheValue>>;
    #[repeat(true)] async fn exists(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool>;
    #[repeat(condition == PutCondition::Always)] async fn put(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey, value: &CacheValue, expiry: Expiry, condition: PutCondition) -> StoreResult<bool>;
    #[repeat(false)] async fn delete(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool>;
    #[repeat(true)] async fn ttl(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<TtlState>;
    #[repeat(true)] async fn set_ttl(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey, ttl: Ttl) -> StoreResult<bool>;
    #[repeat(false)] async fn incr(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey, by: Increment, create_expiry: Expiry) -> StoreResult<Result<String, IncrError>>;
    #[repeat(false)] async fn compare_and_swap(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey, expected: Option<&serde_json::Value>, value: &CacheValue, expiry: Expiry) -> StoreResult<CasOutcome>;
    #[repeat(true)] async fn get_many(&self, tenant: &Tenant, ns: &Namespace, keys: &[CacheKey]) -> StoreResult<Vec<Option<CacheValue>>>;
    #[repeat(true)] async fn put_many(&self, tenant: &Tenant, ns: &Namespace, entries: &[(CacheKey, CacheValue)], expiry: Expiry) -> StoreResult<()>;
    #[repeat(true)] async fn list(&self, tenant: &Tenant, ns: &Namespace, pattern: &str, cursor: &ListCursor, limit: usize) -> StoreResult<KeyPage>;
    #[repeat(false)] async fn delete_matching(&self, tenant: &Tenant, ns: &Namespace, pattern: &str) -> StoreResult<u64>;
});

route_each_method!(PendingActionStore {
    #[repeat(false)] async fn create(&self, tenant: &Tenant, action: &PendingAction, ttl: Ttl) -> StoreResult<bool>;
    #[repeat(true)] async fn get(&self, tenant: &Tenant, token: &ActionToken) -> StoreResult<Option<PendingAction>>;
    #[repeat(false)] async fn confirm(&self, tenant: &Tenant, token: &ActionToken, at: OffsetDateTime, idempotency_key: Option<&IdempotencyKey>, tombstone: TombstoneLife) -> StoreResult<Confirm>;
    #[repeat(true)] async fn cancel(&self, tenant: &Tenant, token: &ActionToken, at: OffsetDateTime, tombstone: TombstoneLife) -> StoreResult<Cancel>;
});

route_each_method!(AgentStateStore {
    #[repeat(false)] async fn create(&self, tenant: &Tenant, state: &NewAgentState) -> StoreResult<Option<AgentState>>;
    #[repeat(true)] async fn get(&self, tenant: &Tenant, thread: &ThreadId, last_messages: Option<u64>) -> StoreResult<Option<AgentState>>;
    #[repeat(true)] async fn exists(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool>;
    #[repeat(false)] async fn replace(&self, tenant: &Tenant, state: &NewAgentState, if_version: Option<u64>) -> StoreResult<Versioned<Replaced>>;
    #[repeat(false)] async fn delete(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool>;
    #[repeat(false)] async fn append(&self, tenant: &Tenant, thread: &ThreadId, messages: &[Message], if_version: Option<u64>) -> StoreResult<Versioned<Appended>>;
    #[repeat(false)] async fn patch_context(&self, tenant: &Tenant, thread: &ThreadId, patch: &JsonObject, if_version: Option<u64>) -> StoreResult<Versioned<AgentState>>;
    #[repeat(false)] async fn set_relevance(&self, tenant: &Tenant, thread: &ThreadId, is_relevant: bool, if_version: Option<u64>) -> StoreResult<Versioned<u64>>;
    #[repeat(true)] async fn list(&self, tenant: &Tenant, after: Option<&ThreadId>, limit: usize) -> StoreResult<ThreadPage>;
    #[repeat(true)] async fn recent(&self, tenant: &Tenant, limit: usize) -> StoreResult<Vec<RecentState>>;
    #[repeat(true)] async fn ttl(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<Option<u64>>;
    #[repeat(true)] async fn set_ttl(&self, tenant: &Tenant, thread: &ThreadId, ttl: Ttl) -> StoreResult<bool>;
    #[repeat(true)] async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64>;
});

route_each_method!(SessionStore {
    #[repeat(false)] async fn create(&self, tenant: &Tenant, session: &Session, rules: SessionRules) -> StoreResult<()>;
    #[repeat(true)] async fn get(&self, tenant: &Tenant, id: &SessionId, rules: SessionRules) -> StoreResult<Option<Session>>;
    #[repeat(false)] async fn update(&self, tenant: &Tenant, id: &SessionId, change: &SessionChange, if_match: Option<u64>, rules: SessionRules) -> StoreResult<SessionUpdate>;
    #[repeat(false)] async fn rotate(&self, tenant: &Tenant, id: &SessionId, new_id: &SessionId, rules: SessionRules) -> StoreResult<Option<Session>>;
    #[repeat(false)] async fn delete(&self, tenant: &Tenant, id: &SessionId) -> StoreResult<bool>;
    #[repeat(true)] async fn list_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<Vec<Session>>;
    #[repeat(false)] async fn delete_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<u64>;
});
