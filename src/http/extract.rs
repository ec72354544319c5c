//! Extractors in the house format: JSON bodies, paths and queries whose rejections are
//! problem+json like every other error, and the caller's tenant.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    },
    http::{StatusCode, header, request::Parts},
};
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::AppState;
use crate::{
    config::{ApiKeySettings, Scope},
    domain::ids::Tenant,
    error::ApiError,
};

/// A JSON object body: `axum::Json` whose rejections are `ApiError`s, and which refuses any
/// top-level value other than an object with 422 (serde would otherwise fill a struct from a
/// JSON array, by position).
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_json(request.headers())?;
        let bytes = Bytes::from_request(request, state).await?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{') {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| {
                ApiError::invalid_request(format!("the body is not valid JSON: {e}"))
            })?;
            return Err(ApiError::validation_failed(
                "the body must be a JSON object",
            ));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(AppJson(value))
    }
}

/// `axum::extract::Path` whose rejection is an `ApiError`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// `axum::extract::Query` whose rejection is an `ApiError`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::validation_failed(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::invalid_request(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::unsupported_media_type("expected Content-Type: application/json")
            }
            JsonRejection::BytesRejection(e) => bytes_rejection(e),
            other => ApiError::invalid_request(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        bytes_rejection(rejection)
    }
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large("the request body is larger than limits.max_body_bytes")
    } else {
        ApiError::invalid_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::invalid_id(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid_request(rejection.body_text())
    }
}

/// Refuses a body that is not declared as JSON, for routes that read raw bytes.
pub fn require_json(parts_headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let is_json = parts_headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if is_json {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(
            "expected Content-Type: application/json",
        ))
    }
}

/// The API keys, by the hex SHA-256 of the key.
#[derive(Debug)]
pub struct ApiKeys {
    by_hash: HashMap<String, (Tenant, Vec<Scope>)>,
    /// Every request's tenant when no keys are configured.
    default_tenant: Tenant,
}

impl ApiKeys {
    pub fn new(keys: &[ApiKeySettings]) -> Self {
        Self {
            by_hash: keys
                .iter()
                .map(|k| {
                    (
                        k.sha256.to_ascii_lowercase(),
                        (Tenant::new(k.tenant.clone()), k.scopes.clone()),
                    )
                })
                .collect(),
            default_tenant: Tenant::new(Tenant::DEFAULT),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The tenant a request acts for, if its key allows `needed`.
    fn authorize(&self, parts: &Parts, needed: Scope) -> Result<Tenant, ApiError> {
        if parts
            .headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .nth(1)
            .is_some()
        {
            return Err(ApiError::invalid_request(
                "more than one Authorization header: send exactly one",
            ));
        }
        if self.by_hash.is_empty() {
            return Ok(self.default_tenant.clone());
        }
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("an API key is required: Authorization: Bearer <key>")
            })?;
        let hash = hex::encode(Sha256::digest(presented.as_bytes()));
        let (tenant, scopes) = self
            .by_hash
            .get(&hash)
            .ok_or_else(|| ApiError::unauthorized("the API key is not valid"))?;
        let allowed = scopes.contains(&Scope::Admin) || scopes.contains(&needed);
        if !allowed {
            let scope = match needed {
                Scope::Read => "read",
                Scope::Write => "write",
                Scope::Admin => "admin",
            };
            return Err(ApiError::forbidden(format!(
                "this API key lacks the {scope} scope"
            )));
        }
        Ok(tenant.clone())
    }
}

/// A caller allowed to read: the tenant its key belongs to (`default` without keys).
pub struct Reader(pub Tenant);

/// A caller allowed to write.
pub struct Writer(pub Tenant);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.api_keys.authorize(parts, Scope::Read).map(Reader)
    }
}

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.api_keys.authorize(parts, Scope::Write).map(Writer)
    }
}

/// The `If-Match` header schema, as a regular expression: `*`, or one version (a non-negative
/// integer of at most 19 digits, so every one fits a `u64`) written `"7"`, `7` or `W/"7"`.
/// [`IfMatch`] accepts exactly what this matches and refuses anything else with 400
/// `invalid_request`; [`IfMatchHeader`] documents it.
pub const IF_MATCH_PATTERN: &str = r#"^(\*|W/"[0-9]{1,19}"|"[0-9]{1,19}"|[0-9]{1,19})$"#;

