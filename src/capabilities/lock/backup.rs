//! Locks in a backup: each lock's fencing mark (the highest token granted or checked), never
//! its lease (a holder's token means nothing on another backend). Restored as the higher of
//! both sides, whatever the mode, so that a stale token stays refused.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::model::{Fence, FenceCheck, LockName};
use crate::{
    domain::ids::Tenant,
    store::{IdPage, StoreError, StoreResult},
    transfer::{Backup, Exported, Mode, Outcome, PAGE, Restore, Transfer, format::Record},
};

pub struct LockBackup;

/// A lock as a record holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockValue {
    fencing_token: u64,
}

struct Item(Tenant, LockName, u64);

#[async_trait]
impl Backup for LockBackup {
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage> {
        cx.stores.locks.inventory(tenant, cursor, PAGE).await
    }

    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>> {
        let Ok(name) = LockName::parse(id) else {
            return Ok(None);
        };
        let info = cx.stores.locks.get(tenant, &name).await?;
        if info.high_water == 0 {
            return Ok(None);
        }
        let value = LockValue {
            fencing_token: info.high_water,
        };
        Exported::new(&value, None).map(Some)
    }

    fn check(
        &self,
        _: &Transfer,
        tenant: Tenant,
        record: &Record,
        _: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String> {
        let name = LockName::parse(record.id.as_str()).map_err(|e| e.to_string())?;
        let v: LockValue =
            serde_json::from_str(record.value.get()).map_err(|e| format!("value: {e}"))?;
        let ceiling = Fence::Restored(v.fencing_token).ceiling(0, crate::store::memory::now_us());
        if v.fencing_token > ceiling {
            return Err(format!(
                "fencing_token: at most {ceiling} (this clock plus an hour, and never above \
                 2^53 - 1): no grant issued {}",
                v.fencing_token
            ));
        }
        Ok(Box::new(Item(tenant, name, v.fencing_token)))
    }
}

#[async_trait]
impl Restore for Item {
    fn until(&self, _: &Transfer) -> Option<OffsetDateTime> {
        None
    }

    async fn write(&self, cx: &Transfer, _: Mode, _: OffsetDateTime) -> StoreResult<Outcome> {
        let Self(tenant, name, mark) = self;
        let locks = &cx.stores.locks;
        // The higher mark of both sides is kept, whatever the mode.
        if locks.get(tenant, name).await?.high_water >= *mark {
            return Ok(Outcome::Unchanged);
        }
        match locks
            .check_fence(tenant, name, Fence::Restored(*mark))
            .await?
        {
            FenceCheck::Accepted => Ok(Outcome::Written),
            FenceCheck::Stale { .. } => Ok(Outcome::Unchanged),
            // The file was checked against this machine's clock; the backend's is behind it by
            // more than the slack.
            FenceCheck::NotIssued { ceiling } => Err(StoreError::Refused(format!(
                "lock {name}: the mark {mark} is above the backend's ceiling {ceiling}"
            ))),
        }
    }
}
