//! Failover: Redis killed or hung under traffic, in `auto` and `redis` mode.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::common::{RedisServer, Reply, TestApp, settings, spawn_app, spawn_on};
use statekeeper::config::{BackendMode, Settings};

async fn put(app: &TestApp, key: &str, body: &str) -> Reply {
    app.put_cache(key, body).await
}

async fn get(app: &TestApp, key: &str) -> Reply {
    app.get(&format!("/v1/cache/ns/{key}")).await
}

/// What `call` answers, which must come within a second: a request's deadlines (200 ms here)
/// bound it, and a second leaves room for a loaded two-core machine.
async fn within_a_second<T>(call: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = call.await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    answer
}

/// Keeps writing and reading until stopped; returns every status seen.
fn traffic(app: Arc<TestApp>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        let mut statuses = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("traffic-{}", i % 16);
            statuses.push(put(&app, &key, &i.to_string()).await.status);
            statuses.push(get(&app, &key).await.status);
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        statuses
    })
}

fn is_degraded(h: &serde_json::Value) -> bool {
    h["status"] == "degraded" && h["backend"]["active"] == "memory"
}

fn is_on_redis(h: &serde_json::Value) -> bool {
    h["status"] == "ok"
        && h["backend"]["active"] == "redis"
        && h["backend"]["redis"]["status"] == "healthy"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_serves_through_a_redis_restart_without_5xx() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = Arc::new(spawn_app(settings(BackendMode::Auto, Some(&redis))).await);
    assert_eq!(put(&app, "before", "\"kept in redis\"").await.status, 204);
    let health = app
        .wait_for_health(Duration::from_secs(5), is_on_redis)
        .await;
    assert!(
        health["backend"]["redis"]["redis_version"].is_string(),
        "{health}"
    );
    assert!(
        health["backend"]["redis"]["pool"]["max_size"]
            .as_u64()
            .unwrap()
            > 0
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(app.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill();
    let health = app
        .wait_for_health(Duration::from_secs(5), is_degraded)
        .await;
    assert!(health["backend"]["degraded_since"].is_string(), "{health}");
    assert_eq!(health["backend"]["redis"]["status"], "unhealthy");
    assert_eq!(put(&app, "during", "\"memory only\"").await.status, 204);
    let during = get(&app, "during").await;
    assert_eq!(during.status, 200, "degraded mode serves what it stored");
    tokio::time::sleep(Duration::from_millis(400)).await;

    redis.restart();
    let health = app
        .wait_for_health(Duration::from_secs(5), is_on_redis)
        .await;
    assert!(
        health["backend"].get("degraded_since").is_none(),
        "{health}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let statuses = load.await.unwrap();

    assert!(
        statuses.len() > 50,
        "traffic ran: {} requests",
        statuses.len()
    );
    let errors: Vec<_> = statuses.iter().filter(|s| **s >= 500).collect();
    assert!(errors.is_empty(), "no 5xx across the outage: {errors:?}");
    // What was written to memory while degraded was handed to Redis when it returned.
    let during = get(&app, "during").await;
    assert_eq!(during.status, 200);
    assert_eq!(during.text(), "\"memory only\"");
    // The restarted Redis keeps nothing (no persistence), so the traffic keys work again.
    assert_eq!(put(&app, "after", "1").await.status, 204);
    let mut conn = redis.connection();
    let stored: Option<String> = redis::cmd("GET")
        .arg("statekeeper:default:cache:{ns}:after")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored.as_deref(), Some("1"), "traffic is back on Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_without_any_redis_serves_from_memory() {
    let app = spawn_app(settings(BackendMode::Auto, None)).await;
    assert_eq!(put(&app, "k", "{}").await.status, 204);
    let got = get(&app, "k").await;
    assert_eq!(got.status, 200);
    app.wait_for_health(Duration::from_secs(5), is_degraded)
        .await;
    assert_eq!(app.status("/health/ready").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_mode_answers_503_fast_while_redis_is_down() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    assert_eq!(put(&app, "k", "1").await.status, 204);
    redis.kill();
    for _ in 0..5 {
        let response = within_a_second(put(&app, "k", "2")).await;
        response.assert_problem(503, "backend_unavailable");
    }
    let (status, health) = app.get_json("/health").await;
    assert_eq!(status, 503);
    assert_eq!(health["status"], "down");
    assert_eq!(app.status("/health/ready").await, 503);
    assert_eq!(app.status("/health/live").await, 200);

    redis.restart();
    app.wait_for_health(Duration::from_secs(5), is_on_redis)
        .await;
    assert_eq!(put(&app, "k", "3").await.status, 204);
    assert_eq!(app.status("/health/ready").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_never_hangs_a_request() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let deadline = |settings: &mut Settings| settings.redis.command_timeout_ms = 200;
    let auto = spawn_on(&redis, BackendMode::Auto, deadline).await;
    let strict = spawn_on(&redis, BackendMode::Redis, deadline).await;
    assert_eq!(put(&auto, "k", "1").await.status, 204);
    assert_eq!(put(&strict, "k", "1").await.status, 204);

    redis.pause();
    let response = within_a_second(put(&auto, "during", "2")).await;
    assert_eq!(response.status, 204, "auto mode serves from memory");
    // A write that misses its deadline may still be applied when Redis wakes up (it was
    // sent): the caller got 503 and must treat the outcome as unknown. Hence another key.
    let response = within_a_second(put(&strict, "unknown", "2")).await;
    assert_eq!(response.status, 503);
    let got = within_a_second(get(&auto, "during")).await;
    assert_eq!(got.text(), "2");
    auto.wait_for_health(Duration::from_secs(5), is_degraded)
        .await;

    redis.resume();
    auto.wait_for_health(Duration::from_secs(5), is_on_redis)
        .await;
    strict
        .wait_for_health(Duration::from_secs(5), is_on_redis)
        .await;
    let got = get(&auto, "k").await;
    assert_eq!(got.text(), "1", "back on Redis, which kept its value");
}

/// One stall is not an outage: with a probe interval of a minute, a call that missed its
/// deadline wakes the probe, which keeps retrying quickly, so Redis serves again (redis mode:
/// no more 503s; auto mode: back from memory) within moments of answering, not a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_stall_costs_moments_not_a_probe_interval() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let slow_probe = |mode| {
        let mut s = settings(mode, Some(&redis));
        s.redis.command_timeout_ms = 200;
        s.backend.probe_interval_ms = 60_000;
        s
    };
    let strict = spawn_app(slow_probe(BackendMode::Redis)).await;
    let auto = spawn_app(slow_probe(BackendMode::Auto)).await;
    assert_eq!(put(&strict, "k", "1").await.status, 204);
    assert_eq!(put(&auto, "k", "1").await.status, 204);

    redis.pause();
    assert_eq!(put(&strict, "stalled", "2").await.status, 503);
    assert_eq!(put(&auto, "stalled", "2").await.status, 204);
    auto.wait_for_health(Duration::from_secs(5), is_degraded)
        .await;
    redis.resume();

    // 5 s: far below the 60 s interval, with room for a loaded 2-core machine.
    strict
        .wait_for_health(Duration::from_secs(5), is_on_redis)
        .await;
    auto.wait_for_health(Duration::from_secs(5), is_on_redis)
        .await;
    assert_eq!(put(&strict, "after", "3").await.status, 204);
    let got = get(&auto, "k").await;
    assert_eq!(got.text(), "1", "served by Redis again");
}
