//! Backup and restore: statekeeper's state as records ([`format`]) that leave one backend and
//! enter another, through the stores' own operations.
//!
//! What is backed up: cache values, sessions, agent states and pending actions (tombstones
//! included), each with its remaining lifetime, and each lock's fencing mark (the highest token
//! granted or checked; restored as the higher of both sides, so a stale token stays refused).
//! Jobs that are not done are backed up as they are; a restore puts a leased one back to ready
//! (its lease means nothing after a restore; the attempt it used still counts).
//! Usage totals are backed up per bucket (a subject's day or month) and restored as the higher
//! of both sides in `merge` (counts only grow); budgets as their rules.
//! Not backed up: lock leases (a holder's token means nothing on another backend), rate-limit
//! windows (seconds-long counters that start over harmlessly), done jobs, live budget
//! reservations (they return by themselves within their TTL), usage dedup ids, and topics (see
//! the README).
//!
//! Restore:
//! - reads and checks the whole file first (format, checksum, every record, tenancy), so a
//!   truncated or changed file writes nothing;
//! - re-bases lifetimes to the restore time: an item lives until the backup's `created_at` plus
//!   its `ttl_ms`, and an item whose time has passed is skipped (`expired`);
//! - `merge` (default): an item the backend holds with a later write (a session's
//!   `last_activity_at`, an agent state's `updated_at`) is kept (`conflicts`); otherwise the
//!   file's item is written. `replace`: the file's item is written over what the backend holds.
//!   `skip-existing`: only items the backend does not hold are written. In every mode a pending
//!   action is never overwritten (exactly once): a token the backend holds only takes the
//!   file's confirm or cancel when it is still pending;
//! - is idempotent: an item that already equals the file's is `unchanged`, so a second run of
//!   the same file writes nothing.

pub mod cli;
pub mod format;

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, value::RawValue};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use self::format::{Backup, Record};
use crate::{
    capabilities::{
        agent_state::model::{AgentState, ThreadId},
        cache::{
            model::{CacheValue, json_equal},
            port::{PutCondition, TtlState},
        },
        lock::model::{Fence, FenceCheck, LockName},
        pending_action::model::{
            ActionStatus, ActionToken, Cancel, Confirm, PendingAction, TombstoneLife,
        },
        queue::model::{Job, JobId, JobState, QueueName},
        session::model::{Session, SessionId, SessionRules, UserId},
        usage::model::{Bucket, BudgetId, BudgetRule, MAX_AMOUNT, MetricName, Period, Subject},
    },
    config::Settings,
    domain::{
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl, from_unix_ms, unix_ms},
    },
    store::{StoreError, StoreResult, Stores, failover::Capability},
};

/// The capabilities a backup holds, in the order it writes them.
pub const CAPABILITIES: [Capability; 8] = [
    Capability::Cache,
    Capability::Sessions,
    Capability::AgentStates,
    Capability::PendingActions,
    Capability::Locks,
    Capability::Queues,
    Capability::Usage,
    Capability::Budgets,
];

/// A budget as a record holds it: the body of `PUT .../budgets/{metric}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetValue {
    limit: u64,
    period: Period,
}

fn period_named(name: &str) -> Option<Period> {
    match name {
        "day" => Some(Period::Day),
        "month" => Some(Period::Month),
        _ => None,
    }
}

/// Whether `bucket` names a bucket of `period`: `2026-11-26` or `2026-11`.
fn valid_bucket(period: Period, bucket: &str) -> bool {
    let shape: &[u8] = match period {
        Period::Day => b"dddd-dd-dd",
        Period::Month => b"dddd-dd",
    };
    bucket.len() == shape.len()
        && bucket.bytes().zip(shape).all(|(b, s)| {
            if *s == b'd' {
                b.is_ascii_digit()
            } else {
                b == *s
            }
        })
}

