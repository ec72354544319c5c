//! The HTTP layer: one module per resource (handlers and their DTOs with OpenAPI annotations),
//! the extractors, and the middleware stack, built in one function.

pub mod admin;
pub mod agent_state;
pub mod cache;
pub mod extract;
pub mod health;
pub mod lock;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod pending_actions;
pub mod queue;
pub mod rate_limit;
pub mod session;
pub mod topic;
pub mod usage;

use std::{sync::Arc, time::Duration};

use axum::{
    BoxError, Router,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    http::{Request, StatusCode},
    response::Response,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{config::Settings, error::ApiError, store::Stores, store::failover::Failover};

use self::extract::ApiKeys;

/// What every handler can reach. One `Arc` around it all: axum clones the state for every
/// `State` extractor, and one reference count is cheaper than one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl AppState {
    pub fn new(context: AppContext) -> Self {
        Self(Arc::new(context))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

/// The shared parts of the service, built once by `build_app`.
pub struct AppContext {
    pub stores: Stores,
    pub settings: Arc<Settings>,
    pub failover: Arc<Failover>,
    pub api_keys: Arc<ApiKeys>,
    pub metrics: crate::metrics::Metrics,
    /// Turns true when the server begins to shut down.
    pub closing: tokio::sync::watch::Receiver<bool>,
    pub started: std::time::Instant,
}

/// Every route, with the middleware stack around it.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    let routes = Router::new()
        .merge(health::routes())
        .merge(openapi::routes())
        .merge(cache::routes())
        .merge(pending_actions::routes())
        .merge(agent_state::routes())
        .merge(session::routes())
        .merge(rate_limit::routes())
        .merge(lock::routes())
        .merge(queue::routes())
        .merge(topic::routes())
        .merge(usage::routes())
        .merge(admin::routes())
        .merge(if settings.metrics.enabled {
            metrics::routes()
        } else {
            Router::new()
        })
        .merge(if settings.docs.enabled {
            openapi::docs()
        } else {
            Router::new()
        })
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept this method",
            )
        })
        .with_state(state.clone());
    let mut routes = middleware(routes, &settings);
    if settings.mcp.enabled {
        // The tools call the routes above in-process; `/mcp` itself sits in the same stack.
        let tools = mcp::service(routes.clone());
        routes = routes.merge(middleware(
            Router::new().nest_service("/mcp", tools),
            &settings,
        ));
    }
    if settings.metrics.enabled {
        // Per route, after routing (so the route's template is known) and outside the rest of
        // the stack, so that timeouts and refusals are counted as answered.
        routes.layer(metrics::TrackLayer(state.metrics.http.clone()))
    } else {
        routes
    }
}

/// The middleware stack, outermost first: request id (taken from `x-request-id` or made) →
/// trace span carrying it → echo it on the response → request timeout → body limit → catch
/// panics as an opaque 500. (A declared `Content-Length` over the body limit is refused before
/// the router, by `server`.)
fn middleware(routes: Router, settings: &Settings) -> Router {
    let timeout = Duration::from_millis(settings.server.request_timeout_ms);
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                    )
                }),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(HandleErrorLayer::new(|_: BoxError| async {
                ApiError::timeout("the request took longer than server.request_timeout_ms")
            }))
            .layer(tower::timeout::TimeoutLayer::new(timeout))
            .layer(DefaultBodyLimit::max(settings.limits.max_body_bytes))
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "handler panicked");
    axum::response::IntoResponse::into_response(ApiError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, routing::get};
    use tower::ServiceExt;

    fn stack(routes: Router, timeout_ms: u64) -> Router {
        let mut settings = Settings::default();
        settings.server.request_timeout_ms = timeout_ms;
        middleware(routes, &settings)
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_panic_becomes_an_opaque_500() {
        let app = stack(
            Router::new().route(
                "/boom",
                get(|| async {
                    let internals: Vec<&str> = Vec::new();
                    internals[0]
                }),
            ),
            1000,
        );
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(response.headers().contains_key("x-request-id"));
        let problem = body_json(response).await;
        assert_eq!(problem["code"], "internal");
        assert!(!problem.to_string().contains("index out of bounds"));
    }

    #[tokio::test]
    async fn a_slow_request_times_out_as_a_problem() {
        let app = stack(
            Router::new().route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            ),
            50,
        );
        let response = app
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_json(response).await["code"], "timeout");
    }
}
