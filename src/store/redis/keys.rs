//! Every Redis key is built here: `{prefix}:{tenant}:{capability}:{id}`.
//!
//! Tenant names hold no `:` and ids hold no `{`, `}` or `/`, so no two (tenant, capability, id)
//! triples can produce the same key. Where a capability needs several keys in one script, they
//! share a hash tag (`{...}`) so the same code can run on Redis Cluster.

use crate::{
    capabilities::{
        agent_state::model::ThreadId,
        lock::model::LockName,
        pending_action::model::ActionToken,
        queue::model::QueueName,
        rate_limit::model::RateLimitKey,
        session::model::{SessionId, UserId},
        topic::model::TopicName,
        usage::model::Subject,
    },
    domain::ids::{CacheKey, Namespace, Tenant},
};

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Arc<str>,
    /// Shards of a tenant's agent states and sessions: `CLUSTER_SHARDS` on a Cluster, 1 on
    /// one server (see `CLUSTER_SHARDS`).
    shards: u16,
}

use std::sync::Arc;

impl Keys {
    /// The keys of one server (or a Sentinel-managed master): one shard per tenant.
    pub fn new(prefix: &str) -> Self {
        Self::sharded(prefix, 1)
    }

    /// The keys of a Redis Cluster: `CLUSTER_SHARDS` shards per tenant.
    pub fn for_cluster(prefix: &str) -> Self {
        Self::sharded(prefix, CLUSTER_SHARDS)
    }

    fn sharded(prefix: &str, shards: u16) -> Self {
        Self {
            prefix: prefix.into(),
            shards,
        }
    }

    /// How many shards a tenant's agent states and sessions are spread over.
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// A thread's shard: its id's CRC-16 (as Redis Cluster hashes keys), modulo `shards`.
    pub fn thread_shard(&self, thread: &ThreadId) -> u16 {
        crc16::State::<crc16::XMODEM>::calculate(thread.as_str().as_bytes()) % self.shards
    }

    /// A session's shard: its id's first hex digit (uniform: the ids are random UUIDs), which
    /// a rotation keeps (`SessionId::random_beside`), modulo `shards`.
    pub fn session_shard(&self, id: &SessionId) -> u16 {
        id.group() % self.shards
    }

    /// The hash tag of one shard of `tenant`: the tenant itself when there is one shard (the
    /// layout of earlier versions), else `shard_tag`.
    fn tag(&self, tenant: &Tenant, shard: u16) -> String {
        match self.shards {
            1 => tenant.to_string(),
            shards => shard_tag(tenant, shard, shards),
        }
    }

