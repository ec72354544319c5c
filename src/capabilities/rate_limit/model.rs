//! Rate limits: the three algorithms as pure functions of a rule, the state stored for it and
//! the time (microseconds since the epoch). The memory adapter runs them as they are, the
//! property tests run them on a simulated clock, and `rate_limit_check.lua` mirrors them line
//! for line on Redis, where the time is Redis's `TIME`.
//!
//! - `sliding_window`: at most `limit` units in any window of `window_ms`, counted exactly: the
//!   state is a log of (time, cost) entries younger than the window (a Redis sorted set). The
//!   two-window approximation would keep two counters instead of a log, but it admits more
//!   than `limit` in some windows whenever traffic is uneven, which is exactly the complaint a
//!   limiter exists to prevent. The log is bounded by `limit` entries, so `limit` is capped at
//!   [`MAX_SLIDING_LIMIT`].
//! - `fixed_window`: a counter per window of `window_ms`, windows aligned to the epoch.
//! - `token_bucket`: GCRA (one "theoretical arrival time" per rule): `limit` tokens refill per
//!   `window_ms`, at most `burst` (default `limit`) at once. The emission interval
//!   `window_ms / limit` is rounded up to a whole microsecond, so the rate never exceeds
//!   `limit` per window.
//!
//! Several rules are all-or-nothing: each is assessed first, and only when every one allows is
//! the cost consumed from all of them.

use std::collections::HashMap;

use crate::domain::ids::{path_id, valid_id};

path_id!(
    /// The key a rate limit counts for (a user, an API key, an IP, ...).
    RateLimitKey, "rate-limit key", "", valid_id
);

/// Largest `limit` of a sliding window: its log holds up to `limit` entries.
pub const MAX_SLIDING_LIMIT: u64 = 100_000;
/// Largest `limit` or `burst` of the other algorithms.
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// Longest window: 30 days.
pub const MAX_WINDOW_MS: u64 = 30 * 24 * 3_600_000;
/// Rules in one check.
pub const MAX_RULES: usize = 10;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    SlidingWindow,
    FixedWindow,
    TokenBucket,
}

/// One limit, resolved (a named policy is looked up before it gets here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: Option<String>,
    pub algorithm: Algorithm,
    pub limit: u64,
    pub window_ms: u64,
    /// The token bucket's capacity; `limit` for the window algorithms.
    pub burst: u64,
}

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRule(pub String);

impl Rule {
    /// Checks the numbers; `burst` only for `token_bucket` (default `limit`).
    pub fn new(
        name: Option<String>,
        algorithm: Algorithm,
        limit: u64,
        window_ms: u64,
        burst: Option<u64>,
    ) -> Result<Self, InvalidRule> {
        if name
            .as_deref()
            .is_some_and(|n| !valid_id(n) || n.len() > 64)
        {
            return Err(InvalidRule(
                "a rule's name is 1-64 bytes of [A-Za-z0-9._:@-]".into(),
            ));
        }
        let max_limit = match algorithm {
            Algorithm::SlidingWindow => MAX_SLIDING_LIMIT,
            _ => MAX_LIMIT,
        };
        if !(1..=max_limit).contains(&limit) {
            return Err(InvalidRule(format!("limit must be from 1 to {max_limit}")));
        }
        if !(1..=MAX_WINDOW_MS).contains(&window_ms) {
            return Err(InvalidRule(format!(
                "window_ms must be from 1 to {MAX_WINDOW_MS} (30 days)"
            )));
        }
        let burst = match (algorithm, burst) {
            (Algorithm::TokenBucket, Some(burst)) => burst,
            (_, Some(_)) => {
                return Err(InvalidRule("burst applies to token_bucket only".into()));
            }
            (_, None) => limit,
        };
        let rule = Self {
            name,
            algorithm,
            limit,
            window_ms,
            burst,
        };
        if !(1..=MAX_LIMIT).contains(&burst)
            || u128::from(burst) * u128::from(rule.interval_us()) > u128::from(MAX_WINDOW_MS) * 1000
        {
            return Err(InvalidRule(format!(
                "burst must be from 1 to {MAX_LIMIT}, and take at most 30 days to refill \
                 (burst × window_ms / limit)"
            )));
        }
        Ok(rule)
    }

    /// The most one check may cost: a larger cost could never pass.
    pub fn capacity(&self) -> u64 {
        self.burst
    }

