//! Usage and budgets on Redis. Every key of a subject shares the hash tag
//! `{<tenant>/<subject>}` (`keys::usage`), so one script reads and writes its totals, budget
//! and reservations together (and subjects spread over a Cluster's slots):
//!
//! - `<base>:day:<YYYY-MM-DD>` / `<base>:month:<YYYY-MM>`: hashes metric → total, kept for
//!   `usage.retention_days` (a month's a month longer);
//! - `<base>:event:<event_id>`: the dedup key, `SET NX PX` for `usage.dedup_window_seconds`;
//! - `<base>:budget`: hash metric → `limit:period`;
//! - `<base>:resv:<metric>`: hash reservation id → amount, with the live ones' sum in `~total`;
//!   `<base>:resv_exp:<metric>`: their expiries (sorted set). Every budget script first ends
//!   the expired ones, at Redis's `TIME`: O(expired), not O(live).

use async_trait::async_trait;

use crate::store::redis::{
    RedisPool,
    script::{Invocation, Script},
};
use crate::{
    capabilities::usage::{
        model::{
            Bucket, BudgetId, BudgetRule, BudgetStatus, Committed, MetricName, Period,
            ReservationId, Reserved, Subject, Total, UsageEvent, UsageLimits,
        },
        port::{BudgetStore, UsageStore},
    },
    domain::ids::Tenant,
    store::{IdPage, StoreError, StoreResult},
};

macro_rules! budget_script {
    ($name:literal) => {
        Script::new(
            concat!("budget_", $name),
            concat!(
                include_str!("scripts/budget_common.lua"),
                include_str!(concat!("scripts/budget_", $name, ".lua"))
            ),
        )
    };
}

pub struct RedisUsage {
    redis: RedisPool,
    record: Script,
    status: Script,
    set: Script,
    reserve: Script,
    commit: Script,
    release: Script,
    restore: Script,
}

/// How long a month's totals outlive a day's.
const MONTH_EXTRA_MS: u64 = 31 * 86_400_000;

impl RedisUsage {
    pub fn new(redis: RedisPool) -> Self {
        Self {
            redis,
            record: Script::new(
                "usage_record",
                concat!(
                    include_str!("scripts/budget_common.lua"),
                    include_str!("scripts/usage_record.lua")
                ),
            ),
            status: budget_script!("status"),
            set: budget_script!("set"),
            reserve: budget_script!("reserve"),
            commit: budget_script!("commit"),
            release: budget_script!("release"),
            restore: Script::new("usage_restore", include_str!("scripts/usage_restore.lua")),
        }
    }

    /// The literal start of every usage key of the tenant: `<subject>}:...` follows.
    fn tenant_prefix(&self, tenant: &Tenant) -> String {
        format!("{}{{{tenant}/", self.redis.keys().usages(tenant))
    }

    fn base(&self, tenant: &Tenant, subject: &Subject) -> String {
        self.redis.keys().usage(tenant, subject)
    }

    /// The totals hash of `period`'s bucket `bucket`.
    fn totals_key(base: &str, period: Period, bucket: &str) -> String {
        format!("{base}:{}:{bucket}", period.as_str())
    }

    /// The keys every budget script takes: budget, reservations, today's and this month's
    /// totals, reservation expiries.
    fn budget_keys(&self, tenant: &Tenant, budget: &BudgetId, now_us: u64) -> [String; 5] {
        let base = self.base(tenant, &budget.subject);
        let metric = &budget.metric;
        [
            format!("{base}:budget"),
            format!("{base}:resv:{metric}"),
            Self::totals_key(&base, Period::Day, &Period::Day.bucket(now_us)),
            Self::totals_key(&base, Period::Month, &Period::Month.bucket(now_us)),
            format!("{base}:resv_exp:{metric}"),
        ]
    }

