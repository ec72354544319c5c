//! Backup and restore: over the admin routes on every backend, and with the binary's `backup`
//! and `restore` commands against Redis.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
};

use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::{
    config::{ApiKeySettings, BackendMode, Scope},
    transfer::format,
};

use crate::common::{Backend, RedisServer, TestApp, settings, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_statekeeper");

async fn ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    app.ok(method, path, body).await
}

/// Items of every kind the backup holds, with and without lifetimes.
async fn fill(app: &TestApp) {
    for i in 0..20 {
        let ttl = if i % 2 == 0 { "?ttl_seconds=300" } else { "" };
        let put = app
            .put_raw(
                &format!("/v1/cache/ns-{}/k-{i}{ttl}", i % 2),
                &format!("{{\"n\":{i}}}"),
            )
            .await;
        assert_eq!(put.status, 204);
    }
    // Kept as its text: a number no float holds, and spacing.
    let put = app
        .put_raw(
            "/v1/cache/raw/big",
            "[12345678901234567890123456789, {\"a\" : 1}]",
        )
        .await;
    assert_eq!(put.status, 204);
    for i in 0..8 {
        let body =
            json!({"user_id": format!("user-{}", i % 3), "data": {"i": i}, "context": {"pr": i}});
        let created = ok(app, Method::POST, "/v1/sessions", body).await;
        if i == 0 {
            let id = created["session_id"].as_str().unwrap();
            let gone = app.delete(&format!("/v1/sessions/{id}/context")).await;
            assert_eq!(gone.status, 204);
        }
    }
    for t in 0..5 {
        let body = json!({"thread_id": format!("th-{t}"), "context": {"t": t}, "metadata": {"m": 1},
                          "messages": [{"role": "human", "content": "hi"}]});
        ok(app, Method::POST, "/v1/agent-states", body).await;
        let body = json!({"messages": [{"role": "ai", "content": format!("answer {t}")}]});
        ok(
            app,
            Method::POST,
            &format!("/v1/agent-states/th-{t}/messages"),
            body,
        )
        .await;
    }
    for i in 0..6 {
        let body = json!({"intent_name": "deploy", "entities": {"i": i}});
        let created = ok(app, Method::POST, "/v1/pending-actions", body).await;
        let token = created["token"].as_str().unwrap();
        match i % 3 {
            1 => {
                ok(
                    app,
                    Method::POST,
                    &format!("/v1/pending-actions/{token}/confirm"),
                    json!({}),
                )
                .await;
            }
            2 => {
                ok(
                    app,
                    Method::POST,
                    &format!("/v1/pending-actions/{token}/cancel"),
                    json!({}),
                )
                .await;
            }
            _ => {}
        }
    }
}

