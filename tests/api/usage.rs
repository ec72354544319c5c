//! Usage and budgets over HTTP: the routes and refusals on every backend, budgets that hold
//! under 500 racing reservations on two instances sharing one Redis, duplicate events counted
//! once, and usage taken while Redis was down replayed into Redis when it returns.

use std::{sync::Arc, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::config::BackendMode;

use crate::common::{RedisServer, Reply, TestApp, race, racing_settings, settings, spawn_app};

async fn event(app: &TestApp, subject: &str, body: Value) -> Reply {
    app.post(&format!("/v1/usage/{subject}/events"), body).await
}

async fn reserve(app: &TestApp, path: &str, amount: u64) -> Reply {
    app.post(
        &format!("/v1/budgets/{path}/reserve"),
        json!({"amount": amount, "ttl_ms": 60_000}),
    )
    .await
}

async fn day_total(app: &TestApp, subject: &str) -> u64 {
    let reply = app.get(&format!("/v1/usage/{subject}?metric=tokens")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["amount"].as_u64().unwrap())
        .sum()
}

/// Events counted once with 201 then 200, totals by day and month, a budget's whole cycle.
async fn the_usage_and_budget_routes(app: &TestApp) {
    let first = event(
        app,
        "ada",
        json!({"event_id": "e1", "metric": "tokens", "amount": 120}),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["counted"], true);
    let again = event(
        app,
        "ada",
        json!({"event_id": "e1", "metric": "tokens", "amount": 120}),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["counted"], false);
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let at = yesterday
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let earlier = json!({"event_id": "e2", "metric": "tokens", "amount": 5, "at": at});
    assert_eq!(event(app, "ada", earlier).await.status, 201);

    let from = yesterday.date().to_string();
    let days = app.get(&format!("/v1/usage/ada?from={from}")).await;
    assert_eq!(days.status, 200, "{}", days.body);
    assert_eq!(days.body["period"], "day");
    let totals = days.body["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 2, "{}", days.body);
    assert_eq!(totals[0]["period"], from);
    assert_eq!(totals[0]["amount"], 5);
    assert_eq!(totals[1]["amount"], 120);
    assert_eq!(day_total(app, "ada").await, 120, "today only by default");

    let path = "/v1/budgets/ada/tokens";
    app.get(path).await.assert_problem(404, "not_found");
    let unlimited = reserve(app, "ada/tokens", 1_000_000).await;
    assert_eq!(unlimited.status, 201, "no budget: never a refusal");
    assert_eq!(unlimited.body["remaining"], Value::Null);
    let put = app
        .call(
            Method::PUT,
            path,
            Some(json!({"limit": 200, "period": "day"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["used"], 120);
    assert_eq!(
        put.body["remaining"], 0,
        "the unlimited reservation still holds"
    );
    let id = unlimited.body["reservation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let release = format!("/v1/budgets/ada/tokens/reservations/{id}/release");
    assert_eq!(app.call(Method::POST, &release, None).await.status, 204);
    app.call(Method::POST, &release, None)
        .await
        .assert_problem(404, "not_found");

    let held = reserve(app, "ada/tokens", 50).await;
    assert_eq!(held.status, 201);
    assert_eq!(held.body["remaining"], 30);
    assert!(held.body["expires_at"].as_str().unwrap().ends_with('Z'));
    let refused = reserve(app, "ada/tokens", 31).await;
    refused.assert_problem(409, "budget_exceeded");
    assert_eq!(refused.body["remaining"], 30);
    let id = held.body["reservation_id"].as_str().unwrap();
    let commit = format!("/v1/budgets/ada/tokens/reservations/{id}/commit");
    let too_much = app.post(&commit, json!({"amount": 51})).await;
    too_much.assert_problem(409, "exceeds_reservation");
    assert_eq!(too_much.body["reserved"], 50);
    let committed = app.post(&commit, json!({"amount": 20})).await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    assert_eq!(committed.body, json!({"committed": 20, "returned": 30}));
    let status = app.get(path).await;
    assert_eq!(
        (
            &status.body["used"],
            &status.body["reserved"],
            &status.body["remaining"]
        ),
        (&json!(140), &json!(0), &json!(60))
    );
    assert_eq!(app.delete(path).await.status, 204);
    app.delete(path).await.assert_problem(404, "not_found");
}

/// Bad input is refused with a problem and counts nothing.
async fn bad_usage_input_is_refused(app: &TestApp) {
    for body in [
        json!({"event_id": "x", "metric": "tokens", "amount": 1.5}),
        json!({"event_id": "x", "metric": "tokens", "amount": -1}),
        json!({"event_id": "x", "metric": "tokens", "amount": 9_007_199_254_740_992_u64}),
        json!({"event_id": "x y", "metric": "tokens", "amount": 1}),
        json!({"event_id": "x", "metric": "", "amount": 1}),
        json!({"event_id": "x", "metric": "tokens", "amount": 1, "at": "yesterday"}),
        json!({"event_id": "x", "metric": "tokens", "amount": 1, "at": "1990-01-01T00:00:00Z"}),
        json!({"event_id": "x", "metric": "tokens", "amount": 1, "extra": 1}),
    ] {
        let reply = event(app, "bad", body.clone()).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.body);
    }
    for query in [
        "from=2026-13-01",
        "from=2026-01-02&to=2026-01-01",
        "from=2020-01-01",
        "period=week",
    ] {
        let reply = app.get(&format!("/v1/usage/bad?{query}")).await;
        assert!(
            reply.status == 422 || reply.status == 400,
            "{query}: {}",
            reply.status
        );
        assert_eq!(reply.header("content-type"), "application/problem+json");
    }
    let path = "/v1/budgets/bad/tokens";
    for body in [
        json!({"limit": 1, "period": "week"}),
        json!({"limit": -1, "period": "day"}),
    ] {
        let reply = app.call(Method::PUT, path, Some(body.clone())).await;
        assert_eq!(reply.status, 422, "{body}");
    }
    for body in [
        json!({"amount": 1, "ttl_ms": 0}),
        json!({"amount": 1, "ttl_ms": 86_400_001}),
    ] {
        let reply = app
            .post("/v1/budgets/bad/tokens/reserve", body.clone())
            .await;
        assert_eq!(reply.status, 422, "{body}");
    }
    let commit = "/v1/budgets/bad/tokens/reservations/nope/commit";
    app.post(commit, json!({"amount": 1}))
        .await
        .assert_problem(404, "not_found");
    assert_eq!(day_total(app, "bad").await, 0);
}

crate::on_each_backend!(app => the_usage_and_budget_routes, bad_usage_input_is_refused);

/// Two instances on one Redis: 500 racing 1-unit reservations against a limit of 100 grant
/// exactly 100; 50 racing posts of one event id count once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_hold_across_two_instances() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = Arc::new(spawn_app(racing_settings(&redis)).await);
    let b = Arc::new(spawn_app(racing_settings(&redis)).await);
    let put = a
        .call(
            Method::PUT,
            "/v1/budgets/team/tokens",
            Some(json!({"limit": 100, "period": "month"})),
        )
        .await;
    assert_eq!(put.status, 200);
    let statuses = race(500, |i| {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { reserve(&app, "team/tokens", 1).await }
    })
    .await;
    let granted: Vec<&Reply> = statuses.iter().filter(|r| r.status == 201).collect();
    let refused = statuses.iter().filter(|r| r.status == 409).count();
    let other: Vec<_> = statuses
        .iter()
        .filter(|r| r.status != 201 && r.status != 409)
        .map(|r| (r.status, r.body.clone()))
        .collect();
    assert_eq!((granted.len(), refused), (100, 400), "{other:?}");

    // Commit each for less than reserved (0): all of it returns.
    for reply in granted.iter().take(10) {
        let id = reply.body["reservation_id"].as_str().unwrap();
        let commit = format!("/v1/budgets/team/tokens/reservations/{id}/commit");
        let done = b.post(&commit, json!({"amount": 0})).await;
        assert_eq!(done.body, json!({"committed": 0, "returned": 1}));
    }
    let status = a.get("/v1/budgets/team/tokens").await;
    assert_eq!(status.body["reserved"], 90);
    assert_eq!(status.body["remaining"], 10);

    let counted = race(50, |i| {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            event(
                &app,
                "team",
                json!({"event_id": "once", "metric": "tokens", "amount": 3}),
            )
            .await
        }
    })
    .await;
    assert_eq!(counted.iter().filter(|r| r.status == 201).count(), 1);
    assert_eq!(counted.iter().filter(|r| r.status == 200).count(), 49);
    assert_eq!(day_total(&b, "team").await, 3);
}

/// While Redis is down (auto mode), events are counted in memory and journalled; totals and
/// reservations refuse. When Redis returns, every event is in Redis's totals, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_taken_while_degraded_reaches_redis() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app(settings(BackendMode::Auto, Some(&redis))).await;
    let before = json!({"event_id": "before", "metric": "tokens", "amount": 1000});
    assert_eq!(event(&app, "ops", before).await.status, 201);

    redis.kill();
    app.wait_for_health(Duration::from_secs(5), |h| h["status"] == "degraded")
        .await;
    for i in 0..20 {
        let body = json!({"event_id": format!("down-{i}"), "metric": "tokens", "amount": 1});
        let reply = event(&app, "ops", body).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let duplicate = json!({"event_id": "down-3", "metric": "tokens", "amount": 1});
    assert_eq!(event(&app, "ops", duplicate).await.status, 200);
    app.get("/v1/usage/ops")
        .await
        .assert_problem(503, "backend_unavailable");
    reserve(&app, "ops/tokens", 1)
        .await
        .assert_problem(503, "backend_unavailable");
    let (_, health) = app.get_json("/health").await;
    assert_eq!(
        health["backend"]["while_degraded"]["usage"],
        "journal_and_replay"
    );

    redis.restart();
    app.wait_for_health(Duration::from_secs(10), |h| h["status"] == "ok")
        .await;
    // The restarted Redis kept nothing: its totals are exactly what was journalled.
    assert_eq!(day_total(&app, "ops").await, 20);
    let replayed_again = json!({"event_id": "down-7", "metric": "tokens", "amount": 1});
    assert_eq!(
        event(&app, "ops", replayed_again).await.status,
        200,
        "deduplicated in Redis"
    );
}
