//! The request and response bodies of the session routes, and their checks.

use super::*;

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
    pub(super) id: String,
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
    pub(super) user_id: String,
    /// 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "workspace-7")]
    pub(super) workspace_id: Option<String>,
    /// Any JSON object; `{}` when absent.
    #[schema(value_type = Option<Object>)]
    pub(super) data: Option<Map<String, Value>>,
    /// The working context (e.g. the repo and PR a voice command refers to); `{}` when absent.
    #[schema(value_type = Option<Object>)]
    pub(super) context: Option<Map<String, Value>>,
    /// 1 to `sessions.max_lifetime_seconds` (86400 by default); absent means
    /// `sessions.default_ttl_seconds`.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 86400, example = 3600)]
    pub(super) ttl_seconds: Option<serde_json::Number>,
}

/// JSON merge patches (RFC 7396) of `data` and `context`; an absent or `null` member leaves
/// that part unchanged.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"data": {"theme": "light", "draft": null}, "context": {"pr": 1234}}))]
#[serde(deny_unknown_fields)]
pub struct PatchSession {
    #[schema(value_type = Option<Object>)]
    pub(super) data: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub(super) context: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendSession {
    /// The session's new TTL from now (1 to `sessions.max_lifetime_seconds`, 86400 by default);
    /// the expiry never passes `sessions.max_lifetime_seconds` after creation.
    #[schema(value_type = u64, minimum = 1, maximum = 86400, example = 3600)]
    pub(super) ttl_seconds: serde_json::Number,
}

/// A user session.
#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    /// A random UUID v4.
    #[schema(example = "0e6c3d4a-1b2c-4d5e-8f90-123456789abc")]
    pub(super) session_id: String,
    pub(super) user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) workspace_id: Option<String>,
    #[schema(value_type = Object)]
    pub(super) data: Map<String, Value>,
    /// The working context; `{}` also after it was deleted.
    #[schema(value_type = Object)]
    pub(super) context: Map<String, Value>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) created_at: OffsetDateTime,
    /// The last write, extend, rotation or (with rolling expiry) read.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) last_activity_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub(super) expires_at: OffsetDateTime,
    /// +1 per change of `data` or `context`; also the `ETag`.
    pub(super) version: u64,
}

pub(super) fn timestamp(ms: i64) -> OffsetDateTime {
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
    pub(super) sessions: Vec<SessionBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub(super) next_cursor: Option<String>,
}

/// Page size of a user's session listing without `limit`, and the largest accepted.
pub(super) const LIST_DEFAULT: usize = 100;
pub(super) const LIST_MAX: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub(super) limit: Option<usize>,
    /// `next_cursor` of the previous page; empty or absent for the first page.
    #[param(
        pattern = r"^(|s\.[0-9]{1,15}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$",
        example = "s.1764000000123.0e6c3d4a-1b2c-4d5e-8f90-123456789abc"
    )]
    pub(super) cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"deleted": 2}))]
pub struct DeletedSessions {
    /// How many live sessions were deleted.
    pub(super) deleted: u64,
}

pub(super) fn too_large(size: usize) -> ApiError {
    ApiError::payload_too_large(format!(
        "data and context would take {size} bytes; sessions.max_session_bytes allows less"
    ))
}

/// A session with its `ETag`.
pub(super) fn session_response(status: StatusCode, session: Session) -> Response {
    let tag = etag(session.version);
    let mut response = (status, Json(SessionBody::from(session))).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    response
}

/// The session's context with its `ETag`; 404 when the context was deleted.
pub(super) fn context_response(session: Session) -> ApiResult<Response> {
    let tag = etag(session.version);
    let context = session.context.ok_or_else(|| {
        ApiError::not_found("this session's context was deleted; PUT one to set it again")
    })?;
    let mut response = Json(context).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    Ok(response)
}

/// An invalid id inside a JSON body is a 422, like any other invalid body field.
pub(super) fn body_id(field: &str, raw: String) -> ApiResult<UserId> {
    UserId::parse(raw).map_err(|_: InvalidId| {
        ApiError::validation_failed(format!(
            "{field} must be 1-{MAX_ID_BYTES} bytes of [A-Za-z0-9._:@-]"
        ))
    })
}

pub(super) fn ttl(state: &AppState, seconds: &serde_json::Number) -> ApiResult<Ttl> {
    Ok(Ttl::from_json(
        seconds,
        state.settings.sessions.max_lifetime_seconds,
    )?)
}

pub(super) fn updated(outcome: SessionUpdate) -> ApiResult<Session> {
    match outcome {
        SessionUpdate::Updated(session) => Ok(session),
        SessionUpdate::Missing => Err(Missing::Session.into()),
        SessionUpdate::Stale { current_version } => Err(ApiError::precondition_failed(format!(
            "If-Match does not name the current version ({current_version})"
        ))),
        SessionUpdate::TooLarge { size } => Err(too_large(size)),
    }
}

pub(super) async fn change(
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
