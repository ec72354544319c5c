//! Agent states on Redis.
//!
//! Layout, per shard of a tenant (`Keys::shards`: 16 on a Cluster, 1 on one server; a
//! thread's keys and its shard's indexes carry the shard's hash tag, see
//! `Keys::agent_state_shard`):
//! - `...:state:{id}` a hash: `context` and `metadata` (JSON text), `relevant`, `created`,
//!   `updated`, `expires` (ms), `version`, `ttl` (seconds);
//! - `...:messages:{id}` a list of messages, one JSON string each, oldest first: an append is
//!   an `RPUSH` that never rewrites the thread, and the last N are one `LRANGE -N -1`;
//! - `...:index:recent` (score: updated ms), `...:index:ids` (score 0, for exact lex paging)
//!   and `...:index:expiries` (score: expires ms).
//!
//! How the index stays true: every write script updates the thread's keys and the index sets
//! together, atomically, so a delete or replace can never leave a wrong entry. Expiry is the
//! one thing Redis does behind the scripts' back: a thread's keys vanish at their TTL while its
//! index entries stay. So `recent`, `list` and `cleanup_expired` first drop every entry whose
//! `expiries` score has passed, and `recent`/`list` also check each entry they return against
//! its state hash (dropping it if gone, e.g. evicted). Finally the index keys themselves expire
//! with the shard's longest-lived thread, so an index never outlives all its threads.
//!
//! `list`, `recent` and `cleanup_expired` run their script on every shard at once and merge
//! the answers.
//!
//! Every method is one round trip (a script by SHA, or a `MULTI` pipeline) except
//! `patch_context`: the merge patch is applied in Rust (Lua's cjson would turn `[]` into `{}`
//! and round large numbers), so it reads the context and writes the result with a
//! version-checked script, retrying when another write came in between.

mod keys;

use std::collections::HashMap;

use async_trait::async_trait;
use redis::Value;

use crate::store::redis::script::Script;

use crate::store::redis::RedisPool;
use crate::{
    capabilities::agent_state::{
        model::{
            AgentState, JsonObject, Message, NewAgentState, RecentState, Record, ThreadId, now_ms,
            patch_context,
        },
        port::{AgentStateStore, Appended, Replaced, ThreadPage},
    },
    domain::{ids::Tenant, ttl::Ttl},
    store::{Refusal, StoreError, StoreResult, Versioned},
};

/// How often `patch_context` re-reads and retries after losing a race to another write. Each
/// lost race means another write succeeded, so this only runs out under sustained contention
/// on one thread; the caller then gets `Versioned::Contended` (409) and nothing is written.
const PATCH_ATTEMPTS: usize = 64;

macro_rules! script {
    ($name:literal) => {
        Script::new(
            concat!("agent_state_", $name),
            concat!(
                include_str!("scripts/agent_state_common.lua"),
                include_str!(concat!("scripts/agent_state_", $name, ".lua"))
            ),
        )
    };
}

pub struct RedisAgentStates {
    redis: RedisPool,
    write: Script,
    update: Script,
    set_ttl: Script,
    delete: Script,
    recent: Script,
    list: Script,
    cleanup: Script,
    restore: Script,
}

impl RedisAgentStates {
    pub fn new(redis: RedisPool) -> Self {
        Self {
            redis,
            write: script!("write"),
            update: script!("update"),
            set_ttl: script!("set_ttl"),
            delete: script!("delete"),
            recent: script!("recent"),
            list: script!("list"),
            cleanup: script!("cleanup"),
            restore: script!("restore"),
        }
    }

    /// The five keys a per-thread script takes: state, messages, recent, ids, expiries.
    fn thread_keys(&self, tenant: &Tenant, thread: &ThreadId) -> [String; 5] {
        let keys = self.redis.keys();
        let [recent, ids, expiries] = keys.agent_state_indexes(tenant, keys.thread_shard(thread));
        [
            keys.agent_state(tenant, thread),
            keys.agent_state_messages(tenant, thread),
            recent,
            ids,
            expiries,
        ]
    }

