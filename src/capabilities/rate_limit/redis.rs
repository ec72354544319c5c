//! Rate limits on Redis: per key one hash with every rule's state and, per sliding-window
//! rule, a sorted set logging (time, cost) (`keys::rate_limit`). A check is one `EVALSHA` of
//! `rate_limit_check.lua`, which takes the time from Redis's `TIME`, so instances with skewed
//! clocks agree; a reset is one of `rate_limit_reset.lua`. Every key expires once its rules
//! would remember nothing: no cleanup job.

use async_trait::async_trait;

use crate::store::redis::{RedisPool, script::Script};
use crate::{
    capabilities::rate_limit::{
        model::{Algorithm, Check, Decision, Mode, RateLimitKey, RuleOutcome},
        port::RateLimitStore,
    },
    domain::ids::Tenant,
    store::{StoreError, StoreResult},
};

pub struct RedisRateLimits {
    redis: RedisPool,
    check: Script,
    reset: Script,
}

impl RedisRateLimits {
    pub fn new(redis: RedisPool) -> Self {
        Self {
            redis,
            check: Script::new(
                "rate_limit_check",
                include_str!("scripts/rate_limit_check.lua"),
            ),
            reset: Script::new(
                "rate_limit_reset",
                include_str!("scripts/rate_limit_reset.lua"),
            ),
        }
    }
}

fn kind(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::SlidingWindow => "sw",
        Algorithm::FixedWindow => "fw",
        Algorithm::TokenBucket => "tb",
    }
}

/// A reply field that must be 0 or more.
fn micros(value: i64) -> StoreResult<u64> {
    u64::try_from(value)
        .map_err(|_| StoreError::Internal(format!("rate limit: negative figure {value}")))
}

#[async_trait]
impl RateLimitStore for RedisRateLimits {
    async fn check(
        &self,
        tenant: &Tenant,
        key: &RateLimitKey,
        check: &Check,
    ) -> StoreResult<Decision> {
        let keys = self.redis.keys();
        let mut call = self.check.key(keys.rate_limit(tenant, key));
        call.arg(match check.mode {
            Mode::Consume => "consume",
            Mode::Peek => "peek",
        })
        .arg(check.cost);
        for rule in &check.rules {
            let id = rule.state_id();
            call.key(keys.rate_limit_log(tenant, key, &id))
                .arg(kind(rule.algorithm))
                .arg(id)
                .arg(rule.limit)
                .arg(rule.window_us())
                .arg(rule.burst)
                .arg(rule.interval_us());
        }
        let reply: Vec<i64> = self.redis.script(&call).await?;
        if reply.len() != 1 + 4 * check.rules.len() {
            return Err(StoreError::Internal(format!(
                "rate limit: {} figures for {} rules",
                reply.len(),
                check.rules.len()
            )));
        }
        let rules = reply[1..]
            .chunks_exact(4)
            .map(|r| {
                Ok(RuleOutcome {
                    allowed: r[0] == 1,
                    remaining: micros(r[1])?,
                    reset_after_us: micros(r[2])?,
                    retry_after_us: (r[3] >= 0).then_some(r[3] as u64),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Decision {
            allowed: reply[0] == 1,
            rules,
            degraded: false,
        })
    }

    async fn reset(&self, tenant: &Tenant, key: &RateLimitKey) -> StoreResult<()> {
        let key = self.redis.keys().rate_limit(tenant, key);
        let _: i64 = self.redis.script(&self.reset.key(key)).await?;
        Ok(())
    }
}

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
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
}