/// Locks: one released and granted again (its first token is stale), one held.
async fn lock_up(app: &TestApp) -> u64 {
    let first = ok(app, Method::POST, "/v1/locks/l-1", json!({"ttl_ms": 60000})).await;
    let release = app
        .send(
            app.request(Method::DELETE, "/v1/locks/l-1")
                .header("lock-token", first["lock_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(release.status, 204, "{}", release.body);
    ok(app, Method::POST, "/v1/locks/l-1", json!({"ttl_ms": 60000})).await;
    ok(app, Method::POST, "/v1/locks/l-2", json!({"ttl_ms": 60000})).await;
    first["fencing_token"].as_u64().unwrap()
}

/// Jobs in every state a backup holds: ready (two priorities), delayed, leased and dead; and
/// one done, which it leaves out.
async fn queue_up(app: &TestApp) {
    let enqueue = |body: Value| ok(app, Method::POST, "/v1/queues/q/jobs", body);
    enqueue(json!({"payload": {"n": "low"}, "priority": 1})).await;
    enqueue(json!({"payload": {"n": "later"}, "delay_ms": 600000})).await;
    enqueue(json!({"payload": {"n": "dies"}, "priority": 9, "max_attempts": 1})).await;
    let lease = |visibility_ms: u64| {
        ok(
            app,
            Method::POST,
            "/v1/queues/q/lease",
            json!({"visibility_ms": visibility_ms}),
        )
    };
    let dying = lease(60000).await["jobs"][0].clone();
    let path = format!(
        "/v1/queues/q/jobs/{}/nack",
        dying["job_id"].as_str().unwrap()
    );
    let body = json!({"lease_token": dying["lease_token"], "error": "boom"});
    ok(app, Method::POST, &path, body).await;
    enqueue(json!({"payload": {"n": "done"}, "priority": 9})).await;
    let done = lease(60000).await["jobs"][0].clone();
    let path = format!("/v1/queues/q/jobs/{}/ack", done["job_id"].as_str().unwrap());
    ok(
        app,
        Method::POST,
        &path,
        json!({"lease_token": done["lease_token"]}),
    )
    .await;
    enqueue(json!({"payload": {"n": "held"}, "priority": 5})).await;
    enqueue(json!({"payload": {"n": "high"}, "priority": 8})).await;
    // Leases the priority-8 job; "held" (priority 5) stays ready.
    let leased = lease(60000).await;
    assert_eq!(leased["jobs"][0]["payload"]["n"], "high", "{leased}");
}

/// Usage of one subject in two metrics (a day and a month bucket) and a budget.
async fn meter(app: &TestApp) {
    for (id, metric, amount) in [
        ("e1", "tokens", 100),
        ("e2", "tokens", 50),
        ("e3", "cost", 7),
    ] {
        let body = json!({"event_id": id, "metric": metric, "amount": amount});
        ok(app, Method::POST, "/v1/usage/acct/events", body).await;
    }
    let body = json!({"limit": 1000, "period": "day"});
    ok(app, Method::PUT, "/v1/budgets/acct/tokens", body).await;
}

/// A well-formed backup file of these items (capability, tenant, id, value): no TTLs, no
/// versions.
fn backup_file(items: &[(&str, &str, &str, &str)]) -> Vec<u8> {
    let (mut encoder, mut out) = format::Encoder::start(time::OffsetDateTime::now_utc());
    for (capability, tenant, id, value) in items {
        out.extend(encoder.record(&format::Record {
            capability: capability.to_string(),
            tenant: tenant.to_string(),
            id: id.to_string(),
            value: serde_json::value::RawValue::from_string(value.to_string()).unwrap(),
            ttl_ms: None,
            version: None,
        }));
    }
    out.extend(encoder.finish());
    out
}

pub(crate) async fn backup(app: &TestApp) -> Vec<u8> {
    let response = app.get("/v1/admin/backup").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), "application/x-ndjson");
    response.bytes
}

pub(crate) async fn restore(app: &TestApp, query: &str, file: &[u8]) -> crate::common::Reply {
    let path = format!("/v1/admin/restore{query}");
    app.call_typed(Method::POST, &path, Some("application/x-ndjson"), file)
        .await
}

/// A backup's records by (capability, id): value, version and `ttl_ms`.
pub(crate) type Records = BTreeMap<(String, String), (Value, Option<u64>, Option<u64>)>;

pub(crate) fn records(file: &[u8]) -> Records {
    format::read(file)
        .unwrap()
        .records
        .into_iter()
        .map(|r| {
            let value: Value = serde_json::from_str(r.value.get()).unwrap();
            ((r.capability, r.id), (value, r.version, r.ttl_ms))
        })
        .collect()
}

/// Same records, lifetimes within a second.
fn assert_same(a: &[u8], b: &[u8]) {
    assert_same_records(records(a), records(b));
}

pub(crate) fn assert_same_records(a: Records, b: Records) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same items"
    );
    for (id, (value, version, ttl)) in &a {
        let (other_value, other_version, other_ttl) = &b[id];
        assert_eq!(value, other_value, "{id:?}");
        assert_eq!(version, other_version, "{id:?}");
        match (ttl, other_ttl) {
            (Some(x), Some(y)) => assert!(x.abs_diff(*y) <= 1000, "{id:?}: ttl {x} vs {y}"),
            (x, y) => assert_eq!(x, y, "{id:?}"),
        }
    }
}

