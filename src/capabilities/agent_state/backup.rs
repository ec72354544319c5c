//! Agent states in a backup: one record per thread, in its API shape (messages included).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::model::{AgentState, ThreadId};
use crate::{
    domain::ids::Tenant,
    store::{IdPage, StoreError, StoreResult},
    transfer::{Backup, Exported, Mode, Outcome, PAGE, Restore, Transfer, format::Record, left_ms},
};

pub struct AgentStateBackup;

struct Item(Tenant, AgentState);

#[async_trait]
impl Backup for AgentStateBackup {
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage> {
        let after = cursor.and_then(|c| ThreadId::parse(c).ok());
        let page = cx
            .stores
            .agent_states
            .list(tenant, after.as_ref(), PAGE)
            .await?;
        let next = page
            .more
            .then(|| page.thread_ids.last().map(ToString::to_string))
            .flatten();
        Ok(IdPage {
            ids: page.thread_ids.iter().map(ToString::to_string).collect(),
            next,
        })
    }

    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>> {
        let Ok(thread) = ThreadId::parse(id) else {
            return Ok(None);
        };
        let Some(state) = cx.stores.agent_states.get(tenant, &thread, None).await? else {
            return Ok(None);
        };
        let Some(ttl_ms) = left_ms(state.expires_at, OffsetDateTime::now_utc()) else {
            return Ok(None);
        };
        Ok(Some(Exported {
            version: Some(state.version),
            ..Exported::new(&state, Some(ttl_ms))?
        }))
    }

    fn check(
        &self,
        _: &Transfer,
        tenant: Tenant,
        record: &Record,
        _: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String> {
        let state: AgentState =
            serde_json::from_str(record.value.get()).map_err(|e| format!("value: {e}"))?;
        ThreadId::parse(&state.thread_id).map_err(|e| e.to_string())?;
        if state.thread_id != record.id {
            return Err("the id differs from the value's thread_id".into());
        }
        if state.message_count != state.messages.len() as u64 {
            return Err("message_count differs from the messages held".into());
        }
        Ok(Box::new(Item(tenant, state)))
    }
}

#[async_trait]
impl Restore for Item {
    fn until(&self, _: &Transfer) -> Option<OffsetDateTime> {
        Some(self.1.expires_at)
    }

    async fn write(&self, cx: &Transfer, mode: Mode, _: OffsetDateTime) -> StoreResult<Outcome> {
        let Self(tenant, state) = self;
        let states = &cx.stores.agent_states;
        let thread =
            ThreadId::parse(&state.thread_id).map_err(|e| StoreError::Internal(e.to_string()))?;
        let ttl_seconds = (state.expires_at - state.updated_at)
            .whole_seconds()
            .max(1)
            .unsigned_abs();
        if let Some(held) = states.get(tenant, &thread, Some(0)).await? {
            if held.version == state.version
                && held.updated_at == state.updated_at
                && held.message_count == state.message_count
            {
                return Ok(Outcome::Unchanged);
            }
            match mode {
                Mode::SkipExisting => return Ok(Outcome::Skipped),
                Mode::Merge if held.updated_at > state.updated_at => {
                    return Ok(Outcome::Conflict);
                }
                _ => {}
            }
        }
        let only_if_absent = mode == Mode::SkipExisting;
        let wrote = states
            .restore(tenant, state, ttl_seconds, only_if_absent)
            .await?;
        Ok(if wrote {
            Outcome::Written
        } else {
            Outcome::Skipped
        })
    }
}
