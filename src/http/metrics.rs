//! `GET /metrics` (no API key, like `/health`) and the middleware that counts every request.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{MatchedPath, State},
    http::{Method, Request, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower::{Layer, Service};

use super::AppState;
use crate::metrics::{HttpMetrics, Route, RouteLabels};

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

/// Counts each request by its route *template* (`unmatched` when no route matched: the label
/// never holds a caller's path), method and status, times it to its response head, and keeps
/// the in-flight gauge. Applied with `Router::layer`, so it runs per route after routing, where
/// the matched template is known.
///
/// The rest of the middleware stack (request id, trace, timeout, panic guard) sits outside the
/// router, so a request it cuts short drops this layer's future unanswered. The drop tells the
/// cases apart: a panic out of the handler (the future was being polled) counts as the 500 the
/// panic guard answers; a request as old as `server.request_timeout_ms` as the 503 the timeout
/// answers; anything else as a client that went away (499).
///
/// A service of its own rather than `middleware::from_fn`, which boxes every request's future
/// and clones the inner service (the whole stack below) per request; this layer allocates
/// nothing per request.
#[derive(Clone)]
pub struct TrackLayer {
    pub metrics: HttpMetrics,
    /// `server.request_timeout_ms`.
    pub timeout: Duration,
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.metrics.clone(),
            timeout: self.timeout,
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: HttpMetrics,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for Track<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let labels = RouteLabels {
            route: Route(request.extensions().get::<MatchedPath>().cloned()),
            method: method_label(request.method()),
        };
        self.metrics.in_flight.inc();
        Tracked {
            inner: self.inner.call(request),
            started: Instant::now(),
            labels: Some(labels),
            metrics: self.metrics.clone(),
            timeout: self.timeout,
            polling: false,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response, counted when it is ready, or when the future is dropped first
    /// (see `TrackLayer` for the status then).
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        started: Instant,
        labels: Option<RouteLabels>,
        metrics: HttpMetrics,
        timeout: Duration,
        // True while `inner` is polled: still true at the drop when the poll panicked.
        polling: bool,
    }

    impl<F> PinnedDrop for Tracked<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(labels) = this.labels.take() {
                let status = if *this.polling {
                    500
                } else if this.started.elapsed() >= *this.timeout {
                    503
                } else {
                    CLIENT_GONE
                };
                this.metrics.record(labels, status, *this.started);
            }
        }
    }
}

/// The status nginx logs for a request whose client closed the connection before the answer.
const CLIENT_GONE: u16 = 499;

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        *this.polling = true;
        let poll = this.inner.poll(cx);
        *this.polling = false;
        let result = std::task::ready!(poll);
        if let Some(labels) = this.labels.take() {
            // An error is not an answer axum can send (its services are infallible).
            let status = result.as_ref().map_or(500, |r| r.status().as_u16());
            this.metrics.record(labels, status, *this.started);
        }
        Poll::Ready(result)
    }
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
