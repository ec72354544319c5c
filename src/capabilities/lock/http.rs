//! `/v1/locks` and `/v1/fences`: mutual exclusion with fencing tokens.
//!
//! Decisions the contract leaves open:
//! - `ttl_ms` is 1 ms to `limits.max_ttl_seconds`; `wait_ms` is 0 to 20 s, shortened to end
//!   250 ms before `server.request_timeout_ms` (a longer wait could never be answered).
//! - A waiter is woken by a release on any instance (Redis pub/sub), else when the holder's
//!   lease ends, else after at most a second: never a busy loop. Fairness is not promised.
//! - 409 `lock_held` (someone else holds it now, `retry_after_ms`: the most it is held, a
//!   release may come sooner) differs from 410 `lock_lost` (this token no longer holds the
//!   lock: it expired, or it was taken after expiry). A wrong token changes nothing.
//! - `expires_at` is RFC 3339 with milliseconds, from the backend's clock.
//! - `POST /v1/fences/{name}/check` accepts a token equal to or above both the lock's last grant
//!   and the highest token checked before, and raises the mark: a paused holder whose lock was
//!   granted again is refused. Tokens are at most 2^53 − 1 (exact in JSON everywhere).

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::http::{
    AppState,
    extract::{AppJson, ReadAt, Whole, WriteAt, id_path, time_of_us as time},
};
use crate::{
    capabilities::lock::{
        model::{
            Acquire, Acquired, Fence, FenceCheck, LockName, LockToken, MAX_FENCING_TOKEN,
            MAX_OWNER_CHARS, MAX_WAIT_MS,
        },
        port::acquire_waiting,
    },
    error::{ApiError, ApiResult},
};

/// How long before `server.request_timeout_ms` a wait gives up, to answer in time.
const WAIT_MARGIN_MS: u64 = 250;
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        acquire,
        extend,
        release,
        get_lock,
        check_fence,
    ),
    tags(
    (name = "locks", description = "Mutual exclusion with fencing tokens: waits woken by release, \
                                     lost locks told apart from held ones"),
    )
)]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/locks/{name}",
            post(acquire).get(get_lock).delete(release),
        )
        .route("/v1/locks/{name}/extend", post(extend))
        .route("/v1/fences/{name}/check", post(check_fence))
}

id_path!(LockPath, name => LockName, "invoice-42", "The lock's name: 1–256 bytes of `[A-Za-z0-9._:@-]`.");

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ttl_ms": 30000, "wait_ms": 5000, "owner": "worker-7"}))]
pub struct AcquireRequest {
    /// How long the lock is held unless extended or released: 1 ms to `limits.max_ttl_seconds`.
    #[schema(value_type = u64, minimum = 1, maximum = 2592000000_u64, example = 30000)]
    ttl_ms: Whole,
    /// How long to wait for the lock when it is held (default 0: answer at once); a wait past
    /// `server.request_timeout_ms` is shortened to end before it.
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 20000, example = 5000)]
    wait_ms: Option<Whole>,
    /// Free text shown by `GET` (1–256 characters); never the lock token.
    #[schema(min_length = 1, max_length = 256, example = "worker-7")]
    owner: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"lock_token": "q3Y8m2kP0vX1b7LwZc9t4A", "fencing_token": 1763935200123456_u64, "expires_at": "2026-11-23T22:30:00.123Z"}))]
pub struct LockGranted {
    /// The holder's secret: extend and release need it; `GET` never shows it.
    #[schema(example = "q3Y8m2kP0vX1b7LwZc9t4A")]
    lock_token: String,
    /// Strictly increasing per lock name over every grant: pass it to the storage you write,
    /// which refuses older ones (or ask `POST /v1/fences/{name}/check`).
    #[schema(example = 1763935200123456_u64)]
    fencing_token: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lock_token": "q3Y8m2kP0vX1b7LwZc9t4A", "ttl_ms": 30000}))]
pub struct ExtendRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    lock_token: String,
    /// The new expiry is `ttl_ms` from now.
    #[schema(value_type = u64, minimum = 1, maximum = 2592000000_u64, example = 30000)]
    ttl_ms: Whole,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"expires_at": "2026-11-23T22:30:00.123Z"}))]
pub struct LockExpiry {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"held": true, "owner": "worker-7", "expires_at": "2026-11-23T22:30:00.123Z", "fencing_token": 1763935200123456_u64}))]
pub struct LockStatus {
    held: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
    /// The last fencing token granted (0: none known).
    fencing_token: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fencing_token": 1763935200123456_u64}))]
pub struct FenceRequest {
    #[schema(value_type = u64, minimum = 0, maximum = 9007199254740991_u64)]
    fencing_token: Whole,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"accepted": true}))]
pub struct FenceAccepted {
    /// Always true.
    accepted: bool,
}

