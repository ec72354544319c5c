//! Topics on Redis Streams: a stream per topic (`keys::topic`), appended by `topic_publish.lua`
//! (`XADD ... MAXLEN ~`, then `XTRIM MINID ~` for the retention, and the key's expiry). A
//! subscriber resumes exactly from the first retained entry on: Redis does not record what
//! trimming removed, so an id older than that gets a reset.
//!
//! Fan-out: one reader per topic per instance, on a connection of its own outside the pool,
//! loops on `XREAD BLOCK` and broadcasts each message to this instance's subscribers; it stops
//! when the last subscription holding it is dropped. A message published on any instance
//! reaches every instance's reader, so subscribers need no connection of their own.
//!
//! A subscription first joins the reader's channel, then reads the stream's bounds and backlog
//! (`topic_read.lua`, one round trip): whatever was published meanwhile is in both, and the
//! HTTP stream skips what it has already sent. The reader starts from the stream's last id as
//! it stood before the subscription read anything, so nothing falls between the two.
//!
//! When the reader loses Redis (an error, or no answer within its block time and a margin) it
//! ends, closing its channel: every stream on it ends with a reset, and its clients reconnect.
//!
//! With `redis.wait_replicas`, the reader delivers only what that many replicas hold: each
//! `XREAD` is pipelined with a `WAIT` on the same node, and when fewer replicas answer, the
//! reader ends (a reset) instead of delivering. A master that a failover deposed but that does
//! not know it yet (stopped, then continued, before it learns it is a replica) still answers
//! reads with what it took alone; delivering that would move a subscriber's `Last-Event-ID`
//! past messages the new master holds, a gap with no reset (found by the history checker,
//! `docs/consistency.md`). On a Cluster the same pipeline asks the node for its `run_id`: when another
//! node answers for the stream's slot (a failover), the reader ends (a reset), and a resume
//! from an id the stream never held (made by the deposed master) resets too.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use async_trait::async_trait;
use redis::Value;

use crate::store::redis::connection::Conn;
use tokio::sync::{Mutex, broadcast};

use crate::store::redis::{RedisPool, script::Script};
use crate::{
    capabilities::topic::{
        model::{
            Bounds, Event, Log, NewEvent, Order, ResetReason, Resume, Shared, TopicName, resume,
        },
        port::{BacklogPages, Subscription, TopicLimits, TopicStore},
    },
    domain::ids::Tenant,
    store::{StoreError, StoreResult},
};

/// How long one `XREAD` blocks; the reader notices a dropped last subscriber at least this
/// often, and a Redis that stopped answering within this plus `READ_MARGIN`.
const BLOCK: Duration = Duration::from_secs(5);
const READ_MARGIN: Duration = Duration::from_secs(2);
/// Most messages one `XREAD` returns.
const READ_COUNT: usize = 1000;
/// Most messages of a subscriber's backlog read at once: what a subscriber that does not read
/// holds (at most this many × `topics.max_message_bytes`), and what one call moves.
const PAGE: usize = 50;

pub struct RedisTopics {
    redis: RedisPool,
    publish: Script,
    read: Script,
    readers: Mutex<HashMap<String, Weak<Reader>>>,
}

