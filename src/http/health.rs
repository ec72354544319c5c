//! `/health`, `/health/live`, `/health/ready`: no API key needed.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::state::AppState;
use crate::{config::BackendMode, store::redis::pool::RedisInfo};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `degraded` (auto mode serving from memory, or Redis refusing commands: see
    /// `backend.redis.condition`) or `down` (redis mode, Redis down).
    #[schema(example = "ok")]
    status: &'static str,
    #[schema(example = "0.1.0")]
    version: &'static str,
    uptime_seconds: u64,
    /// What an operator should act on although the service serves: Redis memory above
    /// `health.redis_memory_warn_ratio` of `maxmemory` (`redis_memory_high`), or an eviction
    /// policy that can evict statekeeper's keys (`redis_may_evict`). Empty when there is none.
    warnings: Vec<Warning>,
    backend: BackendHealth,
}

#[derive(Serialize, ToSchema)]
pub struct Warning {
    #[schema(example = "redis_may_evict")]
    code: &'static str,
    message: String,
}

#[derive(Serialize, ToSchema)]
pub struct BackendHealth {
    /// `backend.mode`: `auto`, `redis` or `memory`.
    configured: &'static str,
    /// Which backend serves requests now: `redis` or `memory`.
    active: &'static str,
    /// Since when `auto` mode has been serving from memory.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    degraded_since: Option<OffsetDateTime>,
    /// What each capability does while Redis is down: `serve_from_memory`, `refuse` (503
    /// `backend_unavailable`), `allow` (rate limits that fail open) or `journal_and_replay`
    /// (usage events, handed to Redis when it returns). In `redis` mode every capability
    /// refuses.
    #[schema(example = json!({"cache": "serve_from_memory", "sessions": "refuse"}))]
    while_degraded: std::collections::BTreeMap<&'static str, &'static str>,
    /// The memory backend's use of `memory.max_bytes` (an estimate per entry); at the bound,
    /// writes to memory get 507 `backend_full`. Absent in `redis` mode, which builds none.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<MemoryHealth>,
    redis: RedisHealth,
}

#[derive(Serialize, ToSchema)]
pub struct MemoryHealth {
    #[schema(example = 1048576)]
    used_bytes: usize,
    #[schema(example = 1073741824)]
    max_bytes: usize,
}

#[derive(Default, Serialize, ToSchema)]
pub struct RedisHealth {
    /// `healthy`, `unhealthy` or `disabled` (memory mode).
    status: &'static str,
    /// Why Redis refused commands within the last 30 s although it answers: `out_of_memory`
    /// (`maxmemory` under `noeviction`: writes get 507 `backend_full`), `read_only`, `loading`,
    /// `not_serving` or `busy_script` (503 `backend_unavailable`). The service is then
    /// `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "out_of_memory")]
    condition: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connected_clients: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    used_memory_human: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    used_memory_bytes: Option<u64>,
    /// Redis's `maxmemory`; 0 means no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    maxmemory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "noeviction")]
    maxmemory_policy: Option<String>,
    /// Keys Redis evicted since it started (all of them, not only statekeeper's).
    #[serde(skip_serializing_if = "Option::is_none")]
    evicted_keys: Option<u64>,
    /// Keys in the Redis database (all of them, not only statekeeper's).
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<PoolHealth>,
}

