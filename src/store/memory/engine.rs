//! The expiring map every memory adapter is built on, after tokio's mini-redis `db.rs`.
//!
//! Entries live in a `BTreeMap` (ordered, so listings can page with a cursor). Expiry is checked
//! on every read, so an expired entry is never seen, and a background task removes expired
//! entries so they do not hold memory.
//!
//! Unlike mini-redis there is no second index of entries by expiry time: it would cost ~45 bytes
//! per entry (a `BTreeSet<(Instant, K)>` node and a key copy), which kept the memory backend
//! above Redis's bytes per entry. Instead the purge task sweeps the map in key order, a batch
//! per tick, and keeps sweeping at once while a batch is mostly expired: Redis's own active
//! expiry works the same way, by sampling. An expired entry may hold its memory until the sweep
//! reaches it (about `len / PURGE_BATCH * PURGE_INTERVAL` at most) but is never readable.
//!
//! Every engine of a backend counts what it holds against one [`Budget`]
//! (`memory.max_bytes`): each entry weighs its key and value as [`Weigh`] estimates them plus a
//! fixed overhead. Adapters call [`Engine::ensure_room`] before a write that can grow what is
//! held; deletes, reads and expiry always work, so a full backend drains by itself.
//!
//! A std `Mutex` rather than tokio's: the critical sections are short and never await, which
//! is the case the tokio docs recommend it for. Every operation runs under the one lock, which
//! is what makes each adapter method atomic.

use std::{
    collections::BTreeMap,
    ops::{Bound, RangeBounds},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::store::{StoreError, StoreResult};

/// What an entry's key or value costs, in bytes, roughly: its heap bytes and inline size.
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// Bytes counted per entry beyond its key and value: the map's node share, the expiry, the
/// allocation headers.
const ENTRY_OVERHEAD: usize = 64;

/// The bytes every engine of one backend may hold together, and what they hold now.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        // Saturating: the counts are estimates and must never wrap.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

impl Weigh for String {
    fn weight(&self) -> usize {
        self.len() + 24
    }
}

impl Weigh for Box<str> {
    fn weight(&self) -> usize {
        self.len() + 16
    }
}

impl Weigh for std::sync::Arc<str> {
    fn weight(&self) -> usize {
        self.len() + 32
    }
}

impl Weigh for Box<[u8]> {
    fn weight(&self) -> usize {
        self.len() + 16
    }
}

impl Weigh for crate::domain::ids::Tenant {
    fn weight(&self) -> usize {
        self.as_str().len() + 32
    }
}

impl<A: Weigh, B: Weigh> Weigh for (A, B) {
    fn weight(&self) -> usize {
        self.0.weight() + self.1.weight()
    }
}

/// The length of a value's compact JSON: what a serialisable value weighs, counted without
/// allocating it.
pub fn json_weight(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

fn entry_weight<K: Weigh, V: Weigh>(key: &K, entry: &Entry<V>) -> usize {
    key.weight() + entry.value.weight() + ENTRY_OVERHEAD
}

/// How often the purge task sweeps a batch.
const PURGE_INTERVAL: Duration = Duration::from_millis(100);
/// Entries examined per sweep step, under the lock.
const PURGE_BATCH: usize = 2_000;

/// One stored value and when it expires (`None`: never).
#[derive(Debug, Clone)]
pub struct Entry<V> {
    pub value: V,
    pub expires_at: Option<Instant>,
}

impl<V> Entry<V> {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A handle to one expiring map; cheap to clone, all clones share the map.
pub struct Engine<K, V> {
    shared: Arc<Shared<K, V>>,
    _purge: Arc<PurgeGuard<K, V>>,
}

impl<K, V> Clone for Engine<K, V> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _purge: self._purge.clone(),
        }
    }
}

struct Shared<K, V> {
    state: Mutex<State<K, V>>,
    budget: Arc<Budget>,
}

struct State<K, V> {
    entries: BTreeMap<K, Entry<V>>,
    /// This engine's share of the budget.
    bytes: usize,
    shutdown: bool,
}

/// Stops the purge task when the last engine handle goes away.
struct PurgeGuard<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Drop for PurgeGuard<K, V> {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
    }
}

