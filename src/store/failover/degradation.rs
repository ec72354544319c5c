//! What each capability does while Redis is down in `auto` mode: the degradation table.

use super::*;

/// A capability, as the degradation table and `/health` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Cache,
    AgentStates,
    PendingActions,
    Sessions,
    RateLimits,
    Locks,
    Queues,
    Topics,
    Usage,
    Budgets,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::AgentStates => "agent_states",
            Self::PendingActions => "pending_actions",
            Self::Sessions => "sessions",
            Self::RateLimits => "rate_limits",
            Self::Locks => "locks",
            Self::Queues => "queues",
            Self::Topics => "topics",
            Self::Usage => "usage",
            Self::Budgets => "budgets",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        DEGRADATION
            .iter()
            .map(|row| row.capability)
            .find(|c| c.name() == name)
    }
}

/// What a capability does in `auto` mode while Redis is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhileDegraded {
    /// Served by the memory backend; `/health` says `degraded`.
    ServeFromMemory,
    /// 503 `backend_unavailable` with `Retry-After`: for state that two instances, each on its
    /// own memory, would get wrong (a lock granted twice, jobs that vanish on recovery).
    Refuse,
    /// Answered as if nothing limited it (rate limits that fail open), saying `degraded`.
    Allow,
    /// Taken by memory and journalled; the journal is replayed to Redis when it returns,
    /// before traffic goes back (usage events: nothing metered is lost).
    JournalAndReplay,
}

impl WhileDegraded {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServeFromMemory => "serve_from_memory",
            Self::Refuse => "refuse",
            Self::Allow => "allow",
            Self::JournalAndReplay => "journal_and_replay",
        }
    }

    /// Whether the memory backend takes the capability's calls.
    pub(crate) fn uses_memory(self) -> bool {
        matches!(self, Self::ServeFromMemory | Self::JournalAndReplay)
    }
}

/// One row of the degradation table.
pub struct Degradation {
    pub capability: Capability,
    pub while_degraded: WhileDegraded,
    pub why: &'static str,
    /// The setting that chooses the policy instead of `while_degraded`, for capabilities that
    /// have one (`rate_limits.degraded`, `locks.degraded`, `budgets.degraded`).
    pub configured: Option<fn(&Settings) -> WhileDegraded>,
}

/// What each capability does while Redis is down in `auto` mode (the README's degradation
/// table repeats it). A capability listed in `backend.refuse_while_degraded` refuses instead;
/// a row with a setting (`configured`) follows it.
pub const DEGRADATION: [Degradation; 10] = [
    Degradation {
        capability: Capability::Cache,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "availability first: a cache miss is the caller's normal case",
        configured: None,
    },
    Degradation {
        capability: Capability::Sessions,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "availability first: signed-in users stay signed in on this instance",
        configured: None,
    },
    Degradation {
        capability: Capability::AgentStates,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "availability first: a conversation goes on from what this instance holds",
        configured: None,
    },
    Degradation {
        capability: Capability::PendingActions,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "a token lives in the one store that made it, so exactly-once holds",
        configured: None,
    },
    Degradation {
        capability: Capability::RateLimits,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "per-instance limits (`rate_limits.degraded`: local, allow or refuse): the caller \
              picks fail-open or fail-closed",
        configured: Some(|settings| match settings.rate_limits.degraded {
            RateLimitDegraded::Local => WhileDegraded::ServeFromMemory,
            RateLimitDegraded::Allow => WhileDegraded::Allow,
            RateLimitDegraded::Refuse => WhileDegraded::Refuse,
        }),
    },
    Degradation {
        capability: Capability::Locks,
        while_degraded: WhileDegraded::Refuse,
        why: "two instances on their own memory would grant one lock twice (`locks.degraded = \
              \"local\"` serves from memory, for a single instance)",
        configured: Some(|settings| local_or_refuse(settings.locks.degraded)),
    },
    Degradation {
        capability: Capability::Queues,
        while_degraded: WhileDegraded::Refuse,
        why: "a job accepted into memory would vanish, or run twice, when Redis returns",
        configured: None,
    },
    Degradation {
        capability: Capability::Topics,
        while_degraded: WhileDegraded::ServeFromMemory,
        why: "local fan-out from memory; every open stream gets a reset at each switch, since ids \
              of one backend mean nothing in the other",
        configured: None,
    },
    Degradation {
        capability: Capability::Usage,
        while_degraded: WhileDegraded::JournalAndReplay,
        why: "nothing metered is lost: events are counted in memory and replayed to Redis \
              (deduplicated by event_id) before traffic returns; reading totals refuses",
        configured: None,
    },
    Degradation {
        capability: Capability::Budgets,
        while_degraded: WhileDegraded::Refuse,
        why: "two instances on their own memory would each grant the whole budget \
              (`budgets.degraded = \"local\"` serves from memory, for a single instance)",
        configured: Some(|settings| local_or_refuse(settings.budgets.degraded)),
    },
];

/// `local` (memory) or `refuse`: the settings of locks and budgets.
pub(crate) fn local_or_refuse(degraded: LockDegraded) -> WhileDegraded {
    match degraded {
        LockDegraded::Refuse => WhileDegraded::Refuse,
        LockDegraded::Local => WhileDegraded::ServeFromMemory,
    }
}

/// The policy of each capability for these settings.
pub(crate) fn policies(settings: &Settings) -> Vec<(Capability, WhileDegraded)> {
    DEGRADATION
        .iter()
        .map(|row| {
            let refused = settings
                .backend
                .refuse_while_degraded
                .iter()
                .any(|name| name == row.capability.name());
            let policy = if refused || settings.backend.mode == BackendMode::Redis {
                WhileDegraded::Refuse
            } else {
                row.configured
                    .map_or(row.while_degraded, |configured| configured(settings))
            };
            (row.capability, policy)
        })
        .collect()
}
