//! The queue store's behaviour, identical on the memory and Redis adapters: priorities and
//! FIFO, delays, one holder per job under races, leases that expire into retries and dead
//! letters, dedup, and long polls woken by an enqueue.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use statekeeper::{
    capabilities::queue::{
        model::{Backoff, BackoffKind, JobId, JobState, NewJob, QueueName},
        port::{Leases, Nack, lease_waiting},
    },
    domain::ids::Tenant,
    store::Stores,
};

fn t1() -> Tenant {
    Tenant::new("t1")
}

fn q(name: &str) -> QueueName {
    QueueName::parse(name).unwrap()
}

fn job(priority: u8) -> NewJob {
    NewJob {
        payload: format!("{{\"p\":{priority}}}"),
        priority,
        delay_ms: 0,
        max_attempts: 3,
        backoff: Backoff {
            kind: BackoffKind::Fixed,
            base_ms: 0,
            max_ms: 0,
        },
        dedup_key: None,
        dedup_window_ms: 60_000,
    }
}

fn new_id() -> JobId {
    JobId::parse(uuid::Uuid::new_v4().to_string()).unwrap()
}

fn tokens(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect()
}

async fn enqueue(stores: &Stores, queue: &str, new: &NewJob) -> String {
    let (id, created) = stores
        .queues
        .enqueue(&t1(), &q(queue), new, &new_id())
        .await
        .unwrap();
    assert!(created);
    id
}

async fn lease(stores: &Stores, queue: &str, n: usize, visibility_ms: u64) -> Leases {
    stores
        .queues
        .lease(&t1(), &q(queue), &tokens(n), visibility_ms)
        .await
        .unwrap()
}

