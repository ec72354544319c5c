//! Locks on Redis: one hash per lock (`keys::lock`) with the holder (`token`, `owner`,
//! `expires` in µs of Redis's clock), the fencing counter (`fence`) and the highest checked
//! token (`checked`). Each method is one `EVALSHA` of a `lock_*.lua` script that reads `TIME`,
//! so instances with skewed clocks agree. The hash lives `RECORD_RETENTION` past its holder's
//! lease, so it is never unbounded.
//!
//! Waiting: a release publishes `<tenant>/<name>` on `keys::lock_released_channel`; one
//! subscriber connection per instance (`listen`) wakes that instance's waiters. A waiter never polls Redis faster than the holder's expiry or
//! `WAIT_FALLBACK_POLL`.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::store::redis::{RedisPool, listen::listen, script::Script};
use crate::{
    capabilities::lock::{
        model::{
            Acquire, Acquired, Fence, FenceCheck, Grant, LockInfo, LockName, LockToken,
            MAX_FENCING_TOKEN, RECORD_RETENTION,
        },
        port::LockStore,
    },
    domain::ids::Tenant,
    store::{
        IdPage, StoreError, StoreResult,
        signals::{Signals, signal_key},
    },
};

pub struct RedisLocks {
    redis: RedisPool,
    signals: Arc<Signals>,
    acquire: Script,
    extend: Script,
    release: Script,
    info: Script,
    fence_check: Script,
}

impl RedisLocks {
    /// Must be called inside a tokio runtime: spawns the release subscriber, which ends when
    /// this store is dropped.
    pub fn new(redis: RedisPool) -> Self {
        let signals = listen(&redis, redis.keys().lock_released_channel());
        let script = |name, code| Script::new(name, code);
        Self {
            redis,
            signals,
            acquire: script("lock_acquire", include_str!("scripts/lock_acquire.lua")),
            extend: script("lock_extend", include_str!("scripts/lock_extend.lua")),
            release: script("lock_release", include_str!("scripts/lock_release.lua")),
            info: script("lock_info", include_str!("scripts/lock_info.lua")),
            fence_check: script(
                "lock_fence_check",
                include_str!("scripts/lock_fence_check.lua"),
            ),
        }
    }

    fn key(&self, tenant: &Tenant, name: &LockName) -> String {
        self.redis.keys().lock(tenant, name)
    }
}

fn retention_ms() -> u64 {
    RECORD_RETENTION.as_millis() as u64
}

fn figure(value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Internal(format!("lock: figure {value}")))
}

#[async_trait]
impl LockStore for RedisLocks {
    async fn acquire(
        &self,
        tenant: &Tenant,
        name: &LockName,
        request: &Acquire,
    ) -> StoreResult<Acquired> {
        let mut call = self.acquire.key(self.key(tenant, name));
        call.arg(request.token.as_str())
            .arg(request.owner.as_deref().unwrap_or(""))
            .arg(request.ttl_ms * 1000)
            .arg(retention_ms());
        let reply: Vec<i64> = self.redis.script(&call).await?;
        match reply[..] {
            [1, fence, expires] => Ok(Acquired::Granted(Grant {
                fencing_token: figure(fence)?,
                expires_at_us: figure(expires)?,
            })),
            [0, wait] => Ok(Acquired::Held {
                retry_after_us: figure(wait)?,
            }),
            _ => Err(StoreError::Internal(format!("lock acquire: {reply:?}"))),
        }
    }

    async fn extend(
        &self,
        tenant: &Tenant,
        name: &LockName,
        token: &LockToken,
        ttl_ms: u64,
    ) -> StoreResult<Option<u64>> {
        let mut call = self.extend.key(self.key(tenant, name));
        call.arg(token.as_str())
            .arg(ttl_ms * 1000)
            .arg(retention_ms());
        let until: i64 = self.redis.script(&call).await?;
        Ok(u64::try_from(until).ok())
    }

    async fn release(
        &self,
        tenant: &Tenant,
        name: &LockName,
        token: &LockToken,
    ) -> StoreResult<bool> {
        let mut call = self.release.key(self.key(tenant, name));
        call.arg(token.as_str())
            .arg(self.redis.keys().lock_released_channel())
            .arg(signal_key(tenant, name));
        let released: i64 = self.redis.script(&call).await?;
        Ok(released == 1)
    }

    async fn get(&self, tenant: &Tenant, name: &LockName) -> StoreResult<LockInfo> {
        let call = self.info.key(self.key(tenant, name));
        let (held, owner, expires, fence, high): (i64, String, i64, i64, i64) =
            self.redis.script(&call).await?;
        Ok(LockInfo {
            held: held == 1,
            owner: (!owner.is_empty()).then_some(owner),
            expires_at_us: (held == 1).then(|| figure(expires)).transpose()?,
            fencing_token: figure(fence)?,
            high_water: figure(high)?,
        })
    }

    async fn check_fence(
        &self,
        tenant: &Tenant,
        name: &LockName,
        fence: Fence,
    ) -> StoreResult<FenceCheck> {
        let mut call = self.fence_check.key(self.key(tenant, name));
        call.arg(fence.token())
            .arg(retention_ms())
            .arg(fence.slack_us())
            .arg(MAX_FENCING_TOKEN);
        let (outcome, figure_): (i64, i64) = self.redis.script(&call).await?;
        match outcome {
            1 => Ok(FenceCheck::Accepted),
            0 => Ok(FenceCheck::Stale {
                highest: figure(figure_)?,
            }),
            _ => Ok(FenceCheck::NotIssued {
                ceiling: figure(figure_)?,
            }),
        }
    }

    fn release_signal(&self, tenant: &Tenant, name: &LockName) -> Arc<Notify> {
        self.signals.watch(&signal_key(tenant, name))
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        // `{<tenant>/<name>}` after the tenant's prefix.
        let prefix = format!("{}{{{tenant}/", self.redis.keys().locks(tenant));
        crate::store::redis::scan_ids(&self.redis, &prefix, cursor, limit, |rest| {
            rest.strip_suffix('}').map(str::to_string)
        })
        .await
    }
}

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
    /// A lock's hash: `{prefix}:{tenant}:lock:{<tenant>/<name>}` (holder, fencing counter,
    /// highest checked token), tagged by the lock itself.
    pub fn lock(&self, tenant: &Tenant, name: &LockName) -> String {
        format!("{}{{{tenant}/{name}}}", self.locks(tenant))
    }

    /// The literal start of every lock key of a tenant.
    pub fn locks(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:lock:", self.prefix)
    }

    /// The channel every release is published on, as `<tenant>/<name>`: each instance
    /// subscribes once and wakes its own waiters.
    pub fn lock_released_channel(&self) -> String {
        format!("{}:lock_released", self.prefix)
    }
}
