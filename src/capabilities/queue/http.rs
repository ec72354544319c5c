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

id_path!(QueuePath, queue => QueueName, "emails", "The queue: 1–256 bytes of `[A-Za-z0-9._:@-]`.");

/// The path of one job of a queue.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The queue: 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "emails")]
    queue: String,
    /// The job's id, as enqueue returned it.
    #[param(
        pattern = "^[A-Za-z0-9._:@-]{1,256}$",
        example = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    )]
    job_id: String,
}

impl ItemPath for JobPath {
    type Id = (QueueName, JobId);

    fn parse(self) -> ApiResult<(QueueName, JobId)> {
        Ok((QueueName::parse(self.queue)?, JobId::parse(self.job_id)?))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"payload": {"to": "ada@example.com"}, "priority": 5, "delay_ms": 0,
    "max_attempts": 3, "backoff": {"kind": "exponential", "base_ms": 1000, "max_ms": 60000},
    "dedup_key": "welcome-ada"}))]
pub struct EnqueueRequest {
    /// Any JSON, handed back to the worker exactly as sent (`queues.max_payload_bytes`).
    #[schema(value_type = serde_json::Value)]
    payload: Box<RawValue>,
    /// 0 to 9, 9 first (default 0); FIFO within a priority.
    #[schema(value_type = Option<u8>, minimum = 0, maximum = 9)]
    priority: Option<Whole>,
    /// Not leasable before this many ms from now (default 0).
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 2592000000_u64)]
    delay_ms: Option<Whole>,
    /// Attempts before the job is dead: 1 to 1000 (default 3).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    max_attempts: Option<Whole>,
    backoff: Option<BackoffInput>,
    /// An enqueue with a key seen within `queues.dedup_window_seconds` returns the first job.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,256}$")]
    dedup_key: Option<String>,
}

/// How long a failed attempt waits before the next: `base_ms`, or `base_ms × 2^(attempt-1)`,
/// at most `max_ms` (default: exponential from 1 s, at most 5 minutes).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "exponential", "base_ms": 1000, "max_ms": 60000}))]
pub struct BackoffInput {
    kind: BackoffKind,
    #[schema(value_type = u64, minimum = 0, maximum = 86400000)]
    base_ms: Whole,
    #[schema(value_type = u64, minimum = 0, maximum = 86400000)]
    max_ms: Whole,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}))]
pub struct Enqueued {
    job_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"count": 10, "visibility_ms": 30000, "wait_ms": 5000}))]
pub struct LeaseRequest {
    /// Jobs to take at most: 1 to 100 (default 1).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100)]
    count: Option<Whole>,
    /// How long a job stays leased unless acked, nacked or heartbeated: 1 ms to 12 h.
    #[schema(value_type = u64, minimum = 1, maximum = 43200000)]
    visibility_ms: Whole,
    /// Long poll: how long to wait for a job when none is ready (default 0).
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 20000)]
    wait_ms: Option<Whole>,
}

#[derive(Serialize, ToSchema)]
pub struct LeasedJob {
    job_id: String,
    #[schema(value_type = serde_json::Value)]
    payload: Box<RawValue>,
    /// 1 for the first lease of the job.
    attempt: u32,
    lease_token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    lease_expires_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"jobs": [{"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "payload": {"to": "ada@example.com"}, "attempt": 1, "lease_token": "k2v7Qm0cXr1aT9bL3pZs8w",
    "lease_expires_at": "2026-11-23T22:30:00.123Z"}]}))]
pub struct LeaseResponse {
    /// Empty when no job was ready within `wait_ms`.
    jobs: Vec<LeasedJob>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lease_token": "k2v7Qm0cXr1aT9bL3pZs8w"}))]
pub struct AckRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    lease_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lease_token": "k2v7Qm0cXr1aT9bL3pZs8w", "error": "SMTP timeout"}))]
pub struct NackRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    lease_token: String,
    /// Retry after this long instead of the job's back-off.
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 2592000000_u64)]
    delay_ms: Option<Whole>,
    /// Why it failed, kept as the job's `last_error` (at most 1024 characters).
    #[schema(max_length = 1024)]
    error: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lease_token": "k2v7Qm0cXr1aT9bL3pZs8w", "visibility_ms": 30000}))]
pub struct HeartbeatRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    lease_token: String,
    /// The lease now ends this long from now.
    #[schema(value_type = u64, minimum = 1, maximum = 43200000)]
    visibility_ms: Whole,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"state": "done"}))]
pub struct JobStateBody {
    state: JobState,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"lease_expires_at": "2026-11-23T22:30:00.123Z"}))]
pub struct LeaseExtended {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    lease_expires_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "state": "dead",
    "priority": 5, "attempt": 3, "max_attempts": 3, "payload": {"to": "ada@example.com"},
    "enqueued_at": "2026-11-23T22:00:00Z", "at": "2026-11-23T22:10:00Z", "last_error": "SMTP timeout"}))]