/// This instance's reader of one topic; dropping the last holder stops it.
struct Reader {
    /// The reader task owns the sender: when it ends, subscribers see the channel close.
    sender: broadcast::WeakSender<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisTopics {
    pub fn new(redis: RedisPool) -> Self {
        Self {
            redis,
            publish: Script::new("topic_publish", include_str!("scripts/topic_publish.lua")),
            read: Script::new("topic_read", include_str!("scripts/topic_read.lua")),
            readers: Mutex::default(),
        }
    }

    /// This instance's running reader of `key` and a receiver of its messages, starting a
    /// reader when there is none.
    async fn join(
        &self,
        key: &str,
        buffer: usize,
    ) -> StoreResult<(Arc<Reader>, broadcast::Receiver<Shared>)> {
        let mut readers = self.readers.lock().await;
        readers.retain(|_, reader| reader.strong_count() > 0);
        if let Some(reader) = readers.get(key).and_then(Weak::upgrade)
            && let Some(sender) = reader.sender.upgrade()
        {
            return Ok((reader, sender.subscribe()));
        }
        // Where the reader starts: the stream's last id now, before the subscriber reads.
        let mut newest = redis::cmd("XREVRANGE");
        newest.arg(key).arg("+").arg("-").arg("COUNT").arg(1);
        let newest: Vec<(String, Value)> = self.redis.query(&newest).await?;
        let from = newest
            .first()
            .map_or("0-0".to_string(), |(id, _)| id.clone());
        let connection = self.redis.dedicated().await?;
        let (sender, receiver) = broadcast::channel(buffer.max(1));
        let reader = Arc::new(Reader {
            sender: sender.downgrade(),
            task: tokio::spawn(read(
                connection,
                key.to_string(),
                from,
                sender,
                self.redis.waits_for_replicas(),
            )),
        });
        readers.insert(key.to_string(), Arc::downgrade(&reader));
        Ok((reader, receiver))
    }

    /// The stream's bounds, the first page of messages after `from` ('-': from the first,
    /// '': none), and whether the stream holds `from` (or it is the last id).
    async fn backlog(&self, key: &str, from: &str) -> StoreResult<(Bounds, Vec<Shared>, bool)> {
        let (last, first, entries, held): (String, String, Vec<(String, Value)>, u8) = self
            .redis
            .script(self.read.key(key).arg(from).arg(PAGE))
            .await?;
        let position = |id: &str| match Order::parse(id) {
            Some((Log::Redis, order)) => Some(order),
            _ => None,
        };
        let bounds = Bounds {
            log: Log::Redis,
            last: position(&last),
            // An empty stream (all trimmed by age) resumes exactly only from its last id.
            resumable_from: position(&first).or(position(&last)),
        };
        let events = entries
            .into_iter()
            .map(|(id, fields)| event(&id, fields))
            .collect::<StoreResult<_>>()?;
        Ok((bounds, events, held == 1))
    }
}

/// A stream entry as a message: `d` holds the data, `e` the event name.
fn event(id: &str, fields: Value) -> StoreResult<Shared> {
    let bad = || StoreError::Internal(format!("stream entry {id} is not a topic message"));
    let Some((Log::Redis, order)) = Order::parse(id) else {
        return Err(bad());
    };
    let fields: HashMap<String, String> = redis::from_redis_value(fields).map_err(|_| bad())?;
    Ok(Shared::new(Event {
        order,
        id: id.to_string(),
        name: fields.get("e").cloned(),
        data: fields.get("d").cloned().ok_or_else(bad)?,
    }))
}

/// Broadcasts the stream's messages after `from` until Redis fails or the reader is dropped;
/// with `wait` (replicas, timeout), only messages that many replicas confirmed.
async fn read(
    mut connection: Conn,
    key: String,
    mut from: String,
    sender: broadcast::Sender<Shared>,
    wait: Option<(u32, Duration)>,
) {
    type Streams = Option<Vec<(String, Vec<(String, Value)>)>>;
    let on_cluster = matches!(connection, Conn::Cluster(_));
    // The cluster node that answered the last read.
    let mut node: Option<String> = None;
    loop {
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&key)
            .arg(&from);
        let query = async {
            if wait.is_none() && !on_cluster {
                return xread.query_async::<Streams>(&mut connection).await;
            }
            // One pipeline goes to one node: the WAIT counts the replicas of the node that
            // answered the XREAD, and INFO's `run_id` names that node's process (CLUSTER MYID
            // would be routed as if MYID were a key).
            let mut pipe = redis::pipe();
            pipe.add_command(xread.clone());
            if let Some((replicas, timeout)) = wait {
                pipe.cmd("WAIT")
                    .arg(replicas)
                    .arg(timeout.as_millis() as u64);
            }
            if on_cluster {
                pipe.cmd("INFO").arg("server");
            }
            let replies: Vec<Value> = pipe.query_async(&mut connection).await?;
            let mut replies = replies.into_iter();
            let streams: Streams = redis::from_redis_value(replies.next().unwrap_or(Value::Nil))?;
            if let Some((replicas, _)) = wait {
                let acked: u64 = redis::from_redis_value(replies.next().unwrap_or(Value::Nil))?;
                if acked < u64::from(replicas) && streams.is_some() {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "read not confirmed by the replicas",
                        format!("{acked} of {replicas}"),
                    )));
                }
            }
            if on_cluster {
                let info: String = redis::from_redis_value(replies.next().unwrap_or(Value::Nil))?;
                let id = info
                    .lines()
                    .find_map(|line| line.strip_prefix("run_id:"))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                // Another node answers for the stream's slot (a failover): what the last one
                // gave may be what the failover dropped, so resuming here could skip messages.
                if node.as_ref().is_some_and(|node| *node != id) {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "another node answers for the stream",
                        id,
                    )));
                }
                node = Some(id);
            }
            Ok(streams)
        };
        let wait_time = wait.map_or(Duration::ZERO, |(_, timeout)| timeout);
        let reply = tokio::time::timeout(BLOCK + READ_MARGIN + wait_time, query).await;
        let entries = match reply {
            Ok(Ok(Some(streams))) => streams.into_iter().flat_map(|(_, entries)| entries),
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, stream = key, "topic reader lost Redis");
                return;
            }
            Err(_) => {
                tracing::warn!(stream = key, "topic reader: Redis did not answer");
                return;
            }
        };
        for (id, fields) in entries {
            match event(&id, fields) {
                Ok(event) => {
                    // No subscriber is not an error: the last one may just have left.
                    let _ = sender.send(event);
                }
                Err(e) => tracing::error!(error = %e, "topic reader skipped an entry"),
            }
            from = id;
        }
    }
}

