//! The session store's behaviour, identical on the memory and Redis adapters.

use std::time::Duration;

use serde_json::{Map, Value, json};
use statekeeper::{
    capabilities::session::{
        model::{
            ListingPlace, Session, SessionChange, SessionId, SessionPage, SessionRules, UserId,
            now_ms,
        },
        port::SessionUpdate,
    },
    domain::{ids::Tenant, ttl::Ttl},
    store::Stores,
};

const FIXED: SessionRules = SessionRules {
    rolling: false,
    max_lifetime_ms: 86_400_000,
    max_bytes: 1 << 20,
};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn ttl(s: u64) -> Ttl {
    Ttl::new(s, 1_000_000).unwrap()
}

fn session(u: &str, ttl_s: u64) -> Session {
    Session::new(
        user(u),
        Some(user("ws-1")),
        obj(json!({"theme": "dark"})),
        obj(json!({"repo": "acme/app", "pr": 42})),
        ttl(ttl_s),
        now_ms(),
    )
}

async fn created(stores: &Stores, t: &Tenant, u: &str, ttl_s: u64) -> Session {
    let s = session(u, ttl_s);
    stores.sessions.create(t, &s.clone(), FIXED).await.unwrap();
    s
}

fn patch(data: Option<Value>, context: Option<Value>) -> SessionChange {
    SessionChange::Patch {
        data: data.map(obj),
        context: context.map(obj),
    }
}

/// The live session under fixed expiry.
async fn get(stores: &Stores, t: &Tenant, id: &SessionId) -> Option<Session> {
    stores.sessions.get(t, id, FIXED).await.unwrap()
}

/// Signs `u` out everywhere; how many live sessions went.
async fn sign_out(stores: &Stores, t: &Tenant, u: &str) -> u64 {
    stores.sessions.delete_for_user(t, &user(u)).await.unwrap()
}

/// One page of a user's live sessions, checked for the page's own promises.
async fn page_of(
    stores: &Stores,
    t: &Tenant,
    u: &str,
    after: Option<&ListingPlace>,
    limit: usize,
) -> SessionPage {
    let page = stores
        .sessions
        .list_for_user(t, &user(u), after, limit)
        .await
        .unwrap();
    assert!(
        page.sessions.len() <= limit,
        "a page holds at most its limit"
    );
    assert!(
        !page.more || page.sessions.len() == limit,
        "only a full page says more follow"
    );
    let places: Vec<ListingPlace> = page.sessions.iter().map(Session::place).collect();
    assert!(places.is_sorted(), "a page is in listing order");
    assert!(after.is_none_or(|a| places.first().is_none_or(|p| p > a)));
    page
}

/// A user's live sessions, read in pages of three.
async fn sessions_of(stores: &Stores, t: &Tenant, u: &str) -> Vec<Session> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = page_of(stores, t, u, after.as_ref(), 3).await;
        all.extend(page.sessions);
        match all.last() {
            Some(last) if page.more => after = Some(last.place()),
            _ => return all,
        }
    }
}

/// A session of `u` created at `created_ms`, living `ttl_s` from now.
async fn created_at(stores: &Stores, t: &Tenant, u: &str, created_ms: i64, ttl_s: u64) -> Session {
    let mut s = session(u, ttl_s);
    s.created_at_ms = created_ms;
    s.last_activity_at_ms = created_ms;
    stores.sessions.create(t, &s, FIXED).await.unwrap();
    s
}

