//! The usage and budget stores' behaviour, identical on the memory and Redis adapters: events
//! counted once under racing duplicates, totals per day and month, reservations that never
//! overshoot under a race, commits that return the rest, expiry that returns a reservation.

use std::time::Duration;

use statekeeper::{
    capabilities::usage::model::{
        BudgetId, BudgetRule, Committed, MetricName, Period, ReservationId, Reserved, Subject,
        UsageEvent, UsageLimits,
    },
    domain::ids::Tenant,
    store::{Stores, memory::now_us},
};

fn t1() -> Tenant {
    Tenant::new("t1")
}

fn subject(name: &str) -> Subject {
    Subject::parse(name).unwrap()
}

fn metric(name: &str) -> MetricName {
    MetricName::parse(name).unwrap()
}

const LIMITS: UsageLimits = UsageLimits {
    dedup_window_ms: 60_000,
    retention_ms: 86_400_000,
};

fn event(id: &str, amount: u64, at_us: u64) -> UsageEvent {
    UsageEvent {
        event_id: id.to_string(),
        metric: metric("tokens"),
        amount,
        at_us,
    }
}

/// The subject's budget on `tokens`.
fn budget(who: &str) -> BudgetId {
    BudgetId {
        subject: subject(who),
        metric: metric("tokens"),
    }
}

fn new_id() -> ReservationId {
    ReservationId::parse(uuid::Uuid::new_v4().to_string()).unwrap()
}

async fn totals(stores: &Stores, who: &str, period: Period, at_us: u64) -> u64 {
    let buckets = [period.bucket(at_us)];
    let totals = stores
        .usage
        .totals(&t1(), &subject(who), None, period, &buckets)
        .await
        .unwrap();
    totals.iter().map(|t| t.amount).sum()
}

