//! This capability's MCP tools: each one a call of its REST routes (`http::mcp`).

use axum::http::{HeaderValue, Method};
use rmcp::{
    ErrorData,
    handler::server::{tool::Extension, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use serde_json::{Value, json};

use crate::http::mcp::*;

#[tool_router(router = lock_tools, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Take a named lock so that only one agent or worker does something at a \
                       time. Answers lock_token (to release it) and fencing_token (pass it to \
                       writes so that a stale holder is refused). Held by another: tool error \
                       lock_held with retry_after_ms."
    )]
    async fn lock_acquire(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<AcquireArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut body = json!({"ttl_ms": args.ttl_ms});
        if let Some(owner) = args.owner {
            body["owner"] = Value::String(owner);
        }
        if let Some(wait) = args.wait_ms {
            body["wait_ms"] = json!(wait);
        }
        let uri = format!("/v1/locks/{}", url_part(&args.name));
        self.call(&parts, Method::POST, uri, Some(body)).await
    }

    #[tool(
        description = "Release a lock with the lock_token lock_acquire returned. A token that no \
                       longer holds the lock is a tool error lock_lost."
    )]
    async fn lock_release(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<ReleaseArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let uri = format!("/v1/locks/{}", url_part(&args.name));
        let token = HeaderValue::from_str(&args.lock_token)
            .map_err(|_| ErrorData::invalid_params("lock_token is not a header value", None))?;
        let (status, answer) = self
            .request(&parts, Method::DELETE, uri, None, &[("lock-token", token)])
            .await?;
        let released = status.is_success();
        Ok(answered(
            released,
            if released {
                json!({"released": true})
            } else {
                answer
            },
        ))
    }
}