/// Anything that can drop all its entries at once; see `MemoryBackend::clear`.
pub trait Clear: Send + Sync {
    fn clear(&self);
    /// Entries held, for the metrics.
    fn entries(&self) -> usize;
}

impl<K, V> Shared<K, V> {
    fn lock(&self) -> MutexGuard<'_, State<K, V>> {
        // A panic while holding the lock leaves the map consistent (every mutation is a
        // single BTreeMap call), so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K, V> Shared<K, V>
where
    K: Weigh,
    V: Weigh,
{
    fn count_in(&self, state: &mut State<K, V>, key: &K, entry: &Entry<V>) {
        let weight = entry_weight(key, entry);
        state.bytes += weight;
        self.budget.add(weight);
    }

    fn count_out(&self, state: &mut State<K, V>, key: &K, entry: &Entry<V>) {
        let weight = entry_weight(key, entry);
        state.bytes = state.bytes.saturating_sub(weight);
        self.budget.sub(weight);
    }
}

impl<K, V> Engine<K, V>
where
    K: Ord + Clone + Weigh + Send + Sync + 'static,
    V: Weigh + Send + Sync + 'static,
{
    /// Creates the map, counted against `budget`, and spawns its purge task; must be called
    /// inside a tokio runtime.
    pub fn new(budget: Arc<Budget>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                entries: BTreeMap::new(),
                bytes: 0,
                shutdown: false,
            }),
            budget,
        });
        tokio::spawn(purge_expired(shared.clone()));
        Self {
            _purge: Arc::new(PurgeGuard {
                shared: shared.clone(),
            }),
            shared,
        }
    }

    /// `Full` when the backend's budget is spent: called before a write that can grow it.
    pub fn ensure_room(&self) -> StoreResult<()> {
        let budget = &self.shared.budget;
        if budget.used() >= budget.max() {
            return Err(StoreError::Full(format!(
                "the memory backend holds {} of memory.max_bytes = {} bytes",
                budget.used(),
                budget.max()
            )));
        }
        Ok(())
    }

    /// Reads the live entry for `key` through `read`, under the lock.
    pub fn read<R>(&self, key: &K, read: impl FnOnce(Option<&Entry<V>>) -> R) -> R {
        let state = self.shared.lock();
        let now = Instant::now();
        read(state.entries.get(key).filter(|e| e.is_live(now)))
    }

    /// The atomic read-modify-write every adapter method is built from: `change` sees the live
    /// entry (an expired one shows as `None`) and may replace or remove it; the result is
    /// stored, with its expiry, before the lock is released.
    pub fn update<R>(&self, key: &K, change: impl FnOnce(&mut Option<Entry<V>>) -> R) -> R {
        let mut state = self.shared.lock();
        let now = Instant::now();
        let (stored_key, entry) = match state.entries.remove_entry(key) {
            Some((k, e)) => {
                self.shared.count_out(&mut state, &k, &e);
                (Some(k), Some(e))
            }
            None => (None, None),
        };
        let mut slot = entry.filter(|e| e.is_live(now));
        let result = change(&mut slot);
        if let Some(entry) = slot {
            // Reuses the stored key: no allocation for a rewrite.
            let key = stored_key.unwrap_or_else(|| key.clone());
            self.shared.count_in(&mut state, &key, &entry);
            state.entries.insert(key, entry);
        }
        result
    }

    /// Live entries in key order within `range`, mapped by `visit`, which may also filter
    /// (return `None`): at most `limit` results from at most `max_examined` entries, so one call
    /// holds the lock for a bounded time whatever the filter. Returns the results and, when the
    /// range may hold more, the last key examined, to resume after.
    pub fn scan<R>(
        &self,
        range: impl RangeBounds<K>,
        limit: usize,
        max_examined: usize,
        mut visit: impl FnMut(&K, &Entry<V>) -> Option<R>,
    ) -> (Vec<(K, R)>, Option<K>) {
        let state = self.shared.lock();
        let now = Instant::now();
        let mut out = Vec::new();
        let mut last: Option<&K> = None;
        for (examined, (key, entry)) in state.entries.range(range).enumerate() {
            if out.len() == limit || examined == max_examined {
                return (out, last.cloned());
            }
            last = Some(key);
            if entry.is_live(now)
                && let Some(mapped) = visit(key, entry)
            {
                out.push((key.clone(), mapped));
            }
        }
        (out, None)
    }

    /// Reads several keys under one lock: a consistent snapshot.
    pub fn read_many<R>(&self, keys: &[K], mut read: impl FnMut(Option<&Entry<V>>) -> R) -> Vec<R> {
        let state = self.shared.lock();
        let now = Instant::now();
        keys.iter()
            .map(|key| read(state.entries.get(key).filter(|e| e.is_live(now))))
            .collect()
    }

    /// Writes several entries under one lock: readers see all of them or none.
    pub fn write_many(&self, entries: Vec<(K, Entry<V>)>) {
        let mut state = self.shared.lock();
        for (key, entry) in entries {
            self.shared.count_in(&mut state, &key, &entry);
            if let Some(old) = state.entries.insert(key.clone(), entry) {
                self.shared.count_out(&mut state, &key, &old);
            }
        }
    }

    /// Removes the live entries whose key satisfies `remove` among at most `max_examined`
    /// entries of `range`; returns how many, and the last key examined when the range may hold
    /// more (the caller releases the lock between batches by calling again after it).
    pub fn remove_where(
        &self,
        range: impl RangeBounds<K>,
        max_examined: usize,
        mut remove: impl FnMut(&K) -> bool,
    ) -> (usize, Option<K>) {
        let mut state = self.shared.lock();
        let now = Instant::now();
        let mut doomed = Vec::new();
        let mut last: Option<&K> = None;
        let mut examined = 0;
        for (key, entry) in state.entries.range(range) {
            if examined == max_examined {
                break;
            }
            examined += 1;
            last = Some(key);
            if entry.is_live(now) && remove(key) {
                doomed.push(key.clone());
            }
        }
        let resume = if examined == max_examined {
            last.cloned()
        } else {
            None
        };
        for key in &doomed {
            if let Some(old) = state.entries.remove(key) {
                self.shared.count_out(&mut state, key, &old);
            }
        }
        (doomed.len(), resume)
    }

    /// Number of entries held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.shared.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, V> Clear for Engine<K, V>
