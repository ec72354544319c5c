//! Backup and restore over HTTP, for API keys with the `admin` scope, each limited to its
//! key's tenant: the records of [`crate::transfer`].

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use super::{
    extract::{Admin, AppQuery},
    state::AppState,
};
use crate::{
    error::{ApiError, ApiResult},
    transfer::{Cleaned, Mode, Report, Transfer, format},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/backup", get(backup))
        .route("/v1/admin/restore", post(restore))
        .route("/v1/admin/cleanup", post(cleanup))
}

const NDJSON: &str = "application/x-ndjson";

fn not_while_degraded(state: &AppState, what: &str) -> ApiResult<()> {
    if state.failover.is_degraded() {
        return Err(ApiError::backend_unavailable(format!(
            "Redis is down: a {what} now would see only what this instance's memory holds"
        ))
        .retry_after(1));
    }
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    /// Comma-separated capabilities to include (default: all of cache, sessions,
    /// agent_states, pending_actions, locks, queues, usage, budgets).
    #[param(
        pattern = "^((cache|sessions|agent_states|pending_actions|locks|queues|usage|budgets)(,(cache|sessions|agent_states|pending_actions|locks|queues|usage|budgets))*)?$",
        example = "cache,sessions"
    )]
    capabilities: Option<String>,
}

