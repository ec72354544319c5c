//! queue.

pub mod backup;
pub mod http;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;

use crate::{capabilities::Declaration, metrics::OutcomeFamily, store::failover::WhileDegraded};

/// Job transitions, by outcome: `enqueued`, `deduplicated` (an enqueue answered with the first
/// job), `leased`, `acked`, `retried` and `dead` (a nack), `redriven`, `purged`, `lease_lost`
/// (an ack, nack or heartbeat without a live lease).
pub const JOBS: OutcomeFamily = OutcomeFamily {
    name: "queue_jobs",
    help: "Job transitions, by outcome (enqueued, deduplicated, leased, acked, retried, dead, \
           redriven, purged, lease_lost)",
    outcomes: &[
        "enqueued",
        "deduplicated",
        "leased",
        "acked",
        "retried",
        "dead",
        "redriven",
        "purged",
        "lease_lost",
    ],
};

pub const DECLARATION: Declaration = Declaration {
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    backup: Some(&backup::QueueBackup),
    outcomes: &[JOBS],
    ..Declaration::new(
        "queues",
        WhileDegraded::Refuse,
        "a job accepted into memory would vanish, or run twice, when Redis returns",
    )
};