/// The documented `If-Match` request header of a versioned write: use it in an operation's
/// `params(...)` (e.g. `params(ThreadPath, IfMatchHeader)`) and take [`IfMatch`] in the handler.
/// Its schema is [`IF_MATCH_PATTERN`]; [`if_match_param`] gives the same parameter as a value.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// Write only when the resource's current version (its `ETag`) is this one: `"3"`, `3` or
    /// `W/"3"`, all compared alike. `*` names no version and adds no condition. Any other value
    /// is 400 `invalid_request`; a version that is not the current one is 412
    /// `precondition_failed` and nothing is written.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = r#"^(\*|W/"[0-9]{1,19}"|"[0-9]{1,19}"|[0-9]{1,19})$"#,
        example = "\"3\""
    )]
    #[allow(dead_code)]
    if_match: Option<String>,
}

/// The `If-Match` header parameter, as [`IfMatchHeader`] documents it.
pub fn if_match_param() -> utoipa::openapi::path::Parameter {
    IfMatchHeader::into_params(|| Some(utoipa::openapi::path::ParameterIn::Header))
        .pop()
        .expect("IfMatchHeader documents one header")
}

/// The `If-Match` precondition of a versioned write: `Some(version)` when the header names one
/// (`"7"`, `7` or `W/"7"`), `None` when it is absent or `*` (which names no version; what a route
/// does without one is its own business). Exactly [`IF_MATCH_PATTERN`] is accepted: anything
/// else (a list, an empty value, spaces, a version beyond 19 digits, the header twice) is 400
/// `invalid_request`, before anything is read or written.
pub struct IfMatch(pub Option<u64>);

impl IfMatch {
    /// The precondition a header value states, or `None` when it does not fit the schema.
    pub fn parse(text: &str) -> Option<IfMatch> {
        if text == "*" {
            return Some(IfMatch(None));
        }
        let digits = text
            .strip_prefix("W/\"")
            .or_else(|| text.strip_prefix('"'))
            .map(|rest| rest.strip_suffix('"'))
            .unwrap_or(Some(text))?;
        let well_formed =
            (1..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return None;
        }
        digits.parse::<u64>().ok().map(|v| IfMatch(Some(v)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(header::IF_MATCH).iter();
        let Some(raw) = values.next() else {
            return Ok(IfMatch(None));
        };
        let refuse =
            || ApiError::invalid_request("If-Match must be one version, \"3\", 3 or W/\"3\", or *");
        if values.next().is_some() {
            return Err(refuse());
        }
        raw.to_str()
            .ok()
            .and_then(IfMatch::parse)
            .ok_or_else(refuse)
    }
}

/// The `ETag` header value of a resource version.
pub fn etag(version: u64) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Option<Option<u64>> {
        IfMatch::parse(text).map(|IfMatch(v)| v)
    }

    #[test]
    fn if_match_accepts_exactly_its_documented_schema() {
        assert_eq!(parsed("*"), Some(None));
        assert_eq!(parsed("7"), Some(Some(7)));
        assert_eq!(parsed("\"7\""), Some(Some(7)));
        assert_eq!(parsed("W/\"7\""), Some(Some(7)));
        assert_eq!(parsed("0"), Some(Some(0)));
        assert_eq!(
            parsed("9999999999999999999"),
            Some(Some(9_999_999_999_999_999_999))
        );
        for bad in [
            "",
            " 7",
            "7 ",
            "\"7",
            "7\"",
            "W/7",
            "w/\"7\"",
            "W/\"\"",
            "\"\"",
            "-1",
            "+1",
            "1.0",
            "\"1\", \"2\"",
            "**",
            "\"*\"",
            "18446744073709551615",
            "00000000000000000001",
            "٣",
        ] {
            assert_eq!(parsed(bad), None, "{bad:?} is refused");
        }
    }

    #[test]
    fn if_match_header_documents_the_pattern() {
        let parameter = serde_json::to_value(if_match_param()).unwrap();
        assert_eq!(parameter["name"], "If-Match");
        assert_eq!(parameter["in"], "header");
        assert_eq!(parameter["required"], false);
        assert_eq!(parameter["schema"]["type"], "string");
        assert_eq!(parameter["schema"]["pattern"], IF_MATCH_PATTERN);
    }
}
