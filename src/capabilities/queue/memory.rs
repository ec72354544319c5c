//! Job queues on the memory engine: one entry per `tenant/queue` holding its whole
//! `queue::model::QueueState`, changed under the engine's lock (so each method is atomic). An
//! enqueue wakes this process's long polls.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::{sync::Notify, time::Instant};

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh},
    now_us,
};
use crate::{
    capabilities::queue::{
        model::{Counts, Job, JobId, JobState, NewJob, QueueName, QueueState},
        port::{Leases, Nack, QueueStore},
    },
    domain::ids::Tenant,
    store::{
        IdPage, StoreResult,
        signals::{Signals, signal_key},
    },
};

pub struct MemoryQueues {
    engine: Engine<Box<str>, QueueState>,
    signals: Signals,
}

impl MemoryQueues {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            engine: backend.engine(),
            signals: Signals::default(),
        }
    }

    fn update<R>(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        change: impl FnOnce(&mut QueueState, u64) -> R,
    ) -> R {
        let key = signal_key(tenant, queue);
        self.engine.update(&key.into(), |slot| {
            let mut state = slot.take().map(|e| e.value).unwrap_or_default();
            let now = now_us();
            let result = change(&mut state, now);
            if !state.is_empty() {
                // A queue with nothing live goes when its finished jobs would be forgotten.
                let expires_at = state
                    .idle_until()
                    .map(|until| Instant::now() + Duration::from_micros(until.saturating_sub(now)));
                *slot = Some(Entry {
                    value: state,
                    expires_at,
                });
            }
            result
        })
    }
}

impl Weigh for QueueState {
    fn weight(&self) -> usize {
        QueueState::weight(self)
    }
}

#[async_trait]
impl QueueStore for MemoryQueues {
    async fn enqueue(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        job: &NewJob,
        id: &JobId,
    ) -> StoreResult<(String, bool)> {
        self.engine.ensure_room()?;
        let outcome = self.update(tenant, queue, |q, now| q.enqueue(job, id.as_str(), now));
        self.signals.notify(&signal_key(tenant, queue));
        Ok(outcome)
    }

    async fn lease(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        tokens: &[String],
        visibility_ms: u64,
    ) -> StoreResult<Leases> {
        Ok(self.update(tenant, queue, |q, now| {
            let jobs = q.lease(tokens, visibility_ms, now);
            let next_change_in_us = q.next_change_us().map(|at| at.saturating_sub(now));
            Leases {
                jobs,
                next_change_in_us,
            }
        }))
    }

    async fn ack(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        token: &str,
    ) -> StoreResult<bool> {
        Ok(self.update(tenant, queue, |q, now| q.ack(id.as_str(), token, now)))
    }

    async fn nack(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        nack: &Nack<'_>,
    ) -> StoreResult<Option<JobState>> {
        Ok(self.update(tenant, queue, |q, now| {
            let error = nack.error.map(str::to_string);
            q.nack(id.as_str(), nack.token, nack.delay_ms, error, now)
        }))
    }

    async fn heartbeat(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        token: &str,
        visibility_ms: u64,
    ) -> StoreResult<Option<u64>> {
        Ok(self.update(tenant, queue, |q, now| {
            q.heartbeat(id.as_str(), token, visibility_ms, now)
        }))
    }

    async fn get(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
    ) -> StoreResult<Option<Job>> {
        Ok(self.update(tenant, queue, |q, now| q.get(id.as_str(), now)))
    }

    async fn counts(&self, tenant: &Tenant, queue: &QueueName) -> StoreResult<Counts> {
        Ok(self.update(tenant, queue, |q, now| q.counts(now)))
    }

    async fn dead(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        limit: usize,
    ) -> StoreResult<Vec<Job>> {
        Ok(self.update(tenant, queue, |q, now| q.dead(limit, now)))
    }

    async fn redrive(&self, tenant: &Tenant, queue: &QueueName, id: &JobId) -> StoreResult<bool> {
        let redriven = self.update(tenant, queue, |q, now| q.redrive(id.as_str(), now));
        if redriven {
            self.signals.notify(&signal_key(tenant, queue));
        }
        Ok(redriven)
    }

    async fn purge(&self, tenant: &Tenant, queue: &QueueName) -> StoreResult<u64> {
        Ok(self.update(tenant, queue, |q, now| {
            let counts = q.counts(now);
            *q = QueueState::default();
            counts.delayed + counts.ready + counts.leased + counts.done + counts.dead
        }))
    }

    fn enqueue_signal(&self, tenant: &Tenant, queue: &QueueName) -> Arc<Notify> {
        self.signals.watch(&signal_key(tenant, queue))
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
            |queue, state| {
                state
                    .unfinished()
                    .map(|id| format!("{queue}/{id}"))
                    .collect()
            },
        ))
    }

    async fn restore(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        job: &Job,
        only_if_absent: bool,
    ) -> StoreResult<bool> {
        self.engine.ensure_room()?;
        let wrote = self.update(tenant, queue, |q, now| q.restore(job, only_if_absent, now));
        if wrote {
            self.signals.notify(&signal_key(tenant, queue));
        }
        Ok(wrote)
    }
}
