//! The store conformance suite: every behaviour of each store port, run against the memory
//! adapters and the Redis adapters alike (`store_conformance!`), so the two never disagree.

#[path = "../common/mod.rs"]
mod common;

mod agent_states;
mod cache;
mod inventories;
mod locks;
mod pending_actions;
mod queues;
mod rate_limits;
mod sessions;
mod topics;
mod usage;
