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
//! A std `Mutex` rather than tokio's: the critical sections are short and never await, which
//! is the case the tokio docs recommend it for. Every operation runs under the one lock, which
//! is what makes each adapter method atomic.

use std::{
    collections::BTreeMap,
    ops::{Bound, RangeBounds},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

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
}

struct State<K, V> {
    entries: BTreeMap<K, Entry<V>>,
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

impl<K, V> Engine<K, V>
where
    K: Ord + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// Creates the map and spawns its purge task; must be called inside a tokio runtime.
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                entries: BTreeMap::new(),
                shutdown: false,
            }),
        });
        tokio::spawn(purge_expired(shared.clone()));
        Self {
            _purge: Arc::new(PurgeGuard {
                shared: shared.clone(),
            }),
            shared,
        }
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
            Some((k, e)) => (Some(k), Some(e)),
            None => (None, None),
        };
        let mut slot = entry.filter(|e| e.is_live(now));
        let result = change(&mut slot);
        if let Some(entry) = slot {
            // Reuses the stored key: no allocation for a rewrite.
            state
                .entries
                .insert(stored_key.unwrap_or_else(|| key.clone()), entry);
        }
        result
    }

    /// Up to `limit` live entries in key order within `range`, mapped by `visit`, which may
    /// also filter (return `None`). Returns the pairs and whether the range has more keys.
    pub fn scan<R>(
        &self,
        range: impl RangeBounds<K>,
        limit: usize,
        mut visit: impl FnMut(&K, &Entry<V>) -> Option<R>,
    ) -> (Vec<(K, R)>, bool) {
        let state = self.shared.lock();
        let now = Instant::now();
        let mut out = Vec::new();
        for (key, entry) in state.entries.range(range) {
            if out.len() == limit {
                return (out, true);
            }
            if entry.is_live(now)
                && let Some(mapped) = visit(key, entry)
            {
                out.push((key.clone(), mapped));
            }
        }
        (out, false)
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
            state.entries.insert(key, entry);
        }
    }

    /// Removes every live entry in `range` whose key satisfies `remove`; returns how many.
    pub fn remove_where(
        &self,
        range: impl RangeBounds<K>,
        mut remove: impl FnMut(&K) -> bool,
    ) -> usize {
        let mut state = self.shared.lock();
        let now = Instant::now();
        let doomed: Vec<K> = state
            .entries
            .range(range)
            .filter(|(key, entry)| entry.is_live(now) && remove(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            state.entries.remove(key);
        }
        doomed.len()
    }

    /// Number of entries held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.shared.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, V> Default for Engine<K, V>
where
    K: Ord + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Clear for Engine<K, V>
where
    K: Ord + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    fn clear(&self) {
        self.shared.lock().entries.clear();
    }
}

impl<K: Ord + Clone, V> State<K, V> {
    /// Examines up to `PURGE_BATCH` entries after `resume` and removes the expired ones.
    /// Returns where to resume (`None`: from the start) and whether most were expired.
    fn sweep(&mut self, resume: Option<K>, now: Instant) -> (Option<K>, bool) {
        let start = resume.map_or(Bound::Unbounded, Bound::Excluded);
        let mut examined = 0;
        let mut expired = Vec::new();
        let mut last = None;
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
        for key in &expired {
            self.entries.remove(key);
        }
        (resume, mostly_expired)
    }
}

async fn purge_expired<K: Ord + Clone, V>(shared: Arc<Shared<K, V>>) {
    let mut resume = None;
    loop {
        tokio::time::sleep(PURGE_INTERVAL).await;
        loop {
            let mostly_expired = {
                let mut state = shared.lock();
                if state.shutdown {
                    return;
                }
                let (next, mostly_expired) = state.sweep(resume.take(), Instant::now());
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
mod tests {
    use super::*;

    fn put(engine: &Engine<String, u32>, key: &str, value: u32, ttl: Option<u64>) {
        engine.update(&key.to_string(), |slot| {
            *slot = Some(Entry {
                value,
                expires_at: ttl.map(|s| Instant::now() + Duration::from_secs(s)),
            })
        });
    }

    fn get(engine: &Engine<String, u32>, key: &str) -> Option<u32> {
        engine.read(&key.to_string(), |e| e.map(|e| e.value))
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_invisible_then_purged() {
        let engine = Engine::new();
        put(&engine, "short", 1, Some(5));
        put(&engine, "long", 2, Some(50));
        put(&engine, "forever", 3, None);
        assert_eq!(get(&engine, "short"), Some(1));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            get(&engine, "short"),
            None,
            "expired entries are never read"
        );
        // Let the purge task run.
        tokio::time::sleep(PURGE_INTERVAL * 2).await;
        assert_eq!(engine.len(), 2, "the purge task removed the expired entry");
        tokio::time::advance(Duration::from_secs(60)).await;
        tokio::time::sleep(PURGE_INTERVAL * 2).await;
        assert_eq!(engine.len(), 1);
        assert_eq!(get(&engine, "forever"), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_covers_maps_larger_than_a_batch() {
        let engine = Engine::new();
        for i in 0..(3 * PURGE_BATCH + 10) {
            put(&engine, &format!("short-{i:06}"), 1, Some(1));
        }
        for i in 0..PURGE_BATCH {
            put(&engine, &format!("long-{i:06}"), 2, Some(1000));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::time::sleep(PURGE_INTERVAL * 50).await;
        assert_eq!(engine.len(), PURGE_BATCH, "every expired entry was swept");
    }

    #[tokio::test(start_paused = true)]
    async fn update_sees_expired_as_absent_and_rewrite_moves_expiry() {
        let engine = Engine::new();
        put(&engine, "k", 1, Some(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        let seen = engine.update(&"k".to_string(), |slot| slot.is_some());
        assert!(!seen);
        put(&engine, "k", 2, Some(10));
        put(&engine, "k", 3, None);
        tokio::time::advance(Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            get(&engine, "k"),
            Some(3),
            "the old expiry no longer applies"
        );
    }

    #[tokio::test]
    async fn scan_pages_in_order_and_clear_empties() {
        let engine = Engine::new();
        for i in 0..5 {
            put(&engine, &format!("k{i}"), i, None);
        }
        let (page, more) = engine.scan(.., 2, |_, e| Some(e.value));
        assert_eq!(page.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec![0, 1]);
        assert!(more);
        let (page, more) = engine.scan("k3".to_string().., 10, |_, e| Some(e.value));
        assert_eq!(page.len(), 2);
        assert!(!more);
        engine.clear();
        assert!(engine.is_empty());
    }
}
