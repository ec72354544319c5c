//! The listener: accepts connections and serves the router on each with hyper, with the
//! limits `axum::serve` does not set.
//!
//! - At most `server.max_connections` connections are open; the accept loop waits for one to
//!   close before it accepts another (further clients wait in the kernel's listen backlog).
//! - A request's head must arrive within `server.header_read_timeout_ms` (a client sending one
//!   byte a second is cut off). hyper runs the same clock while a keep-alive connection waits
//!   for its next request, so this is also the idle timeout.
//! - A request whose `Content-Length` exceeds `limits.max_body_bytes` gets 413 at once, before
//!   the router and before any of the body is read (the body limit alone would wait for a body
//!   the client may never send). Here rather than as a middleware layer: it costs one header
//!   lookup, where a `from_fn` layer cost an allocation and a service clone per request.
//! - On shutdown every connection stops taking requests; one with no request being served (idle,
//!   or with a head still arriving) closes at once, the others finish theirs within
//!   `server.shutdown_grace_ms`.
//!
//! What hyper itself refuses before the router sees a request (a head larger than its buffer:
//! 431; a URI too long: 414; a malformed or conflicting `Content-Length`, bytes that are not
//! HTTP: 400) is answered by hyper with a bare status and no body: those never reach the
//! service, so they carry no problem document and no `x-request-id`.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{body::Body, extract::Request, http::header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    task::JoinSet,
};
use tower::ServiceExt;

use crate::{
    build_app_closing,
    config::Settings,
    error::ApiError,
    http::{App, request::REQUEST_ID},
};

/// A bound, not yet serving, instance of the service.
pub struct Server {
    listener: TcpListener,
    router: App,
    limits: ConnectionLimits,
    /// Tells long-lived responses (topic streams) that shutdown began.
    closing: watch::Sender<bool>,
}

#[derive(Clone, Copy)]
struct ConnectionLimits {
    header_read_timeout: Duration,
    max_connections: usize,
    grace: Duration,
    max_body_bytes: u64,
}

impl Server {
    /// Builds the app and binds `server.host:server.port`.
    pub async fn bind(settings: Settings) -> Result<Self, String> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(settings.server.header_read_timeout_ms),
            max_connections: settings.server.max_connections,
            grace: Duration::from_millis(settings.server.shutdown_grace_ms),
            max_body_bytes: settings.limits.max_body_bytes as u64,
        };
        let backend = settings.backend.mode.as_str();
        let redis = settings.redis.display_address();
        let (closing, closing_rx) = watch::channel(false);
        let router = build_app_closing(settings, closing_rx)?;
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        tracing::info!(backend, redis = %redis, "backend configured");
        Ok(Self {
            listener,
            router,
            limits,
            closing,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish for at most `server.shutdown_grace_ms`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let address = self.local_addr();
        tracing::info!("listening on http://{address}");
        let limits = self.limits;
        let (stopping_tx, stopping) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            };
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let router = self.router.clone();
            let stopping = stopping.clone();
            connections.spawn(async move {
                serve_connection(stream, router, limits, stopping).await;
                drop(permit);
            });
            // Reap finished connection tasks so the set does not grow.
            while connections.try_join_next().is_some() {}
        }
        drop(self.listener);
        tracing::info!("shutting down: draining in-flight requests");
        let _ = self.closing.send(true);
        let _ = stopping_tx.send(true);
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(limits.grace, drained).await.is_err() {
            tracing::warn!("in-flight requests still running after the grace period; exiting");
            connections.abort_all();
        }
    }
}

/// How often a stopping connection checks whether it is still serving a request.
const IDLE_CHECK: Duration = Duration::from_millis(20);

async fn serve_connection(
    stream: TcpStream,
    router: App,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counted = in_flight.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let guard = InFlight::enter(&counted);
        let router = router.clone();
        async move {
            let response = match declared_oversize(&request, limits.max_body_bytes) {
                Some(refusal) => refusal,
                None => router.oneshot(request.map(Body::new)).await?,
            };
            // hyper takes any body type: the guard wraps the body without boxing it again.
            Ok::<_, std::convert::Infallible>(response.map(|body| Guarded {
                inner: body,
                _guard: guard,
            }))
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = tokio::time::sleep(IDLE_CHECK) => {
                if in_flight.load(Ordering::Acquire) == 0 {
                    // No request being served: a head still arriving is not one.
                    return;
                }
            }
        }
    }
}

/// The 413 problem for a request whose declared `Content-Length` exceeds `max`, with the
/// request's `x-request-id` (or a new one), as the middleware would have added.
fn declared_oversize<B>(request: &Request<B>, max: u64) -> Option<axum::response::Response> {
    let declared: u64 = request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    if declared <= max {
        return None;
    }
    let mut response = axum::response::IntoResponse::into_response(ApiError::payload_too_large(
        "the request body is larger than limits.max_body_bytes",
    ));
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .cloned()
        .unwrap_or_else(crate::http::request::new_request_id);
    response.headers_mut().insert(REQUEST_ID, request_id);
    Some(response)
}

/// Counts a request as being served until its response body is done.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's `InFlight` until it is sent or dropped.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
