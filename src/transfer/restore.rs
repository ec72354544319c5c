//! Restore: each record checked into an item before anything is written, then written per `Mode`.

use super::*;

impl Transfer {
    /// Checks every record of `backup` before anything is written: a known capability, valid
    /// ids, a value of the capability's shape, and (with `tenant`) only that tenant's items.
    pub fn check(&self, backup: &Backup, tenant: Option<&Tenant>) -> Result<Checked, String> {
        let created = backup.header.created_at;
        let mut items = Vec::with_capacity(backup.records.len());
        for (index, record) in backup.records.iter().enumerate() {
            // The header is line 1.
            let line = index + 2;
            let item = self
                .item(record, created)
                .map_err(|why| format!("line {line}: {why}"))?;
            if let Some(tenant) = tenant
                && record.tenant != tenant.as_str()
            {
                return Err(format!(
                    "line {line}: an item of tenant {:?}; this API key restores tenant {:?} only",
                    record.tenant,
                    tenant.as_str()
                ));
            }
            items.push(item);
        }
        Ok(Checked { items })
    }

    pub(super) fn item(&self, record: &Record, created: OffsetDateTime) -> Result<Item, String> {
        let tenant = Tenant::parse(&record.tenant).map_err(|e| format!("tenant: {e}"))?;
        let value = record.value.get();
        let shape = |e: serde_json::Error| format!("value: {e}");
        let capability = Capability::from_name(&record.capability)
            .filter(|c| CAPABILITIES.contains(c))
            .ok_or_else(|| {
                format!(
                    "capability {:?} is not one a backup holds (cache, sessions, agent_states, \
                     pending_actions, locks, queues, usage, budgets)",
                    record.capability
                )
            })?;
        match capability {
            Capability::Cache => {
                let (ns, key) = record
                    .id
                    .split_once('/')
                    .ok_or("a cache id is namespace/key")?;
                let ns = Namespace::parse(ns).map_err(|e| e.to_string())?;
                let key = CacheKey::parse(key).map_err(|e| e.to_string())?;
                let value = CacheValue::parse(
                    bytes::Bytes::copy_from_slice(value.as_bytes()),
                    self.max_value_bytes,
                )
                .map_err(|e| format!("value: {e}"))?;
                let until = record.ttl_ms.map(|ms| created + Duration::from_millis(ms));
                Ok(Item::Cache {
                    tenant,
                    ns,
                    key,
                    value,
                    until,
                })
            }
            Capability::Sessions => {
                let v: SessionValue = serde_json::from_str(value).map_err(shape)?;
                let id = SessionId::parse(&v.session_id).map_err(|e| e.to_string())?;
                if id.as_str() != record.id {
                    return Err("the id differs from the value's session_id".into());
                }
                let user = |raw: &str| UserId::parse(raw).map_err(|e| e.to_string());
                // The bounds a session created through the API keeps.
                let longest = u64::try_from(self.rules.max_lifetime_ms / 1000).unwrap_or(0);
                if v.ttl_seconds > longest {
                    return Err(format!(
                        "ttl_seconds: at most sessions.max_lifetime_seconds ({longest})"
                    ));
                }
                let session = Session {
                    id,
                    user_id: user(&v.user_id)?,
                    workspace_id: v.workspace_id.as_deref().map(user).transpose()?,
                    data: v.data,
                    context: v.context,
                    created_at_ms: unix_ms(v.created_at),
                    last_activity_at_ms: unix_ms(v.last_activity_at),
                    expires_at_ms: unix_ms(v.expires_at),
                    ttl_seconds: v.ttl_seconds.max(1),
                    version: v.version,
                };
                if session.content_bytes() > self.rules.max_bytes {
                    return Err(format!(
                        "data and context: at most sessions.max_session_bytes ({})",
                        self.rules.max_bytes
                    ));
                }
                Ok(Item::Session(tenant, Box::new(session)))
            }
            Capability::AgentStates => {
                let state: AgentState = serde_json::from_str(value).map_err(shape)?;
                ThreadId::parse(&state.thread_id).map_err(|e| e.to_string())?;
                if state.thread_id != record.id {
                    return Err("the id differs from the value's thread_id".into());
                }
                if state.message_count != state.messages.len() as u64 {
                    return Err("message_count differs from the messages held".into());
                }
                Ok(Item::Thread(tenant, Box::new(state)))
            }
            Capability::PendingActions => {
                let action: PendingAction = serde_json::from_str(value).map_err(shape)?;
                if action.token.as_str() != record.id {
                    return Err("the id differs from the value's token".into());
                }
                Ok(Item::Action(tenant, Box::new(action)))
            }
            Capability::Locks => {
                let name = LockName::parse(record.id.as_str()).map_err(|e| e.to_string())?;
                let v: LockValue = serde_json::from_str(value).map_err(shape)?;
                let ceiling =
                    Fence::Restored(v.fencing_token).ceiling(0, crate::store::memory::now_us());
                if v.fencing_token > ceiling {
                    return Err(format!(
                        "fencing_token: at most {ceiling} (this clock plus an hour, and never \
                         above 2^53 - 1): no grant issued {}",
                        v.fencing_token
                    ));
                }
                Ok(Item::Lock(tenant, name, v.fencing_token))
            }
            Capability::Queues => {
                let (queue, id) = record
                    .id
                    .split_once('/')
                    .ok_or("a job id is queue/job_id")?;
                let queue = QueueName::parse(queue).map_err(|e| e.to_string())?;
                JobId::parse(id).map_err(|e| e.to_string())?;
                let job: Job = serde_json::from_str(value).map_err(shape)?;
                if job.id != id {
                    return Err("the id differs from the value's id".into());
                }
                if job.state == JobState::Done {
                    return Err("a backup holds no done job".into());
                }
                job.check_bounds(crate::store::memory::now_us())?;
                serde_json::from_str::<serde::de::IgnoredAny>(&job.payload)
                    .map_err(|e| format!("payload: {e}"))?;
                Ok(Item::Job(tenant, queue, Box::new(job)))
            }
            Capability::Usage => {
                let mut parts = record.id.splitn(3, '/');
                let (Some(subject), Some(period), Some(bucket)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err("a usage id is subject/period/bucket".into());
                };
                let subject = Subject::parse(subject).map_err(|e| e.to_string())?;
                let period = period_named(period).ok_or("the period is day or month")?;
                if !valid_bucket(period, bucket) {
                    return Err(format!("{bucket:?} is not a {} bucket", period.as_str()));
                }
                let amounts: BTreeMap<String, u64> = serde_json::from_str(value).map_err(shape)?;
                let mut totals = Vec::with_capacity(amounts.len());
                for (metric, amount) in amounts {
                    MetricName::parse(metric.as_str()).map_err(|e| e.to_string())?;
                    if amount > MAX_AMOUNT {
                        return Err(format!("{metric}: at most {MAX_AMOUNT}"));
                    }
                    totals.push((metric, amount));
                }
                let ttl_ms = record.ttl_ms.ok_or("usage totals carry their ttl_ms")?;
                Ok(Item::Totals {
                    tenant,
                    subject,
                    bucket: Bucket {
                        period,
                        name: bucket.to_string(),
                    },
                    totals,
                    until: created + Duration::from_millis(ttl_ms),
                })
            }
            Capability::Budgets => {
                let budget = BudgetId::parse(&record.id)?;
                let v: BudgetValue = serde_json::from_str(value).map_err(shape)?;
                // As `PUT .../budgets/{metric}` takes it: 0 (nothing may be spent) included.
                if v.limit > MAX_AMOUNT {
                    return Err(format!("limit: 0 to {MAX_AMOUNT}"));
                }
                Ok(Item::Budget(
                    tenant,
                    budget,
                    BudgetRule {
                        limit: v.limit,
                        period: v.period,
                    },
                ))
            }
            _ => Err("not a capability a backup holds".into()),
        }
    }

