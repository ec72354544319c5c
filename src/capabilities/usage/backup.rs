//! Usage and budgets in a backup. Usage: the totals of each bucket (a subject's day or month,
//! `subject/period/bucket`), restored as the higher of both sides in `merge` (counts only
//! grow). Budgets: their rules. Not backed up: live reservations (they return by themselves
//! within their TTL) and the dedup ids of events.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::model::{Bucket, BudgetId, BudgetRule, MAX_AMOUNT, MetricName, Period, Subject};
use crate::{
    domain::ids::Tenant,
    store::{IdPage, StoreResult, memory::now_us},
    transfer::{Backup, Exported, Mode, Outcome, PAGE, Restore, Transfer, format::Record, left_ms},
};

pub struct UsageBackup;

pub struct BudgetBackup;

/// A budget as a record holds it: the body of `PUT .../budgets/{metric}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetValue {
    limit: u64,
    period: Period,
}

fn period_named(name: &str) -> Option<Period> {
    match name {
        "day" => Some(Period::Day),
        "month" => Some(Period::Month),
        _ => None,
    }
}

/// Whether `bucket` names a bucket of `period`: `2026-11-26` or `2026-11`.
fn valid_bucket(period: Period, bucket: &str) -> bool {
    let shape: &[u8] = match period {
        Period::Day => b"dddd-dd-dd",
        Period::Month => b"dddd-dd",
    };
    bucket.len() == shape.len()
        && bucket.bytes().zip(shape).all(|(b, s)| {
            if *s == b'd' {
                b.is_ascii_digit()
            } else {
                b == *s
            }
        })
}

struct Totals {
    tenant: Tenant,
    subject: Subject,
    bucket: Bucket,
    totals: Vec<(String, u64)>,
    until: OffsetDateTime,
}

struct Budget(Tenant, BudgetId, BudgetRule);

#[async_trait]
impl Backup for UsageBackup {
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage> {
        cx.stores.usage.inventory(tenant, cursor, PAGE).await
    }

    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>> {
        let mut parts = id.splitn(3, '/');
        let (Some(subject), Some(period), Some(bucket)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        let (Ok(subject), Some(period)) = (Subject::parse(subject), period_named(period)) else {
            return Ok(None);
        };
        let bucket = Bucket {
            period,
            name: bucket.to_string(),
        };
        let Some((totals, left)) = cx.stores.usage.bucket(tenant, &subject, &bucket).await? else {
            return Ok(None);
        };
        let value: Map<String, Value> = totals
            .into_iter()
            .map(|(metric, amount)| (metric, Value::from(amount)))
            .collect();
        Exported::new(&value, Some(left)).map(Some)
    }

    fn check(
        &self,
        _: &Transfer,
        tenant: Tenant,
        record: &Record,
        created: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String> {
        let mut parts = record.id.splitn(3, '/');
        let (Some(subject), Some(period), Some(bucket)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err("a usage id is subject/period/bucket".into());
        };
        let subject = Subject::parse(subject).map_err(|e| e.to_string())?;
        let period = period_named(period).ok_or("the period is day or month")?;
        if !valid_bucket(period, bucket) {
            return Err(format!("{bucket:?} is not a {} bucket", period.as_str()));
        }
        let amounts: BTreeMap<String, u64> =
            serde_json::from_str(record.value.get()).map_err(|e| format!("value: {e}"))?;
        let mut totals = Vec::with_capacity(amounts.len());
        for (metric, amount) in amounts {
            MetricName::parse(metric.as_str()).map_err(|e| e.to_string())?;
            if amount > MAX_AMOUNT {
                return Err(format!("{metric}: at most {MAX_AMOUNT}"));
            }
            totals.push((metric, amount));
        }
        let ttl_ms = record.ttl_ms.ok_or("usage totals carry their ttl_ms")?;
        Ok(Box::new(Totals {
            tenant,
            subject,
            bucket: Bucket {
                period,
                name: bucket.to_string(),
            },
            totals,
            until: created + Duration::from_millis(ttl_ms),
        }))
    }
}

#[async_trait]
impl Restore for Totals {
    fn until(&self, _: &Transfer) -> Option<OffsetDateTime> {
        Some(self.until)
    }

    async fn write(&self, cx: &Transfer, mode: Mode, now: OffsetDateTime) -> StoreResult<Outcome> {
        let usage = &cx.stores.usage;
        let Some(ttl_ms) = left_ms(self.until, now) else {
            return Ok(Outcome::Expired);
        };
        if mode == Mode::SkipExisting
            && usage
                .bucket(&self.tenant, &self.subject, &self.bucket)
                .await?
                .is_some()
        {
            return Ok(Outcome::Skipped);
        }
        // Merge keeps the higher of both totals: counts only grow.
        let at_least = mode == Mode::Merge;
        let changed = usage
            .restore_totals(
                &self.tenant,
                &self.subject,
                &self.bucket,
                &self.totals,
                ttl_ms,
                at_least,
            )
            .await?;
        Ok(if changed > 0 {
            Outcome::Written
        } else {
            Outcome::Unchanged
        })
    }
}

#[async_trait]
impl Backup for BudgetBackup {
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage> {
        cx.stores.budgets.inventory(tenant, cursor, PAGE).await
    }

    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>> {
        let Ok(budget) = BudgetId::parse(id) else {
            return Ok(None);
        };
        let Some(status) = cx.stores.budgets.get(tenant, &budget, now_us()).await? else {
            return Ok(None);
        };
        let value = BudgetValue {
            limit: status.rule.limit,
            period: status.rule.period,
        };
        Exported::new(&value, None).map(Some)
    }

    fn check(
        &self,
        _: &Transfer,
        tenant: Tenant,
        record: &Record,
        _: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String> {
        let budget = BudgetId::parse(&record.id)?;
        let v: BudgetValue =
            serde_json::from_str(record.value.get()).map_err(|e| format!("value: {e}"))?;
        // As `PUT .../budgets/{metric}` takes it: 0 (nothing may be spent) included.
        if v.limit > MAX_AMOUNT {
            return Err(format!("limit: 0 to {MAX_AMOUNT}"));
        }
        let rule = BudgetRule {
            limit: v.limit,
            period: v.period,
        };
        Ok(Box::new(Budget(tenant, budget, rule)))
    }
}

#[async_trait]
impl Restore for Budget {
    fn until(&self, _: &Transfer) -> Option<OffsetDateTime> {
        None
    }

    async fn write(&self, cx: &Transfer, mode: Mode, _: OffsetDateTime) -> StoreResult<Outcome> {
        let Self(tenant, budget, rule) = self;
        let budgets = &cx.stores.budgets;
        let now = now_us();
        match budgets.get(tenant, budget, now).await? {
            Some(held) if held.rule == *rule => return Ok(Outcome::Unchanged),
            Some(_) if mode == Mode::SkipExisting => return Ok(Outcome::Skipped),
            _ => {}
        }
        budgets.set(tenant, budget, *rule, now).await?;
        Ok(Outcome::Written)
    }
}
