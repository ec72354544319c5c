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
mod restore;

use std::collections::HashSet;

use async_trait::async_trait;
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use self::format::{Backup as BackupFile, Record};
use crate::{
    capabilities::{ALL, Capability},
    config::Settings,
    domain::ids::Tenant,
    store::{IdPage, StoreError, StoreResult, Stores},
};

/// One capability's part of a backup (its `backup.rs`): its items out as records, and records
/// back in as checked items. The framework here pages, reads and writes concurrently, checks
/// tenancy and counts outcomes.
#[async_trait]
pub trait Backup: Send + Sync {
    /// One page of the ids of `tenant`'s items, from `cursor`.
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage>;

    /// The value of one item, `None` when it is gone (expired since it was listed).
    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>>;

    /// A record checked into an item, through the same constructors the API uses: nothing is
    /// written until every record of the file passed.
    fn check(
        &self,
        cx: &Transfer,
        tenant: Tenant,
        record: &Record,
        created: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String>;
}

/// One item's value in a backup.
pub struct Exported {
    pub value: Box<RawValue>,
    /// The lifetime it has left; `None`: none.
    pub ttl_ms: Option<u64>,
    pub version: Option<u64>,
}

impl Exported {
    pub fn new(value: &impl Serialize, ttl_ms: Option<u64>) -> StoreResult<Self> {
        Ok(Self {
            value: raw(value)?,
            ttl_ms,
            version: None,
        })
    }
}

/// One checked item of a backup file, ready to write.
#[async_trait]
pub trait Restore: Send + Sync {
    /// When its lifetime ends; `None`: never.
    fn until(&self, cx: &Transfer) -> Option<OffsetDateTime>;

    /// Writes it as `mode` says. It has not expired at `now`.
    async fn write(&self, cx: &Transfer, mode: Mode, now: OffsetDateTime) -> StoreResult<Outcome>;
}

/// The capabilities a backup holds, in the order it writes them: those that declare a
/// [`Backup`].
pub fn backed_up() -> impl Iterator<Item = Capability> {
    ALL.iter()
        .filter(|d| d.backup.is_some())
        .map(|d| d.capability)
}

fn backup_of(capability: Capability) -> Option<&'static dyn Backup> {
    crate::capabilities::declaration(capability.name()).and_then(|d| d.backup)
}

fn backed_up_names() -> String {
    backed_up()
        .map(Capability::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The capabilities `names` name (trimmed); none names every one a backup holds.
pub fn capabilities<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<Capability>, String> {
    let chosen = names
        .map(|name| {
            Capability::from_name(name.trim())
                .filter(|c| backup_of(*c).is_some())
                .ok_or_else(|| {
                    format!("capability {name:?}: expected one of {}", backed_up_names())
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if chosen.is_empty() {
        backed_up().collect()
    } else {
        chosen
    })
}

/// Ids listed per inventory call.
pub const PAGE: usize = 500;
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

/// What happened to one item.
pub enum Outcome {
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

/// One checked item. (A type of its own: a closure over `Box<dyn Restore>` would make the
/// restore's future `Send` only for one lifetime of the trait object.)
struct Item(Box<dyn Restore>);

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
    pub stores: Stores,
    /// The settings each capability's `Backup` reads its bounds from.
    pub settings: Settings,
}

/// Milliseconds from now until `until`, if it is still ahead.
pub fn left_ms(until: OffsetDateTime, now: OffsetDateTime) -> Option<u64> {
    let ms = (until - now).whole_milliseconds();
    (ms > 0).then(|| u64::try_from(ms).unwrap_or(u64::MAX))
}

pub fn raw(value: &impl Serialize) -> StoreResult<Box<RawValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| StoreError::Internal(format!("backup: {e}")))
}

impl Transfer {
    pub fn new(stores: Stores, settings: &Settings) -> Self {
        Self {
            stores,
            settings: settings.clone(),
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
            let Some(backup) = backup_of(*capability) else {
                continue;
            };
            let mut seen = HashSet::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = backup.inventory(self, tenant, cursor.as_deref()).await?;
                let fresh: Vec<String> = page
                    .ids
                    .into_iter()
                    .filter(|id| seen.insert(id.clone()))
                    .collect();
                // Read up to `IN_FLIGHT` items at once (one connection pipelines them), in order.
                let capability = *capability;
                let mut records = stream::iter(fresh)
                    .map(|id| async move {
                        let exported = backup.export(self, tenant, &id).await?;
                        Ok::<_, StoreError>(exported.map(|exported| Record {
                            capability: capability.name().to_string(),
                            tenant: tenant.to_string(),
                            id,
                            value: exported.value,
                            ttl_ms: exported.ttl_ms,
                            version: exported.version,
                        }))
                    })
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
