//! API keys and tenant isolation, on both backends.

use crate::common::{RedisServer, Reply, TestApp, settings, spawn_app};
use reqwest::Method;
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

/// A request with `key` as the bearer token (or none), and a JSON body for a PUT.
async fn call(app: &TestApp, key: Option<&str>, method: Method, path: &str) -> Reply {
    let mut request = app.request(method.clone(), path);
    if method == Method::PUT {
        let value = key.map_or("1".to_string(), |key| format!("\"{key}\""));
        request = request
            .header("content-type", "application/json")
            .body(value);
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    app.send(request).await
}

async fn keys_scopes_and_tenants(app: &TestApp) {
    let path = "/v1/cache/shared/k";
    let as_key = |key, method| call(app, key, method, path);
    as_key(None, Method::PUT)
        .await
        .assert_problem(401, "unauthorized");
    let wrong = as_key(Some("not-a-key"), Method::GET).await;
    wrong.assert_problem(401, "unauthorized");
    let read_only = as_key(Some(ACME_RO), Method::PUT).await;
    read_only.assert_problem(403, "forbidden");
    let after = as_key(Some(ACME_RO), Method::GET).await;
    assert_eq!(after.status, 404, "the refused write wrote nothing");

    assert_eq!(as_key(Some(ACME_RW), Method::PUT).await.status, 204);
    let acme = format!("\"{ACME_RW}\"");
    assert_eq!(as_key(Some(ACME_RO), Method::GET).await.text(), acme);
    // Same namespace and key, other tenant: a different value, never acme's.
    assert_eq!(as_key(Some(GLOBEX), Method::GET).await.status, 404);
    assert_eq!(as_key(Some(GLOBEX), Method::PUT).await.status, 204);
    let globex = format!("\"{GLOBEX}\"");
    assert_eq!(as_key(Some(GLOBEX), Method::GET).await.text(), globex);
    assert_eq!(as_key(Some(ACME_RW), Method::GET).await.text(), acme);
    assert_eq!(as_key(Some(GLOBEX), Method::DELETE).await.status, 204);
    let kept = as_key(Some(ACME_RW), Method::GET).await;
    assert_eq!(kept.status, 200, "globex deleted only its own");

    // Health and the spec need no key.
    for open in ["/health", "/health/live", "/health/ready", "/openapi.json"] {
        assert_eq!(
            call(app, None, Method::GET, open).await.status,
            200,
            "{open}"
        );
    }
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
    let path = "/v1/cache/n/k";
    assert_eq!(call(&app, None, Method::PUT, path).await.status, 204);
    // A bearer token is ignored when no keys are configured: same tenant.
    let read = call(&app, Some("anything"), Method::GET, path).await;
    assert_eq!((read.status, read.text()), (200, "1".to_string()));
}
