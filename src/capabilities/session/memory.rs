//! Sessions on the memory engine. The authoritative entry is one per user: `(tenant, user)` →
//! that user's sessions, so every operation on a session and every operation on "all of a
//! user's sessions" runs under the same engine lock, and a rotation, a delete and a sign-out
//! everywhere are serialised against each other. A second engine maps a session id to its user;
//! it is only a hint for finding the entry (a stale pointer leads to an entry without the
//! session, which reads as absent), so it may lag behind without ever reviving a session.
//!
//! A call on one session costs the same whatever the user's session count: each session's own
//! deadline decides whether it is live, the entry's weight is kept as sessions come and go, and
//! expired sessions are pruned from the entry only when it has doubled since its last prune
//! (amortised O(1) per write). The entry expires with the latest deadline any of its sessions
//! was given, so it never expires before a live session.

use std::{
    collections::{BTreeSet, HashMap},
    ops::Bound,
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh, json_weight},
};
use crate::{
    capabilities::session::{
        model::{
            ListingPlace, Session, SessionChange, SessionId, SessionPage, SessionRules, UserId,
            now_ms,
        },
        port::{SessionStore, SessionUpdate},
    },
    domain::ids::Tenant,
    store::{IdPage, StoreResult},
};

/// A session and the monotonic instant it expires at.
#[derive(Clone)]
struct Live {
    session: Session,
    deadline: Instant,
}

impl Live {
    fn is_live(&self, now: Instant) -> bool {
        self.deadline > now
    }

    /// What the session costs in its user's entry: itself, its id twice (map and order) and
    /// the two nodes.
    fn weight(&self) -> usize {
        let session = &self.session;
        json_weight(&session.data)
            + json_weight(&session.context)
            + session.user_id.weight()
            + session.workspace_id.as_ref().map_or(0, Weigh::weight)
            + 2 * session.id.weight()
            + 96
            + 80
    }
}

/// One user's sessions: by id, and in listing order.
#[derive(Default)]
struct UserSessions {
    by_id: HashMap<SessionId, Live>,
    order: BTreeSet<ListingPlace>,
    /// The sum of the sessions' `Live::weight`, kept as they change.
    weight: usize,
    /// The latest deadline any session here was given since the last prune.
    latest: Option<Instant>,
    /// How many sessions were left by the last prune.
    pruned_to: usize,
}

impl Weigh for UserSessions {
    fn weight(&self) -> usize {
        self.weight
    }
}

/// Sessions an entry may hold beyond twice what its last prune left before it is pruned again.
const PRUNE_SLACK: usize = 16;

impl UserSessions {
    /// Adds a session, or replaces the one of the same id.
    fn insert(&mut self, live: Live) {
        self.remove(&live.session.id);
        self.weight += live.weight();
        self.latest = self.latest.max(Some(live.deadline));
        self.order.insert(live.session.place());
        self.by_id.insert(live.session.id.clone(), live);
    }

    fn remove(&mut self, id: &SessionId) -> Option<Live> {
        let live = self.by_id.remove(id)?;
        self.weight -= live.weight();
        self.order.remove(&live.session.place());
        Some(live)
    }

    /// The live session `id`; an expired one is removed on the way.
    /// (Shared, not mutable: a stored session is replaced through `insert`, never changed in
    /// place, so its weight stays the one counted in.)
    fn live(&mut self, id: &SessionId, now: Instant) -> Option<&Live> {
        if !self.by_id.get(id)?.is_live(now) {
            self.remove(id);
            return None;
        }
        self.by_id.get(id)
    }

    /// Drops the expired sessions; returns how many.
    fn prune(&mut self, now: Instant) -> u64 {
        let expired: Vec<SessionId> = self
            .by_id
            .iter()
            .filter(|(_, live)| !live.is_live(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        self.latest = self.by_id.values().map(|live| live.deadline).max();
        self.pruned_to = self.by_id.len();
        expired.len() as u64
    }

    /// Prunes when the entry has doubled since its last prune.
    fn prune_if_grown(&mut self, now: Instant) {
        if self.by_id.len() > 2 * self.pruned_to + PRUNE_SLACK {
            self.prune(now);
        }
    }

    /// Up to `limit` live sessions strictly after `after`, and whether a live one follows.
    /// Expired sessions met on the way are removed.
    fn page(&mut self, after: Option<&ListingPlace>, limit: usize, now: Instant) -> SessionPage {
        let mut page = SessionPage::default();
        let mut expired = Vec::new();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        for place in self.order.range((start, Bound::Unbounded)) {
            let Some(live) = self.by_id.get(&place.id) else {
                continue;
            };
            if !live.is_live(now) {
                expired.push(place.id.clone());
            } else if page.sessions.len() == limit {
                page.more = true;
                break;
            } else {
                page.sessions.push(live.session.clone());
            }
        }
        for id in &expired {
            self.remove(id);
        }
        page
    }
}

pub struct MemorySessions {
    by_user: Engine<(Tenant, UserId), UserSessions>,
    owner: Engine<(Tenant, SessionId), UserId>,
}

impl MemorySessions {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            by_user: backend.engine(),
            owner: backend.engine(),
        }
    }

