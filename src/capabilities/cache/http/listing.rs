//! Listing a namespace's keys by glob, and deleting them.

use crate::capabilities::cache::http::*;

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
        (status = 400, description = "Invalid namespace, pattern, cursor or limit"),
    ),
)]
pub async fn list_keys(
    State(state): State<AppState>,
    ReadAt(tenant, ns): ReadAt<NamespacePath>,
    AppQuery(query): AppQuery<ListQuery>,
) -> ApiResult<Json<KeyList>> {
    let pattern = pattern(query.pattern)?;
    let limit = page_limit(query.limit, 100, 1000)?;
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
        (status = 400, description = "Invalid namespace or pattern"),
    ),
)]
pub async fn delete_matching(
    State(state): State<AppState>,
    WriteAt(tenant, ns): WriteAt<NamespacePath>,
    AppQuery(query): AppQuery<DeleteQuery>,
) -> ApiResult<Json<Deleted>> {
    let pattern = pattern(query.pattern)?;
    let deleted = state
        .stores
        .cache
        .delete_matching(&tenant, &ns, &pattern)
        .await?;
    Ok(Json(Deleted { deleted }))
}
