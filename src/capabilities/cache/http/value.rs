//! Reading, writing and deleting one value, and its TTL.

use crate::capabilities::cache::http::*;

/// Read a value: exactly the JSON that was stored.
#[utoipa::path(
    get, path = "/v1/cache/{namespace}/{key}", tag = "cache", operation_id = "cache_get",
    params(EntryPath),
    responses(
        (status = 200, description = "The stored JSON value", body = serde_json::Value, example = json!({"name": "Ada", "roles": ["admin"]})),
        (status = 400, description = "Invalid namespace or key"),
        (status = 404, description = "No live value"),
    ),
)]
pub async fn get_value(
    State(state): State<AppState>,
    ReadAt(tenant, (ns, key)): ReadAt<EntryPath>,
) -> ApiResult<Response> {
    let value = state.stores.cache.get(&tenant, &ns, &key).await?;
    let hits = &state
        .metrics
        .outcomes
        .of(&crate::capabilities::cache::LOOKUPS);
    hits.count(if value.is_some() { "hit" } else { "miss" });
    value
        .map(|v| json_bytes(v.into_bytes()))
        .ok_or(ApiError::from(Missing::CacheValue))
}

/// Whether a value exists, without its body.
#[utoipa::path(
    head, path = "/v1/cache/{namespace}/{key}", tag = "cache", operation_id = "cache_head",
    params(EntryPath),
    responses(
        (status = 200, description = "A live value exists"),
        (status = 400, description = "Invalid namespace or key"),
        (status = 404, description = "No live value"),
    ),
)]
pub async fn head_value(
    State(state): State<AppState>,
    ReadAt(tenant, (ns, key)): ReadAt<EntryPath>,
) -> ApiResult<StatusCode> {
    let found = state.stores.cache.exists(&tenant, &ns, &key).await?;
    Missing::CacheValue.unless(found, StatusCode::OK)
}

/// Store any JSON value, replacing the previous one and its TTL.
#[utoipa::path(
    put, path = "/v1/cache/{namespace}/{key}", tag = "cache", operation_id = "cache_put",
    params(EntryPath, PutQuery),
    request_body(content = serde_json::Value, content_type = "application/json", description = "Any JSON value", example = json!({"name": "Ada", "roles": ["admin"]})),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Invalid id, TTL or JSON"),
        (status = 412, description = "The `if` condition did not hold; nothing was written"),
        (status = 413, description = "Value larger than the limits"),
    ),
)]
pub async fn put_value(
    State(state): State<AppState>,
    WriteAt(tenant, (ns, key)): WriteAt<EntryPath>,
    AppQuery(query): AppQuery<PutQuery>,
    ContentType(content_type): ContentType,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<StatusCode> {
    let settings = &state.settings;
    let ttl = query
        .ttl_seconds
        .map(|seconds| Ttl::new(seconds, settings.limits.max_ttl_seconds))
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let expiry = expiry_or_default(ttl, settings);
    require_json_type(content_type.as_ref())?;
    let value = CacheValue::parse(body?, settings.cache.max_value_bytes)?;
    let condition = match query.condition {
        None => PutCondition::Always,
        Some(WriteCondition::Absent) => PutCondition::IfAbsent,
        Some(WriteCondition::Present) => PutCondition::IfPresent,
    };
    let written = state
        .stores
        .cache
        .put(&tenant, &ns, &key, &value, expiry, condition)
        .await?;
    if written {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::precondition_failed(match condition {
            PutCondition::IfAbsent => "a value already exists for this key",
            _ => "no value exists for this key",
        }))
    }
}

/// Delete a value.
#[utoipa::path(
    delete, path = "/v1/cache/{namespace}/{key}", tag = "cache", operation_id = "cache_delete",
    params(EntryPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid namespace or key"),
        (status = 404, description = "No live value"),
    ),
)]
pub async fn delete_value(
    State(state): State<AppState>,
    WriteAt(tenant, (ns, key)): WriteAt<EntryPath>,
) -> ApiResult<StatusCode> {
    let found = state.stores.cache.delete(&tenant, &ns, &key).await?;
    Missing::CacheValue.unless(found, StatusCode::NO_CONTENT)
}

/// Seconds until a value expires (`null`: never).
#[utoipa::path(
    get, path = "/v1/cache/{namespace}/{key}/ttl", tag = "cache", operation_id = "cache_get_ttl",
    params(EntryPath),
    responses(
        (status = 200, description = "The remaining TTL", body = TtlResponse),
        (status = 400, description = "Invalid namespace or key"),
        (status = 404, description = "No live value"),
    ),
)]
pub async fn get_ttl(
    State(state): State<AppState>,
    ReadAt(tenant, (ns, key)): ReadAt<EntryPath>,
) -> ApiResult<Json<TtlResponse>> {
    let ttl_seconds = match state.stores.cache.ttl(&tenant, &ns, &key).await? {
        TtlState::Missing => return Err(Missing::CacheValue.into()),
        TtlState::Persistent => None,
        TtlState::Expires(seconds) => Some(seconds),
    };
    Ok(Json(TtlResponse { ttl_seconds }))
}

/// Give a live value a new TTL.
#[utoipa::path(
    put, path = "/v1/cache/{namespace}/{key}/ttl", tag = "cache", operation_id = "cache_set_ttl",
    params(EntryPath),
    request_body = TtlRequest,
    responses(
        (status = 204, description = "TTL set"),
        (status = 400, description = "Invalid id or malformed JSON"),
        (status = 404, description = "No live value"),
        (status = 422, description = "TTL out of range or unknown fields"),
    ),
)]
pub async fn put_ttl(
    State(state): State<AppState>,
    WriteAt(tenant, (ns, key)): WriteAt<EntryPath>,
    AppJson(request): AppJson<TtlRequest>,
) -> ApiResult<StatusCode> {
    let ttl = Ttl::from_json(&request.ttl_seconds, state.settings.limits.max_ttl_seconds)?;
    let found = state.stores.cache.set_ttl(&tenant, &ns, &key, ttl).await?;
    Missing::CacheValue.unless(found, StatusCode::NO_CONTENT)
}
