//! `statekeeper backup`, `restore` and `cleanup`: the same records and clean-ups as the admin routes, read
//! from and written to the Redis the settings name (the memory backend lives inside a running
//! service, so in `memory` mode the admin routes are the way).

use std::io::{Read, Write};

use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{Mode, Transfer, format};
use crate::{
    config::{BackendMode, Settings},
    domain::ids::Tenant,
    store::redis,
};

/// A failure of a command: its message and exit code (2: bad input, 1: the backend).
pub struct Failed {
    pub message: String,
    pub code: u8,
}

fn bad(message: impl Into<String>) -> Failed {
    Failed {
        message: message.into(),
        code: 2,
    }
}

fn backend(message: impl std::fmt::Display) -> Failed {
    Failed {
        message: message.to_string(),
        code: 1,
    }
}

fn transfer(settings: &Settings) -> Result<Transfer, Failed> {
    if settings.backend.mode == BackendMode::Memory {
        return Err(bad(
            "backend.mode is memory: the memory backend lives inside the running service; use \
             GET /v1/admin/backup and POST /v1/admin/restore",
        ));
    }
    let pool = redis::RedisPool::new(&settings.redis).map_err(bad)?;
    Ok(Transfer::new(redis::stores(&pool), settings))
}

/// The tenants the settings know: each API key's, or `default` when there are none.
fn known_tenants(settings: &Settings) -> Vec<Tenant> {
    let mut names: Vec<&str> = settings
        .auth
        .keys
        .iter()
        .map(|k| k.tenant.as_str())
        .collect();
    if names.is_empty() {
        names.push(Tenant::DEFAULT);
    }
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| Tenant::parse(n).ok())
        .collect()
}

/// Writes a backup of `tenant` (or every tenant the settings know) to `out`.
pub async fn backup(
    settings: &Settings,
    tenant: Option<&str>,
    capabilities: &[String],
    out: &mut impl Write,
) -> Result<u64, Failed> {
    let tenants = match tenant {
        Some(name) => vec![Tenant::parse(name).map_err(bad)?],
        None => known_tenants(settings),
    };
    let capabilities = super::capabilities(capabilities.iter().map(String::as_str)).map_err(bad)?;
    let transfer = transfer(settings)?;
    let (mut encoder, header) = format::Encoder::start(OffsetDateTime::now_utc());
    let write = |out: &mut dyn Write, bytes: &[u8]| out.write_all(bytes).map_err(backend);
    write(out, &header)?;
    let mut count = 0u64;
    for tenant in tenants {
        let (tx, mut rx) = mpsc::channel(256);
        let caps = capabilities.clone();
        let exporting = async {
            let result = transfer.export(&tenant, &caps, &tx).await;
            drop(tx);
            result
        };
        let writing = async {
            while let Some(record) = rx.recv().await {
                write(out, &encoder.record(&record))?;
                count += 1;
                if count.is_multiple_of(10_000) {
                    eprintln!("statekeeper backup: {count} items");
                }
            }
            Ok::<(), Failed>(())
        };
        let (exported, written) = tokio::join!(exporting, writing);
        written?;
        exported.map_err(backend)?;
    }
    write(out, &encoder.finish())?;
    out.flush().map_err(backend)?;
    Ok(count)
}

/// Restores a backup read whole from `input`; prints the report as JSON to `out`.
pub async fn restore(
    settings: &Settings,
    mode: &str,
    dry_run: bool,
    input: &mut impl Read,
    out: &mut impl Write,
) -> Result<super::Report, Failed> {
    let mode: Mode = mode.parse().map_err(bad)?;
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(backend)?;
    let backup = format::read(&bytes).map_err(|e| bad(e.to_string()))?;
    let transfer = transfer(settings)?;
    let checked = transfer.check(&backup, None).map_err(bad)?;
    eprintln!(
        "statekeeper restore: {} items checked ({mode:?}{})",
        checked.len(),
        if dry_run { ", dry run" } else { "" }
    );
    let report = transfer
        .restore(checked, mode, dry_run, |done| {
            eprintln!("statekeeper restore: {done} items");
        })
        .await
        .map_err(backend)?;
    let text = serde_json::to_string(&report).map_err(backend)?;
    writeln!(out, "{text}").map_err(backend)?;
    Ok(report)
}

/// Runs the clean-ups for `tenant` (or every tenant the settings know); prints one JSON line
/// per tenant to `out`.
pub async fn cleanup(
    settings: &Settings,
    tenant: Option<&str>,
    out: &mut impl Write,
) -> Result<(), Failed> {
    let tenants = match tenant {
        Some(name) => vec![Tenant::parse(name).map_err(bad)?],
        None => known_tenants(settings),
    };
    let transfer = transfer(settings)?;
    for tenant in tenants {
        let cleaned = transfer.cleanup(&tenant).await.map_err(backend)?;
        let line = serde_json::json!({"tenant": tenant.as_str(), "cleaned": cleaned});
        writeln!(out, "{line}").map_err(backend)?;
    }
    Ok(())
}
