//! `/v1/queues`: job queues with leases, at-least-once delivery and exactly one holder per job.
//!
//! Decisions the contract leaves open:
//! - `visibility_ms` is 1 ms to 12 h; `wait_ms` (long poll) 0 to 20 s, shortened to end 250 ms
//!   before `server.request_timeout_ms`. A long poll is woken by an enqueue on any instance
//!   (Redis pub/sub), else when a delay ends or a lease expires, else after a second.
//! - `backoff` defaults to exponential from 1 s, at most 5 minutes; `max_attempts` to 3
//!   (1–1000). `nack` with `delay_ms` retries after exactly that instead.
//! - A lease token whose lease has expired can no longer ack, nack or heartbeat (409
//!   `lease_lost`), even before another worker leased the job: the job's attempt is spent.
//! - A finished job stays visible by id for an hour; dead jobs stay until redriven or purged.
//! - `DELETE /v1/queues/{queue}` answers `{deleted}`, the number of jobs removed.

mod dto;

pub use self::dto::*;
use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::http::{
    AppState,
    extract::{
        AppJson, AppQuery, ItemPath, ReadAt, Whole, WriteAt, id_path, page_limit,
        time_of_us as time,
    },
};
use crate::{
    capabilities::queue::{
        model::{
            Backoff, BackoffKind, Job, JobId, JobState, MAX_ATTEMPTS, MAX_BACKOFF_MS, MAX_DELAY_MS,
            MAX_ERROR_CHARS, MAX_LEASE_COUNT, MAX_PRIORITY, MAX_VISIBILITY_MS, MAX_WAIT_MS, NewJob,
            QueueName,
        },
        port::{Nack, lease_waiting},
    },
    error::{ApiError, ApiResult, Conflict, Missing},
};

/// How long before `server.request_timeout_ms` a long poll gives up, to answer in time.
const WAIT_MARGIN_MS: u64 = 250;
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        enqueue,
        lease,
        ack,
        nack,
        heartbeat,
        get_job,
        counts,
        dead,
        redrive,
        purge,
    ),
    tags(
    (name = "queues", description = "Job queues with priorities, delays, leases and heartbeats, retries with \
                                      back-off and dead letters: exactly one holder per job"),
    )
)]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/queues/{queue}", get(counts).delete(purge))
        .route("/v1/queues/{queue}/jobs", post(enqueue))
        .route("/v1/queues/{queue}/lease", post(lease))
        .route("/v1/queues/{queue}/dead", get(dead))
        .route("/v1/queues/{queue}/jobs/{job_id}", get(get_job))
        .route("/v1/queues/{queue}/jobs/{job_id}/ack", post(ack))
        .route("/v1/queues/{queue}/jobs/{job_id}/nack", post(nack))
        .route(
            "/v1/queues/{queue}/jobs/{job_id}/heartbeat",
            post(heartbeat),
        )
        .route("/v1/queues/{queue}/dead/{job_id}/redrive", post(redrive))
}
/// Add a job; with a `dedup_key` seen within the dedup window, the first job's id instead.
#[utoipa::path(
    post, path = "/v1/queues/{queue}/jobs", tag = "queues", operation_id = "queue_enqueue",
    params(QueuePath),
    request_body = EnqueueRequest,
    responses(
        (status = 201, description = "Enqueued", body = Enqueued),
        (status = 200, description = "The dedup key names a job enqueued within the window: that job", body = Enqueued),
        (status = 400, description = "Invalid queue name or malformed JSON"),
        (status = 413, description = "Payload larger than `queues.max_payload_bytes`"),
        (status = 422, description = "A field out of range or unknown"),
    ),
)]
pub async fn enqueue(
    State(state): State<AppState>,
    WriteAt(tenant, queue): WriteAt<QueuePath>,
    AppJson(request): AppJson<EnqueueRequest>,
) -> ApiResult<Response> {
    let new = request.accept(&state)?;
    let id = JobId::parse(uuid::Uuid::new_v4().to_string())?;
    let (job_id, created) = state
        .stores
        .queues
        .enqueue(&tenant, &queue, &new, &id)
        .await?;
    let jobs = &state.metrics.outcomes.of(&crate::capabilities::queue::JOBS);
    jobs.count(if created { "enqueued" } else { "deduplicated" });
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Enqueued { job_id })).into_response())
}

