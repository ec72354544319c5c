//! `ApiError`: every error the HTTP API returns, and its one mapping to an RFC 9457
//! `application/problem+json` response with a stable `code`.

use axum::{
    extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    domain::{ids::InvalidId, ttl::InvalidTtl},
    store::StoreError,
};

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:statekeeper:problem:{code}`.
    #[schema(example = "urn:statekeeper:problem:not_found")]
    pub r#type: String,
    #[schema(example = "Not Found")]
    pub title: String,
    #[schema(example = 404)]
    pub status: u16,
    #[schema(example = "no value for this key")]
    pub detail: String,
    /// Stable, machine-readable error code.
    #[schema(example = "not_found")]
    pub code: String,
    /// How long the holder keeps the lock at most, in milliseconds (`lock_held`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after_ms: Option<u64>,
    /// The highest fencing token known (`stale_fencing_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub highest: Option<u64>,
    /// What remains of the budget this period (`budget_exceeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub remaining: Option<u64>,
    /// The amount the reservation holds (`exceeds_reservation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reserved: Option<u64>,
}

/// An error response. Build one with the constructors; `code` values are stable API.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u32>,
    /// Extension members of the problem document (RFC 9457 §3.2), e.g. `retry_after_ms`.
    pub extensions: Vec<(&'static str, serde_json::Value)>,
    /// The `WWW-Authenticate` challenge of a 401 other than the plain one.
    challenge: Option<&'static str>,
}

/// The challenge of every 401 (RFC 6750 §3).
const CHALLENGE: &str = r#"Bearer realm="statekeeper""#;
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="statekeeper", error="invalid_token""#;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
            extensions: Vec::new(),
            challenge: None,
        }
    }

    /// Adds an extension member to the problem document.
    pub fn with(mut self, name: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.push((name, value.into()));
        self
    }

    /// Adds a `Retry-After` header of `seconds`.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    pub fn invalid_id(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_id", detail)
    }

    /// No API key where one is needed (RFC 6750: answered with `WWW-Authenticate: Bearer`).
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// An API key that is not one of the service's (`error="invalid_token"` in the challenge).
    pub fn invalid_key(detail: impl Into<String>) -> Self {
        Self::unauthorized(detail).with_challenge(INVALID_TOKEN_CHALLENGE)
    }

    fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.challenge = Some(challenge);
        self
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn gone(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, code, detail)
    }

    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            detail,
        )
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )
    }

    pub fn validation_failed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        )
    }

    /// A shared resource of this instance (streams, MCP sessions) is at its limit.
    pub fn over_capacity(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "over_capacity", detail)
    }

    pub fn backend_unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            detail,
        )
    }

    pub fn timeout(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", detail)
    }

    /// 507: no room for a write; reads still work.
    pub fn backend_full(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INSUFFICIENT_STORAGE, "backend_full", detail)
    }

    /// The opaque 500: the cause is logged by the caller, never sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle this request",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            r#type: format!("urn:statekeeper:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            retry_after_ms: None,
            highest: None,
            remaining: None,
            reserved: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, challenge) = (self.status, self.challenge);
        let mut response = if self.extensions.is_empty() {
            problem_response(self.status, &self.problem())
        } else {
            let mut body = serde_json::to_value(self.problem()).unwrap_or_default();
            if let Some(members) = body.as_object_mut() {
                members.extend(self.extensions.into_iter().map(|(k, v)| (k.to_string(), v)));
            }
            problem_response(self.status, &body)
        };
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = challenge.unwrap_or(CHALLENGE);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// Serialises a problem with its media type. Also used for problems that carry extra fields.
pub fn problem_response(status: StatusCode, body: &impl Serialize) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(why) => {
                tracing::debug!(reason = %why, "backend unavailable");
                Self::backend_unavailable("the storage backend is unavailable; retry later")
                    .retry_after(1)
            }
            StoreError::Busy(why) => {
                tracing::warn!(reason = %why, "Redis pool exhausted");
                Self::timeout("the service is overloaded; retry later").retry_after(1)
            }
            StoreError::Full(why) => {
                tracing::warn!(reason = %why, "backend full");
                Self::backend_full(
                    "the storage backend is out of memory; nothing was written, reads still work",
                )
                .retry_after(5)
            }
            StoreError::Interrupted(why) => {
                tracing::warn!(reason = %why, "Redis connection broke during a call");
                Self::backend_unavailable(
                    "the connection to the storage backend broke during this call, so it may or \
                     may not have taken effect; check the state before retrying",
                )
                .retry_after(1)
            }
            StoreError::NotReplicated(why) => {
                tracing::warn!(reason = %why, "write not confirmed by the replicas");
                Self::backend_unavailable(
                    "the write was made but not confirmed by enough replicas in time, so a \
                     failover could still lose it; check the state before retrying",
                )
                .retry_after(1)
            }
            StoreError::Refused(why) => {
                tracing::warn!(reason = %why, "backend refused the call");
                Self::backend_unavailable(
                    "the storage backend cannot serve this now (read-only, loading or busy); \
                     retry later",
                )
                .retry_after(1)
            }
            StoreError::Internal(why) => {
                tracing::error!(error = %why, "store failure");
                Self::internal()
            }
        }
    }
}