fn ttl_ms(state: &AppState, Whole(ttl_ms): Whole) -> ApiResult<u64> {
    let max = state.settings.limits.max_ttl_seconds * 1000;
    if (1..=max).contains(&ttl_ms) {
        Ok(ttl_ms)
    } else {
        Err(ApiError::validation_failed(format!(
            "ttl_ms must be from 1 to {max} (limits.max_ttl_seconds)"
        )))
    }
}

fn lock_token(raw: String) -> ApiResult<LockToken> {
    LockToken::parse(raw).map_err(|e| ApiError::validation_failed(e.to_string()))
}

impl AcquireRequest {
    fn accept(self, state: &AppState) -> ApiResult<(Acquire, Duration)> {
        let ttl_ms = ttl_ms(state, self.ttl_ms)?;
        let wait_ms = self.wait_ms.map_or(0, |Whole(ms)| ms);
        if wait_ms > MAX_WAIT_MS {
            return Err(ApiError::validation_failed(format!(
                "wait_ms must be from 0 to {MAX_WAIT_MS}"
            )));
        }
        // The answer must leave before the request's deadline.
        let deadline = state.settings.server.request_timeout_ms;
        let wait_ms = wait_ms.min(deadline.saturating_sub(WAIT_MARGIN_MS));
        if let Some(owner) = &self.owner
            && (owner.is_empty() || owner.chars().count() > MAX_OWNER_CHARS)
        {
            return Err(ApiError::validation_failed(format!(
                "owner must be 1-{MAX_OWNER_CHARS} characters"
            )));
        }
        let request = Acquire {
            token: LockToken::generate(),
            ttl_ms,
            owner: self.owner,
        };
        Ok((request, Duration::from_millis(wait_ms)))
    }
}

/// Take a lock, waiting up to `wait_ms` for its release.
#[utoipa::path(
    post, path = "/v1/locks/{name}", tag = "locks", operation_id = "lock_acquire",
    params(LockPath),
    request_body = AcquireRequest,
    responses(
        (status = 200, description = "Granted", body = LockGranted),
        (status = 400, description = "Invalid name or malformed JSON"),
        (status = 409, description = "`lock_held`: another holder has it (after `wait_ms`); `retry_after_ms` is the most it stays held",
         headers(("Retry-After" = u64, description = "Seconds until the holder's lease ends"))),
        (status = 422, description = "TTL or wait out of range, bad owner or unknown field"),
    ),
)]
pub async fn acquire(
    State(state): State<AppState>,
    WriteAt(tenant, name): WriteAt<LockPath>,
    AppJson(body): AppJson<AcquireRequest>,
) -> ApiResult<Json<LockGranted>> {
    let (request, wait) = body.accept(&state)?;
    let store = state.stores.locks.as_ref();
    let locks = &state.metrics.outcomes.of(&super::OPERATIONS);
    match acquire_waiting(store, &tenant, &name, &request, wait).await? {
        Acquired::Granted(grant) => {
            locks.count("granted");
            Ok(Json(LockGranted {
                lock_token: request.token.to_string(),
                fencing_token: grant.fencing_token,
                expires_at: time(grant.expires_at_us)?,
            }))
        }
        Acquired::Held { retry_after_us } => {
            locks.count("conflict");
            Err(LockRefusal::Held { retry_after_us }.into())
        }
    }
}

/// Extend the lease of a held lock.
#[utoipa::path(
    post, path = "/v1/locks/{name}/extend", tag = "locks", operation_id = "lock_extend",
    params(LockPath),
    request_body = ExtendRequest,
    responses(
        (status = 200, description = "The new expiry", body = LockExpiry),
        (status = 400, description = "Invalid name or malformed JSON"),
        (status = 410, description = "`lock_lost`: this token no longer holds the lock; nothing changed"),
        (status = 422, description = "TTL out of range, malformed token or unknown field"),
    ),
)]
pub async fn extend(
    State(state): State<AppState>,
    WriteAt(tenant, name): WriteAt<LockPath>,
    AppJson(body): AppJson<ExtendRequest>,
) -> ApiResult<Json<LockExpiry>> {
    let ttl = ttl_ms(&state, body.ttl_ms)?;
    let token = lock_token(body.lock_token)?;
    let until = state
        .stores
        .locks
        .extend(&tenant, &name, &token, ttl)
        .await?;
    let locks = &state.metrics.outcomes.of(&super::OPERATIONS);
    locks.count(if until.is_some() { "extended" } else { "lost" });
    let until = until.ok_or(LockRefusal::Lost)?;
    Ok(Json(LockExpiry {
        expires_at: time(until)?,
    }))
}

