//! The pending-action store's behaviour, identical on the memory and Redis adapters.

use std::time::Duration;

use serde_json::json;
use statekeeper::{
    capabilities::pending_action::model::{
        self as pending_action, ActionStatus, ActionToken, Cancel, Confirm, IdempotencyKey,
        NewPendingAction, PendingAction, TombstoneLife,
    },
    domain::{ids::Tenant, ttl::Ttl},
    store::Stores,
};

fn ttl(seconds: u64) -> Ttl {
    Ttl::new(seconds, 1_000_000).unwrap()
}

fn key(s: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(s).unwrap())
}

const REMAINING: TombstoneLife = TombstoneLife::Remaining;

/// Creates a pending action living `seconds` and returns it as stored.
async fn create(stores: &Stores, tenant: &Tenant, seconds: u64) -> PendingAction {
    let new = NewPendingAction {
        intent_name: "merge_pull_request".into(),
        entities: json!({"repo": "acme/api", "pr": 42, "labels": [], "meta": {}})
            .as_object()
            .unwrap()
            .clone(),
        summary: "Merge PR #42".into(),
        session_id: Some("s-1".into()),
        user_id: None,
    };
    let action = PendingAction::new(
        ActionToken::generate(),
        new,
        pending_action::now(),
        ttl(seconds),
    );
    assert!(
        stores
            .pending_actions
            .create(tenant, &action.clone(), ttl(seconds))
            .await
            .unwrap()
    );
    action
}

async fn confirm(
    stores: &Stores,
    t: &Tenant,
    token: &ActionToken,
    k: Option<IdempotencyKey>,
) -> Confirm {
    stores
        .pending_actions
        .confirm(t, token, pending_action::now(), k.as_ref(), REMAINING)
        .await
        .unwrap()
}

async fn cancel(stores: &Stores, t: &Tenant, token: &ActionToken) -> Cancel {
    stores
        .pending_actions
        .cancel(t, token, pending_action::now(), REMAINING)
        .await
        .unwrap()
}

async fn create_then_get_round_trips(stores: &Stores) {
    let t = Tenant::new("t1");
    let action = create(stores, &t, 60).await;
    let got = stores
        .pending_actions
        .get(&t, &action.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got, action,
        "the action reads back exactly, entities included"
    );
    assert_eq!(got.status, ActionStatus::Pending);
    assert_eq!(
        got.entities["labels"],
        json!([]),
        "an empty array stays an array"
    );
    assert_eq!(got.entities["meta"], json!({}));
    assert!(
        !stores
            .pending_actions
            .create(&t, &action.clone(), ttl(60))
            .await
            .unwrap(),
        "a token is never overwritten"
    );
    let unknown = ActionToken::generate();
    assert_eq!(
        stores.pending_actions.get(&t, &unknown).await.unwrap(),
        None
    );
}

async fn confirm_wins_once_then_conflicts(stores: &Stores) {
    let t = Tenant::new("t1");
    let action = create(stores, &t, 60).await;
    let Confirm::Confirmed(confirmed) = confirm(stores, &t, &action.token, None).await else {
        panic!("the first confirm wins");
    };
    assert_eq!(confirmed.status, ActionStatus::Confirmed);
    assert!(confirmed.confirmed_at.is_some());
    assert_eq!(confirmed.intent_name, action.intent_name);
    assert_eq!(
        confirmed.expires_at, action.expires_at,
        "expires_at is the token's, unchanged"
    );
    assert_eq!(
        confirm(stores, &t, &action.token, None).await,
        Confirm::AlreadyConfirmed
    );
    assert_eq!(
        confirm(stores, &t, &action.token, key("k")).await,
        Confirm::AlreadyConfirmed
    );
    let tombstone = stores
        .pending_actions
        .get(&t, &action.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tombstone, confirmed,
        "the tombstone reads as the confirmed action"
    );
    assert_eq!(
        confirm(stores, &t, &ActionToken::generate(), None).await,
        Confirm::NotFound
    );
}