    /// Names the rule's state under a key: rules of the same shape share it, so a named policy
    /// and the same rule spelled out count together.
    pub fn state_id(&self) -> String {
        match self.algorithm {
            Algorithm::SlidingWindow => format!("sw:{}:{}", self.limit, self.window_ms),
            Algorithm::FixedWindow => format!("fw:{}:{}", self.limit, self.window_ms),
            Algorithm::TokenBucket => {
                format!("tb:{}:{}:{}", self.limit, self.window_ms, self.burst)
            }
        }
    }

    pub fn window_us(&self) -> u64 {
        self.window_ms * 1000
    }

    /// GCRA's emission interval: the time one token takes to refill, rounded up.
    pub fn interval_us(&self) -> u64 {
        self.window_us().div_ceil(self.limit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Counts the cost when every rule allows it.
    Consume,
    /// Answers whether the cost would pass now; changes nothing.
    Peek,
}

/// One check of a key against its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub rules: Vec<Rule>,
    /// 1 or more; a cost of 0 is a peek.
    pub cost: u64,
    pub mode: Mode,
}

impl Check {
    /// Whether the check changes state: a consume of a cost above 0.
    pub fn consumes(&self) -> bool {
        self.mode == Mode::Consume && self.cost > 0
    }

    /// The cost each rule is assessed for: a peek of cost 0 asks about one unit.
    pub fn assessed_cost(&self) -> u64 {
        self.cost.max(1)
    }
}

/// What one rule answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleOutcome {
    /// Whether this rule alone would let the cost pass.
    pub allowed: bool,
    /// Units left after this check (after its consumption, when it consumed).
    pub remaining: u64,
    /// Microseconds until the rule is back at its full `limit` (0: it is).
    pub reset_after_us: u64,
    /// When this rule denies: microseconds until the same cost would pass, without other
    /// traffic.
    pub retry_after_us: Option<u64>,
}

/// The answer to a check: allowed only when every rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// In the order of the check's rules.
    pub rules: Vec<RuleOutcome>,
    /// Decided without Redis while it is down (per-instance limits, or failing open).
    pub degraded: bool,
}

impl Decision {
    /// Microseconds until the whole check would pass: the longest wait of a denying rule.
    pub fn retry_after_us(&self) -> Option<u64> {
        self.rules.iter().filter_map(|r| r.retry_after_us).max()
    }

    /// What a limiter that fails open answers: allowed, every rule at its full limit.
    pub fn fail_open(check: &Check) -> Self {
        Self {
            allowed: true,
            rules: check
                .rules
                .iter()
                .map(|rule| RuleOutcome {
                    allowed: true,
                    remaining: rule.capacity(),
                    reset_after_us: 0,
                    retry_after_us: None,
                })
                .collect(),
            degraded: true,
        }
    }
}

/// The state of one rule under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleState {
    /// (time, cost) entries, oldest first, and their total cost.
    Sliding { log: Vec<(u64, u64)>, total: u64 },
    /// The window's index (`now / window_us`) and what it counted.
    Fixed { window: u64, count: u64 },
    /// GCRA's theoretical arrival time.
    Bucket { tat: u64 },
}

impl RuleState {
    fn fresh(rule: &Rule) -> Self {
        match rule.algorithm {
            Algorithm::SlidingWindow => Self::Sliding {
                log: Vec::new(),
                total: 0,
            },
            Algorithm::FixedWindow => Self::Fixed {
                window: 0,
                count: 0,
            },
            Algorithm::TokenBucket => Self::Bucket { tat: 0 },
        }
    }

    /// Forgets what the passing of time has undone by `now`: expired log entries, a past
    /// window. Changes nothing a check could observe.
    fn advance(&mut self, rule: &Rule, now: u64) {
        match self {
            Self::Sliding { log, total } => {
                let expired = log
                    .iter()
                    .take_while(|(at, _)| at + rule.window_us() <= now)
                    .count();
                for (_, cost) in log.drain(..expired) {
                    *total -= cost;
                }
            }
            Self::Fixed { window, count } => {
                let current = now / rule.window_us();
                if *window != current {
                    *window = current;
                    *count = 0;
                }
            }
            Self::Bucket { tat } => *tat = (*tat).max(now),
        }
    }