/// The rest of a subscriber's backlog: each page one `XRANGE ... COUNT`, on a pooled
/// connection only for that call.
struct Pages {
    redis: RedisPool,
    key: String,
}

#[async_trait]
impl BacklogPages for Pages {
    async fn next_page(&self, after: Order) -> StoreResult<Vec<Shared>> {
        let mut range = redis::cmd("XRANGE");
        range
            .arg(&self.key)
            .arg(format!("({}", after.id(Log::Redis)))
            .arg("+")
            .arg("COUNT")
            .arg(PAGE);
        let entries: Vec<(String, Value)> = self.redis.query(&range).await?;
        entries
            .into_iter()
            .map(|(id, fields)| event(&id, fields))
            .collect()
    }
}

#[async_trait]
impl TopicStore for RedisTopics {
    async fn publish(
        &self,
        tenant: &Tenant,
        topic: &TopicName,
        event: &NewEvent,
        limits: TopicLimits,
    ) -> StoreResult<Shared> {
        let key = self.redis.keys().topic(tenant, topic);
        let mut call = self.publish.key(&key);
        call.arg(event.name.as_deref().unwrap_or(""))
            .arg(&event.data)
            .arg(limits.max_len)
            .arg(limits.retention_ms);
        let id: String = self.redis.script(&call).await?;
        let Some((Log::Redis, order)) = Order::parse(&id) else {
            return Err(StoreError::Internal(format!("XADD answered {id:?}")));
        };
        Ok(Shared::new(Event {
            order,
            id,
            name: event.name.clone(),
            data: event.data.clone(),
        }))
    }

    async fn subscribe(
        &self,
        tenant: &Tenant,
        topic: &TopicName,
        after: Option<&str>,
        limits: TopicLimits,
    ) -> StoreResult<Subscription> {
        let key = self.redis.keys().topic(tenant, topic);
        let (reader, live) = self.join(&key, limits.buffer).await?;
        let from = match after.map(Order::parse) {
            None => String::new(),
            Some(Some((Log::Redis, order))) => order.id(Log::Redis),
            Some(_) => "-".to_string(),
        };
        let (bounds, mut backlog, held) = self.backlog(&key, &from).await?;
        let mut start = resume(after, &bounds);
        if matches!(start, Resume::After(_)) && !held {
            // An id within the bounds that the stream never held: a deposed master made it
            // (it took the message alone, and the failover dropped it). Resuming after it
            // would skip what the new master took meanwhile.
            start = Resume::Reset(ResetReason::UnknownId);
        }
        if matches!(start, Resume::Reset(_)) && from != "-" {
            backlog = self.backlog(&key, "-").await?.1;
        }
        if start == Resume::Live {
            backlog.clear();
        }
        let earliest = match backlog.first() {
            Some(first) if matches!(start, Resume::Reset(_)) => Some(first.id.clone()),
            _ => None,
        };
        let more = (backlog.len() == PAGE).then(|| {
            Box::new(Pages {
                redis: self.redis.clone(),
                key,
            }) as Box<dyn BacklogPages>
        });
        Ok(Subscription {
            start,
            earliest,
            backlog,
            more,
            live,
            switches: None,
            feed: Some(reader),
        })
    }
}

/// This capability's keys (the layout: `store::redis::keys`).
impl crate::store::redis::keys::Keys {
    /// A topic's stream: `{prefix}:{tenant}:topic:{<tenant>/<topic>}`.
    pub fn topic(&self, tenant: &Tenant, topic: &TopicName) -> String {
        format!("{}:{tenant}:topic:{{{tenant}/{topic}}}", self.prefix)
    }
}
