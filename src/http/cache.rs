//! `/v1/cache/{namespace}/{key}`: namespaced JSON values.

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    extract::{AppJson, AppPath, AppQuery, Reader, Writer, require_json},
};
use crate::{
    config::Settings,
    domain::{
        cache::{CacheValue, Increment, ListCursor},
        glob::MAX_PATTERN_CHARS,
        ids::{CacheKey, Namespace},
        ttl::{Expiry, Ttl},
    },
    error::Missing,
    error::{ApiError, ApiResult, Problem, problem_response},
    store::{CasOutcome, PutCondition, TtlState},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/cache/{namespace}",
            get(list_keys).delete(delete_matching),
        )
        .route("/v1/cache/{namespace}/_mget", post(get_many))
        .route("/v1/cache/{namespace}/_mset", post(put_many))
        .route(
            "/v1/cache/{namespace}/{key}",
            get(get_value)
                .head(head_value)
                .put(put_value)
                .delete(delete_value),
        )
        .route("/v1/cache/{namespace}/{key}/ttl", get(get_ttl).put(put_ttl))
        .route("/v1/cache/{namespace}/{key}/incr", post(increment))
        .route("/v1/cache/{namespace}/{key}/cas", post(compare_and_swap))
        .route("/v1/cache/{namespace}/{key}/get-and-set", post(get_and_set))
        .route(
            "/v1/cache/{namespace}/{key}/get-and-delete",
            post(get_and_delete),
        )
}

// The schemas state what `domain::ids` and the handlers accept, and the default limits
// (`limits.max_ttl_seconds` 30 days, `cache.max_batch_keys` 1000).

/// A cache key: 1–256 bytes of `[A-Za-z0-9._:@-]`, not starting with `_` (`_mget` is a route).
const KEY_PATTERN: &str = "^[A-Za-z0-9.:@-][A-Za-z0-9._:@-]{0,255}$";

/// OpenAPI links from `PUT` of an entry to the operations that read, expire or delete that same
/// entry, so that generated stateful tests (schemathesis) reach stored values instead of only
/// 404s. None to `incr` and `cas`: they also create a missing value (at `.../incr`, `.../cas`),
/// which a client reading the links could not tell from a read. None to
/// `GET`/`DELETE /v1/cache/{namespace}`: a namespace is not a resource that writes create or a
/// DELETE removes (its listing stays, maybe empty).
pub struct CacheLinks;

impl utoipa::Modify for CacheLinks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, link::LinkBuilder};
        let Some(RefOr::T(stored)) = openapi
            .paths
            .paths
            .get_mut("/v1/cache/{namespace}/{key}")
            .and_then(|item| item.put.as_mut())
            .and_then(|put| put.responses.responses.get_mut("204"))
        else {
            return;
        };
        for target in [
            "cache_get",
            "cache_head",
            "cache_get_ttl",
            "cache_set_ttl",
            "cache_delete",
        ] {
            let link = LinkBuilder::new()
                .operation_id(target)
                .parameter("namespace", "$request.path.namespace")
                .parameter("key", "$request.path.key");
            stored.links.insert(target.into(), RefOr::T(link.build()));
        }
    }
}

/// The path of one cache entry.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EntryPath {
    /// 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "users")]
    namespace: String,
    /// 1–256 bytes of `[A-Za-z0-9._:@-]`, not starting with `_`.
    #[param(
        pattern = "^[A-Za-z0-9.:@-][A-Za-z0-9._:@-]{0,255}$",
        example = "user:1"
    )]
    key: String,
}

/// The path of a whole namespace.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NamespacePath {
    /// 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "users")]
    namespace: String,
}

/// `{type: array, items: cache key}` of at most `cache.max_batch_keys` (default 1000).
fn key_array_schema() -> utoipa::openapi::Array {
    utoipa::openapi::ArrayBuilder::new()
        .items(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .pattern(Some(KEY_PATTERN)),
        )
        .max_items(Some(1000))
        .examples([serde_json::json!(["user:1", "user:2"])])
        .build()
}

/// `{cache key: any JSON}` of at most `cache.max_batch_keys` (default 1000) entries.
fn entry_map_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Object)
        .property_names(Some(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .pattern(Some(KEY_PATTERN)),
        ))
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(true),
        ))
        .max_properties(Some(1000))
        .examples([serde_json::json!({"user:1": {"name": "Ada"}, "user:2": {"name": "Grace"}})])
        .build()
}

