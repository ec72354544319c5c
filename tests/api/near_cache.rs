//! The near cache (`[[cache.near]]`): repeated reads served from the process, a write through
//! another instance seen within the documented bound (measured over 10,000 writes), and a lost
//! tracking connection that never leaves a changed value served.

use std::time::{Duration, Instant};

use statekeeper::config::{BackendMode, NearCacheSettings, Settings};

use crate::common::{RedisServer, TestApp, settings, spawn_app};

/// The staleness bound the README states: a write through another instance is seen by a
/// near-cached read at most this long after the write answered.
const STALENESS_BOUND: Duration = Duration::from_millis(250);

fn near(redis: &RedisServer) -> Settings {
    let mut settings = settings(BackendMode::Redis, Some(redis));
    settings.cache.near = vec![NearCacheSettings {
        namespace: "hot".into(),
        max_entries: 1000,
        max_bytes: 1 << 20,
    }];
    settings
}

fn gets(redis: &RedisServer) -> u64 {
    redis.calls("get")
}

async fn read(app: &TestApp, key: &str) -> String {
    let reply = app.get(&format!("/v1/cache/hot/{key}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// Waits until the near cache's tracking connection is up (it is named in `CLIENT LIST`).
async fn tracking_connections(redis: &RedisServer) -> Vec<String> {
    let clients: String = redis.query(&["CLIENT", "LIST"]);
    clients
        .lines()
        .filter(|c| c.contains("name=statekeeper-near-cache"))
        .filter_map(|c| {
            c.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(String::from)
        })
        .collect()
}

async fn wait_for_tracking(redis: &RedisServer, count: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let ids = tracking_connections(redis).await;
        if ids.len() == count {
            return ids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "tracking never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On one private Redis: instance A with the near cache for `hot` (its tracking connection
/// registered; its client ids come last), and instance B without it.
async fn near_and_plain() -> Option<(RedisServer, TestApp, TestApp, Vec<String>)> {
    let redis = RedisServer::start()?;
    let a = spawn_app(near(&redis)).await;
    let b = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    let ids = wait_for_tracking(&redis, 1).await;
    Some((redis, a, b, ids))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_reads_are_served_locally_and_writes_invalidate() {
    let Some((redis, a, b, _)) = near_and_plain().await else {
        return;
    };
    assert_eq!(a.put_raw("/v1/cache/hot/k", "1").await.status, 204);
    let before = gets(&redis);
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(read(&a, "k").await, "1");
    }
    // An entry serves for `STALENESS_BOUND` after its read: one GET per such stretch at most
    // (on a busy machine five reads may take longer than one).
    let stretches = (started.elapsed().as_millis() / STALENESS_BOUND.as_millis()) as u64 + 1;
    let reached = gets(&redis) - before;
    assert!(
        reached <= stretches.min(4),
        "{reached} GETs reached Redis for five reads in {:?}",
        started.elapsed()
    );
    // A namespace that did not opt in reads Redis every time.
    assert_eq!(a.put_raw("/v1/cache/cold/k", "1").await.status, 204);
    let before = gets(&redis);
    for _ in 0..3 {
        assert_eq!(a.get("/v1/cache/cold/k").await.status, 200);
    }
    assert_eq!(gets(&redis) - before, 3);

    // A write through this instance is seen at once.
    assert_eq!(a.put_raw("/v1/cache/hot/k", "2").await.status, 204);
    assert_eq!(read(&a, "k").await, "2");
    // A delete through another instance: gone once the invalidation arrived.
    assert_eq!(b.delete("/v1/cache/hot/k").await.status, 204);
    let deleted = Instant::now();
    loop {
        let read_started = deleted.elapsed();
        if a.get("/v1/cache/hot/k").await.status == 404 {
            break;
        }
        assert!(
            read_started < STALENESS_BOUND,
            "a read started {read_started:?} after the delete still saw the value"
        );
    }
}

/// 10,000 writes through instance B, each followed by reads through A until A shows it: no
/// read that started more than the documented bound after B's answer shows the old value (the
/// age cap makes this hold however slow the machine is).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_elsewhere_is_seen_within_the_bound() {
    let Some((_redis, a, b, _)) = near_and_plain().await else {
        return;
    };
    let mut worst = Duration::ZERO;
    let mut stale_reads = 0u32;
    for i in 0..10_000u32 {
        let value = i.to_string();
        assert_eq!(b.put_raw("/v1/cache/hot/counter", &value).await.status, 204);
        let written = Instant::now();
        loop {
            let read_started = written.elapsed();
            let seen = read(&a, "counter").await;
            if seen == value {
                break;
            }
            stale_reads += 1;
            worst = worst.max(read_started);
            assert!(
                read_started <= STALENESS_BOUND,
                "write {i}: a read started {read_started:?} after it still saw {seen}"
            );
        }
    }
    println!(
        "near cache: latest stale read started {worst:?} after its write, over 10,000 writes ({stale_reads} stale reads)"
    );
}

/// Killing the tracking connection empties the near cache: once it is back, a value changed
/// meanwhile is read fresh, never the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_tracking_connection_never_serves_a_changed_value() {
    let Some((redis, a, b, ids)) = near_and_plain().await else {
        return;
    };
    assert_eq!(b.put_raw("/v1/cache/hot/k", "\"old\"").await.status, 204);
    assert_eq!(read(&a, "k").await, "\"old\"");
    assert_eq!(read(&a, "k").await, "\"old\"");

    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&ids[0])
        .query(&mut redis.connection())
        .unwrap();
    // Changed while the tracking connection is down: no invalidation can reach A.
    assert_eq!(b.put_raw("/v1/cache/hot/k", "\"new\"").await.status, 204);
    let started = Instant::now();
    loop {
        let back = tracking_connections(&redis).await;
        if back.len() == 1 && back[0] != ids[0] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "tracking never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        assert_eq!(read(&a, "k").await, "\"new\"");
    }
}
