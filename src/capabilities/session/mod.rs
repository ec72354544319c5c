//! session.

pub mod backup;
pub mod http;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;

use crate::{capabilities::Declaration, store::failover::WhileDegraded};

pub const DECLARATION: Declaration = Declaration {
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    backup: Some(&backup::SessionBackup),
    ..Declaration::new(
        "sessions",
        WhileDegraded::ServeFromMemory,
        "availability first: signed-in users stay signed in on this instance",
    )
};
