//! Job queues over HTTP: every route and refusal on every backend, a stress run with two
//! instances on one Redis and workers that die mid-job, long polls woken across instances
//! without polling Redis, and refusal while Redis is down.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use statekeeper::config::BackendMode;

use crate::common::{RedisServer, Reply, TestApp, settings, spawn_app};

async fn enqueue(app: &TestApp, queue: &str, body: Value) -> Reply {
    app.post(&format!("/v1/queues/{queue}/jobs"), body).await
}

async fn lease(app: &TestApp, queue: &str, body: Value) -> Vec<Value> {
    let reply = app.post(&format!("/v1/queues/{queue}/lease"), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["jobs"].as_array().unwrap().clone()
}

async fn job_call(app: &TestApp, queue: &str, job: &Value, op: &str, body: Value) -> Reply {
    let id = job["job_id"].as_str().unwrap();
    app.post(&format!("/v1/queues/{queue}/jobs/{id}/{op}"), body)
        .await
}

fn token(job: &Value) -> Value {
    json!({"lease_token": job["lease_token"]})
}

async fn the_queue_routes(app: &TestApp) {
    let created = enqueue(
        app,
        "mail",
        json!({"payload": {"to": "ada"}, "priority": 5,
        "dedup_key": "welcome-ada", "max_attempts": 2}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["job_id"].as_str().unwrap().to_string();
    let again = enqueue(
        app,
        "mail",
        json!({"payload": {"to": "ada"}, "dedup_key": "welcome-ada"}),
    )
    .await;
    assert_eq!(
        (again.status, again.body["job_id"].as_str()),
        (200, Some(id.as_str()))
    );
    assert_eq!(
        app.get("/v1/queues/mail").await.body,
        json!({"delayed": 0, "ready": 1, "leased": 0, "done": 0, "dead": 0})
    );

    let jobs = lease(app, "mail", json!({"visibility_ms": 30_000})).await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["payload"], json!({"to": "ada"}));
    assert_eq!(job["attempt"], 1);
    let beat = job_call(
        app,
        "mail",
        job,
        "heartbeat",
        json!({"lease_token": job["lease_token"], "visibility_ms": 60_000}),
    )
    .await;
    assert_eq!(beat.status, 200, "{}", beat.body);
    let seen = app.get(&format!("/v1/queues/mail/jobs/{id}")).await;
    assert_eq!(
        (seen.body["state"].clone(), seen.body["priority"].clone()),
        (json!("leased"), json!(5))
    );

    let wrong = json!({"lease_token": "AAAAAAAAAAAAAAAAAAAAAA"});
    job_call(app, "mail", job, "ack", wrong.clone())
        .await
        .assert_problem(409, "lease_lost");
    let failed = job_call(
        app,
        "mail",
        job,
        "nack",
        json!({"lease_token": job["lease_token"],
        "delay_ms": 0, "error": "SMTP timeout"}),
    )
    .await;
    assert_eq!(failed.body, json!({"state": "ready"}));
    job_call(app, "mail", job, "ack", token(job))
        .await
        .assert_problem(409, "lease_lost");

    let second = lease(app, "mail", json!({"visibility_ms": 30_000, "count": 10})).await;
    assert_eq!(second[0]["attempt"], 2);
    let dead = job_call(app, "mail", &second[0], "nack", token(&second[0])).await;
    assert_eq!(dead.body, json!({"state": "dead"}), "attempts spent");
    let listed = app.get("/v1/queues/mail/dead").await;
    assert_eq!(listed.body["jobs"][0]["last_error"], "SMTP timeout");
    assert_eq!(listed.body["jobs"][0]["attempt"], 2);
    assert_eq!(
        app.post(&format!("/v1/queues/mail/dead/{id}/redrive"), json!(null))
            .await
            .status,
        200
    );
    app.post(&format!("/v1/queues/mail/dead/{id}/redrive"), json!(null))
        .await
        .assert_problem(409, "not_dead");
    app.post("/v1/queues/mail/dead/nope/redrive", json!(null))
        .await
        .assert_problem(404, "not_found");

    let third = lease(app, "mail", json!({"visibility_ms": 30_000})).await;
    assert_eq!(
        job_call(app, "mail", &third[0], "ack", token(&third[0]))
            .await
            .body,
        json!({"state": "done"})
    );
    assert_eq!(
        app.get(&format!("/v1/queues/mail/jobs/{id}")).await.body["state"],
        "done"
    );
    assert_eq!(
        app.delete("/v1/queues/mail").await.body,
        json!({"deleted": 1})
    );
    app.get(&format!("/v1/queues/mail/jobs/{id}"))
        .await
        .assert_problem(404, "not_found");
}

async fn bad_requests_change_nothing(app: &TestApp) {
    for body in [
        json!({}),
        json!({"payload": 1, "priority": 10}),
        json!({"payload": 1, "max_attempts": 0}),
        json!({"payload": 1, "delay_ms": -1}),
        json!({"payload": 1, "dedup_key": "a b"}),
        json!({"payload": 1, "backoff": {"kind": "linear", "base_ms": 1, "max_ms": 1}}),
        json!({"payload": 1, "extra": 1}),
    ] {
        enqueue(app, "bad", body)
            .await
            .assert_problem(422, "validation_failed");
    }
    let big = "x".repeat(300 * 1024);
    enqueue(app, "bad", json!({"payload": big}))
        .await
        .assert_problem(413, "payload_too_large");
    for body in [
        json!({}),
        json!({"visibility_ms": 0}),
        json!({"visibility_ms": 1000, "count": 101}),
        json!({"visibility_ms": 1000, "wait_ms": 20_001}),
    ] {
        app.post("/v1/queues/bad/lease", body)
            .await
            .assert_problem(422, "validation_failed");
    }
    app.post(
        "/v1/queues/bad/jobs/x/ack",
        json!({"lease_token": "not a token"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    enqueue(app, "bad%20name", json!({"payload": 1}))
        .await
        .assert_problem(400, "invalid_id");
    app.get("/v1/queues/bad/dead?limit=0")
        .await
        .assert_problem(400, "invalid_request");
    assert_eq!(
        app.get("/v1/queues/bad").await.body["ready"],
        0,
        "nothing was enqueued"
    );
}

crate::on_each_backend!(app => the_queue_routes, bad_requests_change_nothing);

/// What the workers saw.
#[derive(Default)]
struct Seen {
    /// Successful acks per job payload number.
    acked: HashMap<u64, u32>,
    /// Leases a "dead" worker dropped: (queue job, its token).
    dropped: Vec<Value>,
    /// Delayed jobs: how long after their enqueue they were first leased.
    delayed_waits: Vec<Duration>,
}

/// Two instances on one Redis, 1,000 jobs (50 delayed, one that always fails), 20 workers of
/// which three drop some jobs mid-work (a worker that died: no ack, no heartbeat). Every job is
/// acked exactly once; the dropped leases' acks are refused afterwards; no delayed job is
/// leased early; the failing job is dead with `attempt == max_attempts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_and_dying_workers_ack_every_job_once() {
    let Some((_redis, apps)) = crate::common::two_instances().await else {
        return;
    };
    let fixed = json!({"kind": "fixed", "base_ms": 0, "max_ms": 0});
    let started = Instant::now();
    let mut enqueued_at = HashMap::new();
    for n in 0..1000u64 {
        let delay = if n.is_multiple_of(20) { 300 } else { 0 };
        // An expired lease uses up an attempt. Under load a worker can ack its fifth job after
        // the 300 ms lease; with the default 3 attempts such a job could die unacked. 1,000
        // attempts keep this test about lost leases, not the retry limit.
        let body = json!({"payload": {"n": n}, "delay_ms": delay, "backoff": fixed,
            "priority": n % 10, "max_attempts": 1000});
        let reply = enqueue(&apps[(n % 2) as usize], "stress", body).await;
        assert_eq!(reply.status, 201);
        enqueued_at.insert(n, Instant::now());
    }
    let poison = json!({"payload": {"poison": true}, "max_attempts": 3, "backoff": fixed});
    let poison_id = enqueue(&apps[0], "stress", poison).await.body["job_id"].clone();
    let enqueued_at = Arc::new(enqueued_at);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let workers: Vec<_> = (0..20)
        .map(|w| {
            let (apps, seen, enqueued_at) = (apps.clone(), seen.clone(), enqueued_at.clone());
            tokio::spawn(async move {
                let app = &apps[w % 2];
                let mut rounds = 0u64;
                while started.elapsed() < Duration::from_secs(40) {
                    let counts = app.get("/v1/queues/stress").await.body;
                    if counts["done"] == 1000 && counts["dead"] == 1 {
                        return;
                    }
                    let jobs = lease(
                        app,
                        "stress",
                        json!({"count": 5, "visibility_ms": 300, "wait_ms": 200}),
                    )
                    .await;
                    for job in jobs {
                        rounds += 1;
                        if job["payload"]["poison"] == true {
                            job_call(app, "stress", &job, "nack", token(&job)).await;
                            continue;
                        }
                        let n = job["payload"]["n"].as_u64().unwrap();
                        if job["attempt"] == 1 && n.is_multiple_of(20) {
                            seen.lock()
                                .unwrap()
                                .delayed_waits
                                .push(enqueued_at[&n].elapsed());
                        }
                        if w < 3 && rounds.is_multiple_of(7) {
                            seen.lock().unwrap().dropped.push(job);
                            continue;
                        }
                        let reply = job_call(app, "stress", &job, "ack", token(&job)).await;
                        if reply.status == 200 {
                            *seen.lock().unwrap().acked.entry(n).or_default() += 1;
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let counts = apps[0].get("/v1/queues/stress").await.body;
    assert_eq!(
        seen.acked.len(),
        1000,
        "every job acked; the queue: {counts}"
    );
    assert!(seen.acked.values().all(|n| *n == 1), "each once");
    assert!(!seen.dropped.is_empty(), "some workers died mid-job");
    for job in &seen.dropped {
        let stale = job_call(&apps[0], "stress", job, "ack", token(job)).await;
        stale.assert_problem(409, "lease_lost");
    }
    assert_eq!(seen.delayed_waits.len(), 50);
    assert!(
        seen.delayed_waits
            .iter()
            .all(|d| *d >= Duration::from_millis(290)),
        "{:?}",
        seen.delayed_waits
    );
    let poisoned = apps[1]
        .get(&format!(
            "/v1/queues/stress/jobs/{}",
            poison_id.as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (
            poisoned.body["state"].clone(),
            poisoned.body["attempt"].clone()
        ),
        (json!("dead"), json!(3))
    );
}

/// Once a queue holds nothing live, every key it wrote on Redis expires: the done job and set
/// within the hour, the dead job and set, and the sequence counter, within the dead letters'
/// 14 days; while a job waits, its keys and the counter do not. (Queues named per entity would
/// otherwise keep their finished jobs for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_queue_leaves_no_key_without_an_expiry() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    let ttls = || {
        let mut connection = redis.connection();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*q-idle*")
            .query(&mut connection)
            .unwrap();
        keys.into_iter()
            .map(|key| {
                let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut connection).unwrap();
                (key, ttl)
            })
            .collect::<Vec<_>>()
    };
    for body in [
        json!({"payload": 1}),
        json!({"payload": 2, "max_attempts": 1}),
    ] {
        assert_eq!(enqueue(&app, "q-idle", body).await.status, 201);
    }
    let waiting = ttls();
    assert!(
        waiting.iter().all(|(_, ttl)| *ttl == -1),
        "live: {waiting:?}"
    );
    let jobs = lease(&app, "q-idle", json!({"visibility_ms": 30_000, "count": 2})).await;
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let op = if job["payload"] == 1 { "ack" } else { "nack" };
        let reply = job_call(&app, "q-idle", job, op, token(job)).await;
        assert_eq!(reply.status, 200, "{op}: {}", reply.body);
    }
    let idle = ttls();
    assert!(idle.len() >= 5, "job hashes, done, dead, meta: {idle:?}");
    let fourteen_days_ms = 14 * 24 * 3_600_000;
    for (key, ttl) in &idle {
        assert!(
            *ttl > 0 && *ttl <= fourteen_days_ms,
            "{key} has no expiry ({ttl}) on an idle queue: {idle:?}"
        );
    }
    // A new job makes the counter live again.
    assert_eq!(
        enqueue(&app, "q-idle", json!({"payload": 3})).await.status,
        201
    );
    let meta = ttls()
        .into_iter()
        .find(|(key, _)| key.ends_with("meta"))
        .unwrap();
    assert_eq!(meta.1, -1, "{meta:?}");
}

/// A long poll on one instance is woken by an enqueue on the other within milliseconds, and
/// while it waits it runs few scripts on Redis (no busy poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_is_woken_across_instances_without_polling() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let apps = Arc::new([
        spawn_app(settings(BackendMode::Redis, Some(&redis))).await,
        spawn_app(settings(BackendMode::Redis, Some(&redis))).await,
    ]);
    let before = redis.evalsha_calls();
    let (polling, request) = (
        apps.clone(),
        json!({"visibility_ms": 1000, "wait_ms": 8000}),
    );
    let poll =
        crate::common::spawn_timed(async move { lease(&polling[1], "poll", request).await.len() });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let idle_calls = redis.evalsha_calls() - before;
    assert!(
        idle_calls <= 5,
        "{idle_calls} scripts while one poll idled 2.5 s"
    );
    let enqueued_at = Instant::now();
    assert_eq!(
        enqueue(&apps[0], "poll", json!({"payload": 1}))
            .await
            .status,
        201
    );
    let (n, leased_at) = poll.await.unwrap();
    assert_eq!(n, 1);
    crate::common::assert_woken_promptly(enqueued_at, leased_at, "enqueue");
}

/// Queues refuse while Redis is down in `auto` mode: 503 with Retry-After.
#[tokio::test]
async fn while_redis_is_down_queues_refuse() {
    let app = spawn_app(settings(BackendMode::Auto, None)).await;
    let refused = enqueue(&app, "q", json!({"payload": 1})).await;
    refused.assert_problem(503, "backend_unavailable");
    assert_eq!(refused.header("retry-after"), "1");
    app.post("/v1/queues/q/lease", json!({"visibility_ms": 1000}))
        .await
        .assert_problem(503, "backend_unavailable");
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["backend"]["while_degraded"]["queues"], "refuse");
}
