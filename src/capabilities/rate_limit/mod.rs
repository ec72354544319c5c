//! rate limit.

pub mod http;
pub mod mcp;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;

use crate::{
    capabilities::Declaration, config::RateLimitDegraded, http::mcp::Tools, metrics::OutcomeFamily,
    store::failover::WhileDegraded,
};

/// Rate-limit checks, by outcome: `allowed`, `denied`, `peeked` (a peek or a cost of 0).
pub const DECISIONS: OutcomeFamily = OutcomeFamily {
    name: "rate_limit_decisions",
    help: "Rate-limit checks, by outcome (allowed, denied, peeked)",
    outcomes: &["allowed", "denied", "peeked"],
};

pub const DECLARATION: Declaration = Declaration {
    configured: Some(|settings| match settings.rate_limits.degraded {
        RateLimitDegraded::Local => WhileDegraded::ServeFromMemory,
        RateLimitDegraded::Allow => WhileDegraded::Allow,
        RateLimitDegraded::Refuse => WhileDegraded::Refuse,
    }),
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    mcp: Some(Tools::rate_limit_tools),
    outcomes: &[DECISIONS],
    ..Declaration::new(
        "rate_limits",
        WhileDegraded::ServeFromMemory,
        "per-instance limits (`rate_limits.degraded`: local, allow or refuse): the caller picks \
         fail-open or fail-closed",
    )
};
