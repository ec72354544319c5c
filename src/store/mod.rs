//! The ports: one trait per capability whose methods are that capability's atomic operations,
//! and `Stores`, the set of them a request handler sees.
//!
//! Adapters: `memory` (the embedded expiring map) and `redis`; `failover` wraps a pair of them
//! and decides, per call, which one serves it.

pub mod failover;
pub mod handback;
pub mod memory;
pub mod redis;
pub mod signals;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    agent_state::{AgentState, JsonObject, Message, NewAgentState, RecentState, ThreadId},
    cache::{CacheValue, IncrError, Increment, ListCursor},
    ids::{CacheKey, Namespace, Tenant},
    lock::{Acquire, Acquired, Fence, FenceCheck, LockInfo, LockName, LockToken},
    pending_action::{ActionToken, Cancel, Confirm, IdempotencyKey, PendingAction, TombstoneLife},
    queue::{Counts, Job, JobId, JobState, Leased, NewJob, QueueName},
    rate_limit::{Check, Decision, RateLimitKey},
    session::{ListingPlace, Session, SessionChange, SessionId, SessionPage, SessionRules, UserId},
    topic::{NewEvent, Order, Resume, Shared, TopicName},
    ttl::{Expiry, Ttl},
    usage::{
        Bucket, BudgetId, BudgetRule, BudgetStatus, Committed, MetricName, Period, ReservationId,
        Reserved, Subject, Total, UsageEvent, UsageLimits,
    },
};
use time::OffsetDateTime;

/// Errors of a store call. Outcomes a caller can cause (absent, conflict) are not errors: they
/// are part of each method's return value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time. In `auto` mode this is what
    /// sends a call to the memory backend.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Every pooled connection stayed busy for the whole deadline: this service is overloaded,
    /// Redis is not known to be down, so the call neither fails over nor marks Redis down.
    #[error("backend busy: {0}")]
    Busy(String),
    /// No room: Redis answered `OOM` (`maxmemory` under `noeviction`), or the memory backend is
    /// at `memory.max_bytes`. Reads still work; writes fail until room is made.
    #[error("backend full: {0}")]
    Full(String),
    /// Redis answers but refuses to serve for now (`READONLY`, `LOADING`, `MASTERDOWN`, `BUSY`,
    /// ...). Not an outage: the call does not fail over, since a write taken by memory now would
    /// be lost when Redis serves again.
    #[error("backend refused: {0}")]
    Refused(String),
    /// The connection broke during a call that is not safe to repeat, while Redis still
    /// answers: the call may or may not have taken effect.
    #[error("call interrupted: {0}")]
    Interrupted(String),
    /// The write was made on the master, but fewer replicas than `redis.wait_replicas` took it
    /// within `redis.wait_timeout_ms`: a failover now could lose it.
    #[error("write not replicated: {0}")]
    NotReplicated(String),
    /// The backend answered something this code does not expect: a bug, logged and turned
    /// into an opaque 500.
    #[error("unexpected backend reply: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// When a cache write applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    Always,
    /// Only when no live value exists (`SET NX`).
    IfAbsent,
    /// Only when a live value exists (`SET XX`).
    IfPresent,
}

/// What a compare-and-set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    Swapped,
    /// The live value (or its absence) did not equal `expected`; nothing was written.
    Failed {
        current: Option<CacheValue>,
    },
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// `ListCursor::Start` when the listing is complete.
    pub next: ListCursor,
}

/// What a TTL query found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlState {
    Missing,
    Persistent,
    /// Whole seconds left, rounded up so a live entry never reports 0.
    Expires(u64),
}

