//! The Redis backend: each capability's store implemented with the natural Redis structure,
//! one round trip per call (a command, a pipeline or a script; `docs/redis.md` lists the
//! exceptions: compare-and-set and context patches read first, pattern deletes scan in batches).
//! `pool` owns connections, deadlines and the sorting of errors, `keys` every key name,
//! `script` the named Lua scripts.

pub mod connection;
pub mod keys;
pub mod listen;
pub mod pool;
pub mod script;

use std::sync::Arc;

pub use self::pool::RedisPool;
use super::Stores;
use crate::capabilities::{
    agent_state::redis as agent_state, cache::near, cache::redis as cache, lock::redis as lock,
    pending_action::redis as pending_action, queue::redis as queue,
    rate_limit::redis as rate_limit, session::redis as session, topic::redis as topic,
    usage::redis as usage,
};

/// The stores of `stores`, with the near cache of `cache.near` in front of the cache.
pub fn stores_with(pool: &RedisPool, settings: &crate::config::Settings) -> Stores {
    let mut stores = stores(pool);
    if let Some(near) = near::NearCache::start(pool, &settings.cache.near) {
        let keys = pool.keys().clone();
        stores.cache = Arc::new(near::NearCached::new(stores.cache, near, keys));
    }
    stores
}

/// One store per capability, all on `pool`.
pub fn stores(pool: &RedisPool) -> Stores {
    let usage = Arc::new(usage::RedisUsage::new(pool.clone()));
    Stores {
        cache: Arc::new(cache::RedisCache::new(pool.clone())),
        pending_actions: Arc::new(pending_action::RedisPendingActions::new(pool.clone())),
        agent_states: Arc::new(agent_state::RedisAgentStates::new(pool.clone())),
        sessions: Arc::new(session::RedisSessions::new(pool.clone())),
        rate_limits: Arc::new(rate_limit::RedisRateLimits::new(pool.clone())),
        locks: Arc::new(lock::RedisLocks::new(pool.clone())),
        queues: Arc::new(queue::RedisQueues::new(pool.clone())),
        topics: Arc::new(topic::RedisTopics::new(pool.clone())),
        usage: usage.clone(),
        budgets: usage,
    }
}

/// Escapes `SCAN MATCH`'s glob characters in a literal key prefix.
fn glob_literal(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One `SCAN` page of the keys that start with `prefix`, mapped to ids by `id` (keys it maps to
/// `None` are skipped), for inventories. `cursor` is the previous page's `next`.
pub(crate) async fn scan_ids(
    redis: &RedisPool,
    prefix: &str,
    cursor: Option<&str>,
    count: usize,
    id: impl Fn(&str) -> Option<String>,
) -> super::StoreResult<super::IdPage> {
    let pattern = format!("{}*", glob_literal(prefix));
    let (next, keys) = redis.scan_all(cursor, &pattern, count).await?;
    Ok(super::IdPage {
        ids: keys
            .iter()
            .filter_map(|k| k.strip_prefix(prefix).and_then(&id))
            .collect(),
        next,
    })
}