/// A second service on the same backend with nothing in it: a new memory backend, or the same
/// Redis emptied.
async fn emptied(backend: &Backend, app: TestApp) -> TestApp {
    match &backend.redis {
        None => {
            drop(app);
            backend.app(|_| {}).await
        }
        Some(redis) => {
            redis::cmd("FLUSHALL")
                .query::<()>(&mut redis.connection())
                .unwrap();
            app
        }
    }
}

async fn backup_flush_restore_backup(backend: Backend) {
    let app = backend.app(|_| {}).await;
    fill(&app).await;
    let stale = lock_up(&app).await;
    queue_up(&app).await;
    meter(&app).await;
    let first = backup(&app).await;
    let items = records(&first);
    let count = |capability: &str| items.keys().filter(|(c, _)| c == capability).count();
    assert_eq!(
        (
            count("cache"),
            count("sessions"),
            count("agent_states"),
            count("pending_actions")
        ),
        (21, 8, 5, 6),
        "{}",
        String::from_utf8_lossy(&first)
    );
    assert_eq!(
        items[&("cache".to_string(), "raw/big".to_string())].0,
        serde_json::from_str::<Value>("[12345678901234567890123456789, {\"a\": 1}]").unwrap()
    );
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(
        text.contains("12345678901234567890123456789"),
        "big numbers keep their digits"
    );

    let app = emptied(&backend, app).await;
    assert_eq!(app.status("/v1/cache/ns-0/k-0").await, 404);
    let report = restore(&app, "", &first).await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.body["read"], 50);
    assert_eq!(report.body["written"], 50, "{}", report.body);

    let second = backup(&app).await;
    // The leased job comes back ready; everything else as it was.
    let mut expected = records(&first);
    for (value, _, _) in expected.values_mut() {
        if value["state"] == "leased" {
            value["state"] = json!("ready");
        }
    }
    assert_same_records(expected, records(&second));
    let (_, counts) = app.get_json("/v1/queues/q").await;
    assert_eq!(
        (
            &counts["ready"],
            &counts["delayed"],
            &counts["leased"],
            &counts["dead"]
        ),
        (&json!(3), &json!(1), &json!(0), &json!(1)),
        "{counts}"
    );
    // Priority order holds: the job that was leased (priority 8), then 5, then 1.
    for expected in ["high", "held", "low"] {
        let leased = ok(
            &app,
            Method::POST,
            "/v1/queues/q/lease",
            json!({"visibility_ms": 1000}),
        )
        .await;
        assert_eq!(leased["jobs"][0]["payload"]["n"], expected, "{leased}");
        assert_eq!(
            leased["jobs"][0]["attempt"],
            if expected == "high" { 2 } else { 1 }
        );
    }
    // Totals and the budget hold against each other again: 1000 - 150 tokens left today.
    let (_, budget) = app.get_json("/v1/budgets/acct/tokens").await;
    assert_eq!(
        (&budget["used"], &budget["remaining"]),
        (&json!(150), &json!(850)),
        "{budget}"
    );
    let (_, totals) = app.get_json("/v1/usage/acct?period=month").await;
    let amounts: Vec<u64> = totals["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["amount"].as_u64().unwrap())
        .collect();
    assert_eq!(amounts, [7, 150], "{totals}");
    let (_, dead) = app.get_json("/v1/queues/q/dead").await;
    assert_eq!(dead["jobs"][0]["last_error"], "boom", "{dead}");

    // Leases are not restored, fencing marks are: the first holder's token stays stale, and
    // the next grant goes past every token granted before the backup.
    let check = app
        .send(
            app.request(Method::POST, "/v1/fences/l-1/check")
                .json(&json!({"fencing_token": stale})),
        )
        .await;
    check.assert_problem(409, "stale_fencing_token");
    let mark = items[&("locks".to_string(), "l-1".to_string())].0["fencing_token"]
        .as_u64()
        .unwrap();
    let granted = ok(&app, Method::POST, "/v1/locks/l-1", json!({"ttl_ms": 1000})).await;
    assert!(granted["fencing_token"].as_u64().unwrap() > mark);
    // Restored items behave: a restored pending token still confirms once, a confirmed one
    // never again, and a restored thread takes appends after its messages.
    let (_, thread) = app.get_json("/v1/agent-states/th-3").await;
    assert_eq!(thread["messages"][1]["content"], "answer 3");
    assert_eq!(thread["version"], 2);
    let appended = ok(
        &app,
        Method::POST,
        "/v1/agent-states/th-3/messages",
        json!({"messages": [{"role": "human", "content": "again"}]}),
    )
    .await;
    assert_eq!(appended["version"], 3, "{appended}");
    for ((capability, token), (value, _, _)) in &items {
        if capability != "pending_actions" {
            continue;
        }
        let confirm = app
            .send(app.request(
                Method::POST,
                &format!("/v1/pending-actions/{token}/confirm"),
            ))
            .await;
        match value["status"].as_str().unwrap() {
            "pending" => assert_eq!(confirm.status, 200, "{}", confirm.body),
            "confirmed" => confirm.assert_problem(409, "already_confirmed"),
            _ => confirm.assert_problem(409, "already_cancelled"),
        }
    }

    // A second run of the same file writes nothing (the confirms above are the backend's own
    // later writes and are kept).
    let again = restore(&app, "", &first).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["written"], 0, "{}", again.body);
    assert_eq!(again.body["read"], 50);
}

