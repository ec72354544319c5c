//! `/v1/agent-states`: conversation state per thread.
//!
//! `recent` and `cleanup-expired` are static segments beside `{thread_id}`; the router prefers
//! static segments, and `ThreadId` refuses those two words, so no thread can be shadowed.

mod dto;

pub use self::dto::*;
use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, patch, post, put},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::http::{
    AppState,
    extract::{
        AppJson, AppQuery, IfMatch, IfMatchHeader, ReadAt, Reader, WriteAt, Writer, etag, id_path,
        page_cursor, page_limit,
    },
};
use crate::{
    capabilities::agent_state::model::{
        AgentState, InvalidState, JsonObject, ListCursor, MessageInput, NewAgentState, RecentState,
        ThreadId, accept_messages,
    },
    domain::ttl::Ttl,
    error::{ApiError, ApiResult, Conflict, Missing},
    store::Versioned,
};

/// Page size of `GET /v1/agent-states` without `limit`, and the largest accepted.
const LIST_DEFAULT: usize = 100;
const LIST_MAX: usize = 1000;
/// Length of `GET /v1/agent-states/recent` without `limit`, and the largest accepted.
const RECENT_DEFAULT: usize = 10;
const RECENT_MAX: usize = 1000;
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_state,
        list_states,
        recent_states,
        cleanup_expired,
        get_state,
        head_state,
        put_state,
        delete_state,
        append_messages,
        patch_context,
        put_relevance,
        get_ttl,
        extend_ttl,
    ),
    tags(
    (name = "agent_states", description = "Conversation state per thread: LangChain-shaped messages, \
                                           context and metadata, atomic appends, exact listing"),
    )
)]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agent-states", get(list_states).post(create_state))
        .route("/v1/agent-states/recent", get(recent_states))
        .route("/v1/agent-states/cleanup-expired", post(cleanup_expired))
        .route(
            "/v1/agent-states/{thread_id}",
            get(get_state)
                .head(head_state)
                .put(put_state)
                .delete(delete_state),
        )
        .route(
            "/v1/agent-states/{thread_id}/messages",
            post(append_messages),
        )
        .route("/v1/agent-states/{thread_id}/context", patch(patch_context))
        .route("/v1/agent-states/{thread_id}/relevance", put(put_relevance))
        .route("/v1/agent-states/{thread_id}/ttl", get(get_ttl))
        .route("/v1/agent-states/{thread_id}/extend-ttl", post(extend_ttl))
}
/// Create a thread.
#[utoipa::path(
    post, path = "/v1/agent-states", tag = "agent_states", operation_id = "agent_state_create",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Created, at version 1", body = AgentState,
         headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, description = "Invalid thread id or malformed JSON"),
        (status = 409, description = "A live thread with this id exists"),
        (status = 413, description = "Body or message count over the limits"),
        (status = 422, description = "Malformed message, unknown field or TTL out of range"),
    ),
)]
pub async fn create_state(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppJson(request): AppJson<CreateRequest>,
) -> ApiResult<Response> {
    let thread_id = match request.thread_id {
        Some(raw) => ThreadId::parse(raw)?,
        None => ThreadId::generate(),
    };
    let new = Whole {
        messages: request.messages,
        context: request.context,
        metadata: request.metadata,
        is_relevant: request.is_relevant,
        ttl_seconds: request.ttl_seconds,
    }
    .accept(thread_id, &state)?;
    match state.stores.agent_states.create(&tenant, &new).await? {
        Some(created) => Ok(state_response(StatusCode::CREATED, created)),
        None => Err(Conflict::ThreadExists.into()),
    }
}

