//! The cache's rules: a value is any JSON document, kept as the exact bytes the caller sent.

use bytes::Bytes;

use crate::domain::ids::CacheKey;

/// Why a cache value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the value is {size} bytes; cache.max_value_bytes is {max}")]
    TooLarge { size: usize, max: usize },
}

/// A JSON value as stored: validated once on the way in, then moved as bytes so that a read
/// returns exactly what was written and no layer re-serialises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheValue(Bytes);

impl CacheValue {
    pub fn parse(raw: Bytes, max_bytes: usize) -> Result<Self, InvalidValue> {
        if raw.len() > max_bytes {
            return Err(InvalidValue::TooLarge {
                size: raw.len(),
                max: max_bytes,
            });
        }
        // JSON text is UTF-8 (RFC 8259 §8.1); serde skips the bytes of strings it ignores, so
        // the encoding is checked on its own.
        std::str::from_utf8(&raw).map_err(|e| InvalidValue::NotJson(format!("not UTF-8: {e}")))?;
        serde_json::from_slice::<serde::de::IgnoredAny>(&raw)
            .map_err(|e| InvalidValue::NotJson(e.to_string()))?;
        Ok(Self(raw))
    }

    /// Wraps bytes that an adapter stored earlier through `parse`.
    pub fn from_stored(raw: Bytes) -> Self {
        Self(raw)
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

/// Where a key listing resumes. Each backend has its own kind of cursor: the memory backend's
/// last key (`m.{key}`), Redis's SCAN cursor (`r.{n}`). Callers treat it as opaque; its shape
/// is simple enough for the OpenAPI document to state exactly ([`ListCursor::PATTERN`]), so
/// every cursor the schema allows is one the service accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCursor {
    Start,
    /// Resume after this key.
    Memory(String),
    /// A Redis `SCAN` cursor.
    Redis(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not one this service returned")]
pub struct InvalidCursor;

impl ListCursor {
    /// Every cursor `parse` accepts (empty means the start).
    pub const PATTERN: &'static str =
        r"^(|m\.[A-Za-z0-9.:@-][A-Za-z0-9._:@-]{0,255}|r\.[0-9]{1,19})$";

    pub fn parse(raw: Option<&str>) -> Result<Self, InvalidCursor> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Self::Start);
        };
        match raw.split_once('.') {
            Some(("m", key)) if CacheKey::parse(key).is_ok() => Ok(Self::Memory(key.to_string())),
            // At most 19 digits always fits a u64.
            Some(("r", n))
                if (1..=19).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) =>
            {
                n.parse().map(Self::Redis).map_err(|_| InvalidCursor)
            }
            _ => Err(InvalidCursor),
        }
    }

    /// The caller's form; `None` for `Start`, which ends a listing.
    pub fn encode(&self) -> Option<String> {
        match self {
            Self::Start => None,
            Self::Memory(key) => Some(format!("m.{key}")),
            Self::Redis(n) => Some(format!("r.{n}")),
        }
    }
}

/// Whether two JSON documents are the same value: object key order and number spelling (`1`,
/// `1.0`, `1e0`) do not matter. This is what compare-and-set compares.
pub fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Integers exactly (also past 64 bits), other numbers as doubles; numbers beyond a double's
/// range (`1e400`) only equal the same spelling.
fn numbers_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    let integer = |n: &serde_json::Number| !n.as_str().contains(['.', 'e', 'E']);
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        // JSON spells an integer one way (no leading zeros, no `+`).
        _ if integer(x) && integer(y) => x.as_str() == y.as_str(),
        _ => match (x.as_f64(), y.as_f64()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => x.as_str() == y.as_str(),
            _ => false,
        },
    }
}

/// Why an increment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IncrError {
    #[error("the stored value is not a number")]
    NotANumber,
    #[error("the result is out of range")]
    OutOfRange,
}

/// An increment, prepared once for both adapters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Increment {
    /// Exact 64-bit integer arithmetic, used when the stored value is an integer too.
    Integer(i64),
    Float(f64),
}

impl Increment {
    pub fn from_json(by: &serde_json::Number) -> Self {
        match by.as_i64() {
            Some(i) => Self::Integer(i),
            None => Self::Float(by.as_f64().unwrap_or(f64::NAN)),
        }
    }

    /// The JSON text of a counter created by this increment.
    pub fn initial_text(&self) -> Result<String, IncrError> {
        match *self {
            Self::Integer(i) => Ok(i.to_string()),
            Self::Float(f) => format_float(f),
        }
    }

    pub fn as_f64(&self) -> f64 {
        match *self {
            Self::Integer(i) => i as f64,
            Self::Float(f) => f,
        }
    }

    /// Adds to a stored JSON value: integer + integer stays an exact integer, anything else is
    /// a float. The Redis script `cache_incr.lua` implements the same rules.
    pub fn apply(&self, stored: &[u8]) -> Result<String, IncrError> {
        let number = match serde_json::from_slice::<serde_json::Value>(stored) {
            Ok(serde_json::Value::Number(n)) => n,
            _ => return Err(IncrError::NotANumber),
        };
        if let (Self::Integer(by), Some(current)) = (self, number.as_i64()) {
            return current
                .checked_add(*by)
                .map(|sum| sum.to_string())
                .ok_or(IncrError::OutOfRange);
        }
        // A number beyond a double's range (`1e400`) is a number that does not fit.
        format_float(number.as_f64().ok_or(IncrError::OutOfRange)? + self.as_f64())
    }
}

