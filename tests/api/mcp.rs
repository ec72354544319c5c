//! `/mcp` with the official SDK's own client (`rmcp`, Streamable HTTP): the tools are listed,
//! each is called on every backend, tenancy holds (a key of one tenant cannot read another's
//! cache through MCP), and bad arguments get an error while the session goes on.

use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::{RoleClient, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use statekeeper::config::{ApiKeySettings, Scope, Settings};

use crate::common::TestApp;

const ACME: &str = "acme-mcp-key";
const GLOBEX: &str = "globex-mcp-key";

fn with_keys(settings: &mut Settings) {
    let key = |secret: &str, tenant: &str| ApiKeySettings {
        sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        tenant: tenant.into(),
        scopes: vec![Scope::Read, Scope::Write],
    };
    settings.auth.keys = vec![key(ACME, "acme"), key(GLOBEX, "globex")];
}

type Client = RunningService<RoleClient, ()>;

async fn connect(app: &TestApp, key: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(app.url("/mcp")).auth_header(key);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("the MCP session starts")
}

async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// The tool's answer as JSON, asserting it succeeded.
fn ok(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{result:?}");
    body(result)
}

/// The problem document of a tool error.
fn problem(result: &CallToolResult) -> Value {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    body(result)
}

fn body(result: &CallToolResult) -> Value {
    let text = result.content[0]
        .as_text()
        .expect("a text content")
        .text
        .clone();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// Every tool, called once or more, with the answers REST gives.
async fn every_tool_answers(app: &TestApp) {
    let client = connect(app, ACME).await;
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "agent_state_append",
            "agent_state_get",
            "cache_clear_namespace",
            "cache_delete",
            "cache_exists",
            "cache_list",
            "cache_read",
            "cache_write",
            "health",
            "lock_acquire",
            "lock_release",
            "pending_action_confirm",
            "pending_action_create",
            "rate_limit_check",
        ]
    );
    assert!(
        tools
            .iter()
            .all(|t| t.description.as_ref().is_some_and(|d| d.len() > 40)),
        "every tool is described for a model"
    );

    let key = json!({"namespace": "notes", "key": "plan"});
    let write =
        json!({"namespace": "notes", "key": "plan", "value": {"step": 1}, "ttl_seconds": 60});
    assert_eq!(
        ok(&call(&client, "cache_write", write).await),
        json!({"stored": true})
    );
    assert_eq!(
        ok(&call(&client, "cache_read", key.clone()).await),
        json!({"step": 1})
    );
    assert_eq!(
        ok(&call(&client, "cache_exists", key.clone()).await),
        json!({"exists": true})
    );
    let listed = ok(&call(
        &client,
        "cache_list",
        json!({"namespace": "notes", "pattern": "p*"}),
    )
    .await);
    assert_eq!(listed["keys"], json!(["plan"]));
    assert_eq!(
        call(&client, "cache_delete", key.clone()).await.is_error,
        Some(false)
    );
    assert_eq!(
        ok(&call(&client, "cache_exists", key.clone()).await),
        json!({"exists": false})
    );
    let missing = problem(&call(&client, "cache_read", key.clone()).await);
    assert_eq!(missing["code"], "not_found");
    for k in ["a", "b"] {
        let write = json!({"namespace": "scratch", "key": k, "value": 1});
        ok(&call(&client, "cache_write", write).await);
    }
    let cleared = ok(&call(
        &client,
        "cache_clear_namespace",
        json!({"namespace": "scratch"}),
    )
    .await);
    assert_eq!(cleared["deleted"], 2);
    assert!(ok(&call(&client, "health", json!({})).await)["status"].is_string());

    let messages = json!([{"role": "human", "content": "hello"}]);
    let appended = call(
        &client,
        "agent_state_append",
        json!({"thread_id": "t-1", "messages": messages}),
    )
    .await;
    ok(&appended);
    let more = json!([{"role": "ai", "content": "hi"}]);
    ok(&call(
        &client,
        "agent_state_append",
        json!({"thread_id": "t-1", "messages": more}),
    )
    .await);
    let state = ok(&call(&client, "agent_state_get", json!({"thread_id": "t-1"})).await);
    assert_eq!(state["messages"].as_array().unwrap().len(), 2, "{state}");

    let action = json!({"intent_name": "send_email", "summary": "Email Ada the report"});
    let created = ok(&call(&client, "pending_action_create", action).await);
    let token = created["token"].as_str().unwrap().to_string();
    let confirmed = ok(&call(&client, "pending_action_confirm", json!({"token": token})).await);
    assert!(confirmed["confirmed_at"].is_string());
    let twice = problem(&call(&client, "pending_action_confirm", json!({"token": token})).await);
    assert_eq!(twice["code"], "already_confirmed");

    let lock = ok(&call(
        &client,
        "lock_acquire",
        json!({"name": "report", "ttl_ms": 10_000}),
    )
    .await);
    let held = problem(
        &call(
            &client,
            "lock_acquire",
            json!({"name": "report", "ttl_ms": 10_000}),
        )
        .await,
    );
    assert_eq!(held["code"], "lock_held");
    let release = json!({"name": "report", "lock_token": lock["lock_token"]});
    ok(&call(&client, "lock_release", release.clone()).await);
    assert_eq!(
        problem(&call(&client, "lock_release", release).await)["code"],
        "lock_lost"
    );

    let limit = json!({"key": "agent-7", "limit": 1, "window_ms": 60_000});
    assert_eq!(
        ok(&call(&client, "rate_limit_check", limit.clone()).await)["allowed"],
        true
    );
    assert_eq!(
        ok(&call(&client, "rate_limit_check", limit).await)["allowed"],
        false
    );
    client.cancel().await.unwrap();
}

