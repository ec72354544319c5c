//! Pending actions on Redis: one hash per token with the fields `action` (the action as
//! created, JSON, never rewritten), `status` (`pending|confirmed|cancelled`), `at` (when it was
//! confirmed or cancelled) and `idem` (the winning confirm's `Idempotency-Key`), under the
//! key's TTL. Create, confirm and cancel are Lua scripts called by SHA (one `EVALSHA` each);
//! the check-and-set inside a script is atomic across every instance sharing this Redis. A read
//! is one `HMGET`.

use async_trait::async_trait;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::store::redis::{RedisPool, script::Script};
use crate::{
    capabilities::pending_action::{
        model::{
            ActionStatus, ActionToken, Cancel, Confirm, IdempotencyKey, MIN_DEFAULT_TOMBSTONE,
            PendingAction, TombstoneLife,
        },
        port::PendingActionStore,
    },
    domain::{ids::Tenant, ttl::Ttl},
    store::{IdPage, StoreError, StoreResult},
};

pub struct RedisPendingActions {
    redis: RedisPool,
    create: Script,
    confirm: Script,
    cancel: Script,
}

impl RedisPendingActions {
    pub fn new(redis: RedisPool) -> Self {
        Self {
            redis,
            create: Script::new(
                "pending_action_create",
                include_str!("scripts/pending_action_create.lua"),
            ),
            confirm: Script::new(
                "pending_action_confirm",
                include_str!("scripts/pending_action_confirm.lua"),
            ),
            cancel: Script::new(
                "pending_action_cancel",
                include_str!("scripts/pending_action_cancel.lua"),
            ),
        }
    }

    fn key(&self, tenant: &Tenant, token: &ActionToken) -> String {
        self.redis.keys().pending_action(tenant, token)
    }
}

fn unexpected(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("pending action: {what}"))
}

fn format_time(at: OffsetDateTime) -> StoreResult<String> {
    at.format(&Rfc3339).map_err(unexpected)
}

fn parse_time(text: &str) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(unexpected)
}

fn parse_action(json: &str) -> StoreResult<PendingAction> {
    serde_json::from_str(json).map_err(unexpected)
}

fn parse_status(text: &str) -> StoreResult<ActionStatus> {
    match text {
        "pending" => Ok(ActionStatus::Pending),
        "confirmed" => Ok(ActionStatus::Confirmed),
        "cancelled" => Ok(ActionStatus::Cancelled),
        other => Err(unexpected(format!("unknown status {other:?}"))),
    }
}

/// Milliseconds as the scripts take them.
fn min_tombstone_millis() -> u64 {
    MIN_DEFAULT_TOMBSTONE.as_millis() as u64
}

#[async_trait]
impl PendingActionStore for RedisPendingActions {
    async fn create(&self, tenant: &Tenant, action: &PendingAction, ttl: Ttl) -> StoreResult<bool> {
        let json = serde_json::to_string(&action).map_err(unexpected)?;
        let created: u8 = self
            .redis
            .script(
                self.create
                    .key(self.key(tenant, &action.token))
                    .arg(json)
                    .arg(ttl.seconds())
                    .arg(action.status.as_str())
                    .arg(match action.confirmed_at.or(action.cancelled_at) {
                        Some(at) => format_time(at)?,
                        None => String::new(),
                    }),
            )
            .await?;
        Ok(created == 1)
    }

    async fn get(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
    ) -> StoreResult<Option<PendingAction>> {
        let (action, status, at): (Option<String>, Option<String>, Option<String>) = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(self.key(tenant, token))
                    .arg("action")
                    .arg("status")
                    .arg("at"),
            )
            .await?;
        let (Some(action), Some(status)) = (action, status) else {
            return Ok(None);
        };
        let at = at.as_deref().map(parse_time).transpose()?;
        Ok(Some(
            parse_action(&action)?.resolved(parse_status(&status)?, at),
        ))
    }

    async fn confirm(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
        at: OffsetDateTime,
        idempotency_key: Option<&IdempotencyKey>,
        tombstone: TombstoneLife,
    ) -> StoreResult<Confirm> {
        let reply: Vec<String> = self
            .redis
            .script(
                self.confirm
                    .key(self.key(tenant, token))
                    .arg(format_time(at)?)
                    .arg(idempotency_key.as_ref().map_or("", |k| k.as_str()))
                    .arg(tombstone.fixed_millis())
                    .arg(min_tombstone_millis()),
            )
            .await?;
        let confirmed = |action: &str, at| {
            parse_action(action).map(|a| a.resolved(ActionStatus::Confirmed, Some(at)))
        };
        match reply.as_slice() {
            [outcome, action] if outcome == "confirmed" => {
                Ok(Confirm::Confirmed(confirmed(action, at)?))
            }
            [outcome, action, first_at] if outcome == "replayed" => {
                Ok(Confirm::Replayed(confirmed(action, parse_time(first_at)?)?))
            }
            [outcome] if outcome == "already_confirmed" => Ok(Confirm::AlreadyConfirmed),
            [outcome] if outcome == "already_cancelled" => Ok(Confirm::AlreadyCancelled),
            [outcome] if outcome == "missing" => Ok(Confirm::NotFound),
            other => Err(unexpected(format!("confirm script answered {other:?}"))),
        }
    }

    async fn cancel(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
        at: OffsetDateTime,
        tombstone: TombstoneLife,
    ) -> StoreResult<Cancel> {
        let reply: String = self
            .redis
            .script(
                self.cancel
                    .key(self.key(tenant, token))
                    .arg(format_time(at)?)
                    .arg(tombstone.fixed_millis())
                    .arg(min_tombstone_millis()),
            )
            .await?;
        match reply.as_str() {
            "cancelled_now" => Ok(Cancel::Cancelled),
            "cancelled" => Ok(Cancel::AlreadyCancelled),
            "confirmed" => Ok(Cancel::AlreadyConfirmed),
            "missing" => Ok(Cancel::NotFound),
            other => Err(unexpected(format!("cancel script answered {other:?}"))),
        }
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        let prefix = self.redis.keys().pending_actions(tenant);
        crate::store::redis::scan_ids(&self.redis, &prefix, cursor, limit, |token| {
            Some(token.to_string())
        })
        .await
    }
}

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
    /// A pending action's hash: `{prefix}:{tenant}:pending_action:{token}`. Its scripts touch
    /// this one key only, so it needs no hash tag.
    pub fn pending_action(&self, tenant: &Tenant, token: &ActionToken) -> String {
        format!("{}{token}", self.pending_actions(tenant))
    }

    /// The literal start of every pending-action key of a tenant.
    pub fn pending_actions(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:pending_action:", self.prefix)
    }
}
