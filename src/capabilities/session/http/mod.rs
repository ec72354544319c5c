//! `/v1/sessions` and `/v1/users/{user_id}/sessions`: user sessions and their working context.

mod dto;

pub use self::dto::*;
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::http::{
    AppState,
    extract::{
        AppJson, AppQuery, IfMatch, IfMatchHeader, ItemPath, ReadAt, WriteAt, Writer, etag,
        id_path, page_cursor, page_limit,
    },
};
use crate::{
    capabilities::session::{
        model::{Session, SessionChange, SessionCursor, SessionId, UserId, now_ms},
        port::SessionUpdate,
    },
    domain::{
        ids::{InvalidId, MAX_ID_BYTES},
        ttl::Ttl,
    },
    error::{ApiError, ApiResult, Missing},
};
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_session,
        get_session,
        patch_session,
        delete_session,
        get_context,
        put_context,
        delete_context,
        extend_session,
        rotate_session,
        list_user_sessions,
        delete_user_sessions,
    ),
    components(schemas(
        CreateSession,
        PatchSession,
        ExtendSession,
        SessionBody,
        SessionList,
        DeletedSessions,
    )),
    modifiers(&SessionLinks),
    tags(
    (name = "sessions", description = "User sessions with their working context; per-user listing and sign-out everywhere"),
    )
)]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", post(create_session))
        .route(
            "/v1/sessions/{id}",
            get(get_session).patch(patch_session).delete(delete_session),
        )
        .route(
            "/v1/sessions/{id}/context",
            get(get_context).put(put_context).delete(delete_context),
        )
        .route("/v1/sessions/{id}/extend", post(extend_session))
        .route("/v1/sessions/{id}/rotate", post(rotate_session))
        .route(
            "/v1/users/{user_id}/sessions",
            get(list_user_sessions).delete(delete_user_sessions),
        )
}
/// Create a session for a user.
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions", operation_id = "session_create",
    request_body = CreateSession,
    responses(
        (status = 201, description = "Created; `Location` names it, `ETag` is its version", body = SessionBody),
        (status = 400, description = "Malformed JSON"),
        (status = 413, description = "Body larger than limits.max_body_bytes, or data + context larger than sessions.max_session_bytes"),
        (status = 422, description = "Invalid user or workspace id, TTL, non-object data/context or unknown fields"),
    ),
)]
pub async fn create_session(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppJson(request): AppJson<CreateSession>,
) -> ApiResult<Response> {
    let user_id = body_id("user_id", request.user_id)?;
    let workspace_id = request
        .workspace_id
        .map(|w| body_id("workspace_id", w))
        .transpose()?;
    let settings = &state.settings.sessions;
    let ttl = match &request.ttl_seconds {
        Some(seconds) => ttl(&state, seconds)?,
        None => Ttl::new(settings.default_ttl_seconds, settings.max_lifetime_seconds)
            .map_err(|_| ApiError::internal())?,
    };
    let session = Session::new(
        user_id,
        workspace_id,
        request.data.unwrap_or_default(),
        request.context.unwrap_or_default(),
        ttl,
        now_ms(),
    );
    if session.content_bytes() > settings.max_session_bytes {
        return Err(too_large(session.content_bytes()));
    }
    state
        .stores
        .sessions
        .create(&tenant, &session, settings.rules())
        .await?;
    let location = HeaderValue::from_str(&format!("/v1/sessions/{}", session.id))
        .map_err(|_| ApiError::internal())?;
    let mut response = session_response(StatusCode::CREATED, session);
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// Read a session; with `sessions.rolling` the read also renews its TTL.
#[utoipa::path(
    get, path = "/v1/sessions/{id}", tag = "sessions", operation_id = "session_get",
    params(SessionPath),
    responses(
        (status = 200, description = "The session; `ETag` is its version", body = SessionBody),
        (status = 400, description = "The id is not a session id"),
        (status = 404, description = "No live session"),
    ),
)]
pub async fn get_session(
    State(state): State<AppState>,
    ReadAt(tenant, id): ReadAt<SessionPath>,
) -> ApiResult<Response> {
    let rules = state.settings.sessions.rules();
    let session = state.stores.sessions.get(&tenant, &id, rules).await?;
    Ok(session_response(
        StatusCode::OK,
        session.ok_or(ApiError::from(Missing::Session))?,
    ))
}

