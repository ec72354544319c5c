//! Usage and budgets: integer amounts metered per subject, metric and period (UTC day and
//! month), each event counted once; budgets that hold amounts by reservation, so that
//! concurrent spenders cannot together pass the limit.
//!
//! A budget's check is `used + reserved + amount <= limit`, where `used` is the metric's total
//! in the budget's current period and `reserved` the sum of the live reservations: one atomic
//! step per reservation on either backend. No budget means unlimited: a reservation is still
//! made (so commit and release work the same), never refused.

use time::{Date, Month, OffsetDateTime};

use crate::domain::ids::{path_id, valid_id};

path_id!(
    /// Whose usage: a user, a workspace, an API key.
    Subject, "subject", "", valid_id
);
path_id!(
    /// What is metered: `tokens`, `cost_micros`, ...
    MetricName, "metric", "", valid_id
);
path_id!(
    /// A reservation's id (a UUID the service makes).
    ReservationId, "reservation id", "", valid_id
);

/// Largest amount of one event, reservation or budget: 2^53 - 1, exact in every JSON reader.
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;
/// Longest reservation: one day.
pub const MAX_RESERVATION_TTL_MS: u64 = 86_400_000;
/// Most periods one totals read covers.
pub const MAX_PERIODS: usize = 400;

/// A budget's period, and the buckets totals are kept in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The bucket of a moment: `2026-11-26` or `2026-11` (UTC).
    pub fn bucket(self, at_us: u64) -> String {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_us) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        self.bucket_of(at.date())
    }

    fn bucket_of(self, date: Date) -> String {
        match self {
            Self::Day => format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            ),
            Self::Month => format!("{:04}-{:02}", date.year(), u8::from(date.month())),
        }
    }

    /// The buckets from `from` to `to` (inclusive), at most `MAX_PERIODS`.
    pub fn buckets(self, from: Date, to: Date) -> Result<Vec<String>, InvalidRange> {
        if from > to {
            return Err(InvalidRange("from is after to"));
        }
        let mut buckets = Vec::new();
        let mut date = match self {
            Self::Day => from,
            Self::Month => Date::from_calendar_date(from.year(), from.month(), 1)
                .map_err(|_| InvalidRange("no such date"))?,
        };
        while date <= to {
            if buckets.len() == MAX_PERIODS {
                return Err(InvalidRange("the range spans more than 400 periods"));
            }
            buckets.push(self.bucket_of(date));
            date = match self {
                Self::Day => date.next_day(),
                Self::Month => next_month(date),
            }
            .ok_or(InvalidRange("the range ends past the calendar"))?;
        }
        Ok(buckets)
    }
}

fn next_month(date: Date) -> Option<Date> {
    let (year, month) = match date.month() {
        Month::December => (date.year() + 1, Month::January),
        month => (date.year(), month.next()),
    };
    Date::from_calendar_date(year, month, 1).ok()
}

/// A `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let number = |part: &str| -> Option<u16> {
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let month = Month::try_from(u8::try_from(number(month)?).ok()?).ok()?;
    let day = u8::try_from(number(day)?).ok()?;
    Date::from_calendar_date(i32::from(number(year)?), month, day).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid range: {0}")]
pub struct InvalidRange(pub &'static str);

/// One metered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    pub event_id: String,
    pub metric: MetricName,
    pub amount: u64,
    pub at_us: u64,
}

/// How long what is metered is kept and deduplicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLimits {
    /// An `event_id` seen within this window is not counted again.
    pub dedup_window_ms: u64,
    /// How long a day's totals are kept; a month's, a month longer.
    pub retention_ms: u64,
}

/// One bucket of a subject's totals: a day (`2026-11-26`) or a month (`2026-11`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub period: Period,
    pub name: String,
}

/// One metric's total in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    pub bucket: String,
    pub metric: String,
    pub amount: u64,
}

/// Which budget: one subject's limit on one metric (`/v1/budgets/{subject}/{metric}`). Written
/// `subject/metric` where one string names it (inventories and backups); neither part can hold
/// a `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetId {
    pub subject: Subject,
    pub metric: MetricName,
}