/// Read a thread, optionally only its last messages.
#[utoipa::path(
    get, path = "/v1/agent-states/{thread_id}", tag = "agent_states", operation_id = "agent_state_get",
    params(ThreadPath, GetQuery),
    responses(
        (status = 200, description = "The state", body = AgentState,
         headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, description = "Invalid thread id or query"),
        (status = 404, description = "No live thread"),
    ),
)]
pub async fn get_state(
    State(state): State<AppState>,
    ReadAt(tenant, thread): ReadAt<ThreadPath>,
    AppQuery(query): AppQuery<GetQuery>,
) -> ApiResult<Response> {
    let last_messages = query
        .last_messages
        .map(|n| {
            u64::try_from(n)
                .map_err(|_| ApiError::invalid_request("last_messages must be 0 or more"))
        })
        .transpose()?;
    let found = state
        .stores
        .agent_states
        .get(&tenant, &thread, last_messages)
        .await?;
    found
        .map(|s| state_response(StatusCode::OK, s))
        .ok_or(ApiError::from(Missing::AgentState))
}

/// Whether a live thread exists.
#[utoipa::path(
    head, path = "/v1/agent-states/{thread_id}", tag = "agent_states", operation_id = "agent_state_head",
    params(ThreadPath),
    responses(
        (status = 200, description = "A live thread exists"),
        (status = 400, description = "Invalid thread id"),
        (status = 404, description = "No live thread"),
    ),
)]
pub async fn head_state(
    State(state): State<AppState>,
    ReadAt(tenant, thread): ReadAt<ThreadPath>,
) -> ApiResult<StatusCode> {
    let found = state.stores.agent_states.exists(&tenant, &thread).await?;
    Missing::AgentState.unless(found, StatusCode::OK)
}

/// Replace a thread whole, or create it. `If-Match` makes the write conditional.
#[utoipa::path(
    put, path = "/v1/agent-states/{thread_id}", tag = "agent_states", operation_id = "agent_state_replace",
    params(ThreadPath, IfMatchHeader),
    request_body = ReplaceRequest,
    responses(
        (status = 200, description = "Replaced", body = AgentState,
         headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 201, description = "Created", body = AgentState,
         headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, description = "Invalid thread id, If-Match or JSON"),
        (status = 412, description = "If-Match is stale (or the thread does not exist); nothing was written"),
        (status = 413, description = "Body or message count over the limits"),
        (status = 422, description = "Malformed message, unknown field or TTL out of range"),
    ),
)]
pub async fn put_state(
    State(state): State<AppState>,
    WriteAt(tenant, thread): WriteAt<ThreadPath>,
    IfMatch(if_version): IfMatch,
    AppJson(request): AppJson<ReplaceRequest>,
) -> ApiResult<Response> {
    let new = Whole {
        messages: request.messages,
        context: request.context,
        metadata: request.metadata,
        is_relevant: request.is_relevant,
        ttl_seconds: request.ttl_seconds,
    }
    .accept(thread, &state)?;
    match state
        .stores
        .agent_states
        .replace(&tenant, &new, if_version)
        .await?
    {
        Versioned::Done(replaced) => {
            let status = if replaced.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(state_response(status, replaced.state))
        }
        outcome => Err(refused(outcome)),
    }
}

/// Delete a thread and all its messages.
#[utoipa::path(
    delete, path = "/v1/agent-states/{thread_id}", tag = "agent_states", operation_id = "agent_state_delete",
    params(ThreadPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid thread id"),
        (status = 404, description = "No live thread"),
    ),
)]
pub async fn delete_state(
    State(state): State<AppState>,
    WriteAt(tenant, thread): WriteAt<ThreadPath>,
) -> ApiResult<StatusCode> {
    let found = state.stores.agent_states.delete(&tenant, &thread).await?;
    Missing::AgentState.unless(found, StatusCode::NO_CONTENT)
}

/// Append messages atomically: concurrent appends each land whole, none is lost.
#[utoipa::path(
    post, path = "/v1/agent-states/{thread_id}/messages", tag = "agent_states", operation_id = "agent_state_append",
    params(ThreadPath, IfMatchHeader),
    request_body = AppendRequest,
    responses(
        (status = 200, description = "Appended", body = AppendResponse,
         headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "Invalid thread id, If-Match or JSON"),
        (status = 404, description = "No live thread"),
        (status = 412, description = "If-Match is stale; nothing was written"),
        (status = 413, description = "Body or message count over the limits"),
        (status = 422, description = "Malformed message or unknown field; nothing was written"),
    ),
)]
pub async fn append_messages(
    State(state): State<AppState>,
    WriteAt(tenant, thread): WriteAt<ThreadPath>,
    IfMatch(if_version): IfMatch,
    AppJson(request): AppJson<AppendRequest>,
) -> ApiResult<Response> {
    let messages = accept_messages(
        request.messages,
        state.settings.agent_states.max_messages_per_append,
    )
    .map_err(invalid)?;
    match state
        .stores
        .agent_states
        .append(&tenant, &thread, &messages, if_version)
        .await?
    {
        Versioned::Done(appended) => Ok((
            [(header::ETAG, etag(appended.version))],
            Json(AppendResponse {
                message_count: appended.message_count,
                version: appended.version,
            }),
        )
            .into_response()),
        outcome => Err(refused(outcome)),
    }
}