/// Apply JSON merge patches to `data` and `context`; honours `If-Match`.
#[utoipa::path(
    patch, path = "/v1/sessions/{id}", tag = "sessions", operation_id = "session_patch",
    params(SessionPath, IfMatchHeader),
    request_body(content = PatchSession, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The patched session", body = SessionBody),
        (status = 400, description = "Invalid id, If-Match or malformed JSON"),
        (status = 404, description = "No live session (deleted, expired or unknown); nothing was written"),
        (status = 412, description = "If-Match names another version; nothing was written"),
        (status = 413, description = "The result would pass sessions.max_session_bytes; nothing was written"),
        (status = 422, description = "A patch that is not an object, or unknown fields"),
    ),
)]
pub async fn patch_session(
    State(state): State<AppState>,
    WriteAt(tenant, id): WriteAt<SessionPath>,
    IfMatch(if_match): IfMatch,
    AppJson(request): AppJson<PatchSession>,
) -> ApiResult<Response> {
    let patch = SessionChange::Patch {
        data: request.data,
        context: request.context,
    };
    let session = change(&state, &tenant, &id, patch, if_match).await?;
    Ok(session_response(StatusCode::OK, session))
}

/// Delete a session.
#[utoipa::path(
    delete, path = "/v1/sessions/{id}", tag = "sessions", operation_id = "session_delete",
    params(SessionPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a session id"),
        (status = 404, description = "No live session"),
    ),
)]
pub async fn delete_session(
    State(state): State<AppState>,
    WriteAt(tenant, id): WriteAt<SessionPath>,
) -> ApiResult<StatusCode> {
    let found = state.stores.sessions.delete(&tenant, &id).await?;
    Missing::Session.unless(found, StatusCode::NO_CONTENT)
}

/// Read the session's working context; with `sessions.rolling` the read renews the TTL.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/context", tag = "sessions", operation_id = "session_get_context",
    params(SessionPath),
    responses(
        (status = 200, description = "The context object; `ETag` is the session's version", body = Object, example = json!({"repo": "billing", "pr": 1234})),
        (status = 400, description = "The id is not a session id"),
        (status = 404, description = "No live session, or its context was deleted"),
    ),
)]
pub async fn get_context(
    State(state): State<AppState>,
    ReadAt(tenant, id): ReadAt<SessionPath>,
) -> ApiResult<Response> {
    let rules = state.settings.sessions.rules();
    let session = state.stores.sessions.get(&tenant, &id, rules).await?;
    context_response(session.ok_or(ApiError::from(Missing::Session))?)
}

/// Replace the session's working context; honours `If-Match`.
#[utoipa::path(
    put, path = "/v1/sessions/{id}/context", tag = "sessions", operation_id = "session_put_context",
    params(SessionPath, IfMatchHeader),
    request_body(content = Object, content_type = "application/json", description = "The new context: any JSON object", example = json!({"repo": "billing", "pr": 1234})),
    responses(
        (status = 200, description = "The stored context; `ETag` is the new version", body = Object, example = json!({"repo": "billing", "pr": 1234})),
        (status = 400, description = "Invalid id, If-Match or malformed JSON"),
        (status = 404, description = "No live session; nothing was written"),
        (status = 412, description = "If-Match names another version; nothing was written"),
        (status = 413, description = "The result would pass sessions.max_session_bytes; nothing was written"),
        (status = 422, description = "The body is not a JSON object"),
    ),
)]
pub async fn put_context(
    State(state): State<AppState>,
    WriteAt(tenant, id): WriteAt<SessionPath>,
    IfMatch(if_match): IfMatch,
    AppJson(context): AppJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let replace = SessionChange::ReplaceContext(context);
    let session = change(&state, &tenant, &id, replace, if_match).await?;
    context_response(session)
}

