//! The cache store's behaviour, identical on the memory and Redis adapters.

use std::time::Duration;

use bytes::Bytes;
use statekeeper::{
    capabilities::cache::{
        model::{CacheValue, IncrError, Increment, ListCursor},
        port::{CasOutcome, PutCondition, TtlState},
    },
    domain::{
        ids::{CacheKey, Namespace, Tenant},
        ttl::{Expiry, Ttl},
    },
    store::Stores,
};

fn ns(s: &str) -> Namespace {
    Namespace::parse(s).unwrap()
}

fn key(s: &str) -> CacheKey {
    CacheKey::parse(s).unwrap()
}

fn value(s: &str) -> CacheValue {
    CacheValue::parse(Bytes::copy_from_slice(s.as_bytes()), 1 << 20).unwrap()
}

fn ttl(s: u64) -> Expiry {
    Expiry::After(Ttl::new(s, 1_000_000).unwrap())
}

/// The live value's bytes, as text.
async fn text(stores: &Stores, t: &Tenant, n: &Namespace, k: &CacheKey) -> Option<String> {
    let value = stores.cache.get(t, n, k).await.unwrap()?;
    Some(String::from_utf8(value.bytes().to_vec()).unwrap())
}

/// Writes `text` for 60 s when `condition` holds; whether it wrote.
async fn put(
    stores: &Stores,
    t: &Tenant,
    n: &Namespace,
    k: &CacheKey,
    text: &str,
    condition: PutCondition,
) -> bool {
    let cache = &stores.cache;
    cache
        .put(t, n, k, &value(text), ttl(60), condition)
        .await
        .unwrap()
}