/// Merge-patch the context (RFC 7396: `null` removes a key, objects merge, the rest replaces).
#[utoipa::path(
    patch, path = "/v1/agent-states/{thread_id}/context", tag = "agent_states", operation_id = "agent_state_patch_context",
    params(ThreadPath, IfMatchHeader),
    request_body(content = Object, content_type = "application/merge-patch+json", description = "A JSON merge patch; `application/json` is accepted too",
        example = json!({"repo": "billing", "draft": null})),
    responses(
        (status = 200, description = "The state after the patch", body = AgentState,
         headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "Invalid thread id, If-Match or JSON"),
        (status = 404, description = "No live thread"),
        (status = 409, description = "Concurrent writes kept winning; nothing was written, retry"),
        (status = 412, description = "If-Match is stale; nothing was written"),
        (status = 422, description = "The patch is not a JSON object"),
    ),
)]
pub async fn patch_context(
    State(state): State<AppState>,
    WriteAt(tenant, thread): WriteAt<ThreadPath>,
    IfMatch(if_version): IfMatch,
    AppJson(patch): AppJson<Value>,
) -> ApiResult<Response> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::validation_failed(
            "the context is an object, so its merge patch must be a JSON object",
        ));
    };
    match state
        .stores
        .agent_states
        .patch_context(&tenant, &thread, &patch, if_version)
        .await?
    {
        Versioned::Done(patched) => Ok(state_response(StatusCode::OK, patched)),
        outcome => Err(refused(outcome)),
    }
}

/// Mark a thread relevant or not.
#[utoipa::path(
    put, path = "/v1/agent-states/{thread_id}/relevance", tag = "agent_states", operation_id = "agent_state_set_relevance",
    params(ThreadPath, IfMatchHeader),
    request_body = RelevanceRequest,
    responses(
        (status = 200, description = "Set", body = RelevanceResponse,
         headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "Invalid thread id, If-Match or JSON"),
        (status = 404, description = "No live thread"),
        (status = 412, description = "If-Match is stale; nothing was written"),
        (status = 422, description = "is_relevant missing or not a boolean, or unknown fields"),
    ),
)]
pub async fn put_relevance(
    State(state): State<AppState>,
    WriteAt(tenant, thread): WriteAt<ThreadPath>,
    IfMatch(if_version): IfMatch,
    AppJson(request): AppJson<RelevanceRequest>,
) -> ApiResult<Response> {
    match state
        .stores
        .agent_states
        .set_relevance(&tenant, &thread, request.is_relevant, if_version)
        .await?
    {
        Versioned::Done(version) => Ok((
            [(header::ETAG, etag(version))],
            Json(RelevanceResponse {
                thread_id: thread.to_string(),
                is_relevant: request.is_relevant,
                version,
            }),
        )
            .into_response()),
        outcome => Err(refused(outcome)),
    }
}

/// Page through every thread id of the tenant, each exactly once.
#[utoipa::path(
    get, path = "/v1/agent-states", tag = "agent_states", operation_id = "agent_state_list",
    params(ListQuery),
    responses(
        (status = 200, description = "One page", body = ListResponse),
        (status = 400, description = "Invalid limit or cursor"),
    ),
)]
pub async fn list_states(
    State(state): State<AppState>,
    Reader(tenant): Reader,
    AppQuery(query): AppQuery<ListQuery>,
) -> ApiResult<Json<ListResponse>> {
    let limit = page_limit(query.limit, LIST_DEFAULT, LIST_MAX)?;
    let after = page_cursor(query.cursor.as_deref(), ListCursor::decode)?.map(|cursor| cursor.0);
    let page = state
        .stores
        .agent_states
        .list(&tenant, after.as_ref(), limit)
        .await?;
    let next_cursor = page
        .thread_ids
        .last()
        .filter(|_| page.more)
        .map(|last| ListCursor(last.clone()).encode());
    Ok(Json(ListResponse {
        thread_ids: page.thread_ids.iter().map(ToString::to_string).collect(),
        next_cursor,
    }))
}

