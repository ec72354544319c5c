//! The state machine against a fake Redis that fails on command: mode × Redis up, down,
//! hung or reset × policy, the probe's back-off, and the return to Redis.

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::{
    capabilities::cache::{model::CacheValue, port::PutCondition},
    domain::{
        ids::{CacheKey, Namespace},
        ttl::Expiry,
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Up,
    Down,
    /// Answers nothing until the deadline.
    Hung,
    /// The next call's connection breaks; Redis itself answers.
    ResetOnce,
}

const DEADLINE: Duration = Duration::from_millis(250);

#[derive(Default)]
struct FakeRedis {
    fault: Mutex<Option<Fault>>,
    calls: AtomicUsize,
    pings: AtomicUsize,
}

impl FakeRedis {
    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = Some(fault);
    }

    fn fault(&self) -> Fault {
        self.fault.lock().unwrap().unwrap_or(Fault::Up)
    }

    async fn call(&self) -> StoreResult<&'static str> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.fault() {
            Fault::Up => Ok("redis"),
            Fault::Down => Err(StoreError::Unavailable("connection refused".into())),
            Fault::Hung => {
                tokio::time::sleep(DEADLINE).await;
                Err(StoreError::Unavailable("no answer".into()))
            }
            Fault::ResetOnce => {
                self.set(Fault::Up);
                Err(StoreError::Unavailable("connection reset".into()))
            }
        }
    }
}

#[async_trait]
impl Reachability for FakeRedis {
    async fn reachable(&self) -> StoreResult<Duration> {
        self.pings.fetch_add(1, Ordering::SeqCst);
        match self.fault() {
            Fault::Up | Fault::ResetOnce => Ok(Duration::from_millis(1)),
            Fault::Down => Err(StoreError::Unavailable("connection refused".into())),
            Fault::Hung => {
                tokio::time::sleep(DEADLINE).await;
                Err(StoreError::Unavailable("no answer".into()))
            }
        }
    }
}

fn machine(mode: BackendMode, policy: WhileDegraded) -> (Arc<Failover>, Arc<FakeRedis>) {
    let redis = Arc::new(FakeRedis::default());
    let memory = (policy == WhileDegraded::ServeFromMemory).then(|| MemoryBackend::new(1 << 20));
    let failover = Failover::new(
        mode,
        Some(redis.clone() as Arc<dyn Reachability>),
        memory,
        vec![(crate::capabilities::cache::DECLARATION.capability, policy)],
    );
    (Arc::new(failover), redis)
}

async fn call(
    failover: &Failover,
    redis: &FakeRedis,
    repeatable: bool,
    memory_allowed: bool,
) -> StoreResult<&'static str> {
    let on_memory = memory_allowed.then_some(|| async { Ok("memory") });
    failover.route(repeatable, || redis.call(), on_memory).await
}

#[tokio::test(start_paused = true)]
async fn up_serves_from_redis_in_every_mode() {
    for mode in [BackendMode::Auto, BackendMode::Redis] {
        let (failover, redis) = machine(mode, WhileDegraded::ServeFromMemory);
        assert_eq!(call(&failover, &redis, true, true).await.unwrap(), "redis");
        assert!(!failover.is_down());
    }
}

#[tokio::test(start_paused = true)]
async fn down_serves_from_memory_or_refuses_as_the_policy_says() {
    for fault in [Fault::Down, Fault::Hung] {
        let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
        redis.set(fault);
        assert_eq!(
            call(&failover, &redis, false, true).await.unwrap(),
            "memory"
        );
        assert!(failover.is_down(), "{fault:?}");
        let before = redis.calls.load(Ordering::SeqCst);
        assert_eq!(call(&failover, &redis, true, true).await.unwrap(), "memory");
        assert_eq!(
            redis.calls.load(Ordering::SeqCst),
            before,
            "while down, calls go straight to memory"
        );

        let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::Refuse);
        redis.set(fault);
        let refused = call(&failover, &redis, true, false).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(failover.is_down());
    }
    let (failover, redis) = machine(BackendMode::Redis, WhileDegraded::Refuse);
    redis.set(Fault::Down);
    assert!(matches!(
        call(&failover, &redis, true, false).await,
        Err(StoreError::Unavailable(_))
    ));
    let report = failover.report().await;
    assert!(report.redis_down && !report.active_is_redis);
}

#[tokio::test(start_paused = true)]
async fn a_reset_connection_is_no_outage() {
    let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
    redis.set(Fault::ResetOnce);
    assert_eq!(
        call(&failover, &redis, true, true).await.unwrap(),
        "redis",
        "a repeatable call is made again on a fresh connection"
    );
    redis.set(Fault::ResetOnce);
    let interrupted = call(&failover, &redis, false, true).await;
    assert!(
        matches!(interrupted, Err(StoreError::Interrupted(_))),
        "a call that may have applied is neither repeated nor sent to memory: {interrupted:?}"
    );
    assert!(!failover.is_down());
}

