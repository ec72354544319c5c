//! The topic store's behaviour, identical on the memory and Redis adapters: order, resume after
//! an id, a reset (never a gap) for an id that cannot be resumed, trimming, tenancy, and racing
//! publishers seen once each, in one order, by every subscriber.

use std::time::Duration;

use statekeeper::{
    capabilities::topic::{
        model::{NewEvent, ResetReason, Resume, Shared, TopicName},
        port::{Subscription, TopicLimits},
    },
    domain::ids::Tenant,
    store::Stores,
};

fn t1() -> Tenant {
    Tenant::new("t1")
}

fn topic(name: &str) -> TopicName {
    TopicName::parse(name).unwrap()
}

const LIMITS: TopicLimits = TopicLimits {
    max_len: 10_000,
    retention_ms: 60_000,
    buffer: 10_000,
};

fn message(n: usize) -> NewEvent {
    NewEvent {
        name: n.is_multiple_of(2).then(|| "even".to_string()),
        data: format!("{{\"n\":{n}}}"),
    }
}

async fn publish(stores: &Stores, name: &str, n: usize) -> Shared {
    stores
        .topics
        .publish(&t1(), &topic(name), &message(n), LIMITS)
        .await
        .unwrap()
}

async fn subscribe(stores: &Stores, name: &str, after: Option<&str>) -> Subscription {
    stores
        .topics
        .subscribe(&t1(), &topic(name), after, LIMITS)
        .await
        .unwrap()
}

/// The whole backlog: the first page, then every further page (the Redis adapter reads 50 at
/// a time; memory gives it all at once).
async fn backlog(subscription: &mut Subscription) -> Vec<Shared> {
    let mut all = std::mem::take(&mut subscription.backlog);
    while let (Some(more), Some(last)) = (&subscription.more, all.last()) {
        let page = more.next_page(last.order).await.unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    all
}

/// The next `n` live messages, each within a second.
async fn next_live(subscription: &mut Subscription, n: usize) -> Vec<Shared> {
    let mut received = Vec::new();
    while received.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(1), subscription.live.recv())
            .await
            .expect("a live message arrives")
            .expect("the channel is open");
        received.push(event);
    }
    received
}

/// Messages published after a subscription are received live, in order, with their names and
/// data; ids grow.
async fn live_messages_in_order(stores: &Stores) {
    let mut subscription = subscribe(stores, "live", None).await;
    assert_eq!(subscription.start, Resume::Live);
    assert!(subscription.backlog.is_empty());
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(publish(stores, "live", n).await);
    }
    let received = next_live(&mut subscription, 5).await;
    assert_eq!(received, published);
    assert_eq!(received[0].name.as_deref(), Some("even"));
    assert_eq!(received[1].name, None);
    assert_eq!(received[3].data, "{\"n\":3}");
    assert!(received.windows(2).all(|w| w[0].order < w[1].order));
}

/// A subscriber that last saw message 3 of 10 starts with 4..10 and misses nothing after.
async fn resume_after_an_id(stores: &Stores) {
    let mut published = Vec::new();
    for n in 0..10 {
        published.push(publish(stores, "resume", n).await);
    }
    let mut subscription = subscribe(stores, "resume", Some(&published[3].id)).await;
    assert_eq!(subscription.start, Resume::After(published[3].order));
    assert_eq!(backlog(&mut subscription).await, published[4..].to_vec());
    assert_eq!(subscription.earliest, None);
    let later = publish(stores, "resume", 10).await;
    assert_eq!(next_live(&mut subscription, 1).await, vec![later.clone()]);
    let caught_up = subscribe(stores, "resume", Some(&later.id)).await;
    assert_eq!(caught_up.start, Resume::After(later.order));
    assert!(caught_up.backlog.is_empty());
}

/// Ids this log cannot place get a reset and every retained message.
async fn unknown_ids_reset(stores: &Stores) {
    let first = publish(stores, "unknown", 0).await;
    let second = publish(stores, "unknown", 1).await;
    let other_backend = if first.id.starts_with('m') {
        "1732600000000-0".to_string()
    } else {
        "m00000000-1".to_string()
    };
    for bad in ["garbage", "99999999999999-0", "m12345678-1", &other_backend] {
        let mut subscription = subscribe(stores, "unknown", Some(bad)).await;
        assert_eq!(
            subscription.start,
            Resume::Reset(ResetReason::UnknownId),
            "{bad}"
        );
        assert_eq!(subscription.earliest.as_deref(), Some(first.id.as_str()));
        let all = backlog(&mut subscription).await;
        assert_eq!(all, vec![first.clone(), second.clone()]);
    }
    // An id of another topic's log: a reset (on Redis `history_trimmed`, as for a stream that
    // expired; in memory `unknown_id`, each log having its own epoch).
    let empty = subscribe(stores, "never-published", Some(&first.id)).await;
    assert!(matches!(empty.start, Resume::Reset(_)), "{:?}", empty.start);
    assert!(empty.backlog.is_empty());
}

