//! Job queues with leases: the state machine of one queue as pure functions of its state and
//! the time (µs since the epoch). The memory adapter runs it as it is; the Redis scripts
//! (`queue_*.lua`, sharing `queue_common.lua`) mirror it with Redis's `TIME`.
//!
//! A job is `delayed` (not before `available_at`), `ready` (9 first, FIFO within a priority),
//! `leased` (one holder, named by its lease token, until `lease_expires`), `done` or `dead`.
//! Every lease counts an attempt. A lease that ends without an ack (it expired, or the holder
//! nacked) retries the job after its back-off, or, once `attempt == max_attempts`, makes it dead.
//! Due delays and expired leases are promoted by every operation on the queue (lease, enqueue,
//! counts...): no reaper runs beside the service. A token whose lease expired can never ack,
//! nack or heartbeat the job again, even before another worker leased it.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::ids::{path_id, valid_id};

path_id!(
    /// A queue's name.
    QueueName, "queue name", "", valid_id
);
path_id!(
    /// A job's id (a UUID the service makes).
    JobId, "job id", "", valid_id
);

pub const MAX_PRIORITY: u8 = 9;
/// Longest long poll of a lease.
pub const MAX_WAIT_MS: u64 = 20_000;
/// Most jobs one lease call takes.
pub const MAX_LEASE_COUNT: usize = 100;
/// Most attempts a job may have.
pub const MAX_ATTEMPTS: u32 = 1000;
/// How long a finished job stays visible by id.
pub const DONE_RETENTION_US: u64 = 3_600_000_000;
/// How long a dead job stays in the dead letters (to look at, or redrive): 14 days.
pub const DEAD_RETENTION_US: u64 = 14 * 24 * 3_600_000_000;
/// Longest `last_error` kept, in characters.
pub const MAX_ERROR_CHARS: usize = 1024;
/// Longest back-off step (`base_ms`, `max_ms`): a day.
pub const MAX_BACKOFF_MS: u64 = 24 * 3_600_000;
/// Longest lease: 12 hours.
pub const MAX_VISIBILITY_MS: u64 = 12 * 3_600_000;
/// Longest delay of an enqueue or a nack: 30 days.
pub const MAX_DELAY_MS: u64 = 30 * 24 * 3_600_000;
/// The largest enqueue sequence number a job may carry in: the queue's counter goes on from
/// it, and must stay exact in Lua's doubles (below 2^53) for as long as the queue lives.
pub const MAX_RESTORED_SEQ: u64 = 1 << 50;
/// How far ahead of this machine's clock a restored job's times may be: the machine that took
/// the backup may have run ahead.
const CLOCK_SLACK_US: u64 = 3_600_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackoffKind {
    Fixed,
    Exponential,
}

/// How long a failed attempt waits before the next: `base_ms`, or `base_ms × 2^(attempt-1)`,
/// at most `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    pub kind: BackoffKind,
    #[schema(minimum = 0, maximum = 86400000, example = 1000)]
    pub base_ms: u64,
    #[schema(minimum = 0, maximum = 86400000, example = 60000)]
    pub max_ms: u64,
}

impl Default for Backoff {
    /// 1 s, doubling, at most 5 minutes.
    fn default() -> Self {
        Self {
            kind: BackoffKind::Exponential,
            base_ms: 1000,
            max_ms: 300_000,
        }
    }
}

impl Backoff {
    /// The wait before the attempt after `attempt` (1-based) failed.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let delay = match self.kind {
            BackoffKind::Fixed => self.base_ms,
            BackoffKind::Exponential => {
                let doublings = attempt.saturating_sub(1).min(40);
                self.base_ms.saturating_mul(1 << doublings)
            }
        };
        delay.min(self.max_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Delayed,
    Ready,
    Leased,
    Done,
    Dead,
}

/// A job to enqueue, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The payload's JSON text, as the caller sent it.
    pub payload: String,
    pub priority: u8,
    pub delay_ms: u64,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub dedup_key: Option<String>,
    /// How long `dedup_key` names this job (`queues.dedup_window_seconds`).
    pub dedup_window_ms: u64,
}

/// One job and where it is. (Serialised as a backup holds it: `payload` is the JSON text the
/// caller sent, and a lease token is never written out.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub id: String,
    pub payload: String,
    pub priority: u8,
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub enqueued_at_us: u64,
    /// Delayed: when it becomes ready; leased: when the lease ends; done or dead: when.
    pub at_us: u64,
    #[serde(skip)]
    pub lease_token: Option<String>,
    pub last_error: Option<String>,
    /// Enqueue order within the queue (FIFO within a priority).
    pub seq: u64,
}