/// A resource a request named and did not find.
#[derive(Debug, Clone, Copy)]
pub enum Missing {
    CacheValue,
    AgentState,
    PendingAction,
    Session,
    Job,
    Budget,
    Reservation,
}

impl Missing {
    /// `status` when the resource was found, else this 404.
    pub fn unless(self, found: bool, status: StatusCode) -> Result<StatusCode, ApiError> {
        if found { Ok(status) } else { Err(self.into()) }
    }
}

impl From<Missing> for ApiError {
    fn from(missing: Missing) -> Self {
        Self::not_found(match missing {
            Missing::CacheValue => "no value for this key",
            Missing::AgentState => "no agent state for this thread id",
            Missing::PendingAction => "no pending action with this token (unknown or expired)",
            Missing::Session => "no live session with this id",
            Missing::Job => {
                "no job with this id in this queue (unknown, purged, or finished over an hour ago)"
            }
            Missing::Budget => "no budget for this subject and metric",
            Missing::Reservation => {
                "no live reservation with this id (committed, released, or expired and returned)"
            }
        })
    }
}

/// A write refused because of the state it found: 409 with the conflict's own code.
#[derive(Debug, Clone, Copy)]
pub enum Conflict {
    /// A pending action confirmed before (by another caller, or without the same key).
    AlreadyConfirmed,
    AlreadyCancelled,
    /// Create found a live thread with the requested id.
    ThreadExists,
    /// A versioned write kept losing to concurrent writes and gave up.
    ThreadContended,
    /// Compare-and-set found another value than the expected one.
    ValueChanged,
    /// The lease token holds no live lease on the job: it expired, or the job was leased again
    /// or finished.
    LeaseLost,
    /// Redrive of a job that is not dead.
    NotDead,
}

impl From<Conflict> for ApiError {
    fn from(conflict: Conflict) -> Self {
        let (code, detail) = match conflict {
            Conflict::AlreadyConfirmed => (
                "already_confirmed",
                "this action has already been confirmed",
            ),
            Conflict::AlreadyCancelled => ("already_cancelled", "this action has been cancelled"),
            Conflict::ThreadExists => ("conflict", "a live agent state with this thread id exists"),
            Conflict::ThreadContended => (
                "conflict",
                "the thread changed concurrently too often; nothing was written, retry",
            ),
            Conflict::ValueChanged => ("conflict", "the current value is not the expected one"),
            Conflict::LeaseLost => (
                "lease_lost",
                "this lease token no longer holds the job (its lease expired, or the job was \
                 leased again or finished); nothing was changed",
            ),
            Conflict::NotDead => ("not_dead", "only a dead job can be redriven"),
        };
        Self::conflict(code, detail)
    }
}

impl From<InvalidId> for ApiError {
    fn from(error: InvalidId) -> Self {
        Self::invalid_id(error.to_string())
    }
}

/// A TTL in a JSON body; a TTL in a query string is a 400 `invalid_request` instead.
impl From<InvalidTtl> for ApiError {
    fn from(error: InvalidTtl) -> Self {
        Self::validation_failed(error.to_string())
    }
}

/// Extractor rejections (bodies, paths, queries) in the house format.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::validation_failed(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::invalid_request(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::unsupported_media_type("expected Content-Type: application/json")
            }
            JsonRejection::BytesRejection(e) => bytes_rejection(e),
            other => ApiError::invalid_request(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        bytes_rejection(rejection)
    }
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large("the request body is larger than limits.max_body_bytes")
    } else {
        ApiError::invalid_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::invalid_id(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid_request(rejection.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
