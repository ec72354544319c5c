//! Agent states on the memory engine.
//!
//! One engine entry per tenant holds all its threads and the two indexes Redis keeps beside
//! them (by `updated_at` for `recent`, by expiry for pruning), so every method, index
//! included, is one atomic `update` under the engine's lock and the indexes can never
//! disagree with the threads. Threads expire by their own `expires_ms`, checked on every read
//! exactly like the Redis adapter's index scores; the tenant entry itself expires with its
//! longest-lived thread, so the engine's purge task frees a tenant whose threads have all
//! expired.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Bound,
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh, json_weight},
};
use crate::{
    capabilities::agent_state::{
        model::{
            AgentState, JsonObject, Message, NewAgentState, RecentState, Record, ThreadId, now_ms,
            patch_context,
        },
        port::{AgentStateStore, Appended, Replaced, ThreadPage},
    },
    domain::{ids::Tenant, ttl::Ttl},
    store::{Refusal, StoreError, StoreResult, Versioned},
};

pub struct MemoryAgentStates {
    engine: Engine<Tenant, TenantThreads>,
}

impl MemoryAgentStates {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            engine: backend.engine(),
        }
    }

    /// Runs `change` on the tenant's threads under the engine lock, then re-arms the tenant
    /// entry's expiry (or drops it when no thread is left).
    fn with_tenant<R>(
        &self,
        tenant: &Tenant,
        change: impl FnOnce(&mut TenantThreads, i64) -> R,
    ) -> R {
        self.engine.update(tenant, |slot| {
            let mut threads = slot.take().map(|e| e.value).unwrap_or_default();
            let now = now_ms();
            let result = change(&mut threads, now);
            *slot = threads.last_expiry().map(|last| {
                let left = Duration::from_millis((last - now).max(1) as u64);
                Entry {
                    value: threads,
                    expires_at: Some(Instant::now() + left),
                }
            });
            result
        })
    }

    fn read<R>(&self, tenant: &Tenant, read: impl FnOnce(&TenantThreads, i64) -> R) -> R {
        let empty = TenantThreads::default();
        self.engine
            .read(tenant, |e| read(e.map_or(&empty, |e| &e.value), now_ms()))
    }
}

struct Thread {
    record: Record,
    messages: Vec<Message>,
    /// What `messages` weigh, kept up to date so an append does not re-weigh them all.
    messages_weight: usize,
}

impl Thread {
    fn new(record: Record, messages: Vec<Message>) -> Self {
        let messages_weight = messages.iter().map(json_weight).sum();
        Self {
            record,
            messages,
            messages_weight,
        }
    }

    fn append(&mut self, messages: Vec<Message>) {
        self.messages_weight += messages.iter().map(json_weight).sum::<usize>();
        self.messages.extend(messages);
    }

    /// The thread's bytes, with the two index entries it has; the context and metadata are
    /// weighed afresh (they change in place), the messages are not.
    fn weight(&self, id: &ThreadId) -> usize {
        const RECORD_AND_INDEXES: usize = 192;
        3 * id.as_str().len()
            + json_weight(&self.record.context)
            + json_weight(&self.record.metadata)
            + self.messages_weight
            + RECORD_AND_INDEXES
    }
}

#[derive(Default)]
struct TenantThreads {
    /// What every thread here weighs, kept up to date by `insert` and `remove`.
    weight: usize,
    threads: BTreeMap<ThreadId, Thread>,
    /// `(updated_ms, id)`, like the Redis `recent` sorted set.
    recent: BTreeSet<(i64, ThreadId)>,
    /// `(expires_ms, id)`, like the Redis `expiries` sorted set.
    expiries: BTreeSet<(i64, ThreadId)>,
}

impl Weigh for TenantThreads {
    fn weight(&self) -> usize {
        self.weight
    }
}

impl TenantThreads {
    fn live(&self, id: &ThreadId, now: i64) -> Option<&Thread> {
        self.threads.get(id).filter(|t| t.record.expires_ms > now)
    }

    fn remove(&mut self, id: &ThreadId) -> Option<Thread> {
        let thread = self.threads.remove(id)?;
        self.weight = self.weight.saturating_sub(thread.weight(id));
        self.recent.remove(&(thread.record.updated_ms, id.clone()));
        self.expiries
            .remove(&(thread.record.expires_ms, id.clone()));
        Some(thread)
    }

