//! Usage and budgets on the memory engine: one entry per `tenant/subject` holding its totals,
//! the event ids seen within the dedup window, its budgets and their live reservations, all
//! changed under the engine's lock (so a reservation's check and hold are one step).
//!
//! Built as the fallback of `auto` mode it also keeps a [`Journal`] of what it counted, which
//! the failover replays to Redis when Redis answers again (each event once: Redis deduplicates
//! by `event_id`, commits carry `reservation:<id>`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh},
    now_us,
};
use crate::{
    capabilities::usage::{
        model::{
            Bucket, BudgetId, BudgetRule, BudgetStatus, Committed, MAX_AMOUNT, MetricName, Period,
            ReservationId, Reserved, Subject, Total, UsageEvent, UsageLimits, fits,
        },
        port::{BudgetStore, UsageStore},
    },
    domain::ids::Tenant,
    store::{IdPage, StoreResult, signals::signal_key},
};

/// Events counted in memory while Redis was down, to be counted in Redis when it returns.
#[derive(Default)]
pub struct Journal {
    entries: Mutex<Vec<JournalEntry>>,
}

pub struct JournalEntry {
    pub tenant: Tenant,
    pub subject: Subject,
    pub event: UsageEvent,
    pub limits: UsageLimits,
}

impl Journal {
    fn push(&self, entry: JournalEntry) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    /// Everything journalled so far, in order; the journal is empty afterwards.
    pub fn take(&self) -> Vec<JournalEntry> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_empty(&self) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Puts entries that could not be replayed back in front of any newer ones.
    pub fn put_back(&self, mut entries: Vec<JournalEntry>) {
        let mut journal = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.append(&mut journal);
        *journal = entries;
    }
}

pub struct MemoryUsage {
    engine: Engine<Box<str>, SubjectUsage>,
    journal: Option<Arc<Journal>>,
}

/// One subject's usage and budgets.
#[derive(Default)]
pub struct SubjectUsage {
    /// (period, bucket, metric) → (total, expires µs).
    totals: BTreeMap<(&'static str, String, String), (u64, u64)>,
    /// Event ids counted, with the end of their dedup window, oldest first.
    seen: HashMap<String, u64>,
    seen_order: VecDeque<(u64, String)>,
    budgets: HashMap<String, BudgetRule>,
    /// (metric, reservation id) → (amount, expires µs).
    reservations: HashMap<(String, String), (u64, u64)>,
    /// The live reservations' sum per metric, and their expiries in order: a reservation costs
    /// O(log n), not a pass over the live ones.
    reserved: HashMap<String, u64>,
    expiries: BTreeSet<(u64, String, String)>,
}

impl Weigh for SubjectUsage {
    fn weight(&self) -> usize {
        64 * self.totals.len()
            + 128 * self.seen.len()
            + 64 * self.budgets.len()
            + 96 * self.reservations.len()
    }
}

impl SubjectUsage {
    fn is_empty(&self) -> bool {
        self.totals.is_empty()
            && self.seen.is_empty()
            && self.budgets.is_empty()
            && self.reservations.is_empty()
    }

    /// Drops expired totals, dedup ids and reservations.
    fn prune(&mut self, now: u64) {
        while let Some((expires, id)) = self.seen_order.front() {
            if *expires > now {
                break;
            }
            if self.seen.get(id) == Some(expires) {
                self.seen.remove(id);
            }
            self.seen_order.pop_front();
        }
        self.totals.retain(|_, (_, expires)| *expires > now);
        while let Some((expires, metric, id)) = self.expiries.first().cloned() {
            if expires > now {
                break;
            }
            self.take(&metric, &id);
        }
    }

    fn hold(&mut self, metric: &str, id: &str, amount: u64, expires: u64) {
        let key = (metric.to_string(), id.to_string());
        self.reservations.insert(key, (amount, expires));
        *self.reserved.entry(metric.to_string()).or_default() += amount;
        self.expiries
            .insert((expires, metric.to_string(), id.to_string()));
    }

    /// Ends a live reservation: its amount, if there was one.
    fn take(&mut self, metric: &str, id: &str) -> Option<u64> {
        let key = (metric.to_string(), id.to_string());
        let (amount, expires) = self.reservations.remove(&key)?;
        self.expiries.remove(&(expires, key.0, key.1));
        if let Some(sum) = self.reserved.get_mut(metric) {
            *sum = sum.saturating_sub(amount);
            if *sum == 0 {
                self.reserved.remove(metric);
            }
        }
        Some(amount)
    }

