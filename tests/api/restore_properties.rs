//! The one door for values, as properties (proptest), on memory and on Redis:
//!
//! 1. whatever the API can create comes back unchanged through backup → restore into an empty
//!    backend → backup;
//! 2. whatever backup line restore accepts leaves every route of that item answering below 500,
//!    and the tenant's backup whole.
//!
//! Each case runs on a fresh service (on Redis: a key prefix of its own), so cases never see
//! each other's items. `PROPTEST_CASES` sets how many cases run (default here: 32 and 128).

use proptest::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::{config::BackendMode, transfer::format};

use crate::{
    backup::{assert_same_records, backup, records, restore},
    common::{RedisServer, TestApp, settings, spawn_app},
};

/// Ids as the API takes them: 1-12 of `[A-Za-z0-9._:@-]`, not starting with `_`.
fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._:@-]{0,11}"
}

/// Any JSON a caller may store: nested a little, numbers exact.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// One thing to create through the API.
#[derive(Debug, Clone)]
enum Create {
    Cache {
        ns: String,
        key: String,
        value: Value,
        ttl: Option<u64>,
    },
    Budget {
        subject: String,
        limit: u64,
        monthly: bool,
    },
    Lock {
        name: String,
        grants: usize,
    },
    Job {
        payload: Value,
        priority: u8,
        delay_ms: u64,
        max_attempts: u32,
    },
    Session {
        user: String,
        data: Value,
        context: Value,
    },
    Thread {
        thread: String,
        context: Value,
        text: String,
    },
    Action {
        entities: Value,
        resolve: u8,
    },
    Usage {
        subject: String,
        amount: u64,
    },
}

fn create() -> impl Strategy<Value = Create> {
    prop_oneof![
        (id(), id(), json_value(), prop::option::of(1u64..100_000)).prop_map(
            |(ns, key, value, ttl)| Create::Cache {
                ns,
                key,
                value,
                ttl
            }
        ),
        (
            id(),
            prop_oneof![Just(0u64), 0u64..1000, Just((1u64 << 53) - 1)],
            any::<bool>()
        )
            .prop_map(|(subject, limit, monthly)| Create::Budget {
                subject,
                limit,
                monthly
            }),
        (id(), 1usize..4).prop_map(|(name, grants)| Create::Lock { name, grants }),
        (
            json_value(),
            0u8..=9,
            prop_oneof![Just(0u64), 1u64..3_600_000],
            1u32..=1000
        )
            .prop_map(|(payload, priority, delay_ms, max_attempts)| Create::Job {
                payload,
                priority,
                delay_ms,
                max_attempts
            }),
        (id(), json_object(), json_object()).prop_map(|(user, data, context)| Create::Session {
            user,
            data,
            context
        }),
        (id(), json_object(), "\\PC{1,20}").prop_map(|(thread, context, text)| Create::Thread {
            thread,
            context,
            text
        }),
        (json_object(), 0u8..3)
            .prop_map(|(entities, resolve)| Create::Action { entities, resolve }),
        (id(), 0u64..1_000_000).prop_map(|(subject, amount)| Create::Usage { subject, amount }),
    ]
}

/// A call that must not fail: a 2xx (or 409/412 where the API says "already so").
async fn call(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let reply = app.call(method, path, Some(body)).await;
    assert!(
        reply.status < 300,
        "{path}: {} {}",
        reply.status,
        reply.body
    );
    reply.body
}

