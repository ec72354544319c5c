//! The session routes over HTTP, on the memory backend and on Redis.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Reply, TestApp};

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> Reply {
    let if_match = if_match.map(|tag| ("if-match", tag));
    app.call_with(method, path, body, if_match.as_slice()).await
}

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Reply {
    app.call_typed(method, path, content_type, body.as_bytes())
        .await
}

async fn create(app: &TestApp, body: Value) -> Value {
    let reply = app.post("/v1/sessions", body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body
}

fn id_of(session: &Value) -> String {
    session["session_id"].as_str().unwrap().to_string()
}

fn time_of(session: &Value, field: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        session[field].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

async fn every_session_route(backend: Backend) {
    let app = backend.app(|_| {}).await;
    let created = app
        .post(
            "/v1/sessions",
            json!({
                "user_id": "user-1", "workspace_id": "ws-1",
                "data": {"theme": "dark", "flags": [1, 2]},
                "context": {"repo": "acme/app", "pr": 42}
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let s = &created.body;
    let id = id_of(s);
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(created.header("location"), format!("/v1/sessions/{id}"));
    assert_eq!(created.header("etag"), "\"1\"");
    assert_eq!(
        (
            s["user_id"].clone(),
            s["workspace_id"].clone(),
            s["version"].clone()
        ),
        (json!("user-1"), json!("ws-1"), json!(1))
    );
    let rules = time_of(s, "expires_at") - time_of(s, "created_at");
    assert_eq!(rules.whole_seconds(), 3600, "sessions.default_ttl_seconds");
    assert_eq!(s["created_at"], s["last_activity_at"]);

    let got = app.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!((got.status, &got.body), (200, s));
    assert_eq!(got.header("etag"), "\"1\"");

    // PATCH: merge patches, with and without If-Match, and the merge-patch media type.
    let path = format!("/v1/sessions/{id}");
    let patch = json!({"data": {"theme": null, "lang": "en"}, "context": {"pr": 43}});
    let stale = send(
        &app,
        Method::PATCH,
        &path,
        Some(patch.clone()),
        Some("\"9\""),
    )
    .await;
    stale.assert_problem(412, "precondition_failed");
    let patched = send(&app, Method::PATCH, &path, Some(patch), Some("\"1\"")).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["data"], json!({"flags": [1, 2], "lang": "en"}));
    assert_eq!(
        patched.body["context"],
        json!({"repo": "acme/app", "pr": 43})
    );
    assert_eq!(
        (patched.body["version"].clone(), patched.header("etag")),
        (json!(2), "\"2\"")
    );
    let merge_type = raw(
        &app,
        Method::PATCH,
        &path,
        Some("application/merge-patch+json"),
        r#"{"data":{"n":1}}"#,
    )
    .await;
    assert_eq!(
        (merge_type.status, merge_type.body["data"]["n"].clone()),
        (200, json!(1))
    );

    // The context routes.
    let ctx = format!("/v1/sessions/{id}/context");
    let got = app.get(&ctx).await;
    assert_eq!(
        (got.status, got.body.clone(), got.header("etag")),
        (200, json!({"repo": "acme/app", "pr": 43}), "\"3\"")
    );
    let put = send(
        &app,
        Method::PUT,
        &ctx,
        Some(json!({"repo": "acme/api", "pr": 7})),
        Some("\"3\""),
    )
    .await;
    assert_eq!(
        (put.status, put.body.clone(), put.header("etag")),
        (200, json!({"repo": "acme/api", "pr": 7}), "\"4\"")
    );
    send(&app, Method::PUT, &ctx, Some(json!({})), Some("\"3\""))
        .await
        .assert_problem(412, "precondition_failed");
    assert_eq!(
        app.get(&ctx).await.body,
        json!({"repo": "acme/api", "pr": 7})
    );
    let cleared = send(&app, Method::DELETE, &ctx, None, Some("\"4\"")).await;
    assert_eq!((cleared.status, cleared.header("etag")), (204, "\"5\""));
    app.get(&ctx).await.assert_problem(404, "not_found");
    let session = app.get(&path).await.body;
    assert_eq!(
        (session["context"].clone(), session["version"].clone()),
        (json!({}), json!(5)),
        "the session lives on, its context shown empty"
    );
    let again = send(&app, Method::PUT, &ctx, Some(json!({"pr": 8})), None).await;
    assert_eq!((again.status, again.body.clone()), (200, json!({"pr": 8})));
    let cleared = app.delete(&ctx).await;
    assert_eq!((cleared.status, cleared.header("etag")), (204, "\"7\""));
    let patched = send(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"context": {"pr": 9}})),
        None,
    )
    .await;
    assert_eq!(
        patched.body["context"],
        json!({"pr": 9}),
        "a patch starts from {{}}"
    );
    assert_eq!(app.get(&ctx).await.body, json!({"pr": 9}));
    let session = app.get(&path).await.body;
    assert_eq!(
        session["data"],
        json!({"flags": [1, 2], "lang": "en", "n": 1}),
        "context routes leave data alone"
    );

    // Extend: a new TTL from now, version unchanged.
    let extended = app
        .post(&format!("{path}/extend"), json!({"ttl_seconds": 7200}))
        .await;
    assert_eq!(extended.status, 200, "{}", extended.body);
    let left = time_of(&extended.body, "expires_at") - time::OffsetDateTime::now_utc();
    assert!((7190..=7200).contains(&left.whole_seconds()), "{left}");
    assert_eq!(extended.body["version"], json!(8));

    // Rotate: new id, same content; the old id is gone at once.
    let rotated = send(&app, Method::POST, &format!("{path}/rotate"), None, None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_id = id_of(&rotated.body);
    assert_ne!(new_id, id);
    for field in [
        "user_id",
        "workspace_id",
        "data",
        "context",
        "created_at",
        "expires_at",
        "version",
    ] {
        assert_eq!(rotated.body[field], extended.body[field], "{field}");
    }
    app.get(&path).await.assert_problem(404, "not_found");
    let new_path = format!("/v1/sessions/{new_id}");
    assert_eq!(app.get(&new_path).await.body["data"], extended.body["data"]);

    // Delete, then every route is 404.
    let deleted = app.delete(&new_path).await;
    assert_eq!(deleted.status, 204);
    app.delete(&new_path).await.assert_problem(404, "not_found");
    assert_all_routes_404(&app, &new_id).await;
    assert_all_routes_404(&app, &id).await;
}

/// Every route of a session that is not live answers 404, and none brings it back.
async fn assert_all_routes_404(app: &TestApp, id: &str) {
    let path = format!("/v1/sessions/{id}");
    let ctx = format!("{path}/context");
    let calls = [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"data": {"a": 1}}))),
        (Method::DELETE, path.clone(), None),
        (Method::GET, ctx.clone(), None),
        (Method::PUT, ctx.clone(), Some(json!({"a": 1}))),
        (Method::DELETE, ctx.clone(), None),
        (
            Method::POST,
            format!("{path}/extend"),
            Some(json!({"ttl_seconds": 1})),
        ),
        (Method::POST, format!("{path}/rotate"), None),
    ];
    for (method, p, body) in calls {
        send(app, method.clone(), &p, body, None)
            .await
            .assert_problem(404, "not_found");
    }
    app.get(&path).await.assert_problem(404, "not_found");
}

