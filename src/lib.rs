//! statekeeper: short-lived state over HTTP, on Redis with an in-memory fallback.
//!
//! The crate is laid out as a folder per capability around a small kernel:
//!
//! - [`capabilities`] holds one folder per capability (`cache`, `agent_state`,
//!   `pending_action`, `session`, `rate_limit`, `lock`, `queue`, `topic`, `usage`): its types
//!   and rules free of I/O (`model`), its port declared once (`port`), its memory and Redis
//!   adapters (`memory`, `redis` with its Lua scripts and its keys), its HTTP handlers and
//!   their OpenAPI (`http`), its part of a backup (`backup`) and its MCP tools (`mcp`). Each
//!   declares itself once in its `mod.rs`; [`capabilities::ALL`] lists the declarations, and
//!   the degradation table, routes, OpenAPI document, MCP tools, backup kinds and metrics
//!   families derive from it.
//! - [`config`] loads [`config::Settings`] from defaults, `config/default.toml`, an optional file
//!   and the environment (`config::load`), checks them (`config::validate`), and refuses
//!   secrets in files.
//! - [`telemetry`] sets up `tracing` (pretty or JSON lines, filtered by `log.level`/`RUST_LOG`).
//! - [`domain`] holds the value types every capability shares: ids, TTLs, globs.
//! - [`store`] is the storage kernel: `store::port::port!` (a port declared once, its failover
//!   routing generated), `store::memory` (an expiring ordered map with a byte budget),
//!   `store::redis` (deadpool with a manager of its own over multiplexed connections, a round
//!   trip per call save the exceptions `docs/redis.md` lists) and `store::failover`, the only
//!   place that decides which backend serves a call, by each capability's degradation row.
//! - [`http`] is the axum kernel: the router, extractors in the house error format
//!   (`http::extract`: JSON, the tenant, conditional writes), the middleware (`http::request`:
//!   request id, span, timeout, panics, in one layer around the router), health, metrics, MCP
//!   and the OpenAPI assembly.
//! - [`error`] maps every error to an RFC 9457 problem document: each store, domain and
//!   extractor error through one `From` impl (a capability's own errors: in its `http`), and
//!   one `IntoResponse`.
//! - [`transfer`] is the backup format and the framework each capability's `backup` plugs into.
//! - [`metrics`] holds the Prometheus metrics of one instance (`GET /metrics`).
//! - [`server`] accepts connections and serves the router with the connection limits (header
//!   read timeout, connection cap, shutdown that does not wait for half-sent requests).
//!
//! [`build_app`] assembles the router for given settings; [`Server`] binds it (port 0 allowed)
//! and serves it until a shutdown signal.
//!
//! `docs/adding-a-capability.md` lists the places a new capability touches, in order.
// The cluster connection's futures nest deeply enough to need more than the default 128.
#![recursion_limit = "256"]

pub mod capabilities;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod transfer;

use std::sync::Arc;

pub use crate::server::Server;
use crate::{
    config::Settings,
    http::{AppContext, AppState, extract::ApiKeys},
    store::failover::Failover,
};

/// The router with every route and the middleware, on the backend `settings` chooses. Must be
/// called inside a tokio runtime (the memory engine and the Redis probe spawn tasks).
pub fn build_app(settings: Settings) -> Result<http::App, String> {
    build_app_closing(settings, tokio::sync::watch::channel(false).1)
}

/// `build_app`, whose long-lived responses (topic streams) end when `closing` turns true: the
/// server's shutdown then does not wait for them.
pub fn build_app_closing(
    settings: Settings,
    closing: tokio::sync::watch::Receiver<bool>,
) -> Result<http::App, String> {
    let mut metrics = crate::metrics::Metrics::new();
    let (stores, failover) = Failover::build(&settings, &mut metrics)?;
    let api_keys = ApiKeys::new(&settings.auth.keys);
    if api_keys.is_empty() {
        tracing::warn!(
            "no API keys configured (auth.keys): every request runs as tenant \"default\" \
             without authentication"
        );
    }
    let streams = http::budget::Budget::new(
        "open event streams",
        ("topics.max_streams", "topics.max_streams_per_tenant"),
        settings.topics.max_streams,
        settings.topics.max_streams_per_tenant,
    );
    Ok(http::router(AppState::new(AppContext {
        stores,
        streams,
        settings: Arc::new(settings),
        failover,
        api_keys: Arc::new(api_keys),
        metrics,
        closing,
        started: std::time::Instant::now(),
    })))
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a signal that arrives while the server is busy before it first
/// polls it (under load, right after it starts listening) still shuts down gracefully instead
/// of killing the process. Must be called inside a tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {},
                        _ = terminate.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