/// The cache: namespaced JSON values per tenant. A value that has expired is absent for every
/// method, whether or not a purge has removed it yet.
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The live value, or `None`.
    async fn get(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
    ) -> StoreResult<Option<CacheValue>>;

    /// Whether a live value exists, without transferring it.
    async fn exists(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool>;

    /// Writes value and expiry in one atomic step when `condition` holds; returns whether it
    /// wrote. A write replaces the previous expiry.
    async fn put(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        value: &CacheValue,
        expiry: Expiry,
        condition: PutCondition,
    ) -> StoreResult<bool>;

    /// Writes `value` with `expiry` and returns the live value it replaced, as one atomic step
    /// (`SET ... GET`): of concurrent swaps each sees the value the one before it wrote.
    async fn get_and_set(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        value: &CacheValue,
        expiry: Expiry,
    ) -> StoreResult<Option<CacheValue>>;

    /// Removes the value and returns it, as one atomic step (`GETDEL`): of concurrent readers
    /// exactly one gets it.
    async fn get_and_delete(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
    ) -> StoreResult<Option<CacheValue>>;

    /// Removes the value; returns whether a live one existed.
    async fn delete(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<bool>;

    async fn ttl(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> StoreResult<TtlState>;

    /// Sets a new TTL on a live value; returns false when there is none (nothing is created).
    async fn set_ttl(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        ttl: Ttl,
    ) -> StoreResult<bool>;

    /// Adds `by` to a numeric value atomically and returns the new value's JSON text. A missing
    /// value counts as 0 and the counter is created with `create_expiry`; an existing counter
    /// keeps its TTL.
    async fn incr(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        by: Increment,
        create_expiry: Expiry,
    ) -> StoreResult<Result<String, IncrError>>;

    /// Writes `value` only if the live value equals `expected` as JSON (`None`: absent), as
    /// one atomic step: of concurrent swaps from the same `expected`, exactly one succeeds.
    async fn compare_and_swap(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        key: &CacheKey,
        expected: Option<&serde_json::Value>,
        value: &CacheValue,
        expiry: Expiry,
    ) -> StoreResult<CasOutcome>;

    /// The live values of `keys`, in order, read as one snapshot.
    async fn get_many(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        keys: &[CacheKey],
    ) -> StoreResult<Vec<Option<CacheValue>>>;

    /// Writes every entry with the same expiry, atomically: no reader sees some but not all.
    async fn put_many(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        entries: &[(CacheKey, CacheValue)],
        expiry: Expiry,
    ) -> StoreResult<()>;

    /// Up to about `limit` keys of the namespace matching the Redis-style glob `pattern`, from
    /// `cursor`. Keys of other namespaces and tenants are never seen, whatever the pattern.
    /// Redis may return a key twice across pages (SCAN's guarantee); memory never does.
    async fn list(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        pattern: &str,
        cursor: &ListCursor,
        limit: usize,
    ) -> StoreResult<KeyPage>;

    /// Deletes every key of the namespace matching `pattern`, in batches; returns how many.
    async fn delete_matching(
        &self,
        tenant: &Tenant,
        ns: &Namespace,
        pattern: &str,
    ) -> StoreResult<u64>;

    /// One page of the tenant's live keys in every namespace, as `namespace/key`, for backups.
    /// `cursor` is the `next` of the previous page (`None` first); keys may repeat across
    /// pages, as they may with `SCAN`.
    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage>;
}

/// One page of an inventory: ids of one capability and tenant, for backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdPage {
    pub ids: Vec<String>,
    /// Where the next page starts; `None` when the listing is complete.
    pub next: Option<String>,
}

/// Pending actions: confirmation tokens that are confirmed by exactly one caller. A token is
/// one record per tenant; once confirmed or cancelled it becomes a tombstone that still
/// answers (with its status) until its `TombstoneLife` ends, then it is absent like an
/// expired or unknown token. Another tenant's token is absent for every method.
#[async_trait]
pub trait PendingActionStore: Send + Sync {
    /// Stores the action under its token for `ttl`, in its status: `pending` for a new token,
    /// confirmed or cancelled for one handed over from the other backend (in one step, so no
    /// confirm can come between). Returns false, writing nothing, when the token already
    /// exists (a record is never overwritten).
    async fn create(&self, tenant: &Tenant, action: &PendingAction, ttl: Ttl) -> StoreResult<bool>;

    /// The action with its current status while it or its tombstone lives, else `None`.
    async fn get(&self, tenant: &Tenant, token: &ActionToken)
    -> StoreResult<Option<PendingAction>>;

    /// Confirms a pending action in one atomic step: of any number of concurrent confirms of
    /// one token, across every instance sharing the backend, exactly one sees `Confirmed`.
    /// The winner's `idempotency_key` is kept in the tombstone (which lives for `tombstone`),
    /// and a later confirm carrying the same key sees `Replayed` with the same action.
    async fn confirm(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
        at: OffsetDateTime,
        idempotency_key: Option<&IdempotencyKey>,
        tombstone: TombstoneLife,
    ) -> StoreResult<Confirm>;

    /// Cancels a pending action atomically, so that no confirm can succeed afterwards; a
    /// confirm and a cancel racing on one token never both win. Already-final tokens are
    /// left as they are (`AlreadyCancelled`, `AlreadyConfirmed`).
    async fn cancel(
        &self,
        tenant: &Tenant,
        token: &ActionToken,
        at: OffsetDateTime,
        tombstone: TombstoneLife,
    ) -> StoreResult<Cancel>;

    /// One page of the tenant's tokens (tombstones included), for backups; as
    /// `CacheStore::inventory`.
    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage>;

    /// Removes the token and returns it, in one atomic step: the hand-back *moves* a token
    /// from memory to Redis, so that it lives in one store at any time and a later outage
    /// cannot resolve it in memory while Redis resolves it too. Only memory hands tokens over.
    async fn take(
        &self,
        _tenant: &Tenant,
        _token: &ActionToken,
    ) -> StoreResult<Option<PendingAction>> {
        Err(StoreError::Internal("only memory hands tokens over".into()))
    }
}

/// The outcome of a write to an existing agent state that may carry an expected version.
#[derive(Debug, Clone, PartialEq)]
pub enum Versioned<T> {
    Done(T),
    /// No live thread with this id; nothing was written.
    Missing,
    /// The thread's version is not the expected one (or, for `replace`, there is no thread to
    /// match the expected version); nothing was written.
    Stale,
    /// `patch_context` lost every optimistic retry to concurrent writers; nothing was written.
    Contended,
}

/// Why a versioned write did not happen: the `Missing` and `Stale` of `Versioned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Stale,
}

