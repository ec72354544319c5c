//! Identifiers: tenants, and the ids that appear in paths.

use std::fmt;

/// Longest id accepted in a path, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Why an id was refused; the message goes to the caller as the problem's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1-{MAX_ID_BYTES} bytes of [A-Za-z0-9._:@-]{extra}")]
pub struct InvalidId {
    pub what: &'static str,
    pub extra: &'static str,
}

/// True for 1–256 bytes of `[A-Za-z0-9._:@-]`.
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// Tenant names are narrower than ids (no `:`, `.`, `@`) so that a tenant can never look like
/// part of another tenant's key.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The tenant a request runs for. Only the auth extractor and tests make one.
/// Shared, not copied: every request carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(std::sync::Arc<str>);

impl Tenant {
    pub const DEFAULT: &'static str = "default";

    /// Panics on an invalid name: tenant names come from validated settings.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        assert!(valid_tenant_name(&name), "invalid tenant name {name:?}");
        Self(name.into())
    }

    /// A tenant name read from outside the settings (a backup file).
    pub fn parse(name: &str) -> Result<Self, String> {
        if valid_tenant_name(name) {
            Ok(Self(name.into()))
        } else {
            Err(format!(
                "{name:?} is not a tenant name (1-64 of [A-Za-z0-9_-])"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated id type: `path_id!(/// doc
/// Name, "what it is", ", extra rule", |raw: &str| -> bool)`. Used for every id a path carries.
macro_rules! path_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $extra:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(
                raw: impl Into<String>,
            ) -> Result<Self, $crate::domain::ids::InvalidId> {
                let raw = raw.into();
                let check: fn(&str) -> bool = $check;
                if check(&raw) {
                    Ok(Self(raw))
                } else {
                    Err($crate::domain::ids::InvalidId { what: $what, extra: $extra })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub(crate) use path_id;

path_id!(
    /// A cache namespace.
    Namespace, "namespace", "", valid_id
);
path_id!(
    /// A cache key; `_` starts the names of the namespace's own operations (`_mget`), so no key may.
    CacheKey, "cache key", ", not starting with _", |k| valid_id(k) && !k.starts_with('_')
);

/// `N` random bytes, URL-safe base64 without padding: the secret part of every token this
/// service hands out (lock tokens, confirmation tokens, job lease tokens).
pub fn random_token<const N: usize>() -> String {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use rand::Rng as _;
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("a"));
        assert!(valid_id("user:42@host.example-x_y"));
        assert!(valid_id(&"a".repeat(256)));
        assert!(!valid_id(&"a".repeat(257)));
        assert!(!valid_id(""));
        for bad in ["a b", "a/b", "a{b}", "é", "a*", "a\n"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(CacheKey::parse("_mget").is_err());
        assert!(CacheKey::parse("k_").is_ok());
        assert!(Namespace::parse("_ns").is_ok());
    }

    #[test]
    fn tenants() {
        assert!(valid_tenant_name("acme-1_b"));
        assert!(!valid_tenant_name("a:b"));
        assert!(!valid_tenant_name(""));
        assert!(!valid_tenant_name(&"t".repeat(65)));
    }
}