/// Delete the session's working context: `GET .../context` is 404 until a `PUT` sets one (the
/// session itself shows `context: {}`); honours `If-Match`.
#[utoipa::path(
    delete, path = "/v1/sessions/{id}/context", tag = "sessions", operation_id = "session_delete_context",
    params(SessionPath, IfMatchHeader),
    responses(
        (status = 204, description = "Deleted; `ETag` is the new version"),
        (status = 400, description = "Invalid id or If-Match"),
        (status = 404, description = "No live session; nothing was written"),
        (status = 412, description = "If-Match names another version; nothing was written"),
    ),
)]
pub async fn delete_context(
    State(state): State<AppState>,
    WriteAt(tenant, id): WriteAt<SessionPath>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<Response> {
    let clear = SessionChange::ClearContext;
    let session = change(&state, &tenant, &id, clear, if_match).await?;
    Ok((
        [(header::ETAG, etag(session.version))],
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

/// Give the session a new TTL from now, never past `sessions.max_lifetime_seconds` after its
/// creation.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/extend", tag = "sessions", operation_id = "session_extend",
    params(SessionPath),
    request_body = ExtendSession,
    responses(
        (status = 200, description = "The session with its new expiry", body = SessionBody),
        (status = 400, description = "Invalid id or malformed JSON"),
        (status = 404, description = "No live session; nothing was written"),
        (status = 422, description = "TTL out of range or unknown fields"),
    ),
)]
pub async fn extend_session(
    State(state): State<AppState>,
    WriteAt(tenant, id): WriteAt<SessionPath>,
    AppJson(request): AppJson<ExtendSession>,
) -> ApiResult<Response> {
    let extend = SessionChange::Extend(ttl(&state, &request.ttl_seconds)?);
    let session = change(&state, &tenant, &id, extend, None).await?;
    Ok(session_response(StatusCode::OK, session))
}

/// Give the session a new id (same content, creation time and expiry); the old id stops
/// working at once.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/rotate", tag = "sessions", operation_id = "session_rotate",
    params(SessionPath),
    responses(
        (status = 200, description = "The session under its new `session_id`", body = SessionBody),
        (status = 400, description = "The id is not a session id"),
        (status = 404, description = "No live session"),
    ),
)]
pub async fn rotate_session(
    State(state): State<AppState>,
    WriteAt(tenant, id): WriteAt<SessionPath>,
) -> ApiResult<Response> {
    let rules = state.settings.sessions.rules();
    let rotated = state
        .stores
        .sessions
        .rotate(&tenant, &id, &id.random_beside(), rules)
        .await?;
    Ok(session_response(
        StatusCode::OK,
        rotated.ok_or(ApiError::from(Missing::Session))?,
    ))
}

/// A page of a user's live sessions, oldest first. Follow `next_cursor` for the rest: a session
/// live through the whole listing appears exactly once.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/sessions", tag = "sessions", operation_id = "session_list_for_user",
    params(UserPath, ListQuery),
    responses(
        (status = 200, description = "Live sessions only, oldest first", body = SessionList),
        (status = 400, description = "Invalid user id, limit or cursor"),
    ),
)]
pub async fn list_user_sessions(
    State(state): State<AppState>,
    ReadAt(tenant, user): ReadAt<UserPath>,
    AppQuery(query): AppQuery<ListQuery>,
) -> ApiResult<Json<SessionList>> {
    let limit = page_limit(query.limit, LIST_DEFAULT, LIST_MAX)?;
    let after = page_cursor(query.cursor.as_deref(), SessionCursor::decode)?.map(|cursor| cursor.0);
    let page = state
        .stores
        .sessions
        .list_for_user(&tenant, &user, after.as_ref(), limit)
        .await?;
    let next_cursor = page
        .sessions
        .last()
        .filter(|_| page.more)
        .map(|last| SessionCursor(last.place()).encode());
    Ok(Json(SessionList {
        sessions: page.sessions.into_iter().map(SessionBody::from).collect(),
        next_cursor,
    }))
}

/// Sign a user out everywhere: delete all their sessions.
#[utoipa::path(
    delete, path = "/v1/users/{user_id}/sessions", tag = "sessions", operation_id = "session_delete_for_user",
    params(UserPath),
    responses(
        (status = 200, description = "How many live sessions were deleted", body = DeletedSessions),
        (status = 400, description = "Invalid user id"),
    ),
)]
pub async fn delete_user_sessions(
    State(state): State<AppState>,
    WriteAt(tenant, user): WriteAt<UserPath>,
) -> ApiResult<Json<DeletedSessions>> {
    let deleted = state
        .stores
        .sessions
        .delete_for_user(&tenant, &user)
        .await?;
    Ok(Json(DeletedSessions { deleted }))
}
