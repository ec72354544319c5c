//! The cache's basic routes over HTTP, on each backend mode.

use crate::common::{RedisServer, TestApp, settings, spawn_app};
use serde_json::json;
use statekeeper::config::BackendMode;

async fn round_trip(app: &TestApp) {
    let url = app.url("/v1/cache/profiles/user:1");
    let body = r#"{"name":"Ada","n":1.50}"#;
    let put = app
        .client
        .put(format!("{url}?ttl_seconds=120"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert!(put.headers().contains_key("x-request-id"));

    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/json");
    assert_eq!(got.text().await.unwrap(), body, "exactly the stored JSON");

    let head = app.client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);

    let (status, ttl) = app.get_json("/v1/cache/profiles/user:1/ttl").await;
    assert_eq!(status, 200);
    let secs = ttl["ttl_seconds"].as_u64().unwrap();
    assert!((119..=120).contains(&secs), "{ttl}");

    let set = app
        .client
        .put(format!("{url}/ttl"))
        .json(&json!({"ttl_seconds": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let (_, ttl) = app.get_json("/v1/cache/profiles/user:1/ttl").await;
    assert!(
        (6..=7).contains(&ttl["ttl_seconds"].as_u64().unwrap()),
        "{ttl}"
    );

    assert_eq!(app.client.delete(&url).send().await.unwrap().status(), 204);
    let gone = app.client.get(&url).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(gone.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = gone.json().await.unwrap();
    assert_eq!(problem["code"], "not_found");
    assert_eq!(problem["status"], 404);
    assert_eq!(app.client.head(&url).send().await.unwrap().status(), 404);
    assert_eq!(app.client.delete(&url).send().await.unwrap().status(), 404);
    let (status, _) = app.get_json("/v1/cache/profiles/user:1/ttl").await;
    assert_eq!(status, 404);
    let set_missing = app
        .client
        .put(format!("{url}/ttl"))
        .json(&json!({"ttl_seconds": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(set_missing.status(), 404);
}

async fn conditions_and_default_ttl(app: &TestApp) {
    let url = app.url("/v1/cache/ns/cond");
    let put = |query: &'static str, body: &'static str| {
        app.client
            .put(format!("{url}{query}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(put("?if=present", "1").await.unwrap().status(), 412);
    assert_eq!(put("?if=absent", "1").await.unwrap().status(), 204);
    let refused = put("?if=absent", "2").await.unwrap();
    assert_eq!(refused.status(), 412);
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "precondition_failed");
    assert_eq!(
        app.client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(put("?if=present", "3").await.unwrap().status(), 204);
    let (_, ttl) = app.get_json("/v1/cache/ns/cond/ttl").await;
    let secs = ttl["ttl_seconds"].as_u64().unwrap();
    assert!((3599..=3600).contains(&secs), "default TTL applies: {ttl}");
}

async fn every_response_has_a_request_id(app: &TestApp) {
    let echoed = app
        .client
        .get(app.url("/v1/cache/ns/nope"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "req-42");
    let made = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 404);
    assert!(!made.headers()["x-request-id"].is_empty());
    let problem: serde_json::Value = made.json().await.unwrap();
    assert_eq!(problem["code"], "not_found");
}

crate::on_each_backend!(app =>
    round_trip,
    conditions_and_default_ttl,
    every_response_has_a_request_id
);

#[tokio::test]
async fn redis_mode_stores_in_redis_under_the_documented_key() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    let put = app
        .client
        .put(app.url("/v1/cache/ns/k?ttl_seconds=50"))
        .header("content-type", "application/json")
        .body("[1,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let mut conn = redis.connection();
    let stored: String = redis::cmd("GET")
        .arg("statekeeper:default:cache:{ns}:k")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored, "[1,2]");
    let ttl: i64 = redis::cmd("TTL")
        .arg("statekeeper:default:cache:{ns}:k")
        .query(&mut conn)
        .unwrap();
    assert!((49..=50).contains(&ttl));
}
