//! `/v1/pending-actions`: confirmation tokens, confirmed by exactly one caller.
//!
//! Decisions the contract leaves open:
//! - `GET` of a confirmed or cancelled token returns it with its status (and `confirmed_at` or
//!   `cancelled_at`) for as long as its tombstone lives; then 404 like an unknown token.
//! - Confirming a cancelled token is 409 `already_cancelled`.
//! - Cancelling a cancelled token again is 204 (cancel is idempotent; nothing changes, the
//!   tombstone's lifetime included); cancelling a confirmed one is 409 `already_confirmed`.
//! - Another tenant's token is 404 on every route, never 403, so a token's existence leaks
//!   nothing across tenants.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::http::{
    AppState,
    extract::{AppJson, ItemPath, ReadAt, WriteAt, Writer},
};
use crate::{
    capabilities::pending_action::model::{
        self, ActionStatus, ActionToken, Cancel, Confirm, IdempotencyKey, NewPendingAction,
        PendingAction, TombstoneLife,
    },
    domain::ttl::Ttl,
    error::{ApiError, ApiResult, Conflict, Missing},
};
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_action,
        get_action,
        confirm_action,
        cancel_action,
    ),
    tags(
    (name = "pending_actions", description = "Confirmation tokens, each confirmed by exactly one caller"),
    )
)]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/pending-actions", post(create_action))
        .route("/v1/pending-actions/{token}", get(get_action))
        .route("/v1/pending-actions/{token}/confirm", post(confirm_action))
        .route("/v1/pending-actions/{token}/cancel", post(cancel_action))
}

/// The header a confirm may carry so that its retry is recognised.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// The token `POST /v1/pending-actions` returned (URL-safe base64, `[A-Za-z0-9_-]`).
    #[param(
        pattern = "^[A-Za-z0-9_-]{1,256}$",
        example = "mVq1y0mYb1ZCqH0T2m9Yl1H3o4hUq4zN6o0x1jC8b2k"
    )]
    token: String,
}

impl ItemPath for TokenPath {
    type Id = ActionToken;

    fn parse(self) -> ApiResult<ActionToken> {
        ActionToken::parse(self.token).map_err(|e| ApiError::invalid_id(e.to_string()))
    }
}

/// A new pending action.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePendingAction {
    /// What the action does, e.g. `merge_pull_request`; 1–256 characters, not all ASCII
    /// whitespace.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"[^ \t\n\v\f\r]",
        example = "merge_pull_request"
    )]
    intent_name: String,
    /// The action's parameters, any JSON object; `{}` when absent.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    entities: Option<Map<String, Value>>,
    /// A sentence to show the user; `""` when absent.
    #[serde(default)]
    #[schema(example = "Merge PR #42 into main")]
    summary: Option<String>,
    /// 1–256 characters, not all ASCII whitespace.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"[^ \t\n\v\f\r]",
        example = "session-7"
    )]
    session_id: Option<String>,
    /// 1–256 characters, not all ASCII whitespace.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"[^ \t\n\v\f\r]",
        example = "user-1"
    )]
    user_id: Option<String>,
    /// Seconds the token can be confirmed (1 to `limits.max_ttl_seconds`); absent means
    /// `pending_actions.default_ttl_seconds` (60).
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000, example = 60)]
    ttl_seconds: Option<serde_json::Number>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PendingActionStatus {
    Pending,
    Confirmed,
    Cancelled,
}

/// A pending action and where it stands.
#[derive(Serialize, ToSchema)]
pub struct PendingActionBody {
    /// The confirmation token: 256 random bits, URL-safe base64.
    #[schema(example = "mVq1y0mYb1ZCqH0T2m9Yl1H3o4hUq4zN6o0x1jC8b2k")]
    token: String,
    intent_name: String,
    #[schema(value_type = Object)]
    entities: Map<String, Value>,
    summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// When the token stops being confirmable; a tombstone keeps this value.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
    status: PendingActionStatus,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    confirmed_at: Option<OffsetDateTime>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    cancelled_at: Option<OffsetDateTime>,
}

impl From<PendingAction> for PendingActionBody {
    fn from(action: PendingAction) -> Self {
        Self {
            token: action.token.as_str().to_string(),
            intent_name: action.intent_name,
            entities: action.entities,
            summary: action.summary,
            session_id: action.session_id,
            user_id: action.user_id,
            created_at: action.created_at,
            expires_at: action.expires_at,
            status: match action.status {
                ActionStatus::Pending => PendingActionStatus::Pending,
                ActionStatus::Confirmed => PendingActionStatus::Confirmed,
                ActionStatus::Cancelled => PendingActionStatus::Cancelled,
            },
            confirmed_at: action.confirmed_at,
            cancelled_at: action.cancelled_at,
        }
    }
}

/// The answer to the one confirm that won (and to its retries with the same key).
#[derive(Serialize, ToSchema)]
pub struct ConfirmResponse {
    action: PendingActionBody,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    confirmed_at: OffsetDateTime,
}

fn tombstone(state: &AppState) -> TombstoneLife {
    TombstoneLife::from_setting(state.settings.pending_actions.tombstone_seconds)
}

