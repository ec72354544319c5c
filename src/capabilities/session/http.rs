//! `/v1/sessions` and `/v1/users/{user_id}/sessions`: user sessions and their working context.

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

/// OpenAPI links from the operations that answer with a session (create, and rotate, which
/// moves it to a new id) to the operations on that session, by the `session_id` of the answer,
/// so that generated stateful tests (schemathesis) reach live sessions instead of only 404s.
/// None to `/v1/users/{user_id}/sessions`: a user is not a resource that a create makes or a
/// DELETE removes (the listing stays, maybe empty).
pub struct SessionLinks;

impl utoipa::Modify for SessionLinks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, link::LinkBuilder};
        let sources = [("/v1/sessions", "201"), ("/v1/sessions/{id}/rotate", "200")];
        for (path, status) in sources {
            let Some(RefOr::T(answer)) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|post| post.responses.responses.get_mut(status))
            else {
                continue;
            };
            for target in [
                "session_get",
                "session_patch",
                "session_get_context",
                "session_put_context",
                "session_delete_context",
                "session_extend",
                "session_rotate",
                "session_delete",
            ] {
                let link = LinkBuilder::new()
                    .operation_id(target)
                    .parameter("id", "$response.body#/session_id");
                answer.links.insert(target.into(), RefOr::T(link.build()));
            }
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// The session id: a lowercase hyphenated UUID.
    #[param(
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        example = "0e6c3d4a-1b2c-4d5e-8f90-123456789abc"
    )]
    id: String,
}

impl ItemPath for SessionPath {
    type Id = SessionId;

    fn parse(self) -> ApiResult<SessionId> {
        // `InvalidId`'s message describes the path ids of `domain::ids`, which a session id is not.
        SessionId::parse(self.id).map_err(|_| {
            ApiError::invalid_id(
                "a session id is a lowercase hyphenated UUID, as create returns it",
            )
        })
    }
}

id_path!(UserPath, user_id => UserId, "user-42", "1–256 bytes of `[A-Za-z0-9._:@-]`.");

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "user-42")]
    user_id: String,
    /// 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "workspace-7")]
    workspace_id: Option<String>,
    /// Any JSON object; `{}` when absent.
    #[schema(value_type = Option<Object>)]
    data: Option<Map<String, Value>>,
    /// The working context (e.g. the repo and PR a voice command refers to); `{}` when absent.
    #[schema(value_type = Option<Object>)]
    context: Option<Map<String, Value>>,
    /// 1 to `sessions.max_lifetime_seconds` (86400 by default); absent means
    /// `sessions.default_ttl_seconds`.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 86400, example = 3600)]
    ttl_seconds: Option<serde_json::Number>,
}

/// JSON merge patches (RFC 7396) of `data` and `context`; an absent or `null` member leaves
/// that part unchanged.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"data": {"theme": "light", "draft": null}, "context": {"pr": 1234}}))]
#[serde(deny_unknown_fields)]
pub struct PatchSession {
    #[schema(value_type = Option<Object>)]
    data: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    context: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendSession {
    /// The session's new TTL from now (1 to `sessions.max_lifetime_seconds`, 86400 by default);
    /// the expiry never passes `sessions.max_lifetime_seconds` after creation.
    #[schema(value_type = u64, minimum = 1, maximum = 86400, example = 3600)]
    ttl_seconds: serde_json::Number,
}

/// A user session.
#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    /// A random UUID v4.
    #[schema(example = "0e6c3d4a-1b2c-4d5e-8f90-123456789abc")]
    session_id: String,
    user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace_id: Option<String>,
    #[schema(value_type = Object)]
    data: Map<String, Value>,
    /// The working context; `{}` also after it was deleted.
    #[schema(value_type = Object)]
    context: Map<String, Value>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// The last write, extend, rotation or (with rolling expiry) read.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    last_activity_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
    /// +1 per change of `data` or `context`; also the `ETag`.
    version: u64,
}

fn timestamp(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl From<Session> for SessionBody {
    fn from(s: Session) -> Self {
        Self {
            session_id: s.id.to_string(),
            user_id: s.user_id.to_string(),
            workspace_id: s.workspace_id.map(|w| w.to_string()),
            data: s.data,
            context: s.context.unwrap_or_default(),
            created_at: timestamp(s.created_at_ms),
            last_activity_at: timestamp(s.last_activity_at_ms),
            expires_at: timestamp(s.expires_at_ms),
            version: s.version,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"sessions": [{
    "session_id": "0e6c3d4a-1b2c-4d5e-8f90-123456789abc",
    "user_id": "user-42",
    "data": {"theme": "dark"},
    "context": {"repo": "billing", "pr": 1234},
    "created_at": "2026-11-22T04:00:00Z",
    "last_activity_at": "2026-11-22T04:05:00Z",
    "expires_at": "2026-11-22T05:05:00Z",
    "version": 2
}], "next_cursor": null}))]
pub struct SessionList {
    /// Live sessions only, oldest first (then by id).
    sessions: Vec<SessionBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// Page size of a user's session listing without `limit`, and the largest accepted.
const LIST_DEFAULT: usize = 100;
const LIST_MAX: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page; empty or absent for the first page.
    #[param(
        pattern = r"^(|s\.[0-9]{1,15}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$",
        example = "s.1764000000123.0e6c3d4a-1b2c-4d5e-8f90-123456789abc"
    )]
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"deleted": 2}))]
pub struct DeletedSessions {
    /// How many live sessions were deleted.
    deleted: u64,
}

fn too_large(size: usize) -> ApiError {
    ApiError::payload_too_large(format!(
        "data and context would take {size} bytes; sessions.max_session_bytes allows less"
    ))
}

/// A session with its `ETag`.
fn session_response(status: StatusCode, session: Session) -> Response {
    let tag = etag(session.version);
    let mut response = (status, Json(SessionBody::from(session))).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    response
}

/// The session's context with its `ETag`; 404 when the context was deleted.
fn context_response(session: Session) -> ApiResult<Response> {
    let tag = etag(session.version);
    let context = session.context.ok_or_else(|| {
        ApiError::not_found("this session's context was deleted; PUT one to set it again")
    })?;
    let mut response = Json(context).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    Ok(response)
}

/// An invalid id inside a JSON body is a 422, like any other invalid body field.
fn body_id(field: &str, raw: String) -> ApiResult<UserId> {
    UserId::parse(raw).map_err(|_: InvalidId| {
        ApiError::validation_failed(format!(
            "{field} must be 1-{MAX_ID_BYTES} bytes of [A-Za-z0-9._:@-]"
        ))
    })
}

fn ttl(state: &AppState, seconds: &serde_json::Number) -> ApiResult<Ttl> {
    Ok(Ttl::from_json(
        seconds,
        state.settings.sessions.max_lifetime_seconds,
    )?)
}

fn updated(outcome: SessionUpdate) -> ApiResult<Session> {
    match outcome {
        SessionUpdate::Updated(session) => Ok(session),
        SessionUpdate::Missing => Err(Missing::Session.into()),
        SessionUpdate::Stale { current_version } => Err(ApiError::precondition_failed(format!(
            "If-Match does not name the current version ({current_version})"
        ))),
        SessionUpdate::TooLarge { size } => Err(too_large(size)),
    }
}

async fn change(
    state: &AppState,
    tenant: &crate::domain::ids::Tenant,
    id: &SessionId,
    change: SessionChange,
    if_match: Option<u64>,
) -> ApiResult<Session> {
    let rules = state.settings.sessions.rules();
    updated(
        state
            .stores
            .sessions
            .update(tenant, id, &change, if_match, rules)
            .await?,
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
