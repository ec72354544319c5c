//! Rate limits on the memory engine: one entry per `tenant/key` holding every rule's state,
//! run through `rate_limit::model::decide` under the engine's lock (so a check is atomic).
//! The entry expires when no rule would remember anything, and the engine's purge frees it:
//! a flood of distinct keys holds memory only for the longest window of their rules, and never
//! more than `memory.max_bytes` (past it, checks of new keys answer 507 while known keys go on).

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh},
    now_us,
};
use crate::{
    capabilities::rate_limit::{
        model::{Check, Decision, KeyState, RateLimitKey, RuleState, decide},
        port::RateLimitStore,
    },
    domain::ids::Tenant,
    store::StoreResult,
};

pub struct MemoryRateLimits {
    engine: Engine<Box<str>, KeyState>,
}

impl MemoryRateLimits {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            engine: backend.engine(),
        }
    }

    #[cfg(test)]
    fn keys_held(&self) -> usize {
        self.engine.len()
    }
}

fn entry_key(tenant: &Tenant, key: &RateLimitKey) -> Box<str> {
    format!("{tenant}/{key}").into()
}

impl Weigh for KeyState {
    fn weight(&self) -> usize {
        self.iter()
            .map(|(id, (rule, state))| {
                let log = match state {
                    RuleState::Sliding { log, .. } => log.capacity() * 16,
                    _ => 0,
                };
                id.len() + rule.name.as_ref().map_or(0, String::len) + 96 + log
            })
            .sum()
    }
}

#[async_trait]
impl RateLimitStore for MemoryRateLimits {
    async fn check(
        &self,
        tenant: &Tenant,
        key: &RateLimitKey,
        check: &Check,
    ) -> StoreResult<Decision> {
        if check.consumes() {
            self.engine.ensure_room()?;
        }
        let decision = self.engine.update(&entry_key(tenant, key), |slot| {
            let mut states = slot.take().map(|e| e.value).unwrap_or_default();
            let (decision, life_us) = decide(&mut states, check, now_us());
            if life_us > 0 {
                *slot = Some(Entry {
                    value: states,
                    expires_at: Some(Instant::now() + Duration::from_micros(life_us)),
                });
            }
            decision
        });
        Ok(decision)
    }

    async fn reset(&self, tenant: &Tenant, key: &RateLimitKey) -> StoreResult<()> {
        self.engine
            .update(&entry_key(tenant, key), |slot| *slot = None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::capabilities::rate_limit::memory::*;
    use crate::capabilities::rate_limit::model::{Algorithm, Mode, Rule};

    /// A flood of distinct keys holds memory only while their windows last: after the window
    /// the engine's purge has freed every entry, with no cleanup job.
    #[tokio::test]
    async fn a_flood_of_distinct_keys_is_forgotten_after_its_window() {
        let backend = MemoryBackend::default();
        let limits = MemoryRateLimits::new(&backend);
        let tenant = Tenant::new("t");
        let check = Check {
            rules: vec![Rule::new(None, Algorithm::SlidingWindow, 5, 200, None).unwrap()],
            cost: 1,
            mode: Mode::Consume,
        };
        for i in 0..20_000 {
            let key = RateLimitKey::parse(format!("ip-{i}")).unwrap();
            assert!(limits.check(&tenant, &key, &check).await.unwrap().allowed);
        }
        assert_eq!(limits.keys_held(), 20_000);
        assert!(backend.usage().0 > 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while limits.keys_held() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(limits.keys_held(), 0, "the purge freed every expired key");
        assert_eq!(backend.usage().0, 0);
    }

    /// Past `memory.max_bytes` a new key's check is refused (507) while a known key's peek
    /// still answers.
    #[tokio::test]
    async fn the_memory_bound_holds_under_a_flood() {
        let backend = MemoryBackend::new(64 * 1024);
        let limits = MemoryRateLimits::new(&backend);
        let tenant = Tenant::new("t");
        let check = Check {
            rules: vec![Rule::new(None, Algorithm::FixedWindow, 5, 60_000, None).unwrap()],
            cost: 1,
            mode: Mode::Consume,
        };
        let first = RateLimitKey::parse("first").unwrap();
        limits.check(&tenant, &first, &check).await.unwrap();
        let mut refused = 0;
        for i in 0..5_000 {
            let key = RateLimitKey::parse(format!("ip-{i}")).unwrap();
            if limits.check(&tenant, &key, &check).await.is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0, "the bound refused new keys");
        assert!(backend.usage().0 < 64 * 1024 + 1024);
        let peek = Check {
            mode: Mode::Peek,
            ..check
        };
        let known = limits.check(&tenant, &first, &peek).await.unwrap();
        assert_eq!(known.rules[0].remaining, 4);
    }
}