impl BudgetId {
    /// The `subject/metric` that `Display` writes; the error says which part is wrong.
    pub fn parse(id: &str) -> Result<Self, String> {
        let (subject, metric) = id.split_once('/').ok_or("a budget id is subject/metric")?;
        Ok(Self {
            subject: Subject::parse(subject).map_err(|e| e.to_string())?,
            metric: MetricName::parse(metric).map_err(|e| e.to_string())?,
        })
    }
}

impl std::fmt::Display for BudgetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.subject, self.metric)
    }
}

/// A budget: at most `limit` of a metric per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetRule {
    pub limit: u64,
    pub period: Period,
}

/// A budget as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStatus {
    pub rule: BudgetRule,
    /// The metric's total in the current period.
    pub used: u64,
    /// Held by live reservations.
    pub reserved: u64,
}

impl BudgetStatus {
    pub fn remaining(&self) -> u64 {
        self.rule
            .limit
            .saturating_sub(self.used)
            .saturating_sub(self.reserved)
    }
}

/// What a reservation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Held until `expires_at_us`; `remaining` after it (`None`: no budget, unlimited).
    Granted {
        remaining: Option<u64>,
        expires_at_us: u64,
    },
    /// It does not fit; nothing was held.
    Exceeded { remaining: u64 },
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Recorded `amount` as usage and returned the rest of the reservation.
    Done { returned: u64 },
    /// More than was reserved; nothing changed.
    TooMuch { reserved: u64 },
    /// No live reservation by that id (committed, released or expired).
    NotFound,
}

/// Whether `amount` fits a budget as it stands.
pub fn fits(status: &BudgetStatus, amount: u64) -> bool {
    status
        .used
        .saturating_add(status.reserved)
        .saturating_add(amount)
        <= status.rule.limit
}

#[cfg(test)]
mod tests {
    use crate::capabilities::usage::model::*;

    fn date(text: &str) -> Date {
        parse_date(text).unwrap()
    }

    #[test]
    fn buckets_are_utc_days_and_months() {
        // 2026-11-26T23:59:59.999999Z and one microsecond later.
        let end_of_day = 1_795_737_599_999_999;
        assert_eq!(Period::Day.bucket(end_of_day), "2026-11-26");
        assert_eq!(Period::Day.bucket(end_of_day + 1), "2026-11-27");
        assert_eq!(Period::Month.bucket(end_of_day), "2026-11");
        let range = Period::Day.buckets(date("2026-02-27"), date("2026-03-02"));
        assert_eq!(
            range.unwrap(),
            ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]
        );
        let months = Period::Month.buckets(date("2025-11-15"), date("2026-02-01"));
        assert_eq!(
            months.unwrap(),
            ["2025-11", "2025-12", "2026-01", "2026-02"]
        );
        assert!(
            Period::Day
                .buckets(date("2026-01-02"), date("2026-01-01"))
                .is_err()
        );
        assert!(
            Period::Day
                .buckets(date("2020-01-01"), date("2026-01-01"))
                .is_err()
        );
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-01-01",
            "2026-1-01",
            "2026-01-01x",
            "+026-01-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_budget_holds_used_and_reserved_together() {
        let status = BudgetStatus {
            rule: BudgetRule {
                limit: 100,
                period: Period::Day,
            },
            used: 60,
            reserved: 30,
        };
        assert_eq!(status.remaining(), 10);
        assert!(fits(&status, 10));
        assert!(!fits(&status, 11));
        let over = BudgetStatus {
            used: 200,
            ..status
        };
        assert_eq!(over.remaining(), 0);
        assert!(!fits(&over, 0));
    }

    #[test]
    fn a_budget_id_reads_back_what_it_writes_and_nothing_else() {
        let id = BudgetId::parse("user-42/tokens").unwrap();
        assert_eq!(id.subject.as_str(), "user-42");
        assert_eq!(id.metric.as_str(), "tokens");
        assert_eq!(id.to_string(), "user-42/tokens");
        for bad in [
            "user-42",
            "/tokens",
            "user-42/",
            "a/b/c",
            "user 42/tokens",
            "",
        ] {
            assert!(BudgetId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
