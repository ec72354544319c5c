//! Topics over HTTP, read with an SSE client library (`eventsource-stream`): publish and
//! subscribe on every backend, resume across two instances sharing one Redis while subscribers
//! come and go, a stuck subscriber dropped with a reset while publishers keep their pace,
//! resets at each backend switch, and streams that end at shutdown.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use rand::RngExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::config::{BackendMode, Scope, Settings};

use crate::common::{RedisServer, TestApp, settings, spawn_app};

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// An open subscription.
struct Subscriber {
    events: Events,
}

impl Subscriber {
    async fn open(app: &TestApp, topic: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app.request(Method::GET, &format!("/v1/topics/{topic}/events"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            events: Box::pin(response.bytes_stream().eventsource()),
        }
    }

    /// The next event, `None` when the stream ended; panics after `within`.
    async fn next_within(&mut self, within: Duration) -> Option<Event> {
        match tokio::time::timeout(within, self.events.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) => None,
            Err(_) => panic!("no event within {within:?}"),
        }
    }

    async fn next(&mut self) -> Option<Event> {
        self.next_within(Duration::from_secs(5)).await
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < n {
            events.push(self.next().await.expect("the stream goes on"));
        }
        events
    }
}

async fn publish(app: &TestApp, topic: &str, body: Value) -> String {
    let reply = app
        .post(&format!("/v1/topics/{topic}/messages"), body)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_string()
}

fn reset_reason(event: &Event) -> String {
    assert_eq!(event.event, "reset", "{event:?}");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    data["reason"].as_str().unwrap().to_string()
}

/// Publish, receive live with ids and names, resume after an id, reset for a foreign one.
async fn publish_subscribe_and_resume(app: &TestApp) {
    let mut live = Subscriber::open(app, "orders", None).await;
    let first = publish(
        app,
        "orders",
        json!({"data": {"order": 1}, "event": "created"}),
    )
    .await;
    let raw = br#"{"data": [2, "two"]}"#;
    let second = app
        .call_raw(Method::POST, "/v1/topics/orders/messages", raw)
        .await;
    assert_eq!(second.status, 201);
    let second = second.body["id"].as_str().unwrap().to_string();
    let third = publish(app, "orders", json!({"data": "three"})).await;
    let events = live.take(3).await;
    assert_eq!(events[0].id, first);
    assert_eq!(events[0].event, "created");
    assert_eq!(events[0].data, "{\"order\":1}");
    assert_eq!(events[1].event, "message");
    assert_eq!(events[1].data, "[2, \"two\"]", "data exactly as sent");
    assert_eq!(events[2].id, third);

    let mut resumed = Subscriber::open(app, "orders", Some(&first)).await;
    let events = resumed.take(2).await;
    assert_eq!(
        [events[0].id.as_str(), events[1].id.as_str()],
        [second.as_str(), third.as_str()]
    );

    let query = app
        .request(
            Method::GET,
            &format!("/v1/topics/orders/events?last_event_id={second}"),
        )
        .send()
        .await
        .unwrap();
    let mut by_query = Subscriber {
        events: Box::pin(query.bytes_stream().eventsource()),
    };
    assert_eq!(by_query.next().await.unwrap().id, third);

    let mut foreign = Subscriber::open(app, "orders", Some("not-an-id")).await;
    let reset = foreign.next().await.unwrap();
    assert_eq!(reset_reason(&reset), "unknown_id");
    let data: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["earliest"], first.as_str());
    let replay = foreign.take(3).await;
    assert_eq!(replay[0].id, first, "then every retained message");
}