/// Create a pending action and its confirmation token.
#[utoipa::path(
    post, path = "/v1/pending-actions", tag = "pending_actions", operation_id = "pending_action_create",
    request_body = CreatePendingAction,
    responses(
        (status = 201, description = "Created; `Location` names the action", body = PendingActionBody),
        (status = 400, description = "Malformed JSON"),
        (status = 422, description = "Missing or invalid field, TTL out of range, unknown field"),
    ),
)]
pub async fn create_action(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppJson(request): AppJson<CreatePendingAction>,
) -> ApiResult<Response> {
    let settings = &state.settings;
    let max = settings.limits.max_ttl_seconds;
    let ttl = match &request.ttl_seconds {
        Some(seconds) => Ttl::from_json(seconds, max)?,
        None => Ttl::new(settings.pending_actions.default_ttl_seconds, max)
            .map_err(|_| ApiError::internal())?,
    };
    let new = NewPendingAction {
        intent_name: request.intent_name,
        entities: request.entities.unwrap_or_default(),
        summary: request.summary.unwrap_or_default(),
        session_id: request.session_id,
        user_id: request.user_id,
    }
    .validate()
    .map_err(|e| ApiError::validation_failed(e.to_string()))?;
    let action = PendingAction::new(ActionToken::generate(), new, model::now(), ttl);
    let location = format!("/v1/pending-actions/{}", action.token);
    if !state
        .stores
        .pending_actions
        .create(&tenant, &action, ttl)
        .await?
    {
        // 256 random bits do not collide; if they ever do, nothing was overwritten.
        tracing::error!("a freshly generated pending-action token already existed");
        return Err(ApiError::internal());
    }
    let mut response = (StatusCode::CREATED, Json(PendingActionBody::from(action))).into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|_| ApiError::internal())?,
    );
    Ok(response)
}

/// Read a pending action with its status: `pending`, or `confirmed`/`cancelled` while the
/// tombstone lives.
#[utoipa::path(
    get, path = "/v1/pending-actions/{token}", tag = "pending_actions", operation_id = "pending_action_get",
    params(TokenPath),
    responses(
        (status = 200, description = "The action", body = PendingActionBody),
        (status = 400, description = "Not a token"),
        (status = 404, description = "Unknown or expired"),
    ),
)]
pub async fn get_action(
    State(state): State<AppState>,
    ReadAt(tenant, token): ReadAt<TokenPath>,
) -> ApiResult<Json<PendingActionBody>> {
    let action = state.stores.pending_actions.get(&tenant, &token).await?;
    action
        .map(|a| Json(a.into()))
        .ok_or(ApiError::from(Missing::PendingAction))
}

/// Confirm an action: 200 for exactly one caller, ever, per token.
#[utoipa::path(
    post, path = "/v1/pending-actions/{token}/confirm", tag = "pending_actions", operation_id = "pending_action_confirm",
    params(
        TokenPath,
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,256}$", example = "confirm-7f3a9c",
         description = "1–256 visible ASCII characters. A confirm repeating the winning confirm's key gets the same 200 again instead of 409, while the tombstone lives."),
    ),
    responses(
        (status = 200, description = "Confirmed by this call, or a retry carrying the winning call's Idempotency-Key", body = ConfirmResponse),
        (status = 400, description = "Not a token, or an invalid Idempotency-Key"),
        (status = 404, description = "Unknown or expired"),
        (status = 409, description = "`already_confirmed` (by another call) or `already_cancelled`"),
    ),
)]
pub async fn confirm_action(
    State(state): State<AppState>,
    WriteAt(tenant, token): WriteAt<TokenPath>,
    headers: HeaderMap,
) -> ApiResult<Json<ConfirmResponse>> {
    let idempotency_key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|raw| {
            raw.to_str()
                .ok()
                .and_then(|text| IdempotencyKey::parse(text).ok())
                .ok_or_else(|| ApiError::invalid_request(model::InvalidIdempotencyKey.to_string()))
        })
        .transpose()?;
    let outcome = state
        .stores
        .pending_actions
        .confirm(
            &tenant,
            &token,
            model::now(),
            idempotency_key.as_ref(),
            tombstone(&state),
        )
        .await?;
    state
        .metrics
        .outcomes
        .of(&super::CONFIRMS)
        .count(match &outcome {
            Confirm::Confirmed(_) => "confirmed",
            Confirm::Replayed(_) => "replayed",
            Confirm::AlreadyConfirmed => "already_confirmed",
            Confirm::AlreadyCancelled => "already_cancelled",
            Confirm::NotFound => "not_found",
        });
    match outcome {
        Confirm::Confirmed(action) | Confirm::Replayed(action) => {
            let confirmed_at = action.confirmed_at.ok_or_else(ApiError::internal)?;
            Ok(Json(ConfirmResponse {
                action: action.into(),
                confirmed_at,
            }))
        }
        Confirm::AlreadyConfirmed => Err(Conflict::AlreadyConfirmed.into()),
        Confirm::AlreadyCancelled => Err(Conflict::AlreadyCancelled.into()),
        Confirm::NotFound => Err(Missing::PendingAction.into()),
    }
}

/// Cancel a pending action: no confirm can succeed afterwards.
#[utoipa::path(
    post, path = "/v1/pending-actions/{token}/cancel", tag = "pending_actions", operation_id = "pending_action_cancel",
    params(TokenPath),
    responses(
        (status = 204, description = "Cancelled (also when it already was)"),
        (status = 400, description = "Not a token"),
        (status = 404, description = "Unknown or expired"),
        (status = 409, description = "`already_confirmed`"),
    ),
)]
pub async fn cancel_action(
    State(state): State<AppState>,
    WriteAt(tenant, token): WriteAt<TokenPath>,
) -> ApiResult<StatusCode> {
    let outcome = state
        .stores
        .pending_actions
        .cancel(&tenant, &token, model::now(), tombstone(&state))
        .await?;
    match outcome {
        Cancel::Cancelled | Cancel::AlreadyCancelled => Ok(StatusCode::NO_CONTENT),
        Cancel::AlreadyConfirmed => Err(Conflict::AlreadyConfirmed.into()),
        Cancel::NotFound => Err(Missing::PendingAction.into()),
    }
}
