//! Topics on the memory engine: one entry per `tenant/topic` holding its log (the retained
//! messages, with their publish times) and the broadcast channel of this process's
//! subscribers. A publish appends and broadcasts under the engine's lock, and a subscribe
//! reads the backlog and joins the channel under it too, so a subscriber sees each message
//! once. The entry expires `topics.retention_seconds` after the last publish; emptying the
//! backend (when `auto` mode returns to Redis) drops every log and closes its subscribers'
//! streams, which then end with a reset.

use std::{collections::VecDeque, time::Duration};

use async_trait::async_trait;

use tokio::{sync::broadcast, time::Instant};

use crate::store::memory::{
    MemoryBackend,
    engine::{Engine, Entry, Weigh},
};
use crate::{
    capabilities::topic::{
        model::{Bounds, Event, Log, NewEvent, Order, Resume, Shared, TopicName, resume},
        port::{Subscription, TopicLimits, TopicStore},
    },
    domain::ids::Tenant,
    store::{StoreResult, signals::signal_key},
};

pub struct MemoryTopics {
    engine: Engine<Box<str>, TopicLog>,
}

/// One topic's retained messages and its subscribers' channel.
pub struct TopicLog {
    /// Names this log: ids of another log (an earlier one, another instance's) are foreign.
    epoch: u32,
    events: VecDeque<(Instant, Shared)>,
    /// The last sequence number given out (0: none yet).
    last_seq: u64,
    /// The highest sequence number trimmed away (0: none).
    max_deleted: u64,
    sender: broadcast::Sender<Shared>,
    bytes: usize,
}

impl TopicLog {
    fn new(buffer: usize) -> Self {
        Self {
            epoch: rand::random(),
            events: VecDeque::new(),
            last_seq: 0,
            max_deleted: 0,
            sender: broadcast::channel(buffer.max(1)).0,
            bytes: 0,
        }
    }

    fn log(&self) -> Log {
        Log::Memory(self.epoch)
    }

    /// Drops what is past `limits` (by count, then by age) at `now`.
    fn trim(&mut self, limits: TopicLimits, now: Instant) {
        let too_old = |at: &Instant| now.duration_since(*at) > retention(limits);
        while self.events.len() as u64 > limits.max_len
            || self.events.front().is_some_and(|(at, _)| too_old(at))
        {
            let Some((_, event)) = self.events.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(event.weight());
            self.max_deleted = event.order.1;
        }
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            log: self.log(),
            last: (self.last_seq > 0).then_some(Order(0, self.last_seq)),
            resumable_from: (self.max_deleted > 0).then_some(Order(0, self.max_deleted)),
        }
    }
}

impl Weigh for TopicLog {
    fn weight(&self) -> usize {
        self.bytes + 64
    }
}

fn retention(limits: TopicLimits) -> Duration {
    Duration::from_millis(limits.retention_ms)
}

impl MemoryTopics {
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            engine: backend.engine(),
        }
    }

    /// Runs `change` on the topic's log (a new one when there is none), which then lives
    /// `retention` from now.
    fn update<R>(
        &self,
        tenant: &Tenant,
        topic: &TopicName,
        limits: TopicLimits,
        change: impl FnOnce(&mut TopicLog, Instant) -> R,
    ) -> R {
        let key = signal_key(tenant, topic);
        self.engine.update(&key.into(), |slot| {
            let now = Instant::now();
            let mut log = match slot.take() {
                Some(entry) => entry.value,
                None => TopicLog::new(limits.buffer),
            };
            log.trim(limits, now);
            let result = change(&mut log, now);
            *slot = Some(Entry {
                value: log,
                expires_at: Some(now + retention(limits)),
            });
            result
        })
    }
}

#[async_trait]
impl TopicStore for MemoryTopics {
    async fn publish(
        &self,
        tenant: &Tenant,
        topic: &TopicName,
        event: &NewEvent,
        limits: TopicLimits,
    ) -> StoreResult<Shared> {
        self.engine.ensure_room()?;
        Ok(self.update(tenant, topic, limits, |log, now| {
            log.last_seq += 1;
            let order = Order(0, log.last_seq);
            let event = Shared::new(Event {
                order,
                id: order.id(log.log()),
                name: event.name.clone(),
                data: event.data.clone(),
            });
            log.bytes += event.weight();
            log.events.push_back((now, event.clone()));
            log.trim(limits, now);
            // No subscriber is not an error: the message is retained for later ones.
            let _ = log.sender.send(event.clone());
            event
        }))
    }

    async fn subscribe(
        &self,
        tenant: &Tenant,
        topic: &TopicName,
        after: Option<&str>,
        limits: TopicLimits,
    ) -> StoreResult<Subscription> {
        Ok(self.update(tenant, topic, limits, |log, _| {
            let start = resume(after, &log.bounds());
            let backlog = match start {
                Resume::Live => Vec::new(),
                Resume::After(position) => log
                    .events
                    .iter()
                    .filter(|(_, e)| e.order > position)
                    .map(|(_, e)| e.clone())
                    .collect(),
                Resume::Reset(_) => log.events.iter().map(|(_, e)| e.clone()).collect(),
            };
            let reset = matches!(start, Resume::Reset(_));
            Subscription {
                start,
                earliest: backlog.first().filter(|_| reset).map(|e| e.id.clone()),
                backlog,
                more: None,
                live: log.sender.subscribe(),
                switches: None,
                feed: None,
            }
        }))
    }
}