/// Lease ready jobs (9 first, FIFO within a priority), waiting up to `wait_ms` for one.
#[utoipa::path(
    post, path = "/v1/queues/{queue}/lease", tag = "queues", operation_id = "queue_lease",
    params(QueuePath),
    request_body = LeaseRequest,
    responses(
        (status = 200, description = "The jobs leased, possibly none", body = LeaseResponse),
        (status = 400, description = "Invalid queue name or malformed JSON"),
        (status = 422, description = "A field out of range or unknown"),
    ),
)]
pub async fn lease(
    State(state): State<AppState>,
    WriteAt(tenant, queue): WriteAt<QueuePath>,
    AppJson(request): AppJson<LeaseRequest>,
) -> ApiResult<Json<LeaseResponse>> {
    let count = within(
        "count",
        request.count.unwrap_or(Whole(1)),
        1..=MAX_LEASE_COUNT as u64,
    )?;
    let visibility = within(
        "visibility_ms",
        request.visibility_ms,
        1..=MAX_VISIBILITY_MS,
    )?;
    let wait = within(
        "wait_ms",
        request.wait_ms.unwrap_or(Whole(0)),
        0..=MAX_WAIT_MS,
    )?;
    let deadline = state.settings.server.request_timeout_ms;
    let wait = wait.min(deadline.saturating_sub(WAIT_MARGIN_MS));
    let tokens: Vec<String> = (0..count)
        .map(|_| crate::domain::ids::random_token::<16>())
        .collect();
    let store = state.stores.queues.as_ref();
    let wait = Duration::from_millis(wait);
    let leases = lease_waiting(store, &tenant, &queue, &tokens, visibility, wait).await?;
    let leased = u64::try_from(leases.jobs.len()).unwrap_or(u64::MAX);
    state
        .metrics
        .outcomes
        .of(&crate::capabilities::queue::JOBS)
        .count_by("leased", leased);
    let jobs = leases
        .jobs
        .into_iter()
        .map(|job| {
            Ok(LeasedJob {
                payload: raw(job.payload)?,
                job_id: job.id,
                attempt: job.attempt,
                lease_token: job.lease_token,
                lease_expires_at: time(job.lease_expires_us)?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(LeaseResponse { jobs }))
}

/// Finish a job: only its current lease holder can, once.
#[utoipa::path(
    post, path = "/v1/queues/{queue}/jobs/{job_id}/ack", tag = "queues", operation_id = "queue_ack",
    params(JobPath),
    request_body = AckRequest,
    responses(
        (status = 200, description = "Done", body = JobStateBody),
        (status = 400, description = "Invalid queue or job id, or malformed JSON"),
        (status = 409, description = "`lease_lost`: the token holds no live lease on the job; nothing changed"),
        (status = 422, description = "Malformed token or unknown field"),
    ),
)]
pub async fn ack(
    State(state): State<AppState>,
    WriteAt(tenant, (queue, id)): WriteAt<JobPath>,
    AppJson(request): AppJson<AckRequest>,
) -> ApiResult<Json<JobStateBody>> {
    let token = lease_token(&request.lease_token)?;
    let acked = state.stores.queues.ack(&tenant, &queue, &id, token).await?;
    let jobs = &state.metrics.outcomes.of(&crate::capabilities::queue::JOBS);
    jobs.count(if acked { "acked" } else { "lease_lost" });
    if acked {
        Ok(Json(JobStateBody {
            state: JobState::Done,
        }))
    } else {
        Err(Conflict::LeaseLost.into())
    }
}

/// Fail an attempt: the job is retried after its back-off (or `delay_ms`), or is dead once its
/// attempts are spent.
#[utoipa::path(
    post, path = "/v1/queues/{queue}/jobs/{job_id}/nack", tag = "queues", operation_id = "queue_nack",
    params(JobPath),
    request_body = NackRequest,
    responses(
        (status = 200, description = "The job's state now: `ready`, `delayed` or `dead`", body = JobStateBody),
        (status = 400, description = "Invalid queue or job id, or malformed JSON"),
        (status = 409, description = "`lease_lost`: the token holds no live lease on the job; nothing changed"),
        (status = 422, description = "Malformed token, delay out of range, error too long or unknown field"),
    ),
)]
pub async fn nack(
    State(state): State<AppState>,
    WriteAt(tenant, (queue, id)): WriteAt<JobPath>,
    AppJson(request): AppJson<NackRequest>,
) -> ApiResult<Json<JobStateBody>> {
    let token = lease_token(&request.lease_token)?;
    let delay_ms = request
        .delay_ms
        .map(|d| within("delay_ms", d, 0..=MAX_DELAY_MS))
        .transpose()?;
    if request
        .error
        .as_ref()
        .is_some_and(|e| e.len() > MAX_ERROR_CHARS)
    {
        return Err(ApiError::validation_failed(format!(
            "error is at most {MAX_ERROR_CHARS} bytes"
        )));
    }
    let nack = Nack {
        token,
        delay_ms,
        error: request.error.as_deref(),
    };
    match state
        .stores
        .queues
        .nack(&tenant, &queue, &id, &nack)
        .await?
    {
        Some(job_state) => {
            let jobs = &state.metrics.outcomes.of(&crate::capabilities::queue::JOBS);
            jobs.count(if job_state == JobState::Dead {
                "dead"
            } else {
                "retried"
            });
            Ok(Json(JobStateBody { state: job_state }))
        }
        None => {
            state
                .metrics
                .outcomes
                .of(&crate::capabilities::queue::JOBS)
                .count("lease_lost");
            Err(Conflict::LeaseLost.into())
        }
    }
}