/// The session is gone from every route, and `user` has no session left.
async fn assert_gone(app: &TestApp, id: &str, user: &str, context: &str) {
    assert_all_routes_404(app, id).await;
    let listed = app.get(&format!("/v1/users/{user}/sessions")).await;
    let none = json!({"sessions": [], "next_cursor": null});
    assert_eq!(listed.body, none, "{context}");
}

async fn expired_sessions_are_gone_for_every_route(backend: Backend) {
    let app = backend.app(|_| {}).await;
    let s = create(&app, json!({"user_id": "u-exp", "ttl_seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_all_routes_404(&app, &id_of(&s)).await;
    let listed = app.get("/v1/users/u-exp/sessions").await;
    assert_eq!(listed.body, json!({"sessions": [], "next_cursor": null}));
}

/// Writes racing a logout: every write either lands before the delete or is a 404, and the
/// session never comes back.
async fn writes_racing_a_delete_never_resurrect(backend: Backend) {
    let app = std::sync::Arc::new(backend.app(|_| {}).await);
    for round in 0..5 {
        let id = id_of(&create(&app, json!({"user_id": "racer"})).await);
        let statuses = crate::common::race(12, |i| {
            let (app, id) = (app.clone(), id.clone());
            async move {
                let path = format!("/v1/sessions/{id}");
                let (method, path, body) = match i {
                    0 => (Method::DELETE, path, None),
                    i if i % 3 == 0 => (Method::PATCH, path, Some(json!({"context": {"i": i}}))),
                    i if i % 3 == 1 => (
                        Method::PUT,
                        format!("{path}/context"),
                        Some(json!({"i": i})),
                    ),
                    _ => (
                        Method::POST,
                        format!("{path}/extend"),
                        Some(json!({"ttl_seconds": 600})),
                    ),
                };
                send(&app, method, &path, body, None).await.status
            }
        })
        .await;
        assert_eq!(statuses[0], 204, "round {round}: {statuses:?}");
        assert!(
            statuses[1..].iter().all(|s| *s == 200 || *s == 404),
            "{statuses:?}"
        );
        assert_gone(&app, &id, "racer", &format!("round {round}")).await;
    }
}

/// Rotation racing a logout and a sign-out everywhere: whichever wins, the old id is dead and
/// no session of the user is left.
async fn rotate_racing_logout_leaves_nothing(backend: Backend) {
    let app = std::sync::Arc::new(backend.app(|_| {}).await);
    for round in 0..5 {
        let id = id_of(&create(&app, json!({"user_id": "rotator"})).await);
        let replies = crate::common::race(3, |i| {
            let (app, id) = (app.clone(), id.clone());
            async move {
                let (method, path) = match i {
                    0 => (Method::POST, format!("/v1/sessions/{id}/rotate")),
                    1 => (Method::DELETE, format!("/v1/sessions/{id}")),
                    _ => (Method::DELETE, "/v1/users/rotator/sessions".to_string()),
                };
                let reply = send(&app, method, &path, None, None).await;
                (reply.status, reply.body)
            }
        })
        .await;
        let rotated = replies[0].0 == 200;
        assert!(rotated || replies[0].0 == 404, "{replies:?}");
        assert!([204, 404].contains(&replies[1].0), "{replies:?}");
        let signed_out = replies[2].1["deleted"].as_u64().unwrap();
        let deletions = u64::from(replies[1].0 == 204) + signed_out;
        assert_eq!(
            deletions, 1,
            "round {round}: exactly one deletion found a session: {replies:?}"
        );
        if rotated {
            assert_eq!(replies[1].0, 404, "the old id died with the rotation");
            assert_all_routes_404(&app, &id_of(&replies[0].1)).await;
        }
        let context = format!("round {round}: {replies:?}");
        assert_gone(&app, &id, "rotator", &context).await;
    }
}

async fn user_sessions_listing_and_sign_out_everywhere(backend: Backend) {
    let app = backend.app(|_| {}).await;
    let a = create(
        &app,
        json!({"user_id": "u:1@x", "data": {"device": "phone"}}),
    )
    .await;
    let short = create(&app, json!({"user_id": "u:1@x", "ttl_seconds": 1})).await;
    let b = create(
        &app,
        json!({"user_id": "u:1@x", "data": {"device": "laptop"}}),
    )
    .await;
    let other = create(&app, json!({"user_id": "u2"})).await;
    let listed = app.get("/v1/users/u:1@x/sessions").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["sessions"].as_array().unwrap().len(), 3);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let listed = app.get("/v1/users/u:1@x/sessions").await;
    let ids: Vec<String> = listed.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert!(
        !ids.contains(&id_of(&short)),
        "expired sessions are never listed"
    );
    let mut expected = [&a, &b];
    expected.sort_by_key(|s| (time_of(s, "created_at"), id_of(s)));
    assert_eq!(
        ids,
        expected.iter().map(|s| id_of(s)).collect::<Vec<_>>(),
        "oldest first"
    );
    assert_eq!(listed.body["sessions"][0], *expected[0], "listed in full");
    assert_eq!(
        listed.body["next_cursor"],
        Value::Null,
        "one page holds them"
    );

    // In pages of one, following `next_cursor`: the same sessions, in the same order.
    let pages = app
        .pages("/v1/users/u:1@x/sessions?limit=1", "sessions")
        .await;
    assert!(pages.iter().all(|page| page.len() <= 1), "{pages:?}");
    let paged: Vec<_> = pages.iter().flatten().map(id_of).collect();
    assert_eq!(paged, ids, "paged as listed");
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=t.thread-1",
        "cursor=s.1.not-an-id",
        "cursor=s.-1.0e6c3d4a-1b2c-4d5e-8f90-123456789abc",
        "page=2",
    ] {
        app.get(&format!("/v1/users/u:1@x/sessions?{bad}"))
            .await
            .assert_problem(400, "invalid_request");
    }

    let signed_out = app.delete("/v1/users/u:1@x/sessions").await;
    assert_eq!(
        (signed_out.status, signed_out.body.clone()),
        (200, json!({"deleted": 2}))
    );
    app.get(&format!("/v1/sessions/{}", id_of(&a)))
        .await
        .assert_problem(404, "not_found");
    let again = app.delete("/v1/users/u:1@x/sessions").await;
    assert_eq!(again.body, json!({"deleted": 0}));
    let listed = app.get("/v1/users/u:1@x/sessions").await;
    assert_eq!(listed.body, json!({"sessions": [], "next_cursor": null}));
    let theirs = app.get("/v1/users/u2/sessions").await;
    assert_eq!(
        theirs.body["sessions"][0]["session_id"],
        other["session_id"]
    );
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = backend.app(|_| {}).await;
    let s = create(&app, json!({"user_id": "u1", "context": {"a": 1}})).await;
    let id = id_of(&s);
    let path = format!("/v1/sessions/{id}");

    for bad_id in [
        "not-a-uuid",
        "0E6C3D4A-1B2C-4D5E-8F90-123456789ABC",
        "0e6c3d4a1b2c4d5e8f90123456789abc",
    ] {
        app.get(&format!("/v1/sessions/{bad_id}"))
            .await
            .assert_problem(400, "invalid_id");
        app.delete(&format!("/v1/sessions/{bad_id}"))
            .await
            .assert_problem(400, "invalid_id");
        send(
            &app,
            Method::POST,
            &format!("/v1/sessions/{bad_id}/rotate"),
            None,
            None,
        )
        .await
        .assert_problem(400, "invalid_id");
    }
    app.get("/v1/users/a%20b/sessions")
        .await
        .assert_problem(400, "invalid_id");
    app.delete(&format!("/v1/users/{}/sessions", "u".repeat(257)))
        .await
        .assert_problem(400, "invalid_id");

    let creates = [
        (json!({}), 422, "validation_failed"),
        (json!({"user_id": "bad user"}), 422, "validation_failed"),
        (
            json!({"user_id": "u1", "workspace_id": "a/b"}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": "u1", "ttl_seconds": 0}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": "u1", "ttl_seconds": 1.5}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": "u1", "ttl_seconds": 86401}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": "u1", "data": [1]}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": "u1", "context": "x"}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": "u1", "extra": true}),
            422,
            "validation_failed",
        ),
        (json!({"user_id": 7}), 422, "validation_failed"),
    ];
    for (body, status, code) in creates {
        app.post("/v1/sessions", body)
            .await
            .assert_problem(status, code);
    }
    raw(
        &app,
        Method::POST,
        "/v1/sessions",
        Some("application/json"),
        "{\"user_id\":",
    )
    .await
    .assert_problem(400, "invalid_request");
    raw(
        &app,
        Method::POST,
        "/v1/sessions",
        None,
        "{\"user_id\":\"u1\"}",
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    raw(
        &app,
        Method::POST,
        "/v1/sessions",
        Some("text/plain"),
        "{\"user_id\":\"u1\"}",
    )
    .await
    .assert_problem(415, "unsupported_media_type");

    send(&app, Method::PATCH, &path, Some(json!({"data": 5})), None)
        .await
        .assert_problem(422, "validation_failed");
    send(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"metadata": {}})),
        None,
    )
    .await
    .assert_problem(422, "validation_failed");
    send(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"data": {}})),
        Some("soon"),
    )
    .await
    .assert_problem(400, "invalid_request");
    raw(&app, Method::PATCH, &path, Some("application/json"), "{")
        .await
        .assert_problem(400, "invalid_request");
    send(
        &app,
        Method::PUT,
        &format!("{path}/context"),
        Some(json!([1, 2])),
        None,
    )
    .await
    .assert_problem(422, "validation_failed");
    send(
        &app,
        Method::PUT,
        &format!("{path}/context"),
        Some(json!(null)),
        None,
    )
    .await
    .assert_problem(422, "validation_failed");
    send(
        &app,
        Method::DELETE,
        &format!("{path}/context"),
        None,
        Some("W/x"),
    )
    .await
    .assert_problem(400, "invalid_request");
    for body in [
        json!({}),
        json!({"ttl_seconds": 0}),
        json!({"ttl_seconds": -5}),
        json!({"ttl_seconds": 86401}),
        json!({"ttl_seconds": 60, "x": 1}),
    ] {
        app.post(&format!("{path}/extend"), body)
            .await
            .assert_problem(422, "validation_failed");
    }
    raw(
        &app,
        Method::POST,
        &format!("{path}/extend"),
        None,
        "{\"ttl_seconds\":60}",
    )
    .await
    .assert_problem(415, "unsupported_media_type");

    let after = app.get(&path).await;
    assert_eq!(after.body, s, "no bad request changed the session");
    let listed = app.get("/v1/users/u1/sessions").await;
    assert_eq!(
        listed.body["sessions"].as_array().unwrap().len(),
        1,
        "no bad create made a session"
    );
}

