//! Hand-back: what the memory backend took while Redis was down, written to Redis when it
//! returns, before traffic moves back (`backend.handback`, on by default in `auto` mode).
//!
//! While degraded, every write the memory adapters of the "served from memory" capabilities
//! acknowledge (cache, sessions, agent states, pending actions) notes the item it touched in a
//! [`Ledger`]: the item's identity and when, never a copy of it. On recovery each noted item's
//! *final* memory state is handed to Redis through the Redis adapter's own atomic operations:
//!
//! - present in memory: written to Redis with its remaining lifetime; absent (deleted, or
//!   expired while degraded): deleted in Redis, so a delete made while degraded holds;
//! - bulk deletes (`DELETE` by pattern, "sign out everywhere") are replayed first, in order,
//!   since memory could not see Redis's items they were meant to remove;
//! - **conflicts** (another instance wrote the item in Redis meanwhile): where the item carries
//!   a write time, the later write wins and a Redis win is counted and logged. Sessions compare
//!   `last_activity_at`, agent states `updated_at`. An agent state in both places keeps Redis's
//!   messages and gets the messages memory took appended after them, in order; its context,
//!   metadata and relevance are the later writer's. A pending action keeps exactly-once: a
//!   token confirmed (or cancelled) in memory is written to Redis already confirmed (or
//!   cancelled) in one step, and where Redis holds the token too the two outcomes are merged by
//!   the confirm and cancel scripts, so no token can be confirmed twice. Cache values carry no
//!   write time in Redis (a plain string, so a GET stays one command): the value written while
//!   degraded wins;
//! - agent states take a full TTL from the hand-back (every write to a thread renews it); cache
//!   values, sessions and pending actions keep their remaining lifetime.
//!
//! A failure part-way (Redis gone again) keeps what is left in the ledger for the next try; an
//! item is handed back again only if it was touched again. Redis-only capabilities never reach
//! memory; usage has its own journal ([`super::failover`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use time::OffsetDateTime;

use super::{StoreError, StoreResult, Versioned};
use crate::capabilities::{
    agent_state::port::AgentStateStore,
    cache::port::{CacheStore, PutCondition, TtlState},
    pending_action::port::PendingActionStore,
    session::port::SessionStore,
};
use crate::{
    capabilities::{
        agent_state::model::{AgentState, NewAgentState, ThreadId},
        pending_action::model::{
            ActionStatus, ActionToken, Cancel, Confirm, PendingAction, TombstoneLife,
        },
        session::model::{SessionId, SessionRules, UserId},
    },
    domain::{
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl, unix_ms},
    },
    metrics::Tally,
};

/// One item a degraded write touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    Cache(Tenant, Namespace, CacheKey),
    Session(Tenant, SessionId),
    Thread(Tenant, ThreadId),
    Action(Tenant, ActionToken),
}

/// A delete of items memory could not see, replayed as it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bulk {
    CachePattern(Tenant, Namespace, String),
    UserSessions(Tenant, UserId),
}

#[derive(Default)]
struct Noted {
    /// When each item was last touched.
    items: HashMap<Item, OffsetDateTime>,
    bulk: Vec<(Bulk, OffsetDateTime)>,
}

/// What one call served by memory wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Item(Item),
    Bulk(Bulk),
}

