//! rate limit.

pub mod http;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;
