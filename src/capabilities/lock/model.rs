//! Locks with fencing tokens, as pure functions of a lock's stored state and the time
//! (microseconds since the epoch): the memory adapter runs them as they are, and the Redis
//! scripts (`lock_*.lua`) mirror them with Redis's `TIME`.
//!
//! A lock's record outlives its holder: it keeps the last fencing token granted and the highest
//! token a fence check has seen, for `RECORD_RETENTION` after the holder's expiry. Each grant's
//! fencing token is `max(last + 1, highest checked + 1, now in µs)`: it strictly increases over
//! every grant, also when the record itself was lost (expired, deleted, or a Redis that lost its
//! data), as long as the clock does not go back by more than the time since the last grant.

use std::{fmt, time::Duration};

use crate::domain::ids::{path_id, valid_id};

path_id!(
    /// A lock's name.
    LockName, "lock name", "", valid_id
);

/// How long a lock's record (its fencing counter) is kept after its holder's expiry.
pub const RECORD_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Longest `wait_ms` of an acquire.
pub const MAX_WAIT_MS: u64 = 20_000;
/// Longest `owner`, in characters.
pub const MAX_OWNER_CHARS: usize = 256;
/// The largest fencing token there can ever be: exact as a JSON number in every language.
pub const MAX_FENCING_TOKEN: u64 = (1 << 53) - 1;
/// How far above this machine's clock a restored mark may be: the machine that took the
/// backup may have had a clock ahead of this one's.
pub const RESTORE_CLOCK_SLACK_US: u64 = 3_600_000_000;

/// A token presented to a lock's fence: a holder's fencing token before a write, or a mark a
/// restore brings back.
///
/// No grant issues a token above `max(last grant, now)`, so a fence takes nothing above that
/// (a restored mark: above `now + RESTORE_CLOCK_SLACK_US`): one caller cannot push the mark to
/// where later grants would run out of exact JSON numbers, or collide in Lua's doubles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    Checked(u64),
    Restored(u64),
}

impl Fence {
    pub fn token(self) -> u64 {
        match self {
            Self::Checked(token) | Self::Restored(token) => token,
        }
    }

    /// How far above the clock this kind of token may be (the Redis script takes it as is).
    pub fn slack_us(self) -> u64 {
        match self {
            Self::Checked(_) => 0,
            Self::Restored(_) => RESTORE_CLOCK_SLACK_US,
        }
    }

    /// The highest token this fence may take, given the lock's mark and the time.
    pub fn ceiling(self, highest: u64, now: u64) -> u64 {
        highest.max(now + self.slack_us()).min(MAX_FENCING_TOKEN)
    }
}

/// The secret a holder proves itself with: 16 random bytes, URL-safe base64.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockToken(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a lock token is 1-64 bytes of [A-Za-z0-9_-], as acquire returned it")]
pub struct InvalidLockToken;

impl LockToken {
    pub fn generate() -> Self {
        Self(crate::domain::ids::random_token::<16>())
    }

    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidLockToken> {
        let raw = raw.into();
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then_some(Self(raw)).ok_or(InvalidLockToken)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attempt to take a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquire {
    /// The token the holder will prove itself with, made by the caller of the store.
    pub token: LockToken,
    pub ttl_ms: u64,
    pub owner: Option<String>,
}

/// A lock granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub fencing_token: u64,
    pub expires_at_us: u64,
}

/// What an acquire attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    Granted(Grant),
    /// Someone else holds it for `retry_after_us` more (unless they release it sooner).
    Held {
        retry_after_us: u64,
    },
}

/// A lock as anyone may see it (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub held: bool,
    pub owner: Option<String>,
    pub expires_at_us: Option<u64>,
    /// The last fencing token granted (0: none known).
    pub fencing_token: u64,
    /// The highest token granted or accepted by a fence check: what a backup keeps, so that
    /// a stale token stays refused after a restore.
    pub high_water: u64,
}

/// What a fence check answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceCheck {
    /// The token is the highest seen so far (or equal to it); the mark is raised to it.
    Accepted,
    /// A later grant or check exists: the token's holder lost the lock.
    Stale { highest: u64 },
    /// No grant issued this token: it is above both the last grant and the clock
    /// (`ceiling`). Nothing was changed.
    NotIssued { ceiling: u64 },
}