async fn make(app: &TestApp, item: &Create, n: usize) {
    match item {
        Create::Cache {
            ns,
            key,
            value,
            ttl,
        } => {
            let ttl = ttl.map_or(String::new(), |t| format!("?ttl_seconds={t}"));
            let put = app
                .put_raw(&format!("/v1/cache/{ns}/{key}{ttl}"), &value.to_string())
                .await;
            assert_eq!(put.status, 204, "{}", put.body);
        }
        Create::Budget {
            subject,
            limit,
            monthly,
        } => {
            let period = if *monthly { "month" } else { "day" };
            let path = format!("/v1/budgets/{subject}/tokens");
            call(
                app,
                Method::PUT,
                &path,
                json!({"limit": limit, "period": period}),
            )
            .await;
        }
        Create::Lock { name, grants } => {
            for _ in 0..*grants {
                let path = format!("/v1/locks/{name}");
                let granted = app.post(&path, json!({"ttl_ms": 60_000})).await;
                if granted.status != 200 {
                    break; // held by the previous grant of this case
                }
                let token = granted.body["lock_token"].as_str().unwrap().to_string();
                let request = app
                    .request(Method::DELETE, &path)
                    .header("lock-token", token);
                assert_eq!(app.send(request).await.status, 204);
            }
        }
        Create::Job {
            payload,
            priority,
            delay_ms,
            max_attempts,
        } => {
            let body = json!({"payload": payload, "priority": priority, "delay_ms": delay_ms,
                              "max_attempts": max_attempts});
            call(app, Method::POST, "/v1/queues/q/jobs", body).await;
        }
        Create::Session {
            user,
            data,
            context,
        } => {
            let body = json!({"user_id": user, "data": data, "context": context});
            call(app, Method::POST, "/v1/sessions", body).await;
        }
        Create::Thread {
            thread,
            context,
            text,
        } => {
            let body = json!({"thread_id": format!("{thread}-{n}"), "context": context,
                              "messages": [{"role": "human", "content": text}]});
            call(app, Method::POST, "/v1/agent-states", body).await;
        }
        Create::Action { entities, resolve } => {
            let body = json!({"intent_name": "deploy", "entities": entities});
            let created = call(app, Method::POST, "/v1/pending-actions", body).await;
            let token = created["token"].as_str().unwrap();
            let to = match resolve {
                1 => "confirm",
                2 => "cancel",
                _ => return,
            };
            call(
                app,
                Method::POST,
                &format!("/v1/pending-actions/{token}/{to}"),
                json!({}),
            )
            .await;
        }
        Create::Usage { subject, amount } => {
            let body = json!({"event_id": format!("e-{n}"), "metric": "tokens", "amount": amount});
            call(
                app,
                Method::POST,
                &format!("/v1/usage/{subject}/events"),
                body,
            )
            .await;
        }
    }
}

/// Services on one backend, each with nothing in it.
struct Fresh {
    redis: Option<RedisServer>,
    mode: BackendMode,
    made: std::sync::atomic::AtomicUsize,
}

impl Fresh {
    fn new(mode: BackendMode) -> Option<Self> {
        let redis = match mode {
            BackendMode::Memory => None,
            _ => Some(RedisServer::start()?),
        };
        Some(Self {
            redis,
            mode,
            made: Default::default(),
        })
    }

    async fn app(&self) -> TestApp {
        let mut settings = settings(self.mode, self.redis.as_ref());
        let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        settings.redis.key_prefix = format!("prop{n}");
        spawn_app(settings).await
    }
}

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn round_trip(mode: BackendMode) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(fresh) = Fresh::new(mode) else {
        return;
    };
    proptest!(cases(32), |(items in prop::collection::vec(create(), 1..8))| {
        runtime.block_on(async {
            let source = fresh.app().await;
            for (n, item) in items.iter().enumerate() {
                make(&source, item, n).await;
            }
            let first = backup(&source).await;
            let target = fresh.app().await;
            let report = restore(&target, "", &first).await;
            assert_eq!(report.status, 200, "{}", report.body);
            // Values and versions equal, lifetimes within a second.
            assert_same_records(records(&first), records(&backup(&target).await));
        });
    });
}

#[test]
fn what_the_api_creates_round_trips_on_memory() {
    round_trip(BackendMode::Memory);
}

#[test]
fn what_the_api_creates_round_trips_on_redis() {
    round_trip(BackendMode::Redis);
}

/// Numbers at the edges of every width a value may pass through (JSON, Lua's doubles, u32,
/// i64, u64), and ordinary ones.
fn edge_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(1),
            json!(-1),
            json!(u32::MAX),
            json!(1u64 << 32),
            json!((1u64 << 53) - 1),
            json!(1u64 << 53),
            json!(i64::MAX),
            json!(1u64 << 63),
            json!(u64::MAX),
            json!(0.5),
            json!(1e300),
        ]),
        (0u64..10_000_000).prop_map(Value::from),
    ]
}

/// A field's value: mostly an edge number, sometimes anything.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![4 => edge_number(), 1 => json_value()]
}

