//! `GET /metrics`: the series after traffic on each backend, bounded labels, the failover
//! counters across a Redis outage, and the Redis memory warnings of `/health`.
//!
//! The exposition is read here by a small sample reader (name, labels, value); the contract
//! run (`scripts/contract`) parses it with Prometheus's own Python parser.

use std::{collections::BTreeMap, time::Duration};

use reqwest::Method;
use serde_json::json;
use statekeeper::config::BackendMode;

use crate::common::{RedisServer, TestApp, settings, spawn_app, strings};

/// One sample line: the series' name, its labels, its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of an exposition (comments skipped). Label values here never hold `"` or `,`.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("labels end with }");
                    let labels = inner
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
            };
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .starts_with("application/openmetrics-text"),
        "{}",
        reply.header("content-type")
    );
    let text = reply.text();
    assert!(text.ends_with("# EOF\n"));
    samples(&text)
}

/// The value of the one series named `name` whose labels include `with`; 0 when absent.
fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {with:?} is one series: {matching:?}"
    );
    matching.first().map_or(0.0, |s| s.value)
}

/// Traffic through every counted capability; then each counter shows it.
async fn traffic_shows_in_the_series(app: &TestApp) {
    assert_eq!(app.put_raw("/v1/cache/ns/k", "1").await.status, 204);
    assert_eq!(app.get("/v1/cache/ns/k").await.status, 200);
    assert_eq!(app.get("/v1/cache/ns/k").await.status, 200);
    assert_eq!(app.get("/v1/cache/ns/absent").await.status, 404);

    let action = app
        .post("/v1/pending-actions", json!({"intent_name": "pay"}))
        .await;
    let token = action.body["token"].as_str().unwrap().to_string();
    let confirm = format!("/v1/pending-actions/{token}/confirm");
    assert_eq!(app.call(Method::POST, &confirm, None).await.status, 200);
    assert_eq!(app.call(Method::POST, &confirm, None).await.status, 409);

    let rule = json!({"rules": [{"algorithm": "fixed_window", "limit": 1, "window_ms": 60_000}]});
    let check = "/v1/rate-limits/u/check";
    assert_eq!(app.post(check, rule.clone()).await.body["allowed"], true);
    assert_eq!(app.post(check, rule).await.body["allowed"], false);

    let lock = app.post("/v1/locks/l", json!({"ttl_ms": 10_000})).await;
    assert_eq!(lock.status, 200);
    assert_eq!(
        app.post("/v1/locks/l", json!({"ttl_ms": 10_000}))
            .await
            .status,
        409
    );

    let enqueued = app
        .post("/v1/queues/q/jobs", json!({"payload": {"n": 1}}))
        .await;
    assert_eq!(enqueued.status, 201);
    let leased = app
        .post("/v1/queues/q/lease", json!({"visibility_ms": 10_000}))
        .await;
    let job = &leased.body["jobs"][0];
    let ack = format!("/v1/queues/q/jobs/{}/ack", job["job_id"].as_str().unwrap());
    let ack = app
        .post(&ack, json!({"lease_token": job["lease_token"]}))
        .await;
    assert_eq!(ack.status, 200, "{}", ack.body);

    let stream = app
        .request(Method::GET, "/v1/topics/news/events")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let published = app
        .post("/v1/topics/news/messages", json!({"data": 1}))
        .await;
    assert_eq!(published.status, 201);

    let m = scrape(app).await;
    drop(stream);
    assert_eq!(value(&m, "statekeeper_topic_subscribers", &[]), 1.0);
    let topic_messages = [("outcome", "published")];
    assert_eq!(
        value(&m, "statekeeper_topic_messages_total", &topic_messages),
        1.0
    );
    let requests = "statekeeper_http_requests_total";
    let route = "/v1/cache/{namespace}/{key}";
    let cache_get = [("route", route), ("method", "GET"), ("status", "200")];
    assert_eq!(value(&m, requests, &cache_get), 2.0);
    let cache_put = [("route", route), ("method", "PUT"), ("status", "204")];
    assert_eq!(value(&m, requests, &cache_put), 1.0);
    let duration = "statekeeper_http_request_duration_seconds_count";
    assert_eq!(
        value(&m, duration, &[("route", route), ("method", "GET")]),
        3.0
    );
    let under_10s = [("route", route), ("method", "GET"), ("le", "10.0")];
    assert_eq!(
        value(
            &m,
            "statekeeper_http_request_duration_seconds_bucket",
            &under_10s
        ),
        3.0
    );
    // The scrape itself is in flight while it is answered.
    assert_eq!(value(&m, "statekeeper_http_requests_in_flight", &[]), 1.0);

    let outcome = |family: &str, outcome: &str| value(&m, family, &[("outcome", outcome)]);
    assert_eq!(outcome("statekeeper_cache_lookups_total", "hit"), 2.0);
    assert_eq!(outcome("statekeeper_cache_lookups_total", "miss"), 1.0);
    let confirms = "statekeeper_pending_action_confirms_total";
    assert_eq!(outcome(confirms, "confirmed"), 1.0);
    assert_eq!(outcome(confirms, "already_confirmed"), 1.0);
    let decisions = "statekeeper_rate_limit_decisions_total";
    assert_eq!(outcome(decisions, "allowed"), 1.0);
    assert_eq!(outcome(decisions, "denied"), 1.0);
    assert_eq!(outcome("statekeeper_lock_operations_total", "granted"), 1.0);
    assert_eq!(
        outcome("statekeeper_lock_operations_total", "conflict"),
        1.0
    );
    for event in ["enqueued", "leased", "acked"] {
        assert_eq!(
            outcome("statekeeper_queue_jobs_total", event),
            1.0,
            "{event}"
        );
    }
    assert_eq!(value(&m, "statekeeper_backend_degraded", &[]), 0.0);
}