/// The current holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub token: LockToken,
    pub owner: Option<String>,
    pub expires_at_us: u64,
}

/// A lock's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockState {
    pub holder: Option<Holder>,
    /// The last fencing token granted.
    pub fence: u64,
    /// The highest token a fence check accepted.
    pub checked: u64,
}

impl LockState {
    /// The holder while its lease lasts.
    fn live_holder(&self, now: u64) -> Option<&Holder> {
        self.holder.as_ref().filter(|h| h.expires_at_us > now)
    }

    fn holds(&self, token: &LockToken, now: u64) -> bool {
        self.live_holder(now).is_some_and(|h| &h.token == token)
    }

    pub fn acquire(&mut self, request: &Acquire, now: u64) -> Acquired {
        if let Some(holder) = self.live_holder(now) {
            return Acquired::Held {
                retry_after_us: holder.expires_at_us - now,
            };
        }
        let fence = (self.fence + 1).max(self.checked + 1).max(now);
        let expires_at_us = now + request.ttl_ms * 1000;
        self.fence = fence;
        self.holder = Some(Holder {
            token: request.token.clone(),
            owner: request.owner.clone(),
            expires_at_us,
        });
        Acquired::Granted(Grant {
            fencing_token: fence,
            expires_at_us,
        })
    }

    /// The new expiry, or `None` when `token` does not hold the lock (lost).
    pub fn extend(&mut self, token: &LockToken, ttl_ms: u64, now: u64) -> Option<u64> {
        if !self.holds(token, now) {
            return None;
        }
        let holder = self.holder.as_mut()?;
        holder.expires_at_us = now + ttl_ms * 1000;
        Some(holder.expires_at_us)
    }

    /// Whether `token` held the lock (and now no longer does).
    pub fn release(&mut self, token: &LockToken, now: u64) -> bool {
        let held = self.holds(token, now);
        if held {
            self.holder = None;
        }
        held
    }

    pub fn info(&self, now: u64) -> LockInfo {
        let holder = self.live_holder(now);
        LockInfo {
            held: holder.is_some(),
            owner: holder.and_then(|h| h.owner.clone()),
            expires_at_us: holder.map(|h| h.expires_at_us),
            fencing_token: self.fence,
            high_water: self.fence.max(self.checked),
        }
    }

    pub fn check_fence(&mut self, fence: Fence, now: u64) -> FenceCheck {
        let highest = self.fence.max(self.checked);
        let token = fence.token();
        if token < highest {
            return FenceCheck::Stale { highest };
        }
        let ceiling = fence.ceiling(highest, now);
        if token > ceiling {
            return FenceCheck::NotIssued { ceiling };
        }
        self.checked = token;
        FenceCheck::Accepted
    }

    /// Microseconds from `now` for which the record must be kept.
    pub fn life_us(&self, now: u64) -> u64 {
        let until = self
            .holder
            .as_ref()
            .map_or(now, |h| h.expires_at_us.max(now));
        until - now + RECORD_RETENTION.as_micros() as u64
    }
}

#[cfg(test)]
mod tests {
    use crate::capabilities::lock::model::*;

    fn request(ttl_ms: u64) -> Acquire {
        Acquire {
            token: LockToken::generate(),
            ttl_ms,
            owner: Some("worker-1".into()),
        }
    }

    fn granted(outcome: Acquired) -> Grant {
        match outcome {
            Acquired::Granted(grant) => grant,
            held => panic!("expected a grant, got {held:?}"),
        }
    }

    #[test]
    fn one_holder_at_a_time_until_release_or_expiry() {
        let mut lock = LockState::default();
        let first = request(1_000);
        let grant = granted(lock.acquire(&first, 5_000_000));
        assert_eq!(grant.expires_at_us, 6_000_000);
        assert_eq!(
            lock.acquire(&request(1_000), 5_400_000),
            Acquired::Held {
                retry_after_us: 600_000
            }
        );
        assert!(lock.info(5_400_000).held);
        assert!(!lock.release(&request(1).token, 5_400_000), "a wrong token");
        assert!(lock.info(5_400_000).held, "left held");
        assert!(lock.release(&first.token, 5_500_000));
        granted(lock.acquire(&request(1_000), 5_500_000));
        // That grant expires at 6.5 s: a new caller gets it after.
        granted(lock.acquire(&request(1_000), 6_500_000));
    }

