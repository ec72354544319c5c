//! The lock store's behaviour, identical on the memory and Redis adapters: one holder at a
//! time under races, fencing tokens that only grow, lost locks that stay lost, and waiters woken
//! by the release.

use std::time::{Duration, Instant};

use statekeeper::{
    capabilities::lock::{
        model::{Acquire, Acquired, Fence, FenceCheck, Grant, LockName, LockToken},
        port::acquire_waiting,
    },
    domain::ids::Tenant,
    store::Stores,
};

fn name(raw: &str) -> LockName {
    LockName::parse(raw).unwrap()
}

fn request(ttl_ms: u64) -> Acquire {
    Acquire {
        token: LockToken::generate(),
        ttl_ms,
        owner: Some("worker".into()),
    }
}

fn t1() -> Tenant {
    Tenant::new("t1")
}

async fn acquire(stores: &Stores, lock: &str, request: &Acquire) -> Acquired {
    let locks = &stores.locks;
    locks.acquire(&t1(), &name(lock), request).await.unwrap()
}

async fn grant(stores: &Stores, lock: &str, request: &Acquire) -> Grant {
    match acquire(stores, lock, request).await {
        Acquired::Granted(grant) => grant,
        held => panic!("expected a grant: {held:?}"),
    }
}

async fn release(stores: &Stores, lock: &str, token: &LockToken) -> bool {
    let locks = &stores.locks;
    locks.release(&t1(), &name(lock), token).await.unwrap()
}

/// 100 racing acquirers: exactly one is granted, the others learn how long it is held.
async fn racing_acquirers_get_one_grant(stores: &Stores) {
    let results = crate::common::race(100, |_| {
        let stores = stores.clone();
        async move { acquire(&stores, "race", &request(60_000)).await }
    })
    .await;
    let granted = results
        .iter()
        .filter(|r| matches!(r, Acquired::Granted(_)))
        .count();
    assert_eq!(granted, 1);
    for result in &results {
        if let Acquired::Held { retry_after_us } = result {
            assert!(*retry_after_us > 0 && *retry_after_us <= 60_000_000);
        }
    }
    let info = stores.locks.get(&t1(), &name("race")).await.unwrap();
    assert!(info.held);
    assert_eq!(info.owner.as_deref(), Some("worker"));
}

/// Over 200 hand-offs (released, or left to expire) every fencing token is larger than the
/// one before, and `get` reports the last.
async fn fencing_tokens_strictly_increase(stores: &Stores) {
    let mut last = 0;
    for round in 0..200 {
        let r = request(if round % 10 == 0 { 5 } else { 60_000 });
        let g = grant(stores, "fenced", &r).await;
        assert!(g.fencing_token > last, "round {round}");
        last = g.fencing_token;
        if round % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(8)).await;
        } else {
            assert!(release(stores, "fenced", &r.token).await);
        }
    }
    let info = stores.locks.get(&t1(), &name("fenced")).await.unwrap();
    assert_eq!(info.fencing_token, last);
}

/// A holder whose lease ended cannot extend or release; once another holder has the lock, its
/// fencing token is refused while the new holder's is accepted.
async fn an_expired_holder_has_lost_the_lock(stores: &Stores) {
    let old = request(50);
    let old_grant = grant(stores, "expiring", &old).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let locks = &stores.locks;
    let lock = name("expiring");
    assert_eq!(
        locks.extend(&t1(), &lock, &old.token, 1000).await.unwrap(),
        None
    );
    assert!(!release(stores, "expiring", &old.token).await);
    let new = request(60_000);
    let new_grant = grant(stores, "expiring", &new).await;
    assert_eq!(
        locks.extend(&t1(), &lock, &old.token, 1000).await.unwrap(),
        None
    );
    assert_eq!(
        locks
            .check_fence(&t1(), &lock, Fence::Checked(old_grant.fencing_token))
            .await
            .unwrap(),
        FenceCheck::Stale {
            highest: new_grant.fencing_token
        }
    );
    assert_eq!(
        locks
            .check_fence(&t1(), &lock, Fence::Checked(new_grant.fencing_token))
            .await
            .unwrap(),
        FenceCheck::Accepted
    );
    let extended = locks.extend(&t1(), &lock, &new.token, 1000).await.unwrap();
    assert!(extended.is_some_and(|until| until < new_grant.expires_at_us));
}

