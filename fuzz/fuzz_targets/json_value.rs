//! The checks a cache value passes on the way in, and the comparisons and arithmetic done on
//! stored values: no input panics, a value accepted is JSON any parser reads, and JSON equality
//! is reflexive.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use statekeeper::domain::cache::{CacheValue, Increment, json_equal};

fuzz_target!(|data: &[u8]| {
    let accepted = CacheValue::parse(Bytes::copy_from_slice(data), 1 << 20).is_ok();
    let parsed = serde_json::from_slice::<serde_json::Value>(data);
    if accepted {
        assert!(std::str::from_utf8(data).is_ok(), "accepted bytes that are not UTF-8");
        assert!(
            serde_json::from_slice::<&serde_json::value::RawValue>(data).is_ok(),
            "accepted text that is not JSON"
        );
    }
    if let Ok(value) = &parsed {
        assert!(accepted, "refused JSON that parses");
        assert!(json_equal(value, value), "a value must equal itself: {value}");
        for by in [Increment::Integer(1), Increment::Integer(i64::MIN), Increment::Float(0.5)] {
            let _ = by.apply(data);
        }
    }
});