/// 50 racing posts of one event id count once; other ids add up per day and month.
async fn events_count_once_under_a_race(stores: &Stores) {
    let now = now_us();
    let counted = crate::common::race(50, |_| {
        let stores = stores.clone();
        async move {
            stores
                .usage
                .record(&t1(), &subject("ada"), &event("e-1", 7, now), LIMITS)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(counted.iter().filter(|c| **c).count(), 1);
    for (i, amount) in [3, 5].into_iter().enumerate() {
        let id = format!("e-{}", i + 2);
        let counted = stores
            .usage
            .record(&t1(), &subject("ada"), &event(&id, amount, now), LIMITS)
            .await
            .unwrap();
        assert!(counted);
    }
    assert_eq!(totals(stores, "ada", Period::Day, now).await, 15);
    assert_eq!(totals(stores, "ada", Period::Month, now).await, 15);
    assert_eq!(
        totals(stores, "bob", Period::Day, now).await,
        0,
        "per subject"
    );
}

/// An event's `at` decides its day; a read over a range lists each day with its total.
async fn totals_per_day_and_metric(stores: &Stores) {
    let now = now_us();
    let yesterday = now - 86_400_000_000;
    let usage = &stores.usage;
    usage
        .record(&t1(), &subject("cy"), &event("a", 10, yesterday), LIMITS)
        .await
        .unwrap();
    usage
        .record(&t1(), &subject("cy"), &event("b", 1, now), LIMITS)
        .await
        .unwrap();
    let cost = UsageEvent {
        metric: metric("cost_micros"),
        ..event("c", 250, now)
    };
    usage
        .record(&t1(), &subject("cy"), &cost, LIMITS)
        .await
        .unwrap();
    let buckets = [Period::Day.bucket(yesterday), Period::Day.bucket(now)];
    let all = usage
        .totals(&t1(), &subject("cy"), None, Period::Day, &buckets)
        .await
        .unwrap();
    let rows: Vec<(String, String, u64)> = all
        .into_iter()
        .map(|t| (t.bucket, t.metric, t.amount))
        .collect();
    assert_eq!(
        rows,
        vec![
            (buckets[0].clone(), "tokens".into(), 10),
            (buckets[1].clone(), "cost_micros".into(), 250),
            (buckets[1].clone(), "tokens".into(), 1),
        ]
    );
    let tokens = usage
        .totals(
            &t1(),
            &subject("cy"),
            Some(&metric("tokens")),
            Period::Day,
            &buckets,
        )
        .await
        .unwrap();
    assert_eq!(tokens.len(), 2);
}

/// 500 racing 1-unit reservations against a limit of 100: exactly 100 granted.
async fn racing_reservations_never_overshoot(stores: &Stores) {
    let now = now_us();
    let rule = BudgetRule {
        limit: 100,
        period: Period::Day,
    };
    let budgets = &stores.budgets;
    budgets.set(&t1(), &budget("dan"), rule, now).await.unwrap();
    let outcomes = crate::common::race(500, |_| {
        let stores = stores.clone();
        async move {
            stores
                .budgets
                .reserve(&t1(), &budget("dan"), &new_id(), 1, 60_000, now)
                .await
                .unwrap()
        }
    })
    .await;
    let granted = outcomes
        .iter()
        .filter(|o| matches!(o, Reserved::Granted { .. }))
        .count();
    assert_eq!(granted, 100);
    assert!(outcomes.contains(&Reserved::Exceeded { remaining: 0 }));
    let status = budgets
        .get(&t1(), &budget("dan"), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (status.used, status.reserved, status.remaining()),
        (0, 100, 0)
    );
}

/// Commit of less than reserved records that and returns the rest; commit of more changes
/// nothing; a committed or released reservation is gone; no budget means unlimited.
async fn commit_returns_the_rest(stores: &Stores) {
    let now = now_us();
    let budgets = &stores.budgets;
    let who = budget("eve");
    let rule = BudgetRule {
        limit: 1000,
        period: Period::Month,
    };
    budgets.set(&t1(), &who, rule, now).await.unwrap();
    let id = new_id();
    let reserved = budgets
        .reserve(&t1(), &who, &id, 400, 60_000, now)
        .await
        .unwrap();
    assert!(matches!(
        reserved,
        Reserved::Granted {
            remaining: Some(600),
            ..
        }
    ));
    let too_much = budgets
        .commit(&t1(), &who, &id, 401, LIMITS, now)
        .await
        .unwrap();
    assert_eq!(too_much, Committed::TooMuch { reserved: 400 });
    let done = budgets
        .commit(&t1(), &who, &id, 150, LIMITS, now)
        .await
        .unwrap();
    assert_eq!(done, Committed::Done { returned: 250 });
    let again = budgets
        .commit(&t1(), &who, &id, 1, LIMITS, now)
        .await
        .unwrap();
    assert_eq!(again, Committed::NotFound);
    let status = budgets.get(&t1(), &who, now).await.unwrap().unwrap();
    assert_eq!(
        (status.used, status.reserved, status.remaining()),
        (150, 0, 850)
    );
    assert_eq!(
        totals(stores, "eve", Period::Month, now).await,
        150,
        "commit counts as usage"
    );

    let released = new_id();
    budgets
        .reserve(&t1(), &who, &released, 800, 60_000, now)
        .await
        .unwrap();
    let over = budgets
        .reserve(&t1(), &who, &new_id(), 100, 60_000, now)
        .await
        .unwrap();
    assert_eq!(over, Reserved::Exceeded { remaining: 50 });
    assert!(budgets.release(&t1(), &who, &released).await.unwrap());
    assert!(!budgets.release(&t1(), &who, &released).await.unwrap());

    assert!(budgets.delete(&t1(), &who).await.unwrap());
    assert_eq!(budgets.get(&t1(), &who, now).await.unwrap(), None);
    let unlimited = budgets
        .reserve(&t1(), &who, &new_id(), 1 << 50, 60_000, now)
        .await
        .unwrap();
    assert!(matches!(
        unlimited,
        Reserved::Granted {
            remaining: None,
            ..
        }
    ));
}

/// A reservation not committed within its TTL returns its amount by itself.
async fn expired_reservations_return(stores: &Stores) {
    let now = now_us();
    let budgets = &stores.budgets;
    let who = budget("fay");
    let rule = BudgetRule {
        limit: 10,
        period: Period::Day,
    };
    budgets.set(&t1(), &who, rule, now).await.unwrap();
    let id = new_id();
    budgets
        .reserve(&t1(), &who, &id, 10, 200, now)
        .await
        .unwrap();
    let full = budgets
        .reserve(&t1(), &who, &new_id(), 1, 60_000, now)
        .await
        .unwrap();
    assert_eq!(full, Reserved::Exceeded { remaining: 0 });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = budgets
        .reserve(&t1(), &who, &new_id(), 10, 60_000, now)
        .await
        .unwrap();
    assert!(matches!(
        after,
        Reserved::Granted {
            remaining: Some(0),
            ..
        }
    ));
    let late = budgets
        .commit(&t1(), &who, &id, 5, LIMITS, now)
        .await
        .unwrap();
    assert_eq!(
        late,
        Committed::NotFound,
        "an expired reservation cannot be committed"
    );
}

/// Amounts at the ceiling (2^53 - 1): totals saturate there, and no more than it is held at
/// once, budget or not; nothing overflows into an error.
async fn huge_amounts_saturate(stores: &Stores) {
    let now = now_us();
    let max = statekeeper::capabilities::usage::model::MAX_AMOUNT;
    for id in ["big-1", "big-2"] {
        let counted = stores
            .usage
            .record(&t1(), &subject("gus"), &event(id, max, now), LIMITS)
            .await
            .unwrap();
        assert!(counted);
    }
    assert_eq!(totals(stores, "gus", Period::Day, now).await, max);
    let budgets = &stores.budgets;
    let who = budget("gus");
    let first = budgets
        .reserve(&t1(), &who, &new_id(), max, 60_000, now)
        .await
        .unwrap();
    assert!(matches!(
        first,
        Reserved::Granted {
            remaining: None,
            ..
        }
    ));
    let second = budgets
        .reserve(&t1(), &who, &new_id(), 1, 60_000, now)
        .await
        .unwrap();
    assert_eq!(second, Reserved::Exceeded { remaining: 0 });
    let rule = BudgetRule {
        limit: max,
        period: Period::Day,
    };
    let status = budgets.set(&t1(), &who, rule, now).await.unwrap();
    assert_eq!(
        (status.used, status.reserved, status.remaining()),
        (max, max, 0)
    );

    // Huge and zero reservations expire and are released without an error.
    let who = budget("hal");
    for amount in [max, 0, 7] {
        budgets
            .reserve(&t1(), &who, &new_id(), amount, 50, now)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let zero = new_id();
    let after = budgets
        .reserve(&t1(), &who, &zero, 0, 60_000, now)
        .await
        .unwrap();
    assert!(matches!(after, Reserved::Granted { .. }), "{after:?}");
    assert!(budgets.release(&t1(), &who, &zero).await.unwrap());
}

crate::store_conformance!(
    huge_amounts_saturate,
    events_count_once_under_a_race,
    totals_per_day_and_metric,
    racing_reservations_never_overshoot,
    commit_returns_the_rest,
    expired_reservations_return,
);
