//! Which backend serves a call: the one place that knows about `backend.mode`.
//!
//! - `memory`: the memory adapters alone; Redis is never contacted.
//! - `redis`: Redis alone. While Redis is down every call fails fast with
//!   `StoreError::Unavailable` (503 `backend_unavailable`) instead of waiting on it.
//! - `auto`: Redis while it answers. A call whose Redis round trip fails or misses its deadline
//!   is served again by memory, the state turns degraded, and calls go straight to memory until
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
    AgentStateStore, Appended, CacheStore, CasOutcome, ForeignCursor, KeyPage, PendingActionStore,
    PutCondition, Replaced, SessionStore, SessionUpdate, StoreError, StoreResult, Stores,
    ThreadPage, TtlState, Versioned, memory::MemoryBackend, redis::RedisPool,
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
        let memory = MemoryBackend::default();
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

    /// Serves one store call: `on_redis` (not yet started) or, as the mode says, `on_memory`.
    async fn route<T, R, M, MF>(&self, on_redis: R, on_memory: M) -> StoreResult<T>
    where
        R: Future<Output = StoreResult<T>>,
        M: FnOnce() -> MF,
        MF: Future<Output = StoreResult<T>>,
    {
        let down = self.redis_down.load(Ordering::Acquire);
        match (self.mode, down) {
            (BackendMode::Memory, _) | (BackendMode::Auto, true) => on_memory().await,
            (BackendMode::Redis, true) => Err(StoreError::Unavailable("Redis is down".into())),
            (BackendMode::Redis | BackendMode::Auto, false) => match on_redis.await {
                Err(StoreError::Unavailable(why)) => {
                    if self.mark_down(&why) {
                        self.recheck.notify_one();
                    }
                    if self.mode == BackendMode::Auto {
                        on_memory().await
                    } else {
                        Err(StoreError::Unavailable(why))
                    }
                }
                // Waited for a pooled connection: in auto mode, if the calls holding them found
                // Redis down meanwhile, memory serves this one too.
                Err(StoreError::Busy(why)) => {
                    if self.mode == BackendMode::Auto && self.redis_down.load(Ordering::Acquire) {
                        on_memory().await
                    } else {
                        Err(StoreError::Busy(why))
                    }
                }
                other => other,
            },
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
        match redis.ping().await {
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
/// `Failover::route`. Arguments are cloned for the Redis call (references stay references) and
/// moved into the memory call, which only runs when Redis cannot serve.
macro_rules! route_each_method {
    ($store:ident { $(async fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty;)* }) => {
        #[async_trait]
        impl $store for FailoverStore<dyn $store> {
            $(
                #[allow(clippy::clone_on_copy)]
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.failover
                        .route(
                            self.redis.$name($(Clone::clone(&$arg)),*),
                            move || self.memory.$name($($arg),*),
                        )
                        .await
                }
            )*
        }
    };
}

route_each_method!(CacheStore {
    async fn get(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<Option<CacheValue>>;
    async fn exists(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool>;
    async fn put(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey, value: CacheValue, expiry: Expiry, condition: PutCondition) -> StoreResult<bool>;
    async fn delete(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool>;
    async fn ttl(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<TtlState>;
    async fn set_ttl(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey, ttl: Ttl) -> StoreResult<bool>;
    async fn incr(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey, by: Increment, create_expiry: Expiry) -> StoreResult<Result<String, IncrError>>;
    async fn compare_and_swap(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey, expected: Option<serde_json::Value>, value: CacheValue, expiry: Expiry) -> StoreResult<CasOutcome>;
    async fn get_many(&self, tenant: &Tenant, ns: &Namespace, keys: &[CacheKey]) -> StoreResult<Vec<Option<CacheValue>>>;
    async fn put_many(&self, tenant: &Tenant, ns: &Namespace, entries: Vec<(CacheKey, CacheValue)>, expiry: Expiry) -> StoreResult<()>;
    async fn list(&self, tenant: &Tenant, ns: &Namespace, pattern: &str, cursor: ListCursor, limit: usize) -> StoreResult<Result<KeyPage, ForeignCursor>>;
    async fn delete_matching(&self, tenant: &Tenant, ns: &Namespace, pattern: &str) -> StoreResult<u64>;
});

route_each_method!(PendingActionStore {
    async fn create(&self, tenant: &Tenant, action: PendingAction, ttl: Ttl) -> StoreResult<bool>;
    async fn get(&self, tenant: &Tenant, token: &ActionToken) -> StoreResult<Option<PendingAction>>;
    async fn confirm(&self, tenant: &Tenant, token: &ActionToken, at: OffsetDateTime, idempotency_key: Option<IdempotencyKey>, tombstone: TombstoneLife) -> StoreResult<Confirm>;
    async fn cancel(&self, tenant: &Tenant, token: &ActionToken, at: OffsetDateTime, tombstone: TombstoneLife) -> StoreResult<Cancel>;
});

route_each_method!(AgentStateStore {
    async fn create(&self, tenant: &Tenant, state: NewAgentState) -> StoreResult<Option<AgentState>>;
    async fn get(&self, tenant: &Tenant, thread: &ThreadId, last_messages: Option<u64>) -> StoreResult<Option<AgentState>>;
    async fn exists(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool>;
    async fn replace(&self, tenant: &Tenant, state: NewAgentState, if_version: Option<u64>) -> StoreResult<Versioned<Replaced>>;
    async fn delete(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool>;
    async fn append(&self, tenant: &Tenant, thread: &ThreadId, messages: Vec<Message>, if_version: Option<u64>) -> StoreResult<Versioned<Appended>>;
    async fn patch_context(&self, tenant: &Tenant, thread: &ThreadId, patch: JsonObject, if_version: Option<u64>) -> StoreResult<Versioned<AgentState>>;
    async fn set_relevance(&self, tenant: &Tenant, thread: &ThreadId, is_relevant: bool, if_version: Option<u64>) -> StoreResult<Versioned<u64>>;
    async fn list(&self, tenant: &Tenant, after: Option<ThreadId>, limit: usize) -> StoreResult<ThreadPage>;
    async fn recent(&self, tenant: &Tenant, limit: usize) -> StoreResult<Vec<RecentState>>;
    async fn ttl(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<Option<u64>>;
    async fn set_ttl(&self, tenant: &Tenant, thread: &ThreadId, ttl: Ttl) -> StoreResult<bool>;
    async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64>;
});

route_each_method!(SessionStore {
    async fn create(&self, tenant: &Tenant, session: Session, rules: SessionRules) -> StoreResult<()>;
    async fn get(&self, tenant: &Tenant, id: &SessionId, rules: SessionRules) -> StoreResult<Option<Session>>;
    async fn update(&self, tenant: &Tenant, id: &SessionId, change: SessionChange, if_match: Option<u64>, rules: SessionRules) -> StoreResult<SessionUpdate>;
    async fn rotate(&self, tenant: &Tenant, id: &SessionId, new_id: SessionId, rules: SessionRules) -> StoreResult<Option<Session>>;
    async fn delete(&self, tenant: &Tenant, id: &SessionId) -> StoreResult<bool>;
    async fn list_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<Vec<Session>>;
    async fn delete_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<u64>;
});