impl<T> From<Refusal> for Versioned<T> {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Missing => Versioned::Missing,
            Refusal::Stale => Versioned::Stale,
        }
    }
}

/// What `AgentStateStore::replace` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    pub state: AgentState,
    /// True when no live thread existed, so this write created one.
    pub created: bool,
}

/// What `AgentStateStore::append` left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub message_count: u64,
    pub version: u64,
}

/// One page of `AgentStateStore::list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadPage {
    pub thread_ids: Vec<ThreadId>,
    /// Whether live threads follow the last id of this page.
    pub more: bool,
}

/// Agent states: one conversation per thread and tenant, with its messages, context and
/// metadata. A thread and all its messages expire together; an expired thread is absent for
/// every method, whether or not a purge has removed it yet, and is never listed. Every write
/// that changes a thread (create, replace, append, context, relevance) raises `version` by one,
/// sets `updated_at`, and renews the thread's TTL (`ttl_seconds`, kept with the thread), so a
/// conversation in use does not expire.
#[async_trait]
pub trait AgentStateStore: Send + Sync {
    /// Creates the thread at version 1 unless a live one exists (`None`: nothing was written).
    /// An expired thread of the same id counts as absent and is replaced.
    async fn create(
        &self,
        tenant: &Tenant,
        state: &NewAgentState,
    ) -> StoreResult<Option<AgentState>>;

    /// The live thread, with all its messages or only the last `last_messages`, read in one
    /// atomic step so `version`, `message_count` and the messages always agree.
    async fn get(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        last_messages: Option<u64>,
    ) -> StoreResult<Option<AgentState>>;

