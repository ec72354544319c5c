//! cache.

pub mod http;
pub mod memory;
pub mod model;
pub mod near;
pub mod port;
pub mod redis;
