//! `/v1/rate-limits`: decisions, not enforcement: the caller asks, statekeeper answers.
//!
//! Decisions the contract leaves open:
//! - A rule is `{policy}` (a `[[rate_limits.policies]]` name) or spelled out
//!   `{name?, algorithm, limit, window_ms, burst?}`; rules of the same shape under one key
//!   share their state, and one check may not name the same shape twice (422).
//! - `remaining` is what is left after this check; `reset_after_ms` is the wait until the rule
//!   is back at its full limit; `retry_after_ms` (denying rules only) is the exact wait until
//!   the same cost would pass, without other traffic. Milliseconds are rounded up, so waiting
//!   them is always enough.
//! - A peek of cost 0 asks about one unit (`allowed` says whether one more would pass).
//! - The `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) name
//!   the tightest rule: the one with the fewest units left (then the longest reset), each
//!   rule named by its `name` or `policy`, else `rule<N>`. Seconds are rounded up.
//! - The rules apply to the path's key; limits on two keys (per user and per tenant) are two
//!   checks, or one key that names both (`tenant-a:user-42` with both rules). One atomic step
//!   across different keys would tie them to one Redis Cluster slot.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, post},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::{
    AppState,
    extract::{AppJson, Whole, WriteAt, id_path},
};
use crate::{
    capabilities::rate_limit::model::{
        Algorithm, Check, Decision, InvalidRule, MAX_RULES, Mode, RateLimitKey, Rule, RuleOutcome,
    },
    error::{ApiError, ApiResult},
};
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        check,
        reset,
    ),
    tags(
    (name = "rate_limits", description = "Rate-limit decisions for any key: sliding window, fixed window or token bucket \
                                          (GCRA), several rules all-or-nothing, exact under concurrency"),
    )
)]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/rate-limits/{key}/check", post(check))
        .route("/v1/rate-limits/{key}", delete(reset))
}

id_path!(LimitPath, key => RateLimitKey, "user-42",
    "1–256 bytes of `[A-Za-z0-9._:@-]`: a user, an API key, an IP, or several joined.");

/// A rule as the request carries it. Read as one struct of optional fields, so that a wrong
/// combination gets a message naming what is missing; documented as [`RuleSchema`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    policy: Option<String>,
    name: Option<String>,
    algorithm: Option<Algorithm>,
    limit: Option<Whole>,
    window_ms: Option<Whole>,
    burst: Option<Whole>,
}

/// A rule: a named policy, or spelled out.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
#[schema(as = RateLimitRule)]
pub enum RuleSchema {
    Policy(PolicyRule),
    SpelledOut(SpelledRule),
}

/// A `[[rate_limits.policies]]` entry of the configuration, by name.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"policy": "api"}))]
pub struct PolicyRule {
    policy: String,
}

/// A rule spelled out. `burst` is for `token_bucket` only; `limit` is at most 100,000 for
/// `sliding_window`; `burst × window_ms / limit` (the time to refill) is at most 30 days.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"algorithm": "sliding_window", "limit": 100, "window_ms": 60000}))]
pub struct SpelledRule {
    /// Names the rule in the answer and the headers.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,64}$", example = "per-minute")]
    name: Option<String>,
    algorithm: Algorithm,
    /// Units per window.
    #[schema(minimum = 1, maximum = 1000000000, example = 100)]
    limit: u64,
    /// 1 ms to 30 days.
    #[schema(minimum = 1, maximum = 2592000000_u64, example = 60000)]
    window_ms: u64,
    /// The most tokens at once (default `limit`).
    #[schema(minimum = 1, maximum = 1000000000)]
    burst: Option<u64>,
}