/// Release a lock by its token (header `Lock-Token`); waiters on every instance are woken.
#[utoipa::path(
    delete, path = "/v1/locks/{name}", tag = "locks", operation_id = "lock_release",
    params(
        LockPath,
        ("Lock-Token" = String, Header, description = "The token acquire returned", pattern = "^[A-Za-z0-9_-]{1,64}$"),
    ),
    responses(
        (status = 204, description = "Released"),
        (status = 400, description = "Invalid name, or no `Lock-Token` header"),
        (status = 410, description = "`lock_lost`: this token does not hold the lock (expired or someone else's); the lock is untouched"),
    ),
)]
pub async fn release(
    State(state): State<AppState>,
    WriteAt(tenant, name): WriteAt<LockPath>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let raw = headers
        .get("lock-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::invalid_request("send the lock token in a Lock-Token header"))?;
    let token = LockToken::parse(raw).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let released = state.stores.locks.release(&tenant, &name, &token).await?;
    let locks = &state.metrics.outcomes.of(&super::OPERATIONS);
    locks.count(if released { "released" } else { "lost" });
    if released {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(LockRefusal::Lost.into())
    }
}

/// Whether a lock is held, by whom (`owner`) and until when; never the lock token.
#[utoipa::path(
    get, path = "/v1/locks/{name}", tag = "locks", operation_id = "lock_get",
    params(LockPath),
    responses(
        (status = 200, description = "The lock's state (also for a lock never taken)", body = LockStatus),
        (status = 400, description = "Invalid name"),
    ),
)]
pub async fn get_lock(
    State(state): State<AppState>,
    ReadAt(tenant, name): ReadAt<LockPath>,
) -> ApiResult<Json<LockStatus>> {
    let info = state.stores.locks.get(&tenant, &name).await?;
    Ok(Json(LockStatus {
        held: info.held,
        owner: info.owner,
        expires_at: info.expires_at_us.map(time).transpose()?,
        fencing_token: info.fencing_token,
    }))
}

/// Check a fencing token before a write: refused when a later holder exists.
#[utoipa::path(
    post, path = "/v1/fences/{name}/check", tag = "locks", operation_id = "fence_check",
    params(LockPath),
    request_body = FenceRequest,
    responses(
        (status = 200, description = "Accepted: no later grant or check; the mark is raised to this token", body = FenceAccepted),
        (status = 400, description = "Invalid name or malformed JSON"),
        (status = 409, description = "`stale_fencing_token`: a later holder exists; `highest` is the highest token known. `fencing_token_not_issued`: no grant issued this token (it is above the last grant and the clock); nothing was changed"),
        (status = 422, description = "Token out of range or unknown field"),
    ),
)]
pub async fn check_fence(
    State(state): State<AppState>,
    WriteAt(tenant, name): WriteAt<LockPath>,
    AppJson(body): AppJson<FenceRequest>,
) -> ApiResult<Json<FenceAccepted>> {
    let Whole(fencing_token) = body.fencing_token;
    if fencing_token > MAX_FENCING_TOKEN {
        return Err(ApiError::validation_failed(
            "fencing_token is at most 2^53 - 1, as acquire issues them",
        ));
    }
    if state.settings.inject_bug == Some(crate::config::InjectedBug::FenceIgnoresToken) {
        return Ok(Json(FenceAccepted { accepted: true }));
    }
    let locks = &state.stores.locks;
    match locks
        .check_fence(&tenant, &name, Fence::Checked(fencing_token))
        .await?
    {
        FenceCheck::Accepted => Ok(Json(FenceAccepted { accepted: true })),
        FenceCheck::Stale { highest } => Err(LockRefusal::StaleFence { highest }.into()),
        FenceCheck::NotIssued { .. } => Err(LockRefusal::NotIssued.into()),
    }
}

/// Why a lock operation did not happen.
#[derive(Debug, Clone, Copy)]
pub enum LockRefusal {
    /// Someone else holds the lock, for this long at most.
    Held { retry_after_us: u64 },
    /// The token no longer holds the lock: it expired, or was taken after expiry.
    Lost,
    /// A later grant or check exists.
    StaleFence { highest: u64 },
    /// A fence check's token is above every grant and the clock: no grant issued it.
    NotIssued,
}

impl From<LockRefusal> for ApiError {
    fn from(refusal: LockRefusal) -> Self {
        match refusal {
            LockRefusal::Held { retry_after_us } => {
                let ms = retry_after_us.div_ceil(1000);
                Self::conflict("lock_held", "another holder has this lock")
                    .with("retry_after_ms", ms)
                    .retry_after(u32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX))
            }
            LockRefusal::Lost => Self::gone(
                "lock_lost",
                "this token no longer holds the lock: it expired, or another holder took it; \
                 nothing was changed",
            ),
            LockRefusal::StaleFence { highest } => Self::conflict(
                "stale_fencing_token",
                "a later holder of this lock exists: refuse the write",
            )
            .with("highest", highest),
            LockRefusal::NotIssued => Self::conflict(
                "fencing_token_not_issued",
                "no grant of this lock issued this token (it is above the last grant and the \
                 clock): nothing was changed",
            ),
        }
    }
}
