//! The embedded backend: each capability's store implemented on `engine::Engine`, an
//! expiring ordered map. It is the whole backend in `memory` mode and the fallback in `auto`.

pub mod agent_state;
pub mod cache;
pub mod engine;
pub mod pending_action;
pub mod session;

use std::sync::{Arc, Mutex};

use self::engine::{Clear, Engine};
use super::Stores;

/// Owns every memory engine so that they can be emptied together: when `auto` mode returns to
/// Redis, what was written to memory while degraded is dropped, so a later outage can never
/// serve those stale entries again.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    engines: Arc<Mutex<Vec<Arc<dyn Clear>>>>,
}

impl MemoryBackend {
    /// A new engine, registered for `clear`. Must be called inside a tokio runtime.
    pub fn engine<K, V>(&self) -> Engine<K, V>
    where
        K: Ord + Clone + Send + Sync + 'static,
        V: Send + Sync + 'static,
    {
        let engine = Engine::new();
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(engine.clone()));
        engine
    }

    pub fn clear(&self) {
        for engine in self
            .engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            engine.clear();
        }
    }

    /// One store per capability, all on engines of this backend.
    pub fn stores(&self) -> Stores {
        Stores {
            cache: Arc::new(cache::MemoryCache::new(self)),
            pending_actions: Arc::new(pending_action::MemoryPendingActions::new(self)),
            agent_states: Arc::new(agent_state::MemoryAgentStates::new(self)),
            sessions: Arc::new(session::MemorySessions::new(self)),
        }
    }
}
