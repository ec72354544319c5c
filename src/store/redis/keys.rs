//! The Redis key layout: `{prefix}:{tenant}:{capability}:{id}`. Each capability builds its
//! keys in an `impl Keys` block of its own `redis.rs`, from the prefix and the hash tags here.
//!
//! Tenant names hold no `:` and ids hold no `{`, `}` or `/`, so no two (tenant, capability, id)
//! triples can produce the same key. Where a capability needs several keys in one script, they
//! share a hash tag (`{...}`) so the same code can run on Redis Cluster.

use crate::domain::ids::Tenant;

#[derive(Debug, Clone)]
pub struct Keys {
    pub(crate) prefix: Arc<str>,
    /// Shards of a tenant's agent states and sessions: `CLUSTER_SHARDS` on a Cluster, 1 on
    /// one server (see `CLUSTER_SHARDS`).
    pub(crate) shards: u16,
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

    /// The hash tag of one shard of `tenant`: the tenant itself when there is one shard (the
    /// layout of earlier versions), else `shard_tag`.
    pub(crate) fn tag(&self, tenant: &Tenant, shard: u16) -> String {
        match self.shards {
            1 => tenant.to_string(),
            shards => shard_tag(tenant, shard, shards),
        }
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
    use crate::{
        capabilities::{
            agent_state::model::ThreadId,
            session::model::{SessionId, UserId},
        },
        domain::ids::{CacheKey, Namespace},
    };

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
