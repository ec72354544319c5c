//! The embedded backend: each capability's store implemented on `engine::Engine`, an
//! expiring ordered map. It is the whole backend in `memory` mode and the fallback in `auto`.

pub mod engine;

use std::sync::{Arc, Mutex};

use self::engine::{Budget, Clear, Engine, Weigh};
use super::Stores;
use crate::capabilities::{
    agent_state::memory as agent_state, cache::memory as cache, lock::memory as lock,
    pending_action::memory as pending_action, queue::memory as queue,
    rate_limit::memory as rate_limit, session::memory as session, topic::memory as topic,
    usage::memory as usage,
};
use crate::config::MemorySettings;

/// The wall clock in microseconds since the epoch: the time the memory adapters of the
/// coordination capabilities decide by, as Redis's `TIME` is on Redis.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Owns every memory engine so that they can be emptied together: when `auto` mode returns to
/// Redis, what was written to memory while degraded is dropped, so a later outage can never
/// serve those stale entries again. All engines share one budget, `memory.max_bytes`.
#[derive(Clone)]
pub struct MemoryBackend {
    engines: Arc<Mutex<Vec<Arc<dyn Clear>>>>,
    budget: Arc<Budget>,
}

impl Default for MemoryBackend {
    /// A backend bounded as the default `memory.max_bytes` says.
    fn default() -> Self {
        Self::new(MemorySettings::default().bound())
    }
}

impl MemoryBackend {
    /// A backend whose engines hold at most about `max_bytes` together.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            engines: Arc::default(),
            budget: Arc::new(Budget::new(
                usize::try_from(max_bytes).unwrap_or(usize::MAX),
            )),
        }
    }

    /// Entries the engines hold (expired ones not yet purged included).
    pub fn entries(&self) -> usize {
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|engine| engine.entries())
            .sum()
    }

    /// What the engines hold, and the bound, in bytes.
    pub fn usage(&self) -> (usize, usize) {
        (self.budget.used(), self.budget.max())
    }

    /// A new engine, registered for `clear`. Must be called inside a tokio runtime.
    pub fn engine<K, V>(&self) -> Engine<K, V>
    where
        K: Ord + Clone + Weigh + Send + Sync + 'static,
        V: Weigh + Send + Sync + 'static,
    {
        let engine = Engine::new(self.budget.clone());
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(engine.clone()));
        engine
    }

    pub fn clear(&self) {
        for engine in self
            .engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            engine.clear();
        }
    }

    /// One store per capability, all on engines of this backend.
    pub fn stores(&self) -> Stores {
        let usage = Arc::new(usage::MemoryUsage::new(self));
        Stores {
            cache: Arc::new(cache::MemoryCache::new(self)),
            pending_actions: Arc::new(pending_action::MemoryPendingActions::new(self)),
            agent_states: Arc::new(agent_state::MemoryAgentStates::new(self)),
            sessions: Arc::new(session::MemorySessions::new(self)),
            rate_limits: Arc::new(rate_limit::MemoryRateLimits::new(self)),
            locks: Arc::new(lock::MemoryLocks::new(self)),
            queues: Arc::new(queue::MemoryQueues::new(self)),
            topics: Arc::new(topic::MemoryTopics::new(self)),
            usage: usage.clone(),
            budgets: usage,
        }
    }
}

/// Keys an inventory page examines per call at most (it may then be short, or empty, and
/// still carry a cursor).
pub(crate) const INVENTORY_EXAMINED: usize = 10_000;

/// One inventory page of an engine keyed `{tenant}/{id}`: the tenant's ids after `cursor` (the
/// last id of the previous page).
pub(crate) fn prefixed_inventory<K, V>(
    engine: &Engine<K, V>,
    tenant: &crate::domain::ids::Tenant,
    cursor: Option<&str>,
    limit: usize,
) -> super::IdPage
where
    K: Ord + Clone + Weigh + Send + Sync + 'static + From<String> + std::ops::Deref<Target = str>,
    V: Weigh + Send + Sync + 'static,
{
    prefixed_scan(engine, tenant, cursor, limit, |id, _| vec![id.to_string()])
}

/// One inventory page of an engine keyed `{tenant}/{id}` whose entries each hold several
/// items (a queue's jobs, a subject's totals): `ids` lists an entry's, from its id and value. A
/// page covers up to `limit` entries; the cursor is the last entry's id.
pub(crate) fn prefixed_scan<K, V>(
    engine: &Engine<K, V>,
    tenant: &crate::domain::ids::Tenant,
    cursor: Option<&str>,
    limit: usize,
    ids: impl Fn(&str, &V) -> Vec<String>,
) -> super::IdPage
where
    K: Ord + Clone + Weigh + Send + Sync + 'static + From<String> + std::ops::Deref<Target = str>,
    V: Weigh + Send + Sync + 'static,
{
    use std::ops::Bound;
    let prefix = format!("{tenant}/");
    // `0` follows `/`: the first key past every one of this tenant's.
    let end = K::from(format!("{tenant}0"));
    let start = match cursor {
        Some(after) => Bound::Excluded(K::from(format!("{prefix}{after}"))),
        None => Bound::Included(K::from(prefix.clone())),
    };
    let (page, resume) = engine.scan(
        (start, Bound::Excluded(end)),
        limit,
        INVENTORY_EXAMINED,
        |k, entry| Some(ids(&k[prefix.len()..], &entry.value)),
    );
    super::IdPage {
        ids: page.into_iter().flat_map(|(_, ids)| ids).collect(),
        next: resume.map(|last| last[prefix.len()..].to_string()),
    }
}