    /// Adds `amount` to the day and month totals of `at_us`.
    fn count(&mut self, metric: &str, amount: u64, at_us: u64, limits: UsageLimits, now: u64) {
        for (period, keep_ms) in [
            (Period::Day, limits.retention_ms),
            (Period::Month, limits.retention_ms + 31 * 86_400_000),
        ] {
            let key = (period.as_str(), period.bucket(at_us), metric.to_string());
            let (total, expires) = self.totals.entry(key).or_insert((0, 0));
            *total = total.saturating_add(amount).min(MAX_AMOUNT);
            *expires = now + keep_ms * 1000;
        }
    }

    fn status(&self, metric: &str, rule: BudgetRule, now_us: u64) -> BudgetStatus {
        let key = (
            rule.period.as_str(),
            rule.period.bucket(now_us),
            metric.to_string(),
        );
        let used = self.totals.get(&key).map_or(0, |(total, _)| *total);
        let reserved = self.reserved.get(metric).copied().unwrap_or(0);
        BudgetStatus {
            rule,
            used,
            reserved,
        }
    }
}

impl MemoryUsage {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            engine: backend.engine(),
            journal: None,
        }
    }

    /// The fallback of `auto` mode: what it counts is also journalled for Redis.
    pub fn journalled(backend: &MemoryBackend, journal: Arc<Journal>) -> Self {
        Self {
            engine: backend.engine(),
            journal: Some(journal),
        }
    }

    fn update<R>(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        change: impl FnOnce(&mut SubjectUsage, u64) -> R,
    ) -> R {
        let key = signal_key(tenant, subject);
        self.engine.update(&key.into(), |slot| {
            let now = now_us();
            let mut state = slot.take().map(|e| e.value).unwrap_or_default();
            state.prune(now);
            let result = change(&mut state, now);
            if !state.is_empty() {
                *slot = Some(Entry {
                    value: state,
                    expires_at: None,
                });
            }
            result
        })
    }

    fn journal(&self, tenant: &Tenant, subject: &Subject, event: UsageEvent, limits: UsageLimits) {
        if let Some(journal) = &self.journal {
            journal.push(JournalEntry {
                tenant: tenant.clone(),
                subject: subject.clone(),
                event,
                limits,
            });
        }
    }
}

#[async_trait]
impl UsageStore for MemoryUsage {
    async fn record(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        event: &UsageEvent,
        limits: UsageLimits,
    ) -> StoreResult<bool> {
        self.engine.ensure_room()?;
        let counted = self.update(tenant, subject, |state, now| {
            if state.seen.contains_key(&event.event_id) {
                return false;
            }
            let until = now + limits.dedup_window_ms * 1000;
            state.seen.insert(event.event_id.clone(), until);
            state.seen_order.push_back((until, event.event_id.clone()));
            let metric = event.metric.as_str();
            state.count(metric, event.amount, event.at_us, limits, now);
            true
        });
        if counted {
            self.journal(tenant, subject, event.clone(), limits);
        }
        Ok(counted)
    }

    async fn totals(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        metric: Option<&MetricName>,
        period: Period,
        buckets: &[String],
    ) -> StoreResult<Vec<Total>> {
        Ok(self.update(tenant, subject, |state, _| {
            let mut totals = Vec::new();
            for bucket in buckets {
                let lower = (period.as_str(), bucket.clone(), String::new());
                for ((p, b, m), (amount, _)) in state.totals.range(lower..) {
                    if *p != period.as_str() || b != bucket {
                        break;
                    }
                    if metric.is_none_or(|wanted| wanted.as_str() == m) && *amount > 0 {
                        totals.push(Total {
                            bucket: b.clone(),
                            metric: m.clone(),
                            amount: *amount,
                        });
                    }
                }
            }
            totals
        }))
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        let now = now_us();
        Ok(crate::store::memory::prefixed_scan(
            &self.engine,
            tenant,
            cursor,
            limit,
            |subject, usage| {
                let mut ids: Vec<String> = usage
                    .totals
                    .iter()
                    .filter(|(_, (_, expires))| *expires > now)
                    .map(|((period, bucket, _), _)| format!("{subject}/{period}/{bucket}"))
                    .collect();
                ids.dedup();
                ids
            },
        ))
    }

