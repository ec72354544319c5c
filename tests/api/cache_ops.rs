//! The cache's counters, compare-and-set, batches and listing over HTTP, on memory and Redis.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::config::Settings;

fn limited(settings: &mut Settings) {
    settings.cache.max_batch_keys = 3;
    settings.cache.max_value_bytes = 64;
    settings.limits.max_ttl_seconds = 1000;
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let reply = app.post(path, body).await;
    if (400..500).contains(&reply.status) {
        assert!(reply.is_problem(), "{}: {}", reply.status, reply.body);
    }
    (reply.status, reply.body)
}

async fn raw_get(app: &TestApp, path: &str) -> (u16, String) {
    let reply = app.get(path).await;
    (reply.status, reply.text())
}

/// The seeds' `get_and_set` and "retrieve and delete": exact bytes back, one taker.
async fn swaps_and_takes(app: &TestApp) {
    let (status, body) = post(
        app,
        "/v1/cache/c/job/get-and-set",
        json!({"value": {"step": 1}}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"previous": null})));
    let body = br#"{"value": [2], "ttl_seconds": 100}"#;
    let response = app
        .call_raw(Method::POST, "/v1/cache/c/job/get-and-set", body)
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"{"previous":{"step":1}}"#);
    let (status, ttl) = raw_get(app, "/v1/cache/c/job/ttl").await;
    assert_eq!((status, ttl), (200, r#"{"ttl_seconds":100}"#.to_string()));
    let taken = app
        .send(app.request(Method::POST, "/v1/cache/c/job/get-and-delete"))
        .await;
    assert_eq!((taken.status, taken.text()), (200, "[2]".to_string()));
    app.post("/v1/cache/c/job/get-and-delete", Value::Null)
        .await
        .assert_problem(404, "not_found");
    let (status, _) = raw_get(app, "/v1/cache/c/job").await;
    assert_eq!(status, 404);
    app.post(
        "/v1/cache/c/job/get-and-set",
        json!({"value": 1, "extra": 2}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

async fn counters(app: &TestApp) {
    let (status, body) = post(
        app,
        "/v1/cache/c/hits/incr",
        json!({"by": 2, "ttl_seconds": 50}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"value": 2})));
    let (_, body) = post(app, "/v1/cache/c/hits/incr", json!({"by": 0.5})).await;
    assert_eq!(body, json!({"value": 2.5}));
    let (_, ttl) = app.get_json("/v1/cache/c/hits/ttl").await;
    assert!(
        ttl["ttl_seconds"].as_u64().unwrap() <= 50,
        "TTL set at creation stays: {ttl}"
    );
    app.put_raw("/v1/cache/c/name", "\"ada\"").await;
    app.post("/v1/cache/c/name/incr", json!({"by": 1}))
        .await
        .assert_problem(409, "not_a_number");
    assert_eq!(raw_get(app, "/v1/cache/c/name").await.1, "\"ada\"");
    for bad in [
        json!({}),
        json!({"by": "1"}),
        json!({"by": 1, "ttl_seconds": 0}),
        json!({"by": 1, "ttl_seconds": 1001}),
        json!({"by": 1, "extra": true}),
    ] {
        let (status, problem) = post(app, "/v1/cache/c/fresh/incr", bad.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("validation_failed")),
            "{bad}"
        );
    }
    assert_eq!(
        raw_get(app, "/v1/cache/c/fresh").await.0,
        404,
        "refused increments create nothing"
    );
}

async fn compare_and_swap(app: &TestApp) {
    let path = "/v1/cache/c/doc/cas";
    let (status, body) = post(
        app,
        path,
        json!({"expected": null, "value": {"b": 1, "a": [1, 2]}}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"swapped": true})));
    let (status, body) = post(app, path, json!({"expected": null, "value": 1})).await;
    assert_eq!(status, 409);
    assert_eq!(body["swapped"], false);
    assert_eq!(body["code"], "conflict");
    assert_eq!(body["current"], json!({"b": 1, "a": [1, 2]}));
    let spelled_differently = r#"{"expected": {"a": [1.0, 2e0], "b": 1}, "value": "done"}"#;
    let response = app
        .call_raw(Method::POST, path, spelled_differently.as_bytes())
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(raw_get(app, "/v1/cache/c/doc").await.1, "\"done\"");
    for bad in [
        json!({"value": 1}),
        json!({"expected": 1}),
        json!({"expected": 1, "value": 1, "ttl_seconds": -1}),
    ] {
        let (status, _) = post(app, path, bad.clone()).await;
        assert_eq!(status, 422, "{bad}");
    }
    app.post(path, json!({"expected": "done", "value": "x".repeat(100)}))
        .await
        .assert_problem(413, "payload_too_large");
    assert_eq!(raw_get(app, "/v1/cache/c/doc").await.1, "\"done\"");
}