pub struct JobBody {
    job_id: String,
    state: JobState,
    priority: u8,
    attempt: u32,
    max_attempts: u32,
    #[schema(value_type = serde_json::Value)]
    payload: Box<RawValue>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    enqueued_at: OffsetDateTime,
    /// Delayed: when it becomes ready; leased: when the lease ends; done or dead: when it
    /// finished; ready: when it became ready or was enqueued.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"delayed": 2, "ready": 40, "leased": 8, "done": 1200, "dead": 1}))]
pub struct QueueCounts {
    delayed: u64,
    ready: u64,
    leased: u64,
    /// Finished within the last hour.
    done: u64,
    dead: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"jobs": [{"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "state": "dead",
    "priority": 0, "attempt": 3, "max_attempts": 3, "payload": {"to": "ada@example.com"},
    "enqueued_at": "2026-11-23T22:00:00Z", "at": "2026-11-23T22:10:00Z", "last_error": "SMTP timeout"}]}))]
pub struct DeadJobs {
    jobs: Vec<JobBody>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"deleted": 12}))]
pub struct Purged {
    deleted: u64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// At most this many, oldest death first: 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn raw(json: String) -> ApiResult<Box<RawValue>> {
    RawValue::from_string(json).map_err(|_| ApiError::internal())
}

fn within(name: &str, Whole(value): Whole, range: std::ops::RangeInclusive<u64>) -> ApiResult<u64> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation_failed(format!(
            "{name} must be from {} to {}",
            range.start(),
            range.end()
        )))
    }
}

fn lease_token(token: &str) -> ApiResult<&str> {
    let valid = (1..=64).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(token)
    } else {
        Err(ApiError::validation_failed(
            "a lease token is 1-64 bytes of [A-Za-z0-9_-], as lease returned it",
        ))
    }
}

fn job_body(job: Job) -> ApiResult<JobBody> {
    Ok(JobBody {
        payload: raw(job.payload)?,
        job_id: job.id,
        state: job.state,
        priority: job.priority,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        enqueued_at: time(job.enqueued_at_us)?,
        at: time(job.at_us)?,
        last_error: job.last_error,
    })
}

impl EnqueueRequest {
    fn accept(self, state: &AppState) -> ApiResult<NewJob> {
        let settings = &state.settings.queues;
        if self.payload.get().len() > settings.max_payload_bytes {
            return Err(ApiError::payload_too_large(format!(
                "the payload is larger than queues.max_payload_bytes ({})",
                settings.max_payload_bytes
            )));
        }
        let backoff = match self.backoff {
            None => Backoff::default(),
            Some(b) => Backoff {
                kind: b.kind,
                base_ms: within("backoff.base_ms", b.base_ms, 0..=MAX_BACKOFF_MS)?,
                max_ms: within("backoff.max_ms", b.max_ms, 0..=MAX_BACKOFF_MS)?,
            },
        };
        if let Some(key) = &self.dedup_key
            && (key.is_empty() || key.len() > 256 || !crate::domain::ids::valid_id(key))
        {
            return Err(ApiError::validation_failed(
                "dedup_key must be 1-256 bytes of [A-Za-z0-9._:@-]",
            ));
        }
        let whole = |v: Option<Whole>, default| v.unwrap_or(Whole(default));
        Ok(NewJob {
            payload: self.payload.get().to_string(),
            priority: within(
                "priority",
                whole(self.priority, 0),
                0..=u64::from(MAX_PRIORITY),
            )? as u8,
            delay_ms: within("delay_ms", whole(self.delay_ms, 0), 0..=MAX_DELAY_MS)?,
            max_attempts: within(
                "max_attempts",
                whole(self.max_attempts, 3),
                1..=u64::from(MAX_ATTEMPTS),
            )? as u32,
            backoff,
            dedup_key: self.dedup_key,
            dedup_window_ms: settings.dedup_window_seconds * 1000,
        })
    }
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
    let jobs = &state.metrics.outcomes.jobs;
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
        .map(|_| crate::capabilities::lock::model::LockToken::generate().to_string())
        .collect();
    let store = state.stores.queues.as_ref();
    let wait = Duration::from_millis(wait);
    let leases = lease_waiting(store, &tenant, &queue, &tokens, visibility, wait).await?;
    let leased = u64::try_from(leases.jobs.len()).unwrap_or(u64::MAX);
    state.metrics.outcomes.jobs.count_by("leased", leased);
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
    let jobs = &state.metrics.outcomes.jobs;
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
            let jobs = &state.metrics.outcomes.jobs;
            jobs.count(if job_state == JobState::Dead {
                "dead"
            } else {
                "retried"
            });
            Ok(Json(JobStateBody { state: job_state }))
        }
        None => {
            state.metrics.outcomes.jobs.count("lease_lost");
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
        state.metrics.outcomes.jobs.count("redriven");
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
    state.metrics.outcomes.jobs.count_by("purged", deleted);
    Ok(Json(Purged { deleted }))
}