/// Bad input is refused and publishes nothing.
async fn bad_messages_are_refused(app: &TestApp) {
    let path = "/v1/topics/t/messages";
    for (body, status) in [
        (json!({"data": 1, "event": "reset"}), 422),
        (json!({"data": 1, "event": "has space"}), 422),
        (json!({"data": 1, "event": ""}), 422),
        (json!({"data": 1, "extra": true}), 422),
        (json!({"event": "x"}), 422),
        (json!({"data": "x".repeat(70_000)}), 413),
    ] {
        let reply = app.post(path, body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert_eq!(reply.header("content-type"), "application/problem+json");
    }
    assert_eq!(
        app.post("/v1/topics/bad name/messages", json!({"data": 1}))
            .await
            .status,
        400
    );
    let long = "0".repeat(65);
    app.get(&format!("/v1/topics/t/events?last_event_id={long}"))
        .await
        .assert_problem(400, "invalid_request");
    let mut replay = Subscriber::open(app, "t", Some("0-0")).await;
    let reset = replay.next().await.unwrap();
    let data: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(
        data["earliest"],
        Value::Null,
        "nothing was published: {reset:?}"
    );
}

/// A backlog longer than a page (the Redis adapter reads 50 at a time) arrives whole and in
/// order, resumed from the middle or after a reset; an id no log can read after (the largest
/// stream id there is) is a reset `unknown_id`, never an error.
async fn a_long_backlog_arrives_whole(app: &TestApp) {
    let mut ids = Vec::new();
    for i in 0..130 {
        ids.push(publish(app, "long", json!({"data": i})).await);
    }
    let mut resumed = Subscriber::open(app, "long", Some(&ids[9])).await;
    let events = resumed.take(120).await;
    let got: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        got,
        ids[10..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let largest = "18446744073709551615-18446744073709551615";
    let mut unknown = Subscriber::open(app, "long", Some(largest)).await;
    assert_eq!(reset_reason(&unknown.next().await.unwrap()), "unknown_id");
    let events = unknown.take(130).await;
    assert!(
        events.iter().map(|e| &e.id).eq(ids.iter()),
        "every message, in order"
    );
    // Live messages follow the backlog without a repeat.
    let next = publish(app, "long", json!({"data": 130})).await;
    assert_eq!(unknown.next().await.unwrap().id, next);
}

crate::on_each_backend!(app =>
    publish_subscribe_and_resume,
    bad_messages_are_refused,
    a_long_backlog_arrives_whole,
);

/// 10,000 messages published on instance A by four publishers while 25 subscribers on A and 25
/// on B read a random number of messages, drop the connection and resume from their last id,
/// again and again. Each sees every message exactly once, in the one order of the log, with no
/// reset (everything stays retained).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_that_come_and_go_see_every_message_once_in_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = Arc::new(spawn_app(settings(BackendMode::Redis, Some(&redis))).await);
    let b = Arc::new(spawn_app(settings(BackendMode::Redis, Some(&redis))).await);
    const TOTAL: usize = 10_000;
    // Every subscriber starts from a message published before the run, so each can resume.
    let start = publish(&a, "firehose", json!({"data": "start"})).await;

    let mut subscribers = Vec::new();
    for s in 0..50 {
        let app = if s % 2 == 0 { a.clone() } else { b.clone() };
        let start = start.clone();
        subscribers.push(tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut reconnects = 0;
            while seen.len() < TOTAL {
                let last = seen.last().cloned().unwrap_or(start.clone());
                let mut subscriber = Subscriber::open(&app, "firehose", Some(&last)).await;
                let quota = rand::rng().random_range(1..=800);
                for _ in 0..quota {
                    let event = subscriber
                        .next_within(Duration::from_secs(30))
                        .await
                        .expect("the stream goes on");
                    assert_ne!(event.event, "reset", "no reset: {event:?}");
                    seen.push(event.id);
                    if seen.len() == TOTAL {
                        break;
                    }
                }
                reconnects += 1;
            }
            (seen, reconnects)
        }));
    }

    let mut publishers = Vec::new();
    for p in 0..4 {
        let a = a.clone();
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..TOTAL / 4 {
                ids.push(publish(&a, "firehose", json!({"data": {"p": p, "i": i}})).await);
            }
            ids
        }));
    }
    let mut published = HashSet::new();
    for publisher in publishers {
        published.extend(publisher.await.unwrap());
    }
    assert_eq!(published.len(), TOTAL);
    // One stream reader per instance, not one Redis connection per subscriber.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.connection())
        .unwrap();
    let readers = clients.lines().filter(|c| c.contains("cmd=xread")).count();
    assert!(readers <= 2, "{readers} stream readers:\n{clients}");

    let mut orders = Vec::new();
    let mut total_reconnects = 0;
    for subscriber in subscribers {
        let (seen, reconnects) = subscriber.await.unwrap();
        total_reconnects += reconnects;
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), TOTAL, "each message once");
        assert!(seen.iter().all(|id| published.contains(id)));
        orders.push(seen);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one order for all");
    let position = |id: &str| -> (u64, u64) {
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    };
    assert!(
        orders[0]
            .windows(2)
            .all(|w| position(&w[0]) < position(&w[1])),
        "in the log's order"
    );
    assert!(
        total_reconnects > 50 * 5,
        "subscribers came and went: {total_reconnects}"
    );
}