async fn rolling_reads_renew_until_the_cap(backend: Backend) {
    let app = backend
        .app(|s| {
            s.sessions.rolling = true;
            s.sessions.default_ttl_seconds = 2;
            s.sessions.max_lifetime_seconds = 3;
        })
        .await;
    let s = create(&app, json!({"user_id": "roller"})).await;
    let path = format!("/v1/sessions/{}", id_of(&s));
    app.post("/v1/sessions", json!({"user_id": "u", "ttl_seconds": 4}))
        .await
        .assert_problem(422, "validation_failed");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let read = app.get(&format!("{path}/context")).await;
    assert_eq!(read.status, 200, "a context read is a read too");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // 2.4 s after creation: past the original expiry, alive thanks to the renewal.
    let read = app.get(&path).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        (time_of(&read.body, "expires_at") - time_of(&s, "created_at")).whole_milliseconds(),
        3000,
        "renewed, but never past sessions.max_lifetime_seconds"
    );
    assert!(time_of(&read.body, "last_activity_at") > time_of(&s, "last_activity_at"));
    let extended = app
        .post(&format!("{path}/extend"), json!({"ttl_seconds": 3}))
        .await;
    assert_eq!(
        extended.body["expires_at"], read.body["expires_at"],
        "extend is capped too"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_all_routes_404(&app, &id_of(&s)).await;
}

