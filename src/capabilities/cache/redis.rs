//! The cache on Redis: one string per value. Most calls are one command; `incr` is one script
//! call; compare-and-set is a `GET` and then a script that writes only if the bytes are
//! unchanged (JSON equality cannot be judged in Lua, whose cjson confuses `[]` with `{}` and
//! rounds big integers); listing and pattern delete are `SCAN` (+ `UNLINK`) in batches.

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;

use crate::store::redis::{RedisPool, script::Script};
use crate::{
    capabilities::cache::{
        model::{CacheValue, IncrError, Increment, ListCursor, json_equal},
        port::{CacheStore, CasOutcome, KeyPage, PutCondition, TtlState},
    },
    domain::{
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl},
    },
    store::{IdPage, StoreError, StoreResult},
};

static INCR: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_incr", include_str!("scripts/cache_incr.lua")));
static SWAP_IF_UNCHANGED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "cache_swap_if_unchanged",
        include_str!("scripts/cache_swap_if_unchanged.lua"),
    )
});

/// Keys `SCAN` looks at per call while deleting by pattern.
const DELETE_BATCH: usize = 500;
/// Compare-and-set rereads at most this often when the value changes between read and write
/// but stays equal as JSON (a rewrite with other spelling).
const CAS_ATTEMPTS: usize = 8;

fn ttl_arg(expiry: Expiry) -> u64 {
    match expiry {
        Expiry::After(ttl) => ttl.seconds(),
        Expiry::Never => 0,
    }
}

pub struct RedisCache {
    redis: RedisPool,
}

impl RedisCache {
    pub fn new(redis: RedisPool) -> Self {
        Self { redis }
    }

    fn key(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> String {
        self.redis.keys().cache(tenant, ns, key)
    }

    /// `SET key value [EX n]`, sized up front for one more flag (`NX`, `XX` or `GET`): its
    /// buffers are allocated once each.
    fn set(key: String, value: &CacheValue, expiry: Expiry) -> redis::Cmd {
        let mut cmd = redis::Cmd::with_capacity(6, 32 + key.len() + value.bytes().len());
        cmd.arg("SET").arg(key).arg(value.bytes().as_ref());
        if let Expiry::After(ttl) = expiry {
            cmd.arg("EX").arg(ttl.seconds());
        }
        cmd
    }

    /// Runs a command that answers one value or nil (`GET`, `GETDEL`, `SET ... GET`).
    async fn value(&self, cmd: &redis::Cmd) -> StoreResult<Option<CacheValue>> {
        let value: Option<Vec<u8>> = self.redis.query(cmd).await?;
        Ok(value.map(|v| CacheValue::from_stored(Bytes::from(v))))
    }
}

#[async_trait]
impl CacheStore for RedisCache {
    async fn get(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
    ) -> StoreResult<Option<CacheValue>> {
        let key = self.key(tenant, ns, key);
        // Sized up front: the command's buffers are then allocated once each.
        let mut get = redis::Cmd::with_capacity(2, 3 + key.len());
        self.value(get.arg("GET").arg(key)).await
    }

    async fn exists(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool> {
        let n: u64 = self
            .redis
            .query(redis::cmd("EXISTS").arg(self.key(tenant, ns, key)))
            .await?;
        Ok(n == 1)
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
        let mut cmd = Self::set(self.key(tenant, ns, key), value, expiry);
        match condition {
            PutCondition::Always => {}
            PutCondition::IfAbsent => {
                cmd.arg("NX");
            }
            PutCondition::IfPresent => {
                cmd.arg("XX");
            }
        }
        // `SET` answers OK when it wrote and nil when NX/XX prevented it.
        let reply: Option<String> = self.redis.query(&cmd).await?;
        Ok(reply.is_some())
    }

    async fn get_and_set(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        value: &CacheValue,
        expiry: Expiry,
    ) -> StoreResult<Option<CacheValue>> {
        let mut cmd = Self::set(self.key(tenant, ns, key), value, expiry);
        self.value(cmd.arg("GET")).await
    }

    async fn get_and_delete(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
    ) -> StoreResult<Option<CacheValue>> {
        self.value(redis::cmd("GETDEL").arg(self.key(tenant, ns, key)))
            .await
    }

    async fn delete(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool> {
        let n: u64 = self
            .redis
            .query(redis::cmd("UNLINK").arg(self.key(tenant, ns, key)))
            .await?;
        Ok(n == 1)
    }

    async fn ttl(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<TtlState> {
        let ms: i64 = self
            .redis
            .query(redis::cmd("PTTL").arg(self.key(tenant, ns, key)))
            .await?;
        Ok(match ms {
            -2 => TtlState::Missing,
            -1 => TtlState::Persistent,
            ms => TtlState::Expires((ms.max(1) as u64).div_ceil(1000)),
        })
    }

    async fn set_ttl(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        ttl: Ttl,
    ) -> StoreResult<bool> {
        let n: u64 = self
            .redis
            .query(
                redis::cmd("EXPIRE")
                    .arg(self.key(tenant, ns, key))
                    .arg(ttl.seconds()),
            )
            .await?;
        Ok(n == 1)
    }

    async fn incr(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        by: Increment,
        create_expiry: Expiry,
    ) -> StoreResult<Result<String, IncrError>> {
        let initial = match by.initial_text() {
            Ok(text) => text,
            Err(e) => return Ok(Err(e)),
        };
        let (by_text, integer) = match by {
            Increment::Integer(i) => (i.to_string(), "1"),
            Increment::Float(f) => (format!("{f:e}"), "0"),
        };
        let mut invocation = INCR.key(self.key(tenant, ns, key));
        invocation
            .arg(by_text)
            .arg(integer)
            .arg(initial)
            .arg(ttl_arg(create_expiry));
        let reply: Vec<String> = self.redis.script(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("ok") if reply.len() == 2 => Ok(Ok(reply[1].clone())),
            Some("not_a_number") => Ok(Err(IncrError::NotANumber)),
            Some("out_of_range") => Ok(Err(IncrError::OutOfRange)),
            _ => Err(StoreError::Internal(format!(
                "cache_incr answered {reply:?}"
            ))),
        }
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
        let redis_key = self.key(tenant, ns, key);
        let Some(expected) = expected else {
            // "Absent" needs no comparison: SET NX is the whole compare-and-set.
            let mut cmd = redis::cmd("SET");
            cmd.arg(&redis_key).arg(value.bytes().as_ref());
            if let Expiry::After(ttl) = expiry {
                cmd.arg("EX").arg(ttl.seconds());
            }
            cmd.arg("NX").arg("GET");
            let previous: Option<Vec<u8>> = self.redis.query(&cmd).await?;
            return Ok(match previous {
                None => CasOutcome::Swapped,
                Some(current) => CasOutcome::Failed {
                    current: Some(CacheValue::from_stored(Bytes::from(current))),
                },
            });
        };
        let mut current: Option<Vec<u8>> = None;
        for _ in 0..CAS_ATTEMPTS {
            current = self.redis.query(redis::cmd("GET").arg(&redis_key)).await?;
            let Some(seen) = &current else { break };
            let equal = serde_json::from_slice(seen).is_ok_and(|v| json_equal(expected, &v));
            if !equal {
                break;
            }
            let mut invocation = SWAP_IF_UNCHANGED.key(&redis_key);
            invocation
                .arg(seen.as_slice())
                .arg(value.bytes().as_ref())
                .arg(ttl_arg(expiry));
            let swapped: u8 = self.redis.script(&invocation).await?;
            if swapped == 1 {
                return Ok(CasOutcome::Swapped);
            }
        }
        Ok(CasOutcome::Failed {
            current: current.map(|c| CacheValue::from_stored(Bytes::from(c))),
        })
    }

    async fn get_many(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        keys: &[CacheKey],
    ) -> StoreResult<Vec<Option<CacheValue>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(tenant, ns, key));
        }
        let values: Vec<Option<Vec<u8>>> = self.redis.query(&cmd).await?;
        Ok(values
            .into_iter()
            .map(|v| v.map(|v| CacheValue::from_stored(Bytes::from(v))))
            .collect())
    }

