//! `Failover::build`: the stores of every capability, wired for the backend mode.

use super::*;
use crate::capabilities;

impl Failover {
    /// Builds the stores for `settings.backend.mode`, counting in `metrics`. In the Redis modes
    /// a probe task runs until the returned `Failover` is dropped. Must be called inside a
    /// tokio runtime.
    pub fn build(
        settings: &Settings,
        metrics: &mut Metrics,
    ) -> Result<(Stores, Arc<Failover>), String> {
        let policies = policies(settings);
        let bound = settings.memory.bound();
        if settings.backend.mode == BackendMode::Memory {
            metrics.register_memory();
            let memory = MemoryBackend::new(bound);
            let stores = memory.stores();
            let mut failover = Failover::new(BackendMode::Memory, None, Some(memory), policies);
            failover.metrics = metrics.backend.clone();
            return Ok((stores, Arc::new(failover)));
        }
        metrics.register_redis();
        let observed = settings.metrics.enabled.then(|| metrics.redis.clone());
        let pool = RedisPool::observed(&settings.redis, observed)?;
        let serves = |capability: Capability| {
            policies
                .iter()
                .any(|(c, policy)| *c == capability && policy.uses_memory())
        };
        let memory = policies
            .iter()
            .any(|(_, policy)| policy.uses_memory())
            .then(|| {
                metrics.register_memory();
                MemoryBackend::new(bound)
            });
        let mut failover = Failover::new(
            settings.backend.mode,
            Some(Arc::new(pool.clone())),
            memory.clone(),
            policies.clone(),
        );
        failover.pool = Some(pool.clone());
        failover.metrics = metrics.backend.clone();
        let redis = crate::store::redis::stores_with(&pool, settings);
        let fallback = |capability| memory.as_ref().filter(|_| serves(capability));
        // Usage (journalled) and local budgets share one memory store, so that a commit while
        // degraded counts in the same totals and the same journal.
        let journal = Arc::new(crate::capabilities::usage::memory::Journal::default());
        let memory_usage = fallback(capabilities::usage::USAGE.capability).map(|m| {
            failover.replay = Some(Replay {
                journal: journal.clone(),
                redis: redis.usage.clone(),
            });
            Arc::new(crate::capabilities::usage::memory::MemoryUsage::journalled(
                m,
                journal.clone(),
            ))
        });
        let memory_cache = fallback(capabilities::cache::DECLARATION.capability).map(|m| {
            Arc::new(crate::capabilities::cache::memory::MemoryCache::new(m)) as Arc<dyn CacheStore>
        });
        let memory_actions =
            fallback(capabilities::pending_action::DECLARATION.capability).map(|m| {
                Arc::new(crate::capabilities::pending_action::memory::MemoryPendingActions::new(m))
                    as Arc<dyn PendingActionStore>
            });
        let memory_states = fallback(capabilities::agent_state::DECLARATION.capability).map(|m| {
            Arc::new(crate::capabilities::agent_state::memory::MemoryAgentStates::new(m))
                as Arc<dyn AgentStateStore>
        });
        let memory_sessions = fallback(capabilities::session::DECLARATION.capability).map(|m| {
            Arc::new(crate::capabilities::session::memory::MemorySessions::new(m))
                as Arc<dyn SessionStore>
        });
        if settings.backend.mode == BackendMode::Auto && settings.backend.handback {
            fn pair<S: ?Sized>(memory: &Option<Arc<S>>, redis: &Arc<S>) -> Option<Pair<S>> {
                memory.as_ref().map(|memory| Pair {
                    memory: memory.clone(),
                    redis: redis.clone(),
                })
            }
            failover.handback = Some(HandBack {
                ledger: Default::default(),
                cache: pair(&memory_cache, &redis.cache),
                sessions: pair(&memory_sessions, &redis.sessions),
                agent_states: pair(&memory_states, &redis.agent_states),
                pending_actions: pair(&memory_actions, &redis.pending_actions),
                session_rules: settings.sessions.rules(),
                tombstone: TombstoneLife::from_setting(settings.pending_actions.tombstone_seconds),
                counts: failover.metrics.handback.clone(),
            });
        }
        let failover = Arc::new(failover);
        tokio::spawn(probe(
            Arc::downgrade(&failover),
            failover.recheck.clone(),
            Duration::from_millis(settings.backend.probe_interval_ms),
        ));
        let memory_budgets =
            fallback(capabilities::usage::BUDGETS.capability).map(|m| match &memory_usage {
                Some(usage) => usage.clone(),
                None => Arc::new(crate::capabilities::usage::memory::MemoryUsage::new(m)),
            });
        let memory_locks = fallback(capabilities::lock::DECLARATION.capability).map(|m| {
            Arc::new(crate::capabilities::lock::memory::MemoryLocks::new(m)) as Arc<dyn LockStore>
        });
        let memory_topics = fallback(capabilities::topic::DECLARATION.capability).map(|m| {
            Arc::new(crate::capabilities::topic::memory::MemoryTopics::new(m))
                as Arc<dyn TopicStore>
        });
        // Each capability's Redis store with its memory store (when it serves from memory).
        macro_rules! wrap {
            ($redis:expr, $memory:expr) => {
                Arc::new(FailoverStore::new(&failover, $redis, $memory))
            };
        }
        let stores = Stores {
            cache: wrap!(redis.cache, memory_cache),
            pending_actions: wrap!(redis.pending_actions, memory_actions),
            agent_states: wrap!(redis.agent_states, memory_states),
            sessions: wrap!(redis.sessions, memory_sessions),
            locks: wrap!(redis.locks, memory_locks),
            queues: wrap!(redis.queues, None),
            topics: wrap!(redis.topics, memory_topics),
            usage: wrap!(redis.usage, memory_usage.map(|m| m as _)),
            budgets: wrap!(redis.budgets, memory_budgets.map(|m| m as _)),
            rate_limits: Arc::new(RateLimitFailover {
                fail_open: policies.contains(&(
                    capabilities::rate_limit::DECLARATION.capability,
                    WhileDegraded::Allow,
                )),
                store: FailoverStore::new(
                    &failover,
                    redis.rate_limits,
                    fallback(capabilities::rate_limit::DECLARATION.capability).map(|m| {
                        Arc::new(crate::capabilities::rate_limit::memory::MemoryRateLimits::new(m))
                            as _
                    }),
                ),
            }),
        };
        Ok((stores, failover))
    }
}
