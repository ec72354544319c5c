//! Types and rules of each capability, free of I/O: what a valid id, TTL or value is,
//! shared by every adapter so that memory and Redis can never disagree on them.

pub mod glob;
pub mod ids;
pub mod ttl;