    async fn put_many(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        entries: &[(CacheKey, CacheValue)],
        expiry: Expiry,
    ) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // MULTI/EXEC in one pipeline: one round trip, and no reader sees half of it. All keys
        // share the namespace's hash tag, so this is one slot on a cluster too.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in entries {
            let set = pipe
                .cmd("SET")
                .arg(self.key(tenant, ns, key))
                .arg(value.bytes().as_ref());
            if let Expiry::After(ttl) = expiry {
                set.arg("EX").arg(ttl.seconds());
            }
            set.ignore();
        }
        let () = self.redis.pipeline(&pipe).await?;
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
        let scan_cursor = match cursor {
            ListCursor::Redis(n) => *n,
            // The memory backend's cursor (the service failed over since the last page): the
            // listing starts again here. Keys may repeat, as they may with SCAN.
            ListCursor::Start | ListCursor::Memory(_) => 0,
        };
        let prefix = self.redis.keys().cache_namespace(tenant, ns);
        let (next, keys) = self
            .redis
            .scan_slot(&prefix, scan_cursor, &format!("{prefix}{pattern}"), limit)
            .await?;
        let keys = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let next = if next == 0 {
            ListCursor::Start
        } else {
            ListCursor::Redis(next)
        };
        Ok(KeyPage { keys, next })
    }

    async fn delete_matching(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        pattern: &str,
    ) -> StoreResult<u64> {
        let matching = format!("{}{pattern}", self.redis.keys().cache_namespace(tenant, ns));
        let mut cursor = 0u64;
        let mut deleted = 0u64;
        loop {
            let (next, keys) = self
                .redis
                .scan_slot(&matching, cursor, &matching, DELETE_BATCH)
                .await?;
            if !keys.is_empty() {
                let n: u64 = self.redis.query(redis::cmd("UNLINK").arg(&keys)).await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        // `{<namespace>}:<key>` after the tenant's prefix.
        let prefix = self.redis.keys().cache_tenant(tenant);
        crate::store::redis::scan_ids(&self.redis, &prefix, cursor, limit, |rest| {
            let (ns, key) = rest.strip_prefix('{')?.split_once("}:")?;
            Some(format!("{ns}/{key}"))
        })
        .await
    }
}

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
    /// A cache value: `{prefix}:{tenant}:cache:{<namespace>}:{key}`. The braces are both the
    /// hash tag (a namespace lives in one slot, so batches are one call) and the namespace's
    /// end, so `ns` is never a prefix of `ns2`'s keys.
    pub fn cache(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> String {
        // `cache_namespace` then the key, in one allocation (`concat` sizes it first): this runs
        // per request.
        let (prefix, tenant, ns, key) = (&*self.prefix, tenant.as_str(), ns.as_str(), key.as_str());
        [prefix, ":", tenant, ":cache:{", ns, "}:", key].concat()
    }

    /// The literal start of every key of one namespace.
    pub fn cache_namespace(&self, tenant: &Tenant, ns: &Namespace) -> String {
        format!("{}{{{ns}}}:", self.cache_tenant(tenant))
    }

    /// The literal start of every cache key of a tenant.
    pub fn cache_tenant(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:cache:", self.prefix)
    }
}