/// The most recently updated live threads, newest first.
#[utoipa::path(
    get, path = "/v1/agent-states/recent", tag = "agent_states", operation_id = "agent_state_recent",
    params(RecentQuery),
    responses(
        (status = 200, description = "Newest first; never an expired or deleted thread", body = RecentResponse),
        (status = 400, description = "Invalid limit"),
    ),
)]
pub async fn recent_states(
    State(state): State<AppState>,
    Reader(tenant): Reader,
    AppQuery(query): AppQuery<RecentQuery>,
) -> ApiResult<Json<RecentResponse>> {
    let limit = page_limit(query.limit, RECENT_DEFAULT, RECENT_MAX)?;
    let states = state.stores.agent_states.recent(&tenant, limit).await?;
    Ok(Json(RecentResponse { states }))
}

/// Drop the index entries of the tenant's expired threads. Reads already skip and drop them;
/// this is for a scheduled sweep.
#[utoipa::path(
    post, path = "/v1/agent-states/cleanup-expired", tag = "agent_states", operation_id = "agent_state_cleanup_expired",
    responses(
        (status = 200, description = "How many entries were dropped", body = CleanupResponse),
    ),
)]
pub async fn cleanup_expired(
    State(state): State<AppState>,
    Writer(tenant): Writer,
) -> ApiResult<Json<CleanupResponse>> {
    let removed = state.stores.agent_states.cleanup_expired(&tenant).await?;
    Ok(Json(CleanupResponse { removed }))
}

/// Seconds until a thread expires.
#[utoipa::path(
    get, path = "/v1/agent-states/{thread_id}/ttl", tag = "agent_states", operation_id = "agent_state_get_ttl",
    params(ThreadPath),
    responses(
        (status = 200, description = "The remaining TTL", body = TtlResponse),
        (status = 400, description = "Invalid thread id"),
        (status = 404, description = "No live thread"),
    ),
)]
pub async fn get_ttl(
    State(state): State<AppState>,
    ReadAt(tenant, thread): ReadAt<ThreadPath>,
) -> ApiResult<Json<TtlResponse>> {
    let ttl_seconds = state
        .stores
        .agent_states
        .ttl(&tenant, &thread)
        .await?
        .ok_or(ApiError::from(Missing::AgentState))?;
    Ok(Json(TtlResponse { ttl_seconds }))
}

/// Give a thread (all its keys) a new TTL from now; later writes renew it to this TTL too.
#[utoipa::path(
    post, path = "/v1/agent-states/{thread_id}/extend-ttl", tag = "agent_states", operation_id = "agent_state_extend_ttl",
    params(ThreadPath),
    request_body = TtlRequest,
    responses(
        (status = 200, description = "The new TTL", body = TtlResponse),
        (status = 400, description = "Invalid thread id or malformed JSON"),
        (status = 404, description = "No live thread"),
        (status = 422, description = "TTL out of range or unknown fields"),
    ),
)]
pub async fn extend_ttl(
    State(state): State<AppState>,
    WriteAt(tenant, thread): WriteAt<ThreadPath>,
    AppJson(request): AppJson<TtlRequest>,
) -> ApiResult<Json<TtlResponse>> {
    let ttl = Ttl::from_json(&request.ttl_seconds, state.settings.limits.max_ttl_seconds)?;
    if state
        .stores
        .agent_states
        .set_ttl(&tenant, &thread, ttl)
        .await?
    {
        Ok(Json(TtlResponse {
            ttl_seconds: ttl.seconds(),
        }))
    } else {
        Err(Missing::AgentState.into())
    }
}
