//! Conditional writes: the `If-Match` precondition, its documented schema, and `ETag`.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use utoipa::IntoParams;

use crate::error::ApiError;

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
