//! The HTTP kernel: the router and the middleware stack (`router`), the state every handler
//! reaches (`state`), the extractors, budgets, health, metrics, admin, MCP and the OpenAPI
//! assembly. Each capability's handlers live in its folder (`capabilities::<name>::http`).

pub mod admin;
pub mod budget;
pub mod extract;
pub mod health;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod request;
pub mod router;
pub mod state;

pub use self::{
    router::{App, router},
    state::{AppContext, AppState},
};
