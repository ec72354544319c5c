//! The lock port: the trait its adapters implement and the outcomes of its calls.

use std::sync::Arc;

use crate::{
    capabilities::lock::model::{
        Acquire, Acquired, Fence, FenceCheck, LockInfo, LockName, LockToken,
    },
    domain::ids::Tenant,
};

use crate::store::{IdPage, StoreResult, wait_until};
use tokio::sync::Notify;

crate::store::port::port! {
    /// Locks with fencing tokens (`lock::model`). Every method is one atomic step at the
    /// backend's time; a token that does not hold the lock changes nothing.
    pub trait LockStore {
        // Not repeatable: a second run would find the first one's grant and answer "held".
        /// One attempt: grants the lock when nobody holds it, else says for how long it is held.
        #[repeat(false)]
        async fn acquire(
            &self,
            tenant: &Tenant,
            name: &LockName,
            request: &Acquire,
        ) -> StoreResult<Acquired>;

        /// A new expiry `ttl_ms` from now, or `None` when `token` does not hold the lock.
        #[repeat(true)]
        async fn extend(
            &self,
            tenant: &Tenant,
            name: &LockName,
            token: &LockToken,
            ttl_ms: u64,
        ) -> StoreResult<Option<u64>>;

        /// Whether `token` held the lock; then it is free, and waiters (on every instance) are woken.
        #[repeat(false)]
        async fn release(
            &self,
            tenant: &Tenant,
            name: &LockName,
            token: &LockToken,
        ) -> StoreResult<bool>;

        #[repeat(true)]
        async fn get(&self, tenant: &Tenant, name: &LockName) -> StoreResult<LockInfo>;

        /// Accepts `fence`'s token when no later grant or check exists and a grant can have
        /// issued it (`Fence::ceiling`), raising the mark to it.
        #[repeat(true)]
        async fn check_fence(
            &self,
            tenant: &Tenant,
            name: &LockName,
            fence: Fence,
        ) -> StoreResult<FenceCheck>;

        /// One page of the tenant's lock names (records kept for their fencing marks included),
        /// for backups; as `CacheStore::inventory`.
        #[repeat(true)]
        async fn inventory(
            &self,
            tenant: &Tenant,
            cursor: Option<&str>,
            limit: usize,
        ) -> StoreResult<IdPage>;
    }
    also {

        /// Notified (`notify_waiters`) when the lock may have been released.
        fn release_signal(&self, tenant: &Tenant, name: &LockName) -> Arc<tokio::sync::Notify>;
    }
    routed {
        fn release_signal(&self, tenant: &Tenant, name: &LockName) -> Arc<Notify> {
            match &self.memory {
                Some(memory) if self.failover.is_down() => memory.release_signal(tenant, name),
                _ => self.redis.release_signal(tenant, name),
            }
        }
    }
}

/// Acquires, waiting up to `wait` for the lock: woken by a release, else when the holder's
/// lease ends, else after `WAIT_FALLBACK_POLL`. Fairness is not promised.
pub async fn acquire_waiting(
    store: &dyn LockStore,
    tenant: &Tenant,
    name: &LockName,
    request: &Acquire,
    wait: std::time::Duration,
) -> StoreResult<Acquired> {
    wait_until(
        || store.release_signal(tenant, name),
        || store.acquire(tenant, name, request),
        |outcome| match outcome {
            Acquired::Granted(_) => Ok(()),
            Acquired::Held { retry_after_us } => Err(Some(*retry_after_us)),
        },
        wait,
    )
    .await
}
