//! The near cache: repeated cache reads of opted-in namespaces (`[[cache.near]]`) served from
//! this process while Redis has not said the key changed.
//!
//! Near-cached reads go to Redis on one connection of their own, in RESP3 with `CLIENT
//! TRACKING ON`: Redis remembers the keys read there and pushes an `invalidate` on that
//! connection when one changes (a write from any client, an expiry, an eviction) or `nil`
//! when it flushes. The value is kept with its remaining TTL (`PTTL`, same round trip).
//!
//! - A read and an invalidation can cross: Redis sends the read's reply before any later
//!   invalidation of that key, but the two are handled on different tasks. So a value is kept
//!   only if no invalidation was handled between sending the read and keeping the answer (an
//!   epoch, checked and bumped under the one lock).
//! - Writes through this instance forget the key before they answer (`forget`).
//! - A lost tracking connection empties the near cache and near reads go straight to Redis
//!   until tracking is on again; so does a failover (the connection is lost with Redis).
//! - Bounded per namespace by `max_entries` and `max_bytes`; the oldest entries go first.
//!
//! Staleness, bounded by construction: an entry is served only while it is younger than
//! [`MAX_STALENESS`], counted from before its read was sent. So a read that starts more than
//! that after a write through another instance answered sees the write, whether or not its
//! invalidation has arrived (a slow push, a busy machine): the entry it could serve was read
//! from Redis after the write. Invalidations make it faster in practice; the age cap makes it
//! a bound.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value, aio::MultiplexedConnection};
use tokio::sync::mpsc;

use async_trait::async_trait;

use super::port::for_each_cache_method;
use crate::store::redis::RedisPool;
use crate::{
    capabilities::cache::{
        model::{CacheValue, IncrError, Increment, ListCursor},
        port::{CacheStore, CasOutcome, KeyPage, PutCondition, TtlState},
    },
    config::NearCacheSettings,
    domain::{
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl},
    },
    store::{IdPage, StoreError, StoreResult},
};

/// One opted-in namespace's bounds.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_entries: usize,
    max_bytes: usize,
}

struct Entry {
    value: CacheValue,
    expires_at: Option<Instant>,
    /// When the read that brought it was sent: it is served until `MAX_STALENESS` after.
    read_at: Instant,
    bytes: usize,
}

/// The most a near read may lag a write through another instance (the README's bound).
pub const MAX_STALENESS: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Space {
    entries: HashMap<String, Entry>,
    /// Keys in the order they were kept, for eviction (may name keys since forgotten).
    order: VecDeque<String>,
    bytes: usize,
}

#[derive(Default)]
struct State {
    /// Bumped by every invalidation handled: a read that started before keeps nothing.
    epoch: u64,
    /// By namespace name.
    spaces: HashMap<String, Space>,
    /// Which namespace each kept Redis key belongs to.
    owners: HashMap<String, String>,
}

/// The near cache of one instance. Cheap to clone.
#[derive(Clone)]
pub struct NearCache {
    redis: RedisPool,
    namespaces: Arc<HashMap<String, Bounds>>,
    state: Arc<Mutex<State>>,
    /// The tracking connection while it is up and tracking.
    connection: Arc<Mutex<Option<MultiplexedConnection>>>,
    tracking: Arc<AtomicBool>,
}

/// How long to wait before reconnecting the tracking connection after it was lost.
const RECONNECT: Duration = Duration::from_millis(100);

impl NearCache {
    /// The near cache for `settings` (none when no namespace opts in). Must be called inside
    /// a tokio runtime: it spawns the task that keeps the tracking connection.
    pub fn start(redis: &RedisPool, settings: &[NearCacheSettings]) -> Option<Self> {
        if settings.is_empty() {
            return None;
        }
        let namespaces = settings
            .iter()
            .map(|s| {
                let bounds = Bounds {
                    max_entries: s.max_entries,
                    max_bytes: s.max_bytes,
                };
                (s.namespace.clone(), bounds)
            })
            .collect();
        let near = Self {
            redis: redis.clone(),
            namespaces: Arc::new(namespaces),
            state: Arc::default(),
            connection: Arc::default(),
            tracking: Arc::default(),
        };
        tokio::spawn(keep_tracking(
            redis.clone(),
            Arc::downgrade(&near.state),
            near.clone_parts(),
        ));
        Some(near)
    }

