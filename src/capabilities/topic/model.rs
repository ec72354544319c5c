//! Topics: messages published to a named log and streamed to subscribers, who resume after the
//! last id they saw.
//!
//! An id is a position in one backend's log of the topic:
//!
//! - on Redis, the stream entry's id, `<ms>-<seq>` (`1732600000000-0`);
//! - in memory, `m<epoch>-<seq>`, where the epoch (8 hex digits, random) names one memory log:
//!   a log emptied when `auto` mode returns to Redis, or held by another instance, has another
//!   epoch, so its ids are recognised as foreign instead of being compared.
//!
//! What a subscriber's `Last-Event-ID` leads to is decided here, the same for both backends
//! ([`resume`]): every later message when the log still holds all of them, or a reset (with the
//! earliest retained id) when it cannot tell or knows some are gone. Never a silent gap.

use std::{fmt, sync::Arc};

use crate::domain::ids::{path_id, valid_id};

path_id!(
    /// A topic's name.
    TopicName, "topic name", "", valid_id
);

/// Longest event name, in characters.
pub const MAX_EVENT_NAME_CHARS: usize = 64;

/// A position in one log, totally ordered: `(ms, seq)` on Redis, `(0, seq)` in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Order(pub u64, pub u64);

/// Which backend's log an id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Redis,
    /// A memory log, by its epoch.
    Memory(u32),
}

impl Order {
    /// The id clients see for this position of `log`.
    pub fn id(self, log: Log) -> String {
        match log {
            Log::Redis => format!("{}-{}", self.0, self.1),
            Log::Memory(epoch) => format!("m{epoch:08x}-{}", self.1),
        }
    }

    /// The position an id names, and its log; `None` for what no backend would have made.
    pub fn parse(id: &str) -> Option<(Log, Order)> {
        let number = |text: &str| -> Option<u64> {
            (!text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse().ok())
                .flatten()
        };
        if let Some(rest) = id.strip_prefix('m') {
            let (epoch, seq) = rest.split_once('-')?;
            if epoch.len() != 8 {
                return None;
            }
            let epoch = u32::from_str_radix(epoch, 16).ok()?;
            return Some((Log::Memory(epoch), Order(0, number(seq)?)));
        }
        let (ms, seq) = id.split_once('-')?;
        Some((Log::Redis, Order(number(ms)?, number(seq)?)))
    }
}

/// One published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub order: Order,
    /// `order` as the client sees it.
    pub id: String,
    /// The SSE event name; `None` is the default `message`.
    pub name: Option<String>,
    /// The message's JSON text.
    pub data: String,
}

impl Event {
    /// Bytes it holds, for the memory budget.
    pub fn weight(&self) -> usize {
        self.id.len() + self.name.as_ref().map_or(0, String::len) + self.data.len() + 48
    }
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub name: Option<String>,
    pub data: String,
}

/// Why a stream starts or ends with `event: reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The id is malformed, from the other backend or another memory log, or later than
    /// anything this log has made: its position here is unknown.
    UnknownId,
    /// Messages after the id were trimmed (`topics.max_len`, `topics.retention_seconds`) or
    /// the topic's log was lost (expired, or Redis restarted without persistence).
    HistoryTrimmed,
    /// The subscriber fell further behind than `topics.subscriber_buffer` messages.
    Lagged,
    /// The backend serving the topic changed (Redis went down or came back), or the stream
    /// reader lost Redis: ids from before mean nothing now.
    BackendSwitched,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownId => "unknown_id",
            Self::HistoryTrimmed => "history_trimmed",
            Self::Lagged => "lagged",
            Self::BackendSwitched => "backend_switched",
        }
    }
}

