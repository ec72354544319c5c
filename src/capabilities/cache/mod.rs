//! cache.

pub mod backup;
pub mod http;
pub mod mcp;
pub mod memory;
pub mod model;
pub mod near;
pub mod port;
pub mod redis;

use crate::{
    capabilities::Declaration, http::mcp::Tools, metrics::OutcomeFamily,
    store::failover::WhileDegraded,
};

/// Cache reads of one key, by outcome.
pub const LOOKUPS: OutcomeFamily = OutcomeFamily {
    name: "cache_lookups",
    help: "Cache reads of one key, by outcome (hit, miss)",
    outcomes: &["hit", "miss"],
};

pub const DECLARATION: Declaration = Declaration {
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    mcp: Some(Tools::cache_tools),
    backup: Some(&backup::CacheBackup),
    outcomes: &[LOOKUPS],
    ..Declaration::new(
        "cache",
        WhileDegraded::ServeFromMemory,
        "availability first: a cache miss is the caller's normal case",
    )
};