/// A subscriber that stops reading falls behind `topics.subscriber_buffer`, gets a reset
/// (`lagged`) and its stream ends; publishers keep their pace meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_subscriber_is_dropped_and_never_slows_publishers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let buffer = |settings: &mut Settings| settings.topics.subscriber_buffer = 16;
    let app = crate::common::spawn_on(&redis, BackendMode::Redis, buffer).await;
    let big = "x".repeat(32 * 1024);
    let latencies = |n: usize| {
        let app = &app;
        let big = big.clone();
        async move {
            let mut took = Vec::new();
            for _ in 0..n {
                let started = Instant::now();
                publish(app, "big", json!({"data": big})).await;
                took.push(started.elapsed());
            }
            took.sort();
            took
        }
    };
    let before = latencies(50).await;

    // Opened and never read: once the socket's buffers are full, it falls behind.
    let mut stuck = Subscriber::open(&app, "big", None).await;
    let during = latencies(600).await;
    let p99 = |took: &[Duration]| took[took.len() * 99 / 100];
    assert!(
        p99(&during) < p99(&before) * 10 + Duration::from_millis(100),
        "publish p99 {:?} with a stuck subscriber, {:?} before",
        p99(&during),
        p99(&before)
    );

    let mut delivered = 0;
    let reason = loop {
        let event = stuck.next().await.expect("a reset before the end");
        if event.event == "reset" {
            break reset_reason(&event);
        }
        delivered += 1;
    };
    assert_eq!(reason, "lagged");
    assert!(delivered < 600, "{delivered} delivered before the reset");
    assert!(
        stuck.next().await.is_none(),
        "the stream ends after the reset"
    );
}

/// In auto mode, a Redis outage ends open streams with a reset; streams opened meanwhile are
/// served from memory, where a Redis id is unknown; Redis's return ends those with a reset too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_switch_resets_open_streams() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Auto, Some(&redis))).await;
    let on_redis = publish(&app, "news", json!({"data": 1})).await;
    let mut before = Subscriber::open(&app, "news", Some(&on_redis)).await;

    redis.kill();
    let reset = before.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reset_reason(&reset), "backend_switched");
    assert!(before.next().await.is_none());
    app.wait_for_health(Duration::from_secs(5), |h| h["status"] == "degraded")
        .await;

    let on_memory = publish(&app, "news", json!({"data": 2})).await;
    assert!(on_memory.starts_with('m'), "{on_memory}");
    let mut during = Subscriber::open(&app, "news", Some(&on_redis)).await;
    assert_eq!(reset_reason(&during.next().await.unwrap()), "unknown_id");
    assert_eq!(during.next().await.unwrap().id, on_memory);

    redis.restart();
    let reset = during.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reset_reason(&reset), "backend_switched");
    assert!(during.next().await.is_none());
}

/// Redis stalls (SIGSTOP) for 5 s under one subscriber and 20 publishes a second, in `auto`
/// mode: the publishes made meanwhile are served from memory, which the open stream (on
/// Redis's log) cannot see. What it received before its reset is every acknowledged message
/// in its span, in order, and the reset (`backend_switched`) comes before any gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_stall_never_leaves_a_silent_gap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = Arc::new(spawn_app(settings(BackendMode::Auto, Some(&redis))).await);
    let mut subscriber = Subscriber::open(&app, "ticks", None).await;
    let publisher = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..180_u64 {
                let started = Instant::now();
                let reply = app
                    .post("/v1/topics/ticks/messages", json!({"data": i}))
                    .await;
                if reply.status == 201 {
                    acked.push(i);
                }
                let pace = Duration::from_millis(50).saturating_sub(started.elapsed());
                tokio::time::sleep(pace).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.resume();
    let acked = publisher.await.unwrap();

    let mut got = Vec::new();
    let mut reset = None;
    while let Ok(Some(Ok(event))) =
        tokio::time::timeout(Duration::from_secs(3), subscriber.events.next()).await
    {
        if event.event == "reset" {
            reset = Some(reset_reason(&event));
            break;
        }
        got.push(event.data.parse::<u64>().unwrap());
    }
    assert!(!got.is_empty(), "messages before the stall arrived");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {got:?}"
    );
    let (first, last) = (got[0], got[got.len() - 1]);
    let span: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|v| (first..=last).contains(v))
        .collect();
    assert_eq!(got, span, "no gap among what the stream delivered");
    let missed: Vec<u64> = acked.iter().copied().filter(|v| *v > last).collect();
    assert!(
        missed.is_empty() || reset.as_deref() == Some("backend_switched"),
        "{} acknowledged messages after {last} never came, and no reset said so ({reset:?})",
        missed.len()
    );
    assert_eq!(
        reset.as_deref(),
        Some("backend_switched"),
        "memory took publishes"
    );
}

