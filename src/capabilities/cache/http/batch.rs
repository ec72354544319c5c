//! Several values of a namespace in one call: `_mget` and `_mset`.

use crate::capabilities::cache::http::*;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MgetRequest {
    /// Cache keys, at most `cache.max_batch_keys` (default 1000).
    #[schema(schema_with = key_array_schema)]
    keys: Vec<String>,
}

/// `{values: {key: JSON | null}}`; documentation only: the handler writes the bytes itself.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"values": {"user:1": {"name": "Ada"}, "user:2": null}}))]
pub struct MgetResponse {
    /// Each requested key's value, `null` when it has none.
    #[schema(value_type = Object)]
    values: serde_json::Map<String, serde_json::Value>,
}

/// Read several values of a namespace in one call.
#[utoipa::path(
    post, path = "/v1/cache/{namespace}/_mget", tag = "cache", operation_id = "cache_get_many",
    params(NamespacePath),
    request_body = MgetRequest,
    responses(
        (status = 200, description = "The values", body = MgetResponse),
        (status = 400, description = "Invalid namespace, key or malformed JSON"),
        (status = 422, description = "More keys than `cache.max_batch_keys`, or unknown fields"),
    ),
)]
pub async fn get_many(
    State(state): State<AppState>,
    ReadAt(tenant, ns): ReadAt<NamespacePath>,
    AppJson(request): AppJson<MgetRequest>,
) -> ApiResult<Response> {
    let mut keys = batch_keys(request.keys.iter(), &state.settings)?;
    // A key asked for twice is answered once: a JSON object has each member once.
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|key| seen.insert(key.as_str().to_string()));
    let values = state.stores.cache.get_many(&tenant, &ns, &keys).await?;
    // Written by hand so that each value goes out as the exact bytes stored.
    let size: usize = values.iter().flatten().map(|v| v.bytes().len()).sum();
    let mut body = Vec::with_capacity(64 + size);
    body.extend_from_slice(b"{\"values\":{");
    for (i, (key, value)) in keys.iter().zip(&values).enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, key.as_str()).map_err(|_| ApiError::internal())?;
        body.push(b':');
        match value {
            Some(v) => body.extend_from_slice(v.bytes()),
            None => body.extend_from_slice(b"null"),
        }
    }
    body.extend_from_slice(b"}}");
    Ok(json_bytes(Bytes::from(body)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MsetRequest {
    /// Key → any JSON value.
    #[schema(schema_with = entry_map_schema)]
    entries: std::collections::BTreeMap<String, Box<RawValue>>,
    /// One TTL for every entry; absent means `cache.default_ttl_seconds`.
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    ttl_seconds: Option<serde_json::Number>,
}

/// Write several values of a namespace atomically, all with the same TTL.
#[utoipa::path(
    post, path = "/v1/cache/{namespace}/_mset", tag = "cache", operation_id = "cache_put_many",
    params(NamespacePath),
    request_body = MsetRequest,
    responses(
        (status = 204, description = "All written"),
        (status = 400, description = "Invalid namespace, key or malformed JSON"),
        (status = 413, description = "A value larger than `cache.max_value_bytes`"),
        (status = 422, description = "More keys than `cache.max_batch_keys`, bad TTL or unknown fields"),
    ),
)]
pub async fn put_many(
    State(state): State<AppState>,
    WriteAt(tenant, ns): WriteAt<NamespacePath>,
    AppJson(request): AppJson<MsetRequest>,
) -> ApiResult<StatusCode> {
    let settings = &state.settings;
    let expiry = expiry_or_default(body_ttl(request.ttl_seconds.as_ref(), settings)?, settings);
    let keys = batch_keys(request.entries.keys(), settings)?;
    let entries = keys
        .into_iter()
        .zip(request.entries.values())
        .map(|(key, raw)| Ok((key, stored_value(raw, settings)?)))
        .collect::<ApiResult<Vec<_>>>()?;
    state
        .stores
        .cache
        .put_many(&tenant, &ns, &entries, expiry)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
