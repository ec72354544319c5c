//! The queue port: the trait its adapters implement and the outcomes of its calls.

use std::sync::Arc;

use crate::{
    capabilities::queue::model::{Counts, Job, JobId, JobState, Leased, NewJob, QueueName},
    domain::ids::Tenant,
};

use crate::store::{IdPage, StoreResult, wait_until};
use tokio::sync::Notify;

/// What a lease call found: the jobs it leased, and when (µs from now) a delay ends or a lease
/// expires, which may make a job leasable without an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leases {
    pub jobs: Vec<Leased>,
    pub next_change_in_us: Option<u64>,
}

crate::store::port::port! {
    /// Job queues (`queue::model`): every method promotes due delays and expired leases first,
    /// then does its work, as one atomic step at the backend's time.
    pub trait QueueStore {
        // Repeatable with a dedup key: the same id again finds the job or fails the same way.
        /// Adds the job as `id`, or finds the job a live `dedup_key` names: (job id, created).
        /// Wakes long polls of the queue on every instance.
        #[repeat(job.dedup_key.is_some())]
        async fn enqueue(
            &self,
            tenant: &Tenant,
            queue: &QueueName,
            job: &NewJob,
            id: &JobId,
        ) -> StoreResult<(String, bool)>;

        /// Leases up to `tokens.len()` ready jobs (9 first, FIFO within a priority), one token each.
        #[repeat(false)]
        async fn lease(
            &self,
            tenant: &Tenant,
            queue: &QueueName,
            tokens: &[String],
            visibility_ms: u64,
        ) -> StoreResult<Leases>;

        /// Finishes the job; false when `token` holds no live lease on it.
        #[repeat(false)]
        async fn ack(
            &self,
            tenant: &Tenant,
            queue: &QueueName,
            id: &JobId,
            token: &str,
        ) -> StoreResult<bool>;

        /// Ends the attempt as failed: the job's state after, or `None` when `token` holds no live
        /// lease on it.
        #[repeat(false)]
        async fn nack(
            &self,
            tenant: &Tenant,
            queue: &QueueName,
            id: &JobId,
            nack: &Nack<'_>,
        ) -> StoreResult<Option<JobState>>;

        /// The lease's new end (µs since the epoch), or `None` when `token` holds no live lease.
        #[repeat(true)]
        async fn heartbeat(
            &self,
            tenant: &Tenant,
            queue: &QueueName,
            id: &JobId,
            token: &str,
            visibility_ms: u64,
        ) -> StoreResult<Option<u64>>;

        #[repeat(true)]
        async fn get(&self, tenant: &Tenant, queue: &QueueName, id: &JobId)
        -> StoreResult<Option<Job>>;

        #[repeat(true)]
        async fn counts(&self, tenant: &Tenant, queue: &QueueName) -> StoreResult<Counts>;

        /// Dead jobs, oldest death first, at most `limit`.
        #[repeat(true)]
        async fn dead(&self, tenant: &Tenant, queue: &QueueName, limit: usize)
        -> StoreResult<Vec<Job>>;

        /// Makes a dead job ready with its attempts back; false when it is not dead.
        #[repeat(false)]
        async fn redrive(&self, tenant: &Tenant, queue: &QueueName, id: &JobId) -> StoreResult<bool>;

        /// Deletes the queue and all its jobs; returns how many jobs.
        #[repeat(true)]
        async fn purge(&self, tenant: &Tenant, queue: &QueueName) -> StoreResult<u64>;

        /// One page of the tenant's jobs that are not done, as `queue/job_id`, for backups; as
        /// `CacheStore::inventory`.
        #[repeat(true)]
        async fn inventory(
            &self,
            tenant: &Tenant,
            cursor: Option<&str>,
            limit: usize,
        ) -> StoreResult<IdPage>;
        // Repeatable: the same job written twice is the same job.

        /// Writes a job as a backup holds it (`QueueState::restore`: a leased job goes back to
        /// ready, a done one is not written); returns whether it wrote.
        #[repeat(true)]
        async fn restore(
            &self,
            tenant: &Tenant,
            queue: &QueueName,
            job: &Job,
            only_if_absent: bool,
        ) -> StoreResult<bool>;
    }
    also {

        /// Notified when a job may have been enqueued.
        fn enqueue_signal(&self, tenant: &Tenant, queue: &QueueName) -> Arc<tokio::sync::Notify>;
    }
    routed {
        fn enqueue_signal(&self, tenant: &Tenant, queue: &QueueName) -> Arc<Notify> {
            self.redis.enqueue_signal(tenant, queue)
        }
    }
}

/// A failed attempt as the worker reports it.
#[derive(Debug, Clone, Copy)]
pub struct Nack<'a> {
    pub token: &'a str,
    /// Retry after this long instead of the job's back-off.
    pub delay_ms: Option<u64>,
    pub error: Option<&'a str>,
}

/// Leases, waiting up to `wait` for a job: woken by an enqueue, else when a delay ends or a
/// lease expires, else after `WAIT_FALLBACK_POLL`.
pub async fn lease_waiting(
    store: &dyn QueueStore,
    tenant: &Tenant,
    queue: &QueueName,
    tokens: &[String],
    visibility_ms: u64,
    wait: std::time::Duration,
) -> StoreResult<Leases> {
    wait_until(
        || store.enqueue_signal(tenant, queue),
        || store.lease(tenant, queue, tokens, visibility_ms),
        |leases| {
            if leases.jobs.is_empty() {
                Err(leases.next_change_in_us)
            } else {
                Ok(())
            }
        },
        wait,
    )
    .await
}