impl EntryPath {
    fn parse(self) -> ApiResult<(Namespace, CacheKey)> {
        Ok((
            Namespace::parse(self.namespace)?,
            CacheKey::parse(self.key)?,
        ))
    }
}

/// When a write applies.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteCondition {
    /// Only when no value exists.
    Absent,
    /// Only when a value exists.
    Present,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// Seconds until the value expires (1 to `limits.max_ttl_seconds`); absent means
    /// `cache.default_ttl_seconds`.
    #[param(minimum = 1, maximum = 2592000, example = 600)]
    ttl_seconds: Option<u64>,
    /// Write only when the key is absent or present; 412 otherwise.
    #[serde(rename = "if")]
    #[param(rename = "if", inline)]
    condition: Option<WriteCondition>,
}

/// A TTL: `null` when the value never expires.
#[derive(Serialize, ToSchema)]
pub struct TtlResponse {
    #[schema(example = 3600)]
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TtlRequest {
    /// 1 to `limits.max_ttl_seconds` (default 30 days).
    #[schema(value_type = u64, minimum = 1, maximum = 2592000, example = 600)]
    ttl_seconds: serde_json::Number,
}

fn json_bytes(bytes: Bytes) -> Response {
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A value's expiry: the given TTL, else `cache.default_ttl_seconds` (0: never).
fn expiry_or_default(ttl: Option<Ttl>, settings: &Settings) -> Expiry {
    match (ttl, settings.cache.default_ttl_seconds) {
        (Some(ttl), _) => Expiry::After(ttl),
        (None, 0) => Expiry::Never,
        // Validated at startup: 1 ≤ default ≤ max_ttl_seconds.
        (None, seconds) => Ttl::new(seconds, seconds).map_or(Expiry::Never, Expiry::After),
    }
}

/// A TTL sent in a JSON body (422 when out of range).
fn body_ttl(ttl: Option<&serde_json::Number>, settings: &Settings) -> ApiResult<Option<Ttl>> {
    ttl.map(|n| Ttl::from_json(n, settings.limits.max_ttl_seconds))
        .transpose()
        .map_err(Into::into)
}

/// Read a value: exactly the JSON that was stored.
#[utoipa::path(
    get, path = "/v1/cache/{namespace}/{key}", tag = "cache", operation_id = "cache_get",
    params(EntryPath),
    responses(
        (status = 200, description = "The stored JSON value", body = serde_json::Value, example = json!({"name": "Ada", "roles": ["admin"]})),
        (status = 400, description = "Invalid namespace or key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live value", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_value(
    State(state): State<AppState>,
    Reader(tenant): Reader,
    AppPath(path): AppPath<EntryPath>,
) -> ApiResult<Response> {
    let (ns, key) = path.parse()?;
    let value = state.stores.cache.get(&tenant, &ns, &key).await?;
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
    security(("bearer" = []))
)]
pub async fn head_value(
    State(state): State<AppState>,
    Reader(tenant): Reader,
    AppPath(path): AppPath<EntryPath>,
) -> ApiResult<StatusCode> {
    let (ns, key) = path.parse()?;
    if state.stores.cache.exists(&tenant, &ns, &key).await? {
        Ok(StatusCode::OK)
    } else {
        Err(Missing::CacheValue.into())
    }
}

/// Store any JSON value, replacing the previous one and its TTL.
#[utoipa::path(
    put, path = "/v1/cache/{namespace}/{key}", tag = "cache", operation_id = "cache_put",
    params(EntryPath, PutQuery),
    request_body(content = serde_json::Value, content_type = "application/json", description = "Any JSON value", example = json!({"name": "Ada", "roles": ["admin"]})),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Invalid id, TTL or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The `if` condition did not hold; nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Value larger than the limits", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_value(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(path): AppPath<EntryPath>,
    AppQuery(query): AppQuery<PutQuery>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<StatusCode> {
    let (ns, key) = path.parse()?;
    let settings = &state.settings;
    let ttl = query
        .ttl_seconds
        .map(|seconds| Ttl::new(seconds, settings.limits.max_ttl_seconds))
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let expiry = expiry_or_default(ttl, settings);
    require_json(&headers)?;
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
        (status = 400, description = "Invalid namespace or key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live value", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_value(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(path): AppPath<EntryPath>,
) -> ApiResult<StatusCode> {
    let (ns, key) = path.parse()?;
    if state.stores.cache.delete(&tenant, &ns, &key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Missing::CacheValue.into())
    }
}

/// Seconds until a value expires (`null`: never).
#[utoipa::path(
    get, path = "/v1/cache/{namespace}/{key}/ttl", tag = "cache", operation_id = "cache_get_ttl",
    params(EntryPath),
    responses(
        (status = 200, description = "The remaining TTL", body = TtlResponse),
        (status = 400, description = "Invalid namespace or key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live value", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_ttl(
    State(state): State<AppState>,
    Reader(tenant): Reader,
    AppPath(path): AppPath<EntryPath>,
) -> ApiResult<Json<TtlResponse>> {
    let (ns, key) = path.parse()?;
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
        (status = 400, description = "Invalid id or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live value", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "TTL out of range or unknown fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_ttl(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(path): AppPath<EntryPath>,
    AppJson(request): AppJson<TtlRequest>,
) -> ApiResult<StatusCode> {
    let (ns, key) = path.parse()?;
    let ttl = Ttl::from_json(&request.ttl_seconds, state.settings.limits.max_ttl_seconds)?;
    if state.stores.cache.set_ttl(&tenant, &ns, &key, ttl).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Missing::CacheValue.into())
    }
}

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
        (status = 400, description = "Invalid id or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_a_number`: the stored value is not a number; `out_of_range`: the result does not fit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing `by`, bad TTL or unknown fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn increment(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(path): AppPath<EntryPath>,
    AppJson(request): AppJson<IncrRequest>,
) -> ApiResult<Json<IncrResponse>> {
    let (ns, key) = path.parse()?;
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
        (status = 400, description = "Invalid id or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The current value differs from `expected`; nothing was written", body = CasConflict, content_type = "application/problem+json"),
        (status = 413, description = "Value larger than `cache.max_value_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing fields, bad TTL or unknown fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn compare_and_swap(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(path): AppPath<EntryPath>,
    AppJson(request): AppJson<CasRequest>,
) -> ApiResult<Response> {
    let (ns, key) = path.parse()?;
    let settings = &state.settings;
    let expiry = expiry_or_default(body_ttl(request.ttl_seconds.as_ref(), settings)?, settings);
    let value = stored_value(&request.value, settings)?;
    let expected: serde_json::Value = serde_json::from_str(request.expected.get())
        .map_err(|e| ApiError::invalid_request(format!("expected is not usable JSON: {e}")))?;
    let expected = (!expected.is_null()).then_some(expected);
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
            let error = ApiError::conflict("conflict", "the current value is not the expected one");
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
        (status = 400, description = "Invalid id or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Value larger than `cache.max_value_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing `value`, bad TTL or unknown fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_and_set(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(path): AppPath<EntryPath>,
    AppJson(request): AppJson<GetAndSetRequest>,
) -> ApiResult<Response> {
    let (ns, key) = path.parse()?;
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
        (status = 400, description = "Invalid namespace or key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live value (or another caller took it)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_and_delete(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(path): AppPath<EntryPath>,
) -> ApiResult<Response> {
    let (ns, key) = path.parse()?;
    let value = state
        .stores
        .cache
        .get_and_delete(&tenant, &ns, &key)
        .await?;
    value
        .map(|v| json_bytes(v.into_bytes()))
        .ok_or(ApiError::from(Missing::CacheValue))
}

/// A value from a JSON body, as the exact bytes the caller sent, within the size limit.
fn stored_value(raw: &RawValue, settings: &Settings) -> ApiResult<CacheValue> {
    let bytes = Bytes::copy_from_slice(raw.get().as_bytes());
    Ok(CacheValue::parse(bytes, settings.cache.max_value_bytes)?)
}

/// A stored value as a JSON member. Values are checked on the way in; one stored before that
/// check existed (not UTF-8) is sent with its bad bytes replaced rather than failing the call.
fn raw_json(bytes: &[u8]) -> ApiResult<Box<RawValue>> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    RawValue::from_string(text).map_err(|_| ApiError::internal())
}

/// Parses batch keys, refusing more than `cache.max_batch_keys`.
fn batch_keys<'a>(
    keys: impl ExactSizeIterator<Item = &'a String>,
    settings: &Settings,
) -> ApiResult<Vec<CacheKey>> {
    let max = settings.cache.max_batch_keys;
    if keys.len() > max {
        return Err(ApiError::validation_failed(format!(
            "at most {max} keys per call (cache.max_batch_keys)"
        )));
    }
    keys.map(|k| CacheKey::parse(k.as_str()).map_err(Into::into))
        .collect()
}

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
        (status = 400, description = "Invalid namespace, key or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "More keys than `cache.max_batch_keys`, or unknown fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_many(
    State(state): State<AppState>,
    Reader(tenant): Reader,
    AppPath(NamespacePath { namespace }): AppPath<NamespacePath>,
    AppJson(request): AppJson<MgetRequest>,
) -> ApiResult<Response> {
    let ns = Namespace::parse(namespace)?;
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
        (status = 400, description = "Invalid namespace, key or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A value larger than `cache.max_value_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "More keys than `cache.max_batch_keys`, bad TTL or unknown fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_many(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(NamespacePath { namespace }): AppPath<NamespacePath>,
    AppJson(request): AppJson<MsetRequest>,
) -> ApiResult<StatusCode> {
    let ns = Namespace::parse(namespace)?;
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Redis-style glob over keys: `*`, `?`, `[a-c]`, `[^a]`, backslash escapes; default `*`.
    #[serde(rename = "match")]
    #[param(
        rename = "match",
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]{1,512}$",
        example = "user:*"
    )]
    pattern: Option<String>,
    /// `next_cursor` of the previous page. A cursor from before a failover to the other
    /// backend starts the listing again.
    #[param(
        pattern = r"^(|m\.[A-Za-z0-9.:@-][A-Za-z0-9._:@-]{0,255}|r\.[0-9]{1,19})$",
        example = "r.17"
    )]
    cursor: Option<String>,
    /// Keys per page, 1–1000 (default 100). On Redis it is SCAN's COUNT hint, so a page may
    /// hold a few more or fewer keys, and a key may appear on two pages.
    #[param(minimum = 1, maximum = 1000, example = 100)]
    limit: Option<usize>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Redis-style glob over keys; default `*` (the whole namespace).
    #[serde(rename = "match")]
    #[param(
        rename = "match",
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]{1,512}$",
        example = "session:*"
    )]
    pattern: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"keys": ["user:1", "user:2"], "next_cursor": "r.17"}))]
