//! Queues in a backup: every job that is not done, as it is (`queue/job_id`). A restore puts a
//! leased job back to ready: its lease means nothing after a restore, and the attempt it used
//! still counts.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::model::{Job, JobId, JobState, QueueName};
use crate::{
    domain::ids::Tenant,
    store::{IdPage, StoreError, StoreResult},
    transfer::{Backup, Exported, Mode, Outcome, PAGE, Restore, Transfer, format::Record},
};

pub struct QueueBackup;

struct Item(Tenant, QueueName, Job);

#[async_trait]
impl Backup for QueueBackup {
    async fn inventory(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        cursor: Option<&str>,
    ) -> StoreResult<IdPage> {
        cx.stores.queues.inventory(tenant, cursor, PAGE).await
    }

    async fn export(
        &self,
        cx: &Transfer,
        tenant: &Tenant,
        id: &str,
    ) -> StoreResult<Option<Exported>> {
        let Some((queue, job)) = id.split_once('/').and_then(|(queue, job)| {
            Some((QueueName::parse(queue).ok()?, JobId::parse(job).ok()?))
        }) else {
            return Ok(None);
        };
        match cx.stores.queues.get(tenant, &queue, &job).await? {
            Some(job) if job.state != JobState::Done => Exported::new(&job, None).map(Some),
            _ => Ok(None),
        }
    }

    fn check(
        &self,
        _: &Transfer,
        tenant: Tenant,
        record: &Record,
        _: OffsetDateTime,
    ) -> Result<Box<dyn Restore>, String> {
        let (queue, id) = record
            .id
            .split_once('/')
            .ok_or("a job id is queue/job_id")?;
        let queue = QueueName::parse(queue).map_err(|e| e.to_string())?;
        JobId::parse(id).map_err(|e| e.to_string())?;
        let job: Job =
            serde_json::from_str(record.value.get()).map_err(|e| format!("value: {e}"))?;
        if job.id != id {
            return Err("the id differs from the value's id".into());
        }
        if job.state == JobState::Done {
            return Err("a backup holds no done job".into());
        }
        job.check_bounds(crate::store::memory::now_us())?;
        serde_json::from_str::<serde::de::IgnoredAny>(&job.payload)
            .map_err(|e| format!("payload: {e}"))?;
        Ok(Box::new(Item(tenant, queue, job)))
    }
}

#[async_trait]
impl Restore for Item {
    fn until(&self, _: &Transfer) -> Option<OffsetDateTime> {
        None
    }

    async fn write(&self, cx: &Transfer, mode: Mode, _: OffsetDateTime) -> StoreResult<Outcome> {
        let Self(tenant, queue, job) = self;
        let queues = &cx.stores.queues;
        let id = JobId::parse(job.id.as_str()).map_err(|e| StoreError::Internal(e.to_string()))?;
        // What the backend holds once this job is written: a lease does not survive.
        let mut restored = job.clone();
        if restored.state == JobState::Leased {
            restored.state = JobState::Ready;
        }
        if let Some(held) = queues.get(tenant, queue, &id).await? {
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
                Mode::Merge if held.attempt > job.attempt || held.state == JobState::Done => {
                    return Ok(Outcome::Conflict);
                }
                _ => {}
            }
        }
        let only_if_absent = mode == Mode::SkipExisting;
        let wrote = queues.restore(tenant, queue, job, only_if_absent).await?;
        Ok(if wrote {
            Outcome::Written
        } else {
            Outcome::Skipped
        })
    }
}
