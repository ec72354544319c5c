//! Inventories (what a backup lists), identical on the memory and Redis adapters: walked page by
//! page with small pages, every live item of the tenant is listed and nothing of another
//! tenant's.

use std::{collections::BTreeSet, future::Future};

use bytes::Bytes;
use serde_json::{Map, json};
use statekeeper::{
    capabilities::{
        cache::{model::CacheValue, port::PutCondition},
        lock::model::{Acquire, LockName, LockToken},
        pending_action::model::{
            self as pending_action, ActionToken, NewPendingAction, PendingAction,
        },
        queue::model::{Backoff, BackoffKind, JobId, NewJob, QueueName},
        session::model::{Session, SessionRules, UserId, now_ms},
        usage::model::{
            BudgetId, BudgetRule, MetricName, Period, Subject, UsageEvent, UsageLimits,
        },
    },
    domain::{
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl},
    },
    store::{IdPage, StoreResult, Stores, memory::now_us},
};

/// Small pages, so that every listing takes several.
const PAGE: usize = 7;

/// Every id of a listing, following its cursors to the end.
async fn walk<F, Fut>(list: F) -> BTreeSet<String>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = StoreResult<IdPage>>,
{
    let mut ids = BTreeSet::new();
    let mut cursor = None;
    for _ in 0..10_000 {
        let page = list(cursor.clone()).await.unwrap();
        assert!(page.ids.len() <= PAGE * 10, "a page stays small");
        ids.extend(page.ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
    panic!("the listing never ended");
}

fn tenants() -> [Tenant; 2] {
    [Tenant::new("inv-a"), Tenant::new("inv-b")]
}

fn ttl(seconds: u64) -> Ttl {
    Ttl::new(seconds, 1_000_000).unwrap()
}

async fn cache_and_locks(stores: &Stores) {
    let [a, b] = tenants();
    let (a, b) = (&a, &b);
    let mut expected = BTreeSet::new();
    for i in 0..60 {
        let (ns, key) = (format!("ns-{}", i % 3), format!("k-{i}"));
        let value = CacheValue::parse(Bytes::from(i.to_string()), 1024).unwrap();
        for tenant in [a, b] {
            let (n, k) = (
                Namespace::parse(&ns).unwrap(),
                CacheKey::parse(&key).unwrap(),
            );
            let expiry = Expiry::After(ttl(600));
            stores
                .cache
                .put(tenant, &n, &k, &value, expiry, PutCondition::Always)
                .await
                .unwrap();
        }
        expected.insert(format!("{ns}/{key}"));
    }
    let listed = walk(|c| async move { stores.cache.inventory(a, c.as_deref(), PAGE).await }).await;
    assert_eq!(listed, expected);

    let mut names = BTreeSet::new();
    for i in 0..15 {
        let name = LockName::parse(format!("lock-{i}")).unwrap();
        let request = Acquire {
            token: LockToken::generate(),
            ttl_ms: 60_000,
            owner: None,
        };
        stores.locks.acquire(a, &name, &request).await.unwrap();
        names.insert(name.to_string());
    }
    let other = LockName::parse("elsewhere").unwrap();
    let request = Acquire {
        token: LockToken::generate(),
        ttl_ms: 60_000,
        owner: None,
    };
    stores.locks.acquire(b, &other, &request).await.unwrap();
    let listed = walk(|c| async move { stores.locks.inventory(a, c.as_deref(), PAGE).await }).await;
    assert_eq!(listed, names);
}

async fn sessions_and_tokens(stores: &Stores) {
    let [a, b] = tenants();
    let (a, b) = (&a, &b);
    let rules = SessionRules {
        rolling: false,
        max_lifetime_ms: 86_400_000,
        max_bytes: 1 << 20,
    };
    let mut ids = BTreeSet::new();
    for i in 0..25 {
        for tenant in [a, b] {
            let session = Session::new(
                UserId::parse(format!("user-{}", i % 4)).unwrap(),
                None,
                Map::new(),
                Map::new(),
                ttl(600),
                now_ms(),
            );
            stores
                .sessions
                .create(tenant, &session, rules)
                .await
                .unwrap();
            if tenant == a {
                ids.insert(session.id.to_string());
            }
        }
    }
    let listed =
        walk(|c| async move { stores.sessions.inventory(a, c.as_deref(), PAGE).await }).await;
    assert_eq!(listed, ids);

    let mut tokens = BTreeSet::new();
    for _ in 0..25 {
        for tenant in [a, b] {
            let new = NewPendingAction {
                intent_name: "deploy".into(),
                entities: json!({}).as_object().unwrap().clone(),
                summary: String::new(),
                session_id: None,
                user_id: None,
            };
            let token = ActionToken::generate();
            let action = PendingAction::new(token.clone(), new, pending_action::now(), ttl(600));
            assert!(
                stores
                    .pending_actions
                    .create(tenant, &action, ttl(600))
                    .await
                    .unwrap()
            );
            if tenant == a {
                tokens.insert(token.to_string());
            }
        }
    }
    let listed = walk(|c| async move {
        stores
            .pending_actions
            .inventory(a, c.as_deref(), PAGE)
            .await
    })
    .await;
    assert_eq!(listed, tokens);
}

async fn jobs_usage_and_budgets(stores: &Stores) {
    let [a, b] = tenants();
    let (a, b) = (&a, &b);
    let mut jobs = BTreeSet::new();
    for q in 0..3 {
        let queue = QueueName::parse(format!("q-{q}")).unwrap();
        for _ in 0..10 {
            let new = NewJob {
                payload: "{}".into(),
                priority: 0,
                delay_ms: 0,
                max_attempts: 1,
                backoff: Backoff {
                    kind: BackoffKind::Fixed,
                    base_ms: 0,
                    max_ms: 0,
                },
                dedup_key: None,
                dedup_window_ms: 0,
            };
            for tenant in [a, b] {
                let id = JobId::parse(uuid::Uuid::new_v4().to_string()).unwrap();
                let (job, _) = stores
                    .queues
                    .enqueue(tenant, &queue, &new, &id)
                    .await
                    .unwrap();
                if tenant == a {
                    jobs.insert(format!("{queue}/{job}"));
                }
            }
        }
    }
    let listed =
        walk(|c| async move { stores.queues.inventory(a, c.as_deref(), PAGE).await }).await;
    // Redis lists done jobs too (they are left out when read); none is done here.
    assert_eq!(listed, jobs);

    let limits = UsageLimits {
        dedup_window_ms: 60_000,
        retention_ms: 86_400_000,
    };
    let now = now_us();
    let (day, month) = (Period::Day.bucket(now), Period::Month.bucket(now));
    let mut buckets = BTreeSet::new();
    let mut budgets = BTreeSet::new();
    for s in 0..6 {
        let subject = Subject::parse(format!("subject-{s}")).unwrap();
        for m in ["tokens", "cost"] {
            let metric = MetricName::parse(m).unwrap();
            for tenant in [a, b] {
                let event = UsageEvent {
                    event_id: format!("{s}-{m}"),
                    metric: metric.clone(),
                    amount: 5,
                    at_us: now,
                };
                stores
                    .usage
                    .record(tenant, &subject, &event, limits)
                    .await
                    .unwrap();
                let rule = BudgetRule {
                    limit: 100,
                    period: Period::Day,
                };
                let budget = BudgetId {
                    subject: subject.clone(),
                    metric: metric.clone(),
                };
                stores
                    .budgets
                    .set(tenant, &budget, rule, now)
                    .await
                    .unwrap();
            }
            budgets.insert(format!("{subject}/{m}"));
        }
        buckets.insert(format!("{subject}/day/{day}"));
        buckets.insert(format!("{subject}/month/{month}"));
    }
    let listed = walk(|c| async move { stores.usage.inventory(a, c.as_deref(), PAGE).await }).await;
    assert_eq!(listed, buckets);
    let listed =
        walk(|c| async move { stores.budgets.inventory(a, c.as_deref(), PAGE).await }).await;
    assert_eq!(listed, budgets);
}

crate::store_conformance!(cache_and_locks, sessions_and_tokens, jobs_usage_and_budgets);
