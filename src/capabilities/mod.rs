//! The capabilities, one folder each: its domain types (`model`), its port (`port`), its
//! adapters (`memory`, `redis` with its Lua scripts beside it) and its HTTP handlers (`http`).

pub mod agent_state;
pub mod cache;
pub mod lock;
pub mod pending_action;
pub mod queue;
pub mod rate_limit;
pub mod session;
pub mod topic;
pub mod usage;