    fn owner_of(&self, tenant: &Tenant, id: &SessionId) -> Option<UserId> {
        self.owner.read(&(tenant.clone(), id.clone()), |e| {
            e.map(|e| e.value.clone())
        })
    }

    /// Runs `change` on the user's sessions under the engine lock (it sees `now`, and must
    /// treat a session past its deadline as absent), then stores what is left, pruned if it
    /// has grown, with the entry expiring with its latest deadline.
    fn with_user<R>(
        &self,
        tenant: &Tenant,
        user: &UserId,
        change: impl FnOnce(&mut UserSessions, Instant) -> R,
    ) -> R {
        self.by_user
            .update(&(tenant.clone(), user.clone()), |slot| {
                let now = Instant::now();
                let mut sessions = slot.take().map(|e| e.value).unwrap_or_default();
                let result = change(&mut sessions, now);
                sessions.prune_if_grown(now);
                *slot = match sessions.latest {
                    Some(last) if !sessions.by_id.is_empty() => Some(Entry {
                        value: sessions,
                        expires_at: Some(last),
                    }),
                    _ => None,
                };
                result
            })
    }

    /// Drops the user's expired sessions; returns how many.
    fn prune(&self, tenant: &Tenant, user: &UserId) -> u64 {
        self.with_user(tenant, user, |sessions, now| sessions.prune(now))
    }

    /// Points the session's id at its user until the session's latest possible expiry, so the
    /// pointer outlives the session (`max_lifetime_ms` is fixed per process, and memory does
    /// not outlive the process).
    fn point(&self, tenant: &Tenant, session: &Session, rules: SessionRules) {
        let until = deadline(session.deadline_cap_ms(rules));
        self.owner
            .update(&(tenant.clone(), session.id.clone()), |slot| {
                *slot = Some(Entry {
                    value: session.user_id.clone(),
                    expires_at: Some(until),
                })
            });
    }

    fn unpoint(&self, tenant: &Tenant, id: &SessionId) {
        self.owner
            .update(&(tenant.clone(), id.clone()), |slot| *slot = None);
    }
}

/// The monotonic instant of a wall-clock expiry, measured from now.
fn deadline(expires_at_ms: i64) -> Instant {
    let left = (expires_at_ms - now_ms()).max(0) as u64;
    Instant::now() + Duration::from_millis(left)
}

