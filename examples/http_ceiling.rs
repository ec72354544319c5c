//! The benchmark's HTTP ceiling: a bare axum server answering `GET` of any path with a fixed
//! 200-byte JSON body, without storage or middleware. What statekeeper's memory backend is
//! compared against. Usage: `http_ceiling PORT`.

use axum::{Router, http::header, response::IntoResponse, routing::get};

/// The same 200 bytes of JSON the benchmark stores in the cache.
const BODY: &str = include_str!("../bench/value.json");

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: http_ceiling PORT");
    let app = Router::new().fallback(get(|| async {
        ([(header::CONTENT_TYPE, "application/json")], BODY).into_response()
    }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("port is free");
    axum::serve(listener, app).await.expect("serves");
}
