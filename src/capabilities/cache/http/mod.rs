//! `/v1/cache/...`: namespaced JSON values. This module holds the routes, the path and query
//! types, the OpenAPI links and what the handlers share; the handlers are in `value` (read,
//! write, delete, TTL), `atomic` (incr, compare-and-set, get-and-set, get-and-delete), `batch`
//! (`_mget`, `_mset`) and `listing` (list and delete by pattern).

mod atomic;
mod batch;
mod listing;
mod value;

pub use crate::capabilities::cache::http::{atomic::*, batch::*, listing::*, value::*};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::http::{
    AppState,
    extract::{
        AppJson, AppQuery, ContentType, ItemPath, ReadAt, WriteAt, id_path, page_limit,
        require_json_type,
    },
};
use crate::{
    capabilities::cache::{
        model::{CacheValue, Increment, ListCursor},
        port::{CasOutcome, PutCondition, TtlState},
    },
    config::Settings,
    domain::{
        glob::MAX_PATTERN_CHARS,
        ids::{CacheKey, Namespace},
        ttl::{Expiry, Ttl},
    },
    error::{ApiError, ApiResult, Conflict, Missing, Problem, problem_response},
};
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        get_value,
        head_value,
        put_value,
        delete_value,
        get_ttl,
        put_ttl,
        increment,
        compare_and_swap,
        get_and_set,
        get_and_delete,
        get_many,
        put_many,
        list_keys,
        delete_matching,
    ),
    modifiers(&CacheLinks),
    tags(
    (name = "cache", description = "Namespaced JSON values with TTLs"),
    )
)]
pub struct Api;

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

id_path!(NamespacePath, namespace => Namespace, "users", "1–256 bytes of `[A-Za-z0-9._:@-]`.");

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

impl ItemPath for EntryPath {
    type Id = (Namespace, CacheKey);

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
// Named apart from the agent state's, which is never `null`: the document holds one schema
// per name.
#[derive(Serialize, ToSchema)]
#[schema(as = CacheTtlResponse)]
pub struct TtlResponse {
    #[schema(example = 3600)]
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CacheTtlRequest)]
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

/// The cache's errors in the house format.
impl From<crate::capabilities::cache::model::InvalidValue> for ApiError {
    fn from(error: crate::capabilities::cache::model::InvalidValue) -> Self {
        use crate::capabilities::cache::model::InvalidValue;
        match error {
            InvalidValue::NotJson(_) => Self::invalid_request(error.to_string()),
            InvalidValue::TooLarge { .. } => Self::payload_too_large(error.to_string()),
        }
    }
}

impl From<crate::capabilities::cache::model::IncrError> for ApiError {
    fn from(error: crate::capabilities::cache::model::IncrError) -> Self {
        use crate::capabilities::cache::model::IncrError;
        match error {
            IncrError::NotANumber => Self::conflict("not_a_number", error.to_string()),
            IncrError::OutOfRange => Self::conflict("out_of_range", error.to_string()),
        }
    }
}
