//! This capability's MCP tools: each one a call of its REST routes (`http::mcp`).

use axum::http::Method;
use rmcp::{
    ErrorData,
    handler::server::{tool::Extension, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use serde_json::{Value, json};

use crate::http::mcp::*;

#[tool_router(router = pending_action_tools, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Propose an action that a human must confirm before it runs (send an email, \
                       pay, delete). Answers a token; the action is confirmed exactly once with \
                       pending_action_confirm, or expires after ttl_seconds."
    )]
    async fn pending_action_create(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<CreateActionArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut body = json!({"intent_name": args.intent_name});
        if let Some(entities) = args.entities {
            body["entities"] = Value::Object(entities);
        }
        if let Some(summary) = args.summary {
            body["summary"] = Value::String(summary);
        }
        if let Some(ttl) = args.ttl_seconds {
            body["ttl_seconds"] = json!(ttl);
        }
        self.call(
            &parts,
            Method::POST,
            "/v1/pending-actions".into(),
            Some(body),
        )
        .await
    }

    #[tool(
        description = "Confirm a pending action by its token. Succeeds once: a second confirm is \
                       a tool error (already_confirmed), so the action never runs twice."
    )]
    async fn pending_action_confirm(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(args): Parameters<TokenArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let uri = format!("/v1/pending-actions/{}/confirm", url_part(&args.token));
        self.call(&parts, Method::POST, uri, None).await
    }
}