/// 1,000 messages of 60 KB and ten subscribers resuming from an unknown id that never read:
/// each holds at most a page of the backlog and no connection, so another tenant's lock and
/// queue calls all succeed meanwhile and Redis is never taken for down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_backlog_that_nobody_reads_takes_nothing_from_others() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    for mode in [BackendMode::Redis, BackendMode::Auto] {
        let app = spawn_app(settings(mode, Some(&redis))).await;
        let topic = format!("backlog-{mode:?}");
        let big = "x".repeat(60 * 1024);
        // The backlog (not under test): a publish the busy machine timed out is made again.
        for _ in 0..1000 {
            let path = format!("/v1/topics/{topic}/messages");
            while app.post(&path, json!({"data": big})).await.status != 201 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        app.wait_for_health(Duration::from_secs(10), |h| h["status"] == "ok")
            .await;
        let mut stuck = Vec::new();
        for _ in 0..10 {
            stuck.push(Subscriber::open(&app, &topic, Some("nope")).await);
        }
        let mut refused = Vec::new();
        for i in 0..150 {
            let lock = app
                .post(&format!("/v1/locks/other-{i}"), json!({"ttl_ms": 1000}))
                .await;
            let job = app
                .post("/v1/queues/other/jobs", json!({"payload": i}))
                .await;
            for reply in [lock, job] {
                if reply.status != 200 && reply.status != 201 {
                    refused.push((reply.status, reply.body));
                }
            }
        }
        // Before pages, 834 of 1,102 such calls got 503 (76%). A call a busy machine timed out
        // (its 250 ms deadline) is not what this measures: up to 1% is allowed for it.
        assert!(
            refused.len() <= 3,
            "{mode:?}: {} of 300 refused: {:?}",
            refused.len(),
            refused.first()
        );
        let (_, health) = app.get_json("/health").await;
        assert_eq!(health["status"], "ok", "{mode:?}: {health}");
        // A subscriber that reads gets the reset, then every retained message.
        let mut reader = Subscriber::open(&app, &topic, Some("nope")).await;
        assert_eq!(reset_reason(&reader.next().await.unwrap()), "unknown_id");
        assert_eq!(reader.take(1000).await.len(), 1000);
        drop(stuck);
    }
}

/// Streams are capped per tenant and per instance, below the connection limit: past a cap a
/// stream is refused with 503 `over_capacity` and `Retry-After`, while probes and other
/// calls still answer; a closed stream gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_are_capped_per_tenant_and_instance() {
    let mut settings = settings(BackendMode::Memory, None);
    settings.server.max_connections = 64;
    settings.topics.max_streams = 12;
    settings.topics.max_streams_per_tenant = 8;
    let keys: [(&str, &str, &[Scope]); 3] = [
        ("key-a", "a", &[Scope::Read, Scope::Write]),
        ("key-b", "b", &[Scope::Read]),
        ("key-c", "c", &[Scope::Read]),
    ];
    crate::common::with_api_keys(&mut settings, &keys);
    let app = spawn_app(settings).await;
    let open = |key: &'static str| {
        let request = app.request(Method::GET, "/v1/topics/t/events");
        request.bearer_auth(key).send()
    };
    let mut held = Vec::new();
    for _ in 0..8 {
        let response = open("key-a").await.unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let refused = app
        .send(
            app.request(Method::GET, "/v1/topics/t/events")
                .bearer_auth("key-a"),
        )
        .await;
    refused.assert_problem(503, "over_capacity");
    assert_eq!(refused.header("retry-after"), "5");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("max_streams_per_tenant")
    );
    for _ in 0..4 {
        let response = open("key-b").await.unwrap();
        assert_eq!(response.status(), 200, "another tenant still gets streams");
        held.push(response);
    }
    let full = app
        .send(
            app.request(Method::GET, "/v1/topics/t/events")
                .bearer_auth("key-c"),
        )
        .await;
    full.assert_problem(503, "over_capacity");
    assert!(
        full.body["detail"]
            .as_str()
            .unwrap()
            .contains("topics.max_streams")
    );
    assert_eq!(app.status("/health").await, 200, "probes get through");
    let publish = app
        .request(Method::POST, "/v1/topics/t/messages")
        .bearer_auth("key-a");
    let published = app.send(publish.json(&json!({"data": 1}))).await;
    assert_eq!(published.status, 201);
    // A stream that ends gives its place back.
    drop(held.remove(0));
    let again = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let response = open("key-c").await.unwrap();
            if response.status() == 200 {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    held.push(
        again
            .await
            .expect("the closed stream's place is given back"),
    );
}