    #[test]
    fn a_lost_lock_cannot_be_extended_or_released() {
        let mut lock = LockState::default();
        let first = request(100);
        granted(lock.acquire(&first, 1_000_000));
        assert_eq!(lock.extend(&first.token, 100, 1_050_000), Some(1_150_000));
        assert_eq!(lock.extend(&first.token, 100, 1_150_000), None, "expired");
        assert!(!lock.release(&first.token, 1_150_000));
        let second = request(100);
        granted(lock.acquire(&second, 1_200_000));
        assert_eq!(lock.extend(&first.token, 100, 1_210_000), None, "taken");
        assert!(lock.info(1_210_000).held);
    }

    #[test]
    fn fencing_tokens_strictly_increase_even_when_the_record_is_lost() {
        let mut lock = LockState::default();
        let mut last = 0;
        let mut now = 1_000_000;
        for round in 0..200 {
            let r = request(10);
            let grant = granted(lock.acquire(&r, now));
            assert!(grant.fencing_token > last, "round {round}");
            last = grant.fencing_token;
            if round % 3 == 0 {
                lock.release(&r.token, now);
            } else {
                now += 10_000; // the lease expires
            }
            if round % 50 == 49 {
                lock = LockState::default(); // the record was lost
                now += 1;
            }
        }
        // Several grants in the same microsecond still increase.
        let mut lock = LockState::default();
        let a = granted(lock.acquire(&request(1), 7));
        lock.holder = None;
        let b = granted(lock.acquire(&request(1), 7));
        assert!(b.fencing_token > a.fencing_token);
    }

    #[test]
    fn fence_checks_refuse_tokens_older_than_the_last_grant() {
        let mut lock = LockState::default();
        let old = granted(lock.acquire(&request(10), 1_000));
        let check = |lock: &mut LockState, token, now| lock.check_fence(Fence::Checked(token), now);
        assert_eq!(
            check(&mut lock, old.fencing_token, 1_000),
            FenceCheck::Accepted
        );
        assert_eq!(
            check(&mut lock, old.fencing_token, 1_000),
            FenceCheck::Accepted
        );
        let new = granted(lock.acquire(&request(10), 20_000));
        assert_eq!(
            check(&mut lock, old.fencing_token, 20_000),
            FenceCheck::Stale {
                highest: new.fencing_token
            }
        );
        assert_eq!(
            check(&mut lock, new.fencing_token, 20_000),
            FenceCheck::Accepted
        );
        // A token above every grant but not above the clock (a grant from a lost record):
        // later grants go past it.
        assert_eq!(
            check(&mut lock, new.fencing_token + 500, 21_000),
            FenceCheck::Accepted
        );
        lock.holder = None;
        let next = granted(lock.acquire(&request(10), 20_001));
        assert!(next.fencing_token > new.fencing_token + 500);
    }

    #[test]
    fn a_fence_takes_no_token_that_no_grant_issued() {
        let mut lock = LockState::default();
        let grant = granted(lock.acquire(&request(10), 1_000_000));
        for token in [1_000_001, MAX_FENCING_TOKEN, u64::MAX] {
            assert_eq!(
                lock.check_fence(Fence::Checked(token), 1_000_000),
                FenceCheck::NotIssued { ceiling: 1_000_000 },
                "token {token}"
            );
        }
        // Nothing moved: the holder's own token still passes, and the next grant is the next.
        assert_eq!(
            lock.check_fence(Fence::Checked(grant.fencing_token), 1_000_000),
            FenceCheck::Accepted
        );
        lock.holder = None;
        assert_eq!(
            granted(lock.acquire(&request(10), 1_000_000)).fencing_token,
            grant.fencing_token + 1
        );
        // A restored mark may be ahead of this clock by the slack, never past 2^53 - 1.
        let ahead = 2_000_000 + RESTORE_CLOCK_SLACK_US;
        assert_eq!(
            lock.check_fence(Fence::Restored(ahead), 2_000_000),
            FenceCheck::Accepted
        );
        assert!(matches!(
            lock.check_fence(Fence::Restored(MAX_FENCING_TOKEN), 2_000_000),
            FenceCheck::NotIssued { .. }
        ));
    }
}