#[tokio::test(start_paused = true)]
async fn a_busy_pool_is_no_outage() {
    let (failover, _) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
    let busy = failover
        .route(
            true,
            || async { Err::<&str, _>(StoreError::Busy("no free connection".into())) },
            Some(|| async { Ok("memory") }),
        )
        .await;
    assert!(matches!(busy, Err(StoreError::Busy(_))));
    assert!(!failover.is_down());
}

#[tokio::test(start_paused = true)]
async fn the_probe_backs_off_and_brings_traffic_back() {
    let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
    redis.set(Fault::Down);
    let every = Duration::from_millis(1000);
    tokio::spawn(probe(
        Arc::downgrade(&failover),
        failover.recheck.clone(),
        every,
    ));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(failover.is_down(), "the first PING runs at once");
    let pings_at = |ms| {
        let redis = redis.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            redis.pings.load(Ordering::SeqCst)
        }
    };
    // PINGs at 0, 50, 150, 350, 750, 1550, 2550 ms: 50 ms doubling up to the interval.
    assert_eq!(pings_at(40).await, 1);
    assert_eq!(pings_at(20).await, 2, "at 60 ms");
    assert_eq!(pings_at(100).await, 3, "at 160 ms");
    assert_eq!(pings_at(600).await, 5, "at 760 ms");
    assert_eq!(pings_at(1000).await, 6, "at 1760 ms");
    assert_eq!(
        pings_at(1000).await,
        7,
        "at 2760 ms: capped at the interval"
    );

    let memory = failover.memory.clone().unwrap();
    let cache = crate::capabilities::cache::memory::MemoryCache::new(&memory);
    let (t, n, k) = (
        Tenant::new("t"),
        Namespace::parse("n").unwrap(),
        CacheKey::parse("k").unwrap(),
    );
    let value = CacheValue::parse(bytes::Bytes::from_static(b"1"), 10).unwrap();
    cache
        .put(&t, &n, &k, &value, Expiry::Never, PutCondition::Always)
        .await
        .unwrap();
    redis.set(Fault::Up);
    tokio::time::sleep(every).await;
    assert!(!failover.is_down(), "the probe saw Redis answer");
    assert_eq!(call(&failover, &redis, true, true).await.unwrap(), "redis");
    assert_eq!(
        cache.get(&t, &n, &k).await.unwrap(),
        None,
        "what memory took while degraded is dropped on the way back"
    );
}

/// A write memory took that the switch back could not hand over (Redis refused it for a
/// moment) reaches Redis at the probe's next turns, without waiting for another outage; memory
/// keeps it until then and is emptied after.
#[tokio::test(start_paused = true)]
async fn a_late_write_the_switch_back_could_not_hand_over_is_retried_while_up() {
    use crate::store::handback::tests::{hand_back, value};
    let (mut failover, redis) = {
        let (failover, redis) = machine(BackendMode::Auto, WhileDegraded::ServeFromMemory);
        (Arc::into_inner(failover).unwrap(), redis)
    };
    let from = failover.memory.clone().unwrap().stores();
    // Redis stands in as a small memory backend, so that it can be full for a while.
    let target = MemoryBackend::new(800).stores();
    failover.handback = Some(hand_back(&from, &target));
    let failover = Arc::new(failover);
    let every = Duration::from_millis(1000);
    redis.set(Fault::Down);
    tokio::spawn(probe(
        Arc::downgrade(&failover),
        failover.recheck.clone(),
        every,
    ));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(failover.is_down());

    let (t, n) = (Tenant::new("t"), Namespace::parse("n").unwrap());
    let (late, blocker) = (
        CacheKey::parse("late").unwrap(),
        CacheKey::parse("blocker").unwrap(),
    );
    target
        .cache
        .put(
            &t,
            &n,
            &blocker,
            &value(&format!("\"{}\"", "b".repeat(900))),
            Expiry::Never,
            PutCondition::Always,
        )
        .await
        .unwrap();
    redis.set(Fault::Up);
    tokio::time::sleep(every).await;
    assert!(!failover.is_down(), "back on Redis");
    // A call given to memory just before the switch finishes after it.
    from.cache
        .put(
            &t,
            &n,
            &late,
            &value(&format!("\"{}\"", "l".repeat(900))),
            Expiry::Never,
            PutCondition::Always,
        )
        .await
        .unwrap();
    failover.note([Note::cache(&t, &n, &late)]);
    tokio::time::sleep(SETTLE * 2).await;
    assert_eq!(
        target.cache.get(&t, &n, &late).await.unwrap(),
        None,
        "Redis is full"
    );
    assert!(failover.late_pending(), "kept noted");
    assert!(
        from.cache.get(&t, &n, &late).await.unwrap().is_some(),
        "and kept in memory"
    );

    target.cache.delete(&t, &n, &blocker).await.unwrap();
    tokio::time::sleep(every).await;
    assert!(!failover.is_down(), "no outage in between");
    assert_eq!(
        target.cache.get(&t, &n, &late).await.unwrap(),
        Some(value(&format!("\"{}\"", "l".repeat(900)))),
        "handed over while Redis serves"
    );
    assert!(!failover.late_pending());
    assert_eq!(
        from.cache.get(&t, &n, &late).await.unwrap(),
        None,
        "memory is emptied once everything is in Redis"
    );
}