    /// A reservation script's call: the subject's budget keys, then the metric and the
    /// reservation id.
    fn reservation_call<'a>(
        &self,
        script: &'a Script,
        tenant: &Tenant,
        budget: &BudgetId,
        id: &ReservationId,
        now_us: u64,
    ) -> Invocation<'a> {
        let mut call = script.prepare_invoke();
        for key in self.budget_keys(tenant, budget, now_us) {
            call.key(key);
        }
        call.arg(budget.metric.as_str()).arg(id.as_str());
        call
    }

    async fn status_of(
        &self,
        script: &Script,
        keys: [String; 5],
        args: &[&str],
    ) -> StoreResult<Option<BudgetStatus>> {
        let mut call = script.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        for arg in args {
            call.arg(*arg);
        }
        let reply: Vec<redis::Value> = self.redis.script(&call).await?;
        if reply.is_empty() {
            return Ok(None);
        }
        let bad = || StoreError::Internal("budget status has an unexpected shape".into());
        let (limit, period, used, reserved): (u64, String, u64, u64) =
            redis::from_redis_value(redis::Value::Array(reply)).map_err(|_| bad())?;
        let period = match period.as_str() {
            "day" => Period::Day,
            "month" => Period::Month,
            _ => return Err(bad()),
        };
        Ok(Some(BudgetStatus {
            rule: BudgetRule { limit, period },
            used,
            reserved,
        }))
    }
}

#[async_trait]
impl UsageStore for RedisUsage {
    async fn record(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        event: &UsageEvent,
        limits: UsageLimits,
    ) -> StoreResult<bool> {
        let base = self.base(tenant, subject);
        let mut call = self.record.prepare_invoke();
        call.key(format!("{base}:event:{}", event.event_id))
            .key(Self::totals_key(
                &base,
                Period::Day,
                &Period::Day.bucket(event.at_us),
            ))
            .key(Self::totals_key(
                &base,
                Period::Month,
                &Period::Month.bucket(event.at_us),
            ))
            .arg(event.metric.as_str())
            .arg(event.amount)
            .arg(limits.dedup_window_ms.max(1))
            .arg(limits.retention_ms.max(1))
            .arg(limits.retention_ms + MONTH_EXTRA_MS);
        let counted: u8 = self.redis.script(&call).await?;
        Ok(counted == 1)
    }

    async fn totals(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        metric: Option<&MetricName>,
        period: Period,
        buckets: &[String],
    ) -> StoreResult<Vec<Total>> {
        let base = self.base(tenant, subject);
        let mut pipe = redis::pipe();
        for bucket in buckets {
            pipe.cmd("HGETALL")
                .arg(Self::totals_key(&base, period, bucket));
        }
        let hashes: Vec<Vec<(String, u64)>> = self.redis.pipeline(&pipe).await?;
        let mut totals = Vec::new();
        for (bucket, mut fields) in buckets.iter().zip(hashes) {
            fields.sort();
            for (name, amount) in fields {
                if metric.is_none_or(|wanted| wanted.as_str() == name) && amount > 0 {
                    totals.push(Total {
                        bucket: bucket.clone(),
                        metric: name,
                        amount,
                    });
                }
            }
        }
        Ok(totals)
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        let prefix = self.tenant_prefix(tenant);
        crate::store::redis::scan_ids(&self.redis, &prefix, cursor, limit, |rest| {
            let (subject, tail) = rest.split_once("}:")?;
            let (period, bucket) = tail.split_once(':')?;
            matches!(period, "day" | "month").then(|| format!("{subject}/{period}/{bucket}"))
        })
        .await
    }

    async fn bucket(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        bucket: &Bucket,
    ) -> StoreResult<Option<(Vec<(String, u64)>, u64)>> {
        let key = Self::totals_key(&self.base(tenant, subject), bucket.period, &bucket.name);
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&key).cmd("PTTL").arg(&key);
        let (mut totals, left): (Vec<(String, u64)>, i64) = self.redis.pipeline(&pipe).await?;
        if totals.is_empty() || left <= 0 {
            return Ok(None);
        }
        totals.sort();
        Ok(Some((totals, left.unsigned_abs())))
    }

    async fn restore_totals(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        bucket: &Bucket,
        totals: &[(String, u64)],
        ttl_ms: u64,
        at_least: bool,
    ) -> StoreResult<u64> {
        let mut call = self.restore.prepare_invoke();
        let base = self.base(tenant, subject);
        call.key(Self::totals_key(&base, bucket.period, &bucket.name))
            .arg(ttl_ms.max(1))
            .arg(if at_least { "1" } else { "0" });
        for (metric, amount) in totals {
            call.arg(metric.as_str()).arg(*amount);
        }
        self.redis.script(&call).await
    }
}