/// On Redis a session's context survives a statekeeper restart: a second process on the same
/// Redis reads it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn context_survives_a_restart_on_redis() {
    let Some(backend) = Backend::on_redis(statekeeper::config::BackendMode::Redis) else {
        return;
    };
    let first = backend.app(|_| {}).await;
    let s = create(
        &first,
        json!({"user_id": "voice-user", "context": {"repo": "acme/app", "pr": 42}}),
    )
    .await;
    let path = format!("/v1/sessions/{}/context", id_of(&s));
    let put = send(
        &first,
        Method::PUT,
        &path,
        Some(json!({"repo": "acme/app", "pr": 43, "file": "src/main.rs"})),
        None,
    )
    .await;
    assert_eq!(put.status, 200);
    drop(first);
    let second = backend.app(|_| {}).await;
    let read = &second.get(&path).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.body,
        json!({"repo": "acme/app", "pr": 43, "file": "src/main.rs"})
    );
    assert_eq!(read.header("etag"), "\"2\"");
    let listed = &second.get("/v1/users/voice-user/sessions").await;
    assert_eq!(listed.body["sessions"][0]["session_id"], s["session_id"]);
}

async fn sessions_past_the_size_limit_are_refused(backend: Backend) {
    let app = backend.app(|s| s.sessions.max_session_bytes = 100).await;
    let big = json!({"user_id": "u1", "data": {"blob": "x".repeat(100)}});
    app.post("/v1/sessions", big)
        .await
        .assert_problem(413, "payload_too_large");
    assert_eq!(
        app.get("/v1/users/u1/sessions").await.body,
        json!({"sessions": [], "next_cursor": null})
    );
    let s = create(
        &app,
        json!({"user_id": "u1", "context": {"repo": "acme/app"}}),
    )
    .await;
    let path = format!("/v1/sessions/{}", id_of(&s));
    let grow = json!({"data": {"blob": "x".repeat(100)}});
    send(&app, Method::PATCH, &path, Some(grow), None)
        .await
        .assert_problem(413, "payload_too_large");
    let ctx = json!({"blob": "x".repeat(100)});
    send(
        &app,
        Method::PUT,
        &format!("{path}/context"),
        Some(ctx),
        None,
    )
    .await
    .assert_problem(413, "payload_too_large");
    assert_eq!(app.get(&path).await.body, s, "nothing written");
}

crate::on_each_backend!(
    rotate_racing_logout_leaves_nothing,
    sessions_past_the_size_limit_are_refused,
    every_session_route,
    expired_sessions_are_gone_for_every_route,
    writes_racing_a_delete_never_resurrect,
    user_sessions_listing_and_sign_out_everywhere,
    bad_input_is_refused_and_changes_nothing,
    rolling_reads_renew_until_the_cap,
);
