//! The agent-state store's behaviour, identical on the memory and Redis adapters.

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};
use statekeeper::{
    capabilities::agent_state::{
        model::{
            AgentState, JsonObject, Message, MessageInput, NewAgentState, ThreadId, accept_messages,
        },
        port::{AgentStateStore, Appended},
    },
    domain::{ids::Tenant, ttl::Ttl},
    store::{Stores, Versioned},
};

fn id(s: &str) -> ThreadId {
    ThreadId::parse(s).unwrap()
}

fn messages(texts: &[&str]) -> Vec<Message> {
    let inputs = texts
        .iter()
        .map(|t| {
            serde_json::from_value::<MessageInput>(json!({"role": "human", "content": t})).unwrap()
        })
        .collect();
    accept_messages(inputs, 1000).unwrap()
}

fn object(v: Value) -> JsonObject {
    v.as_object().cloned().unwrap()
}

/// Creates a thread that must not exist yet.
async fn create(
    s: &std::sync::Arc<dyn AgentStateStore>,
    t: &Tenant,
    new: &NewAgentState,
) -> AgentState {
    let created = s.create(t, new).await.unwrap();
    created.expect("no live thread of this id")
}

fn new_state(thread: &str, texts: &[&str], ttl_seconds: u64) -> NewAgentState {
    NewAgentState {
        thread_id: id(thread),
        messages: messages(texts),
        context: object(json!({"repo": "a/b", "nested": {"x": 1, "list": [1, 2.5, []]}})),
        metadata: object(json!({"agent": "triage"})),
        is_relevant: true,
        ttl_seconds,
    }
}

