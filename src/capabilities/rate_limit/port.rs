//! The rate limit port: the trait its adapters implement and the outcomes of its calls.

use async_trait::async_trait;

use crate::{
    capabilities::rate_limit::model::{Check, Decision, RateLimitKey},
    domain::ids::Tenant,
};

use crate::store::StoreResult;

/// Rate limits: decisions for a key against its rules (`rate_limit::model`). A key's state
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
