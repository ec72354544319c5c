//! The benchmark's ceilings, bare axum servers without middleware:
//!
//! - `http_ceiling PORT`: answers `GET` of any path with a fixed 200-byte JSON body, without
//!   storage: what statekeeper's memory backend is compared against;
//! - `http_ceiling PORT REDIS_PORT KEY`: answers `GET` of any path with Redis's `GET KEY`, and
//!   `PUT` of any path with `SET KEY:put <body> EX 3600` (204), on one shared multiplexed
//!   connection (the same crates statekeeper uses): what statekeeper's cache GET and PUT on
//!   Redis are compared against. It checks nothing: not the body, not the TTL.

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use redis::aio::MultiplexedConnection;

/// The same 200 bytes of JSON the benchmark stores in the cache.
const BODY: &str = include_str!("../bench/value.json");

#[derive(Clone)]
struct Redis {
    connection: MultiplexedConnection,
    key: String,
}

async fn from_redis(State(redis): State<Redis>) -> impl IntoResponse {
    let mut connection = redis.connection.clone();
    let value: Result<Option<Vec<u8>>, _> = redis::cmd("GET")
        .arg(&redis.key)
        .query_async(&mut connection)
        .await;
    match value {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn to_redis(State(redis): State<Redis>, body: axum::body::Bytes) -> StatusCode {
    let mut connection = redis.connection.clone();
    let done: Result<(), _> = redis::cmd("SET")
        .arg(format!("{}:put", redis.key))
        .arg(body.as_ref())
        .arg("EX")
        .arg(3600)
        .query_async(&mut connection)
        .await;
    match done {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: http_ceiling PORT [REDIS_PORT KEY]";
    let port: u16 = args.get(1).and_then(|p| p.parse().ok()).expect(usage);
    let app = match (args.get(2), args.get(3)) {
        (Some(redis_port), Some(key)) => {
            let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/0"))
                .expect("a Redis address");
            let connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis answers");
            let state = Redis {
                connection,
                key: key.clone(),
            };
            Router::new()
                .fallback(get(from_redis).put(to_redis))
                .with_state(state)
        }
        _ => Router::new().fallback(get(|| async {
            ([(header::CONTENT_TYPE, "application/json")], BODY).into_response()
        })),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("port is free");
    axum::serve(listener, app).await.expect("serves");
}
