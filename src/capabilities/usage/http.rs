//! `/v1/usage` and `/v1/budgets`: metered amounts per subject and period, each event counted
//! once, and budgets held by reservation so that concurrent spenders cannot overshoot them.
//!
//! Decisions the contract leaves open:
//! - Amounts are whole numbers from 0 to 2^53 - 1 (exact in every JSON reader): tokens,
//!   micro-dollars. Periods are UTC days and months.
//! - An `event_id` is counted once per subject within `usage.dedup_window_seconds`. `at`
//!   (default now) may be up to `usage.retention_days` in the past and a minute in the future.
//! - A reservation counts against the budget's *current* period; its commit counts as usage at
//!   the commit's time. A commit or release of a reservation that is gone (committed,
//!   released, or expired and returned) is 404.
//! - Without a budget a reservation is always granted (`remaining: null`): no budget means
//!   unlimited, never a refusal. Deleting a budget leaves its reservations to commit or
//!   release.
//! - A parent subject (user → workspace) checked in the same step is not offered: each subject's
//!   keys share one hash tag so that its scripts are atomic on a Redis Cluster; a parent check
//!   would need the parent's keys in the same slot, i.e. every subject of a workspace tagged by
//!   the workspace. Reserve against both subjects (and release the first when the second is
//!   refused) to get the same effect without atomicity across them.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::{IntoParams, ToSchema};

use crate::http::{
    AppState,
    extract::{AppJson, AppQuery, ItemPath, ReadAt, Whole, WriteAt, id_path, time_of_us as time},
};
use crate::{
    capabilities::usage::model::{
        BudgetId, BudgetRule, BudgetStatus, Committed, MAX_AMOUNT, MAX_RESERVATION_TTL_MS,
        MetricName, Period, ReservationId, Reserved, Subject, UsageEvent,
    },
    error::{ApiError, ApiResult, Missing},
    store::memory::now_us,
};
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        record,
        totals,
        get_budget,
        put_budget,
        delete_budget,
        reserve,
        commit,
        release,
    ),
    tags(
    (name = "usage", description = "Metered amounts per subject and period, each event counted once, and budgets \
                                     held by reservation, which concurrent spenders cannot overshoot"),
    )
)]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/usage/{subject}/events", post(record))
        .route("/v1/usage/{subject}", get(totals))
        .route(
            "/v1/budgets/{subject}/{metric}",
            get(get_budget).put(put_budget).delete(delete_budget),
        )
        .route("/v1/budgets/{subject}/{metric}/reserve", post(reserve))
        .route(
            "/v1/budgets/{subject}/{metric}/reservations/{reservation_id}/commit",
            post(commit),
        )
        .route(
            "/v1/budgets/{subject}/{metric}/reservations/{reservation_id}/release",
            post(release),
        )
}

id_path!(SubjectPath, subject => Subject, "user-42", "The subject: 1–256 bytes of `[A-Za-z0-9._:@-]`.");

/// A subject's budget for one metric.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BudgetPath {
    /// The subject: 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "user-42")]
    subject: String,
    /// The metric: 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "tokens")]
    metric: String,
}

impl ItemPath for BudgetPath {
    type Id = BudgetId;

    fn parse(self) -> ApiResult<BudgetId> {
        Ok(BudgetId {
            subject: Subject::parse(self.subject)?,
            metric: MetricName::parse(self.metric)?,
        })
    }
}

/// One reservation of a subject's budget.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReservationPath {
    /// The subject: 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "user-42")]
    subject: String,
    /// The metric: 1–256 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = "tokens")]
    metric: String,
    /// The reservation's id, as reserve returned it.
    #[param(
        pattern = "^[A-Za-z0-9._:@-]{1,256}$",
        example = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    )]
    reservation_id: String,
}

impl ItemPath for ReservationPath {
    type Id = (BudgetId, ReservationId);

