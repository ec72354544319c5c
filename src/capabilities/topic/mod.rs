//! topic.

pub mod http;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;

use crate::{
    capabilities::Declaration,
    metrics::{GaugeFamily, OutcomeFamily},
    store::failover::WhileDegraded,
};

/// Topic messages: `published`, `delivered` (to each subscriber).
pub const MESSAGES: OutcomeFamily = OutcomeFamily {
    name: "topic_messages",
    help: "Topic messages, by outcome (published, delivered to a subscriber)",
    outcomes: &["published", "delivered"],
};

/// Topic streams that got `event: reset`, by reason.
pub const RESETS: OutcomeFamily = OutcomeFamily {
    name: "topic_resets",
    help: "Topic streams sent event: reset, by reason",
    outcomes: &[
        "unknown_id",
        "history_trimmed",
        "lagged",
        "backend_switched",
    ],
};

/// Open topic streams.
pub const SUBSCRIBERS: GaugeFamily = GaugeFamily {
    name: "topic_subscribers",
    help: "Open topic streams on this instance",
};

pub const DECLARATION: Declaration = Declaration {
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    outcomes: &[MESSAGES, RESETS],
    gauges: &[SUBSCRIBERS],
    ..Declaration::new(
        "topics",
        WhileDegraded::ServeFromMemory,
        "local fan-out from memory; every open stream gets a reset at each switch, since ids of \
         one backend mean nothing in the other",
    )
};