#[derive(Serialize, ToSchema)]
pub struct PoolHealth {
    max_size: usize,
    size: usize,
    available: usize,
    waiting: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Service and backend health.
#[utoipa::path(
    get, path = "/health", tag = "health", operation_id = "health",
    responses(
        (status = 200, description = "Serving (`ok` or `degraded`)", body = Health),
        (status = 503, description = "Mode `redis` and Redis is down", body = Health),
    ),
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let report = state.failover.report().await;
    let warn_ratio = state.settings.health.redis_memory_warn_ratio;
    let warnings = report
        .redis
        .as_ref()
        .and_then(|redis| redis.info.as_ref())
        .map_or_else(Vec::new, |info| warnings(info, warn_ratio));
    let redis = match &report.redis {
        None => RedisHealth {
            status: "disabled",
            ..RedisHealth::default()
        },
        Some(redis) => {
            let mut health = RedisHealth {
                status: "unhealthy",
                condition: redis.condition.map(|c| c.as_str()),
                pool: Some(PoolHealth {
                    max_size: redis.pool.max_size,
                    size: redis.pool.size,
                    available: redis.pool.available,
                    waiting: redis.pool.waiting,
                }),
                ..RedisHealth::default()
            };
            if let Some(info) = redis.info.clone() {
                health.status = "healthy";
                health.latency_ms = Some((info.latency_ms * 1000.0).round() / 1000.0);
                health.redis_version = info.redis_version;
                health.connected_clients = info.connected_clients;
                health.used_memory_human = info.used_memory_human;
                health.used_memory_bytes = info.used_memory;
                health.maxmemory_bytes = info.maxmemory;
                health.maxmemory_policy = info.maxmemory_policy;
                health.evicted_keys = info.evicted_keys;
                health.keys = info.keys;
            }
            health
        }
    };
    let (status, code) = match (report.mode, report.redis_down) {
        (BackendMode::Redis, true) => ("down", StatusCode::SERVICE_UNAVAILABLE),
        (BackendMode::Auto, true) => ("degraded", StatusCode::OK),
        _ if redis.condition.is_some() => ("degraded", StatusCode::OK),
        _ => ("ok", StatusCode::OK),
    };
    let body = Health {
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        warnings,
        backend: BackendHealth {
            configured: report.mode.as_str(),
            active: if report.active_is_redis {
                "redis"
            } else {
                "memory"
            },
            degraded_since: report
                .degraded_since
                .filter(|_| report.mode == BackendMode::Auto),
            while_degraded: report
                .capabilities
                .iter()
                .map(|(capability, policy)| (capability.name(), policy.as_str()))
                .collect(),
            memory: report.memory.map(|(used_bytes, max_bytes)| MemoryHealth {
                used_bytes,
                max_bytes,
            }),
            redis,
        },
    };
    (code, Json(body)).into_response()
}

/// What Redis's memory figures call for. Eviction needs a `maxmemory`; then any policy but
/// `noeviction` can evict statekeeper's keys: `allkeys-*` any of them, `volatile-*` those with
/// a TTL, which are nearly all of them (pending actions, locks, sessions, rate limits).
fn warnings(info: &RedisInfo, warn_ratio: f64) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let Some(max) = info.maxmemory.filter(|max| *max > 0) else {
        return warnings;
    };
    if let Some(used) = info.used_memory {
        let ratio = used as f64 / max as f64;
        if ratio > warn_ratio {
            warnings.push(Warning {
                code: "redis_memory_high",
                message: format!(
                    "Redis uses {:.0}% of its maxmemory ({used} of {max} bytes), above \
                     health.redis_memory_warn_ratio ({warn_ratio})",
                    ratio * 100.0
                ),
            });
        }
    }
    if let Some(policy) = info
        .maxmemory_policy
        .as_deref()
        .filter(|p| *p != "noeviction")
    {
        warnings.push(Warning {
            code: "redis_may_evict",
            message: format!(
                "Redis's maxmemory-policy {policy} can evict statekeeper's keys at maxmemory: \
                 an evicted pending action, lock, job or session is lost without an error \
                 (a lock may then be granted twice). Use noeviction: writes then get 507 \
                 backend_full instead"
            ),
        });
    }
    warnings
}

/// 200 while the process runs.
#[utoipa::path(
    get, path = "/health/live", tag = "health", operation_id = "health_live",
    responses((status = 200, description = "The process runs", body = Liveness)),
)]
pub async fn live() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// 200 when requests can be served; 503 in mode `redis` while Redis is down.
#[utoipa::path(
    get, path = "/health/ready", tag = "health", operation_id = "health_ready",
    responses(
        (status = 200, description = "Ready", body = Liveness),
        (status = 503, description = "Not ready", body = Liveness),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.failover.ready().await {
        (StatusCode::OK, Json(Liveness { status: "ok" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Liveness { status: "down" }),
        )
            .into_response()
    }
}
