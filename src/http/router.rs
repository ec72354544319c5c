//! The router: every route, with the middleware stack around it.

use super::{admin, health, mcp, metrics, openapi, request, state::AppState};
use std::time::Duration;

use axum::{Router, extract::DefaultBodyLimit, http::StatusCode};
use tower::Layer;

use crate::{config::Settings, error::ApiError};

/// Every route, with the middleware stack around it.
pub fn router(state: AppState) -> App {
    let settings = state.settings.clone();
    let capabilities = crate::capabilities::ALL
        .iter()
        .filter_map(|declaration| declaration.routes)
        .fold(Router::new(), |routes, more| routes.merge(more()));
    let routes = Router::new()
        .merge(health::routes())
        .merge(openapi::routes())
        .merge(capabilities)
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
    let mut routes = routes;
    if settings.mcp.enabled {
        // The tools call the routes above in-process, through the same middleware.
        let tools = mcp::service(middleware(routes.clone(), &settings), state.clone());
        routes = routes.nest_service("/mcp", tools);
    }
    if settings.metrics.enabled {
        // Per route, after routing, so that the route's template is known.
        routes = routes.layer(metrics::TrackLayer {
            metrics: state.metrics.http.clone(),
            timeout: Duration::from_millis(settings.server.request_timeout_ms),
        });
    }
    middleware(routes, &settings)
}

/// The middleware, outermost first: the request layer (`request.rs`: request id, span,
/// timeout, panics) → body limit. (A declared `Content-Length` over the body limit is refused
/// before the router, by `server`.)
///
/// Around the router, once, rather than with `Router::layer`, which wraps every route in the
/// stack: each request then cloned the boxed stack and boxed its future at each layer. And as a
/// service of its own type, not nested in an outer `Router`, whose routing (a fallback's boxed
/// clone and future, its extensions) each request would pay a second time.
fn middleware(routes: Router, settings: &Settings) -> App {
    request::RequestLayer {
        timeout: Duration::from_millis(settings.server.request_timeout_ms),
    }
    .layer(DefaultBodyLimit::max(settings.limits.max_body_bytes).layer(routes))
}

/// The whole service: the router inside the middleware (`middleware`).
pub type App = request::RequestService<<DefaultBodyLimit as Layer<Router>>::Service>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, http::Request, response::Response, routing::get};
    use tower::ServiceExt;

    fn stack(routes: Router, timeout_ms: u64) -> App {
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

    #[tokio::test]
    async fn the_request_id_is_taken_or_made_and_echoed() {
        let app = stack(Router::new().route("/ok", get(|| async { "ok" })), 1000);
        let given = Request::get("/ok")
            .header("x-request-id", "req-7")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(given).await.unwrap();
        assert_eq!(response.headers()["x-request-id"], "req-7");
        let response = app
            .oneshot(Request::get("/ok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let made = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(made).is_ok(), "{made}");
    }

    /// The metrics layer sits inside the request layer: a request that layer cuts short still
    /// counts with the status the caller got.
    #[tokio::test]
    async fn timeouts_and_panics_count_with_the_status_answered() {
        let registry = crate::metrics::Metrics::new();
        let routes = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/boom",
                get(|| async {
                    let internals: Vec<&str> = Vec::new();
                    internals[0]
                }),
            )
            .layer(metrics::TrackLayer {
                metrics: registry.http.clone(),
                timeout: Duration::from_millis(50),
            });
        let app = stack(routes, 50);
        for (path, status) in [("/slow", 503), ("/boom", 500)] {
            let request = Request::get(path).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), status);
        }
        let text = registry.render();
        for (route, status) in [("/slow", "503"), ("/boom", "500")] {
            let counted = text.lines().any(|line| {
                line.starts_with("statekeeper_http_requests_total")
                    && line.contains(&format!("route=\"{route}\""))
                    && line.contains(&format!("status=\"{status}\""))
                    && line.ends_with(" 1")
            });
            assert!(counted, "{route} {status} not counted in:\n{text}");
        }
    }
}