    /// Whether a live thread exists, without reading it.
    async fn exists(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool>;

    /// Replaces the whole thread (messages included) or creates it. With `if_version` it only
    /// writes when a live thread has exactly that version. A replace keeps `created_at` and
    /// continues the version count.
    async fn replace(
        &self,
        tenant: &Tenant,
        state: &NewAgentState,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<Replaced>>;

    /// Removes the thread, its messages and its index entries; returns whether a live thread
    /// existed.
    async fn delete(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool>;

    /// Appends messages to a live thread in one atomic step: concurrent appends each land
    /// whole, none is lost, and each raises the version by one. Never creates a thread.
    async fn append(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        messages: &[Message],
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<Appended>>;

    /// Applies a JSON merge patch (RFC 7396) to the context of a live thread and returns the
    /// whole state after it. Atomic: concurrent patches are applied one after another, none is
    /// lost (on Redis by an optimistic, version-checked write that is retried when another
    /// write came first).
    async fn patch_context(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        patch: &JsonObject,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<AgentState>>;

    /// Sets `is_relevant` on a live thread; returns the new version.
    async fn set_relevance(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        is_relevant: bool,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<u64>>;

    /// Up to `limit` live thread ids in byte order, strictly after `after`. Paging with the
    /// last id of each page visits every thread that lives throughout exactly once. Index
    /// entries of expired threads are dropped on the way.
    async fn list(
        &self,
        tenant: &Tenant,
        after: Option<&ThreadId>,
        limit: usize,
    ) -> StoreResult<ThreadPage>;

    /// The `limit` most recently updated live threads, newest first. Index entries of expired
    /// or vanished threads are dropped on the way, so none is ever listed.
    async fn recent(&self, tenant: &Tenant, limit: usize) -> StoreResult<Vec<RecentState>>;

    /// Whole seconds until the live thread expires (rounded up), `None` when there is none.
    async fn ttl(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<Option<u64>>;

    /// Gives a live thread (all its keys) a new TTL from now, kept as its TTL for later
    /// writes; returns false when there is none. Not a change of the state: `version` stays.
    async fn set_ttl(&self, tenant: &Tenant, thread: &ThreadId, ttl: Ttl) -> StoreResult<bool>;

    /// Drops the index entries of every expired thread of the tenant; returns how many.
    async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64>;

    /// Writes a thread exactly as `state` holds it (version, times and messages), living until
    /// its `expires_at` and renewed by later writes with `ttl_seconds`: a restore from a
    /// backup. With `only_if_absent` a live thread of that id is left alone. Returns whether it
    /// wrote; a state whose `expires_at` has passed is never written.
    async fn restore(
        &self,
        tenant: &Tenant,
        state: &AgentState,
        ttl_seconds: u64,
        only_if_absent: bool,
    ) -> StoreResult<bool>;
}

/// What a conditional session change found.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionUpdate {
    /// No live session: deleted, expired or never made. Nothing was written.
    Missing,
    /// `If-Match` named another version; nothing was written.
    Stale {
        current_version: u64,
    },
    /// The change would grow `data` + `context` to `size` bytes, past
    /// `SessionRules::max_bytes`; nothing was written. (A change that shrinks them is allowed
    /// even above the limit, so a lowered limit never locks a session.)
    TooLarge {
        size: usize,
    },
    Updated(Session),
}

/// User sessions. A session that has expired or been deleted is absent for every method, and
/// no method ever writes one back: each write checks that the session is live in the same
/// atomic step as the write, so a write that races a delete either lands before it (and is
/// deleted with the session) or finds nothing.
///
/// Every session is also in its user's index, in the same atomic step as its creation, rotation
/// and deletion, so "sign out everywhere" cannot miss one.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session (its id is fresh, so nothing is overwritten) and indexes it under
    /// its user, atomically. `rules` bounds how long the index must be kept.
    async fn create(
        &self,
        tenant: &Tenant,
        session: &Session,
        rules: SessionRules,
    ) -> StoreResult<()>;

    /// The live session, or `None`. With `rules.rolling` the read also renews its expiry
    /// (`Session::touch`) in the same atomic step, so a renewal can never revive it.
    async fn get(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        rules: SessionRules,
    ) -> StoreResult<Option<Session>>;

    /// Applies `change` (`Session::apply`) when the session is live, at the `if_match` version
    /// if one is given, and the result within `rules.max_bytes`; checks and write are one
    /// atomic step. Checked in that order: missing, stale, too large.
    async fn update(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        change: &SessionChange,
        if_match: Option<u64>,
        rules: SessionRules,
    ) -> StoreResult<SessionUpdate>;

    /// Moves a live session to `new_id` (same content, creation time and expiry) and removes
    /// the old id in one atomic step, the user index included; `None` when not live. `new_id`
    /// comes from `id.random_beside()` (the Redis adapter keeps both in one shard).
    async fn rotate(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        new_id: &SessionId,
        rules: SessionRules,
    ) -> StoreResult<Option<Session>>;

    /// Removes the session and its index entry; returns whether a live one existed.
    async fn delete(&self, tenant: &Tenant, id: &SessionId) -> StoreResult<bool>;

    /// One page of the user's live sessions in listing order (oldest first, then by id):
    /// at most `limit`, strictly after `after`. Index entries of sessions that have expired are
    /// dropped on the way; they are never listed. The cost of a page grows with `limit` and
    /// with the expired entries it meets, not with how many sessions the user has.
    async fn list_for_user(
        &self,
        tenant: &Tenant,
        user: &UserId,
        after: Option<&ListingPlace>,
        limit: usize,
    ) -> StoreResult<SessionPage>;

    /// Deletes every session of the user; returns how many were live. Atomic on memory; on
    /// Redis one atomic step per shard of the tenant's sessions (`redis::keys::CLUSTER_SHARDS` on a Cluster), so a
    /// session created for the user while it runs may survive it.
    async fn delete_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<u64>;

    /// Drops the index entries of the tenant's expired sessions from every user's index (a
    /// listing drops a user's own as it goes); returns how many.
    async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64>;

    /// One page of the tenant's session ids, for backups; as `CacheStore::inventory`.
    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage>;
}

/// Rate limits: decisions for a key against its rules (`domain::rate_limit`). A key's state
/// expires by itself once no rule would remember anything (on Redis with the key's TTL, in
/// memory with the entry's expiry): nothing is unbounded and nothing needs cleaning.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Assesses every rule at the backend's time and, when the check consumes and every rule
    /// allows, counts the cost in all of them, as one atomic step: concurrent checks, on any
    /// instance, never admit more than a limit, and a denied check changes nothing.
    async fn check(
        &self,
        tenant: &Tenant,
        key: &RateLimitKey,
        check: &Check,
    ) -> StoreResult<Decision>;

    /// Forgets the state of every rule of the key.
    async fn reset(&self, tenant: &Tenant, key: &RateLimitKey) -> StoreResult<()>;
}

/// Locks with fencing tokens (`domain::lock`). Every method is one atomic step at the
/// backend's time; a token that does not hold the lock changes nothing.
#[async_trait]
pub trait LockStore: Send + Sync {
    /// One attempt: grants the lock when nobody holds it, else says for how long it is held.
    async fn acquire(
        &self,
        tenant: &Tenant,
        name: &LockName,
        request: &Acquire,
    ) -> StoreResult<Acquired>;

    /// A new expiry `ttl_ms` from now, or `None` when `token` does not hold the lock.
    async fn extend(
        &self,
        tenant: &Tenant,
        name: &LockName,
        token: &LockToken,
        ttl_ms: u64,
    ) -> StoreResult<Option<u64>>;

    /// Whether `token` held the lock; then it is free, and waiters (on every instance) are woken.
    async fn release(
        &self,
        tenant: &Tenant,
        name: &LockName,
        token: &LockToken,
    ) -> StoreResult<bool>;

    async fn get(&self, tenant: &Tenant, name: &LockName) -> StoreResult<LockInfo>;

    /// Accepts `fence`'s token when no later grant or check exists and a grant can have
    /// issued it (`Fence::ceiling`), raising the mark to it.
    async fn check_fence(
        &self,
        tenant: &Tenant,
        name: &LockName,
        fence: Fence,
    ) -> StoreResult<FenceCheck>;

    /// Notified (`notify_waiters`) when the lock may have been released.
    fn release_signal(&self, tenant: &Tenant, name: &LockName) -> Arc<tokio::sync::Notify>;

    /// One page of the tenant's lock names (records kept for their fencing marks included),
    /// for backups; as `CacheStore::inventory`.
    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage>;
}

/// How often a waiter tries again although no signal woke it: a bound on what a missed
/// signal costs, not a poll loop (a signal wakes waiters at once, a known change at its time).
pub const WAIT_FALLBACK_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The wait loop of every capability whose callers wait (a lock's `wait_ms`, a queue's long
/// poll): registers on `signal` before each `attempt`, so a signal between the attempt and the
/// wait is never missed; returns the first outcome `settled` accepts, or the last one when
/// `wait` has passed. Between attempts it sleeps until the signal, the change `settled`
/// announces (µs from now), or `WAIT_FALLBACK_POLL`, whichever comes first: never a busy loop.
async fn wait_until<T, F>(
    signal: impl Fn() -> Arc<tokio::sync::Notify>,
    attempt: impl Fn() -> F,
    settled: impl Fn(&T) -> Result<(), Option<u64>>,
    wait: std::time::Duration,
) -> StoreResult<T>
where
    F: Future<Output = StoreResult<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let signal = signal();
        let signalled = signal.notified();
        tokio::pin!(signalled);
        signalled.as_mut().enable();
        let outcome = attempt().await?;
        let next_change = match settled(&outcome) {
            Ok(()) => return Ok(outcome),
            Err(next_change) => next_change,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(outcome);
        }
        let nap = next_change
            .map_or(WAIT_FALLBACK_POLL, std::time::Duration::from_micros)
            .min(left)
            .min(WAIT_FALLBACK_POLL);
        let _ = tokio::time::timeout(nap, signalled).await;
    }
}

/// Acquires, waiting up to `wait` for the lock: woken by a release, else when the holder's
/// lease ends, else after `WAIT_FALLBACK_POLL`. Fairness is not promised.
pub async fn acquire_waiting(
    store: &dyn LockStore,
    tenant: &Tenant,
    name: &LockName,
    request: &Acquire,
    wait: std::time::Duration,
) -> StoreResult<Acquired> {
    wait_until(
        || store.release_signal(tenant, name),
        || store.acquire(tenant, name, request),
        |outcome| match outcome {
            Acquired::Granted(_) => Ok(()),
            Acquired::Held { retry_after_us } => Err(Some(*retry_after_us)),
        },
        wait,
    )
    .await
}

/// What a lease call found: the jobs it leased, and when (µs from now) a delay ends or a lease
/// expires, which may make a job leasable without an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leases {
    pub jobs: Vec<Leased>,
    pub next_change_in_us: Option<u64>,
}

/// Job queues (`domain::queue`): every method promotes due delays and expired leases first,
/// then does its work, as one atomic step at the backend's time.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Adds the job as `id`, or finds the job a live `dedup_key` names: (job id, created).
    /// Wakes long polls of the queue on every instance.
    async fn enqueue(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        job: &NewJob,
        id: &JobId,
    ) -> StoreResult<(String, bool)>;

    /// Leases up to `tokens.len()` ready jobs (9 first, FIFO within a priority), one token each.
    async fn lease(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        tokens: &[String],
        visibility_ms: u64,
    ) -> StoreResult<Leases>;

    /// Finishes the job; false when `token` holds no live lease on it.
    async fn ack(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        token: &str,
    ) -> StoreResult<bool>;

    /// Ends the attempt as failed: the job's state after, or `None` when `token` holds no live
    /// lease on it.
    async fn nack(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        nack: &Nack<'_>,
    ) -> StoreResult<Option<JobState>>;

    /// The lease's new end (µs since the epoch), or `None` when `token` holds no live lease.
    async fn heartbeat(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        token: &str,
        visibility_ms: u64,
    ) -> StoreResult<Option<u64>>;

    async fn get(&self, tenant: &Tenant, queue: &QueueName, id: &JobId)
    -> StoreResult<Option<Job>>;

    async fn counts(&self, tenant: &Tenant, queue: &QueueName) -> StoreResult<Counts>;

    /// Dead jobs, oldest death first, at most `limit`.
    async fn dead(&self, tenant: &Tenant, queue: &QueueName, limit: usize)
    -> StoreResult<Vec<Job>>;

    /// Makes a dead job ready with its attempts back; false when it is not dead.
    async fn redrive(&self, tenant: &Tenant, queue: &QueueName, id: &JobId) -> StoreResult<bool>;

    /// Deletes the queue and all its jobs; returns how many jobs.
    async fn purge(&self, tenant: &Tenant, queue: &QueueName) -> StoreResult<u64>;

    /// Notified when a job may have been enqueued.
    fn enqueue_signal(&self, tenant: &Tenant, queue: &QueueName) -> Arc<tokio::sync::Notify>;

    /// One page of the tenant's jobs that are not done, as `queue/job_id`, for backups; as
    /// `CacheStore::inventory`.
    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage>;

    /// Writes a job as a backup holds it (`QueueState::restore`: a leased job goes back to
    /// ready, a done one is not written); returns whether it wrote.
    async fn restore(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        job: &Job,
        only_if_absent: bool,
    ) -> StoreResult<bool>;
}

/// A failed attempt as the worker reports it.
#[derive(Debug, Clone, Copy)]
pub struct Nack<'a> {
    pub token: &'a str,
    /// Retry after this long instead of the job's back-off.
    pub delay_ms: Option<u64>,
    pub error: Option<&'a str>,
}

