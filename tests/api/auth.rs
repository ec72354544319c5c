//! API keys and tenant isolation, on both backends.

use crate::common::{Reply, TestApp, settings, spawn_app, with_api_keys};
use reqwest::Method;
use statekeeper::config::{BackendMode, Scope, Settings};

const ACME_RW: &str = "acme-read-write-key";
const ACME_RO: &str = "acme-read-only-key";
const GLOBEX: &str = "globex-admin-key";

fn with_keys(settings: &mut Settings) {
    let keys: [(&str, &str, &[Scope]); 3] = [
        (ACME_RW, "acme", &[Scope::Read, Scope::Write]),
        (ACME_RO, "acme", &[Scope::Read]),
        (GLOBEX, "globex", &[Scope::Admin]),
    ];
    with_api_keys(settings, &keys);
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
    // RFC 6750: a 401 names the scheme, and says when the token itself was bad.
    let challenge = wrong.header("www-authenticate");
    assert!(
        challenge.starts_with("Bearer realm=\"statekeeper\""),
        "{challenge}"
    );
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let missing = as_key(None, Method::GET).await;
    assert_eq!(
        missing.header("www-authenticate"),
        "Bearer realm=\"statekeeper\""
    );
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

crate::on_each_backend!(app with with_keys => keys_scopes_and_tenants);

#[tokio::test]
async fn without_keys_everything_is_tenant_default() {
    let app = spawn_app(settings(BackendMode::Memory, None)).await;
    let path = "/v1/cache/n/k";
    assert_eq!(call(&app, None, Method::PUT, path).await.status, 204);
    // A bearer token is ignored when no keys are configured: same tenant.
    let read = call(&app, Some("anything"), Method::GET, path).await;
    assert_eq!((read.status, read.text()), (200, "1".to_string()));
}
