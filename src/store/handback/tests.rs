use super::*;
use crate::store::{Stores, memory::MemoryBackend};

/// A hand-back from one memory backend to another standing in for Redis (`to`).
pub(crate) fn hand_back(from: &Stores, to: &Stores) -> HandBack {
    HandBack {
        ledger: Arc::default(),
        cache: Some(Pair {
            memory: from.cache.clone(),
            redis: to.cache.clone(),
        }),
        sessions: None,
        agent_states: None,
        pending_actions: None,
        session_rules: SessionRules {
            rolling: false,
            max_lifetime_ms: 86_400_000,
            max_bytes: 1 << 20,
        },
        tombstone: TombstoneLife::Remaining,
        counts: Tally::default(),
    }
}

pub(crate) fn value(text: &str) -> crate::capabilities::cache::model::CacheValue {
    crate::capabilities::cache::model::CacheValue::parse(bytes::Bytes::from(text.to_string()), 1024)
        .unwrap()
}

#[tokio::test]
async fn writes_and_deletes_arrive_and_a_full_target_keeps_them_noted() {
    let (from, to) = (
        MemoryBackend::new(1 << 20).stores(),
        MemoryBackend::new(1 << 20).stores(),
    );
    let (t, ns) = (Tenant::new("t"), Namespace::parse("ns").unwrap());
    let (kept, gone) = (
        CacheKey::parse("kept").unwrap(),
        CacheKey::parse("gone").unwrap(),
    );
    let expiry = Expiry::After(Ttl::carried(60));
    to.cache
        .put(&t, &ns, &gone, &value("1"), expiry, PutCondition::Always)
        .await
        .unwrap();
    from.cache
        .put(&t, &ns, &kept, &value("2"), expiry, PutCondition::Always)
        .await
        .unwrap();
    let back = hand_back(&from, &to);
    back.ledger
        .note([Note::cache(&t, &ns, &kept), Note::cache(&t, &ns, &gone)]);
    let report = back.run().await.unwrap();
    assert_eq!((report.written, report.deleted, report.failed), (1, 1, 0));
    assert_eq!(
        to.cache.get(&t, &ns, &kept).await.unwrap(),
        Some(value("2"))
    );
    assert_eq!(to.cache.get(&t, &ns, &gone).await.unwrap(), None);
    assert!(matches!(
        to.cache.ttl(&t, &ns, &kept).await.unwrap(),
        TtlState::Expires(59..=60)
    ));
    assert!(back.ledger.is_empty());

    // A target that cannot take writes (full): the hand-back stops and keeps the item.
    let full = MemoryBackend::new(0).stores();
    let back = hand_back(&from, &full);
    back.ledger.note([Note::cache(&t, &ns, &kept)]);
    assert!(matches!(back.run().await, Err(StoreError::Full(_))));
    assert!(!back.ledger.is_empty(), "kept for the next recovery");
}

#[tokio::test]
async fn a_token_is_moved_not_copied_so_a_later_outage_cannot_resolve_it_twice() {
    use crate::capabilities::pending_action::model::{NewPendingAction, now};
    let (from, to) = (
        MemoryBackend::new(1 << 20).stores(),
        MemoryBackend::new(1 << 20).stores(),
    );
    let t = Tenant::new("t");
    let new = NewPendingAction {
        intent_name: "deploy".into(),
        entities: serde_json::Map::new(),
        summary: String::new(),
        session_id: None,
        user_id: None,
    };
    let token = ActionToken::generate();
    let action = PendingAction::new(token.clone(), new, now(), Ttl::carried(600));
    assert!(
        from.pending_actions
            .create(&t, &action, Ttl::carried(600))
            .await
            .unwrap()
    );
    let mut back = hand_back(&from, &to);
    back.pending_actions = Some(Pair {
        memory: from.pending_actions.clone(),
        redis: to.pending_actions.clone(),
    });
    // Redis cannot take it now (full): it stays in memory, still noted.
    let full = MemoryBackend::new(0).stores();
    let mut stuck = hand_back(&from, &full);
    stuck.pending_actions = Some(Pair {
        memory: from.pending_actions.clone(),
        redis: full.pending_actions.clone(),
    });
    stuck
        .ledger
        .note([Note::Item(Item::Action(t.clone(), token.clone()))]);
    assert!(matches!(stuck.run().await, Err(StoreError::Full(_))));
    assert!(
        from.pending_actions
            .get(&t, &token)
            .await
            .unwrap()
            .is_some()
    );

    back.ledger
        .note([Note::Item(Item::Action(t.clone(), token.clone()))]);
    let report = back.run().await.unwrap();
    assert_eq!(report.written, 1);
    let moved = to.pending_actions.get(&t, &token).await.unwrap().unwrap();
    assert_eq!(moved.status, ActionStatus::Pending);
    // Memory no longer holds it: a confirm there (a later outage) cannot win while a
    // cancel wins in Redis.
    assert!(
        from.pending_actions
            .get(&t, &token)
            .await
            .unwrap()
            .is_none()
    );
    let tomb = TombstoneLife::Remaining;
    let in_memory = from
        .pending_actions
        .confirm(&t, &token, now(), None, tomb)
        .await;
    assert!(matches!(in_memory.unwrap(), Confirm::NotFound));
    let in_redis = to.pending_actions.cancel(&t, &token, now(), tomb).await;
    assert!(matches!(in_redis.unwrap(), Cancel::Cancelled));
}

fn cache(key: &str) -> Item {
    Item::Cache(
        Tenant::new("t"),
        Namespace::parse("ns").unwrap(),
        CacheKey::parse(key).unwrap(),
    )
}

#[test]
fn a_ledger_keeps_one_entry_per_item_and_bulk_deletes_in_order() {
    let ledger = Ledger::default();
    assert!(ledger.is_empty());
    ledger.note([Note::Item(cache("a")), Note::Item(cache("a"))]);
    ledger.note([Note::Bulk(Bulk::CachePattern(
        Tenant::new("t"),
        Namespace::parse("ns").unwrap(),
        "x*".into(),
    ))]);
    ledger.note([Note::Bulk(Bulk::UserSessions(
        Tenant::new("t"),
        UserId::parse("u").unwrap(),
    ))]);
    let mut taken = ledger.take();
    assert!(ledger.is_empty());
    assert_eq!(taken.items.len(), 1);
    assert!(matches!(taken.bulk[0].0, Bulk::CachePattern(..)));

    // A failed hand-back puts back what it did not get to, before what came meanwhile; an
    // item touched again meanwhile keeps its later time.
    taken.bulk.remove(0);
    let earlier = taken.items[&cache("a")];
    ledger.note([
        Note::Item(cache("a")),
        Note::Bulk(Bulk::CachePattern(
            Tenant::new("t"),
            Namespace::parse("ns").unwrap(),
            "y*".into(),
        )),
    ]);
    ledger.put_back(taken);
    let again = ledger.take();
    assert!(again.items[&cache("a")] >= earlier);
    assert!(matches!(again.bulk[0].0, Bulk::UserSessions(..)));
    assert!(matches!(&again.bulk[1].0, Bulk::CachePattern(_, _, p) if p == "y*"));
}
