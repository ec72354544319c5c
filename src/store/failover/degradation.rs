//! What each capability does while Redis is down in `auto` mode: the degradation table, one
//! row in each capability's declaration (`capabilities::ALL`).

use super::*;
use crate::capabilities::{ALL, Capability};

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

/// `local` (memory) or `refuse`: the settings of locks and budgets.
pub fn local_or_refuse(degraded: LockDegraded) -> WhileDegraded {
    match degraded {
        LockDegraded::Refuse => WhileDegraded::Refuse,
        LockDegraded::Local => WhileDegraded::ServeFromMemory,
    }
}

/// The policy of each capability for these settings.
pub(crate) fn policies(settings: &Settings) -> Vec<(Capability, WhileDegraded)> {
    ALL.iter()
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