#[async_trait]
impl BudgetStore for RedisUsage {
    async fn set(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        rule: BudgetRule,
        now_us: u64,
    ) -> StoreResult<BudgetStatus> {
        let keys = self.budget_keys(tenant, budget, now_us);
        let limit = rule.limit.to_string();
        let args = [budget.metric.as_str(), &limit, rule.period.as_str()];
        self.status_of(&self.set, keys, &args)
            .await?
            .ok_or_else(|| StoreError::Internal("a budget just set is missing".into()))
    }

    async fn get(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        now_us: u64,
    ) -> StoreResult<Option<BudgetStatus>> {
        let keys = self.budget_keys(tenant, budget, now_us);
        self.status_of(&self.status, keys, &[budget.metric.as_str()])
            .await
    }

    async fn delete(&self, tenant: &Tenant, budget: &BudgetId) -> StoreResult<bool> {
        let base = self.base(tenant, &budget.subject);
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(format!("{base}:budget"))
            .arg(budget.metric.as_str());
        let removed: u8 = self.redis.query(&cmd).await?;
        Ok(removed == 1)
    }

    async fn reserve(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        id: &ReservationId,
        amount: u64,
        ttl_ms: u64,
        now_us: u64,
    ) -> StoreResult<Reserved> {
        let mut call = self.reservation_call(&self.reserve, tenant, budget, id, now_us);
        call.arg(amount).arg(ttl_ms);
        let reply: Vec<i64> = self.redis.script(&call).await?;
        match reply.as_slice() {
            [1, remaining, expires] => Ok(Reserved::Granted {
                remaining: (*remaining >= 0).then(|| whole(*remaining)),
                expires_at_us: whole(*expires),
            }),
            [0, remaining] => Ok(Reserved::Exceeded {
                remaining: whole(*remaining),
            }),
            other => Err(StoreError::Internal(format!(
                "budget_reserve answered {other:?}"
            ))),
        }
    }

    async fn commit(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        id: &ReservationId,
        amount: u64,
        limits: UsageLimits,
        now_us: u64,
    ) -> StoreResult<Committed> {
        let mut call = self.reservation_call(&self.commit, tenant, budget, id, now_us);
        call.arg(amount)
            .arg(limits.retention_ms.max(1))
            .arg(limits.retention_ms + MONTH_EXTRA_MS);
        let reply: Vec<i64> = self.redis.script(&call).await?;
        match reply.as_slice() {
            [1, returned] => Ok(Committed::Done {
                returned: whole(*returned),
            }),
            [-1, reserved] => Ok(Committed::TooMuch {
                reserved: whole(*reserved),
            }),
            [0] => Ok(Committed::NotFound),
            other => Err(StoreError::Internal(format!(
                "budget_commit answered {other:?}"
            ))),
        }
    }

    async fn release(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        id: &ReservationId,
    ) -> StoreResult<bool> {
        let call = self.reservation_call(&self.release, tenant, budget, id, 0);
        let released: u8 = self.redis.script(&call).await?;
        Ok(released == 1)
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        let prefix = self.tenant_prefix(tenant);
        let page = crate::store::redis::scan_ids(&self.redis, &prefix, cursor, limit, |rest| {
            rest.strip_suffix("}:budget").map(str::to_string)
        })
        .await?;
        // One command per subject, all at once: the subjects' budgets have tags of their own,
        // so on a Cluster they are on different masters (a pipeline may not cross slots).
        let metrics: Vec<Vec<String>> =
            futures_util::future::try_join_all(page.ids.iter().map(|subject| {
                let hkeys = redis::cmd("HKEYS")
                    .arg(format!("{prefix}{subject}}}:budget"))
                    .clone();
                async move { self.redis.query(&hkeys).await }
            }))
            .await?;
        let ids = page
            .ids
            .iter()
            .zip(metrics)
            .flat_map(|(subject, metrics)| {
                metrics
                    .into_iter()
                    .map(move |metric| format!("{subject}/{metric}"))
            })
            .collect();
        Ok(IdPage {
            ids,
            next: page.next,
        })
    }
}

/// A count a script answers, never negative.
fn whole(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
    /// The base of a subject's usage and budget keys:
    /// `{prefix}:{tenant}:usage:{<tenant>/<subject>}` (see `redis::usage`).
    pub fn usage(&self, tenant: &Tenant, subject: &Subject) -> String {
        format!("{}{{{tenant}/{subject}}}", self.usages(tenant))
    }

    /// The literal start of every usage and budget key of a tenant.
    pub fn usages(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:usage:", self.prefix)
    }
}