    async fn write(
        &self,
        tenant: &Tenant,
        state: &NewAgentState,
        mode: &str,
        if_version: Option<u64>,
    ) -> StoreResult<Written> {
        let now = now_ms();
        let mut invocation = self.write.prepare_invoke();
        for key in self.thread_keys(tenant, &state.thread_id) {
            invocation.key(key);
        }
        invocation
            .arg(mode)
            .arg(if_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(now)
            .arg(state.ttl_seconds)
            .arg(state.thread_id.as_str())
            .arg(json_text(&state.context)?)
            .arg(json_text(&state.metadata)?)
            .arg(flag(state.is_relevant));
        for message in &state.messages {
            invocation.arg(json_text(message)?);
        }
        let reply: Vec<i64> = self.redis.script(&invocation).await?;
        match reply.as_slice() {
            [0] => Ok(Written::Exists),
            [-1] => Ok(Written::Stale),
            [1, version, created_ms, created] => {
                let record = Record {
                    context: state.context.clone(),
                    metadata: state.metadata.clone(),
                    is_relevant: state.is_relevant,
                    created_ms: *created_ms,
                    updated_ms: now,
                    expires_ms: now + state.ttl_seconds as i64 * 1000,
                    version: *version as u64,
                    ttl_seconds: state.ttl_seconds,
                };
                let count = state.messages.len() as u64;
                Ok(Written::Done(Replaced {
                    state: AgentState::from_record(
                        &state.thread_id,
                        record,
                        state.messages.clone(),
                        count,
                    ),
                    created: *created == 1,
                }))
            }
            _ => Err(unexpected("agent_state_write", &reply)),
        }
    }

    /// Runs the update script: `Ok(Err(outcome))` when nothing was written.
    async fn update(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        change: Change<'_>,
    ) -> StoreResult<Result<Vec<Value>, Refusal>> {
        let mut invocation = self.update.prepare_invoke();
        for key in self.thread_keys(tenant, thread) {
            invocation.key(key);
        }
        invocation
            .arg(change.if_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(now_ms())
            .arg(thread.as_str())
            .arg(change.context.unwrap_or_default())
            .arg(change.is_relevant.map(flag).unwrap_or(""))
            .arg(flag(change.return_state));
        for message in change.messages {
            invocation.arg(json_text(message)?);
        }
        let reply: Vec<Value> = self.redis.script(&invocation).await?;
        match reply.first() {
            Some(Value::Int(1)) => Ok(Ok(reply)),
            Some(Value::Int(0)) => Ok(Err(Refusal::Missing)),
            Some(Value::Int(-1)) => Ok(Err(Refusal::Stale)),
            _ => Err(unexpected("agent_state_update", &reply)),
        }
    }
}

/// What the write script did.
enum Written {
    Done(Replaced),
    /// `create` found a live thread.
    Exists,
    /// The expected version did not hold.
    Stale,
}

/// What one run of the update script changes.
#[derive(Default)]
struct Change<'a> {
    if_version: Option<u64>,
    messages: &'a [Message],
    context: Option<String>,
    is_relevant: Option<bool>,
    return_state: bool,
}

fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

fn json_text(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(e.to_string()))
}

fn unexpected(script: &str, reply: &impl std::fmt::Debug) -> StoreError {
    StoreError::Internal(format!("{script} answered {reply:?}"))
}

fn parse<T: redis::FromRedisValue>(value: Value) -> StoreResult<T> {
    redis::from_redis_value(value).map_err(|e| StoreError::Internal(e.to_string()))
}

/// A state hash as `HGETALL` returns it, decoded.
fn decode_record(fields: &HashMap<String, String>) -> StoreResult<Record> {
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| StoreError::Internal(format!("agent state hash lacks {name}")))
    };
    let number = |name: &str| -> StoreResult<i64> {
        field(name)?
            .parse()
            .map_err(|_| StoreError::Internal(format!("agent state field {name} is no number")))
    };
    let object = |name: &str| -> StoreResult<JsonObject> {
        serde_json::from_str(field(name)?).map_err(|e| StoreError::Internal(e.to_string()))
    };
    Ok(Record {
        context: object("context")?,
        metadata: object("metadata")?,
        is_relevant: field("relevant")? == "1",
        created_ms: number("created")?,
        updated_ms: number("updated")?,
        expires_ms: number("expires")?,
        version: number("version")? as u64,
        ttl_seconds: number("ttl")? as u64,
    })
}

fn decode_messages(raw: Vec<String>) -> StoreResult<Vec<Message>> {
    raw.iter()
        .map(|m| serde_json::from_str(m).map_err(|e| StoreError::Internal(e.to_string())))
        .collect()
}

#[async_trait]
impl AgentStateStore for RedisAgentStates {
    async fn create(
        &self,
        tenant: &Tenant,
        state: &NewAgentState,
    ) -> StoreResult<Option<AgentState>> {
        match self.write(tenant, state, "create", None).await? {
            Written::Done(replaced) => Ok(Some(replaced.state)),
            Written::Exists | Written::Stale => Ok(None),
        }
    }

