//! Locks over HTTP: answers and refusals on every backend, one holder across two instances
//! sharing one Redis, waiters woken across instances without polling Redis, and what a Redis
//! outage does.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::config::{BackendMode, LockDegraded};

use crate::common::{RedisServer, Reply, TestApp, settings, spawn_app};

async fn acquire(app: &TestApp, name: &str, body: Value) -> Reply {
    app.post(&format!("/v1/locks/{name}"), body).await
}

async fn release(app: &TestApp, name: &str, token: &str) -> Reply {
    let request = app.request(Method::DELETE, &format!("/v1/locks/{name}"));
    app.send(request.header("lock-token", token)).await
}

fn token(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["lock_token"].as_str().unwrap().to_string()
}

/// Acquire, conflict, extend, release and the refusals, through HTTP.
async fn the_lock_routes(app: &TestApp) {
    let granted = acquire(app, "job-1", json!({"ttl_ms": 30_000, "owner": "worker-7"})).await;
    let lock_token = token(&granted);
    let fence = granted.body["fencing_token"].as_u64().unwrap();
    assert!(granted.body["expires_at"].as_str().unwrap().ends_with('Z'));

    let held = acquire(app, "job-1", json!({"ttl_ms": 1000})).await;
    held.assert_problem(409, "lock_held");
    let wait = held.body["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 29_000 && wait <= 30_000, "{wait}");
    assert_eq!(held.header("retry-after"), "30");

    let seen = app.get("/v1/locks/job-1").await;
    assert_eq!(seen.body["held"], true);
    assert_eq!(seen.body["owner"], "worker-7");
    assert_eq!(seen.body["fencing_token"], fence);
    assert!(
        !seen.text().contains(&lock_token),
        "GET never shows the token"
    );

    let extended = app
        .post(
            "/v1/locks/job-1/extend",
            json!({"lock_token": lock_token, "ttl_ms": 60_000}),
        )
        .await;
    assert_eq!(extended.status, 200, "{}", extended.body);
    let stranger = "AAAAAAAAAAAAAAAAAAAAAA";
    let wrong = app
        .post(
            "/v1/locks/job-1/extend",
            json!({"lock_token": stranger, "ttl_ms": 1000}),
        )
        .await;
    wrong.assert_problem(410, "lock_lost");
    release(app, "job-1", stranger)
        .await
        .assert_problem(410, "lock_lost");
    assert_eq!(
        app.get("/v1/locks/job-1").await.body["held"],
        true,
        "left held"
    );
    app.delete("/v1/locks/job-1")
        .await
        .assert_problem(400, "invalid_request");

    assert_eq!(release(app, "job-1", &lock_token).await.status, 204);
    release(app, "job-1", &lock_token)
        .await
        .assert_problem(410, "lock_lost");
    let free = app.get("/v1/locks/job-1").await;
    assert_eq!(free.body, json!({"held": false, "fencing_token": fence}));

    let next = acquire(app, "job-1", json!({"ttl_ms": 1000})).await;
    assert!(next.body["fencing_token"].as_u64().unwrap() > fence);
    let stale = app
        .post("/v1/fences/job-1/check", json!({"fencing_token": fence}))
        .await;
    stale.assert_problem(409, "stale_fencing_token");
    assert_eq!(stale.body["highest"], next.body["fencing_token"]);
    let current = json!({"fencing_token": next.body["fencing_token"]});
    assert_eq!(
        app.post("/v1/fences/job-1/check", current).await.status,
        200
    );
}

/// A lease that ended: 410 on extend and release, and the lock is free.
async fn an_expired_lock_is_lost(app: &TestApp) {
    let lock_token = token(&acquire(app, "short", json!({"ttl_ms": 50})).await);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let extend = json!({"lock_token": lock_token, "ttl_ms": 1000});
    app.post("/v1/locks/short/extend", extend)
        .await
        .assert_problem(410, "lock_lost");
    release(app, "short", &lock_token)
        .await
        .assert_problem(410, "lock_lost");
    assert_eq!(
        acquire(app, "short", json!({"ttl_ms": 1000})).await.status,
        200
    );
}

async fn bad_requests_change_nothing(app: &TestApp) {
    for body in [
        json!({}),
        json!({"ttl_ms": 0}),
        json!({"ttl_ms": 1000, "wait_ms": 20_001}),
        json!({"ttl_ms": 1000, "owner": ""}),
        json!({"ttl_ms": 1000, "extra": true}),
        json!({"ttl_ms": -5}),
    ] {
        acquire(app, "bad", body)
            .await
            .assert_problem(422, "validation_failed");
    }
    acquire(app, "bad%20name", json!({"ttl_ms": 1000}))
        .await
        .assert_problem(400, "invalid_id");
    let extend = json!({"lock_token": "not a token!", "ttl_ms": 1000});
    app.post("/v1/locks/bad/extend", extend)
        .await
        .assert_problem(422, "validation_failed");
    let fence = json!({"fencing_token": 9_007_199_254_740_992_u64});
    app.post("/v1/fences/bad/check", fence)
        .await
        .assert_problem(422, "validation_failed");
    // 2^53 - 1 is a number a token can be, but no grant issued it: refused, nothing moves.
    let fence = json!({"fencing_token": 9_007_199_254_740_991_u64});
    app.post("/v1/fences/bad/check", fence)
        .await
        .assert_problem(409, "fencing_token_not_issued");
    assert_eq!(
        app.get("/v1/locks/bad").await.body,
        json!({"held": false, "fencing_token": 0})
    );
}

crate::on_each_backend!(app =>
    the_lock_routes,
    an_expired_lock_is_lost,
    bad_requests_change_nothing,
);

/// Two instances on one Redis: 100 racing acquirers get one 200; fencing tokens grow over hand-offs
/// between the instances; a waiter on one instance is woken by a release on the other within
/// milliseconds, and meanwhile tries Redis only a few times (no busy poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_lock() {
    let Some((redis, apps)) = crate::common::two_instances().await else {
        return;
    };
    let results = crate::common::race(100, |i| {
        let apps = apps.clone();
        async move {
            acquire(&apps[i % 2], "shared", json!({"ttl_ms": 60_000}))
                .await
                .status
        }
    })
    .await;
    assert_eq!(results.iter().filter(|s| **s == 200).count(), 1);
    assert_eq!(results.iter().filter(|s| **s == 409).count(), 99);

    let mut last = 0;
    for i in 0..50 {
        let granted = acquire(&apps[i % 2], "handoff", json!({"ttl_ms": 60_000})).await;
        let fence = granted.body["fencing_token"].as_u64().unwrap();
        assert!(fence > last, "hand-off {i}");
        last = fence;
        assert_eq!(
            release(&apps[(i + 1) % 2], "handoff", &token(&granted))
                .await
                .status,
            204
        );
    }

    let holder = token(&acquire(&apps[0], "awaited", json!({"ttl_ms": 30_000})).await);
    let before = redis.evalsha_calls();
    let (waiting, request) = (apps.clone(), json!({"ttl_ms": 1000, "wait_ms": 8000}));
    let waiter =
        crate::common::spawn_timed(
            async move { acquire(&waiting[1], "awaited", request).await.status },
        );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let released_at = Instant::now();
    assert_eq!(release(&apps[0], "awaited", &holder).await.status, 204);
    let (status, granted_at) = waiter.await.unwrap();
    assert_eq!(status, 200);
    crate::common::assert_woken_promptly(released_at, granted_at, "release");
    let calls = redis.evalsha_calls() - before;
    assert!(
        calls <= 8,
        "{calls} script calls while one waiter waited 2.5 s"
    );
}