/// Pages resume strictly after a place, so a session live through the whole listing is listed
/// exactly once, in creation order (ties by id), whatever is created, deleted or expires
/// meanwhile; a cursor naming a deleted session still resumes; a page's cost does not depend
/// on the sessions before it.
async fn a_users_listing_pages_in_creation_order_exactly_once(stores: &Stores) {
    let t = Tenant::new("paging");
    let base = now_ms() - 60_000;
    let mut kept = Vec::new();
    for i in 0..20 {
        // Pairs share a creation millisecond: the id decides their order.
        kept.push(created_at(stores, &t, "u1", base + i / 2, 60).await);
    }
    let short = created_at(stores, &t, "u1", base + 30, 1).await;
    let doomed = created_at(stores, &t, "u1", base + 31, 60).await;
    let late = created_at(stores, &t, "u1", base + 32, 60).await;
    kept.push(late.clone());
    created_at(stores, &t, "u2", base, 60).await;
    kept.sort_by_cached_key(Session::place);

    let first = page_of(stores, &t, "u1", None, 7).await;
    assert!(first.more);
    assert_eq!(first.sessions, kept[..7]);
    // Meanwhile: the page's last session is deleted, one ahead is deleted, one expires, and
    // an older one is created (it is behind the cursor: not listed by this listing).
    let cursor = first.sessions[6].place();
    assert!(
        stores
            .sessions
            .delete(&t, &first.sessions[6].id)
            .await
            .unwrap()
    );
    assert!(stores.sessions.delete(&t, &doomed.id).await.unwrap());
    created_at(stores, &t, "u1", base - 1, 60).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(stores, &t, &short.id).await, None);

    let mut rest = Vec::new();
    let mut after = Some(cursor);
    loop {
        let page = page_of(stores, &t, "u1", after.as_ref(), 4).await;
        rest.extend(page.sessions);
        match rest.last() {
            Some(last) if page.more => after = Some(last.place()),
            _ => break,
        }
    }
    assert_eq!(rest, kept[7..], "the rest, each once, in order");
    let ids: Vec<&SessionId> = rest.iter().map(|s| &s.id).collect();
    assert!(!ids.contains(&&short.id) && !ids.contains(&&doomed.id));

    // A page exactly at the end says nothing more follows; a page past the end is empty.
    let end = page_of(stores, &t, "u1", Some(&kept[kept.len() - 2].place()), 1).await;
    assert_eq!((end.sessions.len(), end.more), (1, false));
    let past = page_of(stores, &t, "u1", Some(&late.place()), 5).await;
    assert_eq!(past, SessionPage::default());
    assert_eq!(
        page_of(stores, &t, "nobody", None, 5).await,
        SessionPage::default()
    );
}

/// A write under fixed expiry.
async fn update(
    stores: &Stores,
    t: &Tenant,
    id: &SessionId,
    change: &SessionChange,
    if_match: Option<u64>,
) -> SessionUpdate {
    stores
        .sessions
        .update(t, id, change, if_match, FIXED)
        .await
        .unwrap()
}

fn expect_updated(outcome: SessionUpdate) -> Session {
    match outcome {
        SessionUpdate::Updated(s) => s,
        other => panic!("expected an update, got {other:?}"),
    }
}