/// Extend a lease while the job is being worked on.
#[utoipa::path(
    post, path = "/v1/queues/{queue}/jobs/{job_id}/heartbeat", tag = "queues", operation_id = "queue_heartbeat",
    params(JobPath),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "The lease's new end", body = LeaseExtended),
        (status = 400, description = "Invalid queue or job id, or malformed JSON"),
        (status = 409, description = "`lease_lost`: the token holds no live lease on the job; nothing changed"),
        (status = 422, description = "Malformed token, visibility out of range or unknown field"),
    ),
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    WriteAt(tenant, (queue, id)): WriteAt<JobPath>,
    AppJson(request): AppJson<HeartbeatRequest>,
) -> ApiResult<Json<LeaseExtended>> {
    let token = lease_token(&request.lease_token)?;
    let visibility = within(
        "visibility_ms",
        request.visibility_ms,
        1..=MAX_VISIBILITY_MS,
    )?;
    let queues = &state.stores.queues;
    match queues
        .heartbeat(&tenant, &queue, &id, token, visibility)
        .await?
    {
        Some(until) => Ok(Json(LeaseExtended {
            lease_expires_at: time(until)?,
        })),
        None => Err(Conflict::LeaseLost.into()),
    }
}

/// One job: its state, attempts and last error.
#[utoipa::path(
    get, path = "/v1/queues/{queue}/jobs/{job_id}", tag = "queues", operation_id = "queue_get_job",
    params(JobPath),
    responses(
        (status = 200, description = "The job", body = JobBody),
        (status = 400, description = "Invalid queue or job id"),
        (status = 404, description = "No such job (or it finished over an hour ago)"),
    ),
)]
pub async fn get_job(
    State(state): State<AppState>,
    ReadAt(tenant, (queue, id)): ReadAt<JobPath>,
) -> ApiResult<Json<JobBody>> {
    let job = state.stores.queues.get(&tenant, &queue, &id).await?;
    Ok(Json(job_body(job.ok_or(Missing::Job)?)?))
}

