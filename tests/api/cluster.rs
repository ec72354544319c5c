//! The service on a Redis Cluster and on a Sentinel-managed master, beyond the suites that
//! already run on a cluster (`on_each_backend!(app => ...)`, `store_conformance!`): one
//! tenant's keys spread over the masters, sessions and agent states through HTTP, a master
//! lost under load, and a Sentinel failover.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::config::{BackendMode, SentinelSettings};

use crate::common::{
    TestApp,
    cluster::{RedisCluster, SENTINEL_MASTER, SentinelSetup},
    settings, spawn_app,
};

async fn cluster_app(
    cluster: &RedisCluster,
    tweak: impl FnOnce(&mut statekeeper::config::Settings),
) -> TestApp {
    let mut settings = settings(BackendMode::Redis, None);
    settings.redis.cluster_nodes = cluster.urls();
    tweak(&mut settings);
    spawn_app(settings).await
}

/// `n` requests made by `request(i)`, 32 at a time; each must succeed.
async fn load(app: &TestApp, n: usize, request: impl Fn(usize) -> (Method, String, Value)) {
    futures::stream::iter(0..n)
        .map(|i| {
            let (method, path, body) = request(i);
            async move { app.ok(method, &path, body).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_threads_and_sessions_spread_over_the_masters() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    // What this checks is where keys land and that listings merge the shards; a page of 1,000
    // threads from each master can outlast the default 250 ms deadline on a busy machine.
    let app = cluster_app(&cluster, |settings| {
        settings.redis.command_timeout_ms = 5_000
    })
    .await;
    load(&app, 10_000, |i| {
        let body = json!({"thread_id": format!("thread-{i}"), "messages": []});
        (Method::POST, "/v1/agent-states".into(), body)
    })
    .await;
    load(&app, 10_000, |i| {
        let body = json!({"user_id": format!("user-{}", i % 500)});
        (Method::POST, "/v1/sessions".into(), body)
    })
    .await;
    let keys = cluster.keys_per_master();
    let (max, min) = (*keys.iter().max().unwrap(), *keys.iter().min().unwrap());
    eprintln!(
        "keys per master for 10,000 threads and 10,000 sessions of one tenant: {keys:?}, \
         max/min {:.3}",
        max as f64 / min as f64
    );
    assert_eq!(keys.len(), 3);
    assert!(
        max as f64 / min as f64 <= 1.5,
        "one tenant's keys must spread over the masters: {keys:?}"
    );
    // Listings merge the shards: every thread is listed once, in id order.
    let listed = app
        .listed("/v1/agent-states?limit=1000", "thread_ids")
        .await;
    let mut expected: Vec<String> = (0..10_000).map(|i| format!("thread-{i}")).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_agent_states_over_a_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let app = cluster_app(&cluster, |_| {}).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let created = app
            .ok(Method::POST, "/v1/sessions", json!({"user_id": "ada"}))
            .await;
        ids.push(created["session_id"].as_str().unwrap().to_string());
    }
    let rotated = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{}/rotate", ids[0]),
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_id = rotated.body["session_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, ids[0]);
    assert_eq!(
        app.get(&format!("/v1/sessions/{}", ids[0])).await.status,
        404
    );
    assert_eq!(app.get(&format!("/v1/sessions/{new_id}")).await.status, 200);
    let listed = app.get("/v1/users/ada/sessions").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["sessions"].as_array().unwrap().len(), 20);
    let signed_out = app.delete("/v1/users/ada/sessions").await;
    assert_eq!(signed_out.status, 200, "{}", signed_out.body);
    assert_eq!(signed_out.body["deleted"], 20);
    assert_eq!(app.get(&format!("/v1/sessions/{new_id}")).await.status, 404);

    for i in 0..30 {
        let body = json!({"thread_id": format!("t-{i:02}"), "messages": []});
        app.ok(Method::POST, "/v1/agent-states", body).await;
    }
    let message = json!({"messages": [{"role": "human", "content": "hi"}]});
    app.ok(Method::POST, "/v1/agent-states/t-07/messages", message)
        .await;
    let recent = app.get("/v1/agent-states/recent?limit=3").await;
    assert_eq!(recent.status, 200, "{}", recent.body);
    assert_eq!(recent.body["states"][0]["thread_id"], "t-07");
    assert_eq!(recent.body["states"][0]["message_count"], 1);
    assert_eq!(recent.body["states"].as_array().unwrap().len(), 3);
    let page = app.get("/v1/agent-states?limit=10&cursor=t.t-09").await;
    let ids: Vec<&str> = page.body["thread_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    let expected: Vec<String> = (10..20).map(|i| format!("t-{i:02}")).collect();
    assert_eq!(ids, expected);
}

/// What writers saw while a master died: each acknowledged key and value, and how many
/// answers were refusals.
#[derive(Default)]
struct Acked {
    values: BTreeMap<String, String>,
    refused: u64,
    answered: u64,
}

/// Writers that PUT unique cache keys over many namespaces (so over every master) until
/// `stop`, recording each acknowledged write.
fn write_until(
    app: &Arc<TestApp>,
    stop: &Arc<AtomicBool>,
    acked: &Arc<Mutex<Acked>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8)
        .map(|writer| {
            let (app, stop, acked) = (app.clone(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let path = format!("/v1/cache/ns-{}/k-{writer}-{n}", n % 32);
                    let value = format!("\"v-{writer}-{n}\"");
                    let reply = app.put_raw(&path, &value).await;
                    let mut seen = acked.lock().unwrap();
                    seen.answered += 1;
                    match reply.status {
                        204 => {
                            seen.values.insert(path, value);
                        }
                        503 => seen.refused += 1,
                        other => panic!("{path}: {other} {}", reply.body),
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_lost_under_load_loses_no_acknowledged_write() {
    // Two replicas each: after the failover the promoted master still has one, which every
    // write must reach before it is answered done.
    let Some(cluster) = RedisCluster::start_with(3, 2) else {
        return;
    };
    // Mode `redis`: a write is answered done only by Redis, after one replica holds it.
    let app = Arc::new(
        cluster_app(&cluster, |s| {
            s.redis.wait_replicas = 1;
            s.redis.wait_timeout_ms = 200;
            s.redis.command_timeout_ms = 500;
        })
        .await,
    );
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let writers = write_until(&app, &stop, &acked);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let victim = cluster.master_of("statekeeper:default:cache:{ns-1}:x");
    // SIGSTOP rather than SIGKILL: to the cluster a master that answers nothing is dead, and
    // its port stays taken, so no other test's server can start there while the cluster and
    // the service still name it.
    cluster.nodes[victim].pause();
    let killed_at = Instant::now();
    let before = acked.lock().unwrap().values.len();
    // Until writes to the dead master's slots succeed again on its promoted replica.
    let (mut recovered, mut last) = (None, String::new());
    while killed_at.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let probe = app.put_raw("/v1/cache/ns-1/probe", "\"p\"").await;
        last = format!("{} {}", probe.status, probe.body);
        if probe.status == 204 {
            recovered = Some(killed_at.elapsed());
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let recovered = recovered.unwrap_or_else(|| {
        panic!("writes to the dead master's slots succeed again; the last answer: {last}")
    });
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!(
        "master lost under load: {} writes acknowledged ({} before the kill), {} answered \
         503 of {} answers; writes to its slots succeeded again after {:?}",
        acked.values.len(),
        before,
        acked.refused,
        acked.answered,
        recovered
    );
    assert!(acked.values.len() > before, "writes went on after the kill");
    let mut lost = Vec::new();
    for (path, value) in &acked.values {
        let read = app.get(path).await;
        if read.status != 200 || read.text() != *value {
            lost.push(path.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_moves_the_service_to_the_new_master() {
    let Some(setup) = SentinelSetup::start() else {
        return;
    };
    let mut s = settings(BackendMode::Redis, None);
    s.redis.sentinel = Some(SentinelSettings {
        master_name: SENTINEL_MASTER.into(),
        nodes: setup.urls(),
    });
    s.redis.command_timeout_ms = 500;
    let app = spawn_app(s).await;
    for i in 0..50 {
        let reply = app
            .put_raw(&format!("/v1/cache/ns/k-{i}"), "\"before\"")
            .await;
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    // The one replica becomes the whole of the new master: let it catch up first.
    setup.wait_replica_in_sync();
    let old = setup.master.port;
    // Stopped, not killed: a Sentinel turns whatever later listens on the old master's port
    // into a replica of the new one, and that must not be another test's server.
    setup.master.pause();
    let killed_at = Instant::now();
    let mut statuses = BTreeMap::<u16, u32>::new();
    let mut recovered = None;
    while killed_at.elapsed() < Duration::from_secs(30) {
        let reply = app.put_raw("/v1/cache/ns/after", "\"after\"").await;
        *statuses.entry(reply.status).or_default() += 1;
        if reply.status == 204 {
            recovered = Some(killed_at.elapsed());
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = recovered.expect("the service writes to the promoted replica");
    eprintln!("Sentinel failover: answers until it served again {statuses:?}, after {recovered:?}");
    setup.wait_master(setup.replica.port);
    assert_ne!(setup.replica.port, old);

    for i in 0..50 {
        assert_eq!(
            app.get_json(&format!("/v1/cache/ns/k-{i}")).await.1,
            json!("before")
        );
    }
    assert_eq!(app.get_json("/v1/cache/ns/after").await.1, json!("after"));
}