/// Formats a float as C's `%.{15,16,17}g` does, taking the first precision that reads back as
/// the same number. The Lua script formats the same way with `string.format`, so both adapters
/// store the same text.
pub fn format_float(value: f64) -> Result<String, IncrError> {
    if !value.is_finite() {
        return Err(IncrError::OutOfRange);
    }
    for precision in 15..=17 {
        let text = format_g(value, precision);
        if text.parse::<f64>().ok() == Some(value) {
            return Ok(text);
        }
    }
    Ok(format_g(value, 17))
}

/// C's `%.{precision}g`.
fn format_g(value: f64, precision: usize) -> String {
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("{:e} always has an exponent");
    let exponent: i32 = exponent.parse().expect("a valid exponent");
    if exponent < -4 || exponent >= precision as i32 {
        let mantissa = trim_fraction(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent) as usize;
        trim_fraction(&format!("{value:.decimals$}")).to_string()
    }
}

fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use crate::capabilities::cache::model::*;

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn json_equality_ignores_order_and_number_spelling() {
        assert!(json_equal(
            &json(r#"{"a":1,"b":[1.0,2]}"#),
            &json(r#"{"b":[1,2e0],"a":1.0}"#)
        ));
        assert!(!json_equal(
            &json(r#"{"a":1}"#),
            &json(r#"{"a":1,"b":null}"#)
        ));
        assert!(!json_equal(&json("[]"), &json("{}")));
        assert!(!json_equal(&json("1"), &json("\"1\"")));
        assert!(!json_equal(
            &json("9007199254740993"),
            &json("9007199254740992")
        ));
        assert!(json_equal(&json("1e400"), &json("1e400")));
        assert!(!json_equal(&json("1e400"), &json("2e400")));
        assert!(!json_equal(&json("1e400"), &json("1")));
        assert!(!json_equal(
            &json("12345678901234567890123"),
            &json("12345678901234567890124")
        ));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for cursor in [ListCursor::Memory("k:1".into()), ListCursor::Redis(17)] {
            let text = cursor.encode().unwrap();
            assert_eq!(ListCursor::parse(Some(&text)).unwrap(), cursor);
        }
        assert_eq!(ListCursor::parse(None).unwrap(), ListCursor::Start);
        assert!(ListCursor::parse(Some("!!")).is_err());
        assert!(ListCursor::parse(Some("eDox")).is_err());
        assert!(ListCursor::parse(Some("m._mget")).is_err());
        assert!(ListCursor::parse(Some("r.")).is_err());
        assert!(ListCursor::parse(Some("r.12345678901234567890")).is_err());
        assert_eq!(
            ListCursor::parse(Some("r.9999999999999999999")).unwrap(),
            ListCursor::Redis(9_999_999_999_999_999_999)
        );
    }

    #[test]
    fn increments() {
        let int = Increment::from_json(&serde_json::Number::from(2));
        assert_eq!(int.apply(b"40").unwrap(), "42");
        assert_eq!(int.apply(b"1.5").unwrap(), "3.5");
        assert_eq!(int.apply(b"\"1\"").unwrap_err(), IncrError::NotANumber);
        assert_eq!(int.apply(b"{}").unwrap_err(), IncrError::NotANumber);
        assert_eq!(
            int.apply(i64::MAX.to_string().as_bytes()).unwrap_err(),
            IncrError::OutOfRange
        );
        let float = Increment::from_json(&serde_json::Number::from_f64(0.1).unwrap());
        assert_eq!(float.apply(b"0.2").unwrap(), "0.30000000000000004");
        assert_eq!(float.apply(b"1").unwrap(), "1.1");
        assert_eq!(float.initial_text().unwrap(), "0.1");
        assert_eq!(int.apply(b"1e400").unwrap_err(), IncrError::OutOfRange);
    }

    #[test]
    fn float_formatting_matches_c() {
        assert_eq!(format_float(2.5).unwrap(), "2.5");
        assert_eq!(format_float(3.0).unwrap(), "3");
        assert_eq!(format_float(1e20).unwrap(), "1e+20");
        assert_eq!(format_float(1e-5).unwrap(), "1e-05");
        assert_eq!(format_float(0.0001).unwrap(), "0.0001");
        assert_eq!(format_float(-1234.5).unwrap(), "-1234.5");
        assert!(format_float(f64::INFINITY).is_err());
    }

    #[test]
    fn values() {
        assert!(CacheValue::parse(Bytes::from_static(b"{\"a\":1}"), 100).is_ok());
        assert!(CacheValue::parse(Bytes::from_static(b"42"), 100).is_ok());
        assert!(CacheValue::parse(Bytes::from_static(b"null"), 100).is_ok());
        assert!(matches!(
            CacheValue::parse(Bytes::from_static(b"{\"a\":"), 100),
            Err(InvalidValue::NotJson(_))
        ));
        assert!(matches!(
            CacheValue::parse(Bytes::from_static(b"\"abcdef\""), 4),
            Err(InvalidValue::TooLarge { .. })
        ));
        assert!(matches!(
            CacheValue::parse(Bytes::from_static(b"\"\xff\""), 100),
            Err(InvalidValue::NotJson(_))
        ));
        assert!(CacheValue::parse(Bytes::from_static(b"1e400"), 100).is_ok());
    }
}