fn live(session: Session) -> Live {
    Live {
        deadline: deadline(session.expires_at_ms),
        session,
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(
        &self,
        tenant: &Tenant,
        session: &Session,
        rules: SessionRules,
    ) -> StoreResult<()> {
        self.by_user.ensure_room()?;
        let user = session.user_id.clone();
        self.point(tenant, session, rules);
        self.with_user(tenant, &user, |sessions, _| {
            sessions.insert(live(session.clone()));
        });
        Ok(())
    }

    async fn get(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        rules: SessionRules,
    ) -> StoreResult<Option<Session>> {
        let Some(user) = self.owner_of(tenant, id) else {
            return Ok(None);
        };
        Ok(self.with_user(tenant, &user, |sessions, now| {
            let entry = sessions.live(id, now)?;
            let mut session = entry.session.clone();
            if session.touch(now_ms(), rules) {
                sessions.insert(live(session.clone()));
            }
            Some(session)
        }))
    }

    async fn update(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        change: &SessionChange,
        if_match: Option<u64>,
        rules: SessionRules,
    ) -> StoreResult<SessionUpdate> {
        self.by_user.ensure_room()?;
        let Some(user) = self.owner_of(tenant, id) else {
            return Ok(SessionUpdate::Missing);
        };
        Ok(self.with_user(tenant, &user, |sessions, now| {
            let Some(entry) = sessions.live(id, now) else {
                return SessionUpdate::Missing;
            };
            if let Some(expected) = if_match
                && expected != entry.session.version
            {
                return SessionUpdate::Stale {
                    current_version: entry.session.version,
                };
            }
            let before = entry.session.content_bytes();
            let mut session = entry.session.clone();
            session.apply(change.clone(), now_ms(), rules);
            let size = session.content_bytes();
            if size > rules.max_bytes && size > before {
                return SessionUpdate::TooLarge { size };
            }
            sessions.insert(live(session.clone()));
            SessionUpdate::Updated(session)
        }))
    }

    async fn rotate(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        new_id: &SessionId,
        rules: SessionRules,
    ) -> StoreResult<Option<Session>> {
        self.by_user.ensure_room()?;
        let Some(user) = self.owner_of(tenant, id) else {
            return Ok(None);
        };
        let rotated = self.with_user(tenant, &user, |sessions, now| {
            sessions.live(id, now)?;
            let old = sessions.remove(id)?;
            let mut session = old.session;
            session.id = new_id.clone();
            session.last_activity_at_ms = now_ms();
            sessions.insert(Live {
                session: session.clone(),
                deadline: old.deadline,
            });
            Some(session)
        });
        if let Some(session) = &rotated {
            // Nobody knows the new id before this returns, so pointing it after the swap is safe.
            self.point(tenant, session, rules);
            self.unpoint(tenant, id);
        }
        Ok(rotated)
    }

    async fn delete(&self, tenant: &Tenant, id: &SessionId) -> StoreResult<bool> {
        let Some(user) = self.owner_of(tenant, id) else {
            return Ok(false);
        };
        let existed = self.with_user(tenant, &user, |sessions, now| {
            sessions.remove(id).is_some_and(|old| old.is_live(now))
        });
        self.unpoint(tenant, id);
        Ok(existed)
    }

    async fn list_for_user(
        &self,
        tenant: &Tenant,
        user: &UserId,
        after: Option<&ListingPlace>,
        limit: usize,
    ) -> StoreResult<SessionPage> {
        Ok(self.with_user(tenant, user, |sessions, now| {
            sessions.page(after, limit, now)
        }))
    }

    async fn delete_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<u64> {
        let removed = self.with_user(tenant, user, |sessions, _| std::mem::take(sessions));
        let now = Instant::now();
        for id in removed.by_id.keys() {
            self.unpoint(tenant, id);
        }
        Ok(removed.by_id.values().filter(|s| s.is_live(now)).count() as u64)
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        // Session ids are UUIDs: the nil UUID sorts before every one.
        let first = |raw: &str| SessionId::parse(raw).ok();
        let start = match cursor.and_then(first) {
            Some(after) => Bound::Excluded((tenant.clone(), after)),
            None => match first("00000000-0000-0000-0000-000000000000") {
                Some(nil) => Bound::Included((tenant.clone(), nil)),
                None => Bound::Unbounded,
            },
        };
        let (page, resume) = self.owner.scan(
            (start, Bound::Unbounded),
            limit,
            crate::store::memory::INVENTORY_EXAMINED,
            |(t, id), _| (t == tenant).then(|| id.to_string()),
        );
        let next = resume
            .filter(|(t, _)| t == tenant)
            .map(|(_, id)| id.to_string());
        Ok(IdPage {
            ids: page.into_iter().map(|(_, id)| id).collect(),
            next,
        })
    }

    async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64> {
        let mut removed = 0;
        let mut after: Option<(Tenant, UserId)> = None;
        loop {
            let start = match after.take() {
                Some(key) => Bound::Excluded(key),
                None => Bound::Unbounded,
            };
            let (users, resume) = self.by_user.scan(
                (start, Bound::Unbounded),
                500,
                crate::store::memory::INVENTORY_EXAMINED,
                |(t, user), _| (t == tenant).then(|| user.clone()),
            );
            for (_, user) in users {
                removed += self.prune(tenant, &user);
            }
            match resume {
                Some(key) if key.0 <= *tenant => after = Some(key),
                _ => return Ok(removed),
            }
        }
    }
}

impl Weigh for super::model::SessionId {
    fn weight(&self) -> usize {
        self.as_str().len() + 24
    }
}

impl Weigh for super::model::UserId {
    fn weight(&self) -> usize {
        self.as_str().len() + 24
    }
}
