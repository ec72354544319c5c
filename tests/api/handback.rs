//! Hand-back: what one instance in `auto` mode acknowledged from memory while Redis was down is
//! in Redis after it returns: writes readable, deletes held, confirmed tokens still confirmed,
//! and a later write made in Redis meanwhile kept.
//!
//! The instance reaches Redis as an ACL user that the restarted Redis does not know at first:
//! it stays degraded while the test writes the conflicting items through a second instance,
//! and hands back once the test creates the user. Without that gate the conflict would race
//! the probe.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::config::BackendMode;

use crate::common::{RedisServer, TestApp, settings, spawn_app, strings};

const USER: &str = "sk-handback";
const PASSWORD: &str = "handback-secret";

fn acl_user() -> String {
    format!("{USER} on >{PASSWORD} ~* &* +@all")
}

fn is_on_redis(h: &Value) -> bool {
    h["backend"]["active"] == "redis"
}

fn is_degraded(h: &Value) -> bool {
    h["backend"]["active"] == "memory"
}

async fn json_ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    app.ok(method, path, body).await
}

/// One run of the scenario; `persist` restarts Redis with its old data (append-only file),
/// else empty.
async fn hand_back_after_a_restart(persist: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut base: Vec<String> = Vec::new();
    if persist {
        base.extend(
            [
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                dir.path().to_str().unwrap(),
            ]
            .map(String::from),
        );
    }
    let mut with_user = base.clone();
    with_user.push("--user".to_string());
    with_user.extend(acl_user().split(' ').map(String::from));
    let Some(mut redis) = RedisServer::start_with(with_user) else {
        return;
    };
    let mut s = settings(BackendMode::Auto, Some(&redis));
    s.redis.url = Some(format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/0", redis.port).into());
    let a = spawn_app(s).await;
    // The second instance reads and writes Redis only, as the default user.
    let b = spawn_app(settings(BackendMode::Redis, Some(&redis))).await;
    a.wait_for_health(Duration::from_secs(5), is_on_redis).await;

    // Before the outage, in Redis: keys that will be deleted and overwritten while degraded.
    for i in 0..20 {
        assert_eq!(
            a.put_cache(&format!("old-{i}"), "\"old\"").await.status,
            204
        );
    }
    assert_eq!(a.put_cache("k-50", "\"old\"").await.status, 204);
    let body = json!({"user_id": "leaver"});
    let old_session = json_ok(&a, Method::POST, "/v1/sessions", body).await;
    let old_session = old_session["session_id"].as_str().unwrap().to_string();

    redis.kill();
    a.wait_for_health(Duration::from_secs(5), is_degraded).await;

    // While degraded, from memory.
    let mut sessions = Vec::new();
    for i in 0..200 {
        let body = json!({"user_id": format!("user-{}", i % 20), "data": {"n": i}});
        let created = json_ok(&a, Method::POST, "/v1/sessions", body).await;
        let id = created["session_id"].as_str().unwrap().to_string();
        sessions.push((id, i, created["expires_at"].clone()));
    }
    for t in 0..50 {
        let body = json!({"thread_id": format!("th-{t}"), "context": {"by": "a"},
                          "messages": [{"role": "human", "content": format!("first {t}")}]});
        json_ok(&a, Method::POST, "/v1/agent-states", body).await;
        let path = format!("/v1/agent-states/th-{t}/messages");
        let body = json!({"messages": [{"role": "ai", "content": format!("second {t}")}]});
        json_ok(&a, Method::POST, &path, body).await;
    }
    let conflict_body = json!({"thread_id": "th-conflict", "context": {"by": "a"},
                               "messages": [{"role": "human", "content": "from a"}]});
    json_ok(&a, Method::POST, "/v1/agent-states", conflict_body).await;
    for i in 0..100 {
        let put = a
            .put_cache(&format!("k-{i}"), &format!("{{\"n\":{i}}}"))
            .await;
        assert_eq!(put.status, 204);
    }
    for i in 0..20 {
        assert!([204, 404].contains(&a.delete(&format!("/v1/cache/ns/k-{i}")).await.status));
        // Keys only Redis holds: memory says 404, and the delete still holds after recovery.
        assert!([204, 404].contains(&a.delete(&format!("/v1/cache/ns/old-{i}")).await.status));
    }
    let put = a
        .put_raw("/v1/cache/ns/short?ttl_seconds=120", "\"lives 120 s\"")
        .await;
    assert_eq!(put.status, 204);
    // "Sign out everywhere" for a user whose sessions only Redis holds.
    let signed_out = a.delete("/v1/users/leaver/sessions").await;
    assert!(
        [200, 204].contains(&signed_out.status),
        "{}",
        signed_out.body
    );
    let mut tokens = Vec::new();
    for i in 0..30 {
        let body = json!({"intent_name": "deploy", "entities": {"n": i}});
        let created = json_ok(&a, Method::POST, "/v1/pending-actions", body).await;
        let token = created["token"].as_str().unwrap().to_string();
        let path = format!("/v1/pending-actions/{token}/confirm");
        json_ok(&a, Method::POST, &path, json!({})).await;
        tokens.push(token);
    }

    // Redis returns, without the user the first instance signs in as.
    redis.restart_with(base.clone());
    b.wait_for_health(Duration::from_secs(5), is_on_redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        is_degraded(&a.get_json("/health").await.1),
        "the first instance cannot sign in yet"
    );
    // Meanwhile the second instance writes the same thread in Redis, later than memory did.
    let newer = json!({"thread_id": "th-conflict", "context": {"by": "b"},
                       "messages": [{"role": "human", "content": "from b"}]});
    json_ok(&b, Method::POST, "/v1/agent-states", newer).await;
    // ... and signs the user in again, after the sign-out: that session stays.
    let body = json!({"user_id": "leaver"});
    let new_session = json_ok(&b, Method::POST, "/v1/sessions", body).await;
    let new_session = new_session["session_id"].as_str().unwrap().to_string();

    let mut conn = redis.connection();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(acl_user().split(' ').collect::<Vec<_>>())
        .query::<()>(&mut conn)
        .unwrap();
    a.wait_for_health(Duration::from_secs(10), is_on_redis)
        .await;

    // Everything is read through the second instance: from Redis alone.
    for (id, i, expires_at) in &sessions {
        let (status, body) = b.get_json(&format!("/v1/sessions/{id}")).await;
        assert_eq!(status, 200, "session {id}: {body}");
        assert_eq!(body["data"]["n"], *i);
        assert_eq!(&body["expires_at"], expires_at, "the expiry carries over");
    }
    let (_, listed) = b.get_json("/v1/users/user-3/sessions").await;
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(10),
        "{listed}"
    );
    for t in 0..50 {
        let (status, body) = b.get_json(&format!("/v1/agent-states/th-{t}")).await;
        assert_eq!(status, 200, "thread {t}: {body}");
        let contents: Vec<&str> = strings(&body["messages"], "content");
        assert_eq!(contents, [format!("first {t}"), format!("second {t}")]);
    }
    for i in 0..100 {
        let (status, body) = b.get_json(&format!("/v1/cache/ns/k-{i}")).await;
        if i < 20 {
            assert_eq!(status, 404, "k-{i} was deleted while degraded");
        } else {
            assert_eq!((status, body), (200, json!({"n": i})), "k-{i}");
        }
    }
    for i in 0..20 {
        assert_eq!(
            b.status(&format!("/v1/cache/ns/old-{i}")).await,
            404,
            "old-{i}"
        );
    }
    // Remaining lifetimes carry over: 120 s less the time since the write.
    let ttl = b.get("/v1/cache/ns/short/ttl").await.body;
    let left = ttl["ttl_seconds"].as_u64().unwrap();
    assert!((100..=120).contains(&left), "{ttl}");
    for token in &tokens {
        let (_, body) = b.get_json(&format!("/v1/pending-actions/{token}")).await;
        assert_eq!(body["status"], "confirmed", "{body}");
        let again = b
            .send(b.request(
                Method::POST,
                &format!("/v1/pending-actions/{token}/confirm"),
            ))
            .await;
        again.assert_problem(409, "already_confirmed");
    }
    if persist {
        let old = b.status(&format!("/v1/sessions/{old_session}")).await;
        assert_eq!(old, 404, "signed out while degraded");
    }
    let new = b.status(&format!("/v1/sessions/{new_session}")).await;
    assert_eq!(new, 200, "signed in after the sign-out");
    // The later write in Redis kept its context; memory's message follows Redis's.
    let (_, thread) = b.get_json("/v1/agent-states/th-conflict").await;
    assert_eq!(thread["context"], json!({"by": "b"}), "{thread}");
    let contents: Vec<&str> = strings(&thread["messages"], "content");
    assert_eq!(contents, ["from b", "from a"]);

    let metrics = a.get("/metrics").await.text();
    let conflicts = metrics
        .lines()
        .find(|l| l.starts_with("statekeeper_backend_handback_items_total{outcome=\"conflict\"}"))
        .unwrap_or_default()
        .to_string();
    // The thread, and the session signed in after the sign-out.
    assert!(conflicts.ends_with(" 2"), "{conflicts}");
    // Memory was emptied after the hand-back, so nothing it held is served again.
    assert_eq!(
        a.get_json("/health").await.1["backend"]["memory"]["used_bytes"],
        json!(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_back_to_an_empty_redis() {
    hand_back_after_a_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_back_to_a_redis_with_its_old_data() {
    hand_back_after_a_restart(true).await;
}
