//! Pending actions over HTTP, on the memory backend, on Redis, and with two service instances
//! sharing one Redis.

use std::time::Duration;

use crate::common::{
    RedisServer, Reply, TestApp, racing_settings, settings, spawn_app, with_api_keys,
};
use reqwest::Method;
use serde_json::{Value, json};
use statekeeper::config::{BackendMode, Scope, Settings};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

async fn create(app: &TestApp, body: Value) -> Reply {
    app.post("/v1/pending-actions", body).await
}

/// Creates an action and returns its body.
async fn create_ok(app: &TestApp, body: Value) -> Value {
    let response = create(app, body).await;
    assert_eq!(response.status, 201);
    response.body
}

async fn post(app: &TestApp, token: &str, verb: &str, key: Option<&str>) -> Reply {
    let path = format!("/v1/pending-actions/{token}/{verb}");
    let key = key.map(|key| ("Idempotency-Key", key));
    app.call_with(Method::POST, &path, None, key.as_slice())
        .await
}

async fn confirm(app: &TestApp, token: &str, key: Option<&str>) -> Reply {
    post(app, token, "confirm", key).await
}

async fn cancel(app: &TestApp, token: &str) -> Reply {
    post(app, token, "cancel", None).await
}

/// The status and, for a problem document, its code.
fn outcome(response: Reply) -> (u16, String) {
    if response.status < 400 {
        return (response.status, String::new());
    }
    assert!(response.is_problem(), "{}", response.body);
    let code = response.body["code"].as_str().unwrap().to_string();
    (response.status, code)
}

fn time(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap(), &Rfc3339).unwrap()
}

fn token(action: &Value) -> &str {
    action["token"].as_str().unwrap()
}

async fn lifecycle_of_a_confirmed_action(app: &TestApp) {
    let response = create(
        app,
        json!({"intent_name": "merge_pull_request", "user_id": "u1"}),
    )
    .await;
    assert_eq!(response.status, 201);
    let location = response.header("location").to_string();
    let created = response.body;
    let token = token(&created);
    assert_eq!(location, format!("/v1/pending-actions/{token}"));
    assert_eq!(token.len(), 43, "256 bits, URL-safe base64 without padding");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    assert_eq!(created["status"], "pending");
    assert_eq!(created["entities"], json!({}));
    assert_eq!(created["summary"], "");
    assert_eq!(created["user_id"], "u1");
    assert_eq!(
        time(&created["expires_at"]) - time(&created["created_at"]),
        time::Duration::seconds(60),
        "pending_actions.default_ttl_seconds"
    );

    let (status, got) = app.get_json(&location).await;
    assert_eq!((status, &got), (200, &created));

    let won = confirm(app, token, Some("attempt-1")).await;
    assert_eq!(won.status, 200);
    let won = won.body;
    assert_eq!(won["action"]["status"], "confirmed");
    assert_eq!(won["action"]["confirmed_at"], won["confirmed_at"]);
    assert_eq!(won["action"]["expires_at"], created["expires_at"]);

    let replay = confirm(app, token, Some("attempt-1")).await;
    assert_eq!(replay.status, 200, "the winner's retry is not told it lost");
    assert_eq!(replay.body, won, "the very same body");
    assert_eq!(
        outcome(confirm(app, token, Some("attempt-2")).await),
        (409, "already_confirmed".into())
    );
    assert_eq!(
        outcome(confirm(app, token, None).await),
        (409, "already_confirmed".into())
    );
    assert_eq!(
        outcome(cancel(app, token).await),
        (409, "already_confirmed".into())
    );

    let (status, tombstone) = app.get_json(&location).await;
    assert_eq!(status, 200);
    assert_eq!(tombstone, won["action"], "GET shows the confirmed action");
}

