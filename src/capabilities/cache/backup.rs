//! The cache in a backup: one record per value, `namespace/key`, with its remaining lifetime.
//! A value written without a TTL has none.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, value::RawValue};
use time::OffsetDateTime;

use super::{
    model::{CacheValue, json_equal},
    port::{PutCondition, TtlState},
};
use crate::{
    domain::{
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl},
    },
    store::{IdPage, StoreError, StoreResult},
    transfer::{Backup, Exported, Mode, Outcome, PAGE, Restore, Transfer, format::Record, left_ms},
};

pub struct CacheBackup;

struct Item {
    tenant: Tenant,
    ns: Namespace,
    key: CacheKey,
    value: CacheValue,
    /// When it expires; `None`: never.
    until: Option<OffsetDateTime>,
}

#[async_trait]
impl Backup for CacheBackup {
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage> {
        cx.stores.cache.inventory(tenant, cursor, PAGE).await
    }

    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>> {
        let cache = &cx.stores.cache;
        let Some((ns, key)) = id
            .split_once('/')
            .and_then(|(ns, key)| Some((Namespace::parse(ns).ok()?, CacheKey::parse(key).ok()?)))
        else {
            return Ok(None);
        };
        let Some(value) = cache.get(tenant, &ns, &key).await? else {
            return Ok(None);
        };
        let ttl_ms = match cache.ttl(tenant, &ns, &key).await? {
            TtlState::Missing => return Ok(None),
            TtlState::Persistent => None,
            TtlState::Expires(seconds) => Some(seconds.saturating_mul(1000)),
        };
        // JSON allows a newline only between tokens: a space says the same on one line.
        let text = String::from_utf8_lossy(value.bytes()).replace(['\n', '\r'], " ");
        let value = RawValue::from_string(text)
            .map_err(|e| StoreError::Internal(format!("backup of {id}: {e}")))?;
        Ok(Some(Exported {
            value,
            ttl_ms,
            version: None,
        }))
    }

    fn check(
        &self,
        cx: &Transfer,
        tenant: Tenant,
        record: &Record,
        created: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String> {
        let (ns, key) = record
            .id
            .split_once('/')
            .ok_or("a cache id is namespace/key")?;
        let ns = Namespace::parse(ns).map_err(|e| e.to_string())?;
        let key = CacheKey::parse(key).map_err(|e| e.to_string())?;
        let value = CacheValue::parse(
            bytes::Bytes::copy_from_slice(record.value.get().as_bytes()),
            cx.settings.cache.max_value_bytes,
        )
        .map_err(|e| format!("value: {e}"))?;
        let until = record.ttl_ms.map(|ms| created + Duration::from_millis(ms));
        Ok(Box::new(Item {
            tenant,
            ns,
            key,
            value,
            until,
        }))
    }
}

#[async_trait]
impl Restore for Item {
    fn until(&self, _: &Transfer) -> Option<OffsetDateTime> {
        self.until
    }

    async fn write(&self, cx: &Transfer, mode: Mode, now: OffsetDateTime) -> StoreResult<Outcome> {
        let Self {
            tenant,
            ns,
            key,
            value,
            until,
        } = self;
        let cache = &cx.stores.cache;
        let expiry = match until.and_then(|until| left_ms(until, now)) {
            Some(ms) => Expiry::After(Ttl::carried_ms(ms)),
            None => Expiry::Never,
        };
        if mode == Mode::SkipExisting {
            let wrote = cache
                .put(tenant, ns, key, value, expiry, PutCondition::IfAbsent)
                .await?;
            return Ok(if wrote {
                Outcome::Written
            } else {
                Outcome::Skipped
            });
        }
        if let Some(held) = cache.get(tenant, ns, key).await?
            && same_json(&held, value)
            && same_expiry(cache.ttl(tenant, ns, key).await?, expiry)
        {
            return Ok(Outcome::Unchanged);
        }
        cache
            .put(tenant, ns, key, value, expiry, PutCondition::Always)
            .await?;
        Ok(Outcome::Written)
    }
}

fn same_json(held: &CacheValue, value: &CacheValue) -> bool {
    if held.bytes() == value.bytes() {
        return true;
    }
    match (
        serde_json::from_slice::<Value>(held.bytes()),
        serde_json::from_slice::<Value>(value.bytes()),
    ) {
        (Ok(a), Ok(b)) => json_equal(&a, &b),
        _ => false,
    }
}

/// Whether a held TTL is the one a restore would write (whole seconds, within one).
fn same_expiry(held: TtlState, expiry: Expiry) -> bool {
    match (held, expiry) {
        (TtlState::Persistent, Expiry::Never) => true,
        (TtlState::Expires(held), Expiry::After(ttl)) => held.abs_diff(ttl.seconds()) <= 1,
        _ => false,
    }
}