/// 1,000 random paths are one series, `route="unmatched"`.
async fn unknown_paths_add_no_series(app: &TestApp) {
    let random_path = || format!("/no/such/{}", uuid::Uuid::new_v4());
    for _ in 0..10 {
        assert_eq!(app.get(&random_path()).await.status, 404);
    }
    let series = |samples: Vec<Sample>| -> std::collections::BTreeSet<String> {
        samples
            .into_iter()
            .filter(|s| s.labels.contains_key("route"))
            .map(|s| format!("{}{:?}", s.name, s.labels))
            .collect()
    };
    // Twice, so that the scrape's own route is among the series.
    scrape(app).await;
    let before = series(scrape(app).await);
    for _ in 0..1000 {
        assert_eq!(app.get(&random_path()).await.status, 404);
    }
    let m = scrape(app).await;
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert_eq!(
        value(&m, "statekeeper_http_requests_total", &unmatched),
        1010.0
    );
    let after = series(m);
    assert_eq!(
        after.difference(&before).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "no new series"
    );
    assert!(
        !after.iter().any(|s| s.contains("/no/such")),
        "no label holds a caller's path"
    );
}

crate::on_each_backend!(app => traffic_shows_in_the_series, unknown_paths_add_no_series);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_series_on_memory() {
    let app = spawn_app(settings(BackendMode::Memory, None)).await;
    assert_eq!(
        app.put_raw("/v1/cache/ns/k", "\"some bytes\"").await.status,
        204
    );
    let m = scrape(&app).await;
    assert_eq!(
        value(&m, "statekeeper_backend_mode", &[("mode", "memory")]),
        1.0
    );
    let active = "statekeeper_backend_active";
    assert_eq!(value(&m, active, &[("backend", "memory")]), 1.0);
    assert_eq!(value(&m, active, &[("backend", "redis")]), 0.0);
    assert!(value(&m, "statekeeper_memory_entries", &[]) >= 1.0);
    let used = value(&m, "statekeeper_memory_used_bytes", &[]);
    let max = value(&m, "statekeeper_memory_max_bytes", &[]);
    assert!(used > 0.0 && used < max, "{used} of {max}");
    assert!(
        !m.iter().any(|s| s.name.starts_with("statekeeper_redis_")),
        "memory mode calls no Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_calls_and_the_pool_are_measured() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    assert_eq!(app.put_raw("/v1/cache/ns/k", "1").await.status, 204);
    assert_eq!(app.get("/v1/cache/ns/k").await.status, 200);
    let lock = app.post("/v1/locks/l", json!({"ttl_ms": 10_000})).await;
    assert_eq!(lock.status, 200);
    let m = scrape(&app).await;
    let calls = "statekeeper_redis_call_duration_seconds_count";
    assert!(value(&m, calls, &[("operation", "GET")]) >= 1.0);
    assert!(value(&m, calls, &[("operation", "lock_acquire")]) >= 1.0);
    let pool = "statekeeper_redis_pool_connections";
    assert_eq!(
        value(&m, pool, &[("state", "max")]),
        settings(BackendMode::Redis, Some(&redis))
            .redis
            .max_connections as f64
    );
    assert!(value(&m, pool, &[("state", "open")]) >= 1.0);
    assert_eq!(
        value(&m, "statekeeper_backend_mode", &[("mode", "redis")]),
        1.0
    );
    assert!(value(&m, "statekeeper_redis_memory_used_bytes", &[]) > 0.0);
    assert_eq!(value(&m, "statekeeper_redis_memory_max_bytes", &[]), 0.0);
}

/// Killing Redis moves the degraded gauge and the switch counter; its return moves them back,
/// and the time degraded stays counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shows_in_the_backend_series() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut settings = settings(BackendMode::Auto, Some(&redis));
    settings.backend.probe_interval_ms = 100;
    let app = spawn_app(settings).await;
    assert_eq!(app.put_raw("/v1/cache/ns/k", "1").await.status, 204);

    redis.kill();
    app.wait_for_health(Duration::from_secs(5), |h| h["status"] == "degraded")
        .await;
    let m = scrape(&app).await;
    assert_eq!(value(&m, "statekeeper_backend_degraded", &[]), 1.0);
    let switches = "statekeeper_backend_switches_total";
    assert_eq!(value(&m, switches, &[("to", "memory")]), 1.0);
    let active = "statekeeper_backend_active";
    assert_eq!(value(&m, active, &[("backend", "memory")]), 1.0);
    let probes = "statekeeper_backend_probes_total";
    assert!(value(&m, probes, &[("outcome", "down")]) >= 1.0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.restart();
    app.wait_for_health(Duration::from_secs(5), |h| h["status"] == "ok")
        .await;
    let m = scrape(&app).await;
    assert_eq!(value(&m, "statekeeper_backend_degraded", &[]), 0.0);
    assert_eq!(value(&m, switches, &[("to", "redis")]), 1.0);
    assert_eq!(value(&m, active, &[("backend", "redis")]), 1.0);
    assert!(value(&m, probes, &[("outcome", "up")]) >= 1.0);
    let degraded_for = value(&m, "statekeeper_backend_degraded_seconds", &[]);
    assert!((0.3..10.0).contains(&degraded_for), "{degraded_for}");
    let errors: f64 = m
        .iter()
        .filter(|s| s.name == "statekeeper_redis_errors_total")
        .map(|s| s.value)
        .sum();
    assert!(errors >= 1.0, "the failed calls are counted");
}

/// In `redis` mode a Redis pause switches nothing: memory is never reported active and no
/// switch is counted, while the degraded gauge says Redis is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_in_redis_mode_switches_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    assert_eq!(app.put_raw("/v1/cache/ns/k", "1").await.status, 204);
    redis.pause();
    let refused = app.put_raw("/v1/cache/ns/k", "2").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let m = scrape(&app).await;
    redis.resume();
    assert_eq!(value(&m, "statekeeper_backend_degraded", &[]), 1.0);
    let active = "statekeeper_backend_active";
    assert_eq!(value(&m, active, &[("backend", "memory")]), 0.0);
    assert_eq!(value(&m, active, &[("backend", "redis")]), 0.0);
    let switches = "statekeeper_backend_switches_total";
    assert_eq!(value(&m, switches, &[("to", "memory")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let mut settings = settings(BackendMode::Memory, None);
    settings.metrics.enabled = false;
    let app = spawn_app(settings).await;
    app.get("/metrics").await.assert_problem(404, "not_found");
}

/// `/health` warns of an eviction policy that can drop statekeeper's keys, and of memory near
/// `maxmemory`; neither changes `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_warns_of_redis_memory() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["warnings"], json!([]), "{health}");
    let figures = &health["backend"]["redis"];
    assert!(
        figures["used_memory_bytes"].as_u64().unwrap() > 0,
        "{health}"
    );
    assert_eq!(figures["maxmemory_bytes"], 0);
    assert_eq!(figures["evicted_keys"], 0);

    let mut conn = redis.connection();
    let used = figures["used_memory_bytes"].as_u64().unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .arg("maxmemory")
        .arg(used + used / 50)
        .query(&mut conn)
        .unwrap();
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["backend"]["redis"]["maxmemory_policy"],
        "allkeys-lru"
    );
    let codes: Vec<&str> = strings(&health["warnings"], "code");
    assert_eq!(codes, ["redis_memory_high", "redis_may_evict"], "{health}");
    assert!(
        health["warnings"][1]["message"]
            .as_str()
            .unwrap()
            .contains("allkeys-lru")
    );
}
