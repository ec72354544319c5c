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

/// A key of tenant acme cannot read globex's cache through MCP; no key is refused.
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
    let stranger = connect(app, "not-a-key").await;
    assert_eq!(
        problem(&call(&stranger, "cache_read", read).await)["code"],
        "unauthorized"
    );
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
        .await;
    match refused {
        Err(_) => {}
        Ok(result) => assert_eq!(result.is_error, Some(true), "{result:?}"),
    }
    let unknown = client
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await;
    assert!(unknown.is_err() || unknown.unwrap().is_error == Some(true));
    // The same session still serves.
    assert!(ok(&call(&client, "health", json!({})).await)["status"].is_string());
}

crate::on_each_backend!(app with with_keys => every_tool_answers, tenancy_holds, bad_arguments_do_not_end_the_session);