    /// Whether `cost` passes now, and if not, how long until it would. `advance` comes first.
    fn assess(&self, rule: &Rule, cost: u64, now: u64) -> Option<u64> {
        match self {
            Self::Sliding { log, total } => {
                let excess = (total + cost).checked_sub(rule.limit).filter(|e| *e > 0)?;
                // The entry whose expiry frees the `excess`-th unit, oldest first.
                let mut freed = 0;
                let at = log
                    .iter()
                    .find(|(_, cost)| {
                        freed += cost;
                        freed >= excess
                    })
                    .map_or(now, |(at, _)| *at);
                Some((at + rule.window_us()).saturating_sub(now))
            }
            Self::Fixed { window, count } => {
                (count + cost > rule.limit).then(|| (window + 1) * rule.window_us() - now)
            }
            Self::Bucket { tat } => {
                let allow_at = (tat + cost * rule.interval_us())
                    .saturating_sub(rule.burst * rule.interval_us());
                (allow_at > now).then(|| allow_at - now)
            }
        }
    }

    fn consume(&mut self, rule: &Rule, cost: u64, now: u64) {
        match self {
            Self::Sliding { log, total } => {
                log.push((now, cost));
                *total += cost;
            }
            Self::Fixed { count, .. } => *count += cost,
            Self::Bucket { tat } => *tat += cost * rule.interval_us(),
        }
    }

    /// (remaining, microseconds until the rule is at its full limit again).
    fn report(&self, rule: &Rule, now: u64) -> (u64, u64) {
        match self {
            Self::Sliding { log, total } => {
                let reset = log
                    .last()
                    .map_or(0, |(at, _)| (at + rule.window_us()).saturating_sub(now));
                (rule.limit.saturating_sub(*total), reset)
            }
            Self::Fixed { window, count } => {
                // A stored state may be of a window that has passed (it is advanced only when
                // its rule is checked): then nothing is counted.
                let end = (window + 1) * rule.window_us();
                if *count == 0 || end <= now {
                    (rule.limit, 0)
                } else {
                    (rule.limit.saturating_sub(*count), end - now)
                }
            }
            Self::Bucket { tat } => {
                let used = tat.saturating_sub(now);
                let capacity = rule.burst * rule.interval_us();
                (capacity.saturating_sub(used) / rule.interval_us(), used)
            }
        }
    }

    /// Microseconds from `now` until this state means nothing (it equals a fresh one).
    pub fn life_us(&self, rule: &Rule, now: u64) -> u64 {
        self.report(rule, now).1
    }
}

/// The states of one key's rules, by `Rule::state_id`, each with its rule (so that how long
/// it matters is known even when a later check names other rules).
pub type KeyState = HashMap<String, (Rule, RuleState)>;

/// Runs `check` against `states` at `now`: all-or-nothing, changing `states` only when the
/// check consumes and every rule allows. Returns the decision and how long (µs) the key's
/// state matters from now on (0: it can be forgotten).
pub fn decide(states: &mut KeyState, check: &Check, now: u64) -> (Decision, u64) {
    let cost = check.assessed_cost();
    let mut current: Vec<RuleState> = check
        .rules
        .iter()
        .map(|rule| {
            let mut state = states
                .get(&rule.state_id())
                .map(|(_, state)| state.clone())
                .unwrap_or_else(|| RuleState::fresh(rule));
            state.advance(rule, now);
            state
        })
        .collect();
    let waits: Vec<Option<u64>> = check
        .rules
        .iter()
        .zip(&current)
        .map(|(rule, state)| state.assess(rule, cost, now))
        .collect();
    let allowed = waits.iter().all(Option::is_none);
    if allowed && check.consumes() {
        for (rule, state) in check.rules.iter().zip(current.iter_mut()) {
            state.consume(rule, check.cost, now);
        }
    }
    let rules = check
        .rules
        .iter()
        .zip(&current)
        .zip(&waits)
        .map(|((rule, state), wait)| {
            let (remaining, reset_after_us) = state.report(rule, now);
            RuleOutcome {
                allowed: wait.is_none(),
                remaining,
                reset_after_us,
                retry_after_us: *wait,
            }
        })
        .collect();
    if allowed && check.consumes() {
        for (rule, state) in check.rules.iter().zip(current) {
            states.insert(rule.state_id(), (rule.clone(), state));
        }
    }
    states.retain(|_, (rule, state)| state.life_us(rule, now) > 0);
    let life = states
        .values()
        .map(|(rule, state)| state.life_us(rule, now))
        .max()
        .unwrap_or(0);
    (
        Decision {
            allowed,
            rules,
            degraded: false,
        },
        life,
    )
}

#[cfg(test)]
mod tests;
