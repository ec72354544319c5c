//! Inputs that once stalled the service, became 500s or came back changed: each answers a
//! clear 4xx (or its exact value) on every backend, and changes nothing it should not.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::config::BackendMode;

use crate::common::{TestApp, settings, spawn_app};

/// A request with a body of exact bytes (or none), on the shared helpers.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let reply = match body {
        Some(body) => app.call_raw(method, path, body).await,
        None => app.call(method, path, None).await,
    };
    (reply.status, reply.headers, reply.bytes)
}

async fn json_call(app: &TestApp, method: Method, path: &str, body: Value) -> (u16, Value) {
    let reply = app.call(method, path, Some(body)).await;
    (reply.status, reply.body)
}

fn is_problem(headers: &reqwest::header::HeaderMap, body: &[u8], code: &str) -> bool {
    let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    headers
        .get("content-type")
        .is_some_and(|v| v == "application/problem+json")
        && headers.contains_key("x-request-id")
        && problem["code"] == code
}

/// An exponential-time glob once held a runtime thread for ~30 s: the listing must answer at
/// once, and the service must stay live meanwhile.
async fn a_pathological_pattern_answers_at_once(app: &TestApp) {
    let key = "a".repeat(256);
    let (status, _, _) = send(app, Method::PUT, &format!("/v1/cache/gl/{key}"), Some(b"1")).await;
    assert_eq!(status, 204);
    let started = Instant::now();
    let listing = send(app, Method::GET, "/v1/cache/gl?match=*a*a*a*a*b", None);
    let live = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        app.status("/health/live").await
    };
    let ((status, _, body), live) = tokio::join!(listing, live);
    assert_eq!(status, 200);
    assert_eq!(live, 200);
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["keys"], json!([]));
    let long = format!("/v1/cache/gl?match={}*b", "*a".repeat(200));
    let (status, _, _) = send(app, Method::GET, &long, None).await;
    assert_eq!(status, 200);
    let (status, _, body) = send(app, Method::DELETE, &long, None).await;
    assert_eq!(
        (
            status,
            serde_json::from_slice::<Value>(&body).unwrap()["deleted"].clone()
        ),
        (200, json!(0))
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the pathological patterns took {:?}",
        started.elapsed()
    );
}

/// `1e400` and JSON nested past serde's depth limit are valid JSON a caller may send: never a
/// 500, and a stored `1e400` compares equal to itself.
async fn compare_and_swap_takes_any_json(app: &TestApp) {
    let (status, _) = json_call(
        app,
        Method::POST,
        "/v1/cache/h/big/cas",
        json!({"expected": null, "value": 1}),
    )
    .await;
    assert_eq!(status, 200);
    let body = br#"{"expected": 1e400, "value": 2}"#.to_vec();
    let (status, headers, bytes) = send(
        app,
        Method::POST,
        "/v1/cache/h/big/cas",
        Some(body.as_ref()),
    )
    .await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&bytes));
    assert!(is_problem(&headers, &bytes, "conflict"));
    let (status, _, _) = send(app, Method::PUT, "/v1/cache/h/huge", Some(b"1e400")).await;
    assert_eq!(status, 204);
    let body = br#"{"expected": 1e400, "value": "swapped"}"#.to_vec();
    let (status, _, bytes) = send(
        app,
        Method::POST,
        "/v1/cache/h/huge/cas",
        Some(body.as_ref()),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let body = format!(r#"{{"expected": {deep}, "value": 3}}"#);
    let (status, headers, bytes) = send(
        app,
        Method::POST,
        "/v1/cache/h/big/cas",
        Some(body.as_ref()),
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&bytes));
    assert!(is_problem(&headers, &bytes, "invalid_request"));
    let (_, _, bytes) = send(app, Method::GET, "/v1/cache/h/big", None).await;
    assert_eq!(bytes, b"1", "a refused swap changed nothing");
}

/// A JSON string with a raw 0xFF byte is not JSON: refused like `_mset` refuses it.
async fn cache_values_must_be_utf8(app: &TestApp) {
    let (status, headers, bytes) =
        send(app, Method::PUT, "/v1/cache/h/bytes", Some(b"\"\xff\"")).await;
    assert_eq!(status, 400);
    assert!(is_problem(&headers, &bytes, "invalid_request"));
    let (status, _, _) = send(app, Method::GET, "/v1/cache/h/bytes", None).await;
    assert_eq!(status, 404, "nothing was stored");
    let body = b"{\"expected\": null, \"value\": \"\xff\"}";
    let (status, _, _) = send(
        app,
        Method::POST,
        "/v1/cache/h/bytes/cas",
        Some(body.as_ref()),
    )
    .await;
    assert_eq!(status, 400);
}