/// The capabilities `names` name (trimmed); none names every one a backup holds.
pub fn capabilities<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<Capability>, String> {
    let chosen = names
        .map(|name| {
            Capability::from_name(name.trim())
                .filter(|c| CAPABILITIES.contains(c))
                .ok_or_else(|| {
                    format!(
                        "capability {name:?}: expected one of cache, sessions, agent_states, \
                         pending_actions, locks, queues, usage, budgets"
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if chosen.is_empty() {
        CAPABILITIES.to_vec()
    } else {
        chosen
    })
}

/// A lock as a record holds it: the highest fencing token it granted or a fence check
/// accepted. A lease is not restored (its holder's token means nothing on another backend);
/// the mark is, so that a stale token stays refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockValue {
    fencing_token: u64,
}

/// Ids listed per inventory call.
const PAGE: usize = 500;
/// Items read at once during a backup, and written at once during a restore.
const IN_FLIGHT: usize = 64;

/// How a restore treats items the backend already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Merge,
    Replace,
    SkipExisting,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "merge" => Ok(Self::Merge),
            "replace" => Ok(Self::Replace),
            "skip-existing" => Ok(Self::SkipExisting),
            other => Err(format!(
                "mode {other:?}: expected merge, replace or skip-existing"
            )),
        }
    }
}

/// What a restore did (or, in a dry run, found in the file).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Items in the file.
    pub read: u64,
    pub written: u64,
    /// Items the backend already held exactly so.
    pub unchanged: u64,
    /// Items the backend held that this mode leaves alone.
    pub skipped: u64,
    /// Items whose lifetime ended before the restore.
    pub expired: u64,
    /// Items the backend held with a later write, which was kept.
    pub conflicts: u64,
}

/// What a clean-up removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Cleaned {
    /// Index entries of expired agent states (the tenant's recent, ids and expiry indexes).
    pub agent_state_index_entries: u64,
    /// Ids of expired sessions in users' indexes.
    pub session_index_entries: u64,
}

/// A session as a record holds it: its API shape, plus the idle TTL renewals use and a
/// `context` that is `null` once deleted.
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

/// One record, checked and typed.
#[derive(Debug, Clone)]
enum Item {
    Cache {
        tenant: Tenant,
        ns: Namespace,
        key: CacheKey,
        value: CacheValue,
        /// When it expires; `None`: never.
        until: Option<OffsetDateTime>,
    },
    Session(Tenant, Box<Session>),
    Thread(Tenant, Box<AgentState>),
    Action(Tenant, Box<PendingAction>),
    Lock(Tenant, LockName, u64),
    Job(Tenant, QueueName, Box<Job>),
    Totals {
        tenant: Tenant,
        subject: Subject,
        bucket: Bucket,
        totals: Vec<(String, u64)>,
        until: OffsetDateTime,
    },
    Budget(Tenant, BudgetId, BudgetRule),
}

/// What happened to one item.
enum Outcome {
    Written,
    Unchanged,
    Skipped,
    Expired,
    Conflict,
}

/// A backup file, checked and ready to restore.
pub struct Checked {
    items: Vec<Item>,
}

impl Checked {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Backup and restore over a set of stores.
pub struct Transfer {
    stores: Stores,
    rules: SessionRules,
    tombstone: TombstoneLife,
    max_value_bytes: usize,
}

/// Milliseconds from now until `until`, if it is still ahead.
fn left_ms(until: OffsetDateTime, now: OffsetDateTime) -> Option<u64> {
    let ms = (until - now).whole_milliseconds();
    (ms > 0).then(|| u64::try_from(ms).unwrap_or(u64::MAX))
}

fn raw(value: &impl Serialize) -> StoreResult<Box<RawValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| StoreError::Internal(format!("backup: {e}")))
}

impl Transfer {
    pub fn new(stores: Stores, settings: &Settings) -> Self {
        Self {
            stores,
            rules: SessionRules {
                rolling: false,
                ..settings.sessions.rules()
            },
            tombstone: TombstoneLife::from_setting(settings.pending_actions.tombstone_seconds),
            max_value_bytes: settings.cache.max_value_bytes,
        }
    }

    /// The clean-ups the seed services ran by hand, for one tenant: index entries of expired
    /// agent states and sessions. (Everything else expires by itself: cache values, tokens,
    /// lock records 24 h after their lease, rate-limit windows, queue dedup keys.)
    pub async fn cleanup(&self, tenant: &Tenant) -> StoreResult<Cleaned> {
        Ok(Cleaned {
            agent_state_index_entries: self.stores.agent_states.cleanup_expired(tenant).await?,
            session_index_entries: self.stores.sessions.cleanup_expired(tenant).await?,
        })
    }

