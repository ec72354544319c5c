//! Budgets of the shared resources a caller holds for a long time (topic streams): at most
//! `total` held at once on this instance, and at most `per_tenant` by one tenant. Taking one
//! past either limit is refused with 503 `over_capacity` and `Retry-After`, and changes
//! nothing; what was taken returns when its [`Held`] is dropped (the stream ended, the client
//! went away).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::{domain::ids::Tenant, error::ApiError};

/// Seconds a refused caller is told to wait.
const RETRY_AFTER_SECONDS: u32 = 5;

/// One kind of resource's budget.
#[derive(Debug)]
pub struct Budget {
    /// What is held, for the refusal: "open event streams".
    what: &'static str,
    /// The settings that set the limits, for the refusal.
    settings: (&'static str, &'static str),
    total: usize,
    per_tenant: usize,
    held: Mutex<Holdings>,
}

#[derive(Debug, Default)]
struct Holdings {
    total: usize,
    by_tenant: HashMap<Tenant, usize>,
}

/// One unit of a budget, given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    tenant: Tenant,
}

impl Budget {
    pub fn new(
        what: &'static str,
        settings: (&'static str, &'static str),
        total: usize,
        per_tenant: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            what,
            settings,
            total,
            per_tenant,
            held: Mutex::default(),
        })
    }

    fn holdings(&self) -> std::sync::MutexGuard<'_, Holdings> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One unit for `tenant`, or the refusal when this instance or the tenant is at its limit.
    pub fn take(self: &Arc<Self>, tenant: &Tenant) -> Result<Held, ApiError> {
        let mut held = self.holdings();
        let (setting, limit) = if held.total >= self.total {
            (self.settings.0, self.total)
        } else if held.by_tenant.get(tenant).copied().unwrap_or(0) >= self.per_tenant {
            (self.settings.1, self.per_tenant)
        } else {
            held.total += 1;
            *held.by_tenant.entry(tenant.clone()).or_default() += 1;
            return Ok(Held {
                budget: self.clone(),
                tenant: tenant.clone(),
            });
        };
        Err(ApiError::over_capacity(format!(
            "{limit} {} at most ({setting}): try again later",
            self.what
        ))
        .retry_after(RETRY_AFTER_SECONDS))
    }

    /// Units held now: on this instance, and by `tenant`.
    pub fn in_use(&self, tenant: &Tenant) -> (usize, usize) {
        let held = self.holdings();
        (held.total, held.by_tenant.get(tenant).copied().unwrap_or(0))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.budget.holdings();
        held.total = held.total.saturating_sub(1);
        if let Some(count) = held.by_tenant.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                held.by_tenant.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_instance_and_per_tenant_and_units_return() {
        let budget = Budget::new("streams", ("total", "per_tenant"), 3, 2);
        let (a, b, c) = (Tenant::new("a"), Tenant::new("b"), Tenant::new("c"));
        let a1 = budget.take(&a).unwrap();
        let _a2 = budget.take(&a).unwrap();
        let refused = budget.take(&a).unwrap_err();
        assert_eq!(
            (refused.status.as_u16(), refused.code),
            (503, "over_capacity")
        );
        assert!(refused.detail.contains("per_tenant"), "{}", refused.detail);
        assert_eq!(refused.retry_after, Some(RETRY_AFTER_SECONDS));
        let _b1 = budget.take(&b).unwrap();
        let full = budget.take(&c).unwrap_err();
        assert!(full.detail.contains("total"), "{}", full.detail);
        assert_eq!(budget.in_use(&a), (3, 2));
        drop(a1);
        assert_eq!(budget.in_use(&a), (2, 1));
        let _c1 = budget.take(&c).unwrap();
        assert_eq!(budget.in_use(&c), (3, 1));
    }
}