    /// Writes every checked item (up to `IN_FLIGHT` at once) and reports what it did;
    /// `progress` is called with the count done every 10,000 items. With `dry_run` nothing is
    /// read or written: the report counts the file's items and the expired ones.
    pub async fn restore(
        &self,
        checked: Checked,
        mode: Mode,
        dry_run: bool,
        progress: impl Fn(u64),
    ) -> StoreResult<Report> {
        let mut report = Report {
            read: checked.items.len() as u64,
            ..Report::default()
        };
        if dry_run {
            let now = OffsetDateTime::now_utc();
            report.expired = checked
                .items
                .iter()
                .filter(|item| self.expired(item, now))
                .count() as u64;
            return Ok(report);
        }
        let mut outcomes = stream::iter(checked.items)
            .map(|item| async move { self.write(item, mode).await })
            .buffer_unordered(IN_FLIGHT);
        let mut done = 0u64;
        while let Some(outcome) = outcomes.next().await {
            match outcome? {
                Outcome::Written => report.written += 1,
                Outcome::Unchanged => report.unchanged += 1,
                Outcome::Skipped => report.skipped += 1,
                Outcome::Expired => report.expired += 1,
                Outcome::Conflict => report.conflicts += 1,
            }
            done += 1;
            if done.is_multiple_of(10_000) {
                progress(done);
            }
        }
        Ok(report)
    }