impl Note {
    pub fn cache(tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> Self {
        Self::Item(Item::Cache(tenant.clone(), ns.clone(), key.clone()))
    }

    pub fn session(tenant: &Tenant, id: &SessionId) -> Self {
        Self::Item(Item::Session(tenant.clone(), id.clone()))
    }

    pub fn thread(tenant: &Tenant, thread: &ThreadId) -> Self {
        Self::Item(Item::Thread(tenant.clone(), thread.clone()))
    }
}

/// The items touched while degraded. One entry per item, however often it was written: its
/// size is bounded by what memory holds plus the deletes made while degraded.
#[derive(Default)]
pub struct Ledger {
    noted: Mutex<Noted>,
}

impl Ledger {
    pub fn note(&self, notes: impl IntoIterator<Item = Note>) {
        let at = OffsetDateTime::now_utc();
        let mut noted = self.lock();
        for note in notes {
            match note {
                Note::Item(item) => {
                    noted.items.insert(item, at);
                }
                Note::Bulk(bulk) => noted.bulk.push((bulk, at)),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        let noted = self.lock();
        noted.items.is_empty() && noted.bulk.is_empty()
    }

    fn take(&self) -> Noted {
        std::mem::take(&mut *self.lock())
    }

    /// Puts back what a failed hand-back did not get to; a later touch of an item wins.
    fn put_back(&self, rest: Noted) {
        let mut noted = self.lock();
        for (item, at) in rest.items {
            noted.items.entry(item).or_insert(at);
        }
        let mut bulk = rest.bulk;
        bulk.append(&mut noted.bulk);
        noted.bulk = bulk;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Noted> {
        self.noted.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one hand-back did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Items written to Redis from memory.
    pub written: u64,
    /// Items deleted in Redis (deleted or expired while degraded), bulk deletes included.
    pub deleted: u64,
    /// Items where Redis held a later write, which won.
    pub conflicts: u64,
    /// Items Redis refused for a reason of their own (logged), dropped so that the hand-back
    /// can finish.
    pub failed: u64,
}

/// A pair of stores of one capability: the memory fallback and Redis.
pub struct Pair<S: ?Sized> {
    pub memory: Arc<S>,
    pub redis: Arc<S>,
}

/// Everything the hand-back reads from and writes to.
pub struct HandBack {
    pub ledger: Arc<Ledger>,
    pub cache: Option<Pair<dyn CacheStore>>,
    pub sessions: Option<Pair<dyn SessionStore>>,
    pub agent_states: Option<Pair<dyn AgentStateStore>>,
    pub pending_actions: Option<Pair<dyn PendingActionStore>>,
    pub session_rules: SessionRules,
    pub tombstone: TombstoneLife,
    /// `outcome`: written, deleted, conflict.
    pub counts: Tally,
}

/// Optimistic retries of one agent-state merge against concurrent writers.
const MERGE_ATTEMPTS: usize = 8;

/// Sessions read per page while handing back a sign-out everywhere.
const HANDBACK_PAGE: usize = 200;

impl HandBack {
    /// Hands every noted item to Redis. On the first failure the rest is kept for next time.
    pub async fn run(&self) -> StoreResult<Report> {
        let mut noted = self.ledger.take();
        let mut report = Report::default();
        let result = self.hand_over(&mut noted, &mut report).await;
        if result.is_err() {
            self.ledger.put_back(noted);
        }
        for (outcome, n) in [
            ("written", report.written),
            ("deleted", report.deleted),
            ("conflict", report.conflicts),
            ("failed", report.failed),
        ] {
            self.counts.count_by(outcome, n);
        }
        result.map(|()| report)
    }

    /// Hands over what `noted` holds, taking out what is done. Stops at the first error that
    /// says Redis cannot take writes now (gone again, busy, full, refusing): the rest stays in
    /// `noted`. Any other error is the item's own (Redis answered something unexpected, or
    /// concurrent writers won every merge): it is logged and counted as failed, and the
    /// hand-back goes on, so one item can never keep traffic off Redis.
    async fn hand_over(&self, noted: &mut Noted, report: &mut Report) -> StoreResult<()> {
        while !noted.bulk.is_empty() {
            let (bulk, at) = noted.bulk[0].clone();
            match self.replay_bulk(&bulk, at, report).await {
                Err(e) if stops(&e) => return Err(e),
                Err(e) => {
                    report.failed += 1;
                    tracing::error!(error = %e, ?bulk, "hand-back: a bulk delete failed; dropped");
                }
                Ok(()) => {}
            }
            noted.bulk.remove(0);
        }
        let items: Vec<(Item, OffsetDateTime)> =
            noted.items.iter().map(|(i, at)| (i.clone(), *at)).collect();
        for (item, at) in items {
            match self.hand_item(&item, at, report).await {
                Err(e) if stops(&e) => return Err(e),
                Err(e) => {
                    report.failed += 1;
                    tracing::error!(error = %e, ?item, "hand-back: this item failed; dropped");
                }
                Ok(()) => {}
            }
            noted.items.remove(&item);
        }
        Ok(())
    }

    async fn replay_bulk(
        &self,
        bulk: &Bulk,
        at: OffsetDateTime,
        report: &mut Report,
    ) -> StoreResult<()> {
        match bulk {
            Bulk::CachePattern(tenant, ns, pattern) => {
                if let Some(pair) = &self.cache {
                    report.deleted += pair.redis.delete_matching(tenant, ns, pattern).await?;
                }
            }
            Bulk::UserSessions(tenant, user) => {
                let Some(pair) = &self.sessions else {
                    return Ok(());
                };
                let mut after = None;
                loop {
                    let page = pair
                        .redis
                        .list_for_user(tenant, user, after.as_ref(), HANDBACK_PAGE)
                        .await?;
                    for session in &page.sessions {
                        if session.last_activity_at_ms > unix_ms(at) {
                            conflict(report, "session", session.id.as_str());
                        } else if pair.redis.delete(tenant, &session.id).await? {
                            report.deleted += 1;
                        }
                    }
                    match page.sessions.last() {
                        Some(last) if page.more => after = Some(last.place()),
                        _ => break,
                    }
                }
            }
        }
        Ok(())
    }

    async fn hand_item(
        &self,
        item: &Item,
        at: OffsetDateTime,
        report: &mut Report,
    ) -> StoreResult<()> {
        match item {
            Item::Cache(tenant, ns, key) => {
                let Some(pair) = &self.cache else {
                    return Ok(());
                };
                let value = pair.memory.get(tenant, ns, key).await?;
                let ttl = pair.memory.ttl(tenant, ns, key).await?;
                match (value, ttl) {
                    (Some(value), TtlState::Persistent | TtlState::Expires(_)) => {
                        let expiry = match ttl {
                            TtlState::Expires(seconds) => Expiry::After(Ttl::carried(seconds)),
                            _ => Expiry::Never,
                        };
                        pair.redis
                            .put(tenant, ns, key, &value, expiry, PutCondition::Always)
                            .await?;
                        report.written += 1;
                    }
                    _ => {
                        pair.redis.delete(tenant, ns, key).await?;
                        report.deleted += 1;
                    }
                }
            }
            Item::Session(tenant, id) => {
                let Some(pair) = &self.sessions else {
                    return Ok(());
                };
                let rules = SessionRules {
                    rolling: false,
                    ..self.session_rules
                };
                let ours = pair.memory.get(tenant, id, rules).await?;
                let theirs = pair.redis.get(tenant, id, rules).await?;
                let written_at = ours.as_ref().map_or(unix_ms(at), |s| s.last_activity_at_ms);
                if let Some(theirs) = &theirs
                    && theirs.last_activity_at_ms > written_at
                {
                    conflict(report, "session", id.as_str());
                    return Ok(());
                }
                if theirs.is_some() {
                    pair.redis.delete(tenant, id).await?;
                }
                match ours {
                    Some(session) => {
                        pair.redis
                            .create(tenant, &session, self.session_rules)
                            .await?;
                        report.written += 1;
                    }
                    None if theirs.is_some() => report.deleted += 1,
                    None => {}
                }
            }
            Item::Thread(tenant, thread) => {
                let Some(pair) = &self.agent_states else {
                    return Ok(());
                };
                match pair.memory.get(tenant, thread, None).await? {
                    Some(ours) => self.hand_thread(pair, tenant, thread, ours, report).await?,
                    None => match pair.redis.get(tenant, thread, Some(0)).await? {
                        Some(theirs) if theirs.updated_at > at => {
                            conflict(report, "agent state", thread.as_str());
                        }
                        Some(_) => {
                            pair.redis.delete(tenant, thread).await?;
                            report.deleted += 1;
                        }
                        None => {}
                    },
                }
            }
            Item::Action(tenant, token) => {
                let Some(pair) = &self.pending_actions else {
                    return Ok(());
                };
                self.hand_action(pair, tenant, token, report).await?;
            }
        }
        Ok(())
    }

    /// Writes a thread memory holds: created whole where Redis has none, else merged into
    /// Redis's by a versioned replace (Redis's messages, then memory's).
    async fn hand_thread(
        &self,
        pair: &Pair<dyn AgentStateStore>,
        tenant: &Tenant,
        thread: &ThreadId,
        ours: AgentState,
        report: &mut Report,
    ) -> StoreResult<()> {
        let ttl_seconds = (ours.expires_at - ours.updated_at)
            .whole_seconds()
            .max(1)
            .unsigned_abs();
        for _ in 0..MERGE_ATTEMPTS {
            let Some(theirs) = pair.redis.get(tenant, thread, None).await? else {
                let state = NewAgentState {
                    thread_id: thread.clone(),
                    messages: ours.messages.clone(),
                    context: ours.context.clone(),
                    metadata: ours.metadata.clone(),
                    is_relevant: ours.is_relevant,
                    ttl_seconds,
                };
                if pair.redis.create(tenant, &state).await?.is_some() {
                    report.written += 1;
                    return Ok(());
                }
                // Created by someone else between the read and the create: merge into it.
                continue;
            };
            let redis_later = theirs.updated_at > ours.updated_at;
            let later = if redis_later { &theirs } else { &ours };
            let mut messages = theirs.messages.clone();
            messages.extend(ours.messages.iter().cloned());
            let state = NewAgentState {
                thread_id: thread.clone(),
                messages,
                context: later.context.clone(),
                metadata: later.metadata.clone(),
                is_relevant: later.is_relevant,
                ttl_seconds,
            };
            match pair
                .redis
                .replace(tenant, &state, Some(theirs.version))
                .await?
            {
                Versioned::Done(_) => {
                    if redis_later {
                        conflict(report, "agent state", thread.as_str());
                    }
                    report.written += 1;
                    return Ok(());
                }
                // Written or deleted by someone else between the read and the replace.
                Versioned::Stale | Versioned::Missing | Versioned::Contended => continue,
            }
        }
        Err(StoreError::Internal(format!(
            "agent state {thread}: {MERGE_ATTEMPTS} merges lost to concurrent writers"
        )))
    }

    /// Writes a token memory holds: created in its status where Redis has none (one atomic
    /// step, so no confirm can slip in between); where Redis has it, memory's outcome is
    /// applied with the confirm or cancel script, which refuses a second outcome.
    async fn hand_action(
        &self,
        pair: &Pair<dyn PendingActionStore>,
        tenant: &Tenant,
        token: &ActionToken,
        report: &mut Report,
    ) -> StoreResult<()> {
        // Moved, not copied: taken out of memory first, so that no later outage can resolve it
        // there while Redis resolves it too (a token lives in one store), and put back only
        // when Redis cannot take it now.
        let Some(ours) = pair.memory.take(tenant, token).await? else {
            // Expired while degraded: nothing to hand back (tokens are never deleted).
            return Ok(());
        };
        let left = ours.record_ends(self.tombstone) - OffsetDateTime::now_utc();
        let Ok(left) = u64::try_from(left.whole_milliseconds()) else {
            return Ok(());
        };
        if left == 0 {
            return Ok(());
        }
        let ttl = Ttl::carried_ms(left);
        match self.move_action(pair, tenant, token, &ours, ttl).await {
            Ok(Some(true)) => report.written += 1,
            Ok(Some(false)) => conflict(report, "pending action", token.as_str()),
            Ok(None) => {}
            Err(e) => {
                pair.memory.create(tenant, &ours, ttl).await?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes a token taken out of memory to Redis: created in its status where Redis has none;
    /// else memory's outcome applied by the confirm or cancel script. Some(true): written;
    /// Some(false): Redis had another outcome; None: nothing to apply (still pending in
    /// memory, or Redis had the same outcome).
    async fn move_action(
        &self,
        pair: &Pair<dyn PendingActionStore>,
        tenant: &Tenant,
        token: &ActionToken,
        ours: &PendingAction,
        ttl: Ttl,
    ) -> StoreResult<Option<bool>> {
        if pair.redis.create(tenant, ours, ttl).await? {
            return Ok(Some(true));
        }
        Ok(match (ours.status, ours.confirmed_at, ours.cancelled_at) {
            (ActionStatus::Confirmed, Some(at), _) => {
                match pair
                    .redis
                    .confirm(tenant, token, at, None, self.tombstone)
                    .await?
                {
                    Confirm::Confirmed(_) => Some(true),
                    // NotFound: it expired since the create found it.
                    Confirm::AlreadyConfirmed | Confirm::Replayed(_) | Confirm::NotFound => None,
                    Confirm::AlreadyCancelled => Some(false),
                }
            }
            (ActionStatus::Cancelled, _, Some(at)) => {
                match pair.redis.cancel(tenant, token, at, self.tombstone).await? {
                    Cancel::Cancelled => Some(true),
                    Cancel::AlreadyCancelled | Cancel::NotFound => None,
                    Cancel::AlreadyConfirmed => Some(false),
                }
            }
            _ => None,
        })
    }
}

/// Whether an error says Redis cannot take writes now, so the hand-back must wait.
fn stops(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Unavailable(_)
            | StoreError::Busy(_)
            | StoreError::Full(_)
            | StoreError::Refused(_)
            | StoreError::Interrupted(_)
            | StoreError::NotReplicated(_)
    )
}

fn conflict(report: &mut Report, what: &str, id: &str) {
    report.conflicts += 1;
    tracing::warn!(
        id,
        "hand-back: Redis holds a later write of this {what}; Redis's is kept"
    );
}

#[cfg(test)]
pub(crate) mod tests;
