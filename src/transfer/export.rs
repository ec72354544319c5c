//! Export: each capability's inventory, read page by page, as backup records.

use super::*;

impl Transfer {
    pub(super) async fn inventory(
        &self,
        capability: Capability,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<crate::store::IdPage> {
        let s = &self.stores;
        match capability {
            Capability::Cache => s.cache.inventory(tenant, cursor, PAGE).await,
            Capability::Sessions => s.sessions.inventory(tenant, cursor, PAGE).await,
            Capability::PendingActions => s.pending_actions.inventory(tenant, cursor, PAGE).await,
            Capability::Locks => s.locks.inventory(tenant, cursor, PAGE).await,
            Capability::Queues => s.queues.inventory(tenant, cursor, PAGE).await,
            Capability::Usage => s.usage.inventory(tenant, cursor, PAGE).await,
            Capability::Budgets => s.budgets.inventory(tenant, cursor, PAGE).await,
            Capability::AgentStates => {
                let after = cursor.and_then(|c| ThreadId::parse(c).ok());
                let page = s.agent_states.list(tenant, after.as_ref(), PAGE).await?;
                let next = page
                    .more
                    .then(|| page.thread_ids.last().map(ToString::to_string))
                    .flatten();
                Ok(crate::store::IdPage {
                    ids: page.thread_ids.iter().map(ToString::to_string).collect(),
                    next,
                })
            }
            _ => Ok(Default::default()),
        }
    }

    /// The record of one item, `None` when it is gone (expired since it was listed).
    pub(super) async fn record(
        &self,
        capability: Capability,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Record>> {
        let now = OffsetDateTime::now_utc();
        let s = &self.stores;
        let record = |value, ttl_ms, version| Record {
            capability: capability.name().to_string(),
            tenant: tenant.to_string(),
            id: id.to_string(),
            value,
            ttl_ms,
            version,
        };
        Ok(match capability {
            Capability::Cache => {
                let Some((ns, key)) = id.split_once('/').and_then(|(ns, key)| {
                    Some((Namespace::parse(ns).ok()?, CacheKey::parse(key).ok()?))
                }) else {
                    return Ok(None);
                };
                let Some(value) = s.cache.get(tenant, &ns, &key).await? else {
                    return Ok(None);
                };
                let ttl_ms = match s.cache.ttl(tenant, &ns, &key).await? {
                    TtlState::Missing => return Ok(None),
                    TtlState::Persistent => None,
                    TtlState::Expires(seconds) => Some(seconds.saturating_mul(1000)),
                };
                // JSON allows a newline only between tokens: a space says the same on one line.
                let text = String::from_utf8_lossy(value.bytes()).replace(['\n', '\r'], " ");
                let value = RawValue::from_string(text)
                    .map_err(|e| StoreError::Internal(format!("backup of {id}: {e}")))?;
                Some(record(value, ttl_ms, None))
            }
            Capability::Sessions => {
                let Ok(sid) = SessionId::parse(id) else {
                    return Ok(None);
                };
                let Some(session) = s.sessions.get(tenant, &sid, self.rules).await? else {
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
                let Some(ttl_ms) = left_ms(from_unix_ms(session.expires_at_ms), now) else {
                    return Ok(None);
                };
                Some(record(raw(&value)?, Some(ttl_ms), Some(session.version)))
            }
            Capability::AgentStates => {
                let Ok(thread) = ThreadId::parse(id) else {
                    return Ok(None);
                };
                let Some(state) = s.agent_states.get(tenant, &thread, None).await? else {
                    return Ok(None);
                };
                let Some(ttl_ms) = left_ms(state.expires_at, now) else {
                    return Ok(None);
                };
                Some(record(raw(&state)?, Some(ttl_ms), Some(state.version)))
            }
            Capability::PendingActions => {
                let Ok(token) = ActionToken::parse(id) else {
                    return Ok(None);
                };
                let Some(action) = s.pending_actions.get(tenant, &token).await? else {
                    return Ok(None);
                };
                let Some(ttl_ms) = left_ms(action.record_ends(self.tombstone), now) else {
                    return Ok(None);
                };
                Some(record(raw(&action)?, Some(ttl_ms), None))
            }
            Capability::Locks => {
                let Ok(name) = LockName::parse(id) else {
                    return Ok(None);
                };
                let info = s.locks.get(tenant, &name).await?;
                let value = LockValue {
                    fencing_token: info.high_water,
                };
                if info.high_water == 0 {
                    return Ok(None);
                }
                Some(record(raw(&value)?, None, None))
            }
            Capability::Queues => {
                let Some((queue, job)) = id.split_once('/').and_then(|(queue, job)| {
                    Some((QueueName::parse(queue).ok()?, JobId::parse(job).ok()?))
                }) else {
                    return Ok(None);
                };
                match s.queues.get(tenant, &queue, &job).await? {
                    Some(job) if job.state != JobState::Done => {
                        Some(record(raw(&job)?, None, None))
                    }
                    _ => None,
                }
            }
            Capability::Usage => {
                let mut parts = id.splitn(3, '/');
                let (Some(subject), Some(period), Some(bucket)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Ok(None);
                };
                let (Ok(subject), Some(period)) = (Subject::parse(subject), period_named(period))
                else {
                    return Ok(None);
                };
                let bucket = Bucket {
                    period,
                    name: bucket.to_string(),
                };
                let Some((totals, left)) = s.usage.bucket(tenant, &subject, &bucket).await? else {
                    return Ok(None);
                };
                let value: Map<String, Value> = totals
                    .into_iter()
                    .map(|(metric, amount)| (metric, Value::from(amount)))
                    .collect();
                Some(record(raw(&value)?, Some(left), None))
            }
            Capability::Budgets => {
                let Ok(budget) = BudgetId::parse(id) else {
                    return Ok(None);
                };
                let now_us = crate::store::memory::now_us();
                let Some(status) = s.budgets.get(tenant, &budget, now_us).await? else {
                    return Ok(None);
                };
                let value = BudgetValue {
                    limit: status.rule.limit,
                    period: status.rule.period,
                };
                Some(record(raw(&value)?, None, None))
            }
            _ => None,
        })
    }
}