    pub(super) fn expired(&self, item: &Item, now: OffsetDateTime) -> bool {
        let until = match item {
            Item::Cache { until, .. } => *until,
            Item::Session(_, session) => Some(from_unix_ms(session.expires_at_ms)),
            Item::Thread(_, state) => Some(state.expires_at),
            Item::Action(_, action) => Some(action.record_ends(self.tombstone)),
            Item::Totals { until, .. } => Some(*until),
            Item::Lock(..) | Item::Job(..) | Item::Budget(..) => None,
        };
        until.is_some_and(|until| until <= now)
    }

    pub(super) async fn write(&self, item: Item, mode: Mode) -> StoreResult<Outcome> {
        let now = OffsetDateTime::now_utc();
        if self.expired(&item, now) {
            return Ok(Outcome::Expired);
        }
        let s = &self.stores;
        match item {
            Item::Cache {
                tenant,
                ns,
                key,
                value,
                until,
            } => {
                let expiry = match until.and_then(|until| left_ms(until, now)) {
                    Some(ms) => Expiry::After(Ttl::carried_ms(ms)),
                    None => Expiry::Never,
                };
                if mode == Mode::SkipExisting {
                    let wrote = s
                        .cache
                        .put(&tenant, &ns, &key, &value, expiry, PutCondition::IfAbsent)
                        .await?;
                    return Ok(if wrote {
                        Outcome::Written
                    } else {
                        Outcome::Skipped
                    });
                }
                if let Some(held) = s.cache.get(&tenant, &ns, &key).await?
                    && same_json(&held, &value)
                    && same_expiry(s.cache.ttl(&tenant, &ns, &key).await?, expiry)
                {
                    return Ok(Outcome::Unchanged);
                }
                s.cache
                    .put(&tenant, &ns, &key, &value, expiry, PutCondition::Always)
                    .await?;
                Ok(Outcome::Written)
            }
            Item::Session(tenant, session) => {
                let held = s.sessions.get(&tenant, &session.id, self.rules).await?;
                if let Some(held) = &held {
                    if *held == *session {
                        return Ok(Outcome::Unchanged);
                    }
                    match mode {
                        Mode::SkipExisting => return Ok(Outcome::Skipped),
                        Mode::Merge if held.last_activity_at_ms > session.last_activity_at_ms => {
                            return Ok(Outcome::Conflict);
                        }
                        _ => {
                            s.sessions.delete(&tenant, &session.id).await?;
                        }
                    }
                }
                s.sessions.create(&tenant, &session, self.rules).await?;
                Ok(Outcome::Written)
            }
            Item::Thread(tenant, state) => {
                let thread = ThreadId::parse(&state.thread_id)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                let ttl_seconds = (state.expires_at - state.updated_at)
                    .whole_seconds()
                    .max(1)
                    .unsigned_abs();
                let held = s.agent_states.get(&tenant, &thread, Some(0)).await?;
                if let Some(held) = &held {
                    if held.version == state.version
                        && held.updated_at == state.updated_at
                        && held.message_count == state.message_count
                    {
                        return Ok(Outcome::Unchanged);
                    }
                    match mode {
                        Mode::SkipExisting => return Ok(Outcome::Skipped),
                        Mode::Merge if held.updated_at > state.updated_at => {
                            return Ok(Outcome::Conflict);
                        }
                        _ => {}
                    }
                }
                let only_if_absent = mode == Mode::SkipExisting;
                let wrote = s
                    .agent_states
                    .restore(&tenant, &state, ttl_seconds, only_if_absent)
                    .await?;
                Ok(if wrote {
                    Outcome::Written
                } else {
                    Outcome::Skipped
                })
            }
            Item::Action(tenant, action) => {
                let Some(left) = left_ms(action.record_ends(self.tombstone), now) else {
                    return Ok(Outcome::Expired);
                };
                if s.pending_actions
                    .create(&tenant, &action, Ttl::carried_ms(left))
                    .await?
                {
                    return Ok(Outcome::Written);
                }
                let held = s.pending_actions.get(&tenant, &action.token).await?;
                if held.as_ref() == Some(&*action) {
                    return Ok(Outcome::Unchanged);
                }
                if mode == Mode::SkipExisting {
                    return Ok(Outcome::Skipped);
                }
                // A token is never overwritten: only a pending one takes the file's outcome.
                let token = &action.token;
                let applied = match (action.status, action.confirmed_at, action.cancelled_at) {
                    (ActionStatus::Confirmed, Some(at), _) => matches!(
                        s.pending_actions
                            .confirm(&tenant, token, at, None, self.tombstone)
                            .await?,
                        Confirm::Confirmed(_)
                    ),
                    (ActionStatus::Cancelled, _, Some(at)) => matches!(
                        s.pending_actions
                            .cancel(&tenant, token, at, self.tombstone)
                            .await?,
                        Cancel::Cancelled
                    ),
                    _ => false,
                };
                Ok(if applied {
                    Outcome::Written
                } else {
                    Outcome::Conflict
                })
            }
            Item::Job(tenant, queue, job) => {
                let id = JobId::parse(job.id.as_str())
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                // What the backend holds once this job is written: a lease does not survive.
                let mut restored = (*job).clone();
                if restored.state == JobState::Leased {
                    restored.state = JobState::Ready;
                }
                if let Some(held) = s.queues.get(&tenant, &queue, &id).await? {
                    let held = Job {
                        lease_token: None,
                        ..held
                    };
                    if held == restored {
                        return Ok(Outcome::Unchanged);
                    }
                    match mode {
                        Mode::SkipExisting => return Ok(Outcome::Skipped),
                        // The backend moved the job on (another attempt, or done): kept.
                        Mode::Merge
                            if held.attempt > job.attempt || held.state == JobState::Done =>
                        {
                            return Ok(Outcome::Conflict);
                        }
                        _ => {}
                    }
                }
                let only_if_absent = mode == Mode::SkipExisting;
                let wrote = s
                    .queues
                    .restore(&tenant, &queue, &job, only_if_absent)
                    .await?;
                Ok(if wrote {
                    Outcome::Written
                } else {
                    Outcome::Skipped
                })
            }
            Item::Totals {
                tenant,
                subject,
                bucket,
                totals,
                until,
            } => {
                let Some(ttl_ms) = left_ms(until, now) else {
                    return Ok(Outcome::Expired);
                };
                if mode == Mode::SkipExisting
                    && s.usage.bucket(&tenant, &subject, &bucket).await?.is_some()
                {
                    return Ok(Outcome::Skipped);
                }
                // Merge keeps the higher of both totals: counts only grow.
                let at_least = mode == Mode::Merge;
                let changed = s
                    .usage
                    .restore_totals(&tenant, &subject, &bucket, &totals, ttl_ms, at_least)
                    .await?;
                Ok(if changed > 0 {
                    Outcome::Written
                } else {
                    Outcome::Unchanged
                })
            }
            Item::Budget(tenant, budget, rule) => {
                let now_us = crate::store::memory::now_us();
                match s.budgets.get(&tenant, &budget, now_us).await? {
                    Some(held) if held.rule == rule => return Ok(Outcome::Unchanged),
                    Some(_) if mode == Mode::SkipExisting => return Ok(Outcome::Skipped),
                    _ => {}
                }
                s.budgets.set(&tenant, &budget, rule, now_us).await?;
                Ok(Outcome::Written)
            }
            Item::Lock(tenant, name, mark) => {
                // The higher mark of both sides is kept, whatever the mode.
                if s.locks.get(&tenant, &name).await?.high_water >= mark {
                    return Ok(Outcome::Unchanged);
                }
                match s
                    .locks
                    .check_fence(&tenant, &name, Fence::Restored(mark))
                    .await?
                {
                    FenceCheck::Accepted => Ok(Outcome::Written),
                    FenceCheck::Stale { .. } => Ok(Outcome::Unchanged),
                    // The file was checked against this machine's clock; the backend's is
                    // behind it by more than the slack.
                    FenceCheck::NotIssued { ceiling } => Err(StoreError::Refused(format!(
                        "lock {name}: the mark {mark} is above the backend's ceiling {ceiling}"
                    ))),
                }
            }
        }
    }
}

fn same_json(held: &CacheValue, value: &CacheValue) -> bool {
    if held.bytes() == value.bytes() {
        return true;
    }
    match (
        serde_json::from_slice::<Value>(held.bytes()),
        serde_json::from_slice::<Value>(value.bytes()),
    ) {
        (Ok(a), Ok(b)) => json_equal(&a, &b),
        _ => false,
    }
}

/// Whether a held TTL is the one a restore would write (whole seconds, within one).
fn same_expiry(held: TtlState, expiry: Expiry) -> bool {
    match (held, expiry) {
        (TtlState::Persistent, Expiry::Never) => true,
        (TtlState::Expires(held), Expiry::After(ttl)) => held.abs_diff(ttl.seconds()) <= 1,
        _ => false,
    }
}