    fn parse(self) -> ApiResult<(BudgetId, ReservationId)> {
        let budget = BudgetPath {
            subject: self.subject,
            metric: self.metric,
        };
        Ok((budget.parse()?, ReservationId::parse(self.reservation_id)?))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_id": "req-8f2c", "metric": "tokens", "amount": 1532}))]
pub struct EventRequest {
    /// Counted once per subject within `usage.dedup_window_seconds`: a retried POST is safe.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,256}$")]
    event_id: String,
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,256}$")]
    metric: String,
    /// A whole number, 0 to 2^53 - 1.
    #[schema(value_type = u64, minimum = 0, maximum = 9007199254740991_u64)]
    amount: Whole,
    /// When it happened (RFC 3339; default now): decides its day and month.
    #[schema(value_type = Option<String>, format = DateTime)]
    at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"counted": true}))]
pub struct EventRecorded {
    /// False when the `event_id` had been counted already (then the answer is 200, not 201).
    counted: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TotalsQuery {
    /// One metric (default: every metric).
    #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$")]
    metric: Option<String>,
    /// `day` (default) or `month`.
    period: Option<Period>,
    /// First day (`YYYY-MM-DD`, UTC; default today). For months, any day of the first month.
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// Last day (`YYYY-MM-DD`; default today). At most 400 periods from `from`.
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"period": "day", "totals": [
    {"period": "2026-11-25", "metric": "tokens", "amount": 18250},
    {"period": "2026-11-26", "metric": "tokens", "amount": 4120}]}))]
pub struct Totals {
    period: Period,
    /// Each period's total per metric; periods and metrics without usage are left out.
    totals: Vec<TotalBody>,
}

#[derive(Serialize, ToSchema)]
pub struct TotalBody {
    /// `2026-11-26` (a day) or `2026-11` (a month).
    #[schema(example = "2026-11-26")]
    period: String,
    #[schema(example = "tokens")]
    metric: String,
    amount: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"limit": 1000000, "period": "month"}))]
pub struct BudgetRequest {
    /// Most of the metric per period: 0 to 2^53 - 1.
    #[schema(value_type = u64, minimum = 0, maximum = 9007199254740991_u64)]
    limit: Whole,
    period: Period,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"limit": 100000, "period": "day", "used": 41200, "reserved": 4000,
    "remaining": 54800}))]
pub struct BudgetBody {
    limit: u64,
    period: Period,
    /// The metric's total in the current period.
    used: u64,
    /// Held by live reservations.
    reserved: u64,
    /// `limit - used - reserved`, at least 0.
    remaining: u64,
}

impl From<BudgetStatus> for BudgetBody {
    fn from(status: BudgetStatus) -> Self {
        Self {
            limit: status.rule.limit,
            period: status.rule.period,
            used: status.used,
            reserved: status.reserved,
            remaining: status.remaining(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 4000, "ttl_ms": 60000}))]
pub struct ReserveRequest {
    #[schema(value_type = u64, minimum = 0, maximum = 9007199254740991_u64)]
    amount: Whole,
    /// Returned by itself when not committed in time: 1 ms to a day.
    #[schema(value_type = u64, minimum = 1, maximum = 86400000)]
    ttl_ms: Whole,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"reservation_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "remaining": 50800, "expires_at": "2026-11-26T10:01:00Z"}))]
pub struct ReservationBody {
    reservation_id: String,
    /// What remains after this reservation; null without a budget (unlimited).
    remaining: Option<u64>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 3120}))]
pub struct CommitRequest {
    /// What was spent: at most what was reserved.
    #[schema(value_type = u64, minimum = 0, maximum = 9007199254740991_u64)]
    amount: Whole,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"committed": 3120, "returned": 880}))]
pub struct CommitBody {
    committed: u64,
    /// What went back to the budget.
    returned: u64,
}

fn amount(name: &str, value: Whole) -> ApiResult<u64> {
    let value = value.0;
    if value > MAX_AMOUNT {
        return Err(ApiError::validation_failed(format!(
            "{name} is at most 2^53 - 1"
        )));
    }
    Ok(value)
}