impl Job {
    /// Whether a job that entered by another door than enqueue (a restore) is one this
    /// service can have made: every number within the bounds enqueue, lease and nack keep, so
    /// that no later operation on it overflows or answers 500. `now_us` is this clock.
    pub fn check_bounds(&self, now_us: u64) -> Result<(), String> {
        if self.priority > MAX_PRIORITY {
            return Err(format!("priority: 0 to {MAX_PRIORITY}"));
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(format!("max_attempts: 1 to {MAX_ATTEMPTS}"));
        }
        if self.attempt > self.max_attempts {
            return Err("attempt: at most max_attempts".into());
        }
        if self.backoff.base_ms > MAX_BACKOFF_MS || self.backoff.max_ms > MAX_BACKOFF_MS {
            return Err(format!("backoff: base_ms and max_ms 0 to {MAX_BACKOFF_MS}"));
        }
        if self.seq > MAX_RESTORED_SEQ {
            return Err(format!("seq: at most 2^50 ({MAX_RESTORED_SEQ})"));
        }
        let latest = now_us + CLOCK_SLACK_US;
        if self.enqueued_at_us > latest {
            return Err("enqueued_at_us: not in the future".into());
        }
        let furthest = MAX_DELAY_MS.max(MAX_BACKOFF_MS).max(MAX_VISIBILITY_MS) * 1000;
        if self.at_us > latest + furthest {
            return Err("at_us: at most 30 days ahead".into());
        }
        if self
            .last_error
            .as_ref()
            .is_some_and(|e| e.chars().count() > MAX_ERROR_CHARS)
        {
            return Err(format!("last_error: at most {MAX_ERROR_CHARS} characters"));
        }
        Ok(())
    }
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub id: String,
    pub payload: String,
    pub attempt: u32,
    pub lease_token: String,
    pub lease_expires_us: u64,
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub delayed: u64,
    pub ready: u64,
    pub leased: u64,
    pub done: u64,
    pub dead: u64,
}

/// One queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    jobs: HashMap<String, Job>,
    /// (9 − priority, seq, id): the first is the next to lease.
    ready: BTreeSet<(u8, u64, String)>,
    delayed: BTreeSet<(u64, String)>,
    leased: BTreeSet<(u64, String)>,
    dead: BTreeSet<(u64, String)>,
    done: BTreeSet<(u64, String)>,
    /// dedup key → (job id, until µs).
    dedup: HashMap<String, (String, u64)>,
    seq: u64,
    /// What `weight` reports, kept up to date as jobs come and go (recounting every job on
    /// each call would make every operation on a long queue cost its length).
    bytes: usize,
}

/// Bytes one job holds, roughly: its map and set entries, its id twice, its payload.
fn job_bytes(job: &Job) -> usize {
    // A `last_error` (at most 1,024 characters) is not counted: the figure must be the same
    // when the job leaves as when it came.
    160 + job.id.len() * 2 + job.payload.len()
}

/// Bytes one dedup key holds, roughly.
fn dedup_bytes(key: &str) -> usize {
    key.len() + 80
}

