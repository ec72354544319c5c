//! The cache on the memory engine. Keys are `tenant/namespace/key`: `/` appears in no tenant,
//! namespace or key, so one namespace's entries form one contiguous range of the ordered map.

use std::ops::Bound;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry},
};
use crate::{
    capabilities::cache::{
        model::{CacheValue, IncrError, Increment, ListCursor, json_equal},
        port::{CacheStore, CasOutcome, KeyPage, PutCondition, TtlState},
    },
    domain::{
        glob,
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl},
    },
    store::{IdPage, StoreResult},
};

/// Entries a listing page or a pattern-delete batch examines under the engine lock: with the
/// longest pattern against the longest keys this bounds one lock hold to a few milliseconds,
/// and a page may be short (even empty) with a cursor to continue, as a `SCAN` page may.
const EXAMINED_PER_CALL: usize = 1_000;

pub struct MemoryCache {
    /// Keys and values as boxed slices, not `Arc`/`Bytes`: 16 bytes less per map slot and
    /// per key allocation, which keeps the memory backend under Redis's bytes per entry.
    engine: Engine<Box<str>, Box<[u8]>>,
}

impl MemoryCache {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            engine: backend.engine(),
        }
    }
}

fn entry_key(tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> Box<str> {
    format!("{tenant}/{ns}/{key}").into()
}

/// The start of a namespace's keys and the bound just past them (`0` follows `/`).
fn namespace_range(tenant: &Tenant, ns: &Namespace) -> (String, Box<str>) {
    let start = format!("{tenant}/{ns}/");
    let end: Box<str> = format!("{tenant}/{ns}0").into();
    (start, end)
}

fn stored(value: &[u8]) -> CacheValue {
    CacheValue::from_stored(Bytes::copy_from_slice(value))
}

/// What a write of `value` with `expiry` stores.
fn entry(value: &CacheValue, expiry: Expiry) -> Entry<Box<[u8]>> {
    Entry {
        value: Box::from(value.bytes().as_ref()),
        expires_at: deadline(expiry),
    }
}

fn deadline(expiry: Expiry) -> Option<Instant> {
    match expiry {
        Expiry::After(ttl) => Some(Instant::now() + ttl.duration()),
        Expiry::Never => None,
    }
}

#[async_trait]
impl CacheStore for MemoryCache {
    async fn get(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
    ) -> StoreResult<Option<CacheValue>> {
        let k = entry_key(tenant, ns, key);
        Ok(self.engine.read(&k, |e| e.map(|e| stored(&e.value))))
    }

    async fn exists(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool> {
        Ok(self
            .engine
            .read(&entry_key(tenant, ns, key), |e| e.is_some()))
    }

    async fn put(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        value: &CacheValue,
        expiry: Expiry,
        condition: PutCondition,
    ) -> StoreResult<bool> {
        self.engine.ensure_room()?;
        Ok(self.engine.update(&entry_key(tenant, ns, key), |slot| {
            let allowed = match condition {
                PutCondition::Always => true,
                PutCondition::IfAbsent => slot.is_none(),
                PutCondition::IfPresent => slot.is_some(),
            };
            if allowed {
                *slot = Some(entry(value, expiry));
            }
            allowed
        }))
    }

    async fn get_and_set(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        value: &CacheValue,
        expiry: Expiry,
    ) -> StoreResult<Option<CacheValue>> {
        self.engine.ensure_room()?;
        Ok(self.engine.update(&entry_key(tenant, ns, key), |slot| {
            let previous = slot.take().map(|e| stored(&e.value));
            *slot = Some(entry(value, expiry));
            previous
        }))
    }

    async fn get_and_delete(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
    ) -> StoreResult<Option<CacheValue>> {
        Ok(self.engine.update(&entry_key(tenant, ns, key), |slot| {
            slot.take().map(|e| stored(&e.value))
        }))
    }

    async fn delete(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool> {
        Ok(self
            .engine
            .update(&entry_key(tenant, ns, key), |slot| slot.take().is_some()))
    }

    async fn ttl(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<TtlState> {
        let now = Instant::now();
        Ok(self.engine.read(&entry_key(tenant, ns, key), |e| match e {
            None => TtlState::Missing,
            Some(Entry {
                expires_at: None, ..
            }) => TtlState::Persistent,
            Some(Entry {
                expires_at: Some(at),
                ..
            }) => TtlState::Expires((*at - now).as_millis().div_ceil(1000) as u64),
        }))
    }

    async fn set_ttl(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        ttl: Ttl,
    ) -> StoreResult<bool> {
        Ok(self
            .engine
            .update(&entry_key(tenant, ns, key), |slot| match slot {
                Some(entry) => {
                    entry.expires_at = deadline(Expiry::After(ttl));
                    true
                }
                None => false,
            }))
    }

    async fn incr(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        by: Increment,
        create_expiry: Expiry,
    ) -> StoreResult<Result<String, IncrError>> {
        self.engine.ensure_room()?;
        Ok(self.engine.update(&entry_key(tenant, ns, key), |slot| {
            let (text, expires_at) = match slot {
                Some(entry) => (by.apply(&entry.value)?, entry.expires_at),
                None => (by.initial_text()?, deadline(create_expiry)),
            };
            *slot = Some(Entry {
                value: Box::from(text.as_bytes()),
                expires_at,
            });
            Ok(text)
        }))
    }

    async fn compare_and_swap(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        expected: Option<&serde_json::Value>,
        value: &CacheValue,
        expiry: Expiry,
    ) -> StoreResult<CasOutcome> {
        self.engine.ensure_room()?;
        Ok(self.engine.update(&entry_key(tenant, ns, key), |slot| {
            let equal = match (&expected, slot.as_ref()) {
                (None, None) => true,
                (Some(expected), Some(entry)) => serde_json::from_slice(&entry.value)
                    .is_ok_and(|current| json_equal(expected, &current)),
                _ => false,
            };
            if !equal {
                return CasOutcome::Failed {
                    current: slot.as_ref().map(|e| stored(&e.value)),
                };
            }
            *slot = Some(entry(value, expiry));
            CasOutcome::Swapped
        }))
    }

    async fn get_many(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        keys: &[CacheKey],
    ) -> StoreResult<Vec<Option<CacheValue>>> {
        let keys: Vec<Box<str>> = keys.iter().map(|k| entry_key(tenant, ns, k)).collect();
        Ok(self
            .engine
            .read_many(&keys, |e| e.map(|e| stored(&e.value))))
    }

    async fn put_many(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        entries: &[(CacheKey, CacheValue)],
        expiry: Expiry,
    ) -> StoreResult<()> {
        self.engine.ensure_room()?;
        let expires_at = deadline(expiry);
        self.engine.write_many(
            entries
                .iter()
                .map(|(key, value)| {
                    let entry = Entry {
                        value: Box::from(value.bytes().as_ref()),
                        expires_at,
                    };
                    (entry_key(tenant, ns, key), entry)
                })
                .collect(),
        );
        Ok(())
    }

    async fn list(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        pattern: &str,
        cursor: &ListCursor,
        limit: usize,
    ) -> StoreResult<KeyPage> {
        let (prefix, end) = namespace_range(tenant, ns);
        let start: Bound<Box<str>> = match cursor {
            ListCursor::Memory(after) => Bound::Excluded(format!("{prefix}{after}").into()),
            // Redis's cursor (the service failed over since the last page): the listing starts
            // again here. Keys may repeat, as they may with SCAN.
            ListCursor::Start | ListCursor::Redis(_) => Bound::Included(prefix.as_str().into()),
        };
        let (page, resume) = self.engine.scan(
            (start, Bound::Excluded(end)),
            limit,
            EXAMINED_PER_CALL,
            |k, _| {
                let key = &k[prefix.len()..];
                glob::matches(pattern, key).then(|| key.to_string())
            },
        );
        let keys: Vec<String> = page.into_iter().map(|(_, key)| key).collect();
        let next = match resume {
            Some(last) => ListCursor::Memory(last[prefix.len()..].to_string()),
            None => ListCursor::Start,
        };
        Ok(KeyPage { keys, next })
    }

    async fn delete_matching(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        pattern: &str,
    ) -> StoreResult<u64> {
        let (prefix, end) = namespace_range(tenant, ns);
        let mut start: Bound<Box<str>> = Bound::Included(prefix.as_str().into());
        let mut removed = 0;
        loop {
            let (batch, resume) = self.engine.remove_where(
                (start, Bound::Excluded(end.clone())),
                EXAMINED_PER_CALL,
                |k| glob::matches(pattern, &k[prefix.len()..]),
            );
            removed += batch as u64;
            match resume {
                Some(last) => start = Bound::Excluded(last),
                None => return Ok(removed),
            }
            // Like SCAN + UNLINK on Redis: other requests run between batches.
            tokio::task::yield_now().await;
        }
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
