//! Pending actions in a backup: one record per token, tombstones included, in its API shape.
//! A restore never overwrites a token (exactly once): a token the backend holds only takes the
//! file's confirm or cancel while it is still pending.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::model::{ActionStatus, ActionToken, Cancel, Confirm, PendingAction, TombstoneLife};
use crate::{
    domain::{ids::Tenant, ttl::Ttl},
    store::{IdPage, StoreResult},
    transfer::{Backup, Exported, Mode, Outcome, PAGE, Restore, Transfer, format::Record, left_ms},
};

pub struct PendingActionBackup;

fn tombstone(cx: &Transfer) -> TombstoneLife {
    TombstoneLife::from_setting(cx.settings.pending_actions.tombstone_seconds)
}

struct Item(Tenant, PendingAction);

#[async_trait]
impl Backup for PendingActionBackup {
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage> {
        cx.stores
            .pending_actions
            .inventory(tenant, cursor, PAGE)
            .await
    }

    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>> {
        let Ok(token) = ActionToken::parse(id) else {
            return Ok(None);
        };
        let Some(action) = cx.stores.pending_actions.get(tenant, &token).await? else {
            return Ok(None);
        };
        let ends = action.record_ends(tombstone(cx));
        let Some(ttl_ms) = left_ms(ends, OffsetDateTime::now_utc()) else {
            return Ok(None);
        };
        Exported::new(&action, Some(ttl_ms)).map(Some)
    }

    fn check(
        &self,
        _: &Transfer,
        tenant: Tenant,
        record: &Record,
        _: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String> {
        let action: PendingAction =
            serde_json::from_str(record.value.get()).map_err(|e| format!("value: {e}"))?;
        if action.token.as_str() != record.id {
            return Err("the id differs from the value's token".into());
        }
        Ok(Box::new(Item(tenant, action)))
    }
}

#[async_trait]
impl Restore for Item {
    fn until(&self, cx: &Transfer) -> Option<OffsetDateTime> {
        Some(self.1.record_ends(tombstone(cx)))
    }

    async fn write(&self, cx: &Transfer, mode: Mode, now: OffsetDateTime) -> StoreResult<Outcome> {
        let Self(tenant, action) = self;
        let actions = &cx.stores.pending_actions;
        let Some(left) = left_ms(action.record_ends(tombstone(cx)), now) else {
            return Ok(Outcome::Expired);
        };
        if actions
            .create(tenant, action, Ttl::carried_ms(left))
            .await?
        {
            return Ok(Outcome::Written);
        }
        let held = actions.get(tenant, &action.token).await?;
        if held.as_ref() == Some(action) {
            return Ok(Outcome::Unchanged);
        }
        if mode == Mode::SkipExisting {
            return Ok(Outcome::Skipped);
        }
        // A token is never overwritten: only a pending one takes the file's outcome.
        let token = &action.token;
        let applied = match (action.status, action.confirmed_at, action.cancelled_at) {
            (ActionStatus::Confirmed, Some(at), _) => matches!(
                actions
                    .confirm(tenant, token, at, None, tombstone(cx))
                    .await?,
                Confirm::Confirmed(_)
            ),
            (ActionStatus::Cancelled, _, Some(at)) => matches!(
                actions.cancel(tenant, token, at, tombstone(cx)).await?,
                Cancel::Cancelled
            ),
            _ => false,
        };
        Ok(if applied {
            Outcome::Written
        } else {
            Outcome::Conflict
        })
    }
}
