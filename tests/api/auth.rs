//! API keys and tenant isolation, on both backends.

use crate::common::{RedisServer, TestApp, settings, spawn_app};
use sha2::{Digest, Sha256};
use statekeeper::config::{ApiKeySettings, BackendMode, Scope, Settings};

const ACME_RW: &str = "acme-read-write-key";
const ACME_RO: &str = "acme-read-only-key";
const GLOBEX: &str = "globex-admin-key";

fn with_keys(mut settings: Settings) -> Settings {
    let key = |secret: &str, tenant: &str, scopes: Vec<Scope>| ApiKeySettings {
        sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        tenant: tenant.into(),
        scopes,
    };
    settings.auth.keys = vec![
        key(ACME_RW, "acme", vec![Scope::Read, Scope::Write]),
        key(ACME_RO, "acme", vec![Scope::Read]),
        key(GLOBEX, "globex", vec![Scope::Admin]),
    ];
    settings.validate().unwrap();
    settings
}

async fn put(app: &TestApp, key: Option<&str>, path: &str, body: &str) -> reqwest::Response {
    let mut request = app
        .client
        .put(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn get(app: &TestApp, key: Option<&str>, path: &str) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn code(response: reqwest::Response) -> String {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    problem["code"].as_str().unwrap().to_string()
}

async fn keys_scopes_and_tenants(app: &TestApp) {
    let path = "/v1/cache/shared/k";
    let missing = put(app, None, path, "1").await;
    assert_eq!(missing.status(), 401);
    assert_eq!(code(missing).await, "unauthorized");
    let wrong = get(app, Some("not-a-key"), path).await;
    assert_eq!(wrong.status(), 401);
    let read_only = put(app, Some(ACME_RO), path, "1").await;
    assert_eq!(read_only.status(), 403);
    assert_eq!(code(read_only).await, "forbidden");
    assert_eq!(
        get(app, Some(ACME_RO), path).await.status(),
        404,
        "the refused write wrote nothing"
    );

    assert_eq!(
        put(app, Some(ACME_RW), path, "\"acme\"").await.status(),
        204
    );
    assert_eq!(
        get(app, Some(ACME_RO), path).await.text().await.unwrap(),
        "\"acme\""
    );
    // Same namespace and key, other tenant: a different value, never acme's.
    assert_eq!(get(app, Some(GLOBEX), path).await.status(), 404);
    assert_eq!(
        put(app, Some(GLOBEX), path, "\"globex\"").await.status(),
        204
    );
    assert_eq!(
        get(app, Some(GLOBEX), path).await.text().await.unwrap(),
        "\"globex\""
    );
    assert_eq!(
        get(app, Some(ACME_RW), path).await.text().await.unwrap(),
        "\"acme\""
    );
    let delete = app
        .client
        .delete(app.url(path))
        .bearer_auth(GLOBEX)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    assert_eq!(
        get(app, Some(ACME_RW), path).await.status(),
        200,
        "globex deleted only its own"
    );

    // Health and the spec need no key.
    assert_eq!(get(app, None, "/health").await.status(), 200);
    assert_eq!(get(app, None, "/health/live").await.status(), 200);
    assert_eq!(get(app, None, "/health/ready").await.status(), 200);
    assert_eq!(get(app, None, "/openapi.json").await.status(), 200);
}

#[tokio::test]
async fn memory_backend() {
    let app = spawn_app(with_keys(settings(BackendMode::Memory, None))).await;
    keys_scopes_and_tenants(&app).await;
}

#[tokio::test]
async fn redis_backend() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(with_keys(settings(BackendMode::Redis, Some(&redis)))).await;
    keys_scopes_and_tenants(&app).await;
}

#[tokio::test]
async fn without_keys_everything_is_tenant_default() {
    let app = spawn_app(settings(BackendMode::Memory, None)).await;
    assert_eq!(put(&app, None, "/v1/cache/n/k", "1").await.status(), 204);
    // A bearer token is ignored when no keys are configured: same tenant.
    assert_eq!(
        get(&app, Some("anything"), "/v1/cache/n/k").await.status(),
        200
    );
}
