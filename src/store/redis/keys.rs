//! Every Redis key is built here: `{prefix}:{tenant}:{capability}:{id}`.
//!
//! Tenant names hold no `:` and ids hold no `{`, `}` or `/`, so no two (tenant, capability, id)
//! triples can produce the same key. Where a capability needs several keys in one script, they
//! share a hash tag (`{...}`) so the same code can run on Redis Cluster.

use crate::domain::{
    agent_state::ThreadId,
    ids::{CacheKey, Namespace, Tenant},
    lock::LockName,
    pending_action::ActionToken,
    queue::QueueName,
    rate_limit::RateLimitKey,
    session::{SessionId, UserId},
    topic::TopicName,
    usage::Subject,
};

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Arc<str>,
}

use std::sync::Arc;

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// A cache value: `{prefix}:{tenant}:cache:{<namespace>}:{key}`. The braces are both the
    /// hash tag (a namespace lives in one slot, so batches are one call) and the namespace's
    /// end, so `ns` is never a prefix of `ns2`'s keys.
    pub fn cache(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> String {
        format!("{}{key}", self.cache_namespace(tenant, ns))
    }

    /// The literal start of every key of one namespace.
    pub fn cache_namespace(&self, tenant: &Tenant, ns: &Namespace) -> String {
        format!("{}{{{ns}}}:", self.cache_tenant(tenant))
    }

    /// The literal start of every cache key of a tenant.
    pub fn cache_tenant(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:cache:", self.prefix)
    }

    /// A pending action's hash: `{prefix}:{tenant}:pending_action:{token}`. Its scripts touch
    /// this one key only, so it needs no hash tag.
    pub fn pending_action(&self, tenant: &Tenant, token: &ActionToken) -> String {
        format!("{}{token}", self.pending_actions(tenant))
    }

    /// The literal start of every pending-action key of a tenant.
    pub fn pending_actions(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:pending_action:", self.prefix)
    }

    /// The literal start of every agent-state key of a tenant:
    /// `{prefix}:{tenant}:agent_state:{<tenant>}:`. The hash tag is the tenant, not the thread:
    /// the tenant's index sorted sets must be written in the same script as each thread's keys
    /// for the index never to disagree with the threads, and on Cluster one script may only
    /// touch one slot. The cost is that one tenant's agent states live on one Cluster shard.
    pub fn agent_states(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:agent_state:{{{tenant}}}:", self.prefix)
    }

    /// The hash of one thread's record (context, metadata, timestamps, version, TTL).
    pub fn agent_state(&self, tenant: &Tenant, thread: &ThreadId) -> String {
        format!("{}{}", self.agent_state_prefix(tenant), thread)
    }

    /// The start of every state hash of a tenant; scripts append a thread id.
    pub fn agent_state_prefix(&self, tenant: &Tenant) -> String {
        format!("{}state:", self.agent_states(tenant))
    }

    /// The list of one thread's messages, each a JSON string, oldest first.
    pub fn agent_state_messages(&self, tenant: &Tenant, thread: &ThreadId) -> String {
        format!("{}{}", self.agent_state_messages_prefix(tenant), thread)
    }

    /// The start of every message list of a tenant; scripts append a thread id.
    pub fn agent_state_messages_prefix(&self, tenant: &Tenant) -> String {
        format!("{}messages:", self.agent_states(tenant))
    }

    /// The tenant's indexes, in the order the scripts take them: `recent` (score: updated_at
    /// ms), `ids` (score 0, paged by lex) and `expiries` (score: expires_at ms).
    pub fn agent_state_indexes(&self, tenant: &Tenant) -> [String; 3] {
        let base = self.agent_states(tenant);
        ["recent", "ids", "expiries"].map(|name| format!("{base}index:{name}"))
    }

    /// A rate-limit key's hash: `{prefix}:{tenant}:rate_limit:{<tenant>/<key>}`. The hash tag is
    /// the key itself (with its tenant), so keys spread over a Cluster's slots; its sliding
    /// logs append `:<state id>` and share the tag, so one script updates them all.
    pub fn rate_limit(&self, tenant: &Tenant, key: &RateLimitKey) -> String {
        format!("{}:{tenant}:rate_limit:{{{tenant}/{key}}}", self.prefix)
    }

    /// The sliding log of one rule of a rate-limit key.
    pub fn rate_limit_log(&self, tenant: &Tenant, key: &RateLimitKey, state_id: &str) -> String {
        format!("{}:{state_id}", self.rate_limit(tenant, key))
    }

    /// A lock's hash: `{prefix}:{tenant}:lock:{<tenant>/<name>}` (holder, fencing counter,
    /// highest checked token), tagged by the lock itself.
    pub fn lock(&self, tenant: &Tenant, name: &LockName) -> String {
        format!("{}{{{tenant}/{name}}}", self.locks(tenant))
    }

    /// The literal start of every lock key of a tenant.
    pub fn locks(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:lock:", self.prefix)
    }

    /// The channel every release is published on, as `<tenant>/<name>`: each instance
    /// subscribes once and wakes its own waiters.
    pub fn lock_released_channel(&self) -> String {
        format!("{}:lock_released", self.prefix)
    }

    /// A queue's keys, in the order its scripts take them: its base (jobs are
    /// `<base>:job:<id>`, dedup keys `<base>:dedup:<key>`), then the sorted sets ready,
    /// delayed, leased, dead and done, and `meta`. All share the queue's hash tag
    /// `{<tenant>/<queue>}`, so one script updates them together and queues spread over a
    /// Cluster's slots.
    pub fn queue(&self, tenant: &Tenant, queue: &QueueName) -> [String; 7] {
        let base = format!("{}{{{tenant}/{queue}}}", self.queues(tenant));
        [
            "", ":ready", ":delayed", ":leased", ":dead", ":done", ":meta",
        ]
        .map(|suffix| format!("{base}{suffix}"))
    }

    /// The literal start of every queue key of a tenant.
    pub fn queues(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:queue:", self.prefix)
    }

    /// A topic's stream: `{prefix}:{tenant}:topic:{<tenant>/<topic>}`.
    pub fn topic(&self, tenant: &Tenant, topic: &TopicName) -> String {
        format!("{}:{tenant}:topic:{{{tenant}/{topic}}}", self.prefix)
    }

    /// The base of a subject's usage and budget keys:
    /// `{prefix}:{tenant}:usage:{<tenant>/<subject>}` (see `redis::usage`).
    pub fn usage(&self, tenant: &Tenant, subject: &Subject) -> String {
        format!("{}{{{tenant}/{subject}}}", self.usages(tenant))
    }

    /// The literal start of every usage and budget key of a tenant.
    pub fn usages(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:usage:", self.prefix)
    }

    /// The channel every enqueue is published on, as `<tenant>/<queue>`.
    pub fn queue_ready_channel(&self) -> String {
        format!("{}:queue_ready", self.prefix)
    }

    /// A session hash: `{prefix}:{tenant}:session:{<tenant>}:<session_id>`.
    ///
    /// Every session key of a tenant carries the tenant as its hash tag, with the user indexes
    /// (`session_user`). Reads and writes by session id do not know the user, yet delete and
    /// rotate must update the user's index in the same atomic step, and list / sign-out
    /// everywhere must reach sessions named only inside the index: those scripts build the
    /// other key names from `session_prefix` / `session_user_prefix`, which is safe on Redis
    /// Cluster only because all of them hash to the same slot. The trade-off: one tenant's
    /// sessions all live on one Cluster node (a very large tenant concentrates its session
    /// load there), in exchange for one round trip and one atomic script per operation. The
    /// alternative, tagging by user, would need a second key (session id → user) and a second
    /// round trip on every read by id.
    pub fn session(&self, tenant: &Tenant, id: &SessionId) -> String {
        format!("{}{id}", self.session_prefix(tenant))
    }

    /// The literal start of every session hash of a tenant.
    pub fn session_prefix(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:session:{{{tenant}}}:", self.prefix)
    }

    /// A user's index, the set of their session ids:
    /// `{prefix}:{tenant}:session:{<tenant>}:user:<user_id>`. Session ids are UUIDs, so no
    /// session hash can start with `user:`.
    pub fn session_user(&self, tenant: &Tenant, user: &UserId) -> String {
        format!("{}{user}", self.session_user_prefix(tenant))
    }

    /// The literal start of every user index of a tenant.
    pub fn session_user_prefix(&self, tenant: &Tenant) -> String {
        format!("{}user:", self.session_prefix(tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_are_tagged_and_unambiguous() {
        let keys = Keys::new("sk");
        let t = Tenant::new("acme");
        let k = |ns: &str, key: &str| {
            keys.cache(
                &t,
                &Namespace::parse(ns).unwrap(),
                &CacheKey::parse(key).unwrap(),
            )
        };
        assert_eq!(k("users", "42"), "sk:acme:cache:{users}:42");
        assert_ne!(k("a:b", "c"), k("a", "b:c"));
        assert!(
            !k("ns2", "x").starts_with(&keys.cache_namespace(&t, &Namespace::parse("ns").unwrap()))
        );
    }

    #[test]
    fn agent_state_keys_share_the_tenant_tag() {
        let keys = Keys::new("sk");
        let t = Tenant::new("acme");
        let id = ThreadId::parse("th:1").unwrap();
        assert_eq!(
            keys.agent_state(&t, &id),
            "sk:acme:agent_state:{acme}:state:th:1"
        );
        assert_eq!(
            keys.agent_state_messages(&t, &id),
            "sk:acme:agent_state:{acme}:messages:th:1"
        );
        assert_eq!(
            keys.agent_state_indexes(&t)[0],
            "sk:acme:agent_state:{acme}:index:recent"
        );
    }

    #[test]
    fn session_keys_share_the_tenant_tag() {
        let keys = Keys::new("sk");
        let t = Tenant::new("acme");
        let id = SessionId::parse("0e6c3d4a-1b2c-4d5e-8f90-123456789abc").unwrap();
        assert_eq!(
            keys.session(&t, &id),
            "sk:acme:session:{acme}:0e6c3d4a-1b2c-4d5e-8f90-123456789abc"
        );
        assert_eq!(
            keys.session_user(&t, &UserId::parse("u:1").unwrap()),
            "sk:acme:session:{acme}:user:u:1"
        );
    }
}