async fn batches(app: &TestApp) {
    let (status, _) = post(
        app,
        "/v1/cache/b/_mset",
        json!({"entries": {"x": {"n": 1}, "y": [true]}, "ttl_seconds": 40}),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = post(
        app,
        "/v1/cache/b/_mget",
        json!({"keys": ["y", "nope", "x"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"values": {"y": [true], "nope": null, "x": {"n": 1}}})
    );
    let (_, ttl) = app.get_json("/v1/cache/b/x/ttl").await;
    assert!(ttl["ttl_seconds"].as_u64().unwrap() <= 40);

    // Over max_batch_keys:
    let over = json!({"keys": ["a", "b", "c", "d"]});
    app.post("/v1/cache/b/_mget", over)
        .await
        .assert_problem(422, "validation_failed");
    let too_many = json!({"entries": {"a": 1, "b": 2, "c": 3, "d": 4}});
    assert_eq!(post(app, "/v1/cache/b/_mset", too_many).await.0, 422);
    app.post(
        "/v1/cache/b/_mset",
        json!({"entries": {"ok": 1, "_bad": 2}}),
    )
    .await
    .assert_problem(400, "invalid_id");
    let big = json!({"entries": {"ok": 1, "big": "x".repeat(100)}});
    assert_eq!(post(app, "/v1/cache/b/_mset", big).await.0, 413);
    assert_eq!(
        raw_get(app, "/v1/cache/b/ok").await.0,
        404,
        "a refused batch writes nothing"
    );
    assert_eq!(
        post(app, "/v1/cache/b/_mget", json!({"keys": ["a b"]}))
            .await
            .0,
        400
    );
}

async fn listing(app: &TestApp) {
    let entries = json!({"entries": {"user:1": 1, "user:2": 2, "team:1": 3}});
    assert_eq!(post(app, "/v1/cache/l/_mset", entries.clone()).await.0, 204);
    assert_eq!(post(app, "/v1/cache/l2/_mset", entries).await.0, 204);
    let mut keys = app.listed("/v1/cache/l?match=user:*&limit=1", "keys").await;
    keys.sort();
    keys.dedup();
    assert_eq!(keys, ["user:1", "user:2"]);
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?cursor=%21%21",
        "?match=",
        "?other=1",
    ] {
        let (status, problem) = app.get_json(&format!("/v1/cache/l{bad}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
    let response = app.delete("/v1/cache/l?match=user:*").await;
    assert_eq!(response.body, json!({"deleted": 2}));
    let (_, page) = app.get_json("/v1/cache/l").await;
    assert_eq!(page["keys"], json!(["team:1"]));
    let (_, page) = app.get_json("/v1/cache/l2?limit=10").await;
    assert_eq!(
        page["keys"].as_array().unwrap().len(),
        3,
        "the other namespace is untouched"
    );
}

/// What the OpenAPI document allows, the service accepts (found by schemathesis): a cursor of
/// either backend, and a whole-number TTL spelled as a float.
async fn cursors_and_ttls_the_schema_allows(app: &TestApp) {
    let entries = json!({"entries": {"user:1": 1, "user:2": 2, "team:1": 3}});
    assert_eq!(post(app, "/v1/cache/c/_mset", entries).await.0, 204);
    let (_, health) = app.get_json("/health").await;
    let foreign = match health["backend"]["active"].as_str() {
        Some("memory") => "r.5",
        _ => "m.user:1",
    };
    let (status, page) = app
        .get_json(&format!("/v1/cache/c?limit=1000&cursor={foreign}"))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut keys: Vec<&str> = page["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["team:1", "user:1", "user:2"],
        "a foreign cursor starts over"
    );
    let (status, _) = app
        .get_json("/v1/cache/c?cursor=r.12345678901234567890")
        .await;
    assert_eq!(status, 400);

    let response = app
        .call(
            Method::PUT,
            "/v1/cache/c/user:1/ttl",
            Some(json!({"ttl_seconds": 600.0})),
        )
        .await;
    assert_eq!(response.status, 204);
    let (_, ttl) = app.get_json("/v1/cache/c/user:1/ttl").await;
    let seconds = ttl["ttl_seconds"].as_u64().unwrap();
    assert!((590..=600).contains(&seconds), "{ttl}");
    let (status, _) = post(
        app,
        "/v1/cache/c/n/incr",
        json!({"by": 1, "ttl_seconds": 6e1}),
    )
    .await;
    assert_eq!(status, 200);
    app.post("/v1/cache/c/n/incr", json!({"by": 1, "ttl_seconds": 1.5}))
        .await
        .assert_problem(422, "validation_failed");
}

crate::on_each_backend!(app with limited =>
    swaps_and_takes,
    counters,
    compare_and_swap,
    batches,
    listing,
    cursors_and_ttls_the_schema_allows
);

/// Two instances sharing one Redis: of callers racing to take one value through either
/// instance, exactly one gets it; racing swaps through both lose no value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn takes_and_swaps_race_across_two_instances_on_one_redis() {
    let mode = statekeeper::config::BackendMode::Redis;
    let Some(backend) = crate::common::Backend::on_redis(mode) else {
        return;
    };
    // The deadline of `racing_settings`, for the same reason.
    let racing = |s: &mut statekeeper::config::Settings| s.redis.command_timeout_ms = 5_000;
    let apps = std::sync::Arc::new([backend.app(racing).await, backend.app(racing).await]);
    for round in 0..5 {
        let path = format!("/v1/cache/race/result-{round}");
        let stored = apps[0]
            .call_raw(reqwest::Method::PUT, &path, b"\"done\"")
            .await;
        assert_eq!(stored.status, 204);
        let takers = crate::common::race(24, |i| {
            let (apps, path) = (apps.clone(), path.clone());
            async move {
                let app = &apps[i % 2];
                app.call(
                    reqwest::Method::POST,
                    &format!("{path}/get-and-delete"),
                    None,
                )
                .await
                .status
            }
        })
        .await;
        assert_eq!(
            takers.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {takers:?}"
        );
        assert!(takers.iter().all(|s| *s == 200 || *s == 404), "{takers:?}");
    }
    let swaps = crate::common::race(24, |i| {
        let apps = apps.clone();
        async move {
            let app = &apps[i % 2];
            let reply = app
                .call(
                    reqwest::Method::POST,
                    "/v1/cache/race/swap/get-and-set",
                    Some(json!({"value": i})),
                )
                .await;
            assert_eq!(reply.status, 200);
            reply.body["previous"].as_u64()
        }
    })
    .await;
    let last = apps[1]
        .call(reqwest::Method::GET, "/v1/cache/race/swap", None)
        .await;
    let mut seen: Vec<u64> = swaps.into_iter().flatten().collect();
    seen.push(last.body.as_u64().unwrap());
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..24).collect::<Vec<u64>>(),
        "every value replaced once or last"
    );
}
