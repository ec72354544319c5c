//! The HTTP tests, in one binary so the suite links once: each module is one area, and
//! `common` (shared with the conformance suite) spawns the service and private Redis servers.

#[path = "../common/mod.rs"]
mod common;

mod agent_states;
mod auth;
mod backup;
mod bad_input;
mod cache;
mod cache_ops;
mod cli;
mod cluster;
mod connections;
mod failover;
mod handback;
mod hardening;
mod histories;
mod locks;
mod mcp;
mod metrics;
mod near_cache;
mod openapi;
mod outages;
mod pending_actions;
mod queues;
mod rate_limits;
mod redis_tls;
mod restore_properties;
mod sessions;
mod topics;
mod usage;
