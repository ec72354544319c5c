//! The ports: one trait per capability whose methods are that capability's atomic operations,
//! and `Stores`, the set of them a request handler sees.
//!
//! Adapters: `memory` (the embedded expiring map) and `redis`; `failover` wraps a pair of them
//! and decides, per call, which one serves it.

pub mod failover;
pub mod handback;
pub mod memory;
pub mod port;
pub mod redis;
pub mod signals;

use std::sync::Arc;

use crate::capabilities::{
    agent_state::port::AgentStateStore,
    cache::port::CacheStore,
    lock::port::LockStore,
    pending_action::port::PendingActionStore,
    queue::port::QueueStore,
    rate_limit::port::RateLimitStore,
    session::port::SessionStore,
    topic::port::TopicStore,
    usage::port::{BudgetStore, UsageStore},
};

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

/// One page of an inventory: ids of one capability and tenant, for backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdPage {
    pub ids: Vec<String>,
    /// Where the next page starts; `None` when the listing is complete.
    pub next: Option<String>,
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

/// How often a waiter tries again although no signal woke it: a bound on what a missed
/// signal costs, not a poll loop (a signal wakes waiters at once, a known change at its time).
pub const WAIT_FALLBACK_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The wait loop of every capability whose callers wait (a lock's `wait_ms`, a queue's long
/// poll): registers on `signal` before each `attempt`, so a signal between the attempt and the
/// wait is never missed; returns the first outcome `settled` accepts, or the last one when
/// `wait` has passed. Between attempts it sleeps until the signal, the change `settled`
/// announces (µs from now), or `WAIT_FALLBACK_POLL`, whichever comes first: never a busy loop.
pub async fn wait_until<T, F>(
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