/// When an event happened: `at`, or now; within the retention and at most a minute ahead.
fn event_time(state: &AppState, at: Option<&str>) -> ApiResult<u64> {
    let now = now_us();
    let Some(at) = at else {
        return Ok(now);
    };
    let at = OffsetDateTime::parse(at, &Rfc3339)
        .map_err(|_| ApiError::validation_failed("at is an RFC 3339 date-time"))?;
    let us = at.unix_timestamp_nanos() / 1000;
    let retention_us = i128::from(state.settings.usage.retention_days) * 86_400_000_000;
    let now = i128::from(now);
    if us < now - retention_us || us > now + 60_000_000 {
        return Err(ApiError::validation_failed(
            "at is within usage.retention_days in the past and at most a minute ahead",
        ));
    }
    u64::try_from(us).map_err(|_| ApiError::validation_failed("at is after 1970"))
}

/// Count a usage event, once per `event_id`.
#[utoipa::path(
    post, path = "/v1/usage/{subject}/events", tag = "usage", operation_id = "usage_record",
    params(SubjectPath),
    request_body = EventRequest,
    responses(
        (status = 201, description = "Counted", body = EventRecorded),
        (status = 200, description = "This `event_id` was counted already; nothing changed", body = EventRecorded),
        (status = 400, description = "Invalid subject or malformed JSON"),
        (status = 422, description = "Invalid event id, metric, amount or time, or an unknown field"),
    ),
)]
pub async fn record(
    State(state): State<AppState>,
    WriteAt(tenant, subject): WriteAt<SubjectPath>,
    AppJson(request): AppJson<EventRequest>,
) -> ApiResult<Response> {
    let invalid = |e: crate::domain::ids::InvalidId| ApiError::validation_failed(e.to_string());
    if !crate::domain::ids::valid_id(&request.event_id) {
        return Err(ApiError::validation_failed(
            "event_id is 1-256 bytes of [A-Za-z0-9._:@-]",
        ));
    }
    let event = UsageEvent {
        event_id: request.event_id,
        metric: MetricName::parse(request.metric).map_err(invalid)?,
        amount: amount("amount", request.amount)?,
        at_us: event_time(&state, request.at.as_deref())?,
    };
    let limits = state.settings.usage.limits();
    let counted = state
        .stores
        .usage
        .record(&tenant, &subject, &event, limits)
        .await?;
    let events = &state.metrics.outcomes.of(&super::EVENTS);
    events.count(if counted { "counted" } else { "duplicate" });
    let status = if counted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(EventRecorded { counted })).into_response())
}

fn date(name: &str, text: Option<&str>, today: Date) -> ApiResult<Date> {
    let Some(text) = text else {
        return Ok(today);
    };
    crate::capabilities::usage::model::parse_date(text)
        .ok_or_else(|| ApiError::validation_failed(format!("{name} is a date, YYYY-MM-DD")))
}

/// Totals per period for a subject (UTC days or months).
#[utoipa::path(
    get, path = "/v1/usage/{subject}", tag = "usage", operation_id = "usage_totals",
    params(SubjectPath, TotalsQuery),
    responses(
        (status = 200, description = "The totals", body = Totals),
        (status = 400, description = "Invalid subject"),
        (status = 422, description = "Invalid metric, dates, or a range of more than 400 periods"),
    ),
)]
pub async fn totals(
    State(state): State<AppState>,
    ReadAt(tenant, subject): ReadAt<SubjectPath>,
    AppQuery(query): AppQuery<TotalsQuery>,
) -> ApiResult<Json<Totals>> {
    let metric = query
        .metric
        .map(MetricName::parse)
        .transpose()
        .map_err(|e| ApiError::validation_failed(e.to_string()))?;
    let period = query.period.unwrap_or(Period::Day);
    let today = time(now_us())?.date();
    let from = date("from", query.from.as_deref(), today)?;
    let to = date("to", query.to.as_deref(), today)?;
    let buckets = period
        .buckets(from, to)
        .map_err(|e| ApiError::validation_failed(e.to_string()))?;
    let totals = state
        .stores
        .usage
        .totals(&tenant, &subject, metric.as_ref(), period, &buckets)
        .await?;
    Ok(Json(Totals {
        period,
        totals: totals
            .into_iter()
            .map(|t| TotalBody {
                period: t.bucket,
                metric: t.metric,
                amount: t.amount,
            })
            .collect(),
    }))
}

