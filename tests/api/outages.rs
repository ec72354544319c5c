//! Redis faults that are not outages: out of memory, and connections reset while Redis stays
//! up. No 500, no failover to memory, and every acknowledged write is in Redis afterwards.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use statekeeper::config::BackendMode;

use crate::common::{RedisServer, Reply, TestApp, settings, spawn_app};

async fn put(app: &TestApp, key: &str, body: &str) -> Reply {
    app.put_cache(key, body).await
}

/// Each scenario `fn(BackendMode)` as two tests, `<scenario>::auto` and `<scenario>::redis`.
macro_rules! in_both_redis_modes {
    ($($scenario:ident),*) => {
        $(
            mod $scenario {
                use statekeeper::config::BackendMode;

                #[tokio::test]
                async fn auto() {
                    super::$scenario(BackendMode::Auto).await;
                }

                #[tokio::test]
                async fn redis() {
                    super::$scenario(BackendMode::Redis).await;
                }
            }
        )*
    };
}

in_both_redis_modes!(out_of_memory);

mod writes_survive_connection_resets {
    use statekeeper::config::BackendMode;

    // In `auto` mode the resets can send the service to memory and back: what memory
    // acknowledged must reach Redis by the hand-back, even when a reset broke the hand-back
    // itself (retried while the service is back on Redis).
    #[tokio::test]
    async fn auto() {
        super::writes_survive_connection_resets(BackendMode::Auto).await;
    }

    #[tokio::test]
    async fn redis() {
        super::writes_survive_connection_resets(BackendMode::Redis).await;
    }
}

fn redis_cmd(redis: &RedisServer, args: &[&str]) {
    let _: redis::Value = redis.query(args);
}

/// `maxmemory` reached under `noeviction`: writes get 507 `backend_full` with `Retry-After`
/// (commands and scripts alike), reads work, `/health` names the condition, nothing fails over.
async fn out_of_memory(mode: BackendMode) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(mode, Some(&redis))).await;
    assert_eq!(put(&app, "before", "1").await.status, 204);
    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory", "1"]);

    let refused = put(&app, "during", "2").await;
    refused.assert_problem(507, "backend_full");
    assert!(!refused.header("retry-after").is_empty());
    for (path, body) in [
        ("/v1/cache/ns/n/incr", json!({"by": 1})),
        ("/v1/sessions", json!({"user_id": "u"})),
        ("/v1/pending-actions", json!({"intent_name": "pay"})),
    ] {
        let response = app.post(path, body).await;
        assert_eq!(response.status, 507, "{path}");
    }
    let got = app.get("/v1/cache/ns/before").await;
    assert_eq!(got.status, 200, "reads keep working");
    let (status, health) = app.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        health["backend"]["active"], "redis",
        "out of memory is no outage: {health}"
    );
    assert_eq!(
        health["backend"]["redis"]["condition"], "out_of_memory",
        "{health}"
    );

    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(put(&app, "after", "3").await.status, 204);
    let stored: Option<String> = redis::cmd("GET")
        .arg("statekeeper:default:cache:{ns}:during")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(stored, None, "the refused write left nothing");
}

/// What one writer saw.
#[derive(Default)]
struct Seen {
    /// key → value of every PUT answered 204.
    acknowledged_puts: HashMap<String, u64>,
    /// Increments answered 200, per counter.
    acknowledged_incrs: HashMap<String, u64>,
    /// Increments answered 503 (outcome unknown), per counter.
    unknown_incrs: HashMap<String, u64>,
    statuses: HashMap<u16, usize>,
}

