//! The request and response bodies of the agent state routes, and their checks.

use super::*;

id_path!(ThreadPath, thread_id => ThreadId, "thread-42",
    "1–256 bytes of `[A-Za-z0-9._:@-]`, not `recent` or `cleanup-expired` (those paths are\nother operations).");

/// A new thread.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The thread's id, 1–256 bytes of `[A-Za-z0-9._:@-]`, not `recent` or `cleanup-expired`;
    /// a random UUID when absent.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "thread-42")]
    pub(super) thread_id: Option<String>,
    #[serde(default)]
    pub(super) messages: Vec<MessageInput>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(super) context: JsonObject,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(super) metadata: JsonObject,
    /// `true` when absent.
    pub(super) is_relevant: Option<bool>,
    /// 1 to `limits.max_ttl_seconds`; absent means `agent_states.default_ttl_seconds`.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000, example = 86400)]
    pub(super) ttl_seconds: Option<serde_json::Number>,
}

/// A whole thread, replacing whatever was there (fields left out take their defaults).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceRequest {
    #[serde(default)]
    pub(super) messages: Vec<MessageInput>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(super) context: JsonObject,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(super) metadata: JsonObject,
    /// `true` when absent.
    pub(super) is_relevant: Option<bool>,
    /// 1 to `limits.max_ttl_seconds`; absent means `agent_states.default_ttl_seconds`.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000, example = 86400)]
    pub(super) ttl_seconds: Option<serde_json::Number>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"messages": [{"role": "ai", "content": "Deploying billing to prod."}]}))]
pub struct AppendRequest {
    /// At most `agent_states.max_messages_per_append`.
    pub(super) messages: Vec<MessageInput>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"message_count": 2, "version": 2}))]
pub struct AppendResponse {
    pub(super) message_count: u64,
    pub(super) version: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"is_relevant": false}))]
pub struct RelevanceRequest {
    pub(super) is_relevant: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"thread_id": "thread-42", "is_relevant": false, "version": 3}))]
pub struct RelevanceResponse {
    pub(super) thread_id: String,
    pub(super) is_relevant: bool,
    pub(super) version: u64,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Return only the last N messages (`message_count` is still the total).
    #[param(minimum = 0, example = 20)]
    pub(super) last_messages: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub(super) limit: Option<usize>,
    /// `next_cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = r"^(|t\.[A-Za-z0-9._:@-]{1,256})$", example = "t.thread-42")]
    pub(super) cursor: Option<String>,
}

/// One page of thread ids, in byte order.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"thread_ids": ["thread-41", "thread-42"], "next_cursor": "t.thread-42"}))]
pub struct ListResponse {
    pub(super) thread_ids: Vec<String>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub(super) next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    /// How many threads, 1–1000 (default 10).
    #[param(minimum = 1, maximum = 1000, example = 10)]
    pub(super) limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"states": [{"thread_id": "thread-42", "updated_at": "2026-11-22T04:00:00Z", "message_count": 2, "is_relevant": true}]}))]
pub struct RecentResponse {
    /// Newest `updated_at` first.
    pub(super) states: Vec<RecentState>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"removed": 3}))]
pub struct CleanupResponse {
    /// Index entries of expired threads dropped by this call.
    pub(super) removed: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TtlResponse {
    #[schema(example = 86400)]
    pub(super) ttl_seconds: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TtlRequest {
    /// The new TTL from now: 1 to `limits.max_ttl_seconds`.
    #[schema(value_type = u64, minimum = 1, maximum = 2592000, example = 86400)]
    pub(super) ttl_seconds: serde_json::Number,
}

pub(super) fn invalid(error: InvalidState) -> ApiError {
    match error {
        InvalidState::TooManyMessages { .. } => ApiError::payload_too_large(error.to_string()),
        InvalidState::Message { .. } => ApiError::validation_failed(error.to_string()),
    }
}

/// The error of a versioned write that did not happen (callers handle `Done` first).
pub(super) fn refused<T>(outcome: Versioned<T>) -> ApiError {
    match outcome {
        Versioned::Missing | Versioned::Done(_) => Missing::AgentState.into(),
        Versioned::Stale => ApiError::precondition_failed(
            "If-Match does not name the thread's current version; nothing was written",
        ),
        Versioned::Contended => Conflict::ThreadContended.into(),
    }
}

/// The state, its version as `ETag`, and `status`.
pub(super) fn state_response(status: StatusCode, state: AgentState) -> Response {
    let tag = etag(state.version);
    (status, [(header::ETAG, tag)], Json(state)).into_response()
}

pub(super) struct Whole {
    pub(super) messages: Vec<MessageInput>,
    pub(super) context: JsonObject,
    pub(super) metadata: JsonObject,
    pub(super) is_relevant: Option<bool>,
    pub(super) ttl_seconds: Option<serde_json::Number>,
}

impl Whole {
    /// Validates a whole state's body; all or nothing.
    pub(super) fn accept(self, thread_id: ThreadId, state: &AppState) -> ApiResult<NewAgentState> {
        let settings = &state.settings;
        let ttl_seconds = match &self.ttl_seconds {
            Some(n) => Ttl::from_json(n, settings.limits.max_ttl_seconds)?.seconds(),
            None => settings.agent_states.default_ttl_seconds,
        };
        Ok(NewAgentState {
            thread_id,
            messages: accept_messages(self.messages, settings.agent_states.max_messages_per_append)
                .map_err(invalid)?,
            context: self.context,
            metadata: self.metadata,
            is_relevant: self.is_relevant.unwrap_or(true),
            ttl_seconds,
        })
    }
}
