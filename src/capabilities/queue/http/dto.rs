//! The request and response bodies of the queue routes, and their checks.

use super::*;

id_path!(QueuePath, queue => QueueName, "emails", "The queue: 1–256 bytes of `[A-Za-z0-9._:@-]`.");

/// The path of one job of a queue.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The queue: 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "emails")]
    pub(super) queue: String,
    /// The job's id, as enqueue returned it.
    #[param(
        pattern = "^[A-Za-z0-9._:@-]{1,256}$",
        example = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    )]
    pub(super) job_id: String,
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
    pub(super) payload: Box<RawValue>,
    /// 0 to 9, 9 first (default 0); FIFO within a priority.
    #[schema(value_type = Option<u8>, minimum = 0, maximum = 9)]
    pub(super) priority: Option<Whole>,
    /// Not leasable before this many ms from now (default 0).
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 2592000000_u64)]
    pub(super) delay_ms: Option<Whole>,
    /// Attempts before the job is dead: 1 to 1000 (default 3).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(super) max_attempts: Option<Whole>,
    pub(super) backoff: Option<BackoffInput>,
    /// An enqueue with a key seen within `queues.dedup_window_seconds` returns the first job.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,256}$")]
    pub(super) dedup_key: Option<String>,
}

/// How long a failed attempt waits before the next: `base_ms`, or `base_ms × 2^(attempt-1)`,
/// at most `max_ms` (default: exponential from 1 s, at most 5 minutes).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "exponential", "base_ms": 1000, "max_ms": 60000}))]
pub struct BackoffInput {
    pub(super) kind: BackoffKind,
    #[schema(value_type = u64, minimum = 0, maximum = 86400000)]
    pub(super) base_ms: Whole,
    #[schema(value_type = u64, minimum = 0, maximum = 86400000)]
    pub(super) max_ms: Whole,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}))]
pub struct Enqueued {
    pub(super) job_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"count": 10, "visibility_ms": 30000, "wait_ms": 5000}))]
pub struct LeaseRequest {
    /// Jobs to take at most: 1 to 100 (default 1).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub(super) count: Option<Whole>,
    /// How long a job stays leased unless acked, nacked or heartbeated: 1 ms to 12 h.
    #[schema(value_type = u64, minimum = 1, maximum = 43200000)]
    pub(super) visibility_ms: Whole,
    /// Long poll: how long to wait for a job when none is ready (default 0).
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 20000)]
    pub(super) wait_ms: Option<Whole>,
}

#[derive(Serialize, ToSchema)]
pub struct LeasedJob {
    pub(super) job_id: String,
    #[schema(value_type = serde_json::Value)]
    pub(super) payload: Box<RawValue>,
    /// 1 for the first lease of the job.
    pub(super) attempt: u32,
    pub(super) lease_token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) lease_expires_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"jobs": [{"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "payload": {"to": "ada@example.com"}, "attempt": 1, "lease_token": "k2v7Qm0cXr1aT9bL3pZs8w",
    "lease_expires_at": "2026-11-23T22:30:00.123Z"}]}))]
pub struct LeaseResponse {
    /// Empty when no job was ready within `wait_ms`.
    pub(super) jobs: Vec<LeasedJob>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lease_token": "k2v7Qm0cXr1aT9bL3pZs8w"}))]
pub struct AckRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub(super) lease_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lease_token": "k2v7Qm0cXr1aT9bL3pZs8w", "error": "SMTP timeout"}))]
pub struct NackRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub(super) lease_token: String,
    /// Retry after this long instead of the job's back-off.
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 2592000000_u64)]
    pub(super) delay_ms: Option<Whole>,
    /// Why it failed, kept as the job's `last_error` (at most 1024 characters).
    #[schema(max_length = 1024)]
    pub(super) error: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lease_token": "k2v7Qm0cXr1aT9bL3pZs8w", "visibility_ms": 30000}))]
pub struct HeartbeatRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub(super) lease_token: String,
    /// The lease now ends this long from now.
    #[schema(value_type = u64, minimum = 1, maximum = 43200000)]
    pub(super) visibility_ms: Whole,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"state": "done"}))]
pub struct JobStateBody {
    pub(super) state: JobState,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"lease_expires_at": "2026-11-23T22:30:00.123Z"}))]
pub struct LeaseExtended {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) lease_expires_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "state": "dead",
    "priority": 5, "attempt": 3, "max_attempts": 3, "payload": {"to": "ada@example.com"},
    "enqueued_at": "2026-11-23T22:00:00Z", "at": "2026-11-23T22:10:00Z", "last_error": "SMTP timeout"}))]
pub struct JobBody {
    pub(super) job_id: String,
    pub(super) state: JobState,
    pub(super) priority: u8,
    pub(super) attempt: u32,
    pub(super) max_attempts: u32,
    #[schema(value_type = serde_json::Value)]
    pub(super) payload: Box<RawValue>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) enqueued_at: OffsetDateTime,
    /// Delayed: when it becomes ready; leased: when the lease ends; done or dead: when it
    /// finished; ready: when it became ready or was enqueued.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"delayed": 2, "ready": 40, "leased": 8, "done": 1200, "dead": 1}))]
pub struct QueueCounts {
    pub(super) delayed: u64,
    pub(super) ready: u64,
    pub(super) leased: u64,
    /// Finished within the last hour.
    pub(super) done: u64,
    pub(super) dead: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"jobs": [{"job_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "state": "dead",
    "priority": 0, "attempt": 3, "max_attempts": 3, "payload": {"to": "ada@example.com"},
    "enqueued_at": "2026-11-23T22:00:00Z", "at": "2026-11-23T22:10:00Z", "last_error": "SMTP timeout"}]}))]
pub struct DeadJobs {
    pub(super) jobs: Vec<JobBody>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"deleted": 12}))]
pub struct Purged {
    pub(super) deleted: u64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// At most this many, oldest death first: 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub(super) limit: Option<usize>,
}

pub(super) fn raw(json: String) -> ApiResult<Box<RawValue>> {
    RawValue::from_string(json).map_err(|_| ApiError::internal())
}

pub(super) fn within(
    name: &str,
    Whole(value): Whole,
    range: std::ops::RangeInclusive<u64>,
) -> ApiResult<u64> {
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

pub(super) fn lease_token(token: &str) -> ApiResult<&str> {
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

pub(super) fn job_body(job: Job) -> ApiResult<JobBody> {
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
    pub(super) fn accept(self, state: &AppState) -> ApiResult<NewJob> {
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
