//! `/mcp`: statekeeper as Model Context Protocol tools (Streamable HTTP transport, the official
//! `rmcp` SDK), for agents.
//!
//! Each tool is a call of the REST API made inside the process: the tool's arguments become
//! the request, the MCP HTTP request's `Authorization` header is passed on, and the answer comes
//! back as the tool's result. So a tool has exactly REST's validation, API keys, tenants and
//! scopes (a key of tenant A reads tenant A's cache, never B's), and a refusal is a tool error
//! carrying the problem document (its `code`, `detail`), never a protocol failure. Arguments of
//! the wrong type are refused by the SDK as invalid parameters; the session goes on.
//!
//! The tools mirror the seed services' agent tools (write, read, list, delete, exists, clear a
//! namespace, health), plus agent states, pending actions, locks and rate limits.

mod args;

pub use self::args::*;
use axum::{
    body::Body,
    http::{HeaderValue, Method, Request, header},
};
use rmcp::{
    ErrorData, ServerHandler,
    handler::server::{router::tool::ToolRouter, tool::Extension},
    model::{
        CallToolResult, ContentBlock as Content, Implementation, ServerCapabilities, ServerConfig,
    },
    schemars::{self, JsonSchema},
    tool, tool_handler, tool_router,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::error::ApiError;
use crate::http::{router::App, state::AppState};

/// The MCP server of one session: the REST router it calls, and its tools: the kernel's
/// (`health`) and each capability's (its `mcp.rs`, named by its declaration's `mcp`).
#[derive(Clone)]
pub struct Tools {
    api: App,
    tool_router: ToolRouter<Self>,
}

/// `/mcp`, answering with the tools of `api` (the REST router), behind [`gate`].
pub fn service(api: App, state: AppState) -> axum::Router {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let settings = &state.settings.mcp;
    // Any `Host` may reach `/mcp`, as any may reach the REST routes: statekeeper is a service
    // behind its own listener and API keys, not a tool on a developer's machine. A browser's
    // `Origin` must be one of `mcp.allowed_origins` (DNS rebinding, the transport spec's
    // rule): with none listed, a request carrying any `Origin` gets 403.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_allowed_origins(settings.allowed_origins.clone())
        .enforce_origin_validation();
    let sessions = std::sync::Arc::new(LocalSessionManager::default());
    let tools = StreamableHttpService::new(
        move || Ok(Tools::new(api.clone())),
        sessions.clone(),
        config,
    );
    let gate_state = Gate {
        state,
        sessions: sessions.clone(),
        opening: std::sync::Arc::default(),
    };
    axum::Router::new()
        .fallback_service(tools)
        .layer(axum::middleware::from_fn_with_state(gate_state, gate))
}

/// What the gate before `/mcp` looks at.
#[derive(Clone)]
struct Gate {
    state: AppState,
    sessions: std::sync::Arc<
        rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
    >,
    /// Held while a request that opens a session is counted and served, so that racing
    /// `initialize` calls cannot pass the limit together.
    opening: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Before any MCP session exists: with API keys configured, a request without a valid key gets
/// 401 with `WWW-Authenticate: Bearer` (the MCP authorization spec), so a keyless caller never
/// holds a session; a new session past `mcp.max_sessions` gets 503 `over_capacity`. And
/// `DELETE /mcp` (a session's end) answers 204 rather than rmcp's 202, which clients read as
/// a failure.
async fn gate(
    axum::extract::State(gate): axum::extract::State<Gate>,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !gate.state.api_keys.is_empty()
        && let Err(refused) = gate.state.api_keys.authenticate(request.headers())
    {
        return refused.into_response();
    }
    let request = match request.method() == Method::POST {
        true => match checked_message(request, gate.state.settings.limits.max_body_bytes).await {
            Ok(request) => request,
            Err(refused) => return refused,
        },
        false => request,
    };
    let opens_session =
        request.method() == Method::POST && !request.headers().contains_key("mcp-session-id");
    let _opening = match opens_session {
        true => Some(gate.opening.lock().await),
        false => None,
    };
    if opens_session {
        let live = gate.sessions.sessions.read().await.len();
        let max = gate.state.settings.mcp.max_sessions;
        if live >= max {
            return crate::error::ApiError::over_capacity(format!(
                "{max} live MCP sessions at most (mcp.max_sessions): end one with DELETE /mcp, \
                 or try again later"
            ))
            .retry_after(5)
            .into_response();
        }
    }
    let deleting = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    if deleting && response.status() == axum::http::StatusCode::ACCEPTED {
        *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
    }
    response
}

/// A POST's body, read (at most `limit` bytes) and checked before rmcp sees it, which answers
/// plain text otherwise: not JSON is a JSON-RPC parse error (400, `-32700`), JSON that is not a
/// JSON-RPC message an invalid request (400, `-32600`); a body that is not declared JSON is
/// 415 and one over `limits.max_body_bytes` 413, both problem documents.
async fn checked_message(
    request: Request<Body>,
    limit: usize,
) -> Result<Request<Body>, axum::response::Response> {
    use axum::response::IntoResponse;
    let declared_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !declared_json {
        return Err(ApiError::unsupported_media_type(
            "an MCP message is JSON: Content-Type: application/json",
        )
        .into_response());
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let refusal = ApiError::payload_too_large(
                "the request body is larger than limits.max_body_bytes",
            );
            return Err(refusal.into_response());
        }
    };
    let rpc_error = |code: i64, message: String| {
        let error = json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": code, "message": message}});
        (axum::http::StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
    };
    // One parse on the way through; a second only to tell a refusal's kind.
    if let Err(e) = serde_json::from_slice::<rmcp::model::ClientJsonRpcMessage>(&bytes) {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                Err(e) => rpc_error(-32700, format!("Parse error: {e}")),
                Ok(_) => rpc_error(-32600, format!("Invalid Request: {e}")),
            },
        );
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// A tool's result: `answer` as JSON text, marked an error unless `success`.
pub(crate) fn answered(success: bool, answer: Value) -> CallToolResult {
    let content = vec![Content::text(answer.to_string())];
    if success {
        CallToolResult::success(content)
    } else {
        CallToolResult::error(content)
    }
}

impl Tools {
    fn new(api: App) -> Self {
        Self {
            api,
            tool_router: crate::capabilities::ALL
                .iter()
                .filter_map(|declaration| declaration.mcp)
                .fold(Self::kernel_tools(), |tools, more| tools + more()),
        }
    }

    /// Calls the REST API as the MCP request's caller: a 2xx answer is the tool's result,
    /// anything else a tool error with the problem document.
    pub(crate) async fn call(
        &self,
        parts: &axum::http::request::Parts,
        method: Method,
        uri: String,
        body: Option<Value>,
    ) -> Result<CallToolResult, ErrorData> {
        let (status, answer) = self.request(parts, method, uri, body, &[]).await?;
        Ok(answered(status.is_success(), answer))
    }

    /// The REST answer's status and body (JSON, or `{"status"}` when it has none).
    pub(crate) async fn request(
        &self,
        parts: &axum::http::request::Parts,
        method: Method,
        uri: String,
        body: Option<Value>,
        headers: &[(&'static str, HeaderValue)],
    ) -> Result<(axum::http::StatusCode, Value), ErrorData> {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            request = request.header(header::AUTHORIZATION, auth);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let body = match body {
            Some(body) => {
                request = request.header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        let response = self
            .api
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let answer = if bytes.is_empty() {
            json!({"status": status.as_u16()})
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok((status, answer))
    }
}

#[tool_router(router = kernel_tools)]
impl Tools {
    #[tool(
        description = "The service's health: status (ok, degraded, down), the backend in use and \
                       what each capability does while Redis is down."
    )]
    async fn health(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(&parts, Method::GET, "/health".into(), None).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    /// Each tool through the router; arguments of a known tool that do not fit its schema (a
    /// wrong type, a missing field) are a tool error with the problem document REST answers a
    /// body that does not fit (`validation_failed`), so an agent reads one shape of refusal.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        use rmcp::model::{CallToolResponse, ErrorCode};
        let known = self.tool_router.has_route(request.name.as_ref());
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let refused = |message: &str| {
            let refusal = ApiError::validation_failed(format!("arguments: {message}"));
            let problem = serde_json::to_value(refusal.problem()).unwrap_or_default();
            Ok(answered(false, problem).into())
        };
        match self.tool_router.call(call).await {
            // rmcp's own answer to arguments it could not read: plain text.
            Ok(CallToolResponse::Complete(result))
                if result.is_error == Some(true)
                    && result
                        .content
                        .first()
                        .and_then(|c| c.as_text())
                        .is_some_and(|text| {
                            text.text.starts_with("failed to deserialize parameters")
                        }) =>
            {
                let text = result.content[0].as_text().map(|t| t.text.clone());
                refused(&text.unwrap_or_default())
            }
            Err(error) if known && error.code == ErrorCode::INVALID_PARAMS => {
                refused(&error.message)
            }
            other => other,
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "statekeeper",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "statekeeper: short-lived state for agents. A JSON cache by namespace and key, \
             conversation state, actions a human confirms exactly once, locks and rate limits. \
             Every tool acts as the API key of this connection's Authorization header, within \
             its tenant.",
            )
    }
}
