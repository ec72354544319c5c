//! Rate limits over HTTP: decisions, headers and refusals on every backend, exactness across
//! two instances sharing one Redis, each `rate_limits.degraded` policy while Redis is down, and
//! Redis keys that all expire.

use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::capabilities::rate_limit::model::Algorithm;
use statekeeper::config::{BackendMode, RateLimitDegraded, RateLimitPolicy, Settings};

use crate::common::{Reply, TestApp, settings, spawn_app};

fn with_policy(settings: &mut Settings) {
    settings.rate_limits.policies = vec![RateLimitPolicy {
        name: "api".into(),
        algorithm: Algorithm::SlidingWindow,
        limit: 3,
        window_ms: 60_000,
        burst: None,
    }];
}

async fn check(app: &TestApp, key: &str, body: Value) -> Reply {
    app.call(
        Method::POST,
        &format!("/v1/rate-limits/{key}/check"),
        Some(body),
    )
    .await
}

fn fixed(limit: u64) -> Value {
    json!({"algorithm": "fixed_window", "limit": limit, "window_ms": 3_600_000})
}

/// A policy by name: allowed until its limit, then denied with the IETF headers and a true
/// Retry-After; a reset gives the whole limit back.
async fn checks_answer_with_headers_until_denied(app: &TestApp) {
    let body = json!({"rules": [{"policy": "api"}]});
    for left in [2, 1, 0] {
        let reply = check(app, "user-1", body.clone()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["allowed"], true);
        assert_eq!(reply.body["degraded"], false);
        assert_eq!(reply.body["rules"][0]["name"], "api");
        assert_eq!(reply.body["rules"][0]["remaining"], left);
        assert_eq!(reply.header("ratelimit-policy"), "\"api\";q=3;w=60");
        assert_eq!(reply.header("ratelimit"), format!("\"api\";r={left};t=60"));
        assert_eq!(reply.header("retry-after"), "");
    }
    let denied = check(app, "user-1", body.clone()).await;
    assert_eq!(denied.status, 200, "a denial is an answer, not an error");
    assert_eq!(denied.body["allowed"], false);
    let wait = denied.body["rules"][0]["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 55_000 && wait <= 60_000, "{wait}");
    assert_eq!(denied.header("retry-after"), "60");
    let reset = app
        .call(Method::DELETE, "/v1/rate-limits/user-1", None)
        .await;
    assert_eq!(reset.status, 204);
    let again = check(app, "user-1", body).await;
    assert_eq!(again.body["rules"][0]["remaining"], 2);
}

/// The headers describe the tightest rule; a peek counts nothing.
async fn headers_name_the_tightest_rule_and_peeks_count_nothing(app: &TestApp) {
    let bucket = json!({"name": "burst", "algorithm": "token_bucket", "limit": 10,
                            "window_ms": 1000, "burst": 4});
    let body = json!({"rules": [fixed(100), bucket.clone()], "cost": 2});
    let reply = check(app, "tight", body).await;
    assert_eq!(reply.body["rules"][1]["remaining"], 2);
    assert_eq!(reply.body["rules"][1]["burst"], 4);
    assert_eq!(reply.header("ratelimit-policy"), "\"burst\";q=4;w=1");
    assert!(reply.header("ratelimit").starts_with("\"burst\";r=2;t="));
    let peek = json!({"rules": [fixed(100), bucket], "mode": "peek"});
    for _ in 0..5 {
        let seen = check(app, "tight", peek.clone()).await;
        assert_eq!(seen.body["rules"][0]["remaining"], 98);
    }
}

/// Every malformed check is a 422 (or 400 for the key) and changes nothing.
async fn bad_checks_are_refused_and_change_nothing(app: &TestApp) {
    let cases = [
        json!({"rules": []}),
        json!({"rules": [{"policy": "nope"}]}),
        json!({"rules": [{"policy": "api", "limit": 3}]}),
        json!({"rules": [{"algorithm": "fixed_window", "limit": 3}]}),
        json!({"rules": [{"algorithm": "leaky", "limit": 3, "window_ms": 1000}]}),
        json!({"rules": [{"algorithm": "fixed_window", "limit": 0, "window_ms": 1000}]}),
        json!({"rules": [{"algorithm": "fixed_window", "limit": 3, "window_ms": 1000, "burst": 9}]}),
        json!({"rules": [{"algorithm": "sliding_window", "limit": 100001, "window_ms": 1000}]}),
        json!({"rules": [{"algorithm": "fixed_window", "limit": -1, "window_ms": 1000}]}),
        json!({"rules": [{"algorithm": "fixed_window", "limit": 2.5, "window_ms": 1000}]}),
        json!({"rules": [fixed(3), fixed(3)]}),
        json!({"rules": [fixed(3)], "cost": 4}),
        json!({"rules": [fixed(3)], "mode": "maybe"}),
        json!({"rules": [fixed(3)], "extra": 1}),
        json!({"rules": [{"name": "bad name", "algorithm": "fixed_window", "limit": 3, "window_ms": 1000}]}),
        json!({"rules": vec![fixed(3); 11]}),
    ];
    for body in cases {
        check(app, "bad", body.clone())
            .await
            .assert_problem(422, "validation_failed");
    }
    check(app, "bad%20key", json!({"rules": [fixed(3)]}))
        .await
        .assert_problem(400, "invalid_id");
    let seen = check(app, "bad", json!({"rules": [fixed(3)], "mode": "peek"})).await;
    assert_eq!(seen.body["rules"][0]["remaining"], 3, "nothing was counted");
}

crate::on_each_backend!(app with with_policy =>
    checks_answer_with_headers_until_denied,
    headers_name_the_tightest_rule_and_peeks_count_nothing,
    bad_checks_are_refused_and_change_nothing,
);

/// Two instances sharing one Redis, 200 checks split between them, limit 50: exactly 50 pass,
/// for every algorithm. Every key they wrote carries a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_together_admit_exactly_the_limit() {
    let Some((redis, apps)) = crate::common::two_instances().await else {
        return;
    };
    for algorithm in ["sliding_window", "fixed_window", "token_bucket"] {
        let rule = json!({"algorithm": algorithm, "limit": 50, "window_ms": 3_600_000});
        let results = crate::common::race(200, |i| {
            let (apps, rule) = (apps.clone(), rule.clone());
            async move {
                let reply = check(&apps[i % 2], algorithm, json!({"rules": [rule]})).await;
                assert_eq!(reply.status, 200);
                reply.body["allowed"] == true
            }
        })
        .await;
        assert_eq!(results.iter().filter(|a| **a).count(), 50, "{algorithm}");
    }
    let mut conn = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*rate_limit*")
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        keys.len(),
        4,
        "a hash per key and the sliding log: {keys:?}"
    );
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!(ttl > 0, "{key} has no TTL");
    }
}

