//! One pub/sub subscriber per channel and instance, waking this instance's waiters: lock
//! releases (`locks`) and enqueues (`queues`) are published by the scripts that make them, as
//! `<tenant>/<name>`, on every instance's channel.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use futures_util::StreamExt as _;

use super::RedisPool;
use crate::store::signals::Signals;

/// The signals fed by `channel`'s messages, until they are dropped.
pub fn listen(redis: &RedisPool, channel: String) -> Arc<Signals> {
    let signals = Arc::new(Signals::default());
    tokio::spawn(subscribe(redis.clone(), channel, Arc::downgrade(&signals)));
    signals
}

/// Wakes the waiter of each message's key, reconnecting with back-off. After a (re)connect
/// every waiter is woken: messages may have been missed meanwhile.
async fn subscribe(redis: RedisPool, channel: String, signals: Weak<Signals>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(live) = signals.upgrade() else {
            return;
        };
        live.notify_all();
        drop(live);
        if let Ok(mut pubsub) = redis.pubsub().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            backoff = Duration::from_millis(50);
            let mut messages = pubsub.into_on_message();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
                let Some(live) = signals.upgrade() else {
                    return;
                };
                match next {
                    Ok(Some(message)) => {
                        if let Ok(key) = message.get_payload::<String>() {
                            live.notify(&key);
                        }
                    }
                    Ok(None) => break,
                    Err(_idle) => {}
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
