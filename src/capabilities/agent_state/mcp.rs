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

#[tool_router(router = agent_state_tools, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Read a conversation's state: its messages (optionally only the last N), \
                       context and metadata."
    )]
    async fn agent_state_get(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<ThreadArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut uri = format!("/v1/agent-states/{}", url_part(&args.thread_id));
        if let Some(last) = args.last {
            uri.push_str(&format!("?last={last}"));
        }
        self.call(&parts, Method::GET, uri, None).await
    }

    #[tool(
        description = "Append messages to a conversation, creating it when it does not exist yet. \
                       Messages: {role: human|ai|system|tool, content}. Appends are atomic: \
                       concurrent appends never lose a message."
    )]
    async fn agent_state_append(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<AppendArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let thread = url_part(&args.thread_id);
        let uri = format!("/v1/agent-states/{thread}/messages");
        let body = json!({"messages": args.messages});
        let (status, answer) = self
            .request(&parts, Method::POST, uri, Some(body), &[])
            .await?;
        if status.as_u16() != 404 {
            return Ok(answered(status.is_success(), answer));
        }
        let create = json!({"thread_id": args.thread_id, "messages": args.messages});
        self.call(
            &parts,
            Method::POST,
            "/v1/agent-states".into(),
            Some(create),
        )
        .await
    }
}
