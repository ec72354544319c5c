//! JSON bodies, paths and queries whose rejections are problem+json like every other error.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderValue, header},
};

use crate::error::ApiError;

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

/// Refuses a body that is not declared as JSON, for routes that read raw bytes.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    require_json_type(headers.get(header::CONTENT_TYPE))
}

/// `require_json` on the `Content-Type` alone (see `ContentType`).
pub fn require_json_type(content_type: Option<&HeaderValue>) -> Result<(), ApiError> {
    let is_json = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            // Compared without a lowercased copy: this runs per request.
            let mime = mime.trim().as_bytes();
            let (prefix, suffix) = (b"application/".as_slice(), b"+json".as_slice());
            let starts =
                mime.len() >= prefix.len() && mime[..prefix.len()].eq_ignore_ascii_case(prefix);
            let ends = mime.len() >= suffix.len()
                && mime[mime.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
            mime.eq_ignore_ascii_case(b"application/json") || (starts && ends)
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

/// The request's `Content-Type`, for a handler that checks it (`require_json_type`) after its
/// other checks. Unlike the `HeaderMap` extractor it copies no header map: only this value,
/// which shares the request's bytes.
pub struct ContentType(pub Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for ContentType {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(header::CONTENT_TYPE).cloned()))
    }
}

/// A whole number of 0 or more as JSON Schema's `integer` counts them: `600`, `600.0` and
/// `6e2` alike (what a generated client or a JavaScript caller may send). Document a field of
/// this type with `#[schema(value_type = u64)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Whole(pub u64);

impl<'de> serde::Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(deserializer)?;
        n.as_u64()
            .or_else(|| {
                n.as_f64()
                    // Every whole double up to 2^53 - 1 is exact (the largest token, amount...).
                    .filter(|f| f.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(f))
                    .map(|f| f as u64)
            })
            .map(Whole)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("{n} is not a whole number of 0 or more"))
            })
    }
}

/// A backend time in microseconds since the epoch, as the RFC 3339 timestamps answers carry.
pub fn time_of_us(us: u64) -> Result<time::OffsetDateTime, ApiError> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|_| ApiError::internal())
}

/// A listing's `cursor` query parameter: `None` (the start) when absent or empty, else what
/// `decode` makes of it; a cursor it refuses is a 400.
pub fn page_cursor<T>(
    raw: Option<&str>,
    decode: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => decode(raw)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_request("cursor is not one this service issued")),
    }
}

/// A listing's `limit` query parameter: `default` when absent, else 1 to `max`.
pub fn page_limit(requested: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match requested {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_request(format!(
            "limit must be from 1 to {max}"
        ))),
    }
}

#[cfg(test)]
mod content_type_tests {
    use super::*;

    #[test]
    fn json_and_json_suffixed_types_are_accepted_in_any_case() {
        let check =
            |raw: &str| require_json_type(Some(&HeaderValue::from_str(raw).unwrap())).is_ok();
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
            "application/merge-patch+json",
            "APPLICATION/PROBLEM+JSON",
        ] {
            assert!(check(json), "{json:?} is JSON");
        }
        for other in [
            "text/json",
            "application/jsonx",
            "+json",
            "",
            "application/",
            "json",
        ] {
            assert!(!check(other), "{other:?} is not JSON");
        }
        assert!(
            require_json_type(None).is_err(),
            "no Content-Type is not JSON"
        );
    }

    #[test]
    fn a_whole_number_may_be_written_as_a_float_up_to_2_pow_53_minus_1() {
        let whole = |text: &str| serde_json::from_str::<Whole>(text).map(|w| w.0).ok();
        assert_eq!(whole("600"), Some(600));
        assert_eq!(whole("6e2"), Some(600));
        assert_eq!(whole("9007199254740991.0"), Some(9_007_199_254_740_991));
        assert_eq!(
            whole("9007199254740992.0"),
            None,
            "past 2^53 a double is not exact"
        );
        assert_eq!(whole("1.5"), None);
        assert_eq!(whole("-1"), None);
    }
}