/// Leases, waiting up to `wait` for a job: woken by an enqueue, else when a delay ends or a
/// lease expires, else after `WAIT_FALLBACK_POLL`.
pub async fn lease_waiting(
    store: &dyn QueueStore,
    tenant: &Tenant,
    queue: &QueueName,
    tokens: &[String],
    visibility_ms: u64,
    wait: std::time::Duration,
) -> StoreResult<Leases> {
    wait_until(
        || store.enqueue_signal(tenant, queue),
        || store.lease(tenant, queue, tokens, visibility_ms),
        |leases| {
            if leases.jobs.is_empty() {
                Err(leases.next_change_in_us)
            } else {
                Ok(())
            }
        },
        wait,
    )
    .await
}

/// How much of a topic is kept, and how far a subscriber may fall behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Messages kept per topic (approximately, on Redis: `MAXLEN ~`).
    pub max_len: u64,
    /// How long a message is kept; a topic without a publish this long is gone.
    pub retention_ms: u64,
    /// Messages a subscriber may be behind the newest before it is dropped with a reset.
    pub buffer: usize,
}

/// A subscription to a topic: how it starts, the retained messages it starts with, then the
/// live ones. A live message may also be in `backlog` (published while it was read): skip
/// what is not after the last message delivered.
pub struct Subscription {
    pub start: Resume,
    /// The earliest retained message's id, told with a reset.
    pub earliest: Option<String>,
    /// The retained messages the stream starts with: all of them, or (with `more`) the first
    /// page.
    pub backlog: Vec<Shared>,
    /// Where the rest of the backlog is read, a page at a time as the subscriber takes it, so a
    /// subscriber that does not read holds at most one page and no connection (`None`:
    /// `backlog` is all of it).
    pub more: Option<Box<dyn BacklogPages>>,
    /// Closed when the topic's log goes away (the backend switched, the reader lost Redis).
    pub live: tokio::sync::broadcast::Receiver<Shared>,
    /// Changes when the backend serving topics switches (`auto` mode): the stream then ends
    /// with a reset, since it can no longer see every message the log gets.
    pub switches: Option<tokio::sync::watch::Receiver<u64>>,
    /// Keeps what feeds `live` running (this instance's reader of the topic) while held.
    pub feed: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// The rest of a subscription's backlog, read a page at a time.
#[async_trait]
pub trait BacklogPages: Send + Sync {
    /// The retained messages after `after`, at most one page; empty when there are no more.
    async fn next_page(&self, after: Order) -> StoreResult<Vec<Shared>>;
}

/// Topics (`domain::topic`): a log per topic, fanned out to this instance's subscribers.
#[async_trait]
pub trait TopicStore: Send + Sync {
    /// Appends a message, trimming the log to `limits`; subscribers on every instance get it.
    async fn publish(
        &self,
        tenant: &Tenant,
        topic: &TopicName,
        event: &NewEvent,
        limits: TopicLimits,
    ) -> StoreResult<Shared>;

