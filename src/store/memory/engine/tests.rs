use super::*;

impl Weigh for u32 {
    fn weight(&self) -> usize {
        4
    }
}

fn unbounded() -> Arc<Budget> {
    Arc::new(Budget::new(usize::MAX))
}

#[tokio::test(start_paused = true)]
async fn the_budget_counts_writes_rewrites_removals_and_expiry() {
    let budget = Arc::new(Budget::new(150));
    let engine: Engine<String, u32> = Engine::new(budget.clone());
    assert!(engine.ensure_room().is_ok());
    put(&engine, "a", 1, None);
    let one = budget.used();
    assert_eq!(one, "a".to_string().weight() + 4 + ENTRY_OVERHEAD);
    put(&engine, "a", 2, None);
    assert_eq!(budget.used(), one, "a rewrite replaces, it does not add");
    put(&engine, "b", 1, Some(1));
    assert_eq!(budget.used(), 2 * one);
    assert!(
        matches!(engine.ensure_room(), Err(StoreError::Full(_))),
        "{} of 200 bytes",
        budget.used()
    );
    engine.update(&"a".to_string(), |slot| slot.take());
    assert_eq!(budget.used(), one);
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::sleep(PURGE_INTERVAL * 2).await;
    assert_eq!(budget.used(), 0, "the purge gives expired bytes back");
    assert!(engine.ensure_room().is_ok());
    put(&engine, "c", 1, None);
    engine.clear();
    assert_eq!(budget.used(), 0);
}

fn put(engine: &Engine<String, u32>, key: &str, value: u32, ttl: Option<u64>) {
    engine.update(&key.to_string(), |slot| {
        *slot = Some(Entry {
            value,
            expires_at: ttl.map(|s| Instant::now() + Duration::from_secs(s)),
        })
    });
}

fn get(engine: &Engine<String, u32>, key: &str) -> Option<u32> {
    engine.read(&key.to_string(), |e| e.map(|e| e.value))
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_invisible_then_purged() {
    let engine = Engine::new(unbounded());
    put(&engine, "short", 1, Some(5));
    put(&engine, "long", 2, Some(50));
    put(&engine, "forever", 3, None);
    assert_eq!(get(&engine, "short"), Some(1));
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        get(&engine, "short"),
        None,
        "expired entries are never read"
    );
    // Let the purge task run.
    tokio::time::sleep(PURGE_INTERVAL * 2).await;
    assert_eq!(engine.len(), 2, "the purge task removed the expired entry");
    tokio::time::advance(Duration::from_secs(60)).await;
    tokio::time::sleep(PURGE_INTERVAL * 2).await;
    assert_eq!(engine.len(), 1);
    assert_eq!(get(&engine, "forever"), Some(3));
}

#[tokio::test(start_paused = true)]
async fn the_sweep_covers_maps_larger_than_a_batch() {
    let engine = Engine::new(unbounded());
    for i in 0..(3 * PURGE_BATCH + 10) {
        put(&engine, &format!("short-{i:06}"), 1, Some(1));
    }
    for i in 0..PURGE_BATCH {
        put(&engine, &format!("long-{i:06}"), 2, Some(1000));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::time::sleep(PURGE_INTERVAL * 50).await;
    assert_eq!(engine.len(), PURGE_BATCH, "every expired entry was swept");
}

#[tokio::test(start_paused = true)]
async fn update_sees_expired_as_absent_and_rewrite_moves_expiry() {
    let engine = Engine::new(unbounded());
    put(&engine, "k", 1, Some(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    let seen = engine.update(&"k".to_string(), |slot| slot.is_some());
    assert!(!seen);
    put(&engine, "k", 2, Some(10));
    put(&engine, "k", 3, None);
    tokio::time::advance(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        get(&engine, "k"),
        Some(3),
        "the old expiry no longer applies"
    );
}

#[tokio::test]
async fn scan_pages_in_order_and_clear_empties() {
    let engine = Engine::new(unbounded());
    for i in 0..5 {
        put(&engine, &format!("k{i}"), i, None);
    }
    let (page, resume) = engine.scan(.., 2, 100, |_, e| Some(e.value));
    assert_eq!(page.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(resume.as_deref(), Some("k1"));
    let (page, resume) = engine.scan("k3".to_string().., 10, 100, |_, e| Some(e.value));
    assert_eq!(page.len(), 2);
    assert!(resume.is_none());
    let (page, resume) = engine.scan(.., 10, 3, |_, e| (e.value == 4).then_some(e.value));
    assert!(page.is_empty(), "only three entries examined");
    assert_eq!(resume.as_deref(), Some("k2"));
    engine.clear();
    assert!(engine.is_empty());
}
