//! The capabilities, one folder each: its domain types (`model`), its port (`port`), its
//! adapters (`memory`, `redis` with its Lua scripts beside it), its HTTP handlers (`http`) and
//! its part of a backup (`backup`). Each folder's `mod.rs` declares the capability once
//! ([`Declaration`]); [`ALL`] lists the declarations, and everything that goes over every
//! capability (the degradation table, `/health`, backup kinds, metrics families, routes,
//! settings checks) reads that list.

pub mod agent_state;
pub mod cache;
pub mod lock;
pub mod pending_action;
pub mod queue;
pub mod rate_limit;
pub mod session;
pub mod topic;
pub mod usage;

use axum::Router;

use crate::{
    config::Settings,
    http::AppState,
    metrics::{GaugeFamily, OutcomeFamily},
    store::failover::WhileDegraded,
    transfer::Backup,
};

/// Every capability, in the order `/health`, the degradation table, backups and `/metrics`
/// list them. A new capability is one line here (and its folder).
pub const ALL: &[&Declaration] = &[
    &cache::DECLARATION,
    &pending_action::DECLARATION,
    &agent_state::DECLARATION,
    &session::DECLARATION,
    &rate_limit::DECLARATION,
    &lock::DECLARATION,
    &queue::DECLARATION,
    &topic::DECLARATION,
    &usage::USAGE,
    &usage::BUDGETS,
];

/// A capability, by the name `/health`, `backend.refuse_while_degraded` and backup records
/// use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capability(&'static str);

impl Capability {
    pub const fn named(name: &'static str) -> Self {
        Self(name)
    }

    pub fn name(self) -> &'static str {
        self.0
    }

    /// The capability of that name among [`ALL`].
    pub fn from_name(name: &str) -> Option<Self> {
        declaration(name).map(|d| d.capability)
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Everything the kernel needs to know of one capability.
pub struct Declaration {
    pub capability: Capability,
    /// What it does in `auto` mode while Redis is down (the README's degradation table).
    pub while_degraded: WhileDegraded,
    pub why: &'static str,
    /// The setting that chooses the policy instead of `while_degraded`, for capabilities that
    /// have one (`rate_limits.degraded`, `locks.degraded`, `budgets.degraded`).
    pub configured: Option<fn(&Settings) -> WhileDegraded>,
    /// Its routes and their part of the OpenAPI document (several capabilities of one folder
    /// give them once).
    pub routes: Option<fn() -> Router<AppState>>,
    pub openapi: Option<fn() -> utoipa::openapi::OpenApi>,
    /// Its MCP tools (each one a call of its routes), for `/mcp`.
    pub mcp:
        Option<fn() -> rmcp::handler::server::router::tool::ToolRouter<crate::http::mcp::Tools>>,
    /// Its records in a backup, when it has any.
    pub backup: Option<&'static dyn Backup>,
    /// Its counters by outcome, and gauges, in `/metrics`.
    pub outcomes: &'static [OutcomeFamily],
    pub gauges: &'static [GaugeFamily],
}

impl Declaration {
    /// A declaration with no routes, backup or metrics: fill in what the capability has.
    pub const fn new(name: &'static str, while_degraded: WhileDegraded, why: &'static str) -> Self {
        Self {
            capability: Capability::named(name),
            while_degraded,
            why,
            configured: None,
            routes: None,
            openapi: None,
            mcp: None,
            backup: None,
            outcomes: &[],
            gauges: &[],
        }
    }
}

/// The declaration of the capability named `name`.
pub fn declaration(name: &str) -> Option<&'static Declaration> {
    ALL.iter().copied().find(|d| d.capability.name() == name)
}