async fn replay_needs_the_winners_key(stores: &Stores) {
    let t = Tenant::new("t1");
    let action = create(stores, &t, 60).await;
    let Confirm::Confirmed(won) = confirm(stores, &t, &action.token, key("retry-1")).await else {
        panic!("the first confirm wins");
    };
    assert_eq!(
        confirm(stores, &t, &action.token, key("retry-1")).await,
        Confirm::Replayed(won.clone()),
        "the same key gets the winner's answer again, confirmed_at included"
    );
    assert_eq!(
        confirm(stores, &t, &action.token, key("retry-2")).await,
        Confirm::AlreadyConfirmed
    );
    assert_eq!(
        confirm(stores, &t, &action.token, None).await,
        Confirm::AlreadyConfirmed
    );
    assert_eq!(
        confirm(stores, &t, &action.token, key("retry-1")).await,
        Confirm::Replayed(won),
        "losers do not disturb the replay record"
    );

    // A winner without a key leaves nothing to replay.
    let keyless = create(stores, &t, 60).await;
    assert!(matches!(
        confirm(stores, &t, &keyless.token, None).await,
        Confirm::Confirmed(_)
    ));
    assert_eq!(
        confirm(stores, &t, &keyless.token, key("any")).await,
        Confirm::AlreadyConfirmed
    );
}

async fn cancel_blocks_confirm(stores: &Stores) {
    let t = Tenant::new("t1");
    let action = create(stores, &t, 60).await;
    assert_eq!(cancel(stores, &t, &action.token).await, Cancel::Cancelled);
    assert_eq!(
        confirm(stores, &t, &action.token, key("k")).await,
        Confirm::AlreadyCancelled
    );
    assert_eq!(
        cancel(stores, &t, &action.token).await,
        Cancel::AlreadyCancelled
    );
    let got = stores
        .pending_actions
        .get(&t, &action.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, ActionStatus::Cancelled);
    assert!(got.cancelled_at.is_some());
    assert_eq!(got.confirmed_at, None);

    let confirmed = create(stores, &t, 60).await;
    assert!(matches!(
        confirm(stores, &t, &confirmed.token, None).await,
        Confirm::Confirmed(_)
    ));
    assert_eq!(
        cancel(stores, &t, &confirmed.token).await,
        Cancel::AlreadyConfirmed
    );
    let got = stores
        .pending_actions
        .get(&t, &confirmed.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.status,
        ActionStatus::Confirmed,
        "a refused cancel changes nothing"
    );
    assert_eq!(
        cancel(stores, &t, &ActionToken::generate()).await,
        Cancel::NotFound
    );
}

async fn tenants_never_see_each_others_tokens(stores: &Stores) {
    let (a, b) = (Tenant::new("alpha"), Tenant::new("beta"));
    let action = create(stores, &a, 60).await;
    assert_eq!(
        stores.pending_actions.get(&b, &action.token).await.unwrap(),
        None
    );
    assert_eq!(
        confirm(stores, &b, &action.token, None).await,
        Confirm::NotFound
    );
    assert_eq!(cancel(stores, &b, &action.token).await, Cancel::NotFound);
    let still = stores
        .pending_actions
        .get(&a, &action.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        still.status,
        ActionStatus::Pending,
        "the other tenant changed nothing"
    );
    assert!(matches!(
        confirm(stores, &a, &action.token, None).await,
        Confirm::Confirmed(_)
    ));
    assert_eq!(
        confirm(stores, &b, &action.token, None).await,
        Confirm::NotFound,
        "a tombstone is as invisible as a pending token"
    );
}

async fn pending_actions_expire(stores: &Stores) {
    let t = Tenant::new("t1");
    let action = create(stores, &t, 1).await;
    let other = create(stores, &t, 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        stores.pending_actions.get(&t, &action.token).await.unwrap(),
        None
    );
    assert_eq!(
        confirm(stores, &t, &action.token, None).await,
        Confirm::NotFound
    );
    assert_eq!(cancel(stores, &t, &other.token).await, Cancel::NotFound);
}

