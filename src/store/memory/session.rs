//! Sessions on the memory engine. The authoritative entry is one per user: `(tenant, user)` →
//! that user's sessions, so every operation on a session and every operation on "all of a
//! user's sessions" runs under the same engine lock, and a rotation, a delete and a sign-out
//! everywhere are serialised against each other. A second engine maps a session id to its user;
//! it is only a hint for finding the entry (a stale pointer leads to an entry without the
//! session, which reads as absent), so it may lag behind without ever reviving a session.

use std::{collections::BTreeMap, ops::Bound, time::Duration};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh, json_weight},
};
use crate::{
    domain::{
        ids::Tenant,
        session::{
            Session, SessionChange, SessionId, SessionRules, UserId, now_ms, sort_for_listing,
        },
    },
    store::{IdPage, SessionStore, SessionUpdate, StoreResult},
};

/// A session and the monotonic instant it expires at.
#[derive(Clone)]
struct Live {
    session: Session,
    deadline: Instant,
}

type UserSessions = BTreeMap<SessionId, Live>;

impl Weigh for Live {
    fn weight(&self) -> usize {
        let session = &self.session;
        json_weight(&session.data)
            + json_weight(&session.context)
            + session.user_id.weight()
            + session.workspace_id.as_ref().map_or(0, Weigh::weight)
            + 96
    }
}

impl Weigh for UserSessions {
    fn weight(&self) -> usize {
        self.iter()
            .map(|(id, live)| id.weight() + live.weight() + 48)
            .sum()
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

    /// Runs `change` on the user's live sessions (expired ones already dropped) under the
    /// engine lock, then stores what is left with the entry expiring with its last session.
    fn with_user<R>(
        &self,
        tenant: &Tenant,
        user: &UserId,
        change: impl FnOnce(&mut UserSessions) -> R,
    ) -> R {
        self.by_user
            .update(&(tenant.clone(), user.clone()), |slot| {
                let now = Instant::now();
                let mut sessions = slot.take().map(|e| e.value).unwrap_or_default();
                sessions.retain(|_, live| live.deadline > now);
                let result = change(&mut sessions);
                *slot = sessions
                    .values()
                    .map(|live| live.deadline)
                    .max()
                    .map(|last| Entry {
                        value: sessions,
                        expires_at: Some(last),
                    });
                result
            })
    }

    /// Drops the user's expired sessions; returns how many.
    fn prune(&self, tenant: &Tenant, user: &UserId) -> u64 {
        self.by_user
            .update(&(tenant.clone(), user.clone()), |slot| {
                let Some(entry) = slot.as_mut() else {
                    return 0;
                };
                let now = Instant::now();
                let before = entry.value.len();
                entry.value.retain(|_, live| live.deadline > now);
                let dropped = before - entry.value.len();
                if entry.value.is_empty() {
                    *slot = None;
                }
                dropped as u64
            })
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
        self.with_user(tenant, &user, |sessions| {
            sessions.insert(session.id.clone(), live(session.clone()));
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
        Ok(self.with_user(tenant, &user, |sessions| {
            let entry = sessions.get_mut(id)?;
            if entry.session.touch(now_ms(), rules) {
                *entry = live(entry.session.clone());
            }
            Some(entry.session.clone())
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
        Ok(self.with_user(tenant, &user, |sessions| {
            let Some(entry) = sessions.get_mut(id) else {
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
            *entry = live(session.clone());
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
        let rotated = self.with_user(tenant, &user, |sessions| {
            let old = sessions.remove(id)?;
            let mut session = old.session;
            session.id = new_id.clone();
            session.last_activity_at_ms = now_ms();
            sessions.insert(
                new_id.clone(),
                Live {
                    session: session.clone(),
                    deadline: old.deadline,
                },
            );
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
        let existed = self.with_user(tenant, &user, |sessions| sessions.remove(id).is_some());
        self.unpoint(tenant, id);
        Ok(existed)
    }

    async fn list_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<Vec<Session>> {
        let mut sessions: Vec<Session> =
            self.by_user.read(&(tenant.clone(), user.clone()), |entry| {
                let now = Instant::now();
                entry
                    .map(|e| {
                        e.value
                            .values()
                            .filter(|live| live.deadline > now)
                            .map(|live| live.session.clone())
                            .collect()
                    })
                    .unwrap_or_default()
            });
        sort_for_listing(&mut sessions);
        Ok(sessions)
    }

    async fn delete_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<u64> {
        let removed = self.with_user(tenant, user, std::mem::take);
        for id in removed.keys() {
            self.unpoint(tenant, id);
        }
        Ok(removed.len() as u64)
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
            super::INVENTORY_EXAMINED,
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
                super::INVENTORY_EXAMINED,
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