    /// Sends every live item of `tenant` in `capabilities` to `out`, each once. Stops early,
    /// without error, when `out` is closed.
    pub async fn export(
        &self,
        tenant: &Tenant,
        capabilities: &[Capability],
        out: &mpsc::Sender<Record>,
    ) -> StoreResult<()> {
        for capability in capabilities {
            let mut seen = HashSet::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .inventory(*capability, tenant, cursor.as_deref())
                    .await?;
                let fresh: Vec<String> = page
                    .ids
                    .into_iter()
                    .filter(|id| seen.insert(id.clone()))
                    .collect();
                // Read up to `IN_FLIGHT` items at once (one connection pipelines them), in order.
                let capability = *capability;
                let mut records = stream::iter(fresh)
                    .map(|id| async move { self.record(capability, tenant, &id).await })
                    .buffered(IN_FLIGHT);
                while let Some(record) = records.next().await {
                    let Some(record) = record? else {
                        continue;
                    };
                    if out.send(record).await.is_err() {
                        return Ok(());
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    async fn inventory(
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
    async fn record(
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

    /// Checks every record of `backup` before anything is written: a known capability, valid
    /// ids, a value of the capability's shape, and (with `tenant`) only that tenant's items.
    pub fn check(&self, backup: &Backup, tenant: Option<&Tenant>) -> Result<Checked, String> {
        let created = backup.header.created_at;
        let mut items = Vec::with_capacity(backup.records.len());
        for (index, record) in backup.records.iter().enumerate() {
            // The header is line 1.
            let line = index + 2;
            let item = self
                .item(record, created)
                .map_err(|why| format!("line {line}: {why}"))?;
            if let Some(tenant) = tenant
                && record.tenant != tenant.as_str()
            {
                return Err(format!(
                    "line {line}: an item of tenant {:?}; this API key restores tenant {:?} only",
                    record.tenant,
                    tenant.as_str()
                ));
            }
            items.push(item);
        }
        Ok(Checked { items })
    }

    fn item(&self, record: &Record, created: OffsetDateTime) -> Result<Item, String> {
        let tenant = Tenant::parse(&record.tenant).map_err(|e| format!("tenant: {e}"))?;
        let value = record.value.get();
        let shape = |e: serde_json::Error| format!("value: {e}");
        let capability = Capability::from_name(&record.capability)
            .filter(|c| CAPABILITIES.contains(c))
            .ok_or_else(|| {
                format!(
                    "capability {:?} is not one a backup holds (cache, sessions, agent_states, \
                     pending_actions, locks, queues, usage, budgets)",
                    record.capability
                )
            })?;
        match capability {
            Capability::Cache => {
                let (ns, key) = record
                    .id
                    .split_once('/')
                    .ok_or("a cache id is namespace/key")?;
                let ns = Namespace::parse(ns).map_err(|e| e.to_string())?;
                let key = CacheKey::parse(key).map_err(|e| e.to_string())?;
                let value = CacheValue::parse(
                    bytes::Bytes::copy_from_slice(value.as_bytes()),
                    self.max_value_bytes,
                )
                .map_err(|e| format!("value: {e}"))?;
                let until = record.ttl_ms.map(|ms| created + Duration::from_millis(ms));
                Ok(Item::Cache {
                    tenant,
                    ns,
                    key,
                    value,
                    until,
                })
            }
            Capability::Sessions => {
                let v: SessionValue = serde_json::from_str(value).map_err(shape)?;
                let id = SessionId::parse(&v.session_id).map_err(|e| e.to_string())?;
                if id.as_str() != record.id {
                    return Err("the id differs from the value's session_id".into());
                }
                let user = |raw: &str| UserId::parse(raw).map_err(|e| e.to_string());
                // The bounds a session created through the API keeps.
                let longest = u64::try_from(self.rules.max_lifetime_ms / 1000).unwrap_or(0);
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
                if session.content_bytes() > self.rules.max_bytes {
                    return Err(format!(
                        "data and context: at most sessions.max_session_bytes ({})",
                        self.rules.max_bytes
                    ));
                }
                Ok(Item::Session(tenant, Box::new(session)))
            }
            Capability::AgentStates => {
                let state: AgentState = serde_json::from_str(value).map_err(shape)?;
                ThreadId::parse(&state.thread_id).map_err(|e| e.to_string())?;
                if state.thread_id != record.id {
                    return Err("the id differs from the value's thread_id".into());
                }
                if state.message_count != state.messages.len() as u64 {
                    return Err("message_count differs from the messages held".into());
                }
                Ok(Item::Thread(tenant, Box::new(state)))
            }
            Capability::PendingActions => {
                let action: PendingAction = serde_json::from_str(value).map_err(shape)?;
                if action.token.as_str() != record.id {
                    return Err("the id differs from the value's token".into());
                }
                Ok(Item::Action(tenant, Box::new(action)))
            }
            Capability::Locks => {
                let name = LockName::parse(record.id.as_str()).map_err(|e| e.to_string())?;
                let v: LockValue = serde_json::from_str(value).map_err(shape)?;
                let ceiling =
                    Fence::Restored(v.fencing_token).ceiling(0, crate::store::memory::now_us());
                if v.fencing_token > ceiling {
                    return Err(format!(
                        "fencing_token: at most {ceiling} (this clock plus an hour, and never \
                         above 2^53 - 1): no grant issued {}",
                        v.fencing_token
                    ));
                }
                Ok(Item::Lock(tenant, name, v.fencing_token))
            }
            Capability::Queues => {
                let (queue, id) = record
                    .id
                    .split_once('/')
                    .ok_or("a job id is queue/job_id")?;
                let queue = QueueName::parse(queue).map_err(|e| e.to_string())?;
                JobId::parse(id).map_err(|e| e.to_string())?;
                let job: Job = serde_json::from_str(value).map_err(shape)?;
                if job.id != id {
                    return Err("the id differs from the value's id".into());
                }
                if job.state == JobState::Done {
                    return Err("a backup holds no done job".into());
                }
                job.check_bounds(crate::store::memory::now_us())?;
                serde_json::from_str::<serde::de::IgnoredAny>(&job.payload)
                    .map_err(|e| format!("payload: {e}"))?;
                Ok(Item::Job(tenant, queue, Box::new(job)))
            }
            Capability::Usage => {
                let mut parts = record.id.splitn(3, '/');
                let (Some(subject), Some(period), Some(bucket)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err("a usage id is subject/period/bucket".into());
                };
                let subject = Subject::parse(subject).map_err(|e| e.to_string())?;
                let period = period_named(period).ok_or("the period is day or month")?;
                if !valid_bucket(period, bucket) {
                    return Err(format!("{bucket:?} is not a {} bucket", period.as_str()));
                }
                let amounts: BTreeMap<String, u64> = serde_json::from_str(value).map_err(shape)?;
                let mut totals = Vec::with_capacity(amounts.len());
                for (metric, amount) in amounts {
                    MetricName::parse(metric.as_str()).map_err(|e| e.to_string())?;
                    if amount > MAX_AMOUNT {
                        return Err(format!("{metric}: at most {MAX_AMOUNT}"));
                    }
                    totals.push((metric, amount));
                }
                let ttl_ms = record.ttl_ms.ok_or("usage totals carry their ttl_ms")?;
                Ok(Item::Totals {
                    tenant,
                    subject,
                    bucket: Bucket {
                        period,
                        name: bucket.to_string(),
                    },
                    totals,
                    until: created + Duration::from_millis(ttl_ms),
                })
            }
            Capability::Budgets => {
                let budget = BudgetId::parse(&record.id)?;
                let v: BudgetValue = serde_json::from_str(value).map_err(shape)?;
                // As `PUT .../budgets/{metric}` takes it: 0 (nothing may be spent) included.
                if v.limit > MAX_AMOUNT {
                    return Err(format!("limit: 0 to {MAX_AMOUNT}"));
                }
                Ok(Item::Budget(
                    tenant,
                    budget,
                    BudgetRule {
                        limit: v.limit,
                        period: v.period,
                    },
                ))
            }
            _ => Err("not a capability a backup holds".into()),
        }
    }

    /// Writes every checked item (up to `IN_FLIGHT` at once) and reports what it did;
    /// `progress` is called with the count done every 10,000 items. With `dry_run` nothing is
    /// read or written: the report counts the file's items and the expired ones.
    pub async fn restore(
        &self,
        checked: Checked,
        mode: Mode,
        dry_run: bool,
        progress: impl Fn(u64),
    ) -> StoreResult<Report> {
        let mut report = Report {
            read: checked.items.len() as u64,
            ..Report::default()
        };
        if dry_run {
            let now = OffsetDateTime::now_utc();
            report.expired = checked
                .items
                .iter()
                .filter(|item| self.expired(item, now))
                .count() as u64;
            return Ok(report);
        }
        let mut outcomes = stream::iter(checked.items)
            .map(|item| async move { self.write(item, mode).await })
            .buffer_unordered(IN_FLIGHT);
        let mut done = 0u64;
        while let Some(outcome) = outcomes.next().await {
            match outcome? {
                Outcome::Written => report.written += 1,
                Outcome::Unchanged => report.unchanged += 1,
                Outcome::Skipped => report.skipped += 1,
                Outcome::Expired => report.expired += 1,
                Outcome::Conflict => report.conflicts += 1,
            }
            done += 1;
            if done.is_multiple_of(10_000) {
                progress(done);
            }
        }
        Ok(report)
    }

    fn expired(&self, item: &Item, now: OffsetDateTime) -> bool {
        let until = match item {
            Item::Cache { until, .. } => *until,
            Item::Session(_, session) => Some(from_unix_ms(session.expires_at_ms)),
            Item::Thread(_, state) => Some(state.expires_at),
            Item::Action(_, action) => Some(action.record_ends(self.tombstone)),
            Item::Totals { until, .. } => Some(*until),
            Item::Lock(..) | Item::Job(..) | Item::Budget(..) => None,
        };
        until.is_some_and(|until| until <= now)
    }

    async fn write(&self, item: Item, mode: Mode) -> StoreResult<Outcome> {
        let now = OffsetDateTime::now_utc();
        if self.expired(&item, now) {
            return Ok(Outcome::Expired);
        }
        let s = &self.stores;
        match item {
            Item::Cache {
                tenant,
                ns,
                key,
                value,
                until,
            } => {
                let expiry = match until.and_then(|until| left_ms(until, now)) {
                    Some(ms) => Expiry::After(Ttl::carried_ms(ms)),
                    None => Expiry::Never,
                };
                if mode == Mode::SkipExisting {
                    let wrote = s
                        .cache
                        .put(&tenant, &ns, &key, &value, expiry, PutCondition::IfAbsent)
                        .await?;
                    return Ok(if wrote {
                        Outcome::Written
                    } else {
                        Outcome::Skipped
                    });
                }
                if let Some(held) = s.cache.get(&tenant, &ns, &key).await?
                    && same_json(&held, &value)
                    && same_expiry(s.cache.ttl(&tenant, &ns, &key).await?, expiry)
                {
                    return Ok(Outcome::Unchanged);
                }
                s.cache
                    .put(&tenant, &ns, &key, &value, expiry, PutCondition::Always)
                    .await?;
                Ok(Outcome::Written)
            }
            Item::Session(tenant, session) => {
                let held = s.sessions.get(&tenant, &session.id, self.rules).await?;
                if let Some(held) = &held {
                    if *held == *session {
                        return Ok(Outcome::Unchanged);
                    }
                    match mode {
                        Mode::SkipExisting => return Ok(Outcome::Skipped),
                        Mode::Merge if held.last_activity_at_ms > session.last_activity_at_ms => {
                            return Ok(Outcome::Conflict);
                        }
                        _ => {
                            s.sessions.delete(&tenant, &session.id).await?;
                        }
                    }
                }
                s.sessions.create(&tenant, &session, self.rules).await?;
                Ok(Outcome::Written)
            }
            Item::Thread(tenant, state) => {
                let thread = ThreadId::parse(&state.thread_id)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                let ttl_seconds = (state.expires_at - state.updated_at)
                    .whole_seconds()
                    .max(1)
                    .unsigned_abs();
                let held = s.agent_states.get(&tenant, &thread, Some(0)).await?;
                if let Some(held) = &held {
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
                let wrote = s
                    .agent_states
                    .restore(&tenant, &state, ttl_seconds, only_if_absent)
                    .await?;
                Ok(if wrote {
                    Outcome::Written
                } else {
                    Outcome::Skipped
                })
            }
            Item::Action(tenant, action) => {
                let Some(left) = left_ms(action.record_ends(self.tombstone), now) else {
                    return Ok(Outcome::Expired);
                };
                if s.pending_actions
                    .create(&tenant, &action, Ttl::carried_ms(left))
                    .await?
                {
                    return Ok(Outcome::Written);
                }
                let held = s.pending_actions.get(&tenant, &action.token).await?;
                if held.as_ref() == Some(&*action) {
                    return Ok(Outcome::Unchanged);
                }
                if mode == Mode::SkipExisting {
                    return Ok(Outcome::Skipped);
                }
                // A token is never overwritten: only a pending one takes the file's outcome.
                let token = &action.token;
                let applied = match (action.status, action.confirmed_at, action.cancelled_at) {
                    (ActionStatus::Confirmed, Some(at), _) => matches!(
                        s.pending_actions
                            .confirm(&tenant, token, at, None, self.tombstone)
                            .await?,
                        Confirm::Confirmed(_)
                    ),
                    (ActionStatus::Cancelled, _, Some(at)) => matches!(
                        s.pending_actions
                            .cancel(&tenant, token, at, self.tombstone)
                            .await?,
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
            Item::Job(tenant, queue, job) => {
                let id = JobId::parse(job.id.as_str())
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                // What the backend holds once this job is written: a lease does not survive.
                let mut restored = (*job).clone();
                if restored.state == JobState::Leased {
                    restored.state = JobState::Ready;
                }
                if let Some(held) = s.queues.get(&tenant, &queue, &id).await? {
                    let held = Job {
                        lease_token: None,
                        ..held
                    };
                    if held == restored {
                        return Ok(Outcome::Unchanged);
                    }
                    match mode {
                        Mode::SkipExisting => return Ok(Outcome::Skipped),
                        // The backend moved the job on (another attempt, or done): kept.
                        Mode::Merge
                            if held.attempt > job.attempt || held.state == JobState::Done =>
                        {
                            return Ok(Outcome::Conflict);
                        }
                        _ => {}
                    }
                }
                let only_if_absent = mode == Mode::SkipExisting;
                let wrote = s
                    .queues
                    .restore(&tenant, &queue, &job, only_if_absent)
                    .await?;
                Ok(if wrote {
                    Outcome::Written
                } else {
                    Outcome::Skipped
                })
            }
            Item::Totals {
                tenant,
                subject,
                bucket,
                totals,
                until,
            } => {
                let Some(ttl_ms) = left_ms(until, now) else {
                    return Ok(Outcome::Expired);
                };
                if mode == Mode::SkipExisting
                    && s.usage.bucket(&tenant, &subject, &bucket).await?.is_some()
                {
                    return Ok(Outcome::Skipped);
                }
                // Merge keeps the higher of both totals: counts only grow.
                let at_least = mode == Mode::Merge;
                let changed = s
                    .usage
                    .restore_totals(&tenant, &subject, &bucket, &totals, ttl_ms, at_least)
                    .await?;
                Ok(if changed > 0 {
                    Outcome::Written
                } else {
                    Outcome::Unchanged
                })
            }
            Item::Budget(tenant, budget, rule) => {
                let now_us = crate::store::memory::now_us();
                match s.budgets.get(&tenant, &budget, now_us).await? {
                    Some(held) if held.rule == rule => return Ok(Outcome::Unchanged),
                    Some(_) if mode == Mode::SkipExisting => return Ok(Outcome::Skipped),
                    _ => {}
                }
                s.budgets.set(&tenant, &budget, rule, now_us).await?;
                Ok(Outcome::Written)
            }
            Item::Lock(tenant, name, mark) => {
                // The higher mark of both sides is kept, whatever the mode.
                if s.locks.get(&tenant, &name).await?.high_water >= mark {
                    return Ok(Outcome::Unchanged);
                }
                match s
                    .locks
                    .check_fence(&tenant, &name, Fence::Restored(mark))
                    .await?
                {
                    FenceCheck::Accepted => Ok(Outcome::Written),
                    FenceCheck::Stale { .. } => Ok(Outcome::Unchanged),
                    // The file was checked against this machine's clock; the backend's is
                    // behind it by more than the slack.
                    FenceCheck::NotIssued { ceiling } => Err(StoreError::Refused(format!(
                        "lock {name}: the mark {mark} is above the backend's ceiling {ceiling}"
                    ))),
                }
            }
        }
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
