//! Sessions' rules: ids, lifetimes and the changes a session can go through. Both adapters
//! apply a change through `Session::apply` (memory) or a Lua script that mirrors it line by line
//! (Redis), so the two agree on every field.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::domain::{ids::valid_id, ttl::Ttl};

crate::domain::ids::path_id!(
    /// A session id: a random UUID v4, in its lowercase hyphenated form. `parse` accepts exactly
    /// the form `random` makes: any other string can name no session.
    SessionId, "session id", ", a lowercase hyphenated UUID",
    |raw| uuid::Uuid::try_parse(raw).is_ok_and(|uuid| uuid.hyphenated().to_string() == raw)
);

impl SessionId {
    /// A fresh id from the operating system's CSPRNG (122 random bits).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// A fresh id with this one's first hex digit, the rest random (118 random bits). A
    /// rotation draws its new id here, so that the two ids fall in one shard of the Redis
    /// adapter (`store::redis::keys`) and one script can swap them, on a Cluster too.
    pub fn random_beside(&self) -> Self {
        loop {
            let id = Self::random();
            if id.group() == self.group() {
                return id;
            }
        }
    }

    /// The id's first hex digit, 0–15: uniform, as the ids are random.
    pub fn group(&self) -> u16 {
        let first = self.0.chars().next().and_then(|c| c.to_digit(16));
        first.unwrap_or(0) as u16
    }
}

crate::domain::ids::path_id!(
    /// The id of a session's user (or of its workspace): any path id of `domain::ids`.
    UserId, "user id", "", valid_id
);

/// The deployment's session rules (`[sessions]` settings), passed with every store call that
/// can move an expiry or grow a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRules {
    /// Whether reads and writes push the expiry to `now + ttl`.
    pub rolling: bool,
    /// No session lives longer than this after its creation, however often it is renewed,
    /// extended or rotated.
    pub max_lifetime_ms: i64,
    /// Largest `data` + `context` of one session, in bytes of compact JSON
    /// (`Session::content_bytes`); a write that would pass it is refused.
    pub max_bytes: usize,
}

/// One session. Times are Unix milliseconds: the unit the Redis scripts compute in.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub workspace_id: Option<UserId>,
    pub data: Map<String, Value>,
    /// The working context; `None` after it was deleted, until a PUT or a patch sets it again.
    pub context: Option<Map<String, Value>>,
    pub created_at_ms: i64,
    pub last_activity_at_ms: i64,
    pub expires_at_ms: i64,
    /// The idle TTL a rolling renewal or an extend applies.
    pub ttl_seconds: u64,
    /// +1 per change of `data` or `context`; renewals, extends and rotation keep it.
    pub version: u64,
}

/// A change to a live session, applied atomically with the existence (and version) check.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionChange {
    /// JSON merge patches (RFC 7396) of `data` and `context`.
    Patch {
        data: Option<Map<String, Value>>,
        context: Option<Map<String, Value>>,
    },
    /// The context replaced as a whole.
    ReplaceContext(Map<String, Value>),
    /// The context deleted: `GET .../context` is 404 until a PUT or a patch sets one again.
    ClearContext,
    /// A new idle TTL, applied from now, capped by the maximum lifetime.
    Extend(Ttl),
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Session {
    /// A new session of `ttl`, created now with version 1.
    pub fn new(
        user_id: UserId,
        workspace_id: Option<UserId>,
        data: Map<String, Value>,
        context: Map<String, Value>,
        ttl: Ttl,
        now_ms: i64,
    ) -> Self {
        Self {
            id: SessionId::random(),
            user_id,
            workspace_id,
            data,
            context: Some(context),
            created_at_ms: now_ms,
            last_activity_at_ms: now_ms,
            expires_at_ms: now_ms + ttl.seconds() as i64 * 1000,
            ttl_seconds: ttl.seconds(),
            version: 1,
        }
    }

    /// The size `SessionRules::max_bytes` limits: `data` and `context` as compact JSON. The
    /// Redis script measures the same texts (`string.len` of what it stores).
    /// A deleted context counts as its stored text, `null`.
    pub fn content_bytes(&self) -> usize {
        let data = serde_json::to_string(&self.data).map_or(0, |s| s.len());
        let context = serde_json::to_string(&self.context).map_or(0, |s| s.len());
        data + context
    }

    /// The latest instant this session may ever reach.
    pub fn deadline_cap_ms(&self, rules: SessionRules) -> i64 {
        self.created_at_ms + rules.max_lifetime_ms
    }

    /// `now + ttl`, never past the cap.
    fn expiry_from(&self, now_ms: i64, ttl_seconds: u64, rules: SessionRules) -> i64 {
        (now_ms + ttl_seconds as i64 * 1000).min(self.deadline_cap_ms(rules))
    }

    /// What a read does to a live session: with rolling expiry it is activity that renews the
    /// TTL; otherwise nothing. Returns whether anything changed.
    pub fn touch(&mut self, now_ms: i64, rules: SessionRules) -> bool {
        if !rules.rolling {
            return false;
        }
        self.last_activity_at_ms = now_ms;
        self.expires_at_ms = self.expiry_from(now_ms, self.ttl_seconds, rules);
        true
    }

    /// Applies a change to a live session; every change is activity. The Lua script
    /// `session_update.lua` does the same.
    pub fn apply(&mut self, change: SessionChange, now_ms: i64, rules: SessionRules) {
        match change {
            SessionChange::Patch { data, context } => {
                if let Some(patch) = data {
                    merge_patch_object(&mut self.data, patch);
                }
                if let Some(patch) = context {
                    merge_patch_object(self.context.get_or_insert_with(Map::new), patch);
                }
                self.version += 1;
                self.touch(now_ms, rules);
            }
            SessionChange::ReplaceContext(context) => {
                self.context = Some(context);
                self.version += 1;
                self.touch(now_ms, rules);
            }
            SessionChange::ClearContext => {
                self.context = None;
                self.version += 1;
                self.touch(now_ms, rules);
            }
            SessionChange::Extend(ttl) => {
                self.ttl_seconds = ttl.seconds();
                self.expires_at_ms = self.expiry_from(now_ms, ttl.seconds(), rules);
            }
        }
        self.last_activity_at_ms = now_ms;
    }
}