/// A budget and how much of it is used, reserved and left this period.
#[utoipa::path(
    get, path = "/v1/budgets/{subject}/{metric}", tag = "usage", operation_id = "budget_get",
    params(BudgetPath),
    responses(
        (status = 200, description = "The budget", body = BudgetBody),
        (status = 400, description = "Invalid subject or metric"),
        (status = 404, description = "No budget: reservations are unlimited"),
    ),
)]
pub async fn get_budget(
    State(state): State<AppState>,
    ReadAt(tenant, budget): ReadAt<BudgetPath>,
) -> ApiResult<Json<BudgetBody>> {
    let budgets = &state.stores.budgets;
    let status = budgets.get(&tenant, &budget, now_us()).await?;
    Ok(Json(status.ok_or(Missing::Budget)?.into()))
}

/// Set (or replace) a budget: at most `limit` of the metric per day or month.
#[utoipa::path(
    put, path = "/v1/budgets/{subject}/{metric}", tag = "usage", operation_id = "budget_put",
    params(BudgetPath),
    request_body = BudgetRequest,
    responses(
        (status = 200, description = "The budget as it stands", body = BudgetBody),
        (status = 400, description = "Invalid subject or metric, or malformed JSON"),
        (status = 422, description = "Limit out of range, unknown period or field"),
    ),
)]
pub async fn put_budget(
    State(state): State<AppState>,
    WriteAt(tenant, budget): WriteAt<BudgetPath>,
    AppJson(request): AppJson<BudgetRequest>,
) -> ApiResult<Json<BudgetBody>> {
    let rule = BudgetRule {
        limit: amount("limit", request.limit)?,
        period: request.period,
    };
    let budgets = &state.stores.budgets;
    let status = budgets.set(&tenant, &budget, rule, now_us()).await?;
    Ok(Json(status.into()))
}

/// Remove a budget: reservations become unlimited (live ones can still be committed).
#[utoipa::path(
    delete, path = "/v1/budgets/{subject}/{metric}", tag = "usage", operation_id = "budget_delete",
    params(BudgetPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid subject or metric"),
        (status = 404, description = "No budget"),
    ),
)]
pub async fn delete_budget(
    State(state): State<AppState>,
    WriteAt(tenant, budget): WriteAt<BudgetPath>,
) -> ApiResult<StatusCode> {
    let found = state.stores.budgets.delete(&tenant, &budget);
    Missing::Budget.unless(found.await?, StatusCode::NO_CONTENT)
}