    fn insert(&mut self, id: ThreadId, thread: Thread) {
        self.remove(&id);
        self.weight += thread.weight(&id);
        self.recent.insert((thread.record.updated_ms, id.clone()));
        self.expiries.insert((thread.record.expires_ms, id.clone()));
        self.threads.insert(id, thread);
    }

    /// Re-indexes a thread after `change` (which may move its timestamps).
    fn modify<R>(&mut self, id: &ThreadId, change: impl FnOnce(&mut Thread) -> R) -> Option<R> {
        let mut thread = self.remove(id)?;
        let result = change(&mut thread);
        self.insert(id.clone(), thread);
        Some(result)
    }

    /// Drops every expired thread; returns how many.
    fn prune(&mut self, now: i64) -> u64 {
        let mut removed = 0;
        while let Some((at, id)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.remove(&id);
            removed += 1;
        }
        removed
    }

    fn last_expiry(&self) -> Option<i64> {
        self.expiries.last().map(|(at, _)| *at)
    }
}

/// Marks a change of the state: version +1, `updated_at` now, TTL renewed.
fn touch(record: &mut Record, now: i64) {
    record.version += 1;
    record.updated_ms = now;
    record.expires_ms = now + record.ttl_seconds as i64 * 1000;
}

fn new_record(state: &NewAgentState, now: i64, created_ms: i64, version: u64) -> Record {
    Record {
        context: state.context.clone(),
        metadata: state.metadata.clone(),
        is_relevant: state.is_relevant,
        created_ms,
        updated_ms: now,
        expires_ms: now + state.ttl_seconds as i64 * 1000,
        version,
        ttl_seconds: state.ttl_seconds,
    }
}

fn to_state(id: &ThreadId, thread: &Thread, last_messages: Option<u64>) -> AgentState {
    let total = thread.messages.len();
    let from = match last_messages {
        Some(n) => total.saturating_sub(n.min(total as u64) as usize),
        None => 0,
    };
    AgentState::from_record(
        id,
        thread.record.clone(),
        thread.messages[from..].to_vec(),
        total as u64,
    )
}

/// Checks a live thread against an expected version.
fn check(thread: Option<&Thread>, if_version: Option<u64>) -> Result<(), Refusal> {
    match (thread, if_version) {
        (None, _) => Err(Refusal::Missing),
        (Some(t), Some(v)) if t.record.version != v => Err(Refusal::Stale),
        _ => Ok(()),
    }
}

#[async_trait]
impl AgentStateStore for MemoryAgentStates {
    async fn create(
        &self,
        tenant: &Tenant,
        state: &NewAgentState,
    ) -> StoreResult<Option<AgentState>> {
        self.engine.ensure_room()?;
        Ok(self.with_tenant(tenant, |threads, now| {
            if threads.live(&state.thread_id, now).is_some() {
                return None;
            }
            let thread = Thread::new(new_record(state, now, now, 1), state.messages.clone());
            let view = to_state(&state.thread_id, &thread, None);
            threads.insert(state.thread_id.clone(), thread);
            Some(view)
        }))
    }

    async fn get(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        last_messages: Option<u64>,
    ) -> StoreResult<Option<AgentState>> {
        Ok(self.read(tenant, |threads, now| {
            threads
                .live(thread, now)
                .map(|t| to_state(thread, t, last_messages))
        }))
    }

