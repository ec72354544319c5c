//! The usage port: the trait its adapters implement and the outcomes of its calls.

use crate::{
    capabilities::usage::model::{
        Bucket, BudgetId, BudgetRule, BudgetStatus, Committed, MetricName, Period, ReservationId,
        Reserved, Subject, Total, UsageEvent, UsageLimits,
    },
    domain::ids::Tenant,
};

use crate::store::{IdPage, StoreResult};

crate::store::port::port! {
    /// Metering (`usage::model`): totals per subject, metric and period, each event once.
    pub trait UsageStore {
        // Not repeated: a second call would find the first's dedup key and answer false.
        /// Adds the event to its day's and month's totals, unless its `event_id` was counted for
        /// this subject within `limits.dedup_window_ms`: true when counted now.
        #[repeat(false)]
        async fn record(
            &self,
            tenant: &Tenant,
            subject: &Subject,
            event: &UsageEvent,
            limits: UsageLimits,
        ) -> StoreResult<bool>;

        /// The totals of each bucket (`Period::buckets`) for one metric or all; zero totals are
        /// left out.
        #[repeat(true)]
        #[memory(false)]
        async fn totals(
            &self,
            tenant: &Tenant,
            subject: &Subject,
            metric: Option<&MetricName>,
            period: Period,
            buckets: &[String],
        ) -> StoreResult<Vec<Total>>;

        /// One page of the tenant's totals buckets, each `subject/period/bucket` (such as
        /// `user-1/day/2026-11-26`), for backups; as `CacheStore::inventory`.
        #[repeat(true)]
        #[memory(false)]
        async fn inventory(
            &self,
            tenant: &Tenant,
            cursor: Option<&str>,
            limit: usize,
        ) -> StoreResult<IdPage>;

        /// One bucket's totals (metric and amount, in metric order) and the milliseconds it has
        /// left, for backups; `None` when it holds none.
        #[repeat(true)]
        #[memory(false)]
        async fn bucket(
            &self,
            tenant: &Tenant,
            subject: &Subject,
            bucket: &Bucket,
        ) -> StoreResult<Option<(Vec<(String, u64)>, u64)>>;
        // Repeatable: setting the same totals twice leaves them the same.

        /// Sets one bucket's totals from a backup: each metric to `amount`, or with `at_least` to
        /// the higher of both; the bucket lives at least `ttl_ms` more. Returns how many totals
        /// changed.
        #[repeat(true)]
        #[memory(false)]
        async fn restore_totals(
            &self,
            tenant: &Tenant,
            subject: &Subject,
            bucket: &Bucket,
            totals: &[(String, u64)],
            ttl_ms: u64,
            at_least: bool,
        ) -> StoreResult<u64>;
    }
}

crate::store::port::port! {
/// Budgets (`usage::model`): reservations held atomically against a limit per period.
/// `now_us` is the caller's clock for the period buckets; reservations expire by the backend's.
    pub trait BudgetStore {
        #[repeat(true)]
        async fn set(
            &self,
            tenant: &Tenant,
            budget: &BudgetId,
            rule: BudgetRule,
            now_us: u64,
        ) -> StoreResult<BudgetStatus>;

        #[repeat(true)]
        async fn get(
            &self,
            tenant: &Tenant,
            budget: &BudgetId,
            now_us: u64,
        ) -> StoreResult<Option<BudgetStatus>>;

        /// Removes the budget (reservations stay, to be committed or released): whether one was.
        #[repeat(false)]
        async fn delete(&self, tenant: &Tenant, budget: &BudgetId) -> StoreResult<bool>;

        /// Holds `amount` for `ttl_ms` when it fits the budget (always, without one).
        #[repeat(false)]
        async fn reserve(
            &self,
            tenant: &Tenant,
            budget: &BudgetId,
            id: &ReservationId,
            amount: u64,
            ttl_ms: u64,
            now_us: u64,
        ) -> StoreResult<Reserved>;

        /// Records `amount` (at most what was reserved) as usage, in the same step that ends the
        /// reservation; the rest returns to the budget.
        #[repeat(false)]
        async fn commit(
            &self,
            tenant: &Tenant,
            budget: &BudgetId,
            id: &ReservationId,
            amount: u64,
            limits: UsageLimits,
            now_us: u64,
        ) -> StoreResult<Committed>;

        /// Ends the reservation, returning all of it: whether it was live.
        #[repeat(false)]
        async fn release(
            &self,
            tenant: &Tenant,
            budget: &BudgetId,
            id: &ReservationId,
        ) -> StoreResult<bool>;

        /// One page of the tenant's budgets, each `subject/metric`, for backups; as
        /// `CacheStore::inventory`.
        #[repeat(true)]
        async fn inventory(
            &self,
            tenant: &Tenant,
            cursor: Option<&str>,
            limit: usize,
        ) -> StoreResult<IdPage>;
    }
}
