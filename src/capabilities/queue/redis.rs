//! Job queues on Redis: per queue five sorted sets (ready, delayed, leased, dead, done), a
//! hash per job and a `meta` hash for the enqueue sequence, all under one hash tag per queue
//! (`keys::queue`). Each method is one `EVALSHA` of a `queue_*.lua` script, which first
//! promotes due delays and expired leases (`queue_common.lua`) at Redis's `TIME`: no reaper.
//! An enqueue publishes `<tenant>/<queue>` on `keys::queue_ready_channel`; one subscriber per
//! instance (`listen`) wakes that instance's long polls.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::store::redis::{RedisPool, listen::listen, script::Script};
use crate::{
    capabilities::queue::{
        model::{Backoff, BackoffKind, Counts, Job, JobId, JobState, Leased, NewJob, QueueName},
        port::{Leases, Nack, QueueStore},
    },
    domain::ids::Tenant,
    store::{
        IdPage, StoreError, StoreResult,
        signals::{Signals, signal_key},
    },
};

macro_rules! script {
    ($name:literal) => {
        Script::new(
            concat!("queue_", $name),
            concat!(
                include_str!("scripts/queue_common.lua"),
                include_str!(concat!("scripts/queue_", $name, ".lua"))
            ),
        )
    };
}

pub struct RedisQueues {
    redis: RedisPool,
    signals: Arc<Signals>,
    enqueue: Script,
    lease: Script,
    ack: Script,
    nack: Script,
    heartbeat: Script,
    get: Script,
    counts: Script,
    dead: Script,
    redrive: Script,
    purge: Script,
    restore: Script,
}

impl RedisQueues {
    /// Must be called inside a tokio runtime (it spawns the enqueue subscriber).
    pub fn new(redis: RedisPool) -> Self {
        let signals = listen(&redis, redis.keys().queue_ready_channel());
        Self {
            redis,
            signals,
            enqueue: script!("enqueue"),
            lease: script!("lease"),
            ack: script!("ack"),
            nack: script!("nack"),
            heartbeat: script!("heartbeat"),
            get: script!("get"),
            counts: script!("counts"),
            dead: script!("dead"),
            redrive: script!("redrive"),
            purge: script!("purge"),
            restore: script!("restore"),
        }
    }

    /// A call of `script` with the queue's keys.
    fn call<'a>(
        &self,
        script: &'a Script,
        tenant: &Tenant,
        queue: &QueueName,
    ) -> crate::store::redis::script::Invocation<'a> {
        let mut call = script.prepare_invoke();
        for key in self.redis.keys().queue(tenant, queue) {
            call.key(key);
        }
        call
    }
}

fn unexpected(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("queue: {what}"))
}

fn number(text: &str) -> StoreResult<u64> {
    text.parse()
        .map_err(|_| unexpected(format!("not a number: {text:?}")))
}

fn kind_name(kind: BackoffKind) -> &'static str {
    match kind {
        BackoffKind::Fixed => "fixed",
        BackoffKind::Exponential => "exponential",
    }
}

fn state(text: &str) -> StoreResult<JobState> {
    Ok(match text {
        "delayed" => JobState::Delayed,
        "ready" => JobState::Ready,
        "leased" => JobState::Leased,
        "done" => JobState::Done,
        "dead" => JobState::Dead,
        other => return Err(unexpected(format!("unknown state {other:?}"))),
    })
}

/// A job from its hash's fields (HGETALL), with its id.
fn job(id: &str, fields: &[String]) -> StoreResult<Job> {
    let field = |name: &str| {
        fields
            .chunks_exact(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str())
    };
    let required = |name: &str| field(name).ok_or_else(|| unexpected(format!("no {name}")));
    Ok(Job {
        id: id.to_string(),
        payload: required("payload")?.to_string(),
        priority: u8::try_from(number(required("priority")?)?).map_err(unexpected)?,
        state: state(required("state")?)?,
        attempt: u32::try_from(number(required("attempt")?)?).map_err(unexpected)?,
        max_attempts: u32::try_from(number(required("max")?)?).map_err(unexpected)?,
        backoff: Backoff {
            kind: if required("bkind")? == "fixed" {
                BackoffKind::Fixed
            } else {
                BackoffKind::Exponential
            },
            base_ms: number(required("bbase")?)?,
            max_ms: number(required("bmax")?)?,
        },
        enqueued_at_us: number(required("enq")?)?,
        at_us: number(required("at")?)?,
        lease_token: field("token").map(str::to_string),
        last_error: field("error").map(str::to_string),
        seq: number(required("seq")?)?,
    })
}