async fn state(stores: &Stores, queue: &str, id: &str) -> (JobState, u32) {
    let job = stores
        .queues
        .get(&t1(), &q(queue), &JobId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    (job.state, job.attempt)
}

async fn priorities_first_then_fifo(stores: &Stores) {
    let mut expected = Vec::new();
    let mut enqueued = Vec::new();
    for (i, priority) in [0, 5, 9, 5, 0, 9].into_iter().enumerate() {
        let mut new = job(priority);
        new.payload = format!("{{\"i\":{i}}}");
        enqueued.push((priority, i, enqueue(stores, "prio", &new).await));
    }
    enqueued.sort_by_key(|(p, i, _)| (std::cmp::Reverse(*p), *i));
    expected.extend(enqueued.iter().map(|(_, _, id)| id.clone()));
    let leased = lease(stores, "prio", 10, 60_000).await;
    let order: Vec<String> = leased.jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(order, expected);
    assert_eq!(leased.jobs[0].payload, "{\"i\":2}");
    assert!(leased.jobs.iter().all(|j| j.attempt == 1));
}

async fn a_delayed_job_waits_for_its_time(stores: &Stores) {
    let mut new = job(0);
    new.delay_ms = 300;
    let id = enqueue(stores, "later", &new).await;
    let early = lease(stores, "later", 1, 1000).await;
    assert!(early.jobs.is_empty());
    let hint = early.next_change_in_us.unwrap();
    assert!(hint > 0 && hint <= 300_000, "{hint}");
    assert_eq!(state(stores, "later", &id).await.0, JobState::Delayed);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(lease(stores, "later", 1, 1000).await.jobs[0].id, id);
}

/// 20 racing lease calls of 5 over 60 jobs: every job leased exactly once.
async fn racing_leases_hand_each_job_out_once(stores: &Stores) {
    let mut all = HashSet::new();
    for _ in 0..60 {
        all.insert(enqueue(stores, "race", &job(0)).await);
    }
    let results = crate::common::race(20, |_| {
        let stores = stores.clone();
        async move { lease(&stores, "race", 5, 60_000).await.jobs }
    })
    .await;
    let leased: Vec<String> = results.into_iter().flatten().map(|j| j.id).collect();
    let unique: HashSet<String> = leased.iter().cloned().collect();
    assert_eq!(leased.len(), 60, "every job leased");
    assert_eq!(unique, all, "none twice");
}

/// Ten racing acks with the holder's token: exactly one succeeds.
async fn racing_acks_finish_a_job_once(stores: &Stores) {
    let id = enqueue(stores, "acks", &job(0)).await;
    let leased = lease(stores, "acks", 1, 60_000).await.jobs.remove(0);
    let job_id = JobId::parse(id.clone()).unwrap();
    let results = crate::common::race(10, |_| {
        let (stores, token, job_id) = (stores.clone(), leased.lease_token.clone(), job_id.clone());
        async move {
            stores
                .queues
                .ack(&t1(), &q("acks"), &job_id, &token)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(results.iter().filter(|a| **a).count(), 1);
    assert_eq!(state(stores, "acks", &id).await.0, JobState::Done);
    let counts = stores.queues.counts(&t1(), &q("acks")).await.unwrap();
    assert_eq!((counts.done, counts.leased, counts.ready), (1, 0, 0));
}

/// A lease that expires counts an attempt and lets another worker lease the job; the old token
/// can never ack, nack or heartbeat it; after `max_attempts` the job is dead, and a redrive
/// brings it back.
async fn expired_leases_retry_then_bury(stores: &Stores) {
    let id = enqueue(stores, "retry", &job(0)).await;
    let job_id = JobId::parse(id.clone()).unwrap();
    let queues = &stores.queues;
    let mut old_token = None;
    for attempt in 1..=3 {
        let leased = lease(stores, "retry", 1, 50).await;
        assert_eq!(leased.jobs.len(), 1, "attempt {attempt}");
        assert_eq!(leased.jobs[0].attempt, attempt);
        if let Some(old) = old_token.replace(leased.jobs[0].lease_token.clone()) {
            let stale = Nack {
                token: &old,
                delay_ms: None,
                error: None,
            };
            assert!(!queues.ack(&t1(), &q("retry"), &job_id, &old).await.unwrap());
            assert_eq!(
                queues
                    .nack(&t1(), &q("retry"), &job_id, &stale)
                    .await
                    .unwrap(),
                None
            );
            let beat = queues
                .heartbeat(&t1(), &q("retry"), &job_id, &old, 1000)
                .await;
            assert_eq!(beat.unwrap(), None);
        }
        tokio::time::sleep(Duration::from_millis(70)).await;
    }
    assert!(lease(stores, "retry", 1, 50).await.jobs.is_empty());
    assert_eq!(state(stores, "retry", &id).await, (JobState::Dead, 3));
    let dead = queues.dead(&t1(), &q("retry"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("the lease expired"));
    assert!(queues.redrive(&t1(), &q("retry"), &job_id).await.unwrap());
    assert!(
        !queues.redrive(&t1(), &q("retry"), &job_id).await.unwrap(),
        "not dead now"
    );
    assert_eq!(lease(stores, "retry", 1, 1000).await.jobs[0].attempt, 1);
}

/// A nack with a delay and an error; a heartbeat keeps the job leased past its first end.
async fn nack_delays_and_heartbeats_extend(stores: &Stores) {
    let id = enqueue(stores, "nack", &job(0)).await;
    let job_id = JobId::parse(id.clone()).unwrap();
    let queues = &stores.queues;
    let first = lease(stores, "nack", 1, 60_000).await.jobs.remove(0);
    let nack = Nack {
        token: &first.lease_token,
        delay_ms: Some(200),
        error: Some("SMTP timeout"),
    };
    let after = queues
        .nack(&t1(), &q("nack"), &job_id, &nack)
        .await
        .unwrap();
    assert_eq!(after, Some(JobState::Delayed));
    assert!(lease(stores, "nack", 1, 100).await.jobs.is_empty());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = lease(stores, "nack", 1, 150).await.jobs.remove(0);
    assert_eq!(second.attempt, 2);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (tenant, queue) = (t1(), q("nack"));
        let beat = queues.heartbeat(&tenant, &queue, &job_id, &second.lease_token, 150);
        assert!(beat.await.unwrap().is_some(), "the holder keeps its lease");
    }
    assert!(
        lease(stores, "nack", 1, 100).await.jobs.is_empty(),
        "still leased"
    );
    let job = queues
        .get(&t1(), &q("nack"), &job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.last_error.as_deref(), Some("SMTP timeout"));
    assert!(
        queues
            .ack(&t1(), &q("nack"), &job_id, &second.lease_token)
            .await
            .unwrap()
    );
}

async fn dedup_returns_the_first_job(stores: &Stores) {
    let mut new = job(0);
    new.dedup_key = Some("welcome-ada".into());
    let queues = &stores.queues;
    let (first, created) = queues
        .enqueue(&t1(), &q("dedup"), &new, &new_id())
        .await
        .unwrap();
    assert!(created);
    let (again, created) = queues
        .enqueue(&t1(), &q("dedup"), &new, &new_id())
        .await
        .unwrap();
    assert_eq!((again, created), (first, false));
    let counts = queues.counts(&t1(), &q("dedup")).await.unwrap();
    assert_eq!(counts.ready, 1);
}

/// A long poll is woken by an enqueue within milliseconds.
async fn a_long_poll_is_woken_by_an_enqueue(stores: &Stores) {
    let polling = stores.clone();
    let poll = crate::common::spawn_timed(async move {
        let (queues, queue) = (polling.queues.as_ref(), q("poll"));
        let wait = Duration::from_secs(5);
        let leases = lease_waiting(queues, &t1(), &queue, &tokens(1), 1000, wait).await;
        leases.unwrap().jobs.len()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let enqueued_at = Instant::now();
    enqueue(stores, "poll", &job(0)).await;
    let (n, leased_at) = poll.await.unwrap();
    assert_eq!(n, 1);
    crate::common::assert_woken_promptly(enqueued_at, leased_at, "enqueue");
}

async fn purge_empties_the_queue_only(stores: &Stores) {
    for _ in 0..3 {
        enqueue(stores, "purged", &job(0)).await;
    }
    enqueue(stores, "kept", &job(0)).await;
    let other = stores
        .queues
        .counts(&Tenant::new("t2"), &q("purged"))
        .await
        .unwrap();
    assert_eq!(other.ready, 0, "another tenant's queue of the same name");
    assert_eq!(stores.queues.purge(&t1(), &q("purged")).await.unwrap(), 3);
    assert_eq!(
        stores
            .queues
            .counts(&t1(), &q("purged"))
            .await
            .unwrap()
            .ready,
        0
    );
    assert_eq!(
        stores.queues.counts(&t1(), &q("kept")).await.unwrap().ready,
        1
    );
}

crate::store_conformance!(
    priorities_first_then_fifo,
    a_delayed_job_waits_for_its_time,
    racing_leases_hand_each_job_out_once,
    racing_acks_finish_a_job_once,
    expired_leases_retry_then_bury,
    nack_delays_and_heartbeats_extend,
    dedup_returns_the_first_job,
    a_long_poll_is_woken_by_an_enqueue,
    purge_empties_the_queue_only,
);