impl QueueState {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.dedup.is_empty()
    }

    /// The ids of every job not yet done, for backups.
    pub fn unfinished(&self) -> impl Iterator<Item = &str> {
        self.jobs
            .values()
            .filter(|job| job.state != JobState::Done)
            .map(|job| job.id.as_str())
    }

    /// Writes `job` as a backup holds it (a restore): same id, payload, priority, attempts,
    /// back-off, last error and place in the order. A leased job goes back to ready (its lease
    /// means nothing after a restore; the attempt it used still counts); a done job is not
    /// written. With `only_if_absent` an existing job of that id is left alone. Returns whether
    /// it wrote.
    pub fn restore(&mut self, job: &Job, only_if_absent: bool, now: u64) -> bool {
        self.promote(now);
        if job.state == JobState::Done || (only_if_absent && self.jobs.contains_key(&job.id)) {
            return false;
        }
        self.forget(&job.id);
        let mut job = job.clone();
        job.lease_token = None;
        if job.state == JobState::Leased {
            job.state = JobState::Ready;
        }
        self.seq = self.seq.max(job.seq);
        self.bytes += job_bytes(&job);
        let (id, state, at) = (job.id.clone(), job.state, job.at_us);
        self.jobs.insert(id.clone(), job);
        match state {
            JobState::Delayed => {
                self.delayed.insert((at, id));
            }
            JobState::Dead => {
                self.dead.insert((at, id));
            }
            _ => self.make_ready(&id),
        }
        true
    }

    /// Removes a job and its place in every set.
    fn forget(&mut self, id: &str) {
        let Some(job) = self.jobs.remove(id) else {
            return;
        };
        self.bytes = self.bytes.saturating_sub(job_bytes(&job));
        let key = (job.at_us, id.to_string());
        self.ready
            .remove(&(MAX_PRIORITY - job.priority, job.seq, id.to_string()));
        for set in [
            &mut self.delayed,
            &mut self.leased,
            &mut self.dead,
            &mut self.done,
        ] {
            set.remove(&key);
        }
    }

    /// Moves due delays to ready and expired leases to a retry or the dead list; forgets
    /// finished jobs past their retention and dedup keys past their window.
    pub fn promote(&mut self, now: u64) {
        // Leases first: a retry whose back-off has already passed is ready at once.
        while let Some((expires, id)) = self.leased.first().cloned() {
            if expires > now {
                break;
            }
            self.leased.remove(&(expires, id.clone()));
            // Counted from the lease's end, whenever that is noticed.
            self.retry_or_bury(&id, None, Some("the lease expired".into()), expires);
        }
        while let Some((at, id)) = self.delayed.first().cloned() {
            if at > now {
                break;
            }
            self.delayed.remove(&(at, id.clone()));
            self.make_ready(&id);
        }
        for (finished, retention) in [
            (&mut self.done, DONE_RETENTION_US),
            (&mut self.dead, DEAD_RETENTION_US),
        ] {
            while let Some((at, id)) = finished.first().cloned() {
                if at + retention > now {
                    break;
                }
                finished.remove(&(at, id.clone()));
                if let Some(job) = self.jobs.remove(&id) {
                    self.bytes = self.bytes.saturating_sub(job_bytes(&job));
                }
            }
        }
        let bytes = &mut self.bytes;
        self.dedup.retain(|key, (_, until)| {
            let keep = *until > now;
            if !keep {
                *bytes = bytes.saturating_sub(dedup_bytes(key));
            }
            keep
        });
    }

    fn make_ready(&mut self, id: &str) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.state = JobState::Ready;
            self.ready
                .insert((MAX_PRIORITY - job.priority, job.seq, id.to_string()));
        }
    }

    /// After an attempt that failed at `at`: retried `delay_ms` (else its back-off) later, or
    /// dead when its attempts are spent. The caller has taken it out of the leased set.
    fn retry_or_bury(&mut self, id: &str, delay_ms: Option<u64>, error: Option<String>, at: u64) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        job.lease_token = None;
        if error.is_some() {
            job.last_error = error;
        }
        if job.attempt >= job.max_attempts {
            job.state = JobState::Dead;
            job.at_us = at;
            self.dead.insert((at, id.to_string()));
            return;
        }
        let delay = delay_ms.unwrap_or_else(|| job.backoff.delay_ms(job.attempt));
        if delay == 0 {
            self.make_ready(id);
        } else {
            job.state = JobState::Delayed;
            job.at_us = at + delay * 1000;
            self.delayed.insert((job.at_us, id.to_string()));
        }
    }

    /// Adds a job as `id`, or returns the job a live `dedup_key` names: (job id, created).
    pub fn enqueue(&mut self, new: &NewJob, id: &str, now: u64) -> (String, bool) {
        self.promote(now);
        if let Some(key) = &new.dedup_key
            && let Some((existing, _)) = self.dedup.get(key)
        {
            return (existing.clone(), false);
        }
        self.seq += 1;
        let job = Job {
            id: id.to_string(),
            payload: new.payload.clone(),
            priority: new.priority,
            state: JobState::Delayed,
            attempt: 0,
            max_attempts: new.max_attempts,
            backoff: new.backoff,
            enqueued_at_us: now,
            at_us: now + new.delay_ms * 1000,
            lease_token: None,
            last_error: None,
            seq: self.seq,
        };
        let at = job.at_us;
        self.bytes += job_bytes(&job);
        self.jobs.insert(id.to_string(), job);
        if new.delay_ms == 0 {
            self.make_ready(id);
        } else {
            self.delayed.insert((at, id.to_string()));
        }
        if let Some(key) = &new.dedup_key {
            self.bytes += dedup_bytes(key);
            self.dedup.insert(
                key.clone(),
                (id.to_string(), now + new.dedup_window_ms * 1000),
            );
        }
        (id.to_string(), true)
    }

    /// Leases up to `tokens.len()` ready jobs, highest priority first, FIFO within one.
    pub fn lease(&mut self, tokens: &[String], visibility_ms: u64, now: u64) -> Vec<Leased> {
        self.promote(now);
        let mut out = Vec::new();
        for token in tokens {
            let Some(first) = self.ready.pop_first() else {
                break;
            };
            let id = first.2;
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            job.state = JobState::Leased;
            job.attempt += 1;
            job.at_us = now + visibility_ms * 1000;
            job.lease_token = Some(token.clone());
            self.leased.insert((job.at_us, id.clone()));
            out.push(Leased {
                id,
                payload: job.payload.clone(),
                attempt: job.attempt,
                lease_token: token.clone(),
                lease_expires_us: job.at_us,
            });
        }
        out
    }

    /// When something may next become leasable without an enqueue (a delay ending, a lease
    /// expiring), if anything.
    pub fn next_change_us(&self) -> Option<u64> {
        let delayed = self.delayed.first().map(|(at, _)| *at);
        let leased = self.leased.first().map(|(at, _)| *at);
        delayed.into_iter().chain(leased).min()
    }

    /// The job if `token` holds a live lease on it.
    fn held(&self, id: &str, token: &str, now: u64) -> Option<&Job> {
        self.jobs.get(id).filter(|job| {
            job.state == JobState::Leased
                && job.lease_token.as_deref() == Some(token)
                && job.at_us > now
        })
    }

    pub fn ack(&mut self, id: &str, token: &str, now: u64) -> bool {
        self.promote(now);
        let Some(expires) = self.held(id, token, now).map(|job| job.at_us) else {
            return false;
        };
        self.leased.remove(&(expires, id.to_string()));
        if let Some(job) = self.jobs.get_mut(id) {
            job.state = JobState::Done;
            job.at_us = now;
            job.lease_token = None;
        }
        self.done.insert((now, id.to_string()));
        true
    }

    /// The job's state after a failed attempt, or `None` when `token` does not hold it.
    pub fn nack(
        &mut self,
        id: &str,
        token: &str,
        delay_ms: Option<u64>,
        error: Option<String>,
        now: u64,
    ) -> Option<JobState> {
        self.promote(now);
        let expires = self.held(id, token, now)?.at_us;
        self.leased.remove(&(expires, id.to_string()));
        self.retry_or_bury(id, delay_ms, error, now);
        self.jobs.get(id).map(|job| job.state)
    }

    /// The lease's new end, or `None` when `token` does not hold the job.
    pub fn heartbeat(
        &mut self,
        id: &str,
        token: &str,
        visibility_ms: u64,
        now: u64,
    ) -> Option<u64> {
        self.promote(now);
        let expires = self.held(id, token, now)?.at_us;
        self.leased.remove(&(expires, id.to_string()));
        let until = now + visibility_ms * 1000;
        self.leased.insert((until, id.to_string()));
        if let Some(job) = self.jobs.get_mut(id) {
            job.at_us = until;
        }
        Some(until)
    }

    pub fn get(&mut self, id: &str, now: u64) -> Option<Job> {
        self.promote(now);
        self.jobs.get(id).cloned()
    }

    pub fn counts(&mut self, now: u64) -> Counts {
        self.promote(now);
        Counts {
            delayed: self.delayed.len() as u64,
            ready: self.ready.len() as u64,
            leased: self.leased.len() as u64,
            done: self.done.len() as u64,
            dead: self.dead.len() as u64,
        }
    }

    /// Dead jobs, oldest death first.
    pub fn dead(&mut self, limit: usize, now: u64) -> Vec<Job> {
        self.promote(now);
        self.dead
            .iter()
            .take(limit)
            .filter_map(|(_, id)| self.jobs.get(id).cloned())
            .collect()
    }

    /// Gives a dead job its attempts back and makes it ready; false when it is not dead.
    pub fn redrive(&mut self, id: &str, now: u64) -> bool {
        self.promote(now);
        let Some(job) = self.jobs.get_mut(id).filter(|j| j.state == JobState::Dead) else {
            return false;
        };
        let died = job.at_us;
        job.attempt = 0;
        self.dead.remove(&(died, id.to_string()));
        self.make_ready(id);
        true
    }

    /// When everything this queue holds will have been forgotten, if nothing live (ready,
    /// delayed, leased) is in it: the store may drop the whole queue then. `None` while a live
    /// job needs it.
    pub fn idle_until(&self) -> Option<u64> {
        if !(self.ready.is_empty() && self.delayed.is_empty() && self.leased.is_empty()) {
            return None;
        }
        let done = self.done.last().map(|(at, _)| at + DONE_RETENTION_US);
        let dead = self.dead.last().map(|(at, _)| at + DEAD_RETENTION_US);
        let dedup = self.dedup.values().map(|(_, until)| *until).max();
        Some(done.max(dead).max(dedup).unwrap_or(0))
    }

    /// Bytes held, roughly.
    pub fn weight(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests;
