use crate::capabilities::rate_limit::model::*;

fn rule(algorithm: Algorithm, limit: u64, window_ms: u64, burst: Option<u64>) -> Rule {
    Rule::new(None, algorithm, limit, window_ms, burst).unwrap()
}

fn consume(rules: &[Rule], cost: u64) -> Check {
    Check {
        rules: rules.to_vec(),
        cost,
        mode: Mode::Consume,
    }
}

/// A small deterministic generator, so the property tests need no extra crate and
/// repeat exactly.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Random arrivals over a simulated clock: no window of `window_ms` ever admits more than
/// `limit` (sliding), and the retry time is exact: waiting it lets the same cost pass.
#[test]
fn sliding_window_never_admits_more_than_the_limit_in_any_window() {
    for seed in 0..40 {
        let mut random = Lcg(seed);
        let limit = 1 + random.next(20);
        let window_ms = 1 + random.next(500);
        let r = rule(Algorithm::SlidingWindow, limit, window_ms, None);
        let mut states = KeyState::new();
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        let mut now = 1_000_000_000;
        for _ in 0..2_000 {
            now += random.next(window_ms * 1000 / limit * 2 + 1);
            let cost = 1 + random.next(limit.min(3));
            let (decision, _) = decide(&mut states, &consume(std::slice::from_ref(&r), cost), now);
            if decision.allowed {
                admitted.push((now, cost));
                let in_window: u64 = admitted
                    .iter()
                    .filter(|(at, _)| at + r.window_us() > now)
                    .map(|(_, c)| c)
                    .sum();
                assert!(in_window <= limit, "seed {seed}: {in_window} > {limit}");
            } else {
                let wait = decision.retry_after_us().unwrap();
                let peek = Check {
                    mode: Mode::Peek,
                    ..consume(std::slice::from_ref(&r), cost)
                };
                // On copies: a check at a later time forgets what that time has undone.
                let (just_before, _) = decide(&mut states.clone(), &peek, now + wait - 1);
                let (at_wait, _) = decide(&mut states.clone(), &peek, now + wait);
                assert!(!just_before.allowed && at_wait.allowed, "seed {seed}");
            }
        }
    }
}

/// GCRA never admits more than `burst` at once, and over a long run no more than `burst`
/// plus the refill.
#[test]
fn token_bucket_admits_at_most_burst_at_once_and_the_rate_after() {
    for seed in 0..40 {
        let mut random = Lcg(seed);
        let limit = 1 + random.next(50);
        let burst = 1 + random.next(100);
        let window_ms = 1 + random.next(1000);
        let r = rule(Algorithm::TokenBucket, limit, window_ms, Some(burst));
        let mut states = KeyState::new();
        let start = 5_000_000_000;
        let mut at_once = 0;
        while decide(&mut states, &consume(std::slice::from_ref(&r), 1), start)
            .0
            .allowed
        {
            at_once += 1;
        }
        assert_eq!(
            at_once, burst,
            "seed {seed}: a full bucket admits exactly burst"
        );
        let mut now = start;
        let mut admitted = burst;
        for _ in 0..3_000 {
            now += random.next(r.interval_us() * 2 + 1);
            if decide(&mut states, &consume(std::slice::from_ref(&r), 1), now)
                .0
                .allowed
            {
                admitted += 1;
            }
        }
        let refilled = (now - start) / r.interval_us();
        assert!(
            admitted <= burst + refilled,
            "seed {seed}: {admitted} > {burst} + {refilled}"
        );
    }
}

#[test]
fn fixed_window_counts_per_aligned_window_and_resets_at_its_end() {
    let r = rule(Algorithm::FixedWindow, 3, 1000, None);
    let mut states = KeyState::new();
    let now = 10_000_250_000; // 250 ms into a window
    for _ in 0..3 {
        assert!(
            decide(&mut states, &consume(std::slice::from_ref(&r), 1), now)
                .0
                .allowed
        );
    }
    let (denied, _) = decide(&mut states, &consume(std::slice::from_ref(&r), 1), now);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_us(), Some(750_000));
    assert_eq!(denied.rules[0].reset_after_us, 750_000);
    assert!(
        decide(&mut states, &consume(&[r], 1), now + 750_000)
            .0
            .allowed
    );
}