    fn clone_parts(&self) -> Parts {
        Parts {
            connection: Arc::downgrade(&self.connection),
            tracking: Arc::downgrade(&self.tracking),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether reads of `namespace` are near-cached.
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// The value of `key` (a Redis key of `namespace`): from this process when kept and live,
    /// else read on the tracking connection and kept. `None` when tracking is off (the caller
    /// reads as usual).
    pub async fn get(&self, namespace: &str, key: &str) -> Option<StoreResult<Option<CacheValue>>> {
        let epoch = {
            let mut state = self.lock();
            let now = Instant::now();
            if let Some(space) = state.spaces.get_mut(namespace)
                && let Some(entry) = space.entries.get(key)
            {
                let fresh = now.duration_since(entry.read_at) < MAX_STALENESS;
                if fresh && entry.expires_at.is_none_or(|at| at > now) {
                    return Some(Ok(Some(entry.value.clone())));
                }
                let gone = space.entries.remove(key).map_or(0, |e| e.bytes);
                space.bytes -= gone;
            }
            state.epoch
        };
        if !self.tracking.load(Ordering::Acquire) {
            return None;
        }
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let read_at = Instant::now();
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let read = self.redis.timeout_query(&mut connection, &pipe).await;
        let (value, ttl_ms): (Option<Vec<u8>>, i64) = match read {
            Ok(answer) => answer,
            // The caller reads through the pool, which sorts the error out.
            Err(_) => return None,
        };
        let value = value.map(|v| CacheValue::from_stored(Bytes::from(v)));
        if let Some(value) = &value {
            self.keep(namespace, key, value, ttl_ms, (epoch, read_at));
        }
        Some(Ok(value))
    }

    /// Keeps a value read at `read`: the epoch then, and when the read was sent.
    fn keep(
        &self,
        namespace: &str,
        key: &str,
        value: &CacheValue,
        ttl_ms: i64,
        read: (u64, Instant),
    ) {
        let (epoch, read_at) = read;
        let Some(bounds) = self.namespaces.get(namespace).copied() else {
            return;
        };
        let mut state = self.lock();
        if state.epoch != epoch {
            // An invalidation was handled since the read was sent: it may be this key's.
            return;
        }
        let expires_at = match ttl_ms {
            ms if ms >= 0 => Some(Instant::now() + Duration::from_millis(ms as u64)),
            -1 => None,
            // -2: the key expired between GET and PTTL.
            _ => return,
        };
        let bytes = key.len() + value.bytes().len() + 64;
        if bytes > bounds.max_bytes {
            return;
        }
        state.owners.insert(key.to_string(), namespace.to_string());
        let space = state.spaces.entry(namespace.to_string()).or_default();
        if let Some(old) = space.entries.insert(
            key.to_string(),
            Entry {
                value: value.clone(),
                expires_at,
                read_at,
                bytes,
            },
        ) {
            space.bytes -= old.bytes;
        }
        space.bytes += bytes;
        space.order.push_back(key.to_string());
        while space.entries.len() > bounds.max_entries || space.bytes > bounds.max_bytes {
            let Some(oldest) = space.order.pop_front() else {
                break;
            };
            if let Some(gone) = space.entries.remove(&oldest) {
                space.bytes -= gone.bytes;
            }
        }
        if space.order.len() > 4 * bounds.max_entries.max(16) {
            let entries = &space.entries;
            space.order.retain(|k| entries.contains_key(k));
        }
    }

    /// Forgets `key` (a write through this instance), before the write answers.
    pub fn forget(&self, key: &str) {
        let mut state = self.lock();
        forget_in(&mut state, key);
    }

    /// Forgets every kept key of `namespace` (a pattern delete, a batch).
    pub fn forget_namespace(&self, namespace: &str) {
        let mut state = self.lock();
        state.epoch += 1;
        state.spaces.remove(namespace);
        state.owners.retain(|_, owner| owner != namespace);
    }

    /// Entries kept now, over all namespaces.
    pub fn len(&self) -> usize {
        self.lock().spaces.values().map(|s| s.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the tracking connection is up (near reads are served).
    pub fn is_tracking(&self) -> bool {
        self.tracking.load(Ordering::Acquire)
    }
}

fn forget_in(state: &mut State, key: &str) {
    state.epoch += 1;
    if let Some(namespace) = state.owners.remove(key)
        && let Some(space) = state.spaces.get_mut(&namespace)
        && let Some(gone) = space.entries.remove(key)
    {
        space.bytes -= gone.bytes;
    }
}

fn clear(state: &mut State) {
    state.epoch += 1;
    state.spaces.clear();
    state.owners.clear();
}

struct Parts {
    connection: std::sync::Weak<Mutex<Option<MultiplexedConnection>>>,
    tracking: std::sync::Weak<AtomicBool>,
}

/// Keeps a tracking connection up while the near cache lives: connects (RESP3, pushes to
/// this task), turns tracking on, handles invalidations; when the connection is lost, empties
/// the cache and starts again.
async fn keep_tracking(redis: RedisPool, state: std::sync::Weak<Mutex<State>>, parts: Parts) {
    loop {
        let (Some(shared), Some(connection_slot), Some(tracking)) = (
            state.upgrade(),
            parts.connection.upgrade(),
            parts.tracking.upgrade(),
        ) else {
            return;
        };
        let (sender, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let connected = connect(&redis, sender).await;
        if let Ok(connection) = connected {
            clear(&mut shared.lock().unwrap_or_else(|p| p.into_inner()));
            *connection_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection);
            tracking.store(true, Ordering::Release);
            drop((connection_slot, tracking));
            // Handle pushes until the connection is lost (or the cache dropped).
            let weak_state = Arc::downgrade(&shared);
            drop(shared);
            while let Some(push) = pushes.recv().await {
                let Some(shared) = weak_state.upgrade() else {
                    return;
                };
                let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
                match push.kind {
                    PushKind::Invalidate => match push.data.first() {
                        Some(Value::Array(keys)) => {
                            for key in keys {
                                if let Ok(key) = redis::from_redis_value::<String>(key.clone()) {
                                    forget_in(&mut state, &key);
                                }
                            }
                        }
                        // nil: Redis flushed, or lost track: forget everything.
                        _ => clear(&mut state),
                    },
                    PushKind::Disconnection => break,
                    _ => {}
                }
            }
            // Lost: nothing kept may be trusted, and reads bypass until tracking is back.
            if let Some(tracking) = parts.tracking.upgrade() {
                tracking.store(false, Ordering::Release);
            }
            if let Some(slot) = parts.connection.upgrade() {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            if let Some(shared) = weak_state.upgrade() {
                clear(&mut shared.lock().unwrap_or_else(|p| p.into_inner()));
            }
            tracing::warn!("near cache: the tracking connection was lost; emptied");
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

async fn connect(
    redis: &RedisPool,
    sender: mpsc::UnboundedSender<PushInfo>,
) -> StoreResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_push_sender(sender);
    let mut connection = redis.dedicated_resp3(config).await?;
    let mut setup = redis::pipe();
    setup
        .cmd("CLIENT")
        .arg("SETNAME")
        .arg("statekeeper-near-cache")
        .ignore()
        .cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .ignore();
    redis
        .timeout_query::<()>(&mut connection, &setup)
        .await
        .map_err(|e| StoreError::Unavailable(format!("near cache tracking: {e}")))?;
    Ok(connection)
}

/// The Redis cache with a near cache in front of the opted-in namespaces: reads of one key
/// there go through `NearCache::get`; every write forgets what it touches before it answers.
pub struct NearCached {
    inner: Arc<dyn CacheStore>,
    near: NearCache,
    keys: crate::store::redis::keys::Keys,
}

impl NearCached {
    pub fn new(
        inner: Arc<dyn CacheStore>,
        near: NearCache,
        keys: crate::store::redis::keys::Keys,
    ) -> Self {
        Self { inner, near, keys }
    }

    fn forget(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) {
        if self.near.covers(ns.as_str()) {
            self.near.forget(&self.keys.cache(tenant, ns, key));
        }
    }

    fn forget_namespace(&self, ns: &Namespace) {
        if self.near.covers(ns.as_str()) {
            self.near.forget_namespace(ns.as_str());
        }
    }
}

/// Implements `CacheStore` for `NearCached` from the port's one declaration
/// (`for_each_cache_method`): each method calls the Redis cache, then, for a write, forgets
/// what it touched (`#[near(then = ..)]`) before it answers; `#[near(by = f)]` hands the call
/// to `NearCached::f` instead.
macro_rules! near_cached {
    ($(;)? $( $(#[near($($near:tt)*)])? async fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        #[async_trait]
        impl CacheStore for NearCached {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    near_call!(self, $name, [$($($near)*)?], $($arg),*)
                }
            )*
        }
    };
}

/// The body of one `NearCached` method: see `near_cached`.
macro_rules! near_call {
    ($self:ident, $name:ident, [], $($arg:ident),*) => {
        $self.inner.$name($($arg),*).await
    };
    ($self:ident, $name:ident, [then = $($forget:tt)*], $($arg:ident),*) => {{
        let result = $self.inner.$name($($arg),*).await;
        $self.$($forget)*;
        result
    }};
    ($self:ident, $name:ident, [by = $own:ident], $($arg:ident),*) => {
        $self.$own($($arg),*).await
    };
}

impl NearCached {
    /// `get`, answered from the near cache when it covers the namespace and holds the key.
    async fn get_near(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
    ) -> StoreResult<Option<CacheValue>> {
        if self.near.covers(ns.as_str()) {
            let redis_key = self.keys.cache(tenant, ns, key);
            if let Some(answer) = self.near.get(ns.as_str(), &redis_key).await {
                return answer;
            }
        }
        self.inner.get(tenant, ns, key).await
    }
}

for_each_cache_method!(near_cached,);
