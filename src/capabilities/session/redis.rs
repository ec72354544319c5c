//! Sessions on Redis. A session is a hash (`user_id`, `workspace_id`, `data` and `context` as
//! JSON text, `created_at`, `last_activity_at`, `expires_at` in Unix ms, `ttl`, `version`)
//! whose key expires with the session; each user has an index of their sessions, a sorted set
//! kept in listing order (`scripts/session_index.lua`). Every call is one round trip: `HGETALL`
//! for a plain read, otherwise one Lua script that checks the session is live and writes in
//! the same atomic step (see `scripts/session_*.lua`). Listing a page of a user's sessions and
//! signing them out everywhere run one script per shard, at once. Key layout and its Cluster
//! trade-off: `keys::Keys::session`.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::store::redis::{RedisPool, script::Script};
use crate::{
    capabilities::session::{
        model::{
            ListingPlace, Session, SessionChange, SessionId, SessionPage, SessionRules, UserId,
            now_ms,
        },
        port::{SessionStore, SessionUpdate},
    },
    domain::ids::Tenant,
    store::{IdPage, StoreError, StoreResult},
};

pub struct RedisSessions {
    redis: RedisPool,
    create: Script,
    update: Script,
    rotate: Script,
    delete: Script,
    list: Script,
    delete_user: Script,
    cleanup: Script,
}

impl RedisSessions {
    pub fn new(redis: RedisPool) -> Self {
        Self {
            redis,
            create: indexed("session_create", include_str!("scripts/session_create.lua")),
            update: Script::new(
                "session_update",
                concat!(
                    include_str!("scripts/session_merge.lua"),
                    include_str!("scripts/session_update.lua")
                ),
            ),
            rotate: indexed("session_rotate", include_str!("scripts/session_rotate.lua")),
            delete: indexed("session_delete", include_str!("scripts/session_delete.lua")),
            list: indexed("session_list", include_str!("scripts/session_list.lua")),
            delete_user: indexed(
                "session_delete_user",
                include_str!("scripts/session_delete_user.lua"),
            ),
            cleanup: indexed(
                "session_cleanup",
                include_str!("scripts/session_cleanup.lua"),
            ),
        }
    }
}

/// A script that touches a user's index, with the index's helpers prepended.
fn indexed(name: &'static str, body: &str) -> Script {
    Script::new(
        name,
        &[include_str!("scripts/session_index.lua"), body].concat(),
    )
}

fn to_json(map: &impl serde::Serialize) -> String {
    serde_json::to_string(map).expect("a JSON map serialises")
}

/// The hash fields of a session, as `session_create.lua` stores them.
fn fields(session: &Session) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("user_id", session.user_id.to_string()),
        ("data", to_json(&session.data)),
        ("context", to_json(&session.context)),
        ("created_at", session.created_at_ms.to_string()),
        ("last_activity_at", session.last_activity_at_ms.to_string()),
        ("expires_at", session.expires_at_ms.to_string()),
        ("ttl", session.ttl_seconds.to_string()),
        ("version", session.version.to_string()),
    ];
    if let Some(workspace) = &session.workspace_id {
        out.push(("workspace_id", workspace.to_string()));
    }
    out
}

