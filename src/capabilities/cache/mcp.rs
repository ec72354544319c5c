//! This capability's MCP tools: each one a call of its REST routes (`http::mcp`).

use axum::http::Method;
use rmcp::{
    ErrorData,
    handler::server::{tool::Extension, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use serde_json::json;

use crate::http::mcp::*;

#[tool_router(router = cache_tools, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Store a JSON value under namespace/key, replacing what was there. Use it to \
                       remember facts, intermediate results or state between steps. The value \
                       expires after ttl_seconds (default: the service's default TTL). Values are \
                       at most 512 KiB of JSON."
    )]
    async fn cache_write(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<WriteArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut uri = key_uri(&args.namespace, &args.key);
        if let Some(ttl) = args.ttl_seconds {
            uri.push_str(&format!("?ttl_seconds={ttl}"));
        }
        let (status, answer) = self
            .request(&parts, Method::PUT, uri, Some(args.value), &[])
            .await?;
        let stored = status.is_success();
        Ok(answered(
            stored,
            if stored {
                json!({"stored": true})
            } else {
                answer
            },
        ))
    }

    #[tool(
        description = "Read the JSON value stored under namespace/key. A missing or expired value \
                       is a tool error with code not_found."
    )]
    async fn cache_read(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<KeyArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let uri = key_uri(&args.namespace, &args.key);
        self.call(&parts, Method::GET, uri, None).await
    }

    #[tool(
        description = "List the keys of a namespace that match a glob pattern (default *). \
                       Answers {keys, next_cursor}; pass next_cursor back to continue while it is \
                       not null."
    )]
    async fn cache_list(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<ListArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut uri = format!(
            "/v1/cache/{}?match={}",
            url_part(&args.namespace),
            url_part(args.pattern.as_deref().unwrap_or("*"))
        );
        if let Some(cursor) = &args.cursor {
            uri.push_str(&format!("&cursor={}", url_part(cursor)));
        }
        self.call(&parts, Method::GET, uri, None).await
    }

    #[tool(description = "Delete the value under namespace/key (not_found when there is none).")]
    async fn cache_delete(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<KeyArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let uri = key_uri(&args.namespace, &args.key);
        self.call(&parts, Method::DELETE, uri, None).await
    }

    #[tool(description = "Whether a live value exists under namespace/key: {exists: true|false}.")]
    async fn cache_exists(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<KeyArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let uri = key_uri(&args.namespace, &args.key);
        let (status, answer) = self.request(&parts, Method::HEAD, uri, None, &[]).await?;
        Ok(match status.as_u16() {
            200 => answered(true, json!({"exists": true})),
            404 => answered(true, json!({"exists": false})),
            _ => answered(false, answer),
        })
    }

    #[tool(
        description = "Delete every value of a namespace (for example a role's or a finished \
                       task's data). Answers {deleted: n}."
    )]
    async fn cache_clear_namespace(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<NamespaceArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let uri = format!("/v1/cache/{}?match=*", url_part(&args.namespace));
        self.call(&parts, Method::DELETE, uri, None).await
    }
}