where
    K: Ord + Clone + Weigh + Send + Sync + 'static,
    V: Weigh + Send + Sync + 'static,
{
    fn clear(&self) {
        let mut state = self.shared.lock();
        state.entries.clear();
        self.shared.budget.sub(state.bytes);
        state.bytes = 0;
    }

    fn entries(&self) -> usize {
        self.len()
    }
}

impl<K: Ord + Clone, V> State<K, V> {
    /// Examines up to `PURGE_BATCH` entries after `resume` and removes the expired ones.
    /// Returns where to resume (`None`: from the start), whether most were expired, and the
    /// removed entries (for the budget).
    #[allow(clippy::type_complexity)]
    fn sweep(&mut self, resume: Option<K>, now: Instant) -> (Option<K>, bool, Vec<(K, Entry<V>)>) {
        let start = resume.map_or(Bound::Unbounded, Bound::Excluded);
        let mut examined = 0;
        let mut expired = Vec::new();
        let mut last: Option<&K> = None;
        for (key, entry) in self.entries.range((start, Bound::Unbounded)) {
            if examined == PURGE_BATCH {
                break;
            }
            examined += 1;
            if !entry.is_live(now) {
                expired.push(key.clone());
            }
            last = Some(key);
        }
        let resume = if examined == PURGE_BATCH {
            last.cloned()
        } else {
            None
        };
        let mostly_expired = expired.len() * 4 > examined;
        let mut freed = Vec::with_capacity(expired.len());
        for key in expired {
            if let Some(entry) = self.entries.remove(&key) {
                freed.push((key, entry));
            }
        }
        (resume, mostly_expired, freed)
    }
}

async fn purge_expired<K: Ord + Clone + Weigh, V: Weigh>(shared: Arc<Shared<K, V>>) {
    let mut resume = None;
    loop {
        tokio::time::sleep(PURGE_INTERVAL).await;
        loop {
            let mostly_expired = {
                let mut state = shared.lock();
                if state.shutdown {
                    return;
                }
                let (next, mostly_expired, freed) = state.sweep(resume.take(), Instant::now());
                for (key, entry) in &freed {
                    shared.count_out(&mut state, key, entry);
                }
                resume = next;
                mostly_expired
            };
            if !mostly_expired {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests;