fn contents(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            serde_json::to_value(&m.content)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn create_get_delete_round_trip(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    assert_eq!(s.get(&t, &id("th"), None).await.unwrap(), None);
    assert!(!s.exists(&t, &id("th")).await.unwrap());
    let created = s
        .create(&t, &new_state("th", &["a", "b", "c"], 600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((created.version, created.message_count), (1, 3));
    let got = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert_eq!(got, created, "what create returned is what get reads");
    assert_eq!(contents(&got.messages), ["a", "b", "c"]);
    assert_eq!(
        got.context["nested"]["list"],
        json!([1, 2.5, []]),
        "JSON kept exactly"
    );
    assert_eq!(got.metadata, object(json!({"agent": "triage"})));
    assert!(got.is_relevant);
    assert_eq!(got.created_at, got.updated_at);
    let ttl = (got.expires_at - got.updated_at).whole_seconds();
    assert_eq!(ttl, 600);
    assert!(s.exists(&t, &id("th")).await.unwrap());

    assert_eq!(
        s.create(&t, &new_state("th", &["other"], 600))
            .await
            .unwrap(),
        None,
        "create never overwrites a live thread"
    );
    let last = s.get(&t, &id("th"), Some(2)).await.unwrap().unwrap();
    assert_eq!(
        (contents(&last.messages), last.message_count),
        (vec!["b".into(), "c".into()], 3)
    );
    let none = s.get(&t, &id("th"), Some(0)).await.unwrap().unwrap();
    assert_eq!((none.messages.len(), none.message_count), (0, 3));
    let all = s.get(&t, &id("th"), Some(50)).await.unwrap().unwrap();
    assert_eq!(all.messages.len(), 3);

    assert!(s.delete(&t, &id("th")).await.unwrap());
    assert!(
        !s.delete(&t, &id("th")).await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(s.get(&t, &id("th"), None).await.unwrap(), None);
    assert!(
        s.create(&t, &new_state("th", &[], 600))
            .await
            .unwrap()
            .is_some(),
        "a deleted id is free"
    );
}

async fn tenants_are_separate(stores: &Stores) {
    let s = &stores.agent_states;
    let (a, b) = (Tenant::new("alpha"), Tenant::new("beta"));
    s.create(&a, &new_state("th", &["x"], 600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.get(&b, &id("th"), None).await.unwrap(), None);
    assert!(!s.delete(&b, &id("th")).await.unwrap());
    assert_eq!(
        s.append(&b, &id("th"), &messages(&["y"]), None)
            .await
            .unwrap(),
        Versioned::Missing
    );
    assert!(s.recent(&b, 10).await.unwrap().is_empty());
    assert!(s.list(&b, None, 10).await.unwrap().thread_ids.is_empty());
    assert_eq!(
        s.get(&a, &id("th"), None)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        1
    );
}

async fn replace_keeps_created_at_and_honours_versions(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    let Versioned::Done(first) = s
        .replace(&t, &new_state("th", &["a"], 600), None)
        .await
        .unwrap()
    else {
        panic!("replace creates a missing thread")
    };
    assert!(first.created);
    assert_eq!(first.state.version, 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let Versioned::Done(second) = s
        .replace(&t, &new_state("th", &["b", "c"], 600), Some(1))
        .await
        .unwrap()
    else {
        panic!("the expected version holds")
    };
    assert!(!second.created);
    assert_eq!((second.state.version, second.state.message_count), (2, 2));
    assert_eq!(second.state.created_at, first.state.created_at);
    assert!(second.state.updated_at > first.state.updated_at);
    assert_eq!(
        s.get(&t, &id("th"), None).await.unwrap().unwrap(),
        second.state
    );

    assert_eq!(
        s.replace(&t, &new_state("th", &["stale"], 600), Some(1))
            .await
            .unwrap(),
        Versioned::Stale
    );
    assert_eq!(
        s.replace(&t, &new_state("nothing", &["x"], 600), Some(1))
            .await
            .unwrap(),
        Versioned::Stale,
        "an expected version never matches a missing thread"
    );
    let now = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert_eq!(
        (now.version, contents(&now.messages)),
        (2, vec!["b".into(), "c".into()])
    );
    assert!(!s.exists(&t, &id("nothing")).await.unwrap());
}

async fn append_adds_messages_and_versions(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    assert_eq!(
        s.append(&t, &id("th"), &messages(&["x"]), None)
            .await
            .unwrap(),
        Versioned::Missing
    );
    assert!(
        !s.exists(&t, &id("th")).await.unwrap(),
        "append never creates"
    );
    create(s, &t, &new_state("th", &["a"], 600)).await;
    assert_eq!(
        s.append(&t, &id("th"), &messages(&["b", "c"]), None)
            .await
            .unwrap(),
        Versioned::Done(Appended {
            message_count: 3,
            version: 2
        })
    );
    assert_eq!(
        s.append(&t, &id("th"), &messages(&["d"]), Some(1))
            .await
            .unwrap(),
        Versioned::Stale
    );
    assert_eq!(
        s.append(&t, &id("th"), &messages(&["d"]), Some(2))
            .await
            .unwrap(),
        Versioned::Done(Appended {
            message_count: 4,
            version: 3
        })
    );
    let got = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert_eq!(contents(&got.messages), ["a", "b", "c", "d"]);
    assert_eq!(got.version, 3);
}

async fn racing_appends_lose_nothing(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    create(s, &t, &new_state("th", &["start"], 600)).await;
    let results = crate::common::race(32, |i| {
        let (stores, t) = (stores.clone(), t.clone());
        async move {
            let batch = messages(&[&format!("{i}-1"), &format!("{i}-2")]);
            stores
                .agent_states
                .append(&t, &id("th"), &batch, None)
                .await
                .unwrap()
        }
    })
    .await;
    let versions: BTreeSet<u64> = results
        .iter()
        .map(|r| match r {
            Versioned::Done(a) => a.version,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        versions,
        (2..=33).collect(),
        "each append is one version step"
    );
    let got = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert_eq!((got.message_count, got.version), (65, 33));
    let texts = contents(&got.messages);
    for i in 0..32 {
        let first = texts.iter().position(|m| *m == format!("{i}-1")).unwrap();
        assert_eq!(texts[first + 1], format!("{i}-2"), "an append lands whole");
    }
    assert_eq!(
        texts.iter().collect::<BTreeSet<_>>().len(),
        65,
        "none lost, none doubled"
    );
}

async fn racing_replaces_with_if_match_have_one_winner(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    create(s, &t, &new_state("th", &["start"], 600)).await;
    let results = crate::common::race(16, |i| {
        let (stores, t) = (stores.clone(), t.clone());
        async move {
            let state = new_state("th", &[&format!("winner-{i}")], 600);
            (
                i,
                stores
                    .agent_states
                    .replace(&t, &state, Some(1))
                    .await
                    .unwrap(),
            )
        }
    })
    .await;
    let winners: Vec<_> = results
        .iter()
        .filter(|(_, r)| matches!(r, Versioned::Done(_)))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(_, r)| matches!(r, Versioned::Done(_) | Versioned::Stale))
    );
    let got = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(
        contents(&got.messages),
        [format!("winner-{}", winners[0].0)]
    );
}

async fn context_merge_patch(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    let patch = object(json!({"a": 1}));
    assert_eq!(
        s.patch_context(&t, &id("th"), &patch.clone(), None)
            .await
            .unwrap(),
        Versioned::Missing
    );
    create(s, &t, &new_state("th", &["m"], 600)).await;
    let patch = object(json!({"repo": null, "nested": {"x": null, "y": [3]}, "pr": 7}));
    let Versioned::Done(state) = s
        .patch_context(&t, &id("th"), &patch, Some(1))
        .await
        .unwrap()
    else {
        panic!("patch applies")
    };
    assert_eq!(
        Value::Object(state.context.clone()),
        json!({"nested": {"list": [1, 2.5, []], "y": [3]}, "pr": 7})
    );
    assert_eq!(
        (state.version, state.message_count, state.messages.len()),
        (2, 1, 1)
    );
    assert_eq!(s.get(&t, &id("th"), None).await.unwrap().unwrap(), state);
    assert_eq!(
        s.patch_context(&t, &id("th"), &object(json!({"z": 1})), Some(1))
            .await
            .unwrap(),
        Versioned::Stale
    );
    assert_eq!(
        s.get(&t, &id("th"), None).await.unwrap().unwrap().version,
        2
    );
}

async fn racing_context_patches_all_apply(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    create(s, &t, &new_state("th", &[], 600)).await;
    crate::common::race(12, |i| {
        let (stores, t) = (stores.clone(), t.clone());
        async move {
            let patch = object(json!({ format!("k{i}"): i }));
            let r = stores
                .agent_states
                .patch_context(&t, &id("th"), &patch, None)
                .await
                .unwrap();
            assert!(matches!(r, Versioned::Done(_)), "{r:?}");
        }
    })
    .await;
    let got = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert_eq!(got.version, 13);
    for i in 0..12 {
        assert_eq!(got.context[&format!("k{i}")], json!(i), "no patch lost");
    }
}

async fn relevance_is_a_versioned_write(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    assert_eq!(
        s.set_relevance(&t, &id("th"), false, None).await.unwrap(),
        Versioned::Missing
    );
    create(s, &t, &new_state("th", &[], 600)).await;
    assert_eq!(
        s.set_relevance(&t, &id("th"), false, None).await.unwrap(),
        Versioned::Done(2)
    );
    assert_eq!(
        s.set_relevance(&t, &id("th"), true, Some(1)).await.unwrap(),
        Versioned::Stale
    );
    let got = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert!(!got.is_relevant);
    assert!(!s.recent(&t, 1).await.unwrap()[0].is_relevant);
}

async fn list_pages_every_thread_exactly_once(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    let mut expected = BTreeSet::new();
    for i in 0..23 {
        let name = format!("th-{i:02}:{}", i % 3);
        create(s, &t, &new_state(&name, &[], 600)).await;
        expected.insert(name);
    }
    s.create(&Tenant::new("other"), &new_state("foreign", &[], 600))
        .await
        .unwrap()
        .unwrap();
    for page_size in [1, 2, 5, 7, 23, 100] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s.list(&t, after.as_ref(), page_size).await.unwrap();
            assert!(page.thread_ids.len() <= page_size);
            seen.extend(page.thread_ids.iter().map(|i| i.to_string()));
            if !page.more {
                break;
            }
            after = page.thread_ids.last().cloned();
        }
        assert_eq!(seen.len(), 23, "page size {page_size}: no duplicates");
        assert_eq!(
            seen.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "page size {page_size}"
        );
    }
    let full = s.list(&t, None, 23).await.unwrap();
    assert!(!full.more, "an exact last page says there is no more");
}

async fn recent_is_newest_first_and_never_lists_gone_threads(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    for name in ["a", "b", "c", "d"] {
        create(s, &t, &new_state(name, &["m"], 600)).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    create(s, &t, &new_state("short", &["m"], 1)).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    s.append(&t, &id("a"), &messages(&["n"]), None)
        .await
        .unwrap();
    s.delete(&t, &id("c")).await.unwrap();
    let names = |r: &[statekeeper::capabilities::agent_state::model::RecentState]| {
        r.iter().map(|r| r.thread_id.clone()).collect::<Vec<_>>()
    };
    let recent = s.recent(&t, 10).await.unwrap();
    assert_eq!(names(&recent), ["a", "short", "d", "b"]);
    assert_eq!((recent[0].message_count, recent[0].is_relevant), (2, true));
    assert_eq!(names(&s.recent(&t, 2).await.unwrap()), ["a", "short"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        names(&s.recent(&t, 10).await.unwrap()),
        ["a", "d", "b"],
        "expired is never listed"
    );
    assert_eq!(names(&s.recent(&t, 1).await.unwrap()), ["a"]);
    assert_eq!(
        s.cleanup_expired(&t).await.unwrap(),
        0,
        "the read already pruned it"
    );
}

async fn threads_expire_whole_and_cleanup_drops_their_entries(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    create(s, &t, &new_state("short-1", &["m"], 1)).await;
    create(s, &t, &new_state("short-2", &[], 1)).await;
    create(s, &t, &new_state("long", &["m"], 600)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.get(&t, &id("short-1"), None).await.unwrap(), None);
    assert!(!s.exists(&t, &id("short-1")).await.unwrap());
    assert_eq!(s.ttl(&t, &id("short-1")).await.unwrap(), None);
    assert_eq!(
        s.append(&t, &id("short-1"), &messages(&["x"]), None)
            .await
            .unwrap(),
        Versioned::Missing
    );
    // Two entries to drop, unless their index expired whole with them (on Redis an index
    // lives as long as its shard's longest-lived thread, and `long` may be in another shard).
    let dropped = s.cleanup_expired(&t).await.unwrap();
    assert!(dropped <= 2, "{dropped}");
    assert_eq!(s.cleanup_expired(&t).await.unwrap(), 0);
    let page = s.list(&t, None, 10).await.unwrap();
    assert_eq!(page.thread_ids, [id("long")]);
    let again = s
        .create(&t, &new_state("short-1", &[], 600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.version, again.message_count),
        (1, 0),
        "an expired thread left nothing behind"
    );
}

async fn ttl_can_be_read_and_set_and_writes_renew_it(stores: &Stores) {
    let (s, t) = (&stores.agent_states, Tenant::new("t1"));
    assert_eq!(s.ttl(&t, &id("th")).await.unwrap(), None);
    assert!(
        !s.set_ttl(&t, &id("th"), Ttl::new(5, 100).unwrap())
            .await
            .unwrap(),
        "never creates"
    );
    assert!(!s.exists(&t, &id("th")).await.unwrap());
    create(s, &t, &new_state("th", &["m"], 100)).await;
    let ttl = s.ttl(&t, &id("th")).await.unwrap().unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert!(
        s.set_ttl(&t, &id("th"), Ttl::new(2, 100).unwrap())
            .await
            .unwrap()
    );
    let got = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert_eq!(got.version, 1, "a TTL change is not a change of the state");
    assert!((1..=2).contains(&s.ttl(&t, &id("th")).await.unwrap().unwrap()));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.append(&t, &id("th"), &messages(&["n"]), None)
        .await
        .unwrap();
    assert_eq!(
        s.ttl(&t, &id("th")).await.unwrap(),
        Some(2),
        "a write renews the thread's TTL"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let got = s.get(&t, &id("th"), None).await.unwrap().unwrap();
    assert_eq!(got.message_count, 2, "messages live as long as the thread");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(s.get(&t, &id("th"), None).await.unwrap(), None);
}

crate::store_conformance!(
    create_get_delete_round_trip,
    tenants_are_separate,
    replace_keeps_created_at_and_honours_versions,
    append_adds_messages_and_versions,
    racing_appends_lose_nothing,
    racing_replaces_with_if_match_have_one_winner,
    context_merge_patch,
    racing_context_patches_all_apply,
    relevance_is_a_versioned_write,
    list_pages_every_thread_exactly_once,
    recent_is_newest_first_and_never_lists_gone_threads,
    threads_expire_whole_and_cleanup_drops_their_entries,
    ttl_can_be_read_and_set_and_writes_renew_it,
);