/// A release or extend by a token that does not hold the lock changes nothing.
async fn a_wrong_token_changes_nothing(stores: &Stores) {
    let holder = request(60_000);
    let g = grant(stores, "guarded", &holder).await;
    let stranger = LockToken::generate();
    assert!(!release(stores, "guarded", &stranger).await);
    let lock = name("guarded");
    assert_eq!(
        stores
            .locks
            .extend(&t1(), &lock, &stranger, 1)
            .await
            .unwrap(),
        None
    );
    let info = stores.locks.get(&t1(), &lock).await.unwrap();
    assert!(info.held);
    assert_eq!(info.expires_at_us, Some(g.expires_at_us));
    assert!(matches!(
        acquire(stores, "guarded", &request(1000)).await,
        Acquired::Held { .. }
    ));
    let other_tenant = stores
        .locks
        .acquire(&Tenant::new("t2"), &lock, &request(1000))
        .await;
    assert!(
        matches!(other_tenant.unwrap(), Acquired::Granted(_)),
        "another tenant's lock"
    );
}

/// A waiter gets the lock within a few milliseconds of its release, long before the holder's
/// lease would have ended.
async fn a_waiter_is_woken_by_the_release(stores: &Stores) {
    let holder = request(30_000);
    grant(stores, "awaited", &holder).await;
    let (waiting, r) = (stores.clone(), request(10_000));
    let waiter = crate::common::spawn_timed(async move {
        let (locks, lock) = (waiting.locks.as_ref(), name("awaited"));
        let outcome = acquire_waiting(locks, &t1(), &lock, &r, Duration::from_secs(5)).await;
        outcome.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released_at = Instant::now();
    assert!(release(stores, "awaited", &holder.token).await);
    let (outcome, granted_at) = waiter.await.unwrap();
    assert!(matches!(outcome, Acquired::Granted(_)), "{outcome:?}");
    crate::common::assert_woken_promptly(released_at, granted_at, "release");
}

/// A waiter whose wait ends first gets `Held`, after about `wait`.
async fn a_wait_ends_with_held(stores: &Stores) {
    grant(stores, "busy", &request(30_000)).await;
    let started = Instant::now();
    let outcome = acquire_waiting(
        stores.locks.as_ref(),
        &t1(),
        &name("busy"),
        &request(1000),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert!(matches!(outcome, Acquired::Held { .. }));
    assert!(started.elapsed() >= Duration::from_millis(290));
}

/// A fence check with a token no grant issued (2^53 - 1, far above the clock) is refused and
/// moves nothing: the holder's own token still passes, and later grants keep getting distinct,
/// strictly increasing tokens below 2^53 (a Redis double would repeat 2^53 for ever).
async fn a_fence_check_cannot_poison_the_tokens(stores: &Stores) {
    let (locks, lock) = (&stores.locks, name("poisoned"));
    let holder = request(60_000);
    let first = grant(stores, "poisoned", &holder).await;
    for token in [(1u64 << 53) - 1, first.fencing_token + 3_600_000_000] {
        let refused = locks.check_fence(&t1(), &lock, Fence::Checked(token)).await;
        assert!(
            matches!(refused, Ok(FenceCheck::NotIssued { .. })),
            "{token}: {refused:?}"
        );
    }
    let own = Fence::Checked(first.fencing_token);
    let own = locks.check_fence(&t1(), &lock, own).await.unwrap();
    assert_eq!(own, FenceCheck::Accepted);
    assert!(release(stores, "poisoned", &holder.token).await);
    let mut last = first.fencing_token;
    for _ in 0..5 {
        let next = request(60_000);
        let granted = grant(stores, "poisoned", &next).await;
        assert!(
            granted.fencing_token > last,
            "{} after {last}",
            granted.fencing_token
        );
        assert!(granted.fencing_token < 1 << 53);
        last = granted.fencing_token;
        assert!(release(stores, "poisoned", &next.token).await);
    }
}

crate::store_conformance!(
    racing_acquirers_get_one_grant,
    a_fence_check_cannot_poison_the_tokens,
    fencing_tokens_strictly_increase,
    an_expired_holder_has_lost_the_lock,
    a_wrong_token_changes_nothing,
    a_waiter_is_woken_by_the_release,
    a_wait_ends_with_held,
);