pub struct KeyList {
    keys: Vec<String>,
    /// Pass as `cursor` to continue; `null` when the listing is complete.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"deleted": 2}))]
pub struct Deleted {
    deleted: u64,
}

fn pattern(raw: Option<String>) -> ApiResult<String> {
    let pattern = raw.unwrap_or_else(|| "*".into());
    if pattern.is_empty()
        || pattern.chars().count() > MAX_PATTERN_CHARS
        || pattern.chars().any(char::is_control)
    {
        return Err(ApiError::invalid_request(format!(
            "match must be 1-{MAX_PATTERN_CHARS} characters without control characters"
        )));
    }
    Ok(pattern)
}

/// List a namespace's keys matching a glob, a page at a time.
#[utoipa::path(
    get, path = "/v1/cache/{namespace}", tag = "cache", operation_id = "cache_list_keys",
    params(NamespacePath, ListQuery),
    responses(
        (status = 200, description = "One page of keys", body = KeyList),
        (status = 400, description = "Invalid namespace, pattern, cursor or limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_keys(
    State(state): State<AppState>,
    Reader(tenant): Reader,
    AppPath(NamespacePath { namespace }): AppPath<NamespacePath>,
    AppQuery(query): AppQuery<ListQuery>,
) -> ApiResult<Json<KeyList>> {
    let ns = Namespace::parse(namespace)?;
    let pattern = pattern(query.pattern)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_request("limit must be from 1 to 1000"));
    }
    let cursor = ListCursor::parse(query.cursor.as_deref())
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let page = state
        .stores
        .cache
        .list(&tenant, &ns, &pattern, &cursor, limit)
        .await?;
    Ok(Json(KeyList {
        keys: page.keys,
        next_cursor: page.next.encode(),
    }))
}

/// Delete a namespace's keys matching a glob (in batches); says how many.
#[utoipa::path(
    delete, path = "/v1/cache/{namespace}", tag = "cache", operation_id = "cache_delete_matching",
    params(NamespacePath, DeleteQuery),
    responses(
        (status = 200, description = "How many keys were deleted", body = Deleted),
        (status = 400, description = "Invalid namespace or pattern", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_matching(
    State(state): State<AppState>,
    Writer(tenant): Writer,
    AppPath(NamespacePath { namespace }): AppPath<NamespacePath>,
    AppQuery(query): AppQuery<DeleteQuery>,
) -> ApiResult<Json<Deleted>> {
    let ns = Namespace::parse(namespace)?;
    let pattern = pattern(query.pattern)?;
    let deleted = state
        .stores
        .cache
        .delete_matching(&tenant, &ns, &pattern)
        .await?;
    Ok(Json(Deleted { deleted }))
}
