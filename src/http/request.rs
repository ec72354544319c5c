//! The middleware every request passes, as one layer around the router: its request id (the
//! caller's `x-request-id`, or a new UUID v4) in the span and echoed on the response; a
//! `request` span carrying it, method and path; `server.request_timeout_ms` (503 `timeout`);
//! a panic in a handler answered as an opaque 500 (`internal`) and logged. A 5xx answer is
//! logged at error level with its latency. An error answer to an HTTP/1 request that carries a
//! body says `Connection: close`: it may have been given before the body was read (a bad
//! header, a missing key), and hyper then closes the connection, so a client that reused it
//! for its next request would find it gone without an answer.
//!
//! One hand-written service rather than tower-http's request-id, trace, timeout and catch-panic
//! layers plus axum's `HandleErrorLayer`: stacked, they cost about a fifth of the CPU of a
//! cache GET on Redis (each its own future, an extension and header copies per request);
//! this does the same work with one future, and allocates only a made-up id's header value.

use std::{
    convert::Infallible,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, Request, Version, header},
    response::{IntoResponse, Response},
};
use tower::{Layer, Service};
use tracing::{Instrument, instrument::Instrumented};

use crate::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct RequestLayer {
    /// `server.request_timeout_ms`.
    pub timeout: Duration,
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> RequestService<S> {
        RequestService {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Clone)]
pub struct RequestService<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<Request<Body>> for RequestService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Nothing below reads the id from the request, so a made-up one is not added to it.
        let id = match request.headers().get(REQUEST_ID) {
            Some(id) => id.clone(),
            None => new_request_id(),
        };
        let carries_body = request.version() <= Version::HTTP_11 && {
            let headers = request.headers();
            headers.contains_key(header::TRANSFER_ENCODING)
                || headers
                    .get(header::CONTENT_LENGTH)
                    .is_some_and(|length| length.as_bytes() != b"0")
        };
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = id.to_str().unwrap_or(""),
        );
        let call = {
            let _entered = span.enter();
            catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
        };
        Answer {
            state: match call {
                Ok(inner) => State::Serving {
                    inner: inner.instrument(span),
                },
                Err(panic) => State::Panicked {
                    response: Some(panicked(panic.as_ref())),
                },
            },
            deadline: tokio::time::sleep(self.timeout),
            timeout: self.timeout,
            id,
            carries_body,
        }
    }
}

/// A new UUID v4 as a header value.
pub fn new_request_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

pin_project_lite::pin_project! {
    /// The answer to one request: the router's, unless the deadline or a panic comes first.
    pub struct Answer<F> {
        #[pin]
        state: State<F>,
        #[pin]
        deadline: tokio::time::Sleep,
        // With the deadline, when the request began: no clock read unless a 5xx is logged.
        timeout: Duration,
        id: HeaderValue,
        // An HTTP/1 request with a body: an error answer closes the connection (module docs).
        carries_body: bool,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Serving { #[pin] inner: Instrumented<F> },
        Panicked { response: Option<Response> },
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut response = match this.state.project() {
            StateProj::Serving { inner } => {
                match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                    Ok(Poll::Ready(Ok(response))) => response,
                    Ok(Poll::Ready(Err(never))) => match never {},
                    Err(panic) => panicked(panic.as_ref()),
                    Ok(Poll::Pending) => match this.deadline.as_mut().poll(cx) {
                        Poll::Ready(()) => ApiError::timeout(
                            "the request took longer than server.request_timeout_ms",
                        )
                        .into_response(),
                        Poll::Pending => return Poll::Pending,
                    },
                }
            }
            StateProj::Panicked { response } => response
                .take()
                .unwrap_or_else(|| ApiError::internal().into_response()),
        };
        if !response.headers().contains_key(REQUEST_ID) {
            response.headers_mut().insert(REQUEST_ID, this.id.clone());
        }
        let status = response.status();
        if *this.carries_body && (status.is_client_error() || status.is_server_error()) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status.is_server_error() {
            let left = this
                .deadline
                .deadline()
                .saturating_duration_since(tokio::time::Instant::now());
            tracing::error!(
                status = status.as_u16(),
                latency_ms = this.timeout.saturating_sub(left).as_millis() as u64,
                request_id = this.id.to_str().unwrap_or(""),
                "response failed"
            );
        }
        Poll::Ready(Ok(response))
    }
}

/// The opaque 500 for a handler's panic, which is logged with its message.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "handler panicked");
    ApiError::internal().into_response()
}
