//! Locks on the memory engine: one entry per `tenant/name` holding `lock::model::LockState`,
//! changed under the engine's lock (so each method is atomic). A release wakes this process's
//! waiters through its `Signals`. The entry expires `RECORD_RETENTION` after its
//! holder's lease, like the Redis hash.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::{sync::Notify, time::Instant};

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh},
    now_us,
};
use crate::{
    capabilities::lock::{
        model::{Acquire, Acquired, Fence, FenceCheck, LockInfo, LockName, LockState, LockToken},
        port::LockStore,
    },
    domain::ids::Tenant,
    store::{
        IdPage, StoreResult,
        signals::{Signals, signal_key},
    },
};

pub struct MemoryLocks {
    engine: Engine<Box<str>, LockState>,
    signals: Signals,
}

impl MemoryLocks {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            engine: backend.engine(),
            signals: Signals::default(),
        }
    }

    /// Runs `change` on the lock's record at the wall clock's time (µs), and keeps the record
    /// as long as it matters.
    fn update<R>(
        &self,
        tenant: &Tenant,
        name: &LockName,
        change: impl FnOnce(&mut LockState, u64) -> R,
    ) -> R {
        let key: Box<str> = signal_key(tenant, name).into();
        self.engine.update(&key, |slot| {
            let now = now_us();
            let mut state = slot.take().map(|e| e.value).unwrap_or_default();
            let result = change(&mut state, now);
            if state != LockState::default() {
                let life = Duration::from_micros(state.life_us(now));
                *slot = Some(Entry {
                    value: state,
                    expires_at: Some(Instant::now() + life),
                });
            }
            result
        })
    }
}

impl Weigh for LockState {
    fn weight(&self) -> usize {
        let holder = self.holder.as_ref().map_or(0, |h| {
            h.token.as_str().len() + h.owner.as_ref().map_or(0, String::len) + 64
        });
        32 + holder
    }
}

#[async_trait]
impl LockStore for MemoryLocks {
    async fn acquire(
        &self,
        tenant: &Tenant,
        name: &LockName,
        request: &Acquire,
    ) -> StoreResult<Acquired> {
        self.engine.ensure_room()?;
        Ok(self.update(tenant, name, |lock, now| lock.acquire(request, now)))
    }

    async fn extend(
        &self,
        tenant: &Tenant,
        name: &LockName,
        token: &LockToken,
        ttl_ms: u64,
    ) -> StoreResult<Option<u64>> {
        Ok(self.update(tenant, name, |lock, now| lock.extend(token, ttl_ms, now)))
    }

    async fn release(
        &self,
        tenant: &Tenant,
        name: &LockName,
        token: &LockToken,
    ) -> StoreResult<bool> {
        let released = self.update(tenant, name, |lock, now| lock.release(token, now));
        if released {
            self.signals.notify(&signal_key(tenant, name));
        }
        Ok(released)
    }

    async fn get(&self, tenant: &Tenant, name: &LockName) -> StoreResult<LockInfo> {
        Ok(self.update(tenant, name, |lock, now| lock.info(now)))
    }

    async fn check_fence(
        &self,
        tenant: &Tenant,
        name: &LockName,
        fence: Fence,
    ) -> StoreResult<FenceCheck> {
        self.engine.ensure_room()?;
        Ok(self.update(tenant, name, |lock, now| lock.check_fence(fence, now)))
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
        Ok(crate::store::memory::prefixed_inventory(
            &self.engine,
            tenant,
            cursor,
            limit,
        ))
    }
}