    /// Subscribes after `after` (a `Last-Event-ID`; `None`: from now on), as
    /// `domain::topic::resume` decides.
    async fn subscribe(
        &self,
        tenant: &Tenant,
        topic: &TopicName,
        after: Option<&str>,
        limits: TopicLimits,
    ) -> StoreResult<Subscription>;
}

/// Metering (`domain::usage`): totals per subject, metric and period, each event once.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds the event to its day's and month's totals, unless its `event_id` was counted for
    /// this subject within `limits.dedup_window_ms`: true when counted now.
    async fn record(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        event: &UsageEvent,
        limits: UsageLimits,
    ) -> StoreResult<bool>;

    /// The totals of each bucket (`Period::buckets`) for one metric or all; zero totals are
    /// left out.
    async fn totals(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        metric: Option<&MetricName>,
        period: Period,
        buckets: &[String],
    ) -> StoreResult<Vec<Total>>;

    /// One page of the tenant's totals buckets, each `subject/period/bucket` (such as
    /// `user-1/day/2026-11-26`), for backups; as `CacheStore::inventory`.
    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage>;

    /// One bucket's totals (metric and amount, in metric order) and the milliseconds it has
    /// left, for backups; `None` when it holds none.
    async fn bucket(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        bucket: &Bucket,
    ) -> StoreResult<Option<(Vec<(String, u64)>, u64)>>;