/// A session from `HGETALL`'s field/value pairs.
fn from_pairs(id: SessionId, pairs: &[String]) -> StoreResult<Session> {
    let map: HashMap<&str, &str> = pairs
        .chunks_exact(2)
        .map(|pair| (pair[0].as_str(), pair[1].as_str()))
        .collect();
    let bad = |what: &str| StoreError::Internal(format!("session hash: bad or missing {what}"));
    let field = |name: &'static str| map.get(name).copied().ok_or_else(|| bad(name));
    let number = |name: &'static str| field(name)?.parse::<i64>().map_err(|_| bad(name));
    let object = |name: &'static str| {
        serde_json::from_str::<Map<String, Value>>(field(name)?).map_err(|_| bad(name))
    };
    Ok(Session {
        id,
        user_id: UserId::parse(field("user_id")?).map_err(|_| bad("user_id"))?,
        workspace_id: map
            .get("workspace_id")
            .map(|w| UserId::parse(*w).map_err(|_| bad("workspace_id")))
            .transpose()?,
        data: object("data")?,
        context: serde_json::from_str::<Option<Map<String, Value>>>(field("context")?)
            .map_err(|_| bad("context"))?,
        created_at_ms: number("created_at")?,
        last_activity_at_ms: number("last_activity_at")?,
        expires_at_ms: number("expires_at")?,
        ttl_seconds: number("ttl")? as u64,
        version: number("version")? as u64,
    })
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn create(
        &self,
        tenant: &Tenant,
        session: &Session,
        rules: SessionRules,
    ) -> StoreResult<()> {
        let keys = self.redis.keys();
        let now = now_ms();
        let mut invocation = self.create.prepare_invoke();
        invocation
            .key(keys.session(tenant, &session.id))
            .key(keys.session_user(tenant, keys.session_shard(&session.id), &session.user_id))
            .arg((session.expires_at_ms - now).max(1))
            .arg((session.deadline_cap_ms(rules) - now).max(1))
            .arg(session.id.as_str())
            .arg(keys.session_prefix(tenant, keys.session_shard(&session.id)))
            .arg(session.created_at_ms);
        for (name, value) in fields(session) {
            invocation.arg(name).arg(value);
        }
        let _: i64 = self.redis.script(&invocation).await?;
        Ok(())
    }

    async fn get(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        rules: SessionRules,
    ) -> StoreResult<Option<Session>> {
        if rules.rolling {
            // The renewal needs the stored TTL and creation time: read and renew in one script.
            return match self
                .run_update(tenant, id, "touch", None, ["", ""], rules)
                .await?
            {
                SessionUpdate::Updated(session) => Ok(Some(session)),
                _ => Ok(None),
            };
        }
        let key = self.redis.keys().session(tenant, id);
        let pairs: Vec<String> = self.redis.query(redis::cmd("HGETALL").arg(key)).await?;
        if pairs.is_empty() {
            return Ok(None);
        }
        from_pairs(id.clone(), &pairs).map(Some)
    }

    async fn update(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        change: &SessionChange,
        if_match: Option<u64>,
        rules: SessionRules,
    ) -> StoreResult<SessionUpdate> {
        let patch = |m: &Option<Map<String, Value>>| m.as_ref().map(to_json).unwrap_or_default();
        let (op, args) = match change {
            SessionChange::Patch { data, context } => ("patch", [patch(data), patch(context)]),
            SessionChange::ReplaceContext(context) => {
                ("context", [to_json(&context), String::new()])
            }
            SessionChange::ClearContext => ("context", ["null".to_owned(), String::new()]),
            SessionChange::Extend(ttl) => ("extend", [ttl.seconds().to_string(), String::new()]),
        };
        let [first, second] = &args;
        self.run_update(tenant, id, op, if_match, [first, second], rules)
            .await
    }

    async fn rotate(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        new_id: &SessionId,
        _rules: SessionRules,
    ) -> StoreResult<Option<Session>> {
        let keys = self.redis.keys();
        if keys.session_shard(id) != keys.session_shard(new_id) {
            return Err(StoreError::Internal(
                "a rotated session's new id must come from SessionId::random_beside".into(),
            ));
        }
        let mut invocation = self.rotate.prepare_invoke();
        invocation
            .key(keys.session(tenant, id))
            .key(keys.session(tenant, new_id))
            .arg(keys.session_user_prefix(tenant, keys.session_shard(id)))
            .arg(id.as_str())
            .arg(new_id.as_str())
            .arg(now_ms())
            .arg(keys.session_prefix(tenant, keys.session_shard(id)));
        let pairs: Vec<String> = self.redis.script(&invocation).await?;
        if pairs.is_empty() {
            return Ok(None);
        }
        from_pairs(new_id.clone(), &pairs).map(Some)
    }

    async fn delete(&self, tenant: &Tenant, id: &SessionId) -> StoreResult<bool> {
        let keys = self.redis.keys();
        let mut invocation = self.delete.prepare_invoke();
        invocation
            .key(keys.session(tenant, id))
            .arg(keys.session_user_prefix(tenant, keys.session_shard(id)))
            .arg(id.as_str())
            .arg(keys.session_prefix(tenant, keys.session_shard(id)));
        let deleted: i64 = self.redis.script(&invocation).await?;
        Ok(deleted == 1)
    }

    async fn list_for_user(
        &self,
        tenant: &Tenant,
        user: &UserId,
        after: Option<&ListingPlace>,
        limit: usize,
    ) -> StoreResult<SessionPage> {
        let keys = self.redis.keys();
        let pages = self
            .redis
            .per_shard(|shard| async move {
                let mut invocation = self.list.prepare_invoke();
                invocation
                    .key(keys.session_user(tenant, shard, user))
                    .arg(keys.session_prefix(tenant, shard));
                match after {
                    Some(place) => invocation.arg(place.created_at_ms).arg(place.id.as_str()),
                    None => invocation.arg("").arg(""),
                };
                invocation.arg(limit);
                self.redis
                    .script::<(u64, Vec<Vec<String>>)>(&invocation)
                    .await
            })
            .await?;
        // Each shard's first `limit` after `after`: the merged first `limit` are the page, and
        // there is more if any shard had more or more than `limit` came back.
        let mut more = pages.iter().any(|(more, _)| *more == 1);
        let mut sessions = pages
            .into_iter()
            .flat_map(|(_, records)| records)
            .map(|record| {
                let (id, pairs) = record
                    .split_first()
                    .ok_or_else(|| StoreError::Internal("empty session record".into()))?;
                let id = SessionId::parse(id.as_str())
                    .map_err(|_| StoreError::Internal(format!("bad session id {id:?} in index")))?;
                from_pairs(id, pairs)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        sessions.sort_by_cached_key(Session::place);
        if sessions.len() > limit {
            sessions.truncate(limit);
            more = true;
        }
        Ok(SessionPage { sessions, more })
    }

    async fn delete_for_user(&self, tenant: &Tenant, user: &UserId) -> StoreResult<u64> {
        let keys = self.redis.keys();
        let deleted = self
            .redis
            .per_shard(|shard| async move {
                let mut invocation = self.delete_user.prepare_invoke();
                invocation
                    .key(keys.session_user(tenant, shard, user))
                    .arg(keys.session_prefix(tenant, shard));
                self.redis.script::<u64>(&invocation).await
            })
            .await?;
        Ok(deleted.into_iter().sum())
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        // `{<shard tag>}:<id>` after the tenant's prefix; user indexes are `{...}:user:<id>`.
        let prefix = self.redis.keys().sessions(tenant);
        crate::store::redis::scan_ids(&self.redis, &prefix, cursor, limit, |rest| {
            let (_, id) = rest.strip_prefix('{')?.split_once("}:")?;
            (!id.starts_with("user:")).then(|| id.to_string())
        })
        .await
    }

    async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64> {
        let sessions = self.redis.keys().sessions(tenant);
        let mut removed = 0;
        let mut cursor: Option<String> = None;
        loop {
            // Each user index found, as (its key, its shard's session prefix).
            let page = crate::store::redis::scan_ids(
                &self.redis,
                &sessions,
                cursor.as_deref(),
                500,
                |rest| {
                    let (tag, user) = rest.strip_prefix('{')?.split_once("}:user:")?;
                    Some(format!("{tag}\n{user}"))
                },
            )
            .await?;
            for found in page.ids {
                let Some((tag, user)) = found.split_once('\n') else {
                    continue;
                };
                let shard_prefix = format!("{sessions}{{{tag}}}:");
                let mut invocation = self.cleanup.prepare_invoke();
                invocation
                    .key(format!("{shard_prefix}user:{user}"))
                    .arg(shard_prefix.as_str());
                let n: u64 = self.redis.script(&invocation).await?;
                removed += n;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(removed),
            }
        }
    }
}

impl RedisSessions {
    /// Runs `session_update.lua`; `args` are its ARGV[6] and ARGV[7].
    async fn run_update(
        &self,
        tenant: &Tenant,
        id: &SessionId,
        op: &str,
        if_match: Option<u64>,
        args: [&str; 2],
        rules: SessionRules,
    ) -> StoreResult<SessionUpdate> {
        let keys = self.redis.keys();
        let mut invocation = self.update.prepare_invoke();
        invocation
            .key(keys.session(tenant, id))
            .arg(op)
            .arg(now_ms())
            .arg(if rules.rolling { "1" } else { "0" })
            .arg(rules.max_lifetime_ms)
            .arg(if_match.map(|v| v.to_string()).unwrap_or_default())
            .arg(args[0])
            .arg(args[1])
            .arg(keys.session_user_prefix(tenant, keys.session_shard(id)))
            .arg(rules.max_bytes);
        let reply: Vec<String> = self.redis.script(&invocation).await?;
        match reply.split_first() {
            Some((status, pairs)) if status == "ok" => {
                from_pairs(id.clone(), pairs).map(SessionUpdate::Updated)
            }
            Some((status, _)) if status == "missing" => Ok(SessionUpdate::Missing),
            Some((status, [size])) if status == "too_large" => Ok(SessionUpdate::TooLarge {
                size: size
                    .parse()
                    .map_err(|_| StoreError::Internal(format!("bad size {size:?}")))?,
            }),
            Some((status, [version])) if status == "stale" => Ok(SessionUpdate::Stale {
                current_version: version
                    .parse()
                    .map_err(|_| StoreError::Internal(format!("bad version {version:?}")))?,
            }),
            _ => Err(StoreError::Internal(format!(
                "unexpected session_update reply {reply:?}"
            ))),
        }
    }
}

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
    /// A session's shard: its id's first hex digit (uniform: the ids are random UUIDs), which
    /// a rotation keeps (`SessionId::random_beside`), modulo `shards`.
    pub fn session_shard(&self, id: &SessionId) -> u16 {
        id.group() % self.shards
    }

    /// The literal start of every session key of a tenant.
    pub fn sessions(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:session:", self.prefix)
    }

    /// A session hash: `{prefix}:{tenant}:session:{<shard tag>}:<session_id>`, in the shard
    /// of its id (`session_shard`).
    ///
    /// Reads and writes by session id do not know the user, yet delete and rotate must update
    /// the user's index in the same atomic step: so each shard keeps its own index per user
    /// (`session_user`), under the shard's hash tag, and those scripts build the index's name
    /// from `session_user_prefix`. Listing a user's sessions or signing them out everywhere
    /// runs one script per shard (each atomic for its shard) and merges. A rotated session's
    /// new id is drawn in the old one's shard (`SessionId::random_beside`).
    pub fn session(&self, tenant: &Tenant, id: &SessionId) -> String {
        format!(
            "{}{id}",
            self.session_prefix(tenant, self.session_shard(id))
        )
    }

    /// The literal start of every session hash of a shard.
    pub fn session_prefix(&self, tenant: &Tenant, shard: u16) -> String {
        format!("{}{{{}}}:", self.sessions(tenant), self.tag(tenant, shard))
    }

    /// A user's index in one shard, a sorted set of their sessions there in listing order
    /// (`scripts/session_index.lua`):
    /// `{prefix}:{tenant}:session:{<shard tag>}:user:<user_id>`. Session ids are UUIDs, so no
    /// session hash can start with `user:`.
    pub fn session_user(&self, tenant: &Tenant, shard: u16, user: &UserId) -> String {
        format!("{}{user}", self.session_user_prefix(tenant, shard))
    }

    /// The literal start of every user index of a shard.
    pub fn session_user_prefix(&self, tenant: &Tenant, shard: u16) -> String {
        format!("{}user:", self.session_prefix(tenant, shard))
    }
}
