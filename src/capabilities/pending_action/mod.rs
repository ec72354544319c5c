//! pending action.

pub mod backup;
pub mod http;
pub mod mcp;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;

use crate::{
    capabilities::Declaration, http::mcp::Tools, metrics::OutcomeFamily,
    store::failover::WhileDegraded,
};

/// Pending-action confirms, by outcome: `confirmed`, `replayed` (a retry with the winner's
/// Idempotency-Key), `already_confirmed`, `already_cancelled`, `not_found`.
pub const CONFIRMS: OutcomeFamily = OutcomeFamily {
    name: "pending_action_confirms",
    help: "Pending-action confirms, by outcome",
    outcomes: &[
        "confirmed",
        "replayed",
        "already_confirmed",
        "already_cancelled",
        "not_found",
    ],
};

pub const DECLARATION: Declaration = Declaration {
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    mcp: Some(Tools::pending_action_tools),
    backup: Some(&backup::PendingActionBackup),
    outcomes: &[CONFIRMS],
    ..Declaration::new(
        "pending_actions",
        WhileDegraded::ServeFromMemory,
        "a token lives in the one store that made it, so exactly-once holds",
    )
};