fn now_us() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp() as u64 * 1_000_000
}

/// A backup line for one item: the shape each capability's records have, with any field
/// replaced by an edge number or any JSON. Returns (capability, id, value, ttl_ms).
fn record() -> impl Strategy<Value = (String, String, Value, Option<u64>)> {
    let lock = field().prop_map(|mark| {
        (
            "locks".into(),
            "l".into(),
            json!({"fencing_token": mark}),
            None,
        )
    });
    let job = (field(), field(), field(), field(), field(), 0usize..9).prop_map(|(a, b, c, d, e, which)| {
        let now = now_us();
        let mut job = json!({"id": "j", "payload": "{\"a\":1}", "priority": 5, "state": "ready",
            "attempt": 1, "max_attempts": 3, "backoff": {"kind": "fixed", "base_ms": 1000, "max_ms": 1000},
            "enqueued_at_us": now, "at_us": now, "last_error": null, "seq": 7});
        let fields = ["seq", "attempt", "max_attempts", "at_us", "enqueued_at_us", "priority"];
        let states = ["ready", "delayed", "leased", "dead"];
        job["state"] = json!(states[which % 4]);
        for (name, value) in fields.iter().zip([a, b, c, d, e]).take(1 + which % 5) {
            job[*name] = value;
        }
        ("queues".into(), "q/j".into(), job, None)
    });
    let budget = (field(), any::<bool>()).prop_map(|(limit, monthly)| {
        let period = if monthly { "month" } else { "day" };
        (
            "budgets".into(),
            "s/tokens".into(),
            json!({"limit": limit, "period": period}),
            None,
        )
    });
    let usage = field().prop_map(|amount| {
        let day = time::OffsetDateTime::now_utc().date().to_string();
        (
            "usage".into(),
            format!("s/day/{day}"),
            json!({"tokens": amount}),
            Some(86_400_000),
        )
    });
    let session = (field(), field(), json_object()).prop_map(|(ttl, version, data)| {
        let now = time::OffsetDateTime::now_utc();
        let at = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let id = "0e6c3a1e-5d1b-4c3e-9a57-2f1f3c9d8b10";
        let value = json!({"session_id": id, "user_id": "u", "data": data, "context": {},
            "created_at": at, "last_activity_at": at, "expires_at": at, "ttl_seconds": ttl,
            "version": version});
        ("sessions".into(), id.into(), value, Some(3_600_000))
    });
    let cache = json_value().prop_map(|value| ("cache".into(), "ns/k".into(), value, Some(60_000)));
    prop_oneof![lock, job, budget, usage, session, cache]
}

fn file(capability: &str, id: &str, value: &Value, ttl_ms: Option<u64>) -> Vec<u8> {
    let (mut encoder, mut out) = format::Encoder::start(time::OffsetDateTime::now_utc());
    out.extend(encoder.record(&format::Record {
        capability: capability.into(),
        tenant: "default".into(),
        id: id.into(),
        value: serde_json::value::RawValue::from_string(value.to_string()).unwrap(),
        ttl_ms,
        version: None,
    }));
    out.extend(encoder.finish());
    out
}

