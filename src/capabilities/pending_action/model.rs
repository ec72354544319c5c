//! Pending actions: an action a user must confirm, named by an unguessable token
//! that can be confirmed by exactly one caller, ever.
//!
//! Life of a token: `pending` until its TTL ends (then it is gone: 404), or until the first
//! confirm or cancel turns it into a tombstone, `confirmed` or `cancelled`. A tombstone keeps
//! answering 409 to later confirms (and is readable with its status) for
//! `pending_actions.tombstone_seconds`, or by default for the token's remaining lifetime but at
//! least [`MIN_DEFAULT_TOMBSTONE`], so a loser learns it lost instead of seeing a 404.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::domain::ttl::Ttl;

/// Random bytes in a token: 256 bits, twice the 128 the contract asks for.
const TOKEN_BYTES: usize = 32;
/// Longest token accepted in a path. Tokens made here are 43 characters; the bound is the
/// general id bound, so a future longer token format would still parse.
const MAX_TOKEN_BYTES: usize = 256;
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Longest `intent_name`, `session_id` and `user_id`, in characters.
const MAX_NAME_CHARS: usize = 256;

/// The least a tombstone lives when `pending_actions.tombstone_seconds` is not set.
pub const MIN_DEFAULT_TOMBSTONE: Duration = Duration::from_secs(60);

/// A pending action's token: URL-safe base64 (`[A-Za-z0-9_-]`), so it is a path segment as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionToken(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pending-action token must be 1-{MAX_TOKEN_BYTES} bytes of [A-Za-z0-9_-]")]
pub struct InvalidToken;

impl ActionToken {
    /// A new token: 32 bytes from the thread-local CSPRNG (ChaCha, seeded and periodically
    /// reseeded from the operating system), URL-safe base64 without padding.
    pub fn generate() -> Self {
        Self(crate::domain::ids::random_token::<TOKEN_BYTES>())
    }

    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidToken> {
        let raw = raw.into();
        let valid = (1..=MAX_TOKEN_BYTES).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(raw))
        } else {
            Err(InvalidToken)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `Idempotency-Key` a confirm may carry: a retry with the winner's key gets the winner's
/// answer again instead of a 409.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidIdempotencyKey> {
        let raw = raw.into();
        let valid = (1..=MAX_IDEMPOTENCY_KEY_BYTES).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Self(raw))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionStatus {
    Pending,
    Confirmed,
    Cancelled,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What a caller asks to create, validated.
#[derive(Debug, Clone)]
pub struct NewPendingAction {
    pub intent_name: String,
    pub entities: Map<String, Value>,
    pub summary: String,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
}

/// Why a new pending action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 1-{MAX_NAME_CHARS} characters, not all of them ASCII whitespace")]
pub struct InvalidPendingAction {
    pub field: &'static str,
}

impl NewPendingAction {
    pub fn validate(self) -> Result<Self, InvalidPendingAction> {
        // As the OpenAPI document states it: `minLength`/`maxLength` count characters, and the
        // `pattern` NAME_PATTERN asks for one character that is not ASCII whitespace.
        let fine = |s: &str| {
            (1..=MAX_NAME_CHARS).contains(&s.chars().count())
                && s.chars()
                    .any(|c| !matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
        };
        if !fine(&self.intent_name) {
            return Err(InvalidPendingAction {
                field: "intent_name",
            });
        }
        if self.session_id.as_deref().is_some_and(|s| !fine(s)) {
            return Err(InvalidPendingAction {
                field: "session_id",
            });
        }
        if self.user_id.as_deref().is_some_and(|s| !fine(s)) {
            return Err(InvalidPendingAction { field: "user_id" });
        }
        Ok(self)
    }
}

/// A pending action as stored and returned. `expires_at` is when the token stops being
/// confirmable; it does not move when a tombstone is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAction {
    pub token: ActionToken,
    pub intent_name: String,
    pub entities: Map<String, Value>,
    pub summary: String,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub status: ActionStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub confirmed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cancelled_at: Option<OffsetDateTime>,
}

impl PendingAction {
    /// When its record ends: its expiry while pending, its tombstone's end once confirmed or
    /// cancelled (the rule both adapters apply when they resolve a token).
    pub fn record_ends(&self, tombstone: TombstoneLife) -> OffsetDateTime {
        match self.confirmed_at.or(self.cancelled_at) {
            Some(at) if self.status != ActionStatus::Pending => {
                let left = (self.expires_at - at).max(time::Duration::ZERO);
                at + tombstone.after(left.unsigned_abs())
            }
            _ => self.expires_at,
        }
    }

    /// A `pending` action under `token`, created `now`, confirmable for `ttl`.
    pub fn new(token: ActionToken, new: NewPendingAction, now: OffsetDateTime, ttl: Ttl) -> Self {
        Self {
            token,
            intent_name: new.intent_name,
            entities: new.entities,
            summary: new.summary,
            session_id: new.session_id,
            user_id: new.user_id,
            created_at: now,
            expires_at: now + ttl.duration(),
            status: ActionStatus::Pending,
            confirmed_at: None,
            cancelled_at: None,
        }
    }

    /// The action with its final status, as a store reports it once `status` was set `at`.
    pub fn resolved(mut self, status: ActionStatus, at: Option<OffsetDateTime>) -> Self {
        self.status = status;
        self.confirmed_at = at.filter(|_| status == ActionStatus::Confirmed);
        self.cancelled_at = at.filter(|_| status == ActionStatus::Cancelled);
        self
    }
}

/// How long the tombstone of a confirmed or cancelled token lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TombstoneLife {
    /// `pending_actions.tombstone_seconds`.
    Fixed(Ttl),
    /// The token's remaining lifetime, but at least [`MIN_DEFAULT_TOMBSTONE`].
    Remaining,
}