#[async_trait]
impl QueueStore for RedisQueues {
    async fn enqueue(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        new: &NewJob,
        id: &JobId,
    ) -> StoreResult<(String, bool)> {
        let mut call = self.call(&self.enqueue, tenant, queue);
        call.arg(id.as_str())
            .arg(&new.payload)
            .arg(new.priority)
            .arg(new.delay_ms * 1000)
            .arg(new.max_attempts)
            .arg(kind_name(new.backoff.kind))
            .arg(new.backoff.base_ms)
            .arg(new.backoff.max_ms)
            .arg(new.dedup_key.as_deref().unwrap_or(""))
            .arg(new.dedup_window_ms.max(1))
            .arg(self.redis.keys().queue_ready_channel())
            .arg(signal_key(tenant, queue));
        let (created, id): (i64, String) = self.redis.script(&call).await?;
        Ok((id, created == 1))
    }

    async fn lease(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        tokens: &[String],
        visibility_ms: u64,
    ) -> StoreResult<Leases> {
        let mut call = self.call(&self.lease, tenant, queue);
        call.arg(visibility_ms * 1000);
        for token in tokens {
            call.arg(token);
        }
        let reply: Vec<String> = self.redis.script(&call).await?;
        let (first, rest) = reply
            .split_first()
            .ok_or_else(|| unexpected("empty lease reply"))?;
        let next_change_in_us = first
            .parse::<i64>()
            .ok()
            .and_then(|n| u64::try_from(n).ok());
        let jobs = rest
            .chunks_exact(5)
            .map(|j| {
                Ok(Leased {
                    id: j[0].clone(),
                    payload: j[1].clone(),
                    attempt: u32::try_from(number(&j[2])?).map_err(unexpected)?,
                    lease_token: j[3].clone(),
                    lease_expires_us: number(&j[4])?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Leases {
            jobs,
            next_change_in_us,
        })
    }

    async fn ack(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        token: &str,
    ) -> StoreResult<bool> {
        let mut call = self.call(&self.ack, tenant, queue);
        call.arg(id.as_str()).arg(token);
        let acked: i64 = self.redis.script(&call).await?;
        Ok(acked == 1)
    }

    async fn nack(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        nack: &Nack<'_>,
    ) -> StoreResult<Option<JobState>> {
        let mut call = self.call(&self.nack, tenant, queue);
        call.arg(id.as_str())
            .arg(nack.token)
            .arg(nack.delay_ms.map(|d| d.to_string()).unwrap_or_default())
            .arg(nack.error.unwrap_or(""));
        let after: String = self.redis.script(&call).await?;
        if after.is_empty() {
            Ok(None)
        } else {
            state(&after).map(Some)
        }
    }

    async fn heartbeat(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
        token: &str,
        visibility_ms: u64,
    ) -> StoreResult<Option<u64>> {
        let mut call = self.call(&self.heartbeat, tenant, queue);
        call.arg(id.as_str()).arg(token).arg(visibility_ms * 1000);
        let until: String = self.redis.script(&call).await?;
        if until.is_empty() {
            Ok(None)
        } else {
            number(&until).map(Some)
        }
    }

    async fn get(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        id: &JobId,
    ) -> StoreResult<Option<Job>> {
        let mut call = self.call(&self.get, tenant, queue);
        call.arg(id.as_str());
        let fields: Vec<String> = self.redis.script(&call).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        job(id.as_str(), &fields).map(Some)
    }

    async fn counts(&self, tenant: &Tenant, queue: &QueueName) -> StoreResult<Counts> {
        let call = self.call(&self.counts, tenant, queue);
        let (delayed, ready, leased, done, dead): (u64, u64, u64, u64, u64) =
            self.redis.script(&call).await?;
        Ok(Counts {
            delayed,
            ready,
            leased,
            done,
            dead,
        })
    }

    async fn dead(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        limit: usize,
    ) -> StoreResult<Vec<Job>> {
        let mut call = self.call(&self.dead, tenant, queue);
        call.arg(limit.max(1));
        let jobs: Vec<Vec<String>> = self.redis.script(&call).await?;
        jobs.iter()
            .map(|fields| {
                let id = fields
                    .chunks_exact(2)
                    .find(|p| p[0] == "id")
                    .map(|p| p[1].clone());
                job(&id.unwrap_or_default(), fields)
            })
            .collect()
    }

    async fn redrive(&self, tenant: &Tenant, queue: &QueueName, id: &JobId) -> StoreResult<bool> {
        let mut call = self.call(&self.redrive, tenant, queue);
        call.arg(id.as_str())
            .arg(self.redis.keys().queue_ready_channel())
            .arg(signal_key(tenant, queue));
        let redriven: i64 = self.redis.script(&call).await?;
        Ok(redriven == 1)
    }

    async fn purge(&self, tenant: &Tenant, queue: &QueueName) -> StoreResult<u64> {
        let call = self.call(&self.purge, tenant, queue);
        let n: u64 = self.redis.script(&call).await?;
        Ok(n)
    }

    fn enqueue_signal(&self, tenant: &Tenant, queue: &QueueName) -> Arc<Notify> {
        self.signals.watch(&signal_key(tenant, queue))
    }

    async fn inventory(
        &self,
        tenant: &Tenant,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<IdPage> {
        // Job hashes are `<queue>}:job:<id>` after the tenant's prefix; done jobs are listed
        // too, and left out when read.
        let prefix = format!("{}{{{tenant}/", self.redis.keys().queues(tenant));
        crate::store::redis::scan_ids(&self.redis, &prefix, cursor, limit, |rest| {
            let (queue, id) = rest.split_once("}:job:")?;
            Some(format!("{queue}/{id}"))
        })
        .await
    }

    async fn restore(
        &self,
        tenant: &Tenant,
        queue: &QueueName,
        job: &Job,
        only_if_absent: bool,
    ) -> StoreResult<bool> {
        let mut call = self.call(&self.restore, tenant, queue);
        let kind = match job.backoff.kind {
            BackoffKind::Fixed => "fixed",
            BackoffKind::Exponential => "exponential",
        };
        let state = match job.state {
            JobState::Delayed => "delayed",
            JobState::Ready => "ready",
            JobState::Leased => "leased",
            JobState::Done => "done",
            JobState::Dead => "dead",
        };
        call.arg(job.id.as_str())
            .arg(if only_if_absent { "1" } else { "0" })
            .arg(job.payload.as_str())
            .arg(job.priority)
            .arg(job.attempt)
            .arg(job.max_attempts)
            .arg(kind)
            .arg(job.backoff.base_ms)
            .arg(job.backoff.max_ms)
            .arg(job.enqueued_at_us)
            .arg(job.seq)
            .arg(state)
            .arg(job.at_us)
            .arg(job.last_error.as_deref().unwrap_or(""));
        let wrote: u8 = self.redis.script(&call).await?;
        if wrote == 1 {
            self.signals.notify(&signal_key(tenant, queue));
        }
        Ok(wrote == 1)
    }
}

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
    /// A queue's keys, in the order its scripts take them: its base (jobs are
    /// `<base>:job:<id>`, dedup keys `<base>:dedup:<key>`), then the sorted sets ready,
    /// delayed, leased, dead and done, and `meta`. All share the queue's hash tag
    /// `{<tenant>/<queue>}`, so one script updates them together and queues spread over a
    /// Cluster's slots.
    pub fn queue(&self, tenant: &Tenant, queue: &QueueName) -> [String; 7] {
        let base = format!("{}{{{tenant}/{queue}}}", self.queues(tenant));
        [
            "", ":ready", ":delayed", ":leased", ":dead", ":done", ":meta",
        ]
        .map(|suffix| format!("{base}{suffix}"))
    }

    /// The literal start of every queue key of a tenant.
    pub fn queues(&self, tenant: &Tenant) -> String {
        format!("{}:{tenant}:queue:", self.prefix)
    }

    /// The channel every enqueue is published on, as `<tenant>/<queue>`.
    pub fn queue_ready_channel(&self) -> String {
        format!("{}:queue_ready", self.prefix)
    }
}
