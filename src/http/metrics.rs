//! `GET /metrics` (no API key, like `/health`) and the middleware that counts every request.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
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

use super::state::AppState;
use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

use crate::metrics::{HttpMetrics, ResponseLabels, Route, RouteLabels};

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
///
/// Each route's layer keeps the metric handles of the first successful answer it counted
/// (route, method, status): most requests of a route answer alike and are counted through
/// them, without the metric families' lock and label hashing; any other answer goes through
/// the families.
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
            shared: Arc::new(Shared {
                metrics: self.metrics.clone(),
                timeout: self.timeout,
                usual: Default::default(),
            }),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What one route's layer and its requests share.
struct Shared {
    metrics: HttpMetrics,
    timeout: Duration,
    /// By method (`METHODS`).
    usual: [OnceLock<Usual>; METHODS.len() + 1],
}

/// The handles of one label set, shared with the families that export them.
struct Usual {
    labels: ResponseLabels,
    duration: Histogram,
    requests: Counter,
}

impl Shared {
    /// Counts one answer; `method` is the place of `labels.method` in `METHODS`.
    fn record(&self, labels: RouteLabels, method: usize, status: u16, started: Instant) {
        let slot = &self.usual[method];
        let usual = match slot.get() {
            Some(usual) => Some(usual),
            None if status < 400 => Some(slot.get_or_init(|| {
                let response = ResponseLabels {
                    route: labels.route.clone(),
                    method: labels.method,
                    status,
                };
                Usual {
                    duration: self.metrics.duration.get_or_create(&labels).clone(),
                    requests: self.metrics.requests.get_or_create(&response).clone(),
                    labels: response,
                }
            })),
            None => None,
        };
        match usual {
            Some(usual)
                if usual.labels.status == status
                    && usual.labels.method == labels.method
                    && usual.labels.route == labels.route =>
            {
                self.metrics.in_flight.dec();
                usual.duration.observe(started.elapsed().as_secs_f64());
                usual.requests.inc();
            }
            _ => self.metrics.record(labels, status, started),
        }
    }
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
        let method = method_index(request.method());
        let labels = RouteLabels {
            route: Route(request.extensions().get::<MatchedPath>().cloned()),
            method: METHODS.get(method).map_or("other", Method::as_str),
        };
        self.shared.metrics.in_flight.inc();
        Tracked {
            inner: self.inner.call(request),
            started: Instant::now(),
            labels: Some((labels, method)),
            shared: self.shared.clone(),
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
        labels: Option<(RouteLabels, usize)>,
        shared: Arc<Shared>,
        // True while `inner` is polled: still true at the drop when the poll panicked.
        polling: bool,
    }

    impl<F> PinnedDrop for Tracked<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((labels, method)) = this.labels.take() {
                let status = if *this.polling {
                    500
                } else if this.started.elapsed() >= this.shared.timeout {
                    503
                } else {
                    CLIENT_GONE
                };
                this.shared.record(labels, method, status, *this.started);
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
        if let Some((labels, method)) = this.labels.take() {
            // An error is not an answer axum can send (its services are infallible).
            let status = result.as_ref().map_or(500, |r| r.status().as_u16());
            this.shared.record(labels, method, status, *this.started);
        }
        Poll::Ready(result)
    }
}

/// The standard methods, counted by name; any other is `other`.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// The place of a method in `METHODS`; any other method (`other`) after them.
fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| m == method)
        .unwrap_or(METHODS.len())
}
