//! The agent state port: the trait its adapters implement and the outcomes of its calls.

use crate::{
    capabilities::agent_state::model::{
        AgentState, JsonObject, Message, NewAgentState, RecentState, ThreadId,
    },
    domain::{ids::Tenant, ttl::Ttl},
};

use crate::store::handback::Note;
use crate::store::{StoreResult, Versioned};

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

crate::store::port::port! {
    /// Agent states: one conversation per thread and tenant, with its messages, context and
    /// metadata. A thread and all its messages expire together; an expired thread is absent for
    /// every method, whether or not a purge has removed it yet, and is never listed. Every write
    /// that changes a thread (create, replace, append, context, relevance) raises `version` by one,
    /// sets `updated_at`, and renews the thread's TTL (`ttl_seconds`, kept with the thread), so a
    /// conversation in use does not expire.
    pub trait AgentStateStore {
        /// Creates the thread at version 1 unless a live one exists (`None`: nothing was written).
        /// An expired thread of the same id counts as absent and is replaced.
        #[repeat(false)]
        #[note(|out: &Option<AgentState>| out.is_some() => [Note::thread(tenant, &state.thread_id)])]
        async fn create(
            &self,
            tenant: &Tenant,
            state: &NewAgentState,
        ) -> StoreResult<Option<AgentState>>;

        /// The live thread, with all its messages or only the last `last_messages`, read in one
        /// atomic step so `version`, `message_count` and the messages always agree.
        #[repeat(true)]
        async fn get(
            &self,
            tenant: &Tenant,
            thread: &ThreadId,
            last_messages: Option<u64>,
        ) -> StoreResult<Option<AgentState>>;

        /// Whether a live thread exists, without reading it.
        #[repeat(true)]
        async fn exists(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool>;

        /// Replaces the whole thread (messages included) or creates it. With `if_version` it only
        /// writes when a live thread has exactly that version. A replace keeps `created_at` and
        /// continues the version count.
        #[repeat(false)]
        #[note(|out: &Versioned<Replaced>| matches!(out, Versioned::Done(_)) => [Note::thread(tenant, &state.thread_id)])]
        async fn replace(
            &self,
            tenant: &Tenant,
            state: &NewAgentState,
            if_version: Option<u64>,
        ) -> StoreResult<Versioned<Replaced>>;

        /// Removes the thread, its messages and its index entries; returns whether a live thread
        /// existed.
        #[repeat(false)]
        #[note(|_| true => [Note::thread(tenant, thread)])]
        async fn delete(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool>;

        /// Appends messages to a live thread in one atomic step: concurrent appends each land
        /// whole, none is lost, and each raises the version by one. Never creates a thread.
        #[repeat(false)]
        #[note(|out: &Versioned<Appended>| matches!(out, Versioned::Done(_)) => [Note::thread(tenant, thread)])]
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
        #[repeat(false)]
        #[note(|out: &Versioned<AgentState>| matches!(out, Versioned::Done(_)) => [Note::thread(tenant, thread)])]
        async fn patch_context(
            &self,
            tenant: &Tenant,
            thread: &ThreadId,
            patch: &JsonObject,
            if_version: Option<u64>,
        ) -> StoreResult<Versioned<AgentState>>;

        /// Sets `is_relevant` on a live thread; returns the new version.
        #[repeat(false)]
        #[note(|out: &Versioned<u64>| matches!(out, Versioned::Done(_)) => [Note::thread(tenant, thread)])]
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
        #[repeat(true)]
        async fn list(
            &self,
            tenant: &Tenant,
            after: Option<&ThreadId>,
            limit: usize,
        ) -> StoreResult<ThreadPage>;

        /// The `limit` most recently updated live threads, newest first. Index entries of expired
        /// or vanished threads are dropped on the way, so none is ever listed.
        #[repeat(true)]
        async fn recent(&self, tenant: &Tenant, limit: usize) -> StoreResult<Vec<RecentState>>;

        /// Whole seconds until the live thread expires (rounded up), `None` when there is none.
        #[repeat(true)]
        async fn ttl(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<Option<u64>>;

        /// Gives a live thread (all its keys) a new TTL from now, kept as its TTL for later
        /// writes; returns false when there is none. Not a change of the state: `version` stays.
        #[repeat(true)]
        #[note(|wrote: &bool| *wrote => [Note::thread(tenant, thread)])]
        async fn set_ttl(&self, tenant: &Tenant, thread: &ThreadId, ttl: Ttl) -> StoreResult<bool>;

        /// Drops the index entries of every expired thread of the tenant; returns how many.
        #[repeat(true)]
        async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64>;

        /// Writes a thread exactly as `state` holds it (version, times and messages), living until
        /// its `expires_at` and renewed by later writes with `ttl_seconds`: a restore from a
        /// backup. With `only_if_absent` a live thread of that id is left alone. Returns whether it
        /// wrote; a state whose `expires_at` has passed is never written.
        #[repeat(true)]
        #[note(|wrote: &bool| *wrote => ThreadId::parse(state.thread_id.as_str()).ok().map(|id| Note::thread(tenant, &id)))]
        async fn restore(
            &self,
            tenant: &Tenant,
            state: &AgentState,
            ttl_seconds: u64,
            only_if_absent: bool,
        ) -> StoreResult<bool>;
    }
}
