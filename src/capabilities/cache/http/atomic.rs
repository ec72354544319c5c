//! Atomic read-modify-writes of one value: increment, compare-and-set, get-and-set and
//! get-and-delete.

use crate::capabilities::cache::http::*;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrRequest {
    /// How much to add; integers stay integers, anything else makes the value a float.
    #[schema(value_type = f64, example = 1)]
    by: serde_json::Number,
    /// TTL of a counter this call creates; an existing counter keeps its TTL.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000, example = 60)]
    ttl_seconds: Option<serde_json::Number>,
}

#[derive(Serialize, ToSchema)]
pub struct IncrResponse {
    /// The value after the increment.
    #[schema(value_type = f64, example = 42)]
    value: serde_json::Number,
}

/// Add to a numeric value atomically (a missing value counts as 0).
#[utoipa::path(
    post, path = "/v1/cache/{namespace}/{key}/incr", tag = "cache", operation_id = "cache_incr",
    params(EntryPath),
    request_body = IncrRequest,
    responses(
        (status = 200, description = "The new value", body = IncrResponse),
        (status = 400, description = "Invalid id or malformed JSON"),
        (status = 409, description = "`not_a_number`: the stored value is not a number; `out_of_range`: the result does not fit"),
        (status = 422, description = "Missing `by`, bad TTL or unknown fields"),
    ),
)]
pub async fn increment(
    State(state): State<AppState>,
    WriteAt(tenant, (ns, key)): WriteAt<EntryPath>,
    AppJson(request): AppJson<IncrRequest>,
) -> ApiResult<Json<IncrResponse>> {
    let settings = &state.settings;
    let expiry = expiry_or_default(body_ttl(request.ttl_seconds.as_ref(), settings)?, settings);
    let by = Increment::from_json(&request.by);
    let text = state
        .stores
        .cache
        .incr(&tenant, &ns, &key, by, expiry)
        .await??;
    let value = serde_json::from_str(&text).map_err(|_| ApiError::internal())?;
    Ok(Json(IncrResponse { value }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"expected": {"state": "draft"}, "value": {"state": "sent"}, "ttl_seconds": 600}))]
pub struct CasRequest {
    /// The value expected now, compared as JSON (key order and number spelling do not matter);
    /// `null` means "no value".
    #[schema(value_type = serde_json::Value)]
    expected: Box<RawValue>,
    /// The value to write when `expected` holds.
    #[schema(value_type = serde_json::Value)]
    value: Box<RawValue>,
    /// TTL of the written value; absent means `cache.default_ttl_seconds`.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    ttl_seconds: Option<serde_json::Number>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"swapped": true}))]
pub struct CasResponse {
    swapped: bool,
}

/// A failed compare-and-set: the problem document with the current value.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:statekeeper:problem:conflict", "title": "Conflict", "status": 409,
    "detail": "the current value is not the expected one", "code": "conflict",
    "swapped": false, "current": {"state": "sent"}
}))]
pub struct CasConflict {
    #[serde(flatten)]
    problem: Problem,
    /// Always false.
    swapped: bool,
    /// The current value, `null` when there is none.
    #[schema(value_type = serde_json::Value)]
    current: Box<RawValue>,
}

