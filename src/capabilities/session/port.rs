//! The session port: the trait its adapters implement and the outcomes of its calls.

use crate::{
    capabilities::session::model::{
        ListingPlace, Session, SessionChange, SessionId, SessionPage, SessionRules, UserId,
    },
    domain::ids::Tenant,
};

use crate::store::handback::{Bulk, Note};
use crate::store::{IdPage, StoreResult};

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

crate::store::port::port! {
    /// User sessions. A session that has expired or been deleted is absent for every method, and
    /// no method ever writes one back: each write checks that the session is live in the same
    /// atomic step as the write, so a write that races a delete either lands before it (and is
    /// deleted with the session) or finds nothing.
    ///
    /// Every session is also in its user's index, in the same atomic step as its creation, rotation
    /// and deletion, so "sign out everywhere" cannot miss one.
    pub trait SessionStore {
        /// Stores a new session (its id is fresh, so nothing is overwritten) and indexes it under
        /// its user, atomically. `rules` bounds how long the index must be kept.
        #[repeat(false)]
        #[note(|_| true => [Note::session(tenant, &session.id)])]
        async fn create(
            &self,
            tenant: &Tenant,
            session: &Session,
            rules: SessionRules,
        ) -> StoreResult<()>;

        /// The live session, or `None`. With `rules.rolling` the read also renews its expiry
        /// (`Session::touch`) in the same atomic step, so a renewal can never revive it.
        #[repeat(true)]
        async fn get(
            &self,
            tenant: &Tenant,
            id: &SessionId,
            rules: SessionRules,
        ) -> StoreResult<Option<Session>>;

        /// Applies `change` (`Session::apply`) when the session is live, at the `if_match` version
        /// if one is given, and the result within `rules.max_bytes`; checks and write are one
        /// atomic step. Checked in that order: missing, stale, too large.
        #[repeat(false)]
        #[note(|out: &SessionUpdate| matches!(out, SessionUpdate::Updated(_)) => [Note::session(tenant, id)])]
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
        #[repeat(false)]
        #[note(|out: &Option<Session>| out.is_some() => [Note::session(tenant, id), Note::session(tenant, new_id)])]
        async fn rotate(
            &self,
            tenant: &Tenant,
            id: &SessionId,
            new_id: &SessionId,
            rules: SessionRules,
        ) -> StoreResult<Option<Session>>;

        /// Removes the session and its index entry; returns whether a live one existed.
        #[repeat(false)]
        #[note(|_| true => [Note::session(tenant, id)])]
        async fn delete(&self, tenant: &Tenant, id: &SessionId) -> StoreResult<bool>;

        /// One page of the user's live sessions in listing order (oldest first, then by id):
        /// at most `limit`, strictly after `after`. Index entries of sessions that have expired are
        /// dropped on the way; they are never listed. The cost of a page grows with `limit` and
        /// with the expired entries it meets, not with how many sessions the user has.
        #[repeat(true)]
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
        #[repeat(false)]
        #[note(|_| true => [Note::Bulk(Bulk::UserSessions(tenant.clone(), user.clone()))])]
        async fn delete_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<u64>;

        /// Drops the index entries of the tenant's expired sessions from every user's index (a
        /// listing drops a user's own as it goes); returns how many.
        #[repeat(true)]
        async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64>;

        /// One page of the tenant's session ids, for backups; as `CacheStore::inventory`.
        #[repeat(true)]
        async fn inventory(
            &self,
            tenant: &Tenant,
            cursor: Option<&str>,
            limit: usize,
        ) -> StoreResult<IdPage>;
    }
}
