//! `GET /metrics` (no API key, like `/health`) and the middleware that counts every request.

use std::time::Instant;

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};

use super::AppState;
use crate::metrics::{ResponseLabels, Route, RouteLabels};

/// OpenMetrics' text format, which Prometheus asks for and reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// Prometheus metrics of this instance (`statekeeper_*`), in OpenMetrics' text format.
#[utoipa::path(
    get, path = "/metrics", tag = "health", operation_id = "metrics",
    responses((
        status = 200,
        description = "The exposition: counters, gauges and histograms named `statekeeper_*`",
        body = String,
        content_type = "application/openmetrics-text",
    )),
)]
pub async fn scrape(State(state): State<AppState>) -> Response {
    state.failover.observe().await;
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts a request by its route *template* (`unmatched` when no route matched: the label
/// never holds a caller's path), method and status, times it to its response head, and keeps
/// the in-flight gauge.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = Route(request.extensions().get::<MatchedPath>().cloned());
    let method = method_label(request.method());
    let http = &state.metrics.http;
    http.in_flight.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    http.in_flight.dec();
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    http.duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method,
        })
        .observe(elapsed);
    http.requests
        .get_or_create(&ResponseLabels {
            route,
            method,
            status,
        })
        .inc();
    response
}

/// The method's name when it is a standard one, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