impl RuleInput {
    fn resolve(self, state: &AppState) -> ApiResult<Rule> {
        let invalid = |e: InvalidRule| ApiError::validation_failed(e.to_string());
        match self {
            Self {
                policy: Some(policy),
                name: None,
                algorithm: None,
                limit: None,
                window_ms: None,
                burst: None,
            } => state.settings.rate_limits.policy(&policy).ok_or_else(|| {
                ApiError::validation_failed(format!("no rate-limit policy is named {policy:?}"))
            }),
            Self {
                policy: Some(_), ..
            } => Err(ApiError::validation_failed(
                "a rule is either {\"policy\"} or spelled out, not both",
            )),
            Self {
                policy: None,
                name,
                algorithm: Some(algorithm),
                limit: Some(Whole(limit)),
                window_ms: Some(Whole(window_ms)),
                burst,
            } => Rule::new(name, algorithm, limit, window_ms, burst.map(|Whole(b)| b))
                .map_err(invalid),
            _ => Err(ApiError::validation_failed(
                "a rule needs \"policy\", or \"algorithm\", \"limit\" and \"window_ms\"",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckMode {
    /// Count the cost when every rule allows it.
    #[default]
    Consume,
    /// Answer without changing anything.
    Peek,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rules": [{"policy": "api"}, {"algorithm": "token_bucket", "limit": 10, "window_ms": 1000, "burst": 20}], "cost": 1}))]
pub struct CheckRequest {
    /// 1 to 10 rules, all-or-nothing: nothing is consumed unless every rule allows.
    #[schema(value_type = Vec<RuleSchema>, min_items = 1, max_items = 10)]
    rules: Vec<RuleInput>,
    /// Units this request costs (default 1); 0 is a peek. At most every rule's limit (burst).
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 1000000000, example = 1)]
    cost: Option<Whole>,
    #[serde(default)]
    mode: CheckMode,
}

impl CheckRequest {
    fn accept(self, state: &AppState) -> ApiResult<Check> {
        if self.rules.is_empty() || self.rules.len() > MAX_RULES {
            return Err(ApiError::validation_failed(format!(
                "rules must hold 1 to {MAX_RULES} rules"
            )));
        }
        let rules = self
            .rules
            .into_iter()
            .map(|r| r.resolve(state))
            .collect::<ApiResult<Vec<Rule>>>()?;
        for (i, rule) in rules.iter().enumerate() {
            if rules[..i].iter().any(|r| r.state_id() == rule.state_id()) {
                return Err(ApiError::validation_failed(
                    "two rules of the same algorithm, limit, window_ms and burst: name it once",
                ));
            }
        }
        let cost = self.cost.map_or(1, |Whole(c)| c);
        if let Some(rule) = rules.iter().find(|r| cost > r.capacity()) {
            return Err(ApiError::validation_failed(format!(
                "cost {cost} is more than a rule allows at once ({}): it could never pass",
                rule.capacity()
            )));
        }
        Ok(Check {
            rules,
            cost,
            mode: match self.mode {
                CheckMode::Consume => Mode::Consume,
                CheckMode::Peek => Mode::Peek,
            },
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[schema(example = "sliding_window")]
    algorithm: Algorithm,
    #[schema(example = 100)]
    limit: u64,
    /// `token_bucket` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<u64>,
    #[schema(example = 60000)]
    window_ms: u64,
    /// Whether this rule alone would let the cost pass.
    allowed: bool,
    /// Units left after this check.
    #[schema(example = 99)]
    remaining: u64,
    /// Milliseconds until the rule is back at its full limit (0: it is).
    #[schema(example = 60000)]
    reset_after_ms: u64,
    /// Denying rules only: milliseconds until the same cost would pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"allowed": false, "degraded": false, "rules": [
    {"name": "api", "algorithm": "sliding_window", "limit": 100, "window_ms": 60000,
     "allowed": false, "remaining": 0, "reset_after_ms": 41250, "retry_after_ms": 1250}
]}))]
pub struct CheckResponse {
    /// Whether every rule allowed it (and, when consuming, it was counted in all of them).
    allowed: bool,
    /// In the order of the request's rules.
    rules: Vec<RuleAnswer>,
    /// Decided without Redis while it is down: per-instance limits (`local`) or failing open
    /// (`allow`), as `rate_limits.degraded` says.
    degraded: bool,
}

fn millis(us: u64) -> u64 {
    us.div_ceil(1000)
}

fn seconds(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

/// The rule the headers describe: fewest units left, then the longest reset.
fn tightest<'a>(rules: &'a [Rule], outcomes: &'a [RuleOutcome]) -> (usize, &'a Rule) {
    let (i, _) = outcomes
        .iter()
        .enumerate()
        .min_by_key(|(_, o)| (o.remaining, std::cmp::Reverse(o.reset_after_us)))
        .unwrap_or((0, &outcomes[0]));
    (i, &rules[i])
}

/// `RateLimit-Policy`, `RateLimit` and, when denied, `Retry-After`.
fn headers(check: &Check, decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    let (i, rule) = tightest(&check.rules, &decision.rules);
    let outcome = &decision.rules[i];
    let name = rule.name.clone().unwrap_or_else(|| format!("rule{i}"));
    let name = name.replace(['"', '\\'], "");
    let mut out = vec![
        (
            HeaderName::from_static("ratelimit-policy"),
            format!(
                "\"{name}\";q={};w={}",
                rule.capacity(),
                rule.window_ms.div_ceil(1000)
            ),
        ),
        (
            HeaderName::from_static("ratelimit"),
            format!(
                "\"{name}\";r={};t={}",
                outcome.remaining,
                seconds(outcome.reset_after_us)
            ),
        ),
    ];
    if let Some(wait) = decision.retry_after_us() {
        out.push((header::RETRY_AFTER, seconds(wait).max(1).to_string()));
    }
    out.into_iter()
        .filter_map(|(name, value)| Some((name, HeaderValue::from_str(&value).ok()?)))
        .collect()
}

/// Check a key against its rules and, unless it is a peek, count the cost: all-or-nothing.
#[utoipa::path(
    post, path = "/v1/rate-limits/{key}/check", tag = "rate_limits", operation_id = "rate_limit_check",
    params(LimitPath),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "The decision; a denial is `allowed: false`", body = CheckResponse,
         headers(
            ("RateLimit-Policy" = String, description = "The tightest rule: `\"name\";q=<limit>;w=<window s>`"),
            ("RateLimit" = String, description = "Its state: `\"name\";r=<remaining>;t=<reset s>`"),
            ("Retry-After" = u64, description = "When denied: seconds until the same cost would pass"),
         )),
        (status = 400, description = "Invalid key or malformed JSON"),
        (status = 422, description = "A rule out of range, an unknown policy, the same rule twice, or a cost no rule could ever allow"),
    ),
)]
pub async fn check(
    State(state): State<AppState>,
    WriteAt(tenant, key): WriteAt<LimitPath>,
    AppJson(request): AppJson<CheckRequest>,
) -> ApiResult<Response> {
    let check = request.accept(&state)?;
    let decision = state
        .stores
        .rate_limits
        .check(&tenant, &key, &check)
        .await?;
    let decisions = &state.metrics.outcomes.of(&super::DECISIONS);
    decisions.count(match (check.consumes(), decision.allowed) {
        (false, _) => "peeked",
        (true, true) => "allowed",
        (true, false) => "denied",
    });
    let headers = headers(&check, &decision);
    let body = CheckResponse {
        allowed: decision.allowed,
        degraded: decision.degraded,
        rules: check
            .rules
            .into_iter()
            .zip(&decision.rules)
            .map(|(rule, outcome)| RuleAnswer {
                burst: (rule.algorithm == Algorithm::TokenBucket).then_some(rule.burst),
                name: rule.name,
                algorithm: rule.algorithm,
                limit: rule.limit,
                window_ms: rule.window_ms,
                allowed: outcome.allowed,
                remaining: outcome.remaining,
                reset_after_ms: millis(outcome.reset_after_us),
                retry_after_ms: outcome.retry_after_us.map(millis),
            })
            .collect(),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().extend(headers);
    Ok(response)
}

/// Forget every rule's state of the key (a reset, e.g. when a plan renews).
#[utoipa::path(
    delete, path = "/v1/rate-limits/{key}", tag = "rate_limits", operation_id = "rate_limit_reset",
    params(LimitPath),
    responses(
        (status = 204, description = "Forgotten (also when nothing was held)"),
        (status = 400, description = "Invalid key"),
    ),
)]
pub async fn reset(
    State(state): State<AppState>,
    WriteAt(tenant, key): WriteAt<LimitPath>,
) -> ApiResult<StatusCode> {
    state.stores.rate_limits.reset(&tenant, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
