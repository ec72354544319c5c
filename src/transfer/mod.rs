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
mod export;
pub mod format;
mod restore;

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
}