async fn put_get_delete_round_trip(stores: &Stores) {
    let (t, n, k) = (Tenant::new("t1"), ns("users"), key("u:1"));
    let cache = &stores.cache;
    assert_eq!(cache.get(&t, &n, &k).await.unwrap(), None);
    assert!(!cache.exists(&t, &n, &k).await.unwrap());
    let raw = r#"{"name": "Ada",  "tags":[1, 2.50, null]}"#;
    assert!(put(stores, &t, &n, &k, raw, PutCondition::Always).await);
    let got = cache.get(&t, &n, &k).await.unwrap().unwrap();
    assert_eq!(
        got.bytes().as_ref(),
        raw.as_bytes(),
        "exactly the stored bytes"
    );
    assert!(cache.exists(&t, &n, &k).await.unwrap());
    assert!(put(stores, &t, &n, &k, "2", PutCondition::Always).await);
    assert_eq!(text(stores, &t, &n, &k).await.as_deref(), Some("2"));
    assert!(cache.delete(&t, &n, &k).await.unwrap());
    assert!(
        !cache.delete(&t, &n, &k).await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(cache.get(&t, &n, &k).await.unwrap(), None);
}

async fn tenants_and_namespaces_are_separate(stores: &Stores) {
    let cache = &stores.cache;
    let (a, b) = (Tenant::new("alpha"), Tenant::new("beta"));
    put(stores, &a, &ns("n"), &key("k"), "1", PutCondition::Always).await;
    assert_eq!(cache.get(&b, &ns("n"), &key("k")).await.unwrap(), None);
    assert_eq!(cache.get(&a, &ns("n2"), &key("k")).await.unwrap(), None);
    // Colons inside ids cannot make two entries collide.
    put(stores, &a, &ns("x:y"), &key("z"), "1", PutCondition::Always).await;
    assert_eq!(cache.get(&a, &ns("x"), &key("y:z")).await.unwrap(), None);
    assert!(!cache.delete(&b, &ns("n"), &key("k")).await.unwrap());
    assert!(cache.exists(&a, &ns("n"), &key("k")).await.unwrap());
}

async fn ttl_is_reported_and_can_be_changed(stores: &Stores) {
    let (t, n) = (Tenant::new("t1"), ns("n"));
    let cache = &stores.cache;
    assert_eq!(
        cache.ttl(&t, &n, &key("none")).await.unwrap(),
        TtlState::Missing
    );
    cache
        .put(
            &t,
            &n,
            &key("k"),
            &value("1"),
            ttl(100),
            PutCondition::Always,
        )
        .await
        .unwrap();
    match cache.ttl(&t, &n, &key("k")).await.unwrap() {
        TtlState::Expires(s) => assert!((99..=100).contains(&s), "{s}"),
        other => panic!("{other:?}"),
    }
    assert!(
        cache
            .set_ttl(&t, &n, &key("k"), Ttl::new(5000, 10_000).unwrap())
            .await
            .unwrap()
    );
    match cache.ttl(&t, &n, &key("k")).await.unwrap() {
        TtlState::Expires(s) => assert!((4999..=5000).contains(&s), "{s}"),
        other => panic!("{other:?}"),
    }
    cache
        .put(
            &t,
            &n,
            &key("p"),
            &value("1"),
            Expiry::Never,
            PutCondition::Always,
        )
        .await
        .unwrap();
    assert_eq!(
        cache.ttl(&t, &n, &key("p")).await.unwrap(),
        TtlState::Persistent
    );
    assert!(
        !cache
            .set_ttl(&t, &n, &key("none"), Ttl::new(5, 10).unwrap())
            .await
            .unwrap(),
        "set_ttl never creates"
    );
    assert_eq!(cache.get(&t, &n, &key("none")).await.unwrap(), None);
}

async fn values_expire(stores: &Stores) {
    let (t, n, k) = (Tenant::new("t1"), ns("n"), key("short"));
    let cache = &stores.cache;
    cache
        .put(&t, &n, &k, &value("1"), ttl(1), PutCondition::Always)
        .await
        .unwrap();
    assert!(cache.exists(&t, &n, &k).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(cache.get(&t, &n, &k).await.unwrap(), None);
    assert!(!cache.exists(&t, &n, &k).await.unwrap());
    assert_eq!(cache.ttl(&t, &n, &k).await.unwrap(), TtlState::Missing);
    assert!(!cache.delete(&t, &n, &k).await.unwrap());
    assert!(
        put(stores, &t, &n, &k, "2", PutCondition::IfAbsent).await,
        "an expired value counts as absent"
    );
}

async fn conditional_put(stores: &Stores) {
    let (t, n, k) = (Tenant::new("t1"), ns("n"), key("k"));
    let cache = &stores.cache;
    assert!(!put(stores, &t, &n, &k, "1", PutCondition::IfPresent).await);
    assert_eq!(cache.get(&t, &n, &k).await.unwrap(), None);
    assert!(put(stores, &t, &n, &k, "1", PutCondition::IfAbsent).await);
    assert!(!put(stores, &t, &n, &k, "2", PutCondition::IfAbsent).await);
    assert_eq!(text(stores, &t, &n, &k).await.as_deref(), Some("1"));
    assert!(put(stores, &t, &n, &k, "3", PutCondition::IfPresent).await);
    assert_eq!(text(stores, &t, &n, &k).await.as_deref(), Some("3"));
}

async fn racing_put_if_absent_has_one_winner(stores: &Stores) {
    let t = Tenant::new("t1");
    for round in 0..5 {
        let k = key(&format!("race-{round}"));
        let results = crate::common::race(32, |i| {
            let (stores, t, k) = (stores.clone(), t.clone(), k.clone());
            async move {
                let v = value(&i.to_string());
                let won = stores
                    .cache
                    .put(&t, &ns("n"), &k, &v, ttl(60), PutCondition::IfAbsent)
                    .await
                    .unwrap();
                (i, won)
            }
        })
        .await;
        let winners: Vec<_> = results.iter().filter(|(_, won)| *won).collect();
        assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
        let stored = stores.cache.get(&t, &ns("n"), &k).await.unwrap().unwrap();
        assert_eq!(stored.bytes().as_ref(), winners[0].0.to_string().as_bytes());
    }
}

async fn get_and_set_returns_the_replaced_value(stores: &Stores) {
    let (t, n, k) = (Tenant::new("t1"), ns("swap"), key("doc"));
    let cache = &stores.cache;
    let previous = cache
        .get_and_set(&t, &n, &k, &value(r#"{"v": 1}"#), ttl(60))
        .await
        .unwrap();
    assert_eq!(previous, None, "nothing before the first write");
    let previous = cache
        .get_and_set(&t, &n, &k, &value("[2]"), ttl(5))
        .await
        .unwrap();
    assert_eq!(previous.unwrap().bytes().as_ref(), br#"{"v": 1}"#);
    assert_eq!(text(stores, &t, &n, &k).await.as_deref(), Some("[2]"));
    assert_eq!(
        cache.ttl(&t, &n, &k).await.unwrap(),
        TtlState::Expires(5),
        "the write's TTL replaces the old one"
    );
    let taken = cache.get_and_delete(&t, &n, &k).await.unwrap();
    assert_eq!(taken.unwrap().bytes().as_ref(), b"[2]");
    assert_eq!(
        cache.get(&t, &n, &k).await.unwrap(),
        None,
        "taken means gone"
    );
    assert_eq!(cache.get_and_delete(&t, &n, &k).await.unwrap(), None);
}

/// Of many readers racing to take one value, exactly one gets it; of many racing swaps, every
/// value written is seen exactly once as someone's `previous` (or is the last one standing).
async fn racing_takes_and_swaps_lose_nothing(stores: &Stores) {
    let t = Tenant::new("t1");
    for round in 0..5 {
        let k = key(&format!("take-{round}"));
        put(stores, &t, &ns("n"), &k, "\"result\"", PutCondition::Always).await;
        let results = crate::common::race(32, |_| {
            let (stores, t, k) = (stores.clone(), t.clone(), k.clone());
            async move { stores.cache.get_and_delete(&t, &ns("n"), &k).await.unwrap() }
        })
        .await;
        let takers = results.iter().filter(|r| r.is_some()).count();
        assert_eq!(takers, 1, "exactly one reader takes the value: {results:?}");
    }
    let k = key("swap-race");
    let results = crate::common::race(32, |i| {
        let (stores, t, k) = (stores.clone(), t.clone(), k.clone());
        async move {
            stores
                .cache
                .get_and_set(&t, &ns("n"), &k, &value(&i.to_string()), ttl(60))
                .await
                .unwrap()
                .map(|v| String::from_utf8(v.bytes().to_vec()).unwrap())
        }
    })
    .await;
    let last = stored(stores, &t, &ns("n"), "swap-race").await.unwrap();
    let mut seen: Vec<String> = results.into_iter().flatten().collect();
    seen.push(last);
    seen.sort();
    let mut written: Vec<String> = (0..32).map(|i| i.to_string()).collect();
    written.sort();
    assert_eq!(
        seen, written,
        "each written value is replaced once or is the last"
    );
}

fn number(text: &str) -> Increment {
    Increment::from_json(&serde_json::from_str(text).unwrap())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

async fn stored(stores: &Stores, t: &Tenant, n: &Namespace, k: &str) -> Option<String> {
    text(stores, t, n, &key(k)).await
}

async fn incr_arithmetic(stores: &Stores) {
    let (t, n) = (Tenant::new("t1"), ns("counters"));
    let cache = &stores.cache;
    let incr = |k: &'static str, by: &'static str| {
        let (t, n) = (t.clone(), n.clone());
        async move {
            cache
                .incr(&t, &n, &key(k), number(by), ttl(60))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        incr("i", "5").await,
        Ok("5".into()),
        "a missing counter starts at 0"
    );
    assert_eq!(incr("i", "-7").await, Ok("-2".into()));
    assert_eq!(
        incr("i", "0.5").await,
        Ok("-1.5".into()),
        "a float makes it a float"
    );
    assert_eq!(incr("i", "1.5").await, Ok("0".into()));
    assert_eq!(incr("f", "0.1").await, Ok("0.1".into()));
    assert_eq!(incr("f", "0.2").await, Ok("0.30000000000000004".into()));
    assert_eq!(
        incr("big", "9223372036854775807").await,
        Ok("9223372036854775807".into())
    );
    assert_eq!(incr("big", "1").await, Err(IncrError::OutOfRange));
    assert_eq!(
        stored(stores, &t, &n, "big").await.unwrap(),
        "9223372036854775807",
        "unchanged"
    );
    assert_eq!(incr("e", "1.7e308").await, Ok("1.7e+308".into()));
    assert_eq!(
        incr("e", "1.7e308").await,
        Err(IncrError::OutOfRange),
        "infinity is no JSON"
    );
    assert_eq!(incr("small", "1e-7").await, Ok("1e-07".into()));
    for (k, raw) in [("s", "\"5\""), ("o", "{}"), ("b", "true"), ("nul", "null")] {
        put(stores, &t, &n, &key(k), raw, PutCondition::Always).await;
        assert_eq!(incr(k, "1").await, Err(IncrError::NotANumber), "{raw}");
        assert_eq!(stored(stores, &t, &n, k).await.unwrap(), raw, "unchanged");
    }
    put(stores, &t, &n, &key("spaced"), " 41 ", PutCondition::Always).await;
    assert_eq!(incr("spaced", "1").await, Ok("42".into()));
    put(stores, &t, &n, &key("exp"), "1e2", PutCondition::Always).await;
    assert_eq!(incr("exp", "1").await, Ok("101".into()));
    assert_eq!(stored(stores, &t, &n, "exp").await.unwrap(), "101");
}

async fn incr_sets_ttl_only_on_creation(stores: &Stores) {
    let (t, n, k) = (Tenant::new("t1"), ns("n"), key("c"));
    let cache = &stores.cache;
    cache
        .incr(&t, &n, &k, number("1"), ttl(100))
        .await
        .unwrap()
        .unwrap();
    cache
        .incr(&t, &n, &k, number("1"), ttl(5000))
        .await
        .unwrap()
        .unwrap();
    cache
        .incr(&t, &n, &k, number("0.5"), ttl(5000))
        .await
        .unwrap()
        .unwrap();
    match cache.ttl(&t, &n, &k).await.unwrap() {
        TtlState::Expires(s) => assert!((99..=100).contains(&s), "{s}"),
        other => panic!("{other:?}"),
    }
    cache
        .incr(&t, &n, &key("p"), number("1"), Expiry::Never)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cache.ttl(&t, &n, &key("p")).await.unwrap(),
        TtlState::Persistent
    );
}

async fn racing_increments_are_all_counted(stores: &Stores) {
    let t = Tenant::new("t1");
    let results = crate::common::race(100, |_| {
        let (stores, t) = (stores.clone(), t.clone());
        async move {
            stores
                .cache
                .incr(&t, &ns("n"), &key("hits"), number("1"), ttl(60))
                .await
                .unwrap()
                .unwrap()
        }
    })
    .await;
    let mut seen: Vec<i64> = results.iter().map(|r| r.parse().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, (1..=100).collect::<Vec<_>>(), "100 distinct results");
    assert_eq!(stored(stores, &t, &ns("n"), "hits").await.unwrap(), "100");
}

async fn compare_and_swap_compares_json_values(stores: &Stores) {
    let (t, n, k) = (Tenant::new("t1"), ns("n"), key("doc"));
    let cache = &stores.cache;
    let cas = async |expected: Option<&str>, new: &str| {
        let expected = expected.map(json);
        cache
            .compare_and_swap(&t, &n, &k, expected.as_ref(), &value(new), ttl(60))
            .await
    };
    assert_eq!(
        cas(Some("1"), "2").await.unwrap(),
        CasOutcome::Failed { current: None }
    );
    assert_eq!(
        cas(None, r#"{"a":1,"b":[1,2.5]}"#).await.unwrap(),
        CasOutcome::Swapped
    );
    match cas(None, "3").await.unwrap() {
        CasOutcome::Failed { current: Some(v) } => {
            assert_eq!(v.bytes().as_ref(), br#"{"a":1,"b":[1,2.5]}"#)
        }
        other => panic!("{other:?}"),
    }
    // Key order and number spelling do not matter.
    assert_eq!(
        cas(Some(r#"{"b":[1.0,25e-1],"a":1}"#), r#""next""#)
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(stored(stores, &t, &n, "doc").await.unwrap(), r#""next""#);
    assert!(matches!(
        cas(Some(r#""other""#), "1").await.unwrap(),
        CasOutcome::Failed { .. }
    ));
    assert!(matches!(
        cas(Some("[]"), "1").await.unwrap(),
        CasOutcome::Failed { .. }
    ));
    assert_eq!(
        stored(stores, &t, &n, "doc").await.unwrap(),
        r#""next""#,
        "failed swaps wrote nothing"
    );
    put(stores, &t, &n, &key("empty"), "{}", PutCondition::Always).await;
    let failed = cache
        .compare_and_swap(
            &t,
            &n,
            &key("empty"),
            Some(&json("[]")),
            &value("1"),
            ttl(60),
        )
        .await
        .unwrap();
    assert!(
        matches!(failed, CasOutcome::Failed { .. }),
        "[] is not {{}}"
    );
}

async fn racing_compare_and_swap_has_one_winner(stores: &Stores) {
    let t = Tenant::new("t1");
    put(
        stores,
        &t,
        &ns("n"),
        &key("state"),
        r#"{"v":0}"#,
        PutCondition::Always,
    )
    .await;
    for round in 0..5 {
        let seen = json(&stored(stores, &t, &ns("n"), "state").await.unwrap());
        let results = crate::common::race(24, |i| {
            let (stores, t, expected) = (stores.clone(), t.clone(), seen.clone());
            async move {
                let new = value(&format!(r#"{{"v":{},"by":{i}}}"#, round + 1));
                stores
                    .cache
                    .compare_and_swap(&t, &ns("n"), &key("state"), Some(&expected), &new, ttl(60))
                    .await
                    .unwrap()
            }
        })
        .await;
        let swapped = results
            .iter()
            .filter(|r| **r == CasOutcome::Swapped)
            .count();
        assert_eq!(swapped, 1, "round {round}: exactly one swap");
        let current = json(&stored(stores, &t, &ns("n"), "state").await.unwrap());
        assert_eq!(current["v"], round + 1);
    }
}

async fn batches(stores: &Stores) {
    let (t, n) = (Tenant::new("t1"), ns("batch"));
    let cache = &stores.cache;
    let entries = vec![(key("a"), value("1")), (key("b"), value(r#"{"x": [1]}"#))];
    cache.put_many(&t, &n, &entries, ttl(100)).await.unwrap();
    let got = cache
        .get_many(&t, &n, &[key("b"), key("missing"), key("a")])
        .await
        .unwrap();
    let got: Vec<_> = got
        .into_iter()
        .map(|v| v.map(|v| v.bytes().to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![Some(br#"{"x": [1]}"#.to_vec()), None, Some(b"1".to_vec())]
    );
    for k in ["a", "b"] {
        match cache.ttl(&t, &n, &key(k)).await.unwrap() {
            TtlState::Expires(s) => assert!((99..=100).contains(&s)),
            other => panic!("{other:?}"),
        }
    }
    assert!(cache.get_many(&t, &n, &[]).await.unwrap().is_empty());
    cache.put_many(&t, &n, &[], ttl(1)).await.unwrap();
    assert_eq!(
        cache
            .get_many(&Tenant::new("t2"), &n, &[key("a")])
            .await
            .unwrap(),
        vec![None]
    );
}

async fn list_all(
    stores: &Stores,
    t: &Tenant,
    n: &Namespace,
    pattern: &str,
    limit: usize,
) -> Vec<String> {
    let mut cursor = ListCursor::Start;
    let mut keys = Vec::new();
    loop {
        let page = stores
            .cache
            .list(t, n, pattern, &cursor, limit)
            .await
            .unwrap();
        keys.extend(page.keys);
        if page.next == ListCursor::Start {
            break;
        }
        cursor = page.next;
    }
    keys.sort();
    keys.dedup();
    keys
}

async fn listing_and_pattern_delete_stay_in_their_namespace(stores: &Stores) {
    let (t, other) = (Tenant::new("t1"), Tenant::new("t2"));
    let cache = &stores.cache;
    let names = [
        "a", "b", "c", "d", "ab", "a.b", "a-b", "a_b", "user:1", "user:2", "user:10",
    ];
    let entries: Vec<_> = names.iter().map(|k| (key(k), value("1"))).collect();
    cache
        .put_many(&t, &ns("ns"), &entries.clone(), ttl(60))
        .await
        .unwrap();
    cache
        .put_many(&t, &ns("ns2"), &entries.clone(), ttl(60))
        .await
        .unwrap();
    cache
        .put_many(&t, &ns("n"), &entries.clone(), ttl(60))
        .await
        .unwrap();
    cache
        .put_many(&other, &ns("ns"), &entries, ttl(60))
        .await
        .unwrap();
    let n = ns("ns");
    let mut all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    all.sort();
    for limit in [1, 3, 100] {
        assert_eq!(
            list_all(stores, &t, &n, "*", limit).await,
            all,
            "limit {limit}"
        );
    }
    let cases: [(&str, &[&str]); 8] = [
        ("user:*", &["user:1", "user:10", "user:2"]),
        ("user:?", &["user:1", "user:2"]),
        ("[a-c]", &["a", "b", "c"]),
        ("[^a-c]", &["d"]),
        ("a\\.b", &["a.b"]),
        ("a?b", &["a-b", "a.b", "a_b"]),
        ("a\\*", &[]),
        ("[ab]", &["a", "b"]),
    ];
    for (pattern, expected) in cases {
        assert_eq!(
            list_all(stores, &t, &n, pattern, 2).await,
            expected.to_vec(),
            "{pattern}"
        );
    }
    assert_eq!(cache.delete_matching(&t, &n, "user:*").await.unwrap(), 3);
    assert_eq!(cache.delete_matching(&t, &n, "user:*").await.unwrap(), 0);
    assert_eq!(
        cache.delete_matching(&t, &n, "a\\?b").await.unwrap(),
        0,
        "escaped ? is literal"
    );
    assert_eq!(cache.delete_matching(&t, &n, "*").await.unwrap(), 8);
    assert!(list_all(stores, &t, &n, "*", 10).await.is_empty());
    for (tenant, namespace) in [(&t, "ns2"), (&t, "n"), (&other, "ns")] {
        assert_eq!(
            list_all(stores, tenant, &ns(namespace), "*", 100).await,
            all,
            "{namespace} untouched"
        );
    }
}

async fn expired_keys_are_not_listed(stores: &Stores) {
    let (t, n) = (Tenant::new("t1"), ns("n"));
    stores
        .cache
        .put(
            &t,
            &n,
            &key("short"),
            &value("1"),
            ttl(1),
            PutCondition::Always,
        )
        .await
        .unwrap();
    put(stores, &t, &n, &key("long"), "1", PutCondition::Always).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        list_all(stores, &t, &n, "*", 10).await,
        vec!["long".to_string()]
    );
    assert_eq!(stores.cache.delete_matching(&t, &n, "*").await.unwrap(), 1);
}

crate::store_conformance!(
    get_and_set_returns_the_replaced_value,
    racing_takes_and_swaps_lose_nothing,
    incr_arithmetic,
    incr_sets_ttl_only_on_creation,
    racing_increments_are_all_counted,
    compare_and_swap_compares_json_values,
    racing_compare_and_swap_has_one_winner,
    batches,
    listing_and_pattern_delete_stay_in_their_namespace,
    expired_keys_are_not_listed,
    put_get_delete_round_trip,
    tenants_and_namespaces_are_separate,
    ttl_is_reported_and_can_be_changed,
    values_expire,
    conditional_put,
    racing_put_if_absent_has_one_winner,
);