/// Writers under fire: every connection of the service is reset (`CLIENT KILL TYPE normal`)
/// again and again, and for a while Redis is out of memory. Redis itself never goes down.
async fn writes_survive_connection_resets(mode: BackendMode) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = Arc::new(spawn_app(settings(mode, Some(&redis))).await);
    let stop = Arc::new(AtomicBool::new(false));
    let full_seen = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let app = app.clone();
            let stop = stop.clone();
            let full_seen = full_seen.clone();
            let acked = acked.clone();
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-{i}");
                    let status = put(&app, &key, &i.to_string()).await.status;
                    *seen.statuses.entry(status).or_default() += 1;
                    if status == 507 {
                        full_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    if status == 204 {
                        acked.fetch_add(1, Ordering::Relaxed);
                        seen.acknowledged_puts.insert(key, i);
                    }
                    let counter = format!("counter-{}", w % 2);
                    let path = format!("/v1/cache/ns/{counter}/incr");
                    let status = app.post(&path, json!({"by": 1})).await.status;
                    *seen.statuses.entry(status).or_default() += 1;
                    match status {
                        200 => *seen.acknowledged_incrs.entry(counter).or_default() += 1,
                        503 => *seen.unknown_incrs.entry(counter).or_default() += 1,
                        _ => {}
                    }
                    i += 1;
                }
                seen
            })
        })
        .collect();
    let kills = Arc::new(AtomicUsize::new(0));
    let adversary = {
        let kills = kills.clone();
        let full_seen = full_seen.clone();
        let acked = acked.clone();
        let app = app.clone();
        let url = redis.url();
        tokio::spawn(async move {
            let mut admin = redis::Client::open(url).unwrap().get_connection().unwrap();
            let config_set = |admin: &mut redis::Connection, maxmemory: &str| {
                let _: () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("maxmemory")
                    .arg(maxmemory)
                    .query(admin)
                    .unwrap();
            };
            for round in 0..30 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                if round == 10 {
                    // The spell starts while the service writes to Redis: in `auto` mode the
                    // resets may have sent it to memory, where a full Redis is never met (its
                    // hand-back waits for room). Bounded: a service that never returns to
                    // Redis fails the assertions below instead of hanging.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                    while tokio::time::Instant::now() < deadline {
                        let (_, health) = app.get_json("/health").await;
                        if health["backend"]["active"] == "redis" {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    config_set(&mut admin, "1");
                }
                if round == 15 {
                    // The spell lasts until a writer has met it, however busy the machine:
                    // the point is what a write gets while Redis is full, not whether one
                    // happened to land in a fixed window (bounded, as above).
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                    while full_seen.load(Ordering::Relaxed) == 0
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    config_set(&mut admin, "0");
                }
                if (10..15).contains(&round) {
                    // No resets during the spell: a reset in `auto` mode could send the
                    // service to memory, where the spell is not met.
                    continue;
                }
                let killed: u64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query(&mut admin)
                    .unwrap();
                kills.fetch_add(killed as usize, Ordering::Relaxed);
            }
            // Enough acknowledged writes to check, however many the resets turned away.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while acked.load(Ordering::Relaxed) < 60 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    adversary.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut all = Seen::default();
    for writer in writers {
        let seen = writer.await.unwrap();
        all.acknowledged_puts.extend(seen.acknowledged_puts);
        for (k, n) in seen.acknowledged_incrs {
            *all.acknowledged_incrs.entry(k).or_default() += n;
        }
        for (k, n) in seen.unknown_incrs {
            *all.unknown_incrs.entry(k).or_default() += n;
        }
        for (status, n) in seen.statuses {
            *all.statuses.entry(status).or_default() += n;
        }
    }
    eprintln!(
        "{mode:?}: {} connections reset, statuses {:?}",
        kills.load(Ordering::Relaxed),
        all.statuses
    );
    assert!(kills.load(Ordering::Relaxed) > 10, "the resets happened");
    assert!(
        all.statuses
            .keys()
            .all(|s| *s < 500 || *s == 503 || *s == 507),
        "{:?}",
        all.statuses
    );
    assert!(
        all.statuses.get(&507).is_some_and(|n| *n > 0),
        "the out-of-memory spell was seen"
    );
    assert!(all.acknowledged_puts.len() > 50, "{:?}", all.statuses);

    // In `auto` mode what memory acknowledged reaches Redis by the hand-back, when the service
    // returns to Redis: wait for that (bounded) before reading Redis.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let (_, health) = app.get_json("/health").await;
        if health["backend"]["active"] == "redis" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = redis.connection();
    for (key, value) in &all.acknowledged_puts {
        let read = |conn: &mut redis::Connection| -> Option<String> {
            redis::cmd("GET")
                .arg(format!("statekeeper:default:cache:{{ns}}:{key}"))
                .query(conn)
                .unwrap()
        };
        let mut stored = read(&mut conn);
        // The last writes memory took finish their hand-back just after the switch.
        while stored.is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stored = read(&mut conn);
        }
        assert_eq!(
            stored,
            Some(value.to_string()),
            "acknowledged PUT of {key} is in Redis"
        );
    }
    for (counter, acknowledged) in &all.acknowledged_incrs {
        let stored: Option<u64> = redis::cmd("GET")
            .arg(format!("statekeeper:default:cache:{{ns}}:{counter}"))
            .query(&mut conn)
            .unwrap();
        let stored = stored.unwrap_or(0);
        let unknown = all.unknown_incrs.get(counter).copied().unwrap_or(0);
        assert!(
            *acknowledged <= stored && stored <= acknowledged + unknown,
            "{counter}: {acknowledged} acknowledged, {unknown} unknown, {stored} in Redis"
        );
    }
}

/// A capability declared `refuse` answers 503 with `Retry-After` while Redis is down in `auto`
/// mode, while the cache keeps serving from memory; `/health` says which does what.
#[tokio::test]
async fn a_refusing_capability_answers_503_while_the_cache_serves_from_memory() {
    let mut config = settings(BackendMode::Auto, None);
    config.backend.refuse_while_degraded = vec!["sessions".into()];
    let app = spawn_app(config).await;
    let refused = app.post("/v1/sessions", json!({"user_id": "u"})).await;
    refused.assert_problem(503, "backend_unavailable");
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(
        put(&app, "k", "1").await.status,
        204,
        "the cache serves from memory"
    );
    assert_eq!(app.get("/v1/cache/ns/k").await.text(), "1");
    // Except increments: memory does not hold Redis's count.
    app.post("/v1/cache/ns/k/incr", json!({"by": 1}))
        .await
        .assert_problem(503, "backend_unavailable");
    assert_eq!(app.get("/v1/cache/ns/k").await.text(), "1", "unchanged");
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["backend"]["while_degraded"]["sessions"], "refuse");
    assert_eq!(
        health["backend"]["while_degraded"]["cache"],
        "serve_from_memory"
    );
}

/// `redis` mode builds no memory backend: nothing to report, every capability refuses.
#[tokio::test]
async fn redis_mode_builds_no_memory_backend() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    let (_, health) = app.get_json("/health").await;
    assert!(health["backend"]["memory"].is_null(), "{health}");
    let policies = health["backend"]["while_degraded"].as_object().unwrap();
    assert_eq!(policies.len(), statekeeper::capabilities::ALL.len());
    assert!(policies.values().all(|p| p == "refuse"), "{health}");
}
