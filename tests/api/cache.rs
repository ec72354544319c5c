//! The cache's basic routes over HTTP, on each backend mode.

use crate::common::{RedisServer, TestApp, settings, spawn_app};
use reqwest::Method;
use serde_json::json;
use statekeeper::config::BackendMode;

async fn round_trip(app: &TestApp) {
    let path = "/v1/cache/profiles/user:1";
    let body = r#"{"name":"Ada","n":1.50}"#;
    let put = app.put_raw(&format!("{path}?ttl_seconds=120"), body).await;
    assert_eq!(put.status, 204);
    assert!(put.headers.contains_key("x-request-id"));

    let got = app.get(path).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.text(), body, "exactly the stored JSON");
    assert_eq!(app.head(path).await.status, 200);

    let ttl = app.get(&format!("{path}/ttl")).await;
    assert_eq!(ttl.status, 200);
    let secs = ttl.body["ttl_seconds"].as_u64().unwrap();
    assert!((119..=120).contains(&secs), "{}", ttl.body);
    let set_ttl = json!({"ttl_seconds": 7});
    let set = app
        .call(Method::PUT, &format!("{path}/ttl"), Some(set_ttl.clone()))
        .await;
    assert_eq!(set.status, 204);
    let ttl = app.get(&format!("{path}/ttl")).await.body;
    assert!(
        (6..=7).contains(&ttl["ttl_seconds"].as_u64().unwrap()),
        "{ttl}"
    );

    assert_eq!(app.delete(path).await.status, 204);
    let gone = app.get(path).await;
    gone.assert_problem(404, "not_found");
    assert_eq!(gone.body["status"], 404);
    assert_eq!(app.head(path).await.status, 404);
    assert_eq!(app.delete(path).await.status, 404);
    assert_eq!(app.get(&format!("{path}/ttl")).await.status, 404);
    let set_missing = app
        .call(Method::PUT, &format!("{path}/ttl"), Some(set_ttl))
        .await;
    assert_eq!(set_missing.status, 404);
}

async fn conditions_and_default_ttl(app: &TestApp) {
    let path = "/v1/cache/ns/cond";
    let put = |query: &'static str, body: &'static str| {
        let path = format!("{path}{query}");
        async move { app.put_raw(&path, body).await }
    };
    assert_eq!(put("?if=present", "1").await.status, 412);
    assert_eq!(put("?if=absent", "1").await.status, 204);
    put("?if=absent", "2")
        .await
        .assert_problem(412, "precondition_failed");
    assert_eq!(app.get(path).await.text(), "1");
    assert_eq!(put("?if=present", "3").await.status, 204);
    let ttl = app.get("/v1/cache/ns/cond/ttl").await.body;
    let secs = ttl["ttl_seconds"].as_u64().unwrap();
    assert!((3599..=3600).contains(&secs), "default TTL applies: {ttl}");
}

async fn every_response_has_a_request_id(app: &TestApp) {
    let request = app.request(Method::GET, "/v1/cache/ns/nope");
    let echoed = app.send(request.header("x-request-id", "req-42")).await;
    assert_eq!(echoed.header("x-request-id"), "req-42");
    let made = app.get("/no/such/route").await;
    made.assert_problem(404, "not_found");
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
    let put = app.put_raw("/v1/cache/ns/k?ttl_seconds=50", "[1,2]").await;
    assert_eq!(put.status, 204);
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