/// Hold an amount against the budget before spending it: atomically, so concurrent
/// reservations never take the budget past its limit.
#[utoipa::path(
    post, path = "/v1/budgets/{subject}/{metric}/reserve", tag = "usage", operation_id = "budget_reserve",
    params(BudgetPath),
    request_body = ReserveRequest,
    responses(
        (status = 201, description = "Held until `expires_at`", body = ReservationBody),
        (status = 400, description = "Invalid subject or metric, or malformed JSON"),
        (status = 409, description = "`budget_exceeded`, with `remaining`: it does not fit; nothing was held"),
        (status = 422, description = "Amount or ttl_ms out of range, or an unknown field"),
    ),
)]
pub async fn reserve(
    State(state): State<AppState>,
    WriteAt(tenant, budget): WriteAt<BudgetPath>,
    AppJson(request): AppJson<ReserveRequest>,
) -> ApiResult<Response> {
    let amount = amount("amount", request.amount)?;
    let ttl_ms = request.ttl_ms.0;
    if !(1..=MAX_RESERVATION_TTL_MS).contains(&ttl_ms) {
        return Err(ApiError::validation_failed("ttl_ms is 1 to 86400000"));
    }
    let id = ReservationId::parse(uuid::Uuid::new_v4().to_string())?;
    let reserved = state
        .stores
        .budgets
        .reserve(&tenant, &budget, &id, amount, ttl_ms, now_us())
        .await?;
    let outcomes = &state.metrics.outcomes.of(&super::RESERVATIONS);
    match reserved {
        Reserved::Granted {
            remaining,
            expires_at_us,
        } => {
            outcomes.count("granted");
            let body = ReservationBody {
                reservation_id: id.to_string(),
                remaining,
                expires_at: time(expires_at_us)?,
            };
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Reserved::Exceeded { remaining } => {
            outcomes.count("exceeded");
            Err(BudgetExceeded { remaining }.into())
        }
    }
}

/// Record what was spent (at most what was reserved) as usage; the rest returns.
#[utoipa::path(
    post, path = "/v1/budgets/{subject}/{metric}/reservations/{reservation_id}/commit",
    tag = "usage", operation_id = "budget_commit",
    params(ReservationPath),
    request_body = CommitRequest,
    responses(
        (status = 200, description = "Recorded", body = CommitBody),
        (status = 400, description = "Invalid subject, metric or id, or malformed JSON"),
        (status = 404, description = "No live reservation (committed, released or expired)"),
        (status = 409, description = "`exceeds_reservation`, with `reserved`: more than was reserved; nothing changed"),
        (status = 422, description = "Amount out of range, or an unknown field"),
    ),
)]
pub async fn commit(
    State(state): State<AppState>,
    WriteAt(tenant, (budget, id)): WriteAt<ReservationPath>,
    AppJson(request): AppJson<CommitRequest>,
) -> ApiResult<Json<CommitBody>> {
    let spent = amount("amount", request.amount)?;
    let limits = state.settings.usage.limits();
    let committed = state
        .stores
        .budgets
        .commit(&tenant, &budget, &id, spent, limits, now_us())
        .await?;
    match committed {
        Committed::Done { returned } => {
            state
                .metrics
                .outcomes
                .of(&super::RESERVATIONS)
                .count("committed");
            Ok(Json(CommitBody {
                committed: spent,
                returned,
            }))
        }
        Committed::TooMuch { reserved } => Err(ApiError::conflict(
            "exceeds_reservation",
            format!("amount is more than the {reserved} reserved; nothing was recorded"),
        )
        .with("reserved", reserved)),
        Committed::NotFound => Err(Missing::Reservation.into()),
    }
}

/// Return a whole reservation to the budget.
#[utoipa::path(
    post, path = "/v1/budgets/{subject}/{metric}/reservations/{reservation_id}/release",
    tag = "usage", operation_id = "budget_release",
    params(ReservationPath),
    responses(
        (status = 204, description = "Returned"),
        (status = 400, description = "Invalid subject, metric or id"),
        (status = 404, description = "No live reservation (committed, released or expired)"),
    ),
)]
pub async fn release(
    State(state): State<AppState>,
    WriteAt(tenant, (budget, id)): WriteAt<ReservationPath>,
) -> ApiResult<StatusCode> {
    let budgets = &state.stores.budgets;
    let released = budgets.release(&tenant, &budget, &id).await?;
    if released {
        state
            .metrics
            .outcomes
            .of(&super::RESERVATIONS)
            .count("released");
    }
    Missing::Reservation.unless(released, StatusCode::NO_CONTENT)
}

/// A reservation that does not fit its budget: 409 `budget_exceeded` with what remains.
pub struct BudgetExceeded {
    pub remaining: u64,
}

impl From<BudgetExceeded> for ApiError {
    fn from(exceeded: BudgetExceeded) -> Self {
        Self::conflict(
            "budget_exceeded",
            "the amount does not fit what remains of the budget this period; nothing was held",
        )
        .with("remaining", exceeded.remaining)
    }
}