/// Where a session stands in its user's listing: oldest first, then by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListingPlace {
    pub created_at_ms: i64,
    pub id: SessionId,
}

impl Session {
    pub fn place(&self) -> ListingPlace {
        ListingPlace {
            created_at_ms: self.created_at_ms,
            id: self.id.clone(),
        }
    }
}

/// The listing cursor: the place of the previous page's last session, as
/// `s.{created_at_ms}.{session_id}`. Callers treat it as opaque. A page resumes strictly after
/// that place, so every session live through the whole listing appears exactly once, whether
/// or not the one the cursor names still lives. Every cursor [`SessionCursor::PATTERN`]
/// allows is one [`SessionCursor::decode`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor(pub ListingPlace);

impl SessionCursor {
    /// Every cursor `decode` accepts; the empty cursor (the start) is handled by the route.
    pub const PATTERN: &'static str =
        r"^(|s\.[0-9]{1,15}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$";

    pub fn encode(&self) -> String {
        format!("s.{}.{}", self.0.created_at_ms, self.0.id)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let (created, id) = raw.strip_prefix("s.")?.split_once('.')?;
        if !(1..=15).contains(&created.len()) || !created.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self(ListingPlace {
            created_at_ms: created.parse().ok()?,
            id: SessionId::parse(id).ok()?,
        }))
    }
}

/// Sorts sessions into listing order.
pub fn sort_for_listing(sessions: &mut [Session]) {
    sessions.sort_by_cached_key(Session::place);
}

/// One page of a user's live sessions, in listing order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionPage {
    pub sessions: Vec<Session>,
    /// Whether live sessions follow the last one of this page.
    pub more: bool,
}

/// RFC 7396 JSON merge patch of an object by an object: members set to `null` are removed,
/// object members are merged recursively, anything else replaces the member.
pub fn merge_patch_object(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(existing) = slot {
                    merge_patch_object(existing, inner);
                }
            }
            other => {
                target.insert(key, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::capabilities::session::model::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_listing_cursor_round_trips_and_nothing_else_decodes() {
        let id = SessionId::random();
        let cursor = SessionCursor(ListingPlace {
            created_at_ms: 1_764_000_000_123,
            id: id.clone(),
        });
        assert_eq!(SessionCursor::decode(&cursor.encode()), Some(cursor));
        let nil = "s.0.00000000-0000-0000-0000-000000000000";
        assert!(SessionCursor::decode(nil).is_some());
        for bad in [
            String::new(),
            "s.".into(),
            "s.12".into(),
            "s..".into(),
            format!("s.-1.{id}"),
            format!("s.+1.{id}"),
            format!("s.1234567890123456.{id}"),
            format!("s.12.{}", id.as_str().to_uppercase()),
            format!("t.12.{id}"),
            format!("s.12.{id}x"),
            "s.12.00000000-0000-0000-0000-00000000000g".into(),
        ] {
            assert_eq!(SessionCursor::decode(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396_examples() {
        // The examples of RFC 7396 appendix A whose target and patch are objects.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
            (json!({"a":"x"}), json!({"a":{"b":1}}), json!({"a":{"b":1}})),
        ];
        for (target, patch, expected) in cases {
            let mut t = object(target.clone());
            merge_patch_object(&mut t, object(patch.clone()));
            assert_eq!(Value::Object(t), expected, "{target} + {patch}");
        }
    }

    #[test]
    fn session_ids_are_canonical_uuids() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(id.as_str()).unwrap(), id);
        assert_ne!(SessionId::random(), id);
        assert_eq!(
            uuid::Uuid::parse_str(id.as_str())
                .unwrap()
                .get_version_num(),
            4
        );
        for bad in [
            "",
            "not-a-uuid",
            "0E6C3D4A-1B2C-4D5E-8F90-123456789ABC",
            "0e6c3d4a1b2c4d5e8f90123456789abc",
            "{0e6c3d4a-1b2c-4d5e-8f90-123456789abc}",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rolling_renewal_and_extend_never_pass_the_cap() {
        let rules = SessionRules {
            rolling: true,
            max_lifetime_ms: 10_000,
            max_bytes: 1000,
        };
        let ttl = Ttl::new(4, 100).unwrap();
        let mut s = Session::new(
            UserId::parse("u").unwrap(),
            None,
            Map::new(),
            Map::new(),
            ttl,
            1_000,
        );
        assert_eq!(s.expires_at_ms, 5_000);
        assert!(s.touch(3_000, rules));
        assert_eq!(s.expires_at_ms, 7_000);
        s.touch(9_000, rules);
        assert_eq!(s.expires_at_ms, 11_000, "capped at created + max lifetime");
        s.apply(
            SessionChange::Extend(Ttl::new(50, 100).unwrap()),
            9_500,
            rules,
        );
        assert_eq!(s.expires_at_ms, 11_000);
        assert_eq!(s.version, 1, "extend does not change the content");
        let fixed = SessionRules {
            rolling: false,
            ..rules
        };
        assert!(!s.touch(10_000, fixed));
        s.apply(SessionChange::ReplaceContext(Map::new()), 10_000, fixed);
        assert_eq!((s.version, s.expires_at_ms), (2, 11_000));
    }
}