async fn a_key_asked_twice_is_answered_once(app: &TestApp) {
    let (status, _, _) = send(app, Method::PUT, "/v1/cache/h/k1", Some(b"{\"n\":1}")).await;
    assert_eq!(status, 204);
    let (status, _, bytes) = send(
        app,
        Method::POST,
        "/v1/cache/h/_mget",
        Some(br#"{"keys":["k1","k2","k1","k2"]}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        r#"{"values":{"k1":{"n":1},"k2":null}}"#,
        "each key once, in the order first asked"
    );
}

/// Numbers past 64 bits come back as sent, in every capability.
async fn numbers_come_back_exactly(app: &TestApp) {
    let big = "12345678901234567890123";
    let body = format!(
        r#"{{"intent_name": "pay", "entities": {{"amount": {big}, "ratio": 0.1000000000000000055511151231257827}}}}"#
    );
    let (status, _, bytes) = send(
        app,
        Method::POST,
        "/v1/pending-actions",
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(status, 201);
    let created = String::from_utf8(bytes).unwrap();
    assert!(created.contains(&format!(r#""amount":{big}"#)), "{created}");
    let token = serde_json::from_str::<Value>(&created).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, bytes) = send(
        app,
        Method::GET,
        &format!("/v1/pending-actions/{token}"),
        None,
    )
    .await;
    assert!(
        String::from_utf8(bytes)
            .unwrap()
            .contains(&format!(r#""amount":{big}"#))
    );

    let body = format!(
        r#"{{"thread_id": "t-big", "context": {{"n": {big}}}, "messages": [{{"role": "human", "content": [{{"type": "text", "text": "x", "n": {big}}}]}}]}}"#
    );
    let (status, _, _) = send(app, Method::POST, "/v1/agent-states", Some(body.as_bytes())).await;
    assert_eq!(status, 201);
    let (_, _, bytes) = send(app, Method::GET, "/v1/agent-states/t-big", None).await;
    let state = String::from_utf8(bytes).unwrap();
    assert_eq!(state.matches(big).count(), 2, "{state}");

    let body = format!(r#"{{"user_id": "u-big", "data": {{"n": {big}}}}}"#);
    let (status, _, bytes) = send(app, Method::POST, "/v1/sessions", Some(body.as_bytes())).await;
    assert_eq!(status, 201);
    let id = serde_json::from_slice::<Value>(&bytes).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let patch = format!(r#"{{"data": {{"m": -{big}}}}}"#);
    let (status, _, _) = send(
        app,
        Method::PATCH,
        &format!("/v1/sessions/{id}"),
        Some(patch.as_bytes()),
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, bytes) = send(app, Method::GET, &format!("/v1/sessions/{id}"), None).await;
    let session = String::from_utf8(bytes).unwrap();
    assert!(
        session.contains(&format!(r#""n":{big}"#)) && session.contains(&format!(r#""m":-{big}"#)),
        "{session}"
    );
}

/// Both backends call a stored `1e400` a number out of range.
async fn incr_on_a_number_out_of_range(app: &TestApp) {
    let (status, _, _) = send(app, Method::PUT, "/v1/cache/h/inf", Some(b"1e400")).await;
    assert_eq!(status, 204);
    let (status, problem) =
        json_call(app, Method::POST, "/v1/cache/h/inf/incr", json!({"by": 1})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("out_of_range"))
    );
    let (_, _, bytes) = send(app, Method::GET, "/v1/cache/h/inf", None).await;
    assert_eq!(bytes, b"1e400");
}

async fn two_authorization_headers_are_refused(app: &TestApp) {
    let response = app
        .client
        .get(app.url("/v1/cache/h/k1"))
        .header("authorization", "Bearer one")
        .header("authorization", "Bearer two")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    assert_eq!(status, 400);
    assert!(is_problem(&headers, &body, "invalid_request"));
}

/// A body declared larger than the limit is refused before it is read: at once, not after the
/// request timeout.
async fn a_declared_oversize_body_is_refused_at_once(app: &TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"PUT /v1/cache/h/big HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n[")
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut head))
        .await
        .expect("answered within 2 s")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..read]).to_string();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.contains("application/problem+json") && head.contains("x-request-id"),
        "{head}"
    );
}

crate::on_each_backend!(app =>
    a_pathological_pattern_answers_at_once,
    compare_and_swap_takes_any_json,
    cache_values_must_be_utf8,
    a_key_asked_twice_is_answered_once,
    numbers_come_back_exactly,
    incr_on_a_number_out_of_range,
    two_authorization_headers_are_refused,
    a_declared_oversize_body_is_refused_at_once,
);

/// A listing page of the memory backend examines a bounded number of keys: a pattern matching
/// nothing among many keys answers with an empty page and a cursor, and following the cursors
/// visits every key once.
#[tokio::test]
async fn memory_listing_pages_are_bounded() {
    let app = spawn_app(settings(BackendMode::Memory, None)).await;
    let entries: serde_json::Map<String, Value> =
        (0..2500).map(|i| (format!("k{i:05}"), json!(i))).collect();
    let mut batches = entries.into_iter().collect::<Vec<_>>();
    while !batches.is_empty() {
        let chunk: serde_json::Map<String, Value> =
            batches.drain(..batches.len().min(1000)).collect();
        let (status, _) = json_call(
            &app,
            Method::POST,
            "/v1/cache/many/_mset",
            json!({"entries": chunk}),
        )
        .await;
        assert_eq!(status, 204);
    }
    let (status, page) = app.get_json("/v1/cache/many?match=nothing*").await;
    assert_eq!(status, 200);
    assert_eq!(page["keys"], json!([]));
    assert!(
        page["next_cursor"].is_string(),
        "a bounded page says where to go on: {page}"
    );
    let seen = app
        .listed("/v1/cache/many?match=k*9&limit=1000", "keys")
        .await;
    assert_eq!(seen.len(), 250);
    let (status, _, bytes) = send(&app, Method::DELETE, "/v1/cache/many?match=k01*", None).await;
    let deleted: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (status, deleted["deleted"].clone()),
        (200, json!(1000)),
        "pattern delete goes through every batch"
    );
}

/// The memory backend stops taking writes at `memory.max_bytes` (507 with `Retry-After`),
/// keeps serving reads and deletes, and takes writes again once room is made.
#[tokio::test]
async fn the_memory_backend_is_bounded() {
    let mut config = settings(BackendMode::Memory, None);
    config.memory.max_bytes = 400_000;
    let app = spawn_app(config).await;
    let value = format!("\"{}\"", "x".repeat(50_000));
    let mut stored = 0;
    let full = loop {
        let (status, headers, bytes) = send(
            &app,
            Method::PUT,
            &format!("/v1/cache/big/v{stored}"),
            Some(value.as_bytes()),
        )
        .await;
        if status != 204 {
            break (status, headers, bytes);
        }
        stored += 1;
        assert!(stored < 100, "never refused");
    };
    assert_eq!(full.0, 507);
    assert!(is_problem(&full.1, &full.2, "backend_full"));
    assert!(full.1.contains_key("retry-after"));
    assert!(
        (7..=9).contains(&stored),
        "{stored} values of 50 kB under 400 kB"
    );
    let (status, _) = json_call(&app, Method::POST, "/v1/sessions", json!({"user_id": "u"})).await;
    assert_eq!(status, 507, "every capability shares the bound");
    let (status, _, bytes) = send(&app, Method::GET, "/v1/cache/big/v0", None).await;
    assert_eq!(
        (status, bytes.len()),
        (200, value.len()),
        "reads keep working"
    );
    let (_, health) = app.get_json("/health").await;
    let used = health["backend"]["memory"]["used_bytes"].as_u64().unwrap();
    assert!(used >= 400_000, "{health}");
    assert_eq!(health["backend"]["memory"]["max_bytes"], 400_000);
    for i in 0..3 {
        let (status, _, _) = send(&app, Method::DELETE, &format!("/v1/cache/big/v{i}"), None).await;
        assert_eq!(status, 204);
    }
    let (status, _, _) = send(
        &app,
        Method::PUT,
        "/v1/cache/big/again",
        Some(value.as_bytes()),
    )
    .await;
    assert_eq!(status, 204, "room made, writes work again");
}
