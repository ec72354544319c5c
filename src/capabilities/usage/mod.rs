//! usage.

pub mod backup;
pub mod http;
pub mod memory;
pub mod model;
pub mod port;
pub mod redis;

use crate::{
    capabilities::Declaration,
    metrics::OutcomeFamily,
    store::failover::{WhileDegraded, local_or_refuse},
};

/// Usage events: `counted`, `duplicate` (an `event_id` counted before).
pub const EVENTS: OutcomeFamily = OutcomeFamily {
    name: "usage_events",
    help: "Usage events, by outcome (counted, duplicate)",
    outcomes: &["counted", "duplicate"],
};

/// Budget reservations: `granted`, `exceeded`, `committed`, `released`.
pub const RESERVATIONS: OutcomeFamily = OutcomeFamily {
    name: "budget_reservations",
    help: "Budget reservations, by outcome (granted, exceeded, committed, released)",
    outcomes: &["granted", "exceeded", "committed", "released"],
};

/// Usage events and their totals. The routes of both (usage and budgets) are given here.
pub const USAGE: Declaration = Declaration {
    routes: Some(http::routes),
    openapi: Some(<http::Api as utoipa::OpenApi>::openapi),
    backup: Some(&backup::UsageBackup),
    outcomes: &[EVENTS],
    ..Declaration::new(
        "usage",
        WhileDegraded::JournalAndReplay,
        "nothing metered is lost: events are counted in memory and replayed to Redis \
         (deduplicated by event_id) before traffic returns; reading totals refuses",
    )
};

/// Budgets over usage and their reservations.
pub const BUDGETS: Declaration = Declaration {
    configured: Some(|settings| local_or_refuse(settings.budgets.degraded)),
    backup: Some(&backup::BudgetBackup),
    outcomes: &[RESERVATIONS],
    ..Declaration::new(
        "budgets",
        WhileDegraded::Refuse,
        "two instances on their own memory would each grant the whole budget \
         (`budgets.degraded = \"local\"` serves from memory, for a single instance)",
    )
};