async fn auto_app(redis: &RedisServer, degraded: LockDegraded) -> TestApp {
    let mut config = settings(BackendMode::Auto, Some(redis));
    config.locks.degraded = degraded;
    config.redis.command_timeout_ms = 100;
    spawn_app(config).await
}

/// Redis hangs while a lock is held: acquire answers 503 in `auto` mode (locks refuse), the
/// cache keeps serving from memory; when Redis answers again the lock is Redis's again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_locks_refuse_and_then_return_to_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = auto_app(&redis, LockDegraded::Refuse).await;
    let granted = acquire(&app, "kept", json!({"ttl_ms": 60_000})).await;
    let fence = granted.body["fencing_token"].clone();
    redis.pause();
    let refused = acquire(&app, "kept", json!({"ttl_ms": 1000})).await;
    refused.assert_problem(503, "backend_unavailable");
    assert_eq!(refused.header("retry-after"), "1");
    acquire(&app, "other", json!({"ttl_ms": 1000}))
        .await
        .assert_problem(503, "backend_unavailable");
    assert_eq!(
        app.put_cache("c", "1").await.status,
        204,
        "the cache serves from memory"
    );
    redis.resume();
    app.wait_for_health(Duration::from_secs(10), |h| {
        h["backend"]["active"] == "redis"
    })
    .await;
    let seen = app.get("/v1/locks/kept").await;
    assert_eq!(
        (
            seen.body["held"].clone(),
            seen.body["fencing_token"].clone()
        ),
        (json!(true), fence)
    );
    acquire(&app, "kept", json!({"ttl_ms": 1000}))
        .await
        .assert_problem(409, "lock_held");
}

/// `locks.degraded = "local"`: memory grants while Redis is down; when Redis is back its state
/// counts, and memory's grant is lost (410), never reported as held by Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_locks_are_dropped_when_redis_returns() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = auto_app(&redis, LockDegraded::Local).await;
    redis.pause();
    let local = acquire(&app, "local", json!({"ttl_ms": 60_000})).await;
    let local_token = token(&local);
    assert_eq!(app.get("/v1/locks/local").await.body["held"], true);
    redis.resume();
    app.wait_for_health(Duration::from_secs(10), |h| {
        h["backend"]["active"] == "redis"
    })
    .await;
    assert_eq!(app.get("/v1/locks/local").await.body["held"], false);
    let extend = json!({"lock_token": local_token, "ttl_ms": 1000});
    app.post("/v1/locks/local/extend", extend)
        .await
        .assert_problem(410, "lock_lost");
    let again = acquire(&app, "local", json!({"ttl_ms": 1000})).await;
    assert_eq!(again.status, 200);
    assert!(again.body["fencing_token"].as_u64() > local.body["fencing_token"].as_u64());
}
