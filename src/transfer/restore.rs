//! Restore: each record checked into an item by its capability's [`Backup`] before anything
//! is written, then written per `Mode`.

use super::*;

impl Transfer {
    /// Checks every record of `backup` before anything is written: a known capability, valid
    /// ids, a value of the capability's shape, and (with `tenant`) only that tenant's items.
    pub fn check(&self, backup: &BackupFile, tenant: Option<&Tenant>) -> Result<Checked, String> {
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
            items.push(Item(item));
        }
        Ok(Checked { items })
    }

    fn item(&self, record: &Record, created: OffsetDateTime) -> Result<Box<dyn Restore>, String> {
        let tenant = Tenant::parse(&record.tenant).map_err(|e| format!("tenant: {e}"))?;
        let backup = Capability::from_name(&record.capability)
            .and_then(backup_of)
            .ok_or_else(|| {
                format!(
                    "capability {:?} is not one a backup holds ({})",
                    record.capability,
                    backed_up_names()
                )
            })?;
        backup.check(self, tenant, record, created)
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
                .filter(|Item(item)| self.expired(item.as_ref(), now))
                .count() as u64;
            return Ok(report);
        }
        let mut outcomes = stream::iter(checked.items)
            .map(|item| self.write(item, mode))
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

    async fn write(&self, Item(item): Item, mode: Mode) -> StoreResult<Outcome> {
        let now = OffsetDateTime::now_utc();
        if self.expired(item.as_ref(), now) {
            return Ok(Outcome::Expired);
        }
        item.write(self, mode, now).await
    }

    fn expired(&self, item: &dyn Restore, now: OffsetDateTime) -> bool {
        item.until(self).is_some_and(|until| until <= now)
    }
}
