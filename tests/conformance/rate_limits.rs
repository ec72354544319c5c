//! The rate-limit store's behaviour, identical on the memory and Redis adapters: exact under
//! races for every algorithm, all-or-nothing over several rules, peeks that change nothing,
//! and retry times that are true.

use std::time::Duration;

use statekeeper::{
    capabilities::rate_limit::model::{Algorithm, Check, Decision, Mode, RateLimitKey, Rule},
    domain::ids::Tenant,
    store::Stores,
};

const ALGORITHMS: [Algorithm; 3] = [
    Algorithm::SlidingWindow,
    Algorithm::FixedWindow,
    Algorithm::TokenBucket,
];

fn rule(algorithm: Algorithm, limit: u64, window_ms: u64) -> Rule {
    Rule::new(None, algorithm, limit, window_ms, None).unwrap()
}

fn key(name: &str) -> RateLimitKey {
    RateLimitKey::parse(name).unwrap()
}

fn check(rules: &[Rule], cost: u64, mode: Mode) -> Check {
    Check {
        rules: rules.to_vec(),
        cost,
        mode,
    }
}

async fn run(stores: &Stores, k: &str, rules: &[Rule], cost: u64, mode: Mode) -> Decision {
    let tenant = Tenant::new("t1");
    stores
        .rate_limits
        .check(&tenant, &key(k), &check(rules, cost, mode))
        .await
        .unwrap()
}

async fn consume(stores: &Stores, k: &str, rules: &[Rule]) -> Decision {
    run(stores, k, rules, 1, Mode::Consume).await
}

async fn peek(stores: &Stores, k: &str, rules: &[Rule]) -> Decision {
    run(stores, k, rules, 1, Mode::Peek).await
}

/// 200 checks racing for a limit of 50 (windows far longer than the race): exactly 50 pass,
/// for every algorithm.
async fn racing_checks_admit_exactly_the_limit(stores: &Stores) {
    for algorithm in ALGORITHMS {
        let r = rule(algorithm, 50, 3_600_000);
        let k = format!("race-{algorithm:?}");
        let results = crate::common::race(200, |_| {
            let (stores, r, k) = (stores.clone(), r.clone(), k.clone());
            async move { consume(&stores, &k, &[r]).await.allowed }
        })
        .await;
        let allowed = results.iter().filter(|a| **a).count();
        assert_eq!(allowed, 50, "{algorithm:?}");
        assert_eq!(peek(stores, &k, &[r]).await.rules[0].remaining, 0);
    }
}

/// A peek answers what a consume would, and changes nothing; a cost of 0 is a peek too.
async fn peeks_change_nothing(stores: &Stores) {
    for algorithm in ALGORITHMS {
        let r = rule(algorithm, 5, 3_600_000);
        let k = format!("peek-{algorithm:?}");
        for _ in 0..3 {
            assert!(consume(stores, &k, std::slice::from_ref(&r)).await.allowed);
        }
        for _ in 0..10 {
            let seen = peek(stores, &k, std::slice::from_ref(&r)).await;
            assert!(seen.allowed);
            assert_eq!(seen.rules[0].remaining, 2, "{algorithm:?}");
            let zero = run(stores, &k, std::slice::from_ref(&r), 0, Mode::Consume).await;
            assert_eq!(zero.rules[0].remaining, 2, "{algorithm:?}: cost 0 consumed");
        }
        let big = run(stores, &k, std::slice::from_ref(&r), 3, Mode::Peek).await;
        assert!(!big.allowed, "{algorithm:?}: a peek of 3 with 2 left");
        assert!(big.rules[0].retry_after_us.is_some());
        assert_eq!(peek(stores, &k, &[r]).await.rules[0].remaining, 2);
    }
}

/// After a denial, waiting `retry_after` lets exactly what refilled pass: the whole limit for
/// the windows, one token for the bucket.
async fn waiting_retry_after_lets_exactly_the_refill_pass(stores: &Stores) {
    for (algorithm, refill) in [
        (Algorithm::SlidingWindow, 5),
        (Algorithm::FixedWindow, 5),
        (Algorithm::TokenBucket, 1),
    ] {
        let r = rule(algorithm, 5, 1_000);
        let k = format!("refill-{algorithm:?}");
        let mut denied = None;
        for _ in 0..6 {
            let d = consume(stores, &k, std::slice::from_ref(&r)).await;
            if !d.allowed {
                denied = Some(d);
                break;
            }
        }
        let denied = denied.expect("the sixth check is denied");
        let wait = denied.retry_after_us().unwrap();
        assert!(wait > 0 && wait <= 1_000_000, "{algorithm:?}: {wait}");
        assert_eq!(denied.rules[0].remaining, 0);
        tokio::time::sleep(Duration::from_micros(wait) + Duration::from_millis(20)).await;
        let mut passed = 0;
        while consume(stores, &k, std::slice::from_ref(&r)).await.allowed {
            passed += 1;
            assert!(passed <= 5, "{algorithm:?}: more than the limit passed");
        }
        assert_eq!(passed, refill, "{algorithm:?}");
    }
}