/// A denied rule consumes nothing from the others, and a peek changes nothing.
#[test]
fn several_rules_are_all_or_nothing_and_peeks_change_nothing() {
    let wide = rule(Algorithm::SlidingWindow, 10, 60_000, None);
    let narrow = rule(Algorithm::FixedWindow, 2, 60_000, None);
    let both = [wide.clone(), narrow];
    let mut states = KeyState::new();
    let now = 1_000_000;
    assert!(decide(&mut states, &consume(&both, 2), now).0.allowed);
    let before = states.clone();
    let (denied, _) = decide(&mut states, &consume(&both, 1), now);
    assert!(!denied.allowed);
    assert!(denied.rules[0].allowed && !denied.rules[1].allowed);
    assert_eq!(denied.rules[0].remaining, 8);
    assert_eq!(states, before, "the denied check changed nothing");
    let peek = Check {
        mode: Mode::Peek,
        ..consume(&[wide], 5)
    };
    let (peeked, _) = decide(&mut states, &peek, now);
    assert!(peeked.allowed);
    assert_eq!(states, before, "the peek changed nothing");
}

/// States of rules a later check does not name are kept while they matter, and dropped
/// after, whatever their kind (a passed fixed window included).
#[test]
fn states_of_rules_not_named_expire_by_themselves() {
    let fixed = rule(Algorithm::FixedWindow, 3, 1000, None);
    let sliding = rule(Algorithm::SlidingWindow, 3, 1000, None);
    let bucket = rule(Algorithm::TokenBucket, 3, 1000, None);
    let other = rule(Algorithm::FixedWindow, 5, 60_000, None);
    let mut states = KeyState::new();
    let now = 10_000_500_000;
    let all = [fixed, sliding, bucket];
    assert!(decide(&mut states, &consume(&all, 1), now).0.allowed);
    let (_, life) = decide(
        &mut states,
        &consume(std::slice::from_ref(&other), 1),
        now + 100,
    );
    assert!(
        life > 1_000_000,
        "the other rule's window (aligned to the epoch): {life}"
    );
    assert_eq!(states.len(), 4);
    let later = now + 5_000_000;
    decide(
        &mut states,
        &consume(std::slice::from_ref(&other), 1),
        later,
    );
    assert_eq!(
        states.len(),
        1,
        "the passed states were dropped: {states:?}"
    );
}

#[test]
fn rules_out_of_range_are_refused() {
    let bad = |a, l, w, b| Rule::new(None, a, l, w, b).is_err();
    assert!(bad(Algorithm::SlidingWindow, 0, 1000, None));
    assert!(bad(
        Algorithm::SlidingWindow,
        MAX_SLIDING_LIMIT + 1,
        1000,
        None
    ));
    assert!(bad(Algorithm::FixedWindow, 5, 0, None));
    assert!(bad(Algorithm::FixedWindow, 5, MAX_WINDOW_MS + 1, None));
    assert!(bad(Algorithm::FixedWindow, 5, 1000, Some(5)));
    assert!(bad(Algorithm::TokenBucket, 5, 1000, Some(0)));
    assert!(bad(Algorithm::TokenBucket, 1, MAX_WINDOW_MS, Some(2)));
    assert!(!bad(Algorithm::TokenBucket, 5, 1000, Some(50)));
}

#[test]
fn state_is_forgotten_when_it_no_longer_matters() {
    let r = rule(Algorithm::TokenBucket, 10, 1000, None);
    let mut states = KeyState::new();
    let (_, life) = decide(
        &mut states,
        &consume(std::slice::from_ref(&r), 4),
        1_000_000,
    );
    assert_eq!(life, 400_000, "four tokens take 400 ms to refill");
    let peek = Check {
        mode: Mode::Peek,
        ..consume(&[r], 1)
    };
    let (decision, life) = decide(&mut states, &peek, 1_400_000);
    assert_eq!((decision.rules[0].remaining, life), (10, 0));
    assert!(states.is_empty());
}
