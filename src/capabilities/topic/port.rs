//! The topic port: the trait its adapters implement and the outcomes of its calls.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    capabilities::topic::model::{NewEvent, Order, Resume, Shared, TopicName},
    domain::ids::Tenant,
};

use crate::store::StoreResult;

/// How much of a topic is kept, and how far a subscriber may fall behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Messages kept per topic (approximately, on Redis: `MAXLEN ~`).
    pub max_len: u64,
    /// How long a message is kept; a topic without a publish this long is gone.
    pub retention_ms: u64,
    /// Messages a subscriber may be behind the newest before it is dropped with a reset.
    pub buffer: usize,
}

/// A subscription to a topic: how it starts, the retained messages it starts with, then the
/// live ones. A live message may also be in `backlog` (published while it was read): skip
/// what is not after the last message delivered.
pub struct Subscription {
    pub start: Resume,
    /// The earliest retained message's id, told with a reset.
    pub earliest: Option<String>,
    /// The retained messages the stream starts with: all of them, or (with `more`) the first
    /// page.
    pub backlog: Vec<Shared>,
    /// Where the rest of the backlog is read, a page at a time as the subscriber takes it, so a
    /// subscriber that does not read holds at most one page and no connection (`None`:
    /// `backlog` is all of it).
    pub more: Option<Box<dyn BacklogPages>>,
    /// Closed when the topic's log goes away (the backend switched, the reader lost Redis).
    pub live: tokio::sync::broadcast::Receiver<Shared>,
    /// Changes when the backend serving topics switches (`auto` mode): the stream then ends
    /// with a reset, since it can no longer see every message the log gets.
    pub switches: Option<tokio::sync::watch::Receiver<u64>>,
    /// Keeps what feeds `live` running (this instance's reader of the topic) while held.
    pub feed: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// The rest of a subscription's backlog, read a page at a time.
#[async_trait]
pub trait BacklogPages: Send + Sync {
    /// The retained messages after `after`, at most one page; empty when there are no more.
    async fn next_page(&self, after: Order) -> StoreResult<Vec<Shared>>;
}

crate::store::port::port! {
    /// Topics (`topic::model`): a log per topic, fanned out to this instance's subscribers.
    pub trait TopicStore {
        /// Appends a message, trimming the log to `limits`; subscribers on every instance get it.
        #[repeat(false)]
        async fn publish(
            &self,
            tenant: &Tenant,
            topic: &TopicName,
            event: &NewEvent,
            limits: TopicLimits,
        ) -> StoreResult<Shared>;
    }
    also {

        /// Subscribes after `after` (a `Last-Event-ID`; `None`: from now on), as
        /// `topic::model::resume` decides.
        async fn subscribe(
            &self,
            tenant: &Tenant,
            topic: &TopicName,
            after: Option<&str>,
            limits: TopicLimits,
        ) -> StoreResult<Subscription>;
    }
    routed {
        // Routed like the others, and told of every later switch: the stream is on one backend's
        // log, and a message published on the other after a switch would be a silent gap.
        async fn subscribe(&self, tenant: &Tenant, topic: &TopicName, after: Option<&str>, limits: TopicLimits) -> StoreResult<Subscription> {
            // Watched before the call, so that a switch during it is seen too.
            let mut switches = self.failover.switches.subscribe();
            switches.mark_unchanged();
            let mut subscription = self
                .failover
                .route(
                    true,
                    || self.redis.subscribe(tenant, topic, after, limits),
                    self.memory
                        .as_ref()
                        .map(|memory| move || memory.subscribe(tenant, topic, after, limits)),
                )
                .await?;
            subscription.switches = Some(switches);
            Ok(subscription)
        }
    }
}