/// Write a value only if the current one equals `expected`: atomic, one winner per race.
#[utoipa::path(
    post, path = "/v1/cache/{namespace}/{key}/cas", tag = "cache", operation_id = "cache_compare_and_swap",
    params(EntryPath),
    request_body = CasRequest,
    responses(
        (status = 200, description = "Swapped", body = CasResponse),
        (status = 400, description = "Invalid id or malformed JSON"),
        (status = 409, description = "The current value differs from `expected`; nothing was written", body = CasConflict, content_type = "application/problem+json"),
        (status = 413, description = "Value larger than `cache.max_value_bytes`"),
        (status = 422, description = "Missing fields, bad TTL or unknown fields"),
    ),
)]
pub async fn compare_and_swap(
    State(state): State<AppState>,
    WriteAt(tenant, (ns, key)): WriteAt<EntryPath>,
    AppJson(request): AppJson<CasRequest>,
) -> ApiResult<Response> {
    let settings = &state.settings;
    let expiry = expiry_or_default(body_ttl(request.ttl_seconds.as_ref(), settings)?, settings);
    let value = stored_value(&request.value, settings)?;
    let expected: serde_json::Value = serde_json::from_str(request.expected.get())
        .map_err(|e| ApiError::invalid_request(format!("expected is not usable JSON: {e}")))?;
    let expected = (!expected.is_null()).then_some(expected);
    if state.settings.inject_bug == Some(crate::config::InjectedBug::CasSkipsCompare) {
        let cache = &state.stores.cache;
        cache
            .put(
                &tenant,
                &ns,
                &key,
                &value,
                expiry,
                crate::capabilities::cache::port::PutCondition::Always,
            )
            .await?;
        return Ok(Json(CasResponse { swapped: true }).into_response());
    }
    let outcome = state
        .stores
        .cache
        .compare_and_swap(&tenant, &ns, &key, expected.as_ref(), &value, expiry)
        .await?;
    Ok(match outcome {
        CasOutcome::Swapped => Json(CasResponse { swapped: true }).into_response(),
        CasOutcome::Failed { current } => {
            let current = match current {
                Some(v) => raw_json(v.bytes())?,
                None => raw_json(b"null")?,
            };
            let error = ApiError::from(Conflict::ValueChanged);
            problem_response(
                StatusCode::CONFLICT,
                &CasConflict {
                    problem: error.problem(),
                    swapped: false,
                    current,
                },
            )
        }
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"value": {"state": "sent"}, "ttl_seconds": 600}))]
pub struct GetAndSetRequest {
    /// The value to write.
    #[schema(value_type = serde_json::Value)]
    value: Box<RawValue>,
    /// TTL of the written value; absent means `cache.default_ttl_seconds`.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    ttl_seconds: Option<serde_json::Number>,
}

/// `{previous: JSON | null}`; documentation only: the handler writes the bytes itself.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"previous": {"state": "draft"}}))]
pub struct GetAndSetResponse {
    /// The value replaced, exactly as stored; `null` when there was none.
    #[schema(value_type = serde_json::Value)]
    previous: serde_json::Value,
}

/// Write a value and get the one it replaced, in one atomic step.
#[utoipa::path(
    post, path = "/v1/cache/{namespace}/{key}/get-and-set", tag = "cache", operation_id = "cache_get_and_set",
    params(EntryPath),
    request_body = GetAndSetRequest,
    responses(
        (status = 200, description = "Written; the previous value", body = GetAndSetResponse),
        (status = 400, description = "Invalid id or malformed JSON"),
        (status = 413, description = "Value larger than `cache.max_value_bytes`"),
        (status = 422, description = "Missing `value`, bad TTL or unknown fields"),
    ),
)]
pub async fn get_and_set(
    State(state): State<AppState>,
    WriteAt(tenant, (ns, key)): WriteAt<EntryPath>,
    AppJson(request): AppJson<GetAndSetRequest>,
) -> ApiResult<Response> {
    let settings = &state.settings;
    let expiry = expiry_or_default(body_ttl(request.ttl_seconds.as_ref(), settings)?, settings);
    let value = stored_value(&request.value, settings)?;
    let previous = state
        .stores
        .cache
        .get_and_set(&tenant, &ns, &key, &value, expiry)
        .await?;
    let previous = previous.as_ref().map_or(&b"null"[..], |v| v.bytes());
    let mut body = Vec::with_capacity(16 + previous.len());
    body.extend_from_slice(b"{\"previous\":");
    body.extend_from_slice(previous);
    body.push(b'}');
    Ok(json_bytes(Bytes::from(body)))
}

/// Read a value and delete it, in one atomic step: of concurrent callers exactly one gets it.
#[utoipa::path(
    post, path = "/v1/cache/{namespace}/{key}/get-and-delete", tag = "cache", operation_id = "cache_get_and_delete",
    params(EntryPath),
    responses(
        (status = 200, description = "The value, now deleted", body = serde_json::Value, example = json!({"report": "done"})),
        (status = 400, description = "Invalid namespace or key"),
        (status = 404, description = "No live value (or another caller took it)"),
    ),
)]
pub async fn get_and_delete(
    State(state): State<AppState>,
    WriteAt(tenant, (ns, key)): WriteAt<EntryPath>,
) -> ApiResult<Response> {
    let value = state
        .stores
        .cache
        .get_and_delete(&tenant, &ns, &key)
        .await?;
    value
        .map(|v| json_bytes(v.into_bytes()))
        .ok_or(ApiError::from(Missing::CacheValue))
}
