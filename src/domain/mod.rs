//! Types and rules of each capability, free of I/O: what a valid id, TTL or value is,
//! shared by every adapter so that memory and Redis can never disagree on them.

pub mod agent_state;
pub mod cache;
pub mod glob;
pub mod ids;
pub mod lock;
pub mod pending_action;
pub mod queue;
pub mod rate_limit;
pub mod session;
pub mod topic;
pub mod ttl;
pub mod usage;
