//! `/v1/agent-states` over HTTP, on the memory backend and on a private Redis.

use std::collections::BTreeSet;

use crate::common::{Backend, TestApp, strings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use statekeeper::config::BackendMode;

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    send_with(app, method, path, body, &[]).await
}

async fn send_with(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let reply = app.call_with(method, path, body, headers).await;
    if reply.status >= 400 {
        assert!(reply.is_problem(), "{} is a problem document", reply.status);
    }
    (StatusCode::from_u16(reply.status).unwrap(), reply.body)
}

fn human(text: &str) -> Value {
    json!({"role": "human", "content": text})
}

async fn lifecycle_create_get_put_delete(backend: Backend) {
    let app = backend.app(|_| {}).await;
    let body = json!({"thread_id": "th-1", "messages": [human("hi"), {"type": "ai", "content": "hello"}],
                      "context": {"repo": "a/b"}, "metadata": {"agent": "x"}});
    let response = app.post("/v1/agent-states", body.clone()).await;
    assert_eq!((response.status, response.header("etag")), (201, "\"1\""));
    let created = response.body;
    assert_eq!(created["thread_id"], "th-1");
    assert_eq!(
        (
            created["version"].as_u64(),
            created["message_count"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(
        created["messages"][1]["role"], "ai",
        "type is an alias of role"
    );
    assert_eq!(created["is_relevant"], true);
    assert!(created["messages"][0]["created_at"].is_string());

    let (status, problem) = send(&app, Method::POST, "/v1/agent-states", Some(body.clone())).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );

    let (status, made) = send(&app, Method::POST, "/v1/agent-states", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        made["thread_id"].as_str().unwrap().len(),
        36,
        "a UUID when no id is given"
    );

    let response = app.get("/v1/agent-states/th-1").await;
    assert_eq!(response.header("etag"), "\"1\"");
    assert_eq!(response.body, created);
    let (_, last) = send(
        &app,
        Method::GET,
        "/v1/agent-states/th-1?last_messages=1",
        None,
    )
    .await;
    assert_eq!(last["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            last["messages"][0]["content"].as_str(),
            last["message_count"].as_u64()
        ),
        (Some("hello"), Some(2))
    );
    let (status, _) = send(
        &app,
        Method::GET,
        "/v1/agent-states/th-1?last_messages=-1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(app.head("/v1/agent-states/th-1").await.status, 200);
    assert_eq!(app.head("/v1/agent-states/none").await.status, 404);

    let replacement = json!({"messages": [human("again")], "ttl_seconds": 60});
    let (status, replaced) = send_with(
        &app,
        Method::PUT,
        "/v1/agent-states/th-1",
        Some(replacement.clone()),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            replaced["version"].as_u64(),
            replaced["message_count"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(replaced["created_at"], created["created_at"]);
    assert_eq!(replaced["context"], json!({}), "a replace is whole");
    let (status, problem) = send_with(
        &app,
        Method::PUT,
        "/v1/agent-states/th-1",
        Some(json!({"messages": []})),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("precondition_failed"))
    );
    let (_, now) = send(&app, Method::GET, "/v1/agent-states/th-1", None).await;
    assert_eq!(now, replaced, "a stale If-Match writes nothing");
    for malformed in [
        "",
        "\"1\", \"2\"",
        "W/2",
        "\"2",
        "-2",
        "1.0",
        "\"*\"",
        "20000000000000000000",
    ] {
        let (status, problem) = send_with(
            &app,
            Method::PUT,
            "/v1/agent-states/th-1",
            Some(json!({"messages": []})),
            &[("if-match", malformed)],
        )
        .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "If-Match: {malformed:?}"
        );
    }
    let (_, now) = send(&app, Method::GET, "/v1/agent-states/th-1", None).await;
    assert_eq!(now, replaced, "a malformed If-Match writes nothing");

    let (status, _) = send_with(
        &app,
        Method::PUT,
        "/v1/agent-states/th-2",
        Some(json!({})),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, put_new) = send(
        &app,
        Method::PUT,
        "/v1/agent-states/th-2",
        Some(json!({"is_relevant": false})),
    )
    .await;
    assert_eq!(
        (status, put_new["version"].as_u64()),
        (StatusCode::CREATED, Some(1))
    );
    assert_eq!(put_new["is_relevant"], false);

    let (status, _) = send(&app, Method::DELETE, "/v1/agent-states/th-1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = send(&app, Method::DELETE, "/v1/agent-states/th-1", None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = send(&app, Method::GET, "/v1/agent-states/th-1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = send(&app, Method::GET, "/v1/agent-states/bad%20id", None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_id"))
    );
}

async fn messages_are_validated_and_bad_input_changes_nothing(backend: Backend) {
    let app = backend
        .app(|settings| {
            settings.agent_states.max_messages_per_append = 3;
            settings.limits.max_body_bytes = 4096;
        })
        .await;
    let (status, _) = send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "th", "messages": [human("a")]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let good = json!({"messages": [
        {"type": "ai", "content": [{"type": "text", "text": "calling"}], "id": "m2",
         "tool_calls": [{"name": "search", "args": {"q": "x"}, "id": "c1", "type": "tool_call"}],
         "additional_kwargs": {"model": "m"}},
        {"role": "tool", "content": "result", "tool_call_id": "c1", "name": "search"},
    ]});
    let response = app.post("/v1/agent-states/th/messages", good.clone()).await;
    assert_eq!((response.status, response.header("etag")), (200, "\"2\""));
    assert_eq!(response.body, json!({"message_count": 3, "version": 2}));
    let (_, state) = send(&app, Method::GET, "/v1/agent-states/th", None).await;
    assert_eq!(
        state["messages"][1]["tool_calls"][0]["args"],
        json!({"q": "x"})
    );
    assert_eq!(state["messages"][1]["content"][0]["text"], "calling");
    assert_eq!(state["messages"][2]["tool_call_id"], "c1");

    let refused = [
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"messages": [{"role": "human"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"messages": [{"role": "human", "content": 5}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"messages": [{"role": "human", "content": [{"text": "untyped"}]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"messages": [{"role": "human", "content": "x", "colour": "red"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"messages": [{"role": "tool", "content": "no call id"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"messages": [human("ok"), {"role": "robot", "content": "x"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"messages": [human("ok")], "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"messages": [human("1"), human("2"), human("3"), human("4")]}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            json!({"messages": [human(&"x".repeat(5000))]}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, expected) in refused {
        let (status, problem) = send(
            &app,
            Method::POST,
            "/v1/agent-states/th/messages",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body}: {problem}");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    let (status, problem) = send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "new", "messages": [{"role": "x", "content": "y"}]})),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed"))
    );
    assert_eq!(
        send(&app, Method::GET, "/v1/agent-states/new", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let path = "/v1/agent-states/th/messages";
    let truncated = app.call_raw(Method::POST, path, b"{\"messages\": [").await;
    truncated.assert_problem(400, "invalid_request");
    let body = good.to_string();
    let untyped = app
        .call_typed(Method::POST, path, None, body.as_bytes())
        .await;
    untyped.assert_problem(415, "unsupported_media_type");

    let (_, after) = send(&app, Method::GET, "/v1/agent-states/th", None).await;
    assert_eq!(
        (after["message_count"].as_u64(), after["version"].as_u64()),
        (Some(3), Some(2)),
        "nothing refused was written"
    );

    let (status, _) = send(
        &app,
        Method::POST,
        "/v1/agent-states/none/messages",
        Some(json!({"messages": [human("x")]})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&app, Method::GET, "/v1/agent-states/none", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

async fn concurrent_appends_over_http_lose_nothing(backend: Backend) {
    let app = std::sync::Arc::new(backend.app(|_| {}).await);
    send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "th"})),
    )
    .await;
    let results = crate::common::race(24, |i| {
        let app = app.clone();
        async move {
            let body = json!({"messages": [human(&format!("m{i}"))]});
            send(
                &app,
                Method::POST,
                "/v1/agent-states/th/messages",
                Some(body),
            )
            .await
        }
    })
    .await;
    let versions: BTreeSet<u64> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["version"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(versions, (2..=25).collect());
    let (_, state) = send(&app, Method::GET, "/v1/agent-states/th", None).await;
    assert_eq!(
        (state["message_count"].as_u64(), state["version"].as_u64()),
        (Some(24), Some(25))
    );
    let texts: BTreeSet<&str> = strings(&state["messages"], "content").into_iter().collect();
    assert_eq!(texts.len(), 24);
}

async fn context_patch_and_relevance(backend: Backend) {
    let app = backend.app(|_| {}).await;
    send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "th", "context": {"a": 1, "b": {"c": 2, "d": 3}}})),
    )
    .await;
    let patch = json!({"a": null, "b": {"d": null, "e": [1]}, "f": "g"});
    let request = app
        .request(Method::PATCH, "/v1/agent-states/th/context")
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string());
    let response = app.send(request).await;
    assert_eq!((response.status, response.header("etag")), (200, "\"2\""));
    let state = response.body;
    assert_eq!(state["context"], json!({"b": {"c": 2, "e": [1]}, "f": "g"}));
    assert_eq!(state["version"], 2);

    let (status, _) = send(
        &app,
        Method::PATCH,
        "/v1/agent-states/th/context",
        Some(json!([1])),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = send_with(
        &app,
        Method::PATCH,
        "/v1/agent-states/th/context",
        Some(json!({"x": 1})),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, _) = send(
        &app,
        Method::PATCH,
        "/v1/agent-states/none/context",
        Some(json!({"x": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = send(
        &app,
        Method::PUT,
        "/v1/agent-states/th/relevance",
        Some(json!({"is_relevant": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"thread_id": "th", "is_relevant": false, "version": 3})
    );
    let (status, _) = send(
        &app,
        Method::PUT,
        "/v1/agent-states/th/relevance",
        Some(json!({"is_relevant": "no"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, state) = send(&app, Method::GET, "/v1/agent-states/th", None).await;
    assert_eq!(
        (state["is_relevant"].as_bool(), state["version"].as_u64()),
        (Some(false), Some(3))
    );
    assert_eq!(state["context"], json!({"b": {"c": 2, "e": [1]}, "f": "g"}));
}

async fn listing_recent_and_static_routes(backend: Backend) {
    let redis = backend.redis.as_ref();
    let app = backend.app(|_| {}).await;
    let mut expected = BTreeSet::new();
    for i in 0..12 {
        let id = format!("t{i:02}");
        send(
            &app,
            Method::POST,
            "/v1/agent-states",
            Some(json!({"thread_id": id})),
        )
        .await;
        expected.insert(id);
    }
    let seen = app.listed("/v1/agent-states?limit=5", "thread_ids").await;
    assert_eq!(seen.len(), 12, "each id once: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
    for bad in [
        "/v1/agent-states?limit=0",
        "/v1/agent-states?limit=5000",
        "/v1/agent-states?cursor=%25%25",
        "/v1/agent-states?limit=x",
    ] {
        let (status, problem) = send(&app, Method::GET, bad, None).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}"
        );
    }

    send(
        &app,
        Method::POST,
        "/v1/agent-states/t03/messages",
        Some(json!({"messages": [human("x")]})),
    )
    .await;
    send(&app, Method::DELETE, "/v1/agent-states/t11", None).await;
    let (status, recent) = send(&app, Method::GET, "/v1/agent-states/recent?limit=3", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "recent is not taken for a thread id"
    );
    let states = recent["states"].as_array().unwrap();
    assert_eq!(states.len(), 3);
    assert_eq!(states[0]["thread_id"], "t03");
    assert_eq!(states[0]["message_count"], 1);
    assert_eq!(states[1]["thread_id"], "t10", "t11 was deleted");
    let (_, recent) = send(&app, Method::GET, "/v1/agent-states/recent", None).await;
    assert_eq!(
        recent["states"].as_array().unwrap().len(),
        10,
        "default limit"
    );

    if let Some(redis) = redis {
        // A state hash removed behind the service's back (evicted, deleted by hand) is never
        // listed again, and its index entries are dropped when met.
        let mut conn = redis.connection();
        let _: u64 = ::redis::cmd("DEL")
            .arg(state_key("t03"))
            .arg(state_key("t05"))
            .query(&mut conn)
            .unwrap();
        let (_, recent) = send(&app, Method::GET, "/v1/agent-states/recent?limit=3", None).await;
        let listed: Vec<&str> = strings(&recent["states"], "thread_id");
        assert_eq!(listed, ["t10", "t09", "t08"]);
        let (_, page) = send(&app, Method::GET, "/v1/agent-states?limit=20", None).await;
        assert!(
            !page["thread_ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|id| id == "t03" || id == "t05")
        );
        for index in ["recent", "ids", "expiries"] {
            for id in ["t03", "t05"] {
                let (keys, tenant, thread) = thread_keys(id);
                let shard = keys.thread_shard(&thread);
                let [recent, ids, expiries] = keys.agent_state_indexes(&tenant, shard);
                let key = match index {
                    "recent" => recent,
                    "ids" => ids,
                    _ => expiries,
                };
                let score: Option<f64> = ::redis::cmd("ZSCORE")
                    .arg(key)
                    .arg(id)
                    .query(&mut conn)
                    .unwrap();
                assert_eq!(score, None, "{index} no longer holds {id}");
            }
        }
    }

    let (status, body) = send(&app, Method::POST, "/v1/agent-states/cleanup-expired", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 0})));
    for reserved in ["recent", "cleanup-expired"] {
        let (status, problem) = send(
            &app,
            Method::POST,
            "/v1/agent-states",
            Some(json!({"thread_id": reserved})),
        )
        .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_id"))
        );
    }
    let (status, _) = send(
        &app,
        Method::PUT,
        "/v1/agent-states/recent",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

async fn ttl_routes_and_expiry(backend: Backend) {
    let redis = backend.redis.as_ref();
    let app = backend.app(|_| {}).await;
    send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "default-ttl"})),
    )
    .await;
    let (_, ttl) = send(&app, Method::GET, "/v1/agent-states/default-ttl/ttl", None).await;
    assert!(
        (2_591_990..=2_592_000).contains(&ttl["ttl_seconds"].as_u64().unwrap()),
        "30 days: {ttl}"
    );

    send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "th", "ttl_seconds": 100, "messages": [human("a")]})),
    )
    .await;
    let (_, ttl) = send(&app, Method::GET, "/v1/agent-states/th/ttl", None).await;
    assert!((99..=100).contains(&ttl["ttl_seconds"].as_u64().unwrap()));
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/agent-states/th/extend-ttl",
        Some(json!({"ttl_seconds": 5000})),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"ttl_seconds": 5000}))
    );
    let (_, state) = send(&app, Method::GET, "/v1/agent-states/th", None).await;
    assert_eq!(
        state["version"], 1,
        "a TTL change is not a write of the state"
    );
    for bad in [
        json!({"ttl_seconds": 0}),
        json!({"ttl_seconds": 1.5}),
        json!({"ttl_seconds": 99_999_999}),
        json!({}),
    ] {
        let (status, _) = send(
            &app,
            Method::POST,
            "/v1/agent-states/th/extend-ttl",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let (status, _) = send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "x", "ttl_seconds": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        send(&app, Method::GET, "/v1/agent-states/none/ttl", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(
            &app,
            Method::POST,
            "/v1/agent-states/none/extend-ttl",
            Some(json!({"ttl_seconds": 5}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    if let Some(redis) = redis {
        // Both keys of a thread carry one TTL and the tenant's hash tag (one server: one shard).
        let mut conn = redis.connection();
        let (keys, tenant, th) = thread_keys("th");
        let state_key = &keys.agent_state(&tenant, &th);
        let messages_key = &keys.agent_state_messages(&tenant, &th);
        let state_ttl: i64 = redis::cmd("PTTL").arg(state_key).query(&mut conn).unwrap();
        let messages_ttl: i64 = redis::cmd("PTTL")
            .arg(messages_key)
            .query(&mut conn)
            .unwrap();
        assert!(
            state_ttl > 4_990_000 && (state_ttl - messages_ttl).abs() < 1000,
            "{state_ttl} {messages_ttl}"
        );
        let kind: String = redis::cmd("TYPE")
            .arg(messages_key)
            .query(&mut conn)
            .unwrap();
        assert_eq!(kind, "list", "messages are a list beside the record");
    }

    send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "short", "ttl_seconds": 1, "messages": [human("a")]})),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        send(&app, Method::GET, "/v1/agent-states/short", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, recent) = send(&app, Method::GET, "/v1/agent-states/recent", None).await;
    let listed: Vec<&str> = strings(&recent["states"], "thread_id");
    assert!(!listed.contains(&"short"), "{listed:?}");
    if let Some(redis) = redis {
        let mut conn = redis.connection();
        let left: Vec<String> = redis::cmd("KEYS").arg("*short*").query(&mut conn).unwrap();
        assert!(
            left.is_empty(),
            "every key of an expired thread is gone: {left:?}"
        );
        let (keys, tenant, short) = thread_keys("short");
        let shard = keys.thread_shard(&short);
        let indexed: Option<f64> = redis::cmd("ZSCORE")
            .arg(&keys.agent_state_indexes(&tenant, shard)[0])
            .arg("short")
            .query(&mut conn)
            .unwrap();
        assert_eq!(indexed, None, "the read dropped its index entry");
    }
}

crate::on_each_backend!(
    lifecycle_create_get_put_delete,
    messages_are_validated_and_bad_input_changes_nothing,
    concurrent_appends_over_http_lose_nothing,
    context_patch_and_relevance,
    listing_recent_and_static_routes,
    ttl_routes_and_expiry,
);

/// In `auto` mode with Redis unreachable, the failover store serves agent states from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_without_redis_serves_agent_states_from_memory() {
    let app = crate::common::spawn_app(crate::common::settings(BackendMode::Auto, None)).await;
    let (status, _) = send(
        &app,
        Method::POST,
        "/v1/agent-states",
        Some(json!({"thread_id": "th", "messages": [human("a")]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/agent-states/th/messages",
        Some(json!({"messages": [human("b")]})),
    )
    .await;
    assert_eq!(
        (status, body["message_count"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    let (_, recent) = send(&app, Method::GET, "/v1/agent-states/recent", None).await;
    assert_eq!(recent["states"][0]["thread_id"], "th");
}

/// The key names of a thread of the default tenant under the default prefix.
fn thread_keys(
    thread: &str,
) -> (
    statekeeper::store::redis::keys::Keys,
    statekeeper::domain::ids::Tenant,
    statekeeper::capabilities::agent_state::model::ThreadId,
) {
    (
        statekeeper::store::redis::keys::Keys::new("statekeeper"),
        statekeeper::domain::ids::Tenant::new("default"),
        statekeeper::capabilities::agent_state::model::ThreadId::parse(thread).unwrap(),
    )
}

fn state_key(thread: &str) -> String {
    let (keys, tenant, thread) = thread_keys(thread);
    keys.agent_state(&tenant, &thread)
}