async fn broken_files_change_nothing(backend: Backend) {
    let app = backend.app(|_| {}).await;
    fill(&app).await;
    let file = backup(&app).await;
    let app = emptied(&backend, app).await;
    let text = String::from_utf8(file.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let truncated = format!("{}\n", lines[..lines.len() - 1].join("\n"));
    let tampered = text.replacen("{\"n\":4}", "{\"n\":5}", 1);
    assert_ne!(tampered, text);
    let edited = text.replacen("\"user_id\":\"user-1\"", "\"user_id\":\"user-9\"", 1);
    // A well-formed file of another tenant (its own checksum).
    let other_tenant = backup_file(&[("cache", "other", "ns/k", "1")]);
    let bad_record = backup_file(&[
        ("cache", "default", "ns/k", "1"),
        ("locks", "default", "l", "{}"),
    ]);
    for (file, says) in [
        (truncated.as_bytes(), "truncated"),
        (tampered.as_bytes(), "checksum"),
        (edited.as_bytes(), "checksum"),
        (&other_tenant[..], "tenant"),
        (&bad_record[..], "line 3"),
        (b"not a backup\n".as_slice(), "header"),
    ] {
        let reply = restore(&app, "", file).await;
        reply.assert_problem(422, "validation_failed");
        assert!(
            reply.body["detail"].as_str().unwrap().contains(says),
            "{}",
            reply.body
        );
    }
    // Nothing was written, the good first record of `bad_record` included.
    assert_eq!(app.status("/v1/cache/ns/k").await, 404);
    let after = records(&backup(&app).await);
    assert!(after.is_empty(), "{after:?}");

    let reply = restore(&app, "?mode=sometimes", &file).await;
    reply.assert_problem(400, "invalid_request");
    let dry = restore(&app, "?dry_run=true", &file).await;
    assert_eq!(
        (
            dry.status,
            dry.body["read"].clone(),
            dry.body["written"].clone()
        ),
        (200, json!(40), json!(0))
    );
    assert!(
        records(&backup(&app).await).is_empty(),
        "a dry run writes nothing"
    );
}

async fn modes_decide_what_a_held_item_becomes(backend: Backend) {
    let app = backend.app(|_| {}).await;
    fill(&app).await;
    let file = backup(&app).await;
    // Later writes in the backend after the backup.
    ok(
        &app,
        Method::POST,
        "/v1/agent-states/th-1/messages",
        json!({"messages": [{"role": "human", "content": "later"}]}),
    )
    .await;
    assert_eq!(
        app.put_raw("/v1/cache/ns-1/k-1", "\"later\"").await.status,
        204
    );

    let skip = restore(&app, "?mode=skip-existing", &file).await;
    assert_eq!(skip.body["written"], 0, "{}", skip.body);
    assert_eq!(app.get_json("/v1/cache/ns-1/k-1").await.1, json!("later"));

    let merge = restore(&app, "?mode=merge", &file).await;
    assert_eq!(
        merge.body["conflicts"], 1,
        "the later thread is kept: {}",
        merge.body
    );
    assert_eq!(
        merge.body["written"], 1,
        "the cache value has no write time: {}",
        merge.body
    );
    assert_eq!(
        app.get_json("/v1/agent-states/th-1").await.1["message_count"],
        3
    );
    assert_eq!(app.get_json("/v1/cache/ns-1/k-1").await.1, json!({"n": 1}));

    let replace = restore(&app, "?mode=replace", &file).await;
    assert_eq!(replace.body["written"], 1, "{}", replace.body);
    assert_eq!(
        app.get_json("/v1/agent-states/th-1").await.1["message_count"],
        2
    );
}

async fn cleanup_removes_expired_index_entries(backend: Backend) {
    let app = backend.app(|_| {}).await;
    // One long-lived item beside the short ones keeps each index alive: for the threads, in
    // one shard of the Redis adapter's on a Cluster (an index expires with its shard's last
    // thread; one server has one shard).
    for ttl in [3600, 1, 1, 1] {
        let body = json!({"user_id": "u", "ttl_seconds": ttl});
        ok(&app, Method::POST, "/v1/sessions", body).await;
    }
    let shard = |id: &str| {
        let id = statekeeper::capabilities::agent_state::model::ThreadId::parse(id).unwrap();
        statekeeper::store::redis::keys::Keys::for_cluster("statekeeper").thread_shard(&id)
    };
    let threads: Vec<String> = (0..)
        .map(|i| format!("c-{i}"))
        .filter(|id| shard(id) == shard("c-0"))
        .take(3)
        .collect();
    for (thread, ttl) in threads.iter().zip([3600, 1, 1]) {
        let body = json!({"thread_id": thread, "ttl_seconds": ttl});
        ok(&app, Method::POST, "/v1/agent-states", body).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let cleaned = ok(&app, Method::POST, "/v1/admin/cleanup", json!(null)).await;
    assert_eq!(
        cleaned,
        json!({"agent_state_index_entries": 2, "session_index_entries": 3})
    );
    let again = ok(&app, Method::POST, "/v1/admin/cleanup", json!(null)).await;
    assert_eq!(
        again,
        json!({"agent_state_index_entries": 0, "session_index_entries": 0})
    );
    let (_, listed) = app.get_json("/v1/users/u/sessions").await;
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

/// What restore takes, on every backend and on a Redis Cluster.
mod bounds {
    use super::*;

    /// A job as a backup line holds it, with `field` set to `value`.
    fn job_line(field: &str, value: Value) -> String {
        let now_us = time::OffsetDateTime::now_utc().unix_timestamp() as u64 * 1_000_000;
        let mut job = json!({
            "id": "j-1", "payload": "{\"a\":1}", "priority": 5, "state": "ready", "attempt": 1,
            "max_attempts": 3, "backoff": {"kind": "fixed", "base_ms": 1000, "max_ms": 1000},
            "enqueued_at_us": now_us, "at_us": now_us, "last_error": null, "seq": 7
        });
        job[field] = value;
        job.to_string()
    }

    /// Restore takes only what the API itself could have made: a fencing mark no grant issued
    /// (2^53 - 1, 2^63, 2^64 - 1) or a job's sequence, attempt or time out of every bound refuses
    /// the whole file, and nothing of it is written; the same job within its bounds restores and
    /// is leased and acked like any other.
    async fn restore_takes_only_values_the_api_can_make(app: &TestApp) {
        let huge = [
            json!(9_007_199_254_740_991_u64),
            json!(1_u64 << 63),
            json!(u64::MAX),
        ];
        let mut refused: Vec<(&str, String, String)> = huge
            .iter()
            .map(|mark| {
                (
                    "locks",
                    "l-9".into(),
                    json!({"fencing_token": mark}).to_string(),
                )
            })
            .collect();
        for (field, value) in [
            ("seq", json!(u64::MAX)),
            ("attempt", json!(u32::MAX)),
            ("at_us", json!(u64::MAX)),
            ("enqueued_at_us", json!(u64::MAX)),
            ("max_attempts", json!(0)),
            (
                "backoff",
                json!({"kind": "fixed", "base_ms": u64::MAX, "max_ms": 1}),
            ),
        ] {
            refused.push(("queues", "q-9/j-1".into(), job_line(field, value)));
        }
        for (capability, id, value) in &refused {
            let file = backup_file(&[(capability, "default", id, value)]);
            let reply = restore(app, "", &file).await;
            reply.assert_problem(422, "validation_failed");
        }
        let (_, lock) = app.get_json("/v1/locks/l-9").await;
        assert_eq!(lock["fencing_token"], 0, "{lock}");
        let (_, counts) = app.get_json("/v1/queues/q-9").await;
        assert_eq!(counts["ready"], 0, "{counts}");

        let good = backup_file(&[("queues", "default", "q-9/j-1", &job_line("seq", json!(7)))]);
        assert_eq!(restore(app, "", &good).await.status, 200);
        let leased = ok(
            app,
            Method::POST,
            "/v1/queues/q-9/lease",
            json!({"visibility_ms": 5000}),
        )
        .await;
        let job = &leased["jobs"][0];
        assert_eq!(
            (&job["job_id"], &job["attempt"]),
            (&json!("j-1"), &json!(2)),
            "{leased}"
        );
        let ack = json!({"lease_token": job["lease_token"]});
        ok(app, Method::POST, "/v1/queues/q-9/jobs/j-1/ack", ack).await;
        let enqueued = ok(
            app,
            Method::POST,
            "/v1/queues/q-9/jobs",
            json!({"payload": 1}),
        )
        .await;
        assert!(enqueued["job_id"].is_string(), "{enqueued}");
    }

    /// A budget of limit 0 (nothing may be spent), which `PUT` takes, backs up and restores.
    async fn a_budget_of_zero_round_trips(app: &TestApp) {
        let zero = json!({"limit": 0, "period": "day"});
        ok(app, Method::PUT, "/v1/budgets/acct-0/tokens", zero).await;
        let file = backup(app).await;
        ok(
            app,
            Method::DELETE,
            "/v1/budgets/acct-0/tokens",
            json!(null),
        )
        .await;
        let report = restore(app, "", &file).await;
        assert_eq!(report.status, 200, "{}", report.body);
        let (_, budget) = app.get_json("/v1/budgets/acct-0/tokens").await;
        assert_eq!(budget["limit"], 0, "{budget}");
    }

    crate::on_each_backend!(app =>
        restore_takes_only_values_the_api_can_make,
        a_budget_of_zero_round_trips,
    );
}

crate::on_each_backend!(
    cleanup_removes_expired_index_entries,
    backup_flush_restore_backup,
    broken_files_change_nothing,
    modes_decide_what_a_held_item_becomes
);

/// A restore body over `limits.max_body_bytes` sent chunked (no Content-Length) is cut off
/// while read: 413 as a problem document, like one that declares its length. (The HTTP layer's
/// rule, the same on every backend. The limit is small here so that the whole request is in
/// the server's buffer when it answers: a connection closed with unread bytes is reset.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_restore_over_the_limit_is_a_problem() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut settings = settings(BackendMode::Memory, None);
    settings.limits.max_body_bytes = 4096;
    let app = spawn_app(settings).await;
    let address = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = b"POST /v1/admin/restore HTTP/1.1\r\nhost: x\r\n\
        content-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        .to_vec();
    for _ in 0..4 {
        request.extend(b"800\r\n");
        request.extend([b'x'; 0x800]);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    );
    read.await.expect("answered").unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_admin_scope_and_stay_in_their_tenant() {
    let key = |secret: &str, tenant: &str, scopes: Vec<Scope>| ApiKeySettings {
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes())),
        tenant: tenant.into(),
        scopes,
    };
    let mut s = settings(BackendMode::Memory, None);
    s.auth.keys = vec![
        key("writer-a", "a", vec![Scope::Read, Scope::Write]),
        key("admin-a", "a", vec![Scope::Admin]),
        key("admin-b", "b", vec![Scope::Admin]),
    ];
    let app = spawn_app(s).await;
    let as_key = |key: &str, method: Method, path: &str| app.request(method, path).bearer_auth(key);
    let put = app
        .send(
            as_key("writer-a", Method::PUT, "/v1/cache/ns/k")
                .header("content-type", "application/json")
                .body("1"),
        )
        .await;
    assert_eq!(put.status, 204);
    let denied = app
        .send(as_key("writer-a", Method::GET, "/v1/admin/backup"))
        .await;
    denied.assert_problem(403, "forbidden");
    let file_a = app
        .send(as_key("admin-a", Method::GET, "/v1/admin/backup"))
        .await;
    assert_eq!(file_a.status, 200);
    assert_eq!(records(&file_a.bytes).len(), 1);
    let file_b = app
        .send(as_key("admin-b", Method::GET, "/v1/admin/backup"))
        .await;
    assert!(
        records(&file_b.bytes).is_empty(),
        "tenant b sees none of a's items"
    );
    let foreign = app
        .send(as_key("admin-b", Method::POST, "/v1/admin/restore").body(file_a.bytes.to_vec()))
        .await;
    foreign.assert_problem(422, "validation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_backs_up_and_restores_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    fill(&app).await;
    let port = redis.port.to_string();
    let command = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("STATEKEEPER__REDIS__PORT", &port)
            .env("STATEKEEPER__BACKEND__MODE", "redis")
            .env_remove("REDIS_URL")
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        c
    };
    let out = command(&["backup"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = out.stdout;
    assert_same(&file, &backup(&app).await);
    let only = command(&["backup", "--capability", "sessions"])
        .output()
        .unwrap();
    assert_eq!(records(&only.stdout).len(), 8);

    redis::cmd("FLUSHALL")
        .query::<()>(&mut redis.connection())
        .unwrap();
    let restore_with = |args: &[&str], input: &[u8]| {
        let mut child = command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let mut cut = file.clone();
    cut.truncate(file.len() - 20);
    let refused = restore_with(&["restore"], &cut);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("truncated"));
    assert!(records(&backup(&app).await).is_empty(), "nothing written");

    let out = restore_with(&["restore", "--mode", "merge"], &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["written"], 40, "{report}");
    assert_same(&file, &backup(&app).await);
    let out = restore_with(&["restore"], &file);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["written"].clone(), report["unchanged"].clone()),
        (json!(0), json!(40))
    );

    let out = command(&["cleanup"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["tenant"], "default");
    assert_eq!(line["cleaned"]["session_index_entries"], 0, "{line}");
}
