//! agent state.

pub mod backup;
pub mod http;
pub mod mcp;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;

use crate::{capabilities::Declaration, http::mcp::Tools, store::failover::WhileDegraded};

pub const DECLARATION: Declaration = Declaration {
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    mcp: Some(Tools::agent_state_tools),
    backup: Some(&backup::AgentStateBackup),
    ..Declaration::new(
        "agent_states",
        WhileDegraded::ServeFromMemory,
        "availability first: a conversation goes on from what this instance holds",
    )
};