/// What a log knows of its own history, for [`resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub log: Log,
    /// The last position ever made in this log (`None`: the log does not exist, or was lost).
    pub last: Option<Order>,
    /// The oldest position a subscriber resumes from exactly: nothing after it was trimmed.
    /// In memory, the last trimmed position (sequence numbers have no holes); on Redis, the
    /// first retained entry, since stream ids do (a subscriber that last saw the entry just
    /// before it gets a reset it could have done without).
    pub resumable_from: Option<Order>,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// With messages published from now on (no `Last-Event-ID`).
    Live,
    /// With every message after this position: none was lost.
    After(Order),
    /// With a reset, then every retained message.
    Reset(ResetReason),
}

/// Where a subscriber that last saw `after` (its `Last-Event-ID`) starts, given the log's
/// bounds.
pub fn resume(after: Option<&str>, bounds: &Bounds) -> Resume {
    let Some(after) = after else {
        return Resume::Live;
    };
    let Some((log, order)) = Order::parse(after) else {
        return Resume::Reset(ResetReason::UnknownId);
    };
    if log != bounds.log {
        return Resume::Reset(ResetReason::UnknownId);
    }
    let Some(last) = bounds.last else {
        // An id of this kind, but the log has nothing: it was lost with what followed the id.
        return Resume::Reset(ResetReason::HistoryTrimmed);
    };
    if order > last {
        return Resume::Reset(ResetReason::UnknownId);
    }
    if bounds.resumable_from.is_some_and(|oldest| order < oldest) {
        return Resume::Reset(ResetReason::HistoryTrimmed);
    }
    Resume::After(order)
}

/// A shared message, as subscribers receive it.
pub type Shared = Arc<Event>;

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use crate::capabilities::topic::model::*;

    const REDIS: Bounds = Bounds {
        log: Log::Redis,
        last: Some(Order(100, 3)),
        resumable_from: Some(Order(50, 0)),
    };

    #[test]
    fn ids_round_trip_per_log() {
        let order = Order(1732600000000, 7);
        assert_eq!(
            Order::parse(&order.id(Log::Redis)),
            Some((Log::Redis, order))
        );
        let memory = Order(0, 42);
        let id = memory.id(Log::Memory(0xdead_beef));
        assert_eq!(id, "mdeadbeef-42");
        assert_eq!(Order::parse(&id), Some((Log::Memory(0xdead_beef), memory)));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "m1-2",
            "mzzzzzzzz-1",
            "1 -2",
            "+1-2",
        ] {
            assert_eq!(Order::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Order::parse("99999999999999999999999-0"), None);
    }

    #[test]
    fn a_retained_id_resumes_after_itself() {
        assert_eq!(resume(None, &REDIS), Resume::Live);
        assert_eq!(resume(Some("60-0"), &REDIS), Resume::After(Order(60, 0)));
        assert_eq!(resume(Some("50-0"), &REDIS), Resume::After(Order(50, 0)));
        assert_eq!(resume(Some("100-3"), &REDIS), Resume::After(Order(100, 3)));
    }

    #[test]
    fn an_unknowable_position_is_a_reset_never_a_gap() {
        let trimmed = Resume::Reset(ResetReason::HistoryTrimmed);
        let unknown = Resume::Reset(ResetReason::UnknownId);
        assert_eq!(resume(Some("49-9"), &REDIS), trimmed);
        assert_eq!(resume(Some("100-4"), &REDIS), unknown, "later than the log");
        assert_eq!(
            resume(Some("m00000001-1"), &REDIS),
            unknown,
            "other backend"
        );
        assert_eq!(resume(Some("garbage"), &REDIS), unknown);
        let lost = Bounds {
            last: None,
            resumable_from: None,
            ..REDIS
        };
        assert_eq!(resume(Some("1-0"), &lost), trimmed, "the log was lost");
        let memory = Bounds {
            log: Log::Memory(1),
            last: Some(Order(0, 10)),
            resumable_from: None,
        };
        assert_eq!(
            resume(Some("m00000002-3"), &memory),
            unknown,
            "another epoch"
        );
        assert_eq!(
            resume(Some("m00000001-3"), &memory),
            Resume::After(Order(0, 3))
        );
    }
}
