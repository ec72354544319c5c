//! Wakes this process's lock waiters when a lock may have been released: the memory adapter
//! signals on release, the Redis adapter when its subscriber receives a release message (a
//! release on any instance). A waiter registers before it tries, so a release between its try
//! and its wait is never missed; a signal that is missed anyway (a subscriber reconnecting) costs
//! at most the waiters' fallback poll.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use tokio::sync::Notify;

#[derive(Default)]
pub struct ReleaseSignals {
    waiting: Mutex<HashMap<String, Weak<Notify>>>,
}

impl ReleaseSignals {
    /// The signal of one lock (`tenant/name`), shared by every waiter for it while any waits.
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

    /// Wakes every waiter of the lock `key`.
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

/// The key of a lock's signal.
pub fn lock_key(
    tenant: &crate::domain::ids::Tenant,
    name: &crate::domain::lock::LockName,
) -> String {
    format!("{tenant}/{name}")
}