async fn create_get_delete_round_trip(stores: &Stores) {
    let t = Tenant::new("t1");
    let s = created(stores, &t, "u1", 60).await;
    let got = get(stores, &t, &s.id).await;
    assert_eq!(got.as_ref(), Some(&s), "read back exactly as created");
    assert!(stores.sessions.delete(&t, &s.id).await.unwrap());
    assert!(
        !stores.sessions.delete(&t, &s.id).await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(get(stores, &t, &s.id).await, None);
    assert!(sessions_of(stores, &t, "u1").await.is_empty());
    let unknown = SessionId::random();
    assert_eq!(get(stores, &t, &unknown).await, None);
}

async fn patch_merges_exactly_and_raises_version(stores: &Stores) {
    let t = Tenant::new("t1");
    let mut s = session("u1", 60);
    s.data = obj(json!({
        "keep": [1, 2, {"x": []}],
        "nested": {"a": 1, "b": {"c": true}, "gone": "x"},
        "big": 12345678901234567890u64,
        "precise": 0.12345678901234568,
        "text": "quote \" backslash \\ brace } bracket ] unicode é ✓",
        "key with \"escapes\"": "v",
        "empty_obj": {},
        "empty_arr": []
    }));
    stores.sessions.create(&t, &s.clone(), FIXED).await.unwrap();
    let data_patch = json!({
        "nested": {"b": {"d": null, "e": [null]}, "gone": null, "new": {"deep": {"z": null}}},
        "big": 98765432109876543210.0,
        "key with \"escapes\"": {"now": "an object"},
        "empty_arr": null,
        "added": "}{][",
        "scalar_to_obj": 1
    });
    let context_patch = json!({"pr": 43, "file": "src/lib.rs"});
    let change = patch(Some(data_patch), Some(context_patch));
    let mut expected = s.clone();
    expected.apply(change.clone(), now_ms(), FIXED);
    let updated = expect_updated(update(stores, &t, &s.id, &change, None).await);
    assert_eq!(updated.version, 2);
    assert_eq!(
        updated.data, expected.data,
        "merge patch is RFC 7396, numbers kept exactly"
    );
    assert_eq!(updated.context, expected.context);
    assert_eq!(
        Value::Object(updated.context.clone().unwrap()),
        json!({"repo": "acme/app", "pr": 43, "file": "src/lib.rs"})
    );
    assert_eq!(
        updated.expires_at_ms, s.expires_at_ms,
        "a write does not move a fixed expiry"
    );
    let stored = get(stores, &t, &s.id).await.unwrap();
    assert_eq!(stored, updated);
    // Patching only one part leaves the other alone; an empty patch still counts as a write.
    let only_context = patch(None, Some(json!({"pr": null})));
    let updated = expect_updated(update(stores, &t, &s.id, &only_context, None).await);
    assert_eq!(updated.data, expected.data);
    assert_eq!(
        Value::Object(updated.context.unwrap()),
        json!({"repo": "acme/app", "file": "src/lib.rs"})
    );
    assert_eq!(updated.version, 3);
    let empty = expect_updated(update(stores, &t, &s.id, &patch(None, None), None).await);
    assert_eq!(empty.version, 4);
}

async fn if_match_guards_every_content_write(stores: &Stores) {
    let t = Tenant::new("t1");
    let s = created(stores, &t, "u1", 60).await;
    let stale = update(
        stores,
        &t,
        &s.id,
        &patch(Some(json!({"a": 1})), None),
        Some(7),
    )
    .await;
    assert_eq!(stale, SessionUpdate::Stale { current_version: 1 });
    let replace = SessionChange::ReplaceContext(obj(json!({"x": 1})));
    let stale = update(stores, &t, &s.id, &replace.clone(), Some(0)).await;
    assert_eq!(stale, SessionUpdate::Stale { current_version: 1 });
    assert_eq!(get(stores, &t, &s.id).await.unwrap(), s, "nothing written");
    let updated = expect_updated(update(stores, &t, &s.id, &replace, Some(1)).await);
    assert_eq!(
        (updated.version, Value::Object(updated.context.unwrap())),
        (2, json!({"x": 1}))
    );
    let cleared =
        expect_updated(update(stores, &t, &s.id, &SessionChange::ClearContext, Some(2)).await);
    assert_eq!((cleared.context.clone(), cleared.version), (None, 3));
    assert_eq!(cleared.data, s.data);
    let read = get(stores, &t, &s.id).await.unwrap();
    assert_eq!(read.context, None, "a deleted context stays deleted");
    let refilled = expect_updated(
        update(
            stores,
            &t,
            &s.id,
            &patch(None, Some(json!({"a": {"b": 1}}))),
            None,
        )
        .await,
    );
    assert_eq!(
        refilled.context.map(Value::Object),
        Some(json!({"a": {"b": 1}})),
        "a patch of a deleted context starts from {{}}"
    );
}

async fn extend_moves_expiry_within_the_cap(stores: &Stores) {
    let t = Tenant::new("t1");
    let capped = SessionRules {
        max_lifetime_ms: 100_000,
        ..FIXED
    };
    let s = created(stores, &t, "u1", 10).await;
    let extended = expect_updated(
        stores
            .sessions
            .update(&t, &s.id, &SessionChange::Extend(ttl(50)), None, capped)
            .await
            .unwrap(),
    );
    let expected = now_ms() + 50_000;
    assert!(
        (expected - 1000..=expected).contains(&extended.expires_at_ms),
        "{extended:?}"
    );
    assert_eq!(extended.version, 1, "extend keeps the version");
    assert_eq!(extended.data, s.data);
    let far = expect_updated(
        stores
            .sessions
            .update(&t, &s.id, &SessionChange::Extend(ttl(5000)), None, capped)
            .await
            .unwrap(),
    );
    assert_eq!(
        far.expires_at_ms,
        s.created_at_ms + 100_000,
        "never past the rules cap"
    );
    assert_eq!(get(stores, &t, &s.id).await.unwrap(), far);
}

async fn writes_never_revive_a_deleted_or_expired_session(stores: &Stores) {
    let t = Tenant::new("t1");
    let deleted = created(stores, &t, "u1", 60).await;
    assert!(stores.sessions.delete(&t, &deleted.id).await.unwrap());
    let expired = created(stores, &t, "u1", 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let never = SessionId::random();
    for id in [&deleted.id, &expired.id, &never] {
        let changes = [
            patch(Some(json!({"a": 1})), None),
            SessionChange::ReplaceContext(obj(json!({"a": 1}))),
            SessionChange::Extend(ttl(600)),
        ];
        for change in changes {
            let outcome = update(stores, &t, id, &change, None).await;
            assert_eq!(outcome, SessionUpdate::Missing);
        }
        let with_version = update(stores, &t, id, &patch(None, None), Some(1)).await;
        assert_eq!(
            with_version,
            SessionUpdate::Missing,
            "absence wins over If-Match"
        );
        assert_eq!(
            stores
                .sessions
                .rotate(&t, id, &id.random_beside(), FIXED)
                .await
                .unwrap(),
            None
        );
        assert!(!stores.sessions.delete(&t, id).await.unwrap());
        let rolling = SessionRules {
            rolling: true,
            ..FIXED
        };
        assert_eq!(stores.sessions.get(&t, id, rolling).await.unwrap(), None);
        assert_eq!(stores.sessions.get(&t, id, FIXED).await.unwrap(), None);
    }
    assert!(sessions_of(stores, &t, "u1").await.is_empty());
}

async fn rotate_moves_the_session_to_a_new_id(stores: &Stores) {
    let t = Tenant::new("t1");
    let s = created(stores, &t, "u1", 60).await;
    let new_id = s.id.random_beside();
    let rotated = stores
        .sessions
        .rotate(&t, &s.id, &new_id.clone(), FIXED)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.id, new_id);
    assert_eq!(
        (
            &rotated.user_id,
            &rotated.workspace_id,
            &rotated.data,
            &rotated.context
        ),
        (&s.user_id, &s.workspace_id, &s.data, &s.context)
    );
    assert_eq!(
        (
            rotated.created_at_ms,
            rotated.expires_at_ms,
            rotated.version
        ),
        (s.created_at_ms, s.expires_at_ms, s.version),
        "same creation, expiry and version"
    );
    assert_eq!(get(stores, &t, &s.id).await, None, "old id gone");
    assert_eq!(get(stores, &t, &new_id).await, Some(rotated.clone()));
    let listed = sessions_of(stores, &t, "u1").await;
    assert_eq!(listed, vec![rotated]);
    assert_eq!(
        update(stores, &t, &s.id, &patch(None, None), None).await,
        SessionUpdate::Missing
    );
    assert_eq!(
        stores
            .sessions
            .rotate(&t, &s.id, &s.id.random_beside(), FIXED)
            .await
            .unwrap(),
        None
    );
}

async fn user_index_lists_live_sessions_and_signs_out_everywhere(stores: &Stores) {
    let t = Tenant::new("t1");
    let a = created(stores, &t, "u1", 60).await;
    let short = created(stores, &t, "u1", 1).await;
    let b = created(stores, &t, "u1", 60).await;
    let other = created(stores, &t, "u2", 60).await;
    let listed = sessions_of(stores, &t, "u1").await;
    let mut expected = vec![a.clone(), short.clone(), b.clone()];
    statekeeper::capabilities::session::model::sort_for_listing(&mut expected);
    assert_eq!(listed, expected);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let listed = sessions_of(stores, &t, "u1").await;
    assert!(
        !listed.iter().any(|s| s.id == short.id),
        "expired sessions are never listed"
    );
    assert_eq!(listed.len(), 2);
    assert_eq!(sign_out(stores, &t, "u1").await, 2);
    assert!(sessions_of(stores, &t, "u1").await.is_empty());
    assert_eq!(get(stores, &t, &a.id).await, None);
    assert_eq!(get(stores, &t, &b.id).await, None);
    assert_eq!(sign_out(stores, &t, "u1").await, 0);
    assert_eq!(
        sessions_of(stores, &t, "u2").await,
        vec![other],
        "another user's sessions stay"
    );
    assert_eq!(sign_out(stores, &t, "nobody").await, 0);
}

async fn tenants_are_separate(stores: &Stores) {
    let (a, b) = (Tenant::new("alpha"), Tenant::new("beta"));
    let s = created(stores, &a, "u1", 60).await;
    assert_eq!(get(stores, &b, &s.id).await, None);
    assert!(!stores.sessions.delete(&b, &s.id).await.unwrap());
    assert_eq!(
        update(stores, &b, &s.id, &patch(None, None), None).await,
        SessionUpdate::Missing
    );
    assert_eq!(
        stores
            .sessions
            .rotate(&b, &s.id, &s.id.random_beside(), FIXED)
            .await
            .unwrap(),
        None
    );
    assert!(sessions_of(stores, &b, "u1").await.is_empty());
    assert_eq!(sign_out(stores, &b, "u1").await, 0);
    assert!(get(stores, &a, &s.id).await.is_some());
}

async fn rolling_reads_renew_up_to_the_lifetime_cap(stores: &Stores) {
    let t = Tenant::new("t1");
    let rolling = SessionRules {
        rolling: true,
        max_lifetime_ms: 3_000,
        ..FIXED
    };
    let s = session("u1", 2);
    stores
        .sessions
        .create(&t, &s.clone(), rolling)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let read = stores
        .sessions
        .get(&t, &s.id, rolling)
        .await
        .unwrap()
        .unwrap();
    assert!(
        read.expires_at_ms > s.expires_at_ms,
        "the read renewed the TTL"
    );
    assert!(read.last_activity_at_ms > s.last_activity_at_ms);
    assert_eq!(read.version, 1, "a renewal is not a content change");
    // 2.4 s after creation: past the original expiry, alive thanks to the renewal.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let read = stores
        .sessions
        .get(&t, &s.id, rolling)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read.expires_at_ms,
        s.created_at_ms + 3_000,
        "renewal stops at the cap"
    );
    let listed = sessions_of(stores, &t, "u1").await;
    assert_eq!(listed, vec![read]);
    // A rolling write renews too, and is capped alike.
    let written = expect_updated(
        stores
            .sessions
            .update(
                &t,
                &s.id,
                &patch(Some(json!({"n": 1})), None),
                None,
                rolling,
            )
            .await
            .unwrap(),
    );
    assert_eq!(written.expires_at_ms, s.created_at_ms + 3_000);
    let left = (s.created_at_ms + 3_000 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(left + 150)).await;
    assert_eq!(
        stores.sessions.get(&t, &s.id, rolling).await.unwrap(),
        None,
        "the cap holds"
    );
    assert!(sessions_of(stores, &t, "u1").await.is_empty());
}

