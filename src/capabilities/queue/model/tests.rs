use crate::capabilities::queue::model::*;

fn job(priority: u8) -> NewJob {
    NewJob {
        payload: format!("{{\"p\":{priority}}}"),
        priority,
        delay_ms: 0,
        max_attempts: 3,
        backoff: Backoff {
            kind: BackoffKind::Fixed,
            base_ms: 100,
            max_ms: 100,
        },
        dedup_key: None,
        dedup_window_ms: 1,
    }
}

fn tokens(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

#[test]
fn priorities_first_then_fifo() {
    let mut q = QueueState::default();
    for (i, p) in [0, 5, 9, 5, 0].iter().enumerate() {
        q.enqueue(&job(*p), &format!("j{i}"), 1_000);
    }
    let order: Vec<String> = q
        .lease(&tokens(5), 1000, 2_000)
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(order, ["j2", "j1", "j3", "j0", "j4"]);
}

#[test]
fn a_delayed_job_is_not_leased_before_its_time() {
    let mut q = QueueState::default();
    let mut new = job(0);
    new.delay_ms = 500;
    q.enqueue(&new, "late", 1_000_000);
    assert!(q.lease(&tokens(1), 1000, 1_499_999).is_empty());
    assert_eq!(q.next_change_us(), Some(1_500_000));
    assert_eq!(q.lease(&tokens(1), 1000, 1_500_000).len(), 1);
}

#[test]
fn expired_leases_retry_after_backoff_then_die() {
    let mut q = QueueState::default();
    q.enqueue(&job(0), "j", 0);
    let mut now = 0;
    for attempt in 1..=3 {
        let leased = q.lease(&tokens(1), 10, now);
        assert_eq!(leased.len(), 1, "attempt {attempt}");
        assert_eq!(leased[0].attempt, attempt);
        now += 10_000; // the lease expires
        assert!(!q.ack("j", "t0", now), "an expired lease cannot ack");
        now += 100_000; // the back-off passes
    }
    let dead = q.get("j", now).unwrap();
    assert_eq!((dead.state, dead.attempt), (JobState::Dead, 3));
    assert_eq!(dead.last_error.as_deref(), Some("the lease expired"));
    assert!(q.redrive("j", now));
    assert_eq!(q.lease(&tokens(1), 10, now)[0].attempt, 1);
}

#[test]
fn only_the_current_holder_acks_and_only_once() {
    let mut q = QueueState::default();
    q.enqueue(&job(0), "j", 0);
    let first = q.lease(&["old".into()], 10, 0);
    assert_eq!(first.len(), 1);
    // The lease expires, the back-off (100 ms) passes and another worker leases the job.
    let second = q.lease(&["new".into()], 1000, 200_000);
    assert_eq!(second.len(), 1);
    assert!(!q.ack("j", "old", 200_001));
    assert_eq!(q.heartbeat("j", "old", 1000, 200_001), None);
    assert_eq!(q.nack("j", "old", None, None, 200_001), None);
    assert!(q.ack("j", "new", 200_002));
    assert!(!q.ack("j", "new", 200_003), "acked once");
    assert_eq!(q.counts(200_004).done, 1);
}

/// A queue with nothing live is forgotten once its finished jobs are: done after an hour,
/// dead after 14 days; while a job is live it is never.
#[test]
fn an_idle_queue_is_forgotten_with_its_finished_jobs() {
    let mut q = QueueState::default();
    let once = NewJob {
        max_attempts: 1,
        ..job(0)
    };
    q.enqueue(&job(0), "ok", 0);
    q.enqueue(&once, "fails", 0);
    assert_eq!(q.idle_until(), None, "live jobs");
    let leased = q.lease(&["a".into(), "b".into()], 1000, 10);
    assert_eq!(leased.len(), 2);
    assert_eq!(q.idle_until(), None, "leased jobs are live");
    assert!(q.ack("ok", "a", 20));
    assert_eq!(q.nack("fails", "b", None, None, 30), Some(JobState::Dead));
    assert_eq!(q.idle_until(), Some(30 + DEAD_RETENTION_US));
    assert!(q.get("fails", 30 + DEAD_RETENTION_US - 1).is_some());
    assert_eq!(q.counts(30 + DEAD_RETENTION_US).dead, 0, "forgotten");
    assert!(q.get("fails", 30 + DEAD_RETENTION_US).is_none());
    assert!(q.get("ok", 30 + DEAD_RETENTION_US).is_none());
    assert!(q.is_empty());
}

/// The weight is kept as jobs come and go, and is back to nothing once they are gone.
#[test]
fn the_weight_follows_the_jobs() {
    let mut q = QueueState::default();
    let mut new = job(0);
    new.dedup_key = Some("k".into());
    q.enqueue(&new, "a", 0);
    q.enqueue(&job(0), "b", 0);
    let two = q.weight();
    assert!(two > 2 * 160);
    for leased in q.lease(&tokens(2), 1000, 0) {
        assert!(q.ack(&leased.id, &leased.lease_token, 1));
    }
    assert_eq!(q.weight(), two, "finished jobs stay visible for an hour");
    q.promote(DONE_RETENTION_US + 2);
    assert_eq!(q.weight(), 0);
    assert!(q.is_empty());
}

#[test]
fn dedup_returns_the_first_job_within_the_window() {
    let mut q = QueueState::default();
    let mut new = job(0);
    new.dedup_key = Some("order-7".into());
    assert_eq!(q.enqueue(&new, "a", 0), ("a".into(), true));
    assert_eq!(q.enqueue(&new, "b", 999), ("a".into(), false));
    assert_eq!(q.enqueue(&new, "c", 1_000), ("c".into(), true));
}

#[test]
fn nack_honours_its_delay_and_exponential_backoff_grows() {
    let backoff = Backoff {
        kind: BackoffKind::Exponential,
        base_ms: 100,
        max_ms: 350,
    };
    assert_eq!(
        (1..=4).map(|a| backoff.delay_ms(a)).collect::<Vec<_>>(),
        [100, 200, 350, 350]
    );
    let mut q = QueueState::default();
    q.enqueue(&job(0), "j", 0);
    q.lease(&tokens(1), 1000, 0);
    let state = q.nack("j", "t0", Some(50), Some("boom".into()), 10);
    assert_eq!(state, Some(JobState::Delayed));
    assert!(q.lease(&tokens(1), 1000, 50_009).is_empty());
    assert_eq!(q.lease(&tokens(1), 1000, 50_010).len(), 1);
    assert_eq!(
        q.get("j", 50_010).unwrap().last_error.as_deref(),
        Some("boom")
    );
}
