//! Bad input gets the right 4xx problem+json and changes nothing.

use crate::common::{TestApp, settings, spawn_app};
use reqwest::Method;
use statekeeper::config::BackendMode;

const KEY: &str = "/v1/cache/ns/k";
const TTL: &str = "/v1/cache/ns/k/ttl";
const JSON: Option<&str> = Some("application/json");

async fn app() -> TestApp {
    let mut settings = settings(BackendMode::Memory, None);
    settings.limits.max_body_bytes = 1024;
    settings.limits.max_ttl_seconds = 1000;
    settings.cache.default_ttl_seconds = 100;
    settings.cache.max_value_bytes = 512;
    let app = spawn_app(settings).await;
    assert_eq!(app.put_raw(KEY, "\"original\"").await.status, 204);
    app
}

/// PUTs `body` to `path` (with `content_type`, if any) and asserts the problem it gets.
async fn refused(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    (status, code): (u16, &str),
) {
    let reply = app.call_typed(Method::PUT, path, content_type, body).await;
    reply.assert_problem(status, code);
}

async fn unchanged(app: &TestApp) {
    assert_eq!(app.get(KEY).await.text(), "\"original\"");
    let ttl = app.get(TTL).await.body;
    assert!(ttl["ttl_seconds"].as_u64().unwrap() <= 100, "{ttl}");
}

#[tokio::test]
async fn malformed_json() {
    let app = app().await;
    let invalid = (400, "invalid_request");
    refused(&app, KEY, JSON, b"{\"a\":", invalid).await;
    refused(&app, KEY, JSON, b"", invalid).await;
    refused(&app, TTL, JSON, b"{ttl_seconds: 5}", invalid).await;
    unchanged(&app).await;
}

#[tokio::test]
async fn wrong_content_type() {
    let app = app().await;
    let unsupported = (415, "unsupported_media_type");
    refused(&app, KEY, Some("text/plain"), b"1", unsupported).await;
    refused(&app, KEY, None, b"1", unsupported).await;
    refused(
        &app,
        TTL,
        Some("text/plain"),
        b"{\"ttl_seconds\":5}",
        unsupported,
    )
    .await;
    unchanged(&app).await;
}

#[tokio::test]
async fn oversized_bodies() {
    let app = app().await;
    let too_large = (413, "payload_too_large");
    let over_body_limit = format!("\"{}\"", "x".repeat(2000));
    refused(&app, KEY, JSON, over_body_limit.as_bytes(), too_large).await;
    let over_value_limit = format!("\"{}\"", "x".repeat(600));
    refused(&app, KEY, JSON, over_value_limit.as_bytes(), too_large).await;
    let ttl_body = format!("{{\"ttl_seconds\": 5, \"pad\": \"{}\"}}", "x".repeat(2000));
    refused(&app, TTL, JSON, ttl_body.as_bytes(), too_large).await;
    unchanged(&app).await;
}

#[tokio::test]
async fn bad_ids() {
    let app = app().await;
    let long = "k".repeat(257);
    for path in [
        "/v1/cache/ns/_reserved".to_string(),
        "/v1/cache/ns/a%20b".to_string(),
        "/v1/cache/ns/a%2Fb".to_string(),
        "/v1/cache/n%7Bs/k".to_string(),
        "/v1/cache/ns/%C3%A9".to_string(),
        format!("/v1/cache/ns/{long}"),
    ] {
        refused(&app, &path, JSON, b"1", (400, "invalid_id")).await;
        app.get(&path).await.assert_problem(400, "invalid_id");
    }
    unchanged(&app).await;
}

#[tokio::test]
async fn bad_ttls() {
    let app = app().await;
    for query in [
        "?ttl_seconds=0",
        "?ttl_seconds=1001",
        "?ttl_seconds=-1",
        "?ttl_seconds=abc",
        "?ttl_seconds=1.5",
        "?if=sometimes",
        "?unknown=1",
    ] {
        let path = format!("{KEY}{query}");
        refused(&app, &path, JSON, b"1", (400, "invalid_request")).await;
    }
    for body in [
        r#"{"ttl_seconds":0}"#,
        r#"{"ttl_seconds":1001}"#,
        r#"{"ttl_seconds":-5}"#,
        r#"{"ttl_seconds":2.5}"#,
        r#"{"ttl_seconds":"5"}"#,
        r#"{}"#,
        r#"{"ttl_seconds":5,"extra":1}"#,
    ] {
        refused(&app, TTL, JSON, body.as_bytes(), (422, "validation_failed")).await;
    }
    unchanged(&app).await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let app = app().await;
    app.get("/v1/nothing")
        .await
        .assert_problem(404, "not_found");
    let post = app.send(app.request(Method::POST, KEY)).await;
    post.assert_problem(405, "method_not_allowed");
    unchanged(&app).await;
}
