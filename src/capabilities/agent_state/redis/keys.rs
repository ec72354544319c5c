//! The agent states' keys: a record and a message list per thread, and the tenant's indexes
//! (recent, ids, expiry), sharded on a Cluster.

use super::*;

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
    /// A thread's shard: its id's CRC-16 (as Redis Cluster hashes keys), modulo `shards`.
    pub fn thread_shard(&self, thread: &ThreadId) -> u16 {
        crc16::State::<crc16::XMODEM>::calculate(thread.as_str().as_bytes()) % self.shards
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
}