impl TombstoneLife {
    /// From `pending_actions.tombstone_seconds`, where 0 means [`TombstoneLife::Remaining`].
    pub fn from_setting(seconds: u64) -> Self {
        match Ttl::new(seconds, u64::MAX) {
            Ok(ttl) => Self::Fixed(ttl),
            Err(_) => Self::Remaining,
        }
    }

    /// The tombstone's lifetime for a token that had `remaining` to live.
    pub fn after(self, remaining: Duration) -> Duration {
        match self {
            Self::Fixed(ttl) => ttl.duration(),
            Self::Remaining => remaining.max(MIN_DEFAULT_TOMBSTONE),
        }
    }

    /// The fixed lifetime in milliseconds, 0 for `Remaining`: how the Redis scripts take it.
    pub fn fixed_millis(self) -> u64 {
        match self {
            Self::Fixed(ttl) => ttl.seconds() * 1000,
            Self::Remaining => 0,
        }
    }
}

/// What a confirm found.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirm {
    /// This call confirmed the action; it is returned as confirmed.
    Confirmed(PendingAction),
    /// An earlier call with the same idempotency key confirmed it; its answer, again.
    Replayed(PendingAction),
    /// Someone else confirmed it (or this caller without, or with another, idempotency key).
    AlreadyConfirmed,
    AlreadyCancelled,
    /// Unknown, expired, or its tombstone is gone.
    NotFound,
}

/// What a cancel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// This call cancelled the action.
    Cancelled,
    /// It was cancelled before; nothing changed.
    AlreadyCancelled,
    AlreadyConfirmed,
    NotFound,
}

/// The current time in UTC, to the millisecond: timestamps are stored as RFC 3339 text on
/// Redis and as values in memory, and whole milliseconds read back identically from both.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond())
        .expect("a millisecond of the clock is valid")
}

#[cfg(test)]
mod tests {
    use crate::capabilities::pending_action::model::*;

    #[test]
    fn tokens_are_url_safe_long_and_distinct() {
        let a = ActionToken::generate();
        let b = ActionToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43, "32 bytes of base64 without padding");
        assert_eq!(ActionToken::parse(a.as_str()), Ok(a));
        for bad in ["", "a.b", "a/b", "a=", "a b", "é"] {
            assert!(ActionToken::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ActionToken::parse("x".repeat(257)).is_err());
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::parse("retry-1:abc").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse("k".repeat(257)).is_err());
    }

    #[test]
    fn tombstone_lifetimes() {
        let remaining = TombstoneLife::from_setting(0);
        assert_eq!(remaining, TombstoneLife::Remaining);
        assert_eq!(
            remaining.after(Duration::from_secs(5)),
            MIN_DEFAULT_TOMBSTONE
        );
        assert_eq!(
            remaining.after(Duration::from_secs(500)),
            Duration::from_secs(500)
        );
        let fixed = TombstoneLife::from_setting(7);
        assert_eq!(
            fixed.after(Duration::from_secs(500)),
            Duration::from_secs(7)
        );
        assert_eq!(fixed.fixed_millis(), 7000);
    }

    #[test]
    fn validation() {
        let new = |intent: &str| NewPendingAction {
            intent_name: intent.into(),
            entities: Map::new(),
            summary: String::new(),
            session_id: None,
            user_id: Some("u1".into()),
        };
        assert!(new("deploy").validate().is_ok());
        assert!(new("").validate().is_err());
        assert!(new("  ").validate().is_err());
        assert!(new(&"i".repeat(257)).validate().is_err());
    }
}
