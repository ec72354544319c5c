//! `AppState`: what every handler can reach.

use super::budget;
use std::sync::Arc;

use crate::{config::Settings, store::Stores, store::failover::Failover};

use super::extract::ApiKeys;

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
    /// Open topic streams (`topics.max_streams`, `topics.max_streams_per_tenant`).
    pub streams: Arc<budget::Budget>,
}
