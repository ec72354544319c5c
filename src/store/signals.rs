//! Wakes this process's waiters when what they wait for may have happened: a lock released, a
//! job enqueued. The memory adapters signal directly, the Redis adapters when their subscriber
//! receives the message a script published (on any instance). A waiter registers before it
//! tries (`store::wait_until`), so a signal between its try and its wait is never missed; one
//! missed anyway (a subscriber reconnecting) costs at most the fallback poll.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Signals {
    waiting: Mutex<HashMap<String, Weak<Notify>>>,
}

impl Signals {
    /// The signal of one lock or queue (`tenant/name`), shared by its waiters while any waits.
    pub fn watch(&self, key: &str) -> Arc<Notify> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(signal) = waiting.get(key).and_then(Weak::upgrade) {
            return signal;
        }
        if waiting.len() >= 1024 && waiting.len().is_power_of_two() {
            waiting.retain(|_, signal| signal.strong_count() > 0);
        }
        let signal = Arc::new(Notify::new());
        waiting.insert(key.to_string(), Arc::downgrade(&signal));
        signal
    }

    /// Wakes every waiter of `key`.
    pub fn notify(&self, key: &str) {
        let signal = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .and_then(Weak::upgrade);
        if let Some(signal) = signal {
            signal.notify_waiters();
        }
    }

    /// Wakes every waiter (after a subscriber reconnected: releases may have been missed).
    pub fn notify_all(&self) {
        let signals: Vec<_> = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for signal in signals {
            signal.notify_waiters();
        }
    }
}

/// The key of a lock's or a queue's signal, as the scripts publish it: `tenant/name`.
pub fn signal_key(tenant: &crate::domain::ids::Tenant, name: &impl std::fmt::Display) -> String {
    format!("{tenant}/{name}")
}
