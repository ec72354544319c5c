//! Sessions in a backup: one record per session, its API shape plus the idle TTL renewals use
//! and a `context` that is `null` once deleted; restored within the bounds a session created
//! through the API keeps.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::model::{Session, SessionId, SessionRules, UserId};
use crate::{
    domain::{
        ids::Tenant,
        ttl::{from_unix_ms, unix_ms},
    },
    store::{IdPage, StoreResult},
    transfer::{Backup, Exported, Mode, Outcome, PAGE, Restore, Transfer, format::Record, left_ms},
};

pub struct SessionBackup;

/// The rules sessions are read and written with here: a backup's read renews nothing.
fn rules(cx: &Transfer) -> SessionRules {
    SessionRules {
        rolling: false,
        ..cx.settings.sessions.rules()
    }
}

/// A session as a record holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionValue {
    session_id: String,
    user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workspace_id: Option<String>,
    data: Map<String, Value>,
    context: Option<Map<String, Value>>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    last_activity_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    ttl_seconds: u64,
    version: u64,
}

struct Item(Tenant, Session);

#[async_trait]
impl Backup for SessionBackup {
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage> {
        cx.stores.sessions.inventory(tenant, cursor, PAGE).await
    }

    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>> {
        let Ok(sid) = SessionId::parse(id) else {
            return Ok(None);
        };
        let Some(session) = cx.stores.sessions.get(tenant, &sid, rules(cx)).await? else {
            return Ok(None);
        };
        let value = SessionValue {
            session_id: session.id.to_string(),
            user_id: session.user_id.to_string(),
            workspace_id: session.workspace_id.as_ref().map(ToString::to_string),
            data: session.data.clone(),
            context: session.context.clone(),
            created_at: from_unix_ms(session.created_at_ms),
            last_activity_at: from_unix_ms(session.last_activity_at_ms),
            expires_at: from_unix_ms(session.expires_at_ms),
            ttl_seconds: session.ttl_seconds,
            version: session.version,
        };
        let now = OffsetDateTime::now_utc();
        let Some(ttl_ms) = left_ms(from_unix_ms(session.expires_at_ms), now) else {
            return Ok(None);
        };
        Ok(Some(Exported {
            version: Some(session.version),
            ..Exported::new(&value, Some(ttl_ms))?
        }))
    }

    fn check(
        &self,
        cx: &Transfer,
        tenant: Tenant,
        record: &Record,
        _: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String> {
        let v: SessionValue =
            serde_json::from_str(record.value.get()).map_err(|e| format!("value: {e}"))?;
        let id = SessionId::parse(&v.session_id).map_err(|e| e.to_string())?;
        if id.as_str() != record.id {
            return Err("the id differs from the value's session_id".into());
        }
        let user = |raw: &str| UserId::parse(raw).map_err(|e| e.to_string());
        // The bounds a session created through the API keeps.
        let longest = u64::try_from(rules(cx).max_lifetime_ms / 1000).unwrap_or(0);
        if v.ttl_seconds > longest {
            return Err(format!(
                "ttl_seconds: at most sessions.max_lifetime_seconds ({longest})"
            ));
        }
        let session = Session {
            id,
            user_id: user(&v.user_id)?,
            workspace_id: v.workspace_id.as_deref().map(user).transpose()?,
            data: v.data,
            context: v.context,
            created_at_ms: unix_ms(v.created_at),
            last_activity_at_ms: unix_ms(v.last_activity_at),
            expires_at_ms: unix_ms(v.expires_at),
            ttl_seconds: v.ttl_seconds.max(1),
            version: v.version,
        };
        if session.content_bytes() > rules(cx).max_bytes {
            return Err(format!(
                "data and context: at most sessions.max_session_bytes ({})",
                rules(cx).max_bytes
            ));
        }
        Ok(Box::new(Item(tenant, session)))
    }
}

#[async_trait]
impl Restore for Item {
    fn until(&self, _: &Transfer) -> Option<OffsetDateTime> {
        Some(from_unix_ms(self.1.expires_at_ms))
    }

    async fn write(&self, cx: &Transfer, mode: Mode, _: OffsetDateTime) -> StoreResult<Outcome> {
        let Self(tenant, session) = self;
        let sessions = &cx.stores.sessions;
        if let Some(held) = sessions.get(tenant, &session.id, rules(cx)).await? {
            if held == *session {
                return Ok(Outcome::Unchanged);
            }
            match mode {
                Mode::SkipExisting => return Ok(Outcome::Skipped),
                Mode::Merge if held.last_activity_at_ms > session.last_activity_at_ms => {
                    return Ok(Outcome::Conflict);
                }
                _ => {
                    sessions.delete(tenant, &session.id).await?;
                }
            }
        }
        sessions.create(tenant, session, rules(cx)).await?;
        Ok(Outcome::Written)
    }
}
