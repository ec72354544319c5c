//! The pending action port: the trait its adapters implement and the outcomes of its calls.

use time::OffsetDateTime;

use crate::{
    capabilities::pending_action::model::{
        ActionToken, Cancel, Confirm, IdempotencyKey, PendingAction, TombstoneLife,
    },
    domain::{ids::Tenant, ttl::Ttl},
};

use crate::store::handback::{Item, Note};
use crate::store::{IdPage, StoreError, StoreResult};

crate::store::port::port! {
    /// Pending actions: confirmation tokens that are confirmed by exactly one caller. A token is
    /// one record per tenant; once confirmed or cancelled it becomes a tombstone that still
    /// answers (with its status) until its `TombstoneLife` ends, then it is absent like an
    /// expired or unknown token. Another tenant's token is absent for every method.
    pub trait PendingActionStore {
        /// Stores the action under its token for `ttl`, in its status: `pending` for a new token,
        /// confirmed or cancelled for one handed over from the other backend (in one step, so no
        /// confirm can come between). Returns false, writing nothing, when the token already
        /// exists (a record is never overwritten).
        #[repeat(false)]
        #[note(|created: &bool| *created => [Note::Item(Item::Action(tenant.clone(), action.token.clone()))])]
        async fn create(&self, tenant: &Tenant, action: &PendingAction, ttl: Ttl) -> StoreResult<bool>;

        /// The action with its current status while it or its tombstone lives, else `None`.
        #[repeat(true)]
        async fn get(&self, tenant: &Tenant, token: &ActionToken)
        -> StoreResult<Option<PendingAction>>;

        /// Confirms a pending action in one atomic step: of any number of concurrent confirms of
        /// one token, across every instance sharing the backend, exactly one sees `Confirmed`.
        /// The winner's `idempotency_key` is kept in the tombstone (which lives for `tombstone`),
        /// and a later confirm carrying the same key sees `Replayed` with the same action.
        #[repeat(false)]
        #[note(|out: &Confirm| matches!(out, Confirm::Confirmed(_)) => [Note::Item(Item::Action(tenant.clone(), token.clone()))])]
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
        #[repeat(true)]
        #[note(|out: &Cancel| matches!(out, Cancel::Cancelled) => [Note::Item(Item::Action(tenant.clone(), token.clone()))])]
        async fn cancel(
            &self,
            tenant: &Tenant,
            token: &ActionToken,
            at: OffsetDateTime,
            tombstone: TombstoneLife,
        ) -> StoreResult<Cancel>;

        /// One page of the tenant's tokens (tombstones included), for backups; as
        /// `CacheStore::inventory`.
        #[repeat(true)]
        async fn inventory(
            &self,
            tenant: &Tenant,
            cursor: Option<&str>,
            limit: usize,
        ) -> StoreResult<IdPage>;
    }
    also {

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
}