async fn degraded_app(policy: RateLimitDegraded) -> TestApp {
    let mut config = settings(BackendMode::Auto, None);
    config.rate_limits.degraded = policy;
    spawn_app(config).await
}

/// While Redis is down in `auto` mode: `local` decides from this instance's memory and says
/// so, `allow` fails open, `refuse` answers 503 with Retry-After; the cache serves from memory
/// throughout, and `/health` names each policy.
#[tokio::test]
async fn while_redis_is_down_each_degraded_policy_does_what_it_says() {
    let body = json!({"rules": [fixed(2)]});
    let local = degraded_app(RateLimitDegraded::Local).await;
    let mut allowed = Vec::new();
    for _ in 0..3 {
        let reply = check(&local, "k", body.clone()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["degraded"], true);
        allowed.push(reply.body["allowed"] == true);
    }
    assert_eq!(allowed, [true, true, false], "local limits still hold");

    let open = degraded_app(RateLimitDegraded::Allow).await;
    for _ in 0..3 {
        let reply = check(&open, "k", body.clone()).await;
        assert_eq!(
            (
                reply.body["allowed"].clone(),
                reply.body["degraded"].clone()
            ),
            (json!(true), json!(true))
        );
    }

    let closed = degraded_app(RateLimitDegraded::Refuse).await;
    let refused = check(&closed, "k", body).await;
    refused.assert_problem(503, "backend_unavailable");
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(
        closed.put_cache("c", "1").await.status,
        204,
        "the cache serves from memory"
    );
    for (app, policy) in [
        (&local, "serve_from_memory"),
        (&open, "allow"),
        (&closed, "refuse"),
    ] {
        let (_, health) = app.get_json("/health").await;
        assert_eq!(
            health["backend"]["while_degraded"]["rate_limits"], policy,
            "{health}"
        );
    }
}