async fn fixed_expiry_reads_change_nothing(stores: &Stores) {
    let t = Tenant::new("t1");
    let s = created(stores, &t, "u1", 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(stores, &t, &s.id).await, Some(s.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(stores, &t, &s.id).await, None);
}

/// The failure of popular session stores: a request that finishes after logout writes the
/// session back. Here every write racing a delete either lands first or finds nothing.
async fn racing_writes_and_delete_never_resurrect(stores: &Stores) {
    let t = Tenant::new("t1");
    for round in 0..10 {
        let s = created(stores, &t, "racer", 60).await;
        let results = crate::common::race(16, |i| {
            let (stores, t, id) = (stores.clone(), t.clone(), s.id.clone());
            async move {
                let sessions = &stores.sessions;
                match i % 4 {
                    0 if i == 0 => format!("delete:{}", sessions.delete(&t, &id).await.unwrap()),
                    0 | 1 => {
                        let c = patch(Some(json!({"i": i})), Some(json!({"i": i})));
                        format!(
                            "{:?}",
                            sessions.update(&t, &id, &c, None, FIXED).await.unwrap()
                        )
                    }
                    2 => {
                        let c = SessionChange::ReplaceContext(obj(json!({"i": i})));
                        format!(
                            "{:?}",
                            sessions.update(&t, &id, &c, None, FIXED).await.unwrap()
                        )
                    }
                    _ => {
                        let c = SessionChange::Extend(ttl(600));
                        format!(
                            "{:?}",
                            sessions.update(&t, &id, &c, None, FIXED).await.unwrap()
                        )
                    }
                }
            }
        })
        .await;
        assert_eq!(
            results[0], "delete:true",
            "round {round}: the delete found the session"
        );
        assert_eq!(
            get(stores, &t, &s.id).await,
            None,
            "round {round}: {results:?}"
        );
        assert!(sessions_of(stores, &t, "racer").await.is_empty());
    }
}

/// Rotation racing a delete and a sign-out everywhere: whatever the order, no session is left
/// and exactly one of rotate / delete found the old id.
async fn racing_rotate_and_sign_out_leave_nothing(stores: &Stores) {
    let t = Tenant::new("t1");
    for round in 0..10 {
        let s = created(stores, &t, "rotator", 60).await;
        let results = crate::common::race(3, |i| {
            let (stores, t, id) = (stores.clone(), t.clone(), s.id.clone());
            async move {
                match i {
                    0 => stores
                        .sessions
                        .rotate(&t, &id, &id.random_beside(), FIXED)
                        .await
                        .unwrap()
                        .is_some(),
                    1 => stores.sessions.delete(&t, &id).await.unwrap(),
                    _ => sign_out(&stores, &t, "rotator").await == 1,
                }
            }
        })
        .await;
        assert_eq!(
            results.iter().filter(|won| **won).count(),
            if results[0] { 2 } else { 1 },
            "round {round}: rotate then one deleter, or one deleter alone: {results:?}"
        );
        assert!(
            sessions_of(stores, &t, "rotator").await.is_empty(),
            "round {round}: {results:?}"
        );
    }
}

async fn writes_past_the_size_limit_are_refused(stores: &Stores) {
    let t = Tenant::new("t1");
    let s = created(stores, &t, "u1", 60).await;
    let small = SessionRules {
        max_bytes: s.content_bytes() + 20,
        ..FIXED
    };
    let growth = patch(Some(json!({"blob": "x".repeat(40)})), None);
    let mut expected = s.clone();
    expected.apply(growth.clone(), now_ms(), small);
    let outcome = stores
        .sessions
        .update(&t, &s.id, &growth, None, small)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        SessionUpdate::TooLarge {
            size: expected.content_bytes()
        },
        "both adapters measure the same compact JSON"
    );
    let big_context = SessionChange::ReplaceContext(obj(json!({"blob": "y".repeat(100)})));
    let outcome = stores
        .sessions
        .update(&t, &s.id, &big_context, None, small)
        .await
        .unwrap();
    assert!(
        matches!(outcome, SessionUpdate::TooLarge { .. }),
        "{outcome:?}"
    );
    assert_eq!(get(stores, &t, &s.id).await.unwrap(), s, "nothing written");
    let fits = patch(Some(json!({"n": 1})), None);
    expect_updated(
        stores
            .sessions
            .update(&t, &s.id, &fits, None, small)
            .await
            .unwrap(),
    );
    // Below a lowered limit a shrinking write still goes through; a growing one does not.
    let tiny = SessionRules {
        max_bytes: 5,
        ..FIXED
    };
    let shrink = SessionChange::ReplaceContext(Map::new());
    let shrunk = expect_updated(
        stores
            .sessions
            .update(&t, &s.id, &shrink, None, tiny)
            .await
            .unwrap(),
    );
    assert_eq!(shrunk.context, Some(Map::new()));
    let grow = patch(None, Some(json!({"a": 1})));
    let outcome = stores
        .sessions
        .update(&t, &s.id, &grow, None, tiny)
        .await
        .unwrap();
    assert!(
        matches!(outcome, SessionUpdate::TooLarge { .. }),
        "{outcome:?}"
    );
}

