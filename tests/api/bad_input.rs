//! Bad input gets the right 4xx problem+json and changes nothing.

use crate::common::{TestApp, settings, spawn_app};
use statekeeper::config::BackendMode;

const KEY: &str = "/v1/cache/ns/k";

async fn app() -> TestApp {
    let mut settings = settings(BackendMode::Memory, None);
    settings.limits.max_body_bytes = 1024;
    settings.limits.max_ttl_seconds = 1000;
    settings.cache.default_ttl_seconds = 100;
    settings.cache.max_value_bytes = 512;
    let app = spawn_app(settings).await;
    let put = app
        .client
        .put(app.url(KEY))
        .header("content-type", "application/json")
        .body("\"original\"")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    app
}

async fn expect_problem(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status, "{code}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status);
    assert!(problem["type"].as_str().unwrap().ends_with(code));
    assert!(!problem["detail"].as_str().unwrap().is_empty());
}

async fn unchanged(app: &TestApp) {
    let got = app.client.get(app.url(KEY)).send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "\"original\"");
    let (_, ttl) = app.get_json(&format!("{KEY}/ttl")).await;
    assert!(ttl["ttl_seconds"].as_u64().unwrap() <= 100, "{ttl}");
}

async fn put_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app.client.put(app.url(path)).body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn malformed_json() {
    let app = app().await;
    expect_problem(
        put_raw(&app, KEY, Some("application/json"), b"{\"a\":".to_vec()).await,
        400,
        "invalid_request",
    )
    .await;
    expect_problem(
        put_raw(&app, KEY, Some("application/json"), b"".to_vec()).await,
        400,
        "invalid_request",
    )
    .await;
    expect_problem(
        put_raw(
            &app,
            &format!("{KEY}/ttl"),
            Some("application/json"),
            b"{ttl_seconds: 5}".to_vec(),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    unchanged(&app).await;
}

#[tokio::test]
async fn wrong_content_type() {
    let app = app().await;
    expect_problem(
        put_raw(&app, KEY, Some("text/plain"), b"1".to_vec()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    expect_problem(
        put_raw(&app, KEY, None, b"1".to_vec()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    expect_problem(
        put_raw(
            &app,
            &format!("{KEY}/ttl"),
            Some("text/plain"),
            b"{\"ttl_seconds\":5}".to_vec(),
        )
        .await,
        415,
        "unsupported_media_type",
    )
    .await;
    unchanged(&app).await;
}

#[tokio::test]
async fn oversized_bodies() {
    let app = app().await;
    let over_body_limit = format!("\"{}\"", "x".repeat(2000)).into_bytes();
    expect_problem(
        put_raw(&app, KEY, Some("application/json"), over_body_limit).await,
        413,
        "payload_too_large",
    )
    .await;
    let over_value_limit = format!("\"{}\"", "x".repeat(600)).into_bytes();
    expect_problem(
        put_raw(&app, KEY, Some("application/json"), over_value_limit).await,
        413,
        "payload_too_large",
    )
    .await;
    let ttl_body =
        format!("{{\"ttl_seconds\": 5, \"pad\": \"{}\"}}", "x".repeat(2000)).into_bytes();
    expect_problem(
        put_raw(
            &app,
            &format!("{KEY}/ttl"),
            Some("application/json"),
            ttl_body,
        )
        .await,
        413,
        "payload_too_large",
    )
    .await;
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
        expect_problem(
            put_raw(&app, &path, Some("application/json"), b"1".to_vec()).await,
            400,
            "invalid_id",
        )
        .await;
        let got = app.client.get(app.url(&path)).send().await.unwrap();
        expect_problem(got, 400, "invalid_id").await;
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
        let response = put_raw(
            &app,
            &format!("{KEY}{query}"),
            Some("application/json"),
            b"1".to_vec(),
        )
        .await;
        expect_problem(response, 400, "invalid_request").await;
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
        let response = put_raw(
            &app,
            &format!("{KEY}/ttl"),
            Some("application/json"),
            body.as_bytes().to_vec(),
        )
        .await;
        expect_problem(response, 422, "validation_failed").await;
    }
    unchanged(&app).await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let app = app().await;
    expect_problem(
        app.client.get(app.url("/v1/nothing")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_problem(
        app.client.post(app.url(KEY)).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    unchanged(&app).await;
}