/// Two rules, raced: checks of [narrow, wide] and of [wide] alone. A check denied by one rule
/// consumes nothing from the other, so afterwards the narrow rule has lost exactly what the
/// two-rule checks that passed took.
async fn several_rules_are_all_or_nothing_under_races(stores: &Stores) {
    let narrow = rule(Algorithm::FixedWindow, 10, 3_600_000);
    let wide = rule(Algorithm::SlidingWindow, 30, 3_600_000);
    let results = crate::common::race(120, |i| {
        let (stores, narrow, wide) = (stores.clone(), narrow.clone(), wide.clone());
        async move {
            let rules = if i % 2 == 0 {
                vec![narrow, wide]
            } else {
                vec![wide]
            };
            (rules.len(), consume(&stores, "both", &rules).await.allowed)
        }
    })
    .await;
    let passed = |n| results.iter().filter(|(len, ok)| *len == n && *ok).count() as u64;
    let (both, wide_only) = (passed(2), passed(1));
    assert!(both <= 10);
    assert_eq!(
        both + wide_only,
        30,
        "the wide rule counted every pass once"
    );
    let state = peek(stores, "both", &[narrow, wide]).await;
    assert_eq!(
        state.rules[0].remaining,
        10 - both,
        "denied checks took nothing"
    );
    assert_eq!(state.rules[1].remaining, 0);
}

/// A denied multi-rule check reports which rule denied and the wait of the longest.
async fn a_denied_check_says_which_rule_and_how_long(stores: &Stores) {
    let minute = rule(Algorithm::FixedWindow, 100, 60_000);
    let second = rule(Algorithm::TokenBucket, 2, 1_000);
    let both = [minute, second];
    assert!(consume(stores, "which", &both).await.allowed);
    assert!(consume(stores, "which", &both).await.allowed);
    let denied = consume(stores, "which", &both).await;
    assert!(!denied.allowed);
    assert!(denied.rules[0].allowed && !denied.rules[1].allowed);
    assert_eq!(
        denied.rules[0].remaining, 98,
        "the minute rule kept its count"
    );
    let wait = denied.rules[1].retry_after_us.unwrap();
    assert!(
        wait > 0 && wait <= 500_000,
        "one token refills in 500 ms: {wait}"
    );
    assert_eq!(denied.retry_after_us(), Some(wait));
}

/// A reset forgets every rule of the key, and only of that key and tenant.
async fn reset_forgets_the_key_only(stores: &Stores) {
    let r = rule(Algorithm::SlidingWindow, 2, 3_600_000);
    let other = rule(Algorithm::TokenBucket, 2, 3_600_000);
    for k in ["reset-a", "reset-b"] {
        for _ in 0..2 {
            assert!(
                consume(stores, k, &[r.clone(), other.clone()])
                    .await
                    .allowed
            );
        }
    }
    let t2 = Tenant::new("t2");
    let c = check(std::slice::from_ref(&r), 1, Mode::Consume);
    assert!(
        stores
            .rate_limits
            .check(&t2, &key("reset-a"), &c)
            .await
            .unwrap()
            .allowed,
        "another tenant's key is its own"
    );
    stores
        .rate_limits
        .reset(&Tenant::new("t1"), &key("reset-a"))
        .await
        .unwrap();
    let a = peek(stores, "reset-a", &[r.clone(), other.clone()]).await;
    assert_eq!((a.rules[0].remaining, a.rules[1].remaining), (2, 2));
    let b = peek(stores, "reset-b", &[r.clone(), other]).await;
    assert_eq!((b.rules[0].remaining, b.rules[1].remaining), (0, 0));
    let seen = stores.rate_limits.check(&t2, &key("reset-a"), &c).await;
    assert_eq!(seen.unwrap().rules[0].remaining, 0, "t2's state stayed");
}

/// A rule's state is forgotten once its window has passed: the full limit is back.
async fn state_ends_with_its_window(stores: &Stores) {
    let rules = [
        rule(Algorithm::SlidingWindow, 3, 300),
        rule(Algorithm::FixedWindow, 3, 300),
    ];
    for r in &rules {
        for _ in 0..3 {
            consume(stores, "ends", std::slice::from_ref(r)).await;
        }
    }
    let used = peek(stores, "ends", &rules).await;
    assert_eq!((used.rules[0].remaining, used.rules[1].remaining), (0, 0));
    assert!(used.rules.iter().all(|r| r.reset_after_us <= 300_000));
    tokio::time::sleep(Duration::from_millis(650)).await;
    let back = peek(stores, "ends", &rules).await;
    assert_eq!((back.rules[0].remaining, back.rules[1].remaining), (3, 3));
    assert!(back.rules.iter().all(|r| r.reset_after_us == 0));
}

crate::store_conformance!(
    racing_checks_admit_exactly_the_limit,
    peeks_change_nothing,
    waiting_retry_after_lets_exactly_the_refill_pass,
    several_rules_are_all_or_nothing_under_races,
    a_denied_check_says_which_rule_and_how_long,
    reset_forgets_the_key_only,
    state_ends_with_its_window,
);
