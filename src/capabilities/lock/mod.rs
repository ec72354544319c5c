//! lock.

pub mod backup;
pub mod http;
pub mod mcp;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;

use crate::{
    capabilities::Declaration,
    http::mcp::Tools,
    metrics::OutcomeFamily,
    store::failover::{WhileDegraded, local_or_refuse},
};

/// Lock calls, by outcome: `granted`, `conflict` (held by another), `extended`, `released`,
/// `lost` (extend or release of a lock no longer held).
pub const OPERATIONS: OutcomeFamily = OutcomeFamily {
    name: "lock_operations",
    help: "Lock calls, by outcome (granted, conflict, extended, released, lost)",
    outcomes: &["granted", "conflict", "extended", "released", "lost"],
};

pub const DECLARATION: Declaration = Declaration {
    configured: Some(|settings| local_or_refuse(settings.locks.degraded)),
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    mcp: Some(Tools::lock_tools),
    backup: Some(&backup::LockBackup),
    outcomes: &[OPERATIONS],
    ..Declaration::new(
        "locks",
        WhileDegraded::Refuse,
        "two instances on their own memory would grant one lock twice (`locks.degraded = \
         \"local\"` serves from memory, for a single instance)",
    )
};