/// `topics.max_stream_ms` ends a stream cleanly (no reset) that long after it opened; the
/// client resumes after its last id exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_after_max_stream_ms_and_resumes_exactly() {
    let mut settings = settings(BackendMode::Memory, None);
    settings.topics.max_stream_ms = 300;
    let app = spawn_app(settings).await;
    let first = publish(&app, "short", json!({"data": 1})).await;
    let mut subscriber = Subscriber::open(&app, "short", Some(&first)).await;
    let second = publish(&app, "short", json!({"data": 2})).await;
    assert_eq!(subscriber.next().await.unwrap().id, second);
    let opened = Instant::now();
    assert!(
        subscriber.next().await.is_none(),
        "the stream ends, without a reset"
    );
    assert!(opened.elapsed() < Duration::from_secs(3));
    let third = publish(&app, "short", json!({"data": 3})).await;
    let mut resumed = Subscriber::open(&app, "short", Some(&second)).await;
    assert_eq!(resumed.next().await.unwrap().id, third);
}

/// Shutdown ends open streams at once (no reset), not at the end of the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let app = spawn_app(settings(BackendMode::Memory, None)).await;
    let mut subscriber = Subscriber::open(&app, "t", None).await;
    let started = Instant::now();
    drop(app);
    assert!(subscriber.next().await.is_none(), "the stream ends cleanly");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// With `redis.wait_replicas`, a subscriber receives only what the replicas hold. A master that
/// lost its replica (as a deposed master does, stopped and continued before it learns it is a
/// replica) still appends what it is sent, and answers 503 to the publisher; delivering that
/// message would move the subscriber's `Last-Event-ID` past what the new master holds, a silent
/// gap (the history checker found it in a Cluster failover). The stream resets instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_replicas_do_not_hold_is_never_delivered() {
    let Some(master) = RedisServer::start() else {
        return;
    };
    // A directory of its own: the replica's sync writes an RDB file there (never the
    // project's directory).
    let dir = tempfile::tempdir().unwrap();
    let replica_of = vec![
        "--dir".into(),
        dir.path().display().to_string(),
        "--replicaof".into(),
        "127.0.0.1".into(),
        master.port.to_string(),
    ];
    let Some(replica) = RedisServer::start_with(replica_of) else {
        return;
    };
    let replicas = |want: &str| {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let info: String = master.query(&["INFO", "replication"]);
            let up: String = replica.query(&["INFO", "replication"]);
            let linked = up.contains("master_link_status:up");
            if info.contains(&format!("connected_slaves:{want}")) && (want == "0" || linked) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the master never had {want} replicas");
    };
    replicas("1");
    let mut s = settings(BackendMode::Redis, Some(&master));
    s.redis.wait_replicas = 1;
    s.redis.wait_timeout_ms = 200;
    let app = spawn_app(s).await;
    let mut subscriber = Subscriber::open(&app, "replicated", None).await;
    let first = publish(&app, "replicated", json!({"data": "held by the replica"})).await;
    assert_eq!(subscriber.next().await.unwrap().id, first);

    let _: () = replica.query(&["REPLICAOF", "NO", "ONE"]);
    replicas("0");
    let alone = app
        .post(
            "/v1/topics/replicated/messages",
            json!({"data": "on the master alone"}),
        )
        .await;
    alone.assert_problem(503, "backend_unavailable");
    let next = subscriber.next_within(Duration::from_secs(15)).await;
    let event = next.expect("the stream resets rather than ending silently");
    assert_eq!(reset_reason(&event), "backend_switched", "{event:?}");
}

/// A `Last-Event-ID` within the log that the log never held (as a master deposed by a failover
/// hands out: it took the message alone, and the failover dropped it) resets: resuming after
/// it would skip the messages before it that the new master took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_the_log_never_held_resets() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    let first = publish(&app, "held", json!({"data": 1})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = publish(&app, "held", json!({"data": 2})).await;
    let (ms, seq) = first.split_once('-').unwrap();
    let never = format!("{ms}-{}", seq.parse::<u64>().unwrap() + 1);
    assert!(never != second);
    let mut subscriber = Subscriber::open(&app, "held", Some(&never)).await;
    let event = subscriber.next().await.unwrap();
    assert_eq!(reset_reason(&event), "unknown_id", "{event:?}");
    let replay = subscriber.take(2).await;
    assert_eq!([&replay[0].id, &replay[1].id], [&first, &second]);
    // An id the log holds still resumes exactly.
    let mut exact = Subscriber::open(&app, "held", Some(&first)).await;
    assert_eq!(exact.next().await.unwrap().id, second);
}