async fn tombstones_outlive_the_token_by_default(stores: &Stores) {
    let t = Tenant::new("t1");
    let action = create(stores, &t, 1).await;
    let cancelled = create(stores, &t, 1).await;
    assert!(matches!(
        confirm(stores, &t, &action.token, key("k")).await,
        Confirm::Confirmed(_)
    ));
    assert_eq!(
        cancel(stores, &t, &cancelled.token).await,
        Cancel::Cancelled
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The token would have expired by now; its tombstone lives at least 60 s.
    assert_eq!(
        confirm(stores, &t, &action.token, None).await,
        Confirm::AlreadyConfirmed
    );
    assert!(matches!(
        confirm(stores, &t, &action.token, key("k")).await,
        Confirm::Replayed(_)
    ));
    assert_eq!(
        confirm(stores, &t, &cancelled.token, None).await,
        Confirm::AlreadyCancelled
    );
}

async fn fixed_tombstones_end(stores: &Stores) {
    let t = Tenant::new("t1");
    let fixed = TombstoneLife::Fixed(ttl(1));
    let action = create(stores, &t, 60).await;
    let cancelled = create(stores, &t, 60).await;
    let store = &stores.pending_actions;
    let now = pending_action::now();
    assert!(matches!(
        store
            .confirm(&t, &action.token, now, key("k").as_ref(), fixed)
            .await
            .unwrap(),
        Confirm::Confirmed(_)
    ));
    assert_eq!(
        store
            .cancel(&t, &cancelled.token, now, fixed)
            .await
            .unwrap(),
        Cancel::Cancelled
    );
    assert!(matches!(
        confirm(stores, &t, &action.token, key("k")).await,
        Confirm::Replayed(_)
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        confirm(stores, &t, &action.token, key("k")).await,
        Confirm::NotFound
    );
    assert_eq!(store.get(&t, &action.token).await.unwrap(), None);
    assert_eq!(cancel(stores, &t, &cancelled.token).await, Cancel::NotFound);
}

/// Many tokens, each confirmed by many callers at once, all racing together.
async fn racing_confirms_have_one_winner_per_token(stores: &Stores) {
    const TOKENS: usize = 12;
    const CONFIRMERS: usize = 12;
    let t = Tenant::new("t1");
    let mut tokens = Vec::new();
    for _ in 0..TOKENS {
        tokens.push(create(stores, &t, 60).await.token);
    }
    let results = crate::common::race(TOKENS * CONFIRMERS, |i| {
        let (stores, t, token) = (stores.clone(), t.clone(), tokens[i % TOKENS].clone());
        async move {
            let k = key(&format!("caller-{i}"));
            let outcome = stores
                .pending_actions
                .confirm(&t, &token, pending_action::now(), k.as_ref(), REMAINING)
                .await
                .unwrap();
            (i % TOKENS, outcome)
        }
    })
    .await;
    for token in 0..TOKENS {
        let outcomes = crate::common::of_group(&results, token);
        let won = outcomes
            .iter()
            .filter(|o| matches!(o, Confirm::Confirmed(_)))
            .count();
        let lost = outcomes
            .iter()
            .filter(|o| **o == &Confirm::AlreadyConfirmed)
            .count();
        assert_eq!(
            (won, lost),
            (1, CONFIRMERS - 1),
            "token {token}: {outcomes:?}"
        );
    }
}

/// Retries of one confirm racing each other: one confirms, the others replay its answer.
async fn racing_retries_with_one_key_all_get_the_winners_answer(stores: &Stores) {
    let t = Tenant::new("t1");
    let token = create(stores, &t, 60).await.token;
    let results = crate::common::race(24, |_| {
        let (stores, t, token) = (stores.clone(), t.clone(), token.clone());
        async move { confirm(&stores, &t, &token, key("same")).await }
    })
    .await;
    let winners: Vec<_> = results
        .iter()
        .filter_map(|o| match o {
            Confirm::Confirmed(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for outcome in &results {
        match outcome {
            Confirm::Confirmed(a) | Confirm::Replayed(a) => assert_eq!(a, winners[0]),
            other => panic!("a retry with the winner's key got {other:?}"),
        }
    }
}

/// Confirms and cancels racing on each token: exactly one of them takes effect.
async fn racing_confirm_and_cancel_never_both_win(stores: &Stores) {
    let t = Tenant::new("t1");
    for _ in 0..8 {
        let token = create(stores, &t, 60).await.token;
        let results = crate::common::race(16, |i| {
            let (stores, t, token) = (stores.clone(), t.clone(), token.clone());
            async move {
                if i % 2 == 0 {
                    matches!(
                        confirm(&stores, &t, &token, None).await,
                        Confirm::Confirmed(_)
                    )
                } else {
                    cancel(&stores, &t, &token).await == Cancel::Cancelled
                }
            }
        })
        .await;
        assert_eq!(results.iter().filter(|won| **won).count(), 1, "{results:?}");
    }
}

crate::store_conformance!(
    create_then_get_round_trips,
    confirm_wins_once_then_conflicts,
    replay_needs_the_winners_key,
    cancel_blocks_confirm,
    tenants_never_see_each_others_tokens,
    pending_actions_expire,
    tombstones_outlive_the_token_by_default,
    fixed_tombstones_end,
    racing_confirms_have_one_winner_per_token,
    racing_retries_with_one_key_all_get_the_winners_answer,
    racing_confirm_and_cancel_never_both_win,
);
