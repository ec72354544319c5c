//! Pending actions on the memory engine, one entry per `tenant/token`. Each method is a single
//! `Engine::update` (or `read`), so the status check and the status change of a confirm or
//! cancel happen under one lock: concurrent confirms of one token see exactly one winner.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh, json_weight},
};
use crate::{
    capabilities::pending_action::{
        model::{
            ActionStatus, ActionToken, Cancel, Confirm, IdempotencyKey, PendingAction,
            TombstoneLife,
        },
        port::PendingActionStore,
    },
    domain::{ids::Tenant, ttl::Ttl},
    store::{IdPage, StoreResult},
};

/// One token: the action with its status, and the winning confirm's idempotency key.
struct Record {
    action: PendingAction,
    idempotency_key: Option<IdempotencyKey>,
}

impl Weigh for Record {
    fn weight(&self) -> usize {
        json_weight(&self.action)
            + self
                .idempotency_key
                .as_ref()
                .map_or(0, |k| k.as_str().len())
    }
}

pub struct MemoryPendingActions {
    engine: Engine<Arc<str>, Record>,
}

impl MemoryPendingActions {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            engine: backend.engine(),
        }
    }
}

fn entry_key(tenant: &Tenant, token: &ActionToken) -> Arc<str> {
    format!("{tenant}/{token}").into()
}

/// Turns a live pending entry into a tombstone with `status`, living as `tombstone` says.
fn resolve(
    entry: &mut Entry<Record>,
    status: ActionStatus,
    at: OffsetDateTime,
    tombstone: TombstoneLife,
) {
    let now = Instant::now();
    let remaining = entry
        .expires_at
        .map(|end| end.saturating_duration_since(now))
        .unwrap_or_default();
    entry.value.action = entry.value.action.clone().resolved(status, Some(at));
    entry.expires_at = Some(now + tombstone.after(remaining));
}

#[async_trait]
impl PendingActionStore for MemoryPendingActions {
    async fn create(&self, tenant: &Tenant, action: &PendingAction, ttl: Ttl) -> StoreResult<bool> {
        self.engine.ensure_room()?;
        let key = entry_key(tenant, &action.token);
        Ok(self.engine.update(&key, |slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(Entry {
                value: Record {
                    action: action.clone(),
                    idempotency_key: None,
                },
                expires_at: Some(Instant::now() + ttl.duration()),
            });
            true
        }))
    }

    async fn get(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
    ) -> StoreResult<Option<PendingAction>> {
        Ok(self.engine.read(&entry_key(tenant, token), |e| {
            e.map(|e| e.value.action.clone())
        }))
    }

    async fn take(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
    ) -> StoreResult<Option<PendingAction>> {
        Ok(self
            .engine
            .update(&entry_key(tenant, token), |slot| slot.take())
            .map(|e| e.value.action))
    }

    async fn confirm(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
        at: OffsetDateTime,
        idempotency_key: Option<&IdempotencyKey>,
        tombstone: TombstoneLife,
    ) -> StoreResult<Confirm> {
        Ok(self.engine.update(&entry_key(tenant, token), |slot| {
            let Some(entry) = slot else {
                return Confirm::NotFound;
            };
            match entry.value.action.status {
                ActionStatus::Pending => {
                    resolve(entry, ActionStatus::Confirmed, at, tombstone);
                    entry.value.idempotency_key = idempotency_key.cloned();
                    Confirm::Confirmed(entry.value.action.clone())
                }
                ActionStatus::Confirmed
                    if idempotency_key.is_some()
                        && entry.value.idempotency_key.as_ref() == idempotency_key =>
                {
                    Confirm::Replayed(entry.value.action.clone())
                }
                ActionStatus::Confirmed => Confirm::AlreadyConfirmed,
                ActionStatus::Cancelled => Confirm::AlreadyCancelled,
            }
        }))
    }

    async fn cancel(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
        at: OffsetDateTime,
        tombstone: TombstoneLife,
    ) -> StoreResult<Cancel> {
        Ok(self.engine.update(&entry_key(tenant, token), |slot| {
            let Some(entry) = slot else {
                return Cancel::NotFound;
            };
            match entry.value.action.status {
                ActionStatus::Pending => {
                    resolve(entry, ActionStatus::Cancelled, at, tombstone);
                    Cancel::Cancelled
                }
                ActionStatus::Confirmed => Cancel::AlreadyConfirmed,
                ActionStatus::Cancelled => Cancel::AlreadyCancelled,
            }
        }))
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