/// A key of tenant acme cannot read globex's cache through MCP; an unknown key gets no session.
async fn tenancy_holds(app: &TestApp) {
    let globex = connect(app, GLOBEX).await;
    let write = json!({"namespace": "secrets", "key": "k", "value": "globex only"});
    ok(&call(&globex, "cache_write", write).await);
    let acme = connect(app, ACME).await;
    let read = json!({"namespace": "secrets", "key": "k"});
    assert_eq!(
        problem(&call(&acme, "cache_read", read.clone()).await)["code"],
        "not_found"
    );
    assert_eq!(
        ok(&call(&globex, "cache_read", read.clone()).await),
        "globex only"
    );
    // A stranger gets no session at all: the 401 comes before one exists.
    let config =
        StreamableHttpClientTransportConfig::with_uri(app.url("/mcp")).auth_header("not-a-key");
    let stranger = ().serve(StreamableHttpClientTransport::from_config(config)).await;
    assert!(stranger.is_err(), "no session without a valid key");
}

/// Bad arguments are an error of that call (a tool error with the problem's code, or invalid
/// parameters for a wrong type); the session goes on.
async fn bad_arguments_do_not_end_the_session(app: &TestApp) {
    let client = connect(app, ACME).await;
    let bad_id = json!({"namespace": "has space", "key": "k", "value": 1});
    assert_eq!(
        problem(&call(&client, "cache_write", bad_id).await)["code"],
        "invalid_id"
    );
    let bad_ttl = json!({"name": "l", "ttl_ms": 0});
    assert_eq!(
        problem(&call(&client, "lock_acquire", bad_ttl).await)["code"],
        "validation_failed"
    );
    let Value::Object(wrong_type) = json!({"namespace": 5, "key": ["k"]}) else {
        unreachable!()
    };
    let refused = client
        .call_tool(CallToolRequestParams::new("cache_read").with_arguments(wrong_type))
        .await
        .expect("a tool error, not a protocol failure");
    assert_eq!(
        problem(&refused)["code"],
        "validation_failed",
        "{refused:?}"
    );
    let unknown = client
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await;
    assert!(unknown.is_err() || unknown.unwrap().is_error == Some(true));
    // The same session still serves.
    assert!(ok(&call(&client, "health", json!({})).await)["status"].is_string());
}

crate::on_each_backend!(app with with_keys => every_tool_answers, tenancy_holds, bad_arguments_do_not_end_the_session);

/// An `initialize` sent as a plain HTTP request, with `key` as its bearer token and `origin`
/// as its `Origin` header.
async fn initialize(app: &TestApp, key: Option<&str>, origin: Option<&str>) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"}}});
    let mut request = app
        .request(reqwest::Method::POST, "/mcp")
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

/// With API keys configured, `/mcp` answers 401 with `WWW-Authenticate: Bearer` before any
/// session exists; a browser `Origin` that is not allowed gets 403; sessions are capped by
/// `mcp.max_sessions` (503 `over_capacity` past it), and one that ends (`DELETE /mcp`, 204)
/// gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_needs_a_key_an_allowed_origin_and_a_free_session() {
    let mut settings = crate::common::settings(statekeeper::config::BackendMode::Memory, None);
    with_keys(&mut settings);
    settings.mcp.max_sessions = 2;
    settings.mcp.allowed_origins = vec!["https://app.example.com:443".into()];
    let app = crate::common::spawn_app(settings).await;
    for key in [None, Some("not-a-key")] {
        let refused = initialize(&app, key, None).await;
        assert_eq!(refused.status(), 401, "{key:?}");
        let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    let listed = app
        .request(reqwest::Method::POST, "/mcp")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 401, "tools/list without a key");
    let foreign = initialize(&app, Some(ACME), Some("https://evil.example.com")).await;
    assert_eq!(foreign.status(), 403, "an Origin that is not allowed");
    let allowed = initialize(&app, Some(ACME), Some("https://app.example.com")).await;
    assert_eq!(allowed.status(), 200, "an allowed Origin");
    let session = allowed.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();

    let second = connect(&app, ACME).await;
    let full = initialize(&app, Some(ACME), None).await;
    assert_eq!(full.status(), 503, "past mcp.max_sessions");
    assert!(full.headers().contains_key("retry-after"));
    let problem: Value = full.json().await.unwrap();
    assert_eq!(problem["code"], "over_capacity", "{problem}");
    // The established sessions still serve.
    assert!(ok(&call(&second, "health", json!({})).await)["status"].is_string());

    // Bodies rmcp would answer in plain text: JSON-RPC errors, or problem documents.
    let post = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app
            .request(reqwest::Method::POST, "/mcp")
            .bearer_auth(ACME)
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    for (body, code) in [("{not json", -32700), (r#"{"hello": 1}"#, -32600)] {
        let refused = post(body, Some("application/json")).await.unwrap();
        assert_eq!(refused.status(), 400, "{body}");
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert_eq!(error["jsonrpc"], "2.0");
    }
    let untyped = post("{}", None).await.unwrap();
    assert_eq!(untyped.status(), 415);
    assert_eq!(
        untyped.headers()["content-type"],
        "application/problem+json"
    );

    let ended = app
        .request(reqwest::Method::DELETE, "/mcp")
        .bearer_auth(ACME)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    let again = initialize(&app, Some(ACME), None).await;
    assert_eq!(again.status(), 200, "the ended session's place is free");
}