    /// A cache value: `{prefix}:{tenant}:cache:{<namespace>}:{key}`. The braces are both the
    /// hash tag (a namespace lives in one slot, so batches are one call) and the namespace's
    /// end, so `ns` is never a prefix of `ns2`'s keys.
    pub fn cache(&self, tenant: &Tenant, ns: &Namespace, key: &CacheKey) -> String {
        // `cache_namespace` then the key, in one allocation (`concat` sizes it first): this runs
        // per request.
        let (prefix, tenant, ns, key) = (&*self.prefix, tenant.as_str(), ns.as_str(), key.as_str());
        [prefix, ":", tenant, ":cache:{", ns, "}:", key].concat()
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

    /// The literal start of every agent-state key of a tenant.
    pub fn agent_states(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:agent_state:", self.prefix)
    }

    /// The literal start of one shard's agent-state keys:
    /// `{prefix}:{tenant}:agent_state:{<shard tag>}:`. A thread's keys and the indexes of its
    /// shard (`thread_shard`) share the shard's hash tag, so one script writes a thread and
    /// indexes it, and on a Cluster a tenant's threads spread over `CLUSTER_SHARDS` tags (see
    /// `shard_tag`).
    pub fn agent_state_shard(&self, tenant: &Tenant, shard: u16) -> String {
        format!(
            "{}{{{}}}:",
            self.agent_states(tenant),
            self.tag(tenant, shard)
        )
    }

    /// The hash of one thread's record (context, metadata, timestamps, version, TTL).
    pub fn agent_state(&self, tenant: &Tenant, thread: &ThreadId) -> String {
        let shard = self.thread_shard(thread);
        format!("{}{}", self.agent_state_prefix(tenant, shard), thread)
    }

    /// The start of every state hash of a shard; scripts append a thread id.
    pub fn agent_state_prefix(&self, tenant: &Tenant, shard: u16) -> String {
        format!("{}state:", self.agent_state_shard(tenant, shard))
    }

    /// The list of one thread's messages, each a JSON string, oldest first.
    pub fn agent_state_messages(&self, tenant: &Tenant, thread: &ThreadId) -> String {
        let shard = self.thread_shard(thread);
        format!(
            "{}{}",
            self.agent_state_messages_prefix(tenant, shard),
            thread
        )
    }

    /// The start of every message list of a shard; scripts append a thread id.
    pub fn agent_state_messages_prefix(&self, tenant: &Tenant, shard: u16) -> String {
        format!("{}messages:", self.agent_state_shard(tenant, shard))
    }

    /// A shard's indexes, in the order the scripts take them: `recent` (score: updated_at
    /// ms), `ids` (score 0, paged by lex) and `expiries` (score: expires_at ms). Listings
    /// merge the shards' answers.
    pub fn agent_state_indexes(&self, tenant: &Tenant, shard: u16) -> [String; 3] {
        let base = self.agent_state_shard(tenant, shard);
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

    /// The literal start of every session key of a tenant.
    pub fn sessions(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:session:", self.prefix)
    }

    /// A session hash: `{prefix}:{tenant}:session:{<shard tag>}:<session_id>`, in the shard
    /// of its id (`session_shard`).
    ///
    /// Reads and writes by session id do not know the user, yet delete and rotate must update
    /// the user's index in the same atomic step: so each shard keeps its own index per user
    /// (`session_user`), under the shard's hash tag, and those scripts build the index's name
    /// from `session_user_prefix`. Listing a user's sessions or signing them out everywhere
    /// runs one script per shard (each atomic for its shard) and merges. A rotated session's
    /// new id is drawn in the old one's shard (`SessionId::random_beside`).
    pub fn session(&self, tenant: &Tenant, id: &SessionId) -> String {
        format!(
            "{}{id}",
            self.session_prefix(tenant, self.session_shard(id))
        )
    }

    /// The literal start of every session hash of a shard.
    pub fn session_prefix(&self, tenant: &Tenant, shard: u16) -> String {
        format!("{}{{{}}}:", self.sessions(tenant), self.tag(tenant, shard))
    }

    /// A user's index in one shard, a sorted set of their sessions there in listing order
    /// (`scripts/session_index.lua`):
    /// `{prefix}:{tenant}:session:{<shard tag>}:user:<user_id>`. Session ids are UUIDs, so no
    /// session hash can start with `user:`.
    pub fn session_user(&self, tenant: &Tenant, shard: u16, user: &UserId) -> String {
        format!("{}{user}", self.session_user_prefix(tenant, shard))
    }

    /// The literal start of every user index of a shard.
    pub fn session_user_prefix(&self, tenant: &Tenant, shard: u16) -> String {
        format!("{}user:", self.session_prefix(tenant, shard))
    }
}

/// How many hash tags one tenant's agent states, and its sessions, are spread over on a Redis
/// Cluster. A tenant is usually the whole deployment, so one tag per tenant would put all of
/// them on one Cluster shard. Sixteen spreads them over up to sixteen masters while a listing
/// merges sixteen answers (sixteen calls sent at once). On one server there is nothing to
/// spread, and sixteen shards cut the throughput of a recent-threads listing by about ten
/// times (measured: README), so there it is 1: the layout of earlier versions. Changing it
/// moves keys.
pub const CLUSTER_SHARDS: u16 = 16;

// A rotation keeps the id's group, so it stays in its shard only if the shards split the 16
// groups evenly.
const _: () = assert!(16 % CLUSTER_SHARDS == 0);

/// Redis Cluster's slot of a hash tag.
fn slot(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % 16384
}

/// The hash tag of one of `shards` shards: `<tenant>/<shard>.<n>` with the smallest `n` whose
/// slot lies in the shard's `1/shards` of the slot space. So a tenant's shards sit at evenly
/// spaced slots, and a Cluster whose masters own equal contiguous slot ranges (what
/// `redis-cli --cluster create` makes) holds `shards / masters` of them each, give or take
/// one, whatever the tenant's name. About `shards` CRC-16s of a few bytes: cheaper than a map
/// lookup's lock.
fn shard_tag(tenant: &Tenant, shard: u16, shards: u16) -> String {
    let width = 16384 / shards;
    let wanted = shard * width..(shard + 1) * width;
    (0..1_000_000u32)
        .map(|n| format!("{tenant}/{shard}.{n}"))
        .find(|tag| wanted.contains(&slot(tag)))
        .unwrap_or_else(|| format!("{tenant}/{shard}"))
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
        let users = keys.cache_namespace(&t, &Namespace::parse("users").unwrap());
        assert_eq!(
            k("users", "42"),
            format!("{users}42"),
            "a key is its namespace's prefix + key"
        );
        assert_ne!(k("a:b", "c"), k("a", "b:c"));
        assert!(
            !k("ns2", "x").starts_with(&keys.cache_namespace(&t, &Namespace::parse("ns").unwrap()))
        );
    }

    #[test]
    fn one_server_keeps_one_tag_per_tenant() {
        let keys = Keys::new("sk");
        let t = Tenant::new("acme");
        let id = ThreadId::parse("th:1").unwrap();
        assert_eq!(keys.thread_shard(&id), 0);
        assert_eq!(
            keys.agent_state(&t, &id),
            "sk:acme:agent_state:{acme}:state:th:1"
        );
        assert_eq!(
            keys.agent_state_indexes(&t, 0)[0],
            "sk:acme:agent_state:{acme}:index:recent"
        );
        let session = SessionId::parse("9e6c3d4a-1b2c-4d5e-8f90-123456789abc").unwrap();
        assert_eq!(
            keys.session(&t, &session),
            "sk:acme:session:{acme}:9e6c3d4a-1b2c-4d5e-8f90-123456789abc"
        );
    }

    #[test]
    fn on_a_cluster_a_threads_keys_share_its_shards_tag() {
        let keys = Keys::for_cluster("sk");
        let t = Tenant::new("acme");
        let id = ThreadId::parse("th:1").unwrap();
        let shard = keys.thread_shard(&id);
        let tag = shard_tag(&t, shard, CLUSTER_SHARDS);
        assert_eq!(
            keys.agent_state(&t, &id),
            format!("sk:acme:agent_state:{{{tag}}}:state:th:1")
        );
        assert_eq!(
            keys.agent_state_messages(&t, &id),
            format!("sk:acme:agent_state:{{{tag}}}:messages:th:1")
        );
        assert_eq!(
            keys.agent_state_indexes(&t, shard)[0],
            format!("sk:acme:agent_state:{{{tag}}}:index:recent")
        );
    }

    #[test]
    fn on_a_cluster_a_sessions_keys_share_its_shards_tag() {
        let keys = Keys::for_cluster("sk");
        let t = Tenant::new("acme");
        let id = SessionId::parse("0e6c3d4a-1b2c-4d5e-8f90-123456789abc").unwrap();
        assert_eq!(keys.session_shard(&id), 0);
        let tag = shard_tag(&t, 0, CLUSTER_SHARDS);
        assert_eq!(
            keys.session(&t, &id),
            format!("sk:acme:session:{{{tag}}}:0e6c3d4a-1b2c-4d5e-8f90-123456789abc")
        );
        assert_eq!(
            keys.session_user(&t, 0, &UserId::parse("u:1").unwrap()),
            format!("sk:acme:session:{{{tag}}}:user:u:1")
        );
    }

    #[test]
    fn shard_tags_sit_in_evenly_spaced_slot_ranges() {
        for tenant in ["default", "acme", "a-much-longer-tenant-name"] {
            let t = Tenant::new(tenant);
            for shard in 0..CLUSTER_SHARDS {
                let s = slot(&shard_tag(&t, shard, CLUSTER_SHARDS));
                assert_eq!(
                    s / (16384 / CLUSTER_SHARDS),
                    shard,
                    "{tenant} shard {shard}"
                );
            }
        }
    }
}