    async fn get(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        last_messages: Option<u64>,
    ) -> StoreResult<Option<AgentState>> {
        let [state, messages, ..] = self.thread_keys(tenant, thread);
        // LRANGE 1 0 is empty; -N -1 the last N (N past the length means all).
        let (start, stop) = match last_messages {
            Some(0) => (1, 0),
            Some(n) => (-(n.min(i64::MAX as u64) as i64), -1),
            None => (0, -1),
        };
        let mut pipe = redis::pipe();
        pipe.atomic().hgetall(&state).llen(&messages).lrange(
            &messages,
            start as isize,
            stop as isize,
        );
        let (fields, count, raw): (HashMap<String, String>, u64, Vec<String>) =
            self.redis.pipeline(&pipe).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(AgentState::from_record(
            thread,
            decode_record(&fields)?,
            decode_messages(raw)?,
            count,
        )))
    }

    async fn exists(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool> {
        let key = self.redis.keys().agent_state(tenant, thread);
        let n: u64 = self.redis.query(redis::cmd("EXISTS").arg(key)).await?;
        Ok(n == 1)
    }

    async fn replace(
        &self,
        tenant: &Tenant,
        state: &NewAgentState,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<Replaced>> {
        Ok(
            match self.write(tenant, state, "replace", if_version).await? {
                Written::Done(replaced) => Versioned::Done(replaced),
                Written::Exists | Written::Stale => Versioned::Stale,
            },
        )
    }

    async fn delete(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<bool> {
        let mut invocation = self.delete.prepare_invoke();
        for key in self.thread_keys(tenant, thread) {
            invocation.key(key);
        }
        invocation.arg(now_ms()).arg(thread.as_str());
        let existed: u64 = self.redis.script(&invocation).await?;
        Ok(existed == 1)
    }

    async fn append(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        messages: &[Message],
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<Appended>> {
        let change = Change {
            if_version,
            messages,
            ..Change::default()
        };
        Ok(match self.update(tenant, thread, change).await? {
            Err(refusal) => refusal.into(),
            Ok(mut reply) => {
                let mut fields = reply.drain(1..3);
                let version = parse(fields.next().unwrap_or_default())?;
                let message_count = parse(fields.next().unwrap_or_default())?;
                Versioned::Done(Appended {
                    message_count,
                    version,
                })
            }
        })
    }

    async fn patch_context(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        patch: &JsonObject,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<AgentState>> {
        let state_key = self.redis.keys().agent_state(tenant, thread);
        for _ in 0..PATCH_ATTEMPTS {
            let (version, context): (Option<u64>, Option<String>) = self
                .redis
                .query(
                    redis::cmd("HMGET")
                        .arg(&state_key)
                        .arg("version")
                        .arg("context"),
                )
                .await?;
            let (Some(version), Some(context)) = (version, context) else {
                return Ok(Versioned::Missing);
            };
            if if_version.is_some_and(|expected| expected != version) {
                return Ok(Versioned::Stale);
            }
            let context: JsonObject =
                serde_json::from_str(&context).map_err(|e| StoreError::Internal(e.to_string()))?;
            let change = Change {
                if_version: Some(version),
                context: Some(json_text(&patch_context(&context, patch))?),
                return_state: true,
                ..Change::default()
            };
            match self.update(tenant, thread, change).await? {
                Err(Refusal::Stale) => continue,
                Err(Refusal::Missing) => return Ok(Versioned::Missing),
                Ok(mut reply) => {
                    let mut parts = reply.drain(2..5);
                    let count: u64 = parse(parts.next().unwrap_or_default())?;
                    let fields: HashMap<String, String> = parse(parts.next().unwrap_or_default())?;
                    let raw: Vec<String> = parse(parts.next().unwrap_or_default())?;
                    return Ok(Versioned::Done(AgentState::from_record(
                        thread,
                        decode_record(&fields)?,
                        decode_messages(raw)?,
                        count,
                    )));
                }
            }
        }
        Ok(Versioned::Contended)
    }

    async fn set_relevance(
        &self,
        tenant: &Tenant,
        thread: &ThreadId,
        is_relevant: bool,
        if_version: Option<u64>,
    ) -> StoreResult<Versioned<u64>> {
        let change = Change {
            if_version,
            is_relevant: Some(is_relevant),
            ..Change::default()
        };
        Ok(match self.update(tenant, thread, change).await? {
            Err(refusal) => refusal.into(),
            Ok(mut reply) => Versioned::Done(parse(reply.swap_remove(1))?),
        })
    }

    async fn list(
        &self,
        tenant: &Tenant,
        after: Option<&ThreadId>,
        limit: usize,
    ) -> StoreResult<ThreadPage> {
        let keys = self.redis.keys();
        let now = now_ms();
        let pages = self
            .redis
            .per_shard(|shard| async move {
                let mut invocation = self.list.prepare_invoke();
                for key in keys.agent_state_indexes(tenant, shard) {
                    invocation.key(key);
                }
                invocation
                    .arg(now)
                    .arg(after.map(ThreadId::as_str).unwrap_or(""))
                    .arg(limit)
                    .arg(keys.agent_state_prefix(tenant, shard));
                self.redis.script::<(u64, Vec<String>)>(&invocation).await
            })
            .await?;
        // Each shard's first `limit` ids after `after`: the merged first `limit` are the page,
        // and there is more if any shard had more or more than `limit` came back.
        let mut more = pages.iter().any(|(more, _)| *more == 1);
        let mut ids: Vec<String> = pages.into_iter().flat_map(|(_, ids)| ids).collect();
        ids.sort_unstable();
        if ids.len() > limit {
            ids.truncate(limit);
            more = true;
        }
        Ok(ThreadPage {
            thread_ids: ids
                .into_iter()
                .map(|id| ThreadId::parse(id).map_err(|e| StoreError::Internal(e.to_string())))
                .collect::<StoreResult<_>>()?,
            more,
        })
    }

    async fn recent(&self, tenant: &Tenant, limit: usize) -> StoreResult<Vec<RecentState>> {
        let keys = self.redis.keys();
        let now = now_ms();
        let shards = self
            .redis
            .per_shard(|shard| async move {
                let mut invocation = self.recent.prepare_invoke();
                for key in keys.agent_state_indexes(tenant, shard) {
                    invocation.key(key);
                }
                invocation
                    .arg(now)
                    .arg(limit)
                    .arg(keys.agent_state_prefix(tenant, shard))
                    .arg(keys.agent_state_messages_prefix(tenant, shard));
                self.redis
                    .script::<Vec<(String, i64, u64, String)>>(&invocation)
                    .await
            })
            .await?;
        let mut rows: Vec<_> = shards.into_iter().flatten().collect();
        // Newest first, equal times by id from last to first: the order one sorted set's
        // ZREVRANGE gives (and the memory adapter's), whatever the shards.
        rows.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
        rows.truncate(limit);
        Ok(rows
            .into_iter()
            .map(|(id, updated, count, relevant)| {
                RecentState::new(&id, updated, count, relevant == "1")
            })
            .collect())
    }

    async fn ttl(&self, tenant: &Tenant, thread: &ThreadId) -> StoreResult<Option<u64>> {
        let key = self.redis.keys().agent_state(tenant, thread);
        let ms: i64 = self.redis.query(redis::cmd("PTTL").arg(key)).await?;
        Ok((ms >= 0).then(|| (ms.max(1) as u64).div_ceil(1000)))
    }

    async fn set_ttl(&self, tenant: &Tenant, thread: &ThreadId, ttl: Ttl) -> StoreResult<bool> {
        let mut invocation = self.set_ttl.prepare_invoke();
        for key in self.thread_keys(tenant, thread) {
            invocation.key(key);
        }
        invocation
            .arg(now_ms())
            .arg(ttl.seconds())
            .arg(thread.as_str());
        let set: u64 = self.redis.script(&invocation).await?;
        Ok(set == 1)
    }

    async fn cleanup_expired(&self, tenant: &Tenant) -> StoreResult<u64> {
        let now = now_ms();
        let removed = self
            .redis
            .per_shard(|shard| async move {
                let mut invocation = self.cleanup.prepare_invoke();
                for key in self.redis.keys().agent_state_indexes(tenant, shard) {
                    invocation.key(key);
                }
                invocation.arg(now);
                self.redis.script::<u64>(&invocation).await
            })
            .await?;
        Ok(removed.into_iter().sum())
    }

    async fn restore(
        &self,
        tenant: &Tenant,
        state: &AgentState,
        ttl_seconds: u64,
        only_if_absent: bool,
    ) -> StoreResult<bool> {
        let thread = ThreadId::parse(state.thread_id.as_str())
            .map_err(|e| StoreError::Internal(format!("restore: {e}")))?;
        let record = crate::capabilities::agent_state::model::Record::restored(state, ttl_seconds);
        let mut invocation = self.restore.prepare_invoke();
        for key in self.thread_keys(tenant, &thread) {
            invocation.key(key);
        }
        invocation
            .arg(flag(only_if_absent))
            .arg(now_ms())
            .arg(record.created_ms)
            .arg(record.updated_ms)
            .arg(record.expires_ms)
            .arg(record.version)
            .arg(ttl_seconds)
            .arg(thread.as_str())
            .arg(json_text(&record.context)?)
            .arg(json_text(&record.metadata)?)
            .arg(flag(record.is_relevant));
        for message in &state.messages {
            invocation.arg(json_text(message)?);
        }
        let written: u8 = self.redis.script(&invocation).await?;
        Ok(written == 1)
    }
}