    /// Sets one bucket's totals from a backup: each metric to `amount`, or with `at_least` to
    /// the higher of both; the bucket lives at least `ttl_ms` more. Returns how many totals
    /// changed.
    async fn restore_totals(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        bucket: &Bucket,
        totals: &[(String, u64)],
        ttl_ms: u64,
        at_least: bool,
    ) -> StoreResult<u64>;
}

/// Budgets (`domain::usage`): reservations held atomically against a limit per period.
/// `now_us` is the caller's clock for the period buckets; reservations expire by the backend's.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    async fn set(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        rule: BudgetRule,
        now_us: u64,
    ) -> StoreResult<BudgetStatus>;

    async fn get(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        now_us: u64,
    ) -> StoreResult<Option<BudgetStatus>>;

    /// Removes the budget (reservations stay, to be committed or released): whether one was.
    async fn delete(&self, tenant: &Tenant, budget: &BudgetId) -> StoreResult<bool>;

    /// Holds `amount` for `ttl_ms` when it fits the budget (always, without one).
    async fn reserve(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        id: &ReservationId,
        amount: u64,
        ttl_ms: u64,
        now_us: u64,
    ) -> StoreResult<Reserved>;

    /// Records `amount` (at most what was reserved) as usage, in the same step that ends the
    /// reservation; the rest returns to the budget.
    async fn commit(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        id: &ReservationId,
        amount: u64,
        limits: UsageLimits,
        now_us: u64,
    ) -> StoreResult<Committed>;

    /// Ends the reservation, returning all of it: whether it was live.
    async fn release(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        id: &ReservationId,
    ) -> StoreResult<bool>;

    /// One page of the tenant's budgets, each `subject/metric`, for backups; as
    /// `CacheStore::inventory`.
    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage>;
}

/// Every capability's store, as the HTTP layer sees it: failover is already inside.
#[derive(Clone)]
pub struct Stores {
    pub cache: Arc<dyn CacheStore>,
    pub pending_actions: Arc<dyn PendingActionStore>,
    pub agent_states: Arc<dyn AgentStateStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub rate_limits: Arc<dyn RateLimitStore>,
    pub locks: Arc<dyn LockStore>,
    pub queues: Arc<dyn QueueStore>,
    pub topics: Arc<dyn TopicStore>,
    pub usage: Arc<dyn UsageStore>,
    pub budgets: Arc<dyn BudgetStore>,
}