/// A backup of the key's tenant, streamed as NDJSON: a header line, one line per item, and a
/// trailer with the count and SHA-256. Cache values, sessions, agent states and pending actions
/// (tombstones included), each with the lifetime it has left.
#[utoipa::path(
    get, path = "/v1/admin/backup", tag = "admin", operation_id = "admin_backup",
    params(BackupQuery),
    responses(
        (status = 200, description = "The backup", content_type = "application/x-ndjson", body = String,
         example = json!([
            {"format": "statekeeper-backup", "version": 1, "created_at": "2026-11-26T09:00:00Z"},
            {"capability": "cache", "tenant": "default", "id": "users/42", "value": {"name": "Ada"}, "ttl_ms": 60000},
            {"count": 1, "sha256": "28057bc3e698ef9642e996e592435e448da57a6dbbf977b50b19fb94b5fca7f7"}
        ])),
        (status = 400, description = "Unknown capability or query parameter"),
        (status = 403, description = "The key lacks the admin scope"),
    ),
)]
pub async fn backup(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    AppQuery(query): AppQuery<BackupQuery>,
) -> ApiResult<Response> {
    let names = query.capabilities.as_deref().unwrap_or_default();
    let capabilities = crate::transfer::capabilities(names.split(',').filter(|n| !n.is_empty()))
        .map_err(ApiError::invalid_request)?;
    not_while_degraded(&state, "backup")?;
    let (lines_tx, lines_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let transfer = Transfer::new(state.stores.clone(), &state.settings);
    tokio::spawn(async move {
        let (mut encoder, header) = format::Encoder::start(OffsetDateTime::now_utc());
        if lines_tx.send(Ok(header.into())).await.is_err() {
            return;
        }
        let (records_tx, mut records_rx) = mpsc::channel(64);
        let exporting = async {
            let result = transfer.export(&tenant, &capabilities, &records_tx).await;
            drop(records_tx);
            result
        };
        let forwarding = async {
            while let Some(record) = records_rx.recv().await {
                if lines_tx
                    .send(Ok(encoder.record(&record).into()))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            true
        };
        let (exported, open) = tokio::join!(exporting, forwarding);
        match exported {
            // The trailer only after every item: a backup cut short has none, and is refused
            // on restore as truncated.
            Ok(()) if open => {
                let _ = lines_tx.send(Ok(encoder.finish().into())).await;
            }
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "backup stopped: the store failed");
                let _ = lines_tx
                    .send(Err(std::io::Error::other("the backup stopped")))
                    .await;
            }
        }
    });
    let lines = futures_util::stream::unfold(lines_rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    });
    let body = Body::from_stream(lines);
    Ok(([(header::CONTENT_TYPE, NDJSON)], body).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RestoreQuery {
    /// `merge` (default: an item held with a later write is kept), `replace`, or
    /// `skip-existing`.
    #[param(value_type = Option<String>, pattern = "^(merge|replace|skip-existing)$", example = "merge")]
    mode: Option<String>,
    /// Check the file and count its items; write nothing.
    dry_run: Option<bool>,
}

/// Restores a backup (the body, as `GET /v1/admin/backup` wrote it) into the key's tenant.
/// The whole file is checked first (format, checksum, every record, tenant): a truncated,
/// changed or foreign file is refused and nothing is written. Lifetimes are re-based to now
/// (an item lives until the backup's `created_at` plus its `ttl_ms`; expired items are
/// skipped), and a second run of the same file writes nothing. Bodies up to
/// `limits.max_body_bytes`; larger restores use `statekeeper restore`.
#[utoipa::path(
    post, path = "/v1/admin/restore", tag = "admin", operation_id = "admin_restore",
    params(RestoreQuery),
    request_body(content = Vec<crate::transfer::format::BackupLine>, content_type = "application/x-ndjson",
        description = "NDJSON: one `BackupLine` per line (the header, the records, the trailer), as `GET /v1/admin/backup` writes it",
        example = json!([
            {"format": "statekeeper-backup", "version": 1, "created_at": "2026-11-26T09:00:00Z"},
            {"capability": "cache", "tenant": "default", "id": "users/42", "value": {"name": "Ada"}, "ttl_ms": 60000},
            {"count": 1, "sha256": "28057bc3e698ef9642e996e592435e448da57a6dbbf977b50b19fb94b5fca7f7"}
        ])),
    responses(
        (status = 200, description = "What the restore did", body = Report,
         example = json!({"read": 120, "written": 100, "unchanged": 15, "skipped": 0, "expired": 3, "conflicts": 2})),
        (status = 400, description = "Unknown mode or query parameter"),
        (status = 403, description = "The key lacks the admin scope"),
        (status = 422, description = "`validation_failed`: not a backup, truncated, changed after it was written, \
                                      a record that is not valid, or another tenant's item; nothing was written"),
    ),
)]
pub async fn restore(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    AppQuery(query): AppQuery<RestoreQuery>,
    // A body over `limits.max_body_bytes` sent without a Content-Length (chunked) is cut off
    // while read: a 413 problem like every other.
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Report>> {
    let body = body?;
    let mode: Mode = query
        .mode
        .as_deref()
        .unwrap_or("merge")
        .parse()
        .map_err(ApiError::invalid_request)?;
    let backup = format::read(&body).map_err(|e| ApiError::validation_failed(e.to_string()))?;
    let transfer = Transfer::new(state.stores.clone(), &state.settings);
    let checked = transfer
        .check(&backup, Some(&tenant))
        .map_err(ApiError::validation_failed)?;
    let dry_run = query.dry_run.unwrap_or(false);
    if !dry_run {
        not_while_degraded(&state, "restore")?;
    }
    let report = transfer.restore(checked, mode, dry_run, |_| {}).await?;
    Ok(Json(report))
}

/// Removes the index entries of the key's tenant's expired agent states and sessions (the
/// clean-ups the seed services ran by hand); everything else expires by itself.
#[utoipa::path(
    post, path = "/v1/admin/cleanup", tag = "admin", operation_id = "admin_cleanup",
    responses(
        (status = 200, description = "What was removed", body = Cleaned,
         example = json!({"agent_state_index_entries": 3, "session_index_entries": 12})),
        (status = 403, description = "The key lacks the admin scope"),
    ),
)]
pub async fn cleanup(
    State(state): State<AppState>,
    Admin(tenant): Admin,
) -> ApiResult<Json<Cleaned>> {
    let transfer = Transfer::new(state.stores.clone(), &state.settings);
    Ok(Json(transfer.cleanup(&tenant).await?))
}