crate::store_conformance!(
    writes_past_the_size_limit_are_refused,
    create_get_delete_round_trip,
    patch_merges_exactly_and_raises_version,
    if_match_guards_every_content_write,
    extend_moves_expiry_within_the_cap,
    writes_never_revive_a_deleted_or_expired_session,
    rotate_moves_the_session_to_a_new_id,
    user_index_lists_live_sessions_and_signs_out_everywhere,
    a_users_listing_pages_in_creation_order_exactly_once,
    tenants_are_separate,
    rolling_reads_renew_up_to_the_lifetime_cap,
    fixed_expiry_reads_change_nothing,
    racing_writes_and_delete_never_resurrect,
    racing_rotate_and_sign_out_leave_nothing,
);

/// Redis only: a user index left by an earlier version, a plain set of session ids, is turned
/// into the listing-order index in place by the first script that meets it, keeping its TTL;
/// an id whose session is gone is dropped on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_an_index_of_an_earlier_version_is_converted_in_place() {
    let Some(harness) = crate::common::redis_stores().await else {
        return;
    };
    let stores = &harness.stores;
    let t = Tenant::new("legacy");
    let base = now_ms() - 10_000;
    let mut sessions = Vec::new();
    for i in 0..4 {
        sessions.push(created_at(stores, &t, "u1", base + i, 60).await);
    }
    let keys = statekeeper::store::redis::keys::Keys::new("conformance");
    let index = keys.session_user(&t, 0, &user("u1"));
    let mut conn = harness.redis.as_ref().unwrap().connection();
    let as_set = |conn: &mut redis::Connection| {
        let _: () = redis::pipe()
            .del(&index)
            .sadd(
                &index,
                sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            )
            .sadd(&index, SessionId::random().as_str())
            .pexpire(&index, 500_000)
            .query(conn)
            .unwrap();
    };

    as_set(&mut conn);
    assert!(stores.sessions.delete(&t, &sessions[0].id).await.unwrap());
    let kind: String = redis::cmd("TYPE").arg(&index).query(&mut conn).unwrap();
    assert_eq!(kind, "zset");
    let ttl: i64 = redis::cmd("PTTL").arg(&index).query(&mut conn).unwrap();
    assert!((400_000..=500_000).contains(&ttl), "the TTL is kept: {ttl}");
    assert_eq!(sessions_of(stores, &t, "u1").await, sessions[1..]);

    as_set(&mut conn);
    assert_eq!(
        sessions_of(stores, &t, "u1").await,
        sessions[1..],
        "a listing converts it"
    );
    let size: u64 = redis::cmd("ZCARD").arg(&index).query(&mut conn).unwrap();
    assert_eq!(size, 3, "the id of no session was dropped");

    as_set(&mut conn);
    let rotated = stores
        .sessions
        .rotate(&t, &sessions[1].id, &sessions[1].id.random_beside(), FIXED)
        .await
        .unwrap()
        .unwrap();
    let listed = sessions_of(stores, &t, "u1").await;
    assert_eq!(
        listed[0].id, rotated.id,
        "a rotation converts it and keeps the place"
    );
    assert_eq!(listed[1..], sessions[2..]);

    let _: () = redis::pipe()
        .del(&index)
        .sadd(
            &index,
            sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        )
        .sadd(&index, rotated.id.as_str())
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        sign_out(stores, &t, "u1").await,
        3,
        "signing out converts it and deletes every live session"
    );
    assert!(sessions_of(stores, &t, "u1").await.is_empty());
}
