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

#[tool_router(router = rate_limit_tools, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Check (and count) a request against a rate limit on key: at most limit \
                       requests per window_ms. Answers allowed (true or false) and, when denied, \
                       retry_after_ms. A denial is a normal answer, not an error."
    )]
    async fn rate_limit_check(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<RateLimitArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let rule = json!({
            "algorithm": args.algorithm.as_deref().unwrap_or("sliding_window"),
            "limit": args.limit,
            "window_ms": args.window_ms,
        });
        let mut body = json!({"rules": [rule]});
        if let Some(cost) = args.cost {
            body["cost"] = json!(cost);
        }
        let uri = format!("/v1/rate-limits/{}/check", url_part(&args.key));
        self.call(&parts, Method::POST, uri, Some(body)).await
    }
}
