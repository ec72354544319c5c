//! Time-to-live rules shared by every resource: whole seconds, at least 1, at most
//! `limits.max_ttl_seconds`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ttl_seconds must be an integer from 1 to {max}")]
pub struct InvalidTtl {
    pub max: u64,
}

/// A validated TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(u64);

impl Ttl {
    pub fn new(seconds: u64, max: u64) -> Result<Self, InvalidTtl> {
        if (1..=max).contains(&seconds) {
            Ok(Self(seconds))
        } else {
            Err(InvalidTtl { max })
        }
    }

    /// Checks a TTL that a caller sent as any JSON number. `600.0` and `6e2` are the integer
    /// 600, as JSON Schema's `integer` (what the OpenAPI document states) counts them.
    pub fn from_json(value: &serde_json::Number, max: u64) -> Result<Self, InvalidTtl> {
        let whole = || {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (1.0..=max as f64).contains(f))
                .map(|f| f as u64)
        };
        value
            .as_u64()
            .or_else(whole)
            .ok_or(InvalidTtl { max })
            .and_then(|s| Self::new(s, max))
    }

    /// A lifetime carried over rather than asked for (an item handed from one backend to the
    /// other): not bounded by a setting, and at least one second.
    pub fn carried(seconds: u64) -> Self {
        Self(seconds.max(1))
    }

    /// A carried lifetime for `ms` left, in whole seconds rounded up.
    pub fn carried_ms(ms: u64) -> Self {
        Self::carried(ms.div_ceil(1000))
    }

    pub fn seconds(self) -> u64 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

/// The expiry an entry is written with: a TTL, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    After(Ttl),
    Never,
}

/// A moment as Unix milliseconds, the unit the stores keep times in.
pub fn unix_ms(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The moment of `ms` Unix milliseconds.
pub fn from_unix_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(Ttl::new(0, 10).is_err());
        assert!(Ttl::new(11, 10).is_err());
        assert_eq!(Ttl::new(10, 10).unwrap().seconds(), 10);
        let n: serde_json::Number = serde_json::from_str("1.5").unwrap();
        assert!(Ttl::from_json(&n, 10).is_err());
        let n: serde_json::Number = serde_json::from_str("-1").unwrap();
        assert!(Ttl::from_json(&n, 10).is_err());
        for whole in ["10.0", "1e1", "1.0E1"] {
            let n: serde_json::Number = serde_json::from_str(whole).unwrap();
            assert_eq!(Ttl::from_json(&n, 10).unwrap().seconds(), 10, "{whole}");
        }
        let n: serde_json::Number = serde_json::from_str("11.0").unwrap();
        assert!(Ttl::from_json(&n, 10).is_err());
    }
}