/// How many jobs are in each state.
#[utoipa::path(
    get, path = "/v1/queues/{queue}", tag = "queues", operation_id = "queue_counts",
    params(QueuePath),
    responses(
        (status = 200, description = "Counts per state (a queue never used counts zeros)", body = QueueCounts),
        (status = 400, description = "Invalid queue name"),
    ),
)]
pub async fn counts(
    State(state): State<AppState>,
    ReadAt(tenant, queue): ReadAt<QueuePath>,
) -> ApiResult<Json<QueueCounts>> {
    let c = state.stores.queues.counts(&tenant, &queue).await?;
    Ok(Json(QueueCounts {
        delayed: c.delayed,
        ready: c.ready,
        leased: c.leased,
        done: c.done,
        dead: c.dead,
    }))
}

/// Dead jobs, oldest death first, with their last error.
#[utoipa::path(
    get, path = "/v1/queues/{queue}/dead", tag = "queues", operation_id = "queue_dead",
    params(QueuePath, DeadQuery),
    responses(
        (status = 200, description = "Dead jobs", body = DeadJobs),
        (status = 400, description = "Invalid queue name or limit"),
    ),
)]
pub async fn dead(
    State(state): State<AppState>,
    ReadAt(tenant, queue): ReadAt<QueuePath>,
    AppQuery(query): AppQuery<DeadQuery>,
) -> ApiResult<Json<DeadJobs>> {
    let limit = page_limit(query.limit, 100, 1000)?;
    let jobs = state.stores.queues.dead(&tenant, &queue, limit).await?;
    let jobs = jobs.into_iter().map(job_body).collect::<ApiResult<_>>()?;
    Ok(Json(DeadJobs { jobs }))
}

/// Give a dead job its attempts back and make it ready.
#[utoipa::path(
    post, path = "/v1/queues/{queue}/dead/{job_id}/redrive", tag = "queues", operation_id = "queue_redrive",
    params(JobPath),
    responses(
        (status = 200, description = "Ready again", body = JobStateBody),
        (status = 400, description = "Invalid queue or job id"),
        (status = 404, description = "No such job"),
        (status = 409, description = "`not_dead`: the job is not dead"),
    ),
)]
pub async fn redrive(
    State(state): State<AppState>,
    WriteAt(tenant, (queue, id)): WriteAt<JobPath>,
) -> ApiResult<Json<JobStateBody>> {
    let queues = &state.stores.queues;
    if queues.redrive(&tenant, &queue, &id).await? {
        state
            .metrics
            .outcomes
            .of(&crate::capabilities::queue::JOBS)
            .count("redriven");
        return Ok(Json(JobStateBody {
            state: JobState::Ready,
        }));
    }
    match queues.get(&tenant, &queue, &id).await? {
        Some(_) => Err(Conflict::NotDead.into()),
        None => Err(Missing::Job.into()),
    }
}

/// Delete the queue and all its jobs.
#[utoipa::path(
    delete, path = "/v1/queues/{queue}", tag = "queues", operation_id = "queue_purge",
    params(QueuePath),
    responses(
        (status = 200, description = "Purged", body = Purged),
        (status = 400, description = "Invalid queue name"),
    ),
)]
pub async fn purge(
    State(state): State<AppState>,
    WriteAt(tenant, queue): WriteAt<QueuePath>,
) -> ApiResult<Json<Purged>> {
    let deleted = state.stores.queues.purge(&tenant, &queue).await?;
    state
        .metrics
        .outcomes
        .of(&crate::capabilities::queue::JOBS)
        .count_by("purged", deleted);
    Ok(Json(Purged { deleted }))
}
