//! The cache port: the trait its adapters implement and the outcomes of its calls.

use crate::{
    capabilities::cache::model::{CacheValue, IncrError, Increment, ListCursor},
    domain::{
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl},
    },
};

use crate::store::handback::{Bulk, Note};
use crate::store::{IdPage, StoreResult};

/// When a cache write applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    Always,
    /// Only when no live value exists (`SET NX`).
    IfAbsent,
    /// Only when a live value exists (`SET XX`).
    IfPresent,
}

/// What a compare-and-set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    Swapped,
    /// The live value (or its absence) did not equal `expected`; nothing was written.
    Failed {
        current: Option<CacheValue>,
    },
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// `ListCursor::Start` when the listing is complete.
    pub next: ListCursor,
}

/// What a TTL query found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlState {
    Missing,
    Persistent,
    /// Whole seconds left, rounded up so a live entry never reports 0.
    Expires(u64),
}

crate::store::port::port! {
    /// The cache: namespaced JSON values per tenant. A value that has expired is absent for every
    /// method, whether or not a purge has removed it yet.
    pub trait CacheStore {
        /// The live value, or `None`.
        #[repeat(true)]
        #[near(by = get_near)]
        async fn get(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            key: &CacheKey,
        ) -> StoreResult<Option<CacheValue>>;

        /// Whether a live value exists, without transferring it.
        #[repeat(true)]
        async fn exists(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool>;

        /// Writes value and expiry in one atomic step when `condition` holds; returns whether it
        /// wrote. A write replaces the previous expiry.
        #[repeat(condition == PutCondition::Always)]
        #[note(|wrote: &bool| *wrote => [Note::cache(tenant, ns, key)])]
        #[near(then = forget(tenant, ns, key))]
        async fn put(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            key: &CacheKey,
            value: &CacheValue,
            expiry: Expiry,
            condition: PutCondition,
        ) -> StoreResult<bool>;

        /// Writes `value` with `expiry` and returns the live value it replaced, as one atomic step
        /// (`SET ... GET`): of concurrent swaps each sees the value the one before it wrote.
        #[repeat(false)]
        #[note(|_| true => [Note::cache(tenant, ns, key)])]
        #[near(then = forget(tenant, ns, key))]
        async fn get_and_set(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            key: &CacheKey,
            value: &CacheValue,
            expiry: Expiry,
        ) -> StoreResult<Option<CacheValue>>;

        /// Removes the value and returns it, as one atomic step (`GETDEL`): of concurrent readers
        /// exactly one gets it.
        #[repeat(false)]
        #[note(|_| true => [Note::cache(tenant, ns, key)])]
        #[near(then = forget(tenant, ns, key))]
        async fn get_and_delete(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            key: &CacheKey,
        ) -> StoreResult<Option<CacheValue>>;

        /// Removes the value; returns whether a live one existed.
        #[repeat(false)]
        #[note(|_| true => [Note::cache(tenant, ns, key)])]
        #[near(then = forget(tenant, ns, key))]
        async fn delete(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool>;

        #[repeat(true)]
        async fn ttl(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<TtlState>;

        /// Sets a new TTL on a live value; returns false when there is none (nothing is created).
        #[repeat(true)]
        #[note(|wrote: &bool| *wrote => [Note::cache(tenant, ns, key)])]
        #[near(then = forget(tenant, ns, key))]
        async fn set_ttl(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            key: &CacheKey,
            ttl: Ttl,
        ) -> StoreResult<bool>;

        /// Adds `by` to a numeric value atomically and returns the new value's JSON text. A missing
        /// value counts as 0 and the counter is created with `create_expiry`; an existing counter
        /// keeps its TTL. Stays on Redis while degraded (503 then): memory does not hold the
        /// count Redis holds, so it would answer a wrong count, and handing its value back would
        /// replace Redis's count with it, losing increments Redis had acknowledged.
        #[repeat(false)]
        #[memory(false)]
        #[near(then = forget(tenant, ns, key))]
        async fn incr(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            key: &CacheKey,
            by: Increment,
            create_expiry: Expiry,
        ) -> StoreResult<Result<String, IncrError>>;

        /// Writes `value` only if the live value equals `expected` as JSON (`None`: absent), as
        /// one atomic step: of concurrent swaps from the same `expected`, exactly one succeeds.
        #[repeat(false)]
        #[note(|out: &CasOutcome| *out == CasOutcome::Swapped => [Note::cache(tenant, ns, key)])]
        #[near(then = forget(tenant, ns, key))]
        async fn compare_and_swap(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            key: &CacheKey,
            expected: Option<&serde_json::Value>,
            value: &CacheValue,
            expiry: Expiry,
        ) -> StoreResult<CasOutcome>;

        /// The live values of `keys`, in order, read as one snapshot.
        #[repeat(true)]
        async fn get_many(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            keys: &[CacheKey],
        ) -> StoreResult<Vec<Option<CacheValue>>>;

        /// Writes every entry with the same expiry, atomically: no reader sees some but not all.
        #[repeat(true)]
        #[note(|_| true => entries.iter().map(|(key, _)| Note::cache(tenant, ns, key)))]
        #[near(then = forget_namespace(ns))]
        async fn put_many(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            entries: &[(CacheKey, CacheValue)],
            expiry: Expiry,
        ) -> StoreResult<()>;

        /// Up to about `limit` keys of the namespace matching the Redis-style glob `pattern`, from
        /// `cursor`. Keys of other namespaces and tenants are never seen, whatever the pattern.
        /// Redis may return a key twice across pages (SCAN's guarantee); memory never does.
        #[repeat(true)]
        async fn list(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            pattern: &str,
            cursor: &ListCursor,
            limit: usize,
        ) -> StoreResult<KeyPage>;

        /// Deletes every key of the namespace matching `pattern`, in batches; returns how many.
        #[repeat(false)]
        #[note(|_| true => [Note::Bulk(Bulk::CachePattern(tenant.clone(), ns.clone(), pattern.to_owned()))])]
        #[near(then = forget_namespace(ns))]
        async fn delete_matching(
            &self,
            tenant: &Tenant,
            ns: &Namespace,
            pattern: &str,
        ) -> StoreResult<u64>;

        /// One page of the tenant's live keys in every namespace, as `namespace/key`, for backups.
        /// `cursor` is the `next` of the previous page (`None` first); keys may repeat across
        /// pages, as they may with `SCAN`.
        #[repeat(true)]
        async fn inventory(
            &self,
            tenant: &Tenant,
            cursor: Option<&str>,
            limit: usize,
        ) -> StoreResult<IdPage>;
    }
    for_each_method: for_each_cache_method
}