    async fn exists(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool> {
        Ok(self.read(tenant, |threads, now| threads.live(thread, now).is_some()))
    }

    async fn replace(
        &self,
        tenant: &Tenant,
        state: &NewAgentState,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<Replaced>> {
        self.engine.ensure_room()?;
        Ok(self.with_tenant(tenant, |threads, now| {
            let current = threads.live(&state.thread_id, now);
            if let Some(expected) = if_version
                && current.is_none_or(|t| t.record.version != expected)
            {
                return Versioned::Stale;
            }
            let (created_ms, version) = current
                .map(|t| (t.record.created_ms, t.record.version + 1))
                .unwrap_or((now, 1));
            let created = current.is_none();
            let thread = Thread::new(
                new_record(state, now, created_ms, version),
                state.messages.clone(),
            );
            let view = to_state(&state.thread_id, &thread, None);
            threads.insert(state.thread_id.clone(), thread);
            Versioned::Done(Replaced {
                state: view,
                created,
            })
        }))
    }

    async fn delete(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool> {
        Ok(self.with_tenant(tenant, |threads, now| {
            let live = threads.live(thread, now).is_some();
            threads.remove(thread);
            live
        }))
    }

    async fn append(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        messages: &[Message],
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<Appended>> {
        self.engine.ensure_room()?;
        Ok(self.with_tenant(tenant, |threads, now| {
            if let Err(refusal) = check(threads.live(thread, now), if_version) {
                return refusal.into();
            }
            let appended = threads.modify(thread, |t| {
                t.append(messages.to_vec());
                touch(&mut t.record, now);
                Appended {
                    message_count: t.messages.len() as u64,
                    version: t.record.version,
                }
            });
            appended.map_or(Versioned::Missing, Versioned::Done)
        }))
    }

    async fn patch_context(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        patch: &JsonObject,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<AgentState>> {
        self.engine.ensure_room()?;
        Ok(self.with_tenant(tenant, |threads, now| {
            if let Err(refusal) = check(threads.live(thread, now), if_version) {
                return refusal.into();
            }
            let state = threads.modify(thread, |t| {
                t.record.context = patch_context(&t.record.context, patch);
                touch(&mut t.record, now);
                to_state(thread, t, None)
            });
            state.map_or(Versioned::Missing, Versioned::Done)
        }))
    }

    async fn set_relevance(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        is_relevant: bool,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<u64>> {
        Ok(self.with_tenant(tenant, |threads, now| {
            if let Err(refusal) = check(threads.live(thread, now), if_version) {
                return refusal.into();
            }
            let version = threads.modify(thread, |t| {
                t.record.is_relevant = is_relevant;
                touch(&mut t.record, now);
                t.record.version
            });
            version.map_or(Versioned::Missing, Versioned::Done)
        }))
    }

    async fn list(
        &self,
        tenant: &Tenant,
        after: Option<&ThreadId>,
        limit: usize,
    ) -> StoreResult<ThreadPage> {
        Ok(self.with_tenant(tenant, |threads, now| {
            threads.prune(now);
            let start = match after {
                Some(id) => Bound::Excluded(id),
                None => Bound::Unbounded,
            };
            let mut ids = threads
                .threads
                .range::<ThreadId, _>((start, Bound::Unbounded));
            let thread_ids: Vec<ThreadId> =
                ids.by_ref().take(limit).map(|(id, _)| id.clone()).collect();
            ThreadPage {
                more: ids.next().is_some(),
                thread_ids,
            }
        }))
    }

    async fn recent(&self, tenant: &Tenant, limit: usize) -> StoreResult<Vec<RecentState>> {
        Ok(self.with_tenant(tenant, |threads, now| {
            threads.prune(now);
            threads
                .recent
                .iter()
                .rev()
                .take(limit)
                .filter_map(|(_, id)| {
                    let t = threads.threads.get(id)?;
                    Some(RecentState::new(
                        id.as_str(),
                        t.record.updated_ms,
                        t.messages.len() as u64,
                        t.record.is_relevant,
                    ))
                })
                .collect()
        }))
    }

    async fn ttl(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<Option<u64>> {
        Ok(self.read(tenant, |threads, now| {
            threads
                .live(thread, now)
                .map(|t| ((t.record.expires_ms - now) as u64).div_ceil(1000))
        }))
    }

    async fn set_ttl(&self, tenant: &Tenant, thread: &ThreadId, ttl: Ttl) -> StoreResult<bool> {
        Ok(self.with_tenant(tenant, |threads, now| {
            if threads.live(thread, now).is_none() {
                return false;
            }
            threads
                .modify(thread, |t| {
                    t.record.ttl_seconds = ttl.seconds();
                    t.record.expires_ms = now + ttl.seconds() as i64 * 1000;
                })
                .is_some()
        }))
    }

    async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64> {
        Ok(self.with_tenant(tenant, |threads, now| threads.prune(now)))
    }

    async fn restore(
        &self,
        tenant: &Tenant,
        state: &AgentState,
        ttl_seconds: u64,
        only_if_absent: bool,
    ) -> StoreResult<bool> {
        let id = ThreadId::parse(state.thread_id.as_str())
            .map_err(|e| StoreError::Internal(format!("restore: {e}")))?;
        self.engine.ensure_room()?;
        let record = Record::restored(state, ttl_seconds);
        Ok(self.with_tenant(tenant, |threads, now| {
            if record.expires_ms <= now || (only_if_absent && threads.live(&id, now).is_some()) {
                return false;
            }
            threads.insert(id, Thread::new(record, state.messages.clone()));
            true
        }))
    }
}