/// Past `max_len` the oldest go; resuming from a trimmed id is a reset, from a retained one is
/// exact.
async fn trimmed_history_resets(stores: &Stores) {
    let limits = TopicLimits {
        max_len: 10,
        ..LIMITS
    };
    let mut published = Vec::new();
    for n in 0..600 {
        let event = stores
            .topics
            .publish(&t1(), &topic("trim"), &message(n), limits)
            .await
            .unwrap();
        published.push(event);
    }
    let mut subscription = stores
        .topics
        .subscribe(&t1(), &topic("trim"), Some(&published[0].id), limits)
        .await
        .unwrap();
    assert_eq!(
        subscription.start,
        Resume::Reset(ResetReason::HistoryTrimmed)
    );
    // Redis trims whole nodes (`MAXLEN ~`): at least the last 10 are kept, far fewer than 600.
    let all = backlog(&mut subscription).await;
    let kept = all.len();
    assert!((10..600).contains(&kept), "{kept} kept");
    assert_eq!(all, published[600 - kept..].to_vec());
    assert_eq!(
        subscription.earliest.as_deref(),
        Some(published[600 - kept].id.as_str())
    );
    let near = &published[595];
    let mut exact = stores
        .topics
        .subscribe(&t1(), &topic("trim"), Some(&near.id), limits)
        .await
        .unwrap();
    assert_eq!(exact.start, Resume::After(near.order));
    assert_eq!(backlog(&mut exact).await, published[596..].to_vec());
}

/// Past `retention_ms` messages are gone (in memory trimmed by age; on Redis the idle stream
/// expires): resuming from one of them is a reset, with only what came after.
async fn retention_drops_old_messages(stores: &Stores) {
    let limits = TopicLimits {
        retention_ms: 200,
        ..LIMITS
    };
    let publish_one = |n| {
        let stores = stores.clone();
        async move {
            stores
                .topics
                .publish(&t1(), &topic("retained"), &message(n), limits)
                .await
                .unwrap()
        }
    };
    let old = publish_one(0).await;
    publish_one(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fresh = publish_one(2).await;
    let subscription = stores
        .topics
        .subscribe(&t1(), &topic("retained"), Some(&old.id), limits)
        .await
        .unwrap();
    // On Redis `history_trimmed`; in memory the expired log was replaced by one with another
    // epoch, so the id is `unknown_id`. A reset either way, never a gap.
    assert!(
        matches!(subscription.start, Resume::Reset(_)),
        "{:?}",
        subscription.start
    );
    assert_eq!(subscription.backlog, vec![fresh]);
}

/// A tenant's topic is not another's.
async fn topics_are_per_tenant(stores: &Stores) {
    let mut other = stores
        .topics
        .subscribe(&Tenant::new("t2"), &topic("shared"), None, LIMITS)
        .await
        .unwrap();
    let mine = publish(stores, "shared", 1).await;
    let theirs = stores
        .topics
        .publish(&Tenant::new("t2"), &topic("shared"), &message(2), LIMITS)
        .await
        .unwrap();
    assert_eq!(next_live(&mut other, 1).await, vec![theirs]);
    // "0-0" is before anything (or foreign): a reset and all of this tenant's messages.
    let replay = subscribe(stores, "shared", Some("0-0")).await;
    assert_eq!(replay.backlog, vec![mine]);
}

/// 20 publishers racing 25 messages each: two subscribers (one from the start, one resuming
/// half-way) see all 500 once each, in the same order, ids increasing.
async fn racing_publishers_are_seen_once_in_one_order(stores: &Stores) {
    let mut early = subscribe(stores, "race", None).await;
    let mut tasks = Vec::new();
    for p in 0..20 {
        let stores = stores.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                ids.push(publish(&stores, "race", p * 100 + i).await.id.clone());
            }
            ids
        }));
    }
    let mut published = Vec::new();
    for task in tasks {
        published.extend(task.await.unwrap());
    }
    let received = next_live(&mut early, 500).await;
    assert!(received.windows(2).all(|w| w[0].order < w[1].order));
    let mut seen: Vec<String> = received.iter().map(|e| e.id.clone()).collect();
    let halfway = seen[249].clone();
    let mut resumed = subscribe(stores, "race", Some(&halfway)).await;
    assert_eq!(backlog(&mut resumed).await, received[250..].to_vec());
    seen.sort();
    published.sort();
    assert_eq!(seen, published, "each published message seen once");
}

crate::store_conformance!(
    live_messages_in_order,
    resume_after_an_id,
    unknown_ids_reset,
    trimmed_history_resets,
    retention_drops_old_messages,
    topics_are_per_tenant,
    racing_publishers_are_seen_once_in_one_order,
);