    async fn bucket(
        &self,
        tenant: &Tenant,
        subject: &Subject,
        bucket: &Bucket,
    ) -> StoreResult<Option<(Vec<(String, u64)>, u64)>> {
        let period = bucket.period.as_str();
        Ok(self.update(tenant, subject, |state, now| {
            let lower = (period, bucket.name.clone(), String::new());
            let mut totals = Vec::new();
            let mut until = 0;
            for ((p, b, metric), (amount, expires)) in state.totals.range(lower..) {
                if *p != period || *b != bucket.name {
                    break;
                }
                totals.push((metric.clone(), *amount));
                until = until.max(*expires);
            }
            (!totals.is_empty()).then(|| (totals, until.saturating_sub(now) / 1000))
        }))
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
        self.engine.ensure_room()?;
        Ok(self.update(tenant, subject, |state, now| {
            let mut changed = 0;
            for (metric, amount) in totals {
                let key = (bucket.period.as_str(), bucket.name.clone(), metric.clone());
                let (held, expires) = state.totals.entry(key).or_insert((0, 0));
                let amount = if at_least {
                    (*amount).max(*held)
                } else {
                    *amount
                };
                if amount != *held {
                    *held = amount.min(MAX_AMOUNT);
                    changed += 1;
                }
                *expires = (*expires).max(now + ttl_ms.max(1) * 1000);
            }
            changed
        }))
    }
}

#[async_trait]
impl BudgetStore for MemoryUsage {
    async fn set(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        rule: BudgetRule,
        now_us: u64,
    ) -> StoreResult<BudgetStatus> {
        self.engine.ensure_room()?;
        let metric = budget.metric.as_str();
        Ok(self.update(tenant, &budget.subject, |state, _| {
            state.budgets.insert(metric.to_string(), rule);
            state.status(metric, rule, now_us)
        }))
    }

    async fn get(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        now_us: u64,
    ) -> StoreResult<Option<BudgetStatus>> {
        let metric = budget.metric.as_str();
        Ok(self.update(tenant, &budget.subject, |state, _| {
            let rule = *state.budgets.get(metric)?;
            Some(state.status(metric, rule, now_us))
        }))
    }

    async fn delete(&self, tenant: &Tenant, budget: &BudgetId) -> StoreResult<bool> {
        Ok(self.update(tenant, &budget.subject, |state, _| {
            state.budgets.remove(budget.metric.as_str()).is_some()
        }))
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
        self.engine.ensure_room()?;
        let metric = budget.metric.as_str();
        Ok(self.update(tenant, &budget.subject, |state, now| {
            let status = state
                .budgets
                .get(metric)
                .map(|rule| state.status(metric, *rule, now_us));
            if let Some(status) = status
                && !fits(&status, amount)
            {
                return Reserved::Exceeded {
                    remaining: status.remaining(),
                };
            }
            // More than 2^53 - 1 held at once: the service's ceiling, budget or not.
            let held = state.reserved.get(metric).copied().unwrap_or(0);
            if held.saturating_add(amount) > MAX_AMOUNT {
                return Reserved::Exceeded {
                    remaining: MAX_AMOUNT - held,
                };
            }
            let expires_at_us = now + ttl_ms * 1000;
            state.hold(metric, id.as_str(), amount, expires_at_us);
            Reserved::Granted {
                remaining: status.map(|s| s.remaining() - amount),
                expires_at_us,
            }
        }))
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
        let metric = budget.metric.as_str();
        let committed = self.update(tenant, &budget.subject, |state, now| {
            let key = (metric.to_string(), id.to_string());
            let Some(&(reserved, _)) = state.reservations.get(&key) else {
                return Committed::NotFound;
            };
            if amount > reserved {
                return Committed::TooMuch { reserved };
            }
            state.take(metric, id.as_str());
            state.count(metric, amount, now_us, limits, now);
            Committed::Done {
                returned: reserved - amount,
            }
        });
        if matches!(committed, Committed::Done { .. }) {
            let event = UsageEvent {
                event_id: format!("reservation:{id}"),
                metric: budget.metric.clone(),
                amount,
                at_us: now_us,
            };
            self.journal(tenant, &budget.subject, event, limits);
        }
        Ok(committed)
    }

    async fn release(
        &self,
        tenant: &Tenant,
        budget: &BudgetId,
        id: &ReservationId,
    ) -> StoreResult<bool> {
        Ok(self.update(tenant, &budget.subject, |state, _| {
            state.take(budget.metric.as_str(), id.as_str()).is_some()
        }))
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        Ok(crate::store::memory::prefixed_scan(
            &self.engine,
            tenant,
            cursor,
            limit,
            |subject, usage| {
                let mut metrics: Vec<&String> = usage.budgets.keys().collect();
                metrics.sort();
                metrics
                    .into_iter()
                    .map(|metric| format!("{subject}/{metric}"))
                    .collect()
            },
        ))
    }
}