/// Every route of the restored item, with the calls a client would make next; none may answer
/// 500, and the tenant's backup stays whole.
async fn use_it(app: &TestApp, capability: &str) {
    let below_500 = |reply: crate::common::Reply, what: &str| {
        assert!(
            reply.status < 500,
            "{what}: {} {}",
            reply.status,
            reply.body
        );
        reply
    };
    match capability {
        "locks" => {
            below_500(app.get("/v1/locks/l").await, "get");
            let granted = below_500(
                app.post("/v1/locks/l", json!({"ttl_ms": 1000})).await,
                "acquire",
            );
            let token = granted.body["fencing_token"].clone();
            below_500(
                app.post("/v1/fences/l/check", json!({"fencing_token": token}))
                    .await,
                "fence",
            );
            if let Some(lock) = granted.body["lock_token"].as_str() {
                let extend = json!({"lock_token": lock, "ttl_ms": 1000});
                below_500(app.post("/v1/locks/l/extend", extend).await, "extend");
                let release = app
                    .request(Method::DELETE, "/v1/locks/l")
                    .header("lock-token", lock);
                below_500(app.send(release).await, "release");
            }
        }
        "queues" => {
            below_500(app.get("/v1/queues/q").await, "counts");
            below_500(app.get("/v1/queues/q/jobs/j").await, "get");
            below_500(app.get("/v1/queues/q/dead").await, "dead");
            below_500(
                app.post("/v1/queues/q/dead/j/redrive", json!({})).await,
                "redrive",
            );
            let leased = below_500(
                app.post(
                    "/v1/queues/q/lease",
                    json!({"visibility_ms": 1000, "count": 5}),
                )
                .await,
                "lease",
            );
            for job in leased.body["jobs"].as_array().cloned().unwrap_or_default() {
                let id = job["job_id"].as_str().unwrap();
                let token = json!({"lease_token": job["lease_token"]});
                let nack = json!({"lease_token": job["lease_token"], "error": "x"});
                below_500(
                    app.post(
                        &format!("/v1/queues/q/jobs/{id}/heartbeat"),
                        json!({"lease_token": job["lease_token"], "visibility_ms": 1000}),
                    )
                    .await,
                    "heartbeat",
                );
                below_500(
                    app.post(&format!("/v1/queues/q/jobs/{id}/nack"), nack)
                        .await,
                    "nack",
                );
                below_500(
                    app.post(&format!("/v1/queues/q/jobs/{id}/ack"), token)
                        .await,
                    "ack",
                );
            }
            below_500(
                app.post("/v1/queues/q/jobs", json!({"payload": 1})).await,
                "enqueue",
            );
        }
        "budgets" => {
            below_500(app.get("/v1/budgets/s/tokens").await, "get");
            let held = below_500(
                app.post(
                    "/v1/budgets/s/tokens/reserve",
                    json!({"amount": 1, "ttl_ms": 1000}),
                )
                .await,
                "reserve",
            );
            if let Some(id) = held.body["reservation_id"].as_str() {
                let path = format!("/v1/budgets/s/tokens/reservations/{id}/commit");
                below_500(app.post(&path, json!({"amount": 1})).await, "commit");
            }
        }
        "usage" => {
            below_500(app.get("/v1/usage/s?period=day").await, "totals");
            let event = json!({"event_id": "x", "metric": "tokens", "amount": 1});
            below_500(app.post("/v1/usage/s/events", event).await, "record");
        }
        "sessions" => {
            let id = "0e6c3a1e-5d1b-4c3e-9a57-2f1f3c9d8b10";
            below_500(app.get(&format!("/v1/sessions/{id}")).await, "get");
            let patch = app
                .call(
                    Method::PATCH,
                    &format!("/v1/sessions/{id}"),
                    Some(json!({"data": {"x": 1}})),
                )
                .await;
            below_500(patch, "patch");
            below_500(
                app.post(&format!("/v1/sessions/{id}/extend"), json!({}))
                    .await,
                "extend",
            );
            below_500(app.get("/v1/users/u/sessions").await, "list");
        }
        _ => {
            below_500(app.get("/v1/cache/ns/k").await, "get");
            below_500(
                app.post("/v1/cache/ns/k/incr", json!({"by": 1})).await,
                "incr",
            );
        }
    }
    let whole = app.get("/v1/admin/backup").await;
    assert_eq!(whole.status, 200);
    format::read(&whole.bytes).expect("the tenant's backup is whole");
}

fn accepted_lines_break_nothing(mode: BackendMode) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(fresh) = Fresh::new(mode) else {
        return;
    };
    proptest!(cases(128), |((capability, id, value, ttl) in record())| {
        runtime.block_on(async {
            let app = fresh.app().await;
            let reply = restore(&app, "", &file(&capability, &id, &value, ttl)).await;
            assert!(
                reply.status == 200 || reply.status == 422,
                "{capability} {value}: {} {}", reply.status, reply.body
            );
            if reply.status == 200 {
                use_it(&app, &capability).await;
            }
        });
    });
}

#[test]
fn an_accepted_backup_line_breaks_no_route_on_memory() {
    accepted_lines_break_nothing(BackendMode::Memory);
}

#[test]
fn an_accepted_backup_line_breaks_no_route_on_redis() {
    accepted_lines_break_nothing(BackendMode::Redis);
}