async fn cancelled_actions_cannot_be_confirmed(app: &TestApp) {
    let created = create_ok(
        app,
        json!({"intent_name": "delete_branch", "entities": {"branch": "x"}}),
    )
    .await;
    let token = token(&created);
    assert_eq!(cancel(app, token).await.status, 204);
    assert_eq!(cancel(app, token).await.status, 204, "cancel is idempotent");
    assert_eq!(
        outcome(confirm(app, token, Some("k")).await),
        (409, "already_cancelled".into())
    );
    let (status, got) = app.get_json(&format!("/v1/pending-actions/{token}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["status"], "cancelled");
    assert!(got["cancelled_at"].is_string());
    assert_eq!(got["entities"], json!({"branch": "x"}));
}

async fn unknown_and_malformed_tokens(app: &TestApp) {
    let unknown = "A".repeat(43);
    let (status, problem) = app
        .get_json(&format!("/v1/pending-actions/{unknown}"))
        .await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    assert_eq!(
        outcome(confirm(app, &unknown, None).await),
        (404, "not_found".into())
    );
    assert_eq!(
        outcome(cancel(app, &unknown).await),
        (404, "not_found".into())
    );
    for bad in ["a.b", "a%20b", "a=", "%C3%A9", &"x".repeat(257)] {
        let (status, problem) = app.get_json(&format!("/v1/pending-actions/{bad}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_id")),
            "{bad}"
        );
        assert_eq!(
            outcome(confirm(app, bad, None).await),
            (400, "invalid_id".into())
        );
        assert_eq!(outcome(cancel(app, bad).await), (400, "invalid_id".into()));
    }
    // A bad Idempotency-Key is refused before anything happens.
    let created = create_ok(app, json!({"intent_name": "x"})).await;
    let too_long = "k".repeat(257);
    for bad in ["two words", too_long.as_str()] {
        assert_eq!(
            outcome(confirm(app, token(&created), Some(bad)).await),
            (400, "invalid_request".into())
        );
    }
    let (_, still) = app
        .get_json(&format!("/v1/pending-actions/{}", token(&created)))
        .await;
    assert_eq!(still["status"], "pending");
}

/// Every refused body, with the code it gets. None of them may create anything.
async fn bad_create_bodies_are_refused(app: &TestApp) {
    let max = statekeeper::config::Settings::default()
        .limits
        .max_ttl_seconds;
    // Each is refused with 422 `validation_failed`.
    let bodies = [
        json!({}),
        json!({"summary": "no intent"}),
        json!({"intent_name": null}),
        json!({"intent_name": 5}),
        json!({"intent_name": ""}),
        json!({"intent_name": "   "}),
        json!({"intent_name": "i".repeat(257)}),
        json!({"intent_name": "x", "entities": "not an object"}),
        json!({"intent_name": "x", "entities": [1, 2]}),
        json!({"intent_name": "x", "summary": 3}),
        json!({"intent_name": "x", "session_id": ""}),
        json!({"intent_name": "x", "user_id": {}}),
        json!({"intent_name": "x", "ttl_seconds": 0}),
        json!({"intent_name": "x", "ttl_seconds": max + 1}),
        json!({"intent_name": "x", "ttl_seconds": -1}),
        json!({"intent_name": "x", "ttl_seconds": 1.5}),
        json!({"intent_name": "x", "ttl_seconds": "60"}),
        json!({"intent_name": "x", "token": "mine"}),
        json!(["intent_name"]),
    ];
    for body in bodies {
        let refused = outcome(create(app, body.clone()).await);
        assert_eq!(refused, (422, "validation_failed".into()), "{body}");
    }
    let path = "/v1/pending-actions";
    let malformed = app
        .call_raw(Method::POST, path, br#"{"intent_name": "#)
        .await;
    assert_eq!(outcome(malformed), (400, "invalid_request".into()));
    let untyped = app
        .call_typed(Method::POST, path, None, br#"{"intent_name": "x"}"#)
        .await;
    assert_eq!(outcome(untyped), (415, "unsupported_media_type".into()));
    // The largest TTL is accepted.
    let longest = create_ok(app, json!({"intent_name": "x", "ttl_seconds": max})).await;
    assert_eq!(
        time(&longest["expires_at"]) - time(&longest["created_at"]),
        time::Duration::seconds(max as i64)
    );
}

async fn expired_actions_are_gone(app: &TestApp) {
    let a = create_ok(app, json!({"intent_name": "x", "ttl_seconds": 1})).await;
    let b = create_ok(app, json!({"intent_name": "x", "ttl_seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = app
        .get_json(&format!("/v1/pending-actions/{}", token(&a)))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        outcome(confirm(app, token(&a), None).await),
        (404, "not_found".into())
    );
    assert_eq!(
        outcome(cancel(app, token(&b)).await),
        (404, "not_found".into())
    );
}

/// Many tokens, each confirmed by many concurrent callers spread over `apps`: one 200 each.
async fn racing_confirms(apps: &[&TestApp]) {
    const TOKENS: usize = 12;
    const CONFIRMERS: usize = 12;
    let mut tokens = Vec::new();
    for i in 0..TOKENS {
        let app = apps[i % apps.len()];
        tokens.push(token(&create_ok(app, json!({"intent_name": "race"})).await).to_string());
    }
    let targets: Vec<(String, String)> = (0..TOKENS * CONFIRMERS)
        .map(|i| {
            (
                apps[i % apps.len()].base.clone(),
                tokens[i % TOKENS].clone(),
            )
        })
        .collect();
    let client = reqwest::Client::new();
    let results = crate::common::race(targets.len(), |i| {
        let (base, token) = targets[i].clone();
        let client = client.clone();
        async move {
            let response = client
                .post(format!("{base}/v1/pending-actions/{token}/confirm"))
                .header("Idempotency-Key", format!("caller-{i}"))
                .send()
                .await
                .unwrap();
            (i % TOKENS, outcome(Reply::read(response).await))
        }
    })
    .await;
    for n in 0..TOKENS {
        let of_token = crate::common::of_group(&results, n);
        let won = of_token.iter().filter(|(status, _)| *status == 200).count();
        let lost = of_token
            .iter()
            .filter(|o| **o == &(409, "already_confirmed".to_string()))
            .count();
        assert_eq!((won, lost), (1, CONFIRMERS - 1), "token {n}: {of_token:?}");
    }
}

fn with_tenants(settings: &mut Settings) {
    let read_write: &[Scope] = &[Scope::Read, Scope::Write];
    with_api_keys(
        settings,
        &[
            ("acme-key", "acme", read_write),
            ("globex-key", "globex", read_write),
        ],
    );
}

async fn tokens_are_invisible_to_other_tenants(app: &TestApp) {
    let as_tenant = |key: &str, method: Method, path: &str| {
        let request = app.request(method, path).bearer_auth(key);
        app.send(request)
    };
    let create = app
        .request(Method::POST, "/v1/pending-actions")
        .bearer_auth("acme-key")
        .json(&json!({"intent_name": "transfer"}));
    let created = app.send(create).await;
    assert_eq!(created.status, 201);
    let token = token(&created.body).to_string();
    let path = |verb: &str| format!("/v1/pending-actions/{token}{verb}");
    let read = as_tenant("globex-key", Method::GET, &path("")).await;
    assert_eq!(outcome(read), (404, "not_found".into()), "404, never 403");
    for verb in ["/confirm", "/cancel"] {
        let stolen = as_tenant("globex-key", Method::POST, &path(verb)).await;
        assert_eq!(outcome(stolen), (404, "not_found".into()), "{verb}");
    }
    let mine = as_tenant("acme-key", Method::POST, &path("/confirm")).await;
    assert_eq!(mine.status, 200, "the owner's confirm still wins");
    let after = as_tenant("globex-key", Method::POST, &path("/confirm")).await;
    assert_eq!(outcome(after), (404, "not_found".into()));
}

crate::on_each_backend!(app =>
    lifecycle_of_a_confirmed_action,
    cancelled_actions_cannot_be_confirmed,
    unknown_and_malformed_tokens,
    expired_actions_are_gone,
);

mod tenants {
    use super::*;

    crate::on_each_backend!(app with with_tenants => tokens_are_invisible_to_other_tenants);
}

mod memory {
    use super::*;

    async fn app() -> TestApp {
        spawn_app(settings(BackendMode::Memory, None)).await
    }

    #[tokio::test]
    async fn bad_input() {
        bad_create_bodies_are_refused(&app().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn races() {
        racing_confirms(&[&app().await]).await;
    }

    #[tokio::test]
    async fn tombstone_setting_bounds_the_tombstone() {
        let mut settings = settings(BackendMode::Memory, None);
        settings.pending_actions.tombstone_seconds = 1;
        let app = spawn_app(settings).await;
        let created = create_ok(&app, json!({"intent_name": "x", "ttl_seconds": 600})).await;
        assert_eq!(confirm(&app, token(&created), Some("k")).await.status, 200);
        assert_eq!(confirm(&app, token(&created), Some("k")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            outcome(confirm(&app, token(&created), Some("k")).await),
            (404, "not_found".into()),
            "the tombstone and its replay record are gone"
        );
    }
}

mod redis {
    use super::*;

    async fn app(redis: &RedisServer) -> TestApp {
        spawn_app(settings(BackendMode::Redis, Some(redis))).await
    }

    /// An instance for the races. Over a hundred confirms land at once on a small shared test
    /// machine, where the 250 ms default deadline (pool checkout and connecting included) can
    /// pass before a connection is free; a race measures atomicity, not latency.
    async fn racing_app(redis: &RedisServer) -> TestApp {
        spawn_app(racing_settings(redis)).await
    }

    #[tokio::test]
    async fn bad_input_writes_nothing() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let app = app(&redis).await;
        bad_create_bodies_are_refused(&app).await;
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg("*")
            .query(&mut redis.connection())
            .unwrap();
        assert_eq!(keys.len(), 1, "only the one valid create wrote: {keys:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn races() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        racing_confirms(&[&racing_app(&redis).await]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn races_across_two_instances_on_one_redis() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (first, second) = (racing_app(&redis).await, racing_app(&redis).await);
        racing_confirms(&[&first, &second]).await;
        // What one instance confirmed, the other replays to the winner's key and refuses others.
        let created = create_ok(&first, json!({"intent_name": "x"})).await;
        let won = confirm(&first, token(&created), Some("k")).await;
        assert_eq!(won.status, 200);
        let won = won.body;
        let replay = confirm(&second, token(&created), Some("k")).await;
        assert_eq!(replay.body, won);
        assert_eq!(
            outcome(confirm(&second, token(&created), Some("other")).await),
            (409, "already_confirmed".into())
        );
    }

    /// The stored layout, and the default tombstone: the token's remaining lifetime.
    #[tokio::test]
    async fn one_hash_per_token_whose_tombstone_keeps_the_remaining_lifetime() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let app = app(&redis).await;
        let created = create_ok(&app, json!({"intent_name": "x", "ttl_seconds": 600})).await;
        let key = format!("statekeeper:default:pending_action:{}", token(&created));
        let pttl = || -> i64 { redis.query(&["PTTL", &key]) };
        let status = || -> String { redis.query(&["HGET", &key, "status"]) };
        assert!((590_000..=600_000).contains(&pttl()));
        assert_eq!(status(), "pending");
        assert_eq!(confirm(&app, token(&created), None).await.status, 200);
        assert_eq!(status(), "confirmed");
        let left = pttl();
        assert!(
            (590_000..=600_000).contains(&left),
            "tombstone lives {left} ms"
        );
    }
}
