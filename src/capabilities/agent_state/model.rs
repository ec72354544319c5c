//! Agent states: one conversation per thread, with LangChain-shaped messages.
//!
//! Everything both adapters must agree on lives here: what a valid thread id and message are,
//! how a stored state turns into its JSON, the JSON merge patch of `context`, and the cursor of
//! the listing. Timestamps are whole milliseconds since the Unix epoch inside the stores, so a
//! state reads back identically from memory and from Redis.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::domain::ids::valid_id;

/// A JSON object, as `context`, `metadata` and `additional_kwargs` are.
pub type JsonObject = Map<String, Value>;

/// Path segments under `/v1/agent-states/` that name operations, never threads: a thread with
/// one of these ids could not be reached, so none may be created.
pub const RESERVED_THREAD_IDS: [&str; 2] = ["recent", "cleanup-expired"];

crate::domain::ids::path_id!(
    /// A conversation's id: 1–256 bytes of `[A-Za-z0-9._:@-]`, not one of the reserved words.
    ThreadId, "thread id", ", and not \"recent\" or \"cleanup-expired\"",
    |raw| valid_id(raw) && !RESERVED_THREAD_IDS.contains(&raw)
);

impl ThreadId {
    /// A fresh id for a thread created without one: a random UUID v4.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Who wrote a message, with LangChain's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Human,
    Ai,
    System,
    Tool,
}

/// A message's content: plain text, or a list of content parts (a string, or an object with a
/// string `type` such as `{"type": "text", "text": "..."}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part, e.g. `{"type": "text", "text": "..."}` or `{"type": "image_url", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentPart(pub Value);

/// A schema written as JSON (for rules the derive cannot state).
fn json_schema(value: Value) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::RefOr::T(serde_json::from_value(value).expect("a valid schema"))
}

impl utoipa::PartialSchema for ContentPart {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        json_schema(serde_json::json!({
            "description": "One content part: a string, or an object with a string `type`, e.g. \
                            `{\"type\": \"text\", \"text\": \"...\"}`.",
            "oneOf": [
                {"type": "string"},
                {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
            ]
        }))
    }
}

impl ToSchema for ContentPart {}

/// A tool call requested by an `ai` message, in LangChain's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub name: String,
    #[schema(value_type = Object)]
    pub args: JsonObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Always `"tool_call"` when present.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ToolCallKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallKind {
    ToolCall,
}

/// A message as a caller sends it. `type` is accepted in place of `role` (LangChain's
/// serialised form); `created_at` is kept when given (a conversation being imported) and is
/// the time of the write otherwise. Its schema ([`MessageInput::schema`]) states the rules of
/// `into_message` per role: `tool_calls` only on `ai`, `tool_call_id` exactly on `tool`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    #[serde(alias = "type")]
    pub role: Role,
    pub content: Content,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub additional_kwargs: Option<JsonObject>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
}

impl utoipa::PartialSchema for MessageInput {
    /// One object schema per kind of message, told apart by `role`.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let nullable_string = serde_json::json!({"type": ["string", "null"]});
        let null = serde_json::json!({"type": "null"});
        let tool_calls = serde_json::json!({
            "type": ["array", "null"],
            "items": {"$ref": "#/components/schemas/ToolCall"}
        });
        let variant =
            |roles: &[&str], tool_calls: &Value, tool_call_id: &Value, required: &[&str]| {
                let mut required_fields = vec!["role", "content"];
                required_fields.extend_from_slice(required);
                serde_json::json!({
                    "type": "object",
                    "required": required_fields,
                    "properties": {
                        "role": {"type": "string", "enum": roles},
                        "content": {"$ref": "#/components/schemas/Content"},
                        "name": nullable_string,
                        "id": nullable_string,
                        "tool_calls": tool_calls,
                        "tool_call_id": tool_call_id,
                        "additional_kwargs": {"oneOf": [
                            {"$ref": "#/components/schemas/AdditionalKwargs"},
                            {"type": "null"}
                        ]},
                        "created_at": {"type": ["string", "null"], "format": "date-time"}
                    },
                    "additionalProperties": false
                })
            };
        json_schema(serde_json::json!({
            "description": "A message as a caller sends it: `tool_calls` only on `ai` messages, \
                            `tool_call_id` on `tool` messages and only there. `type` is accepted \
                            in place of `role` (LangChain's serialised form); `created_at` is kept \
                            when given (an imported conversation), the time of the write otherwise.",
            "oneOf": [
                variant(&["human", "system"], &null, &null, &[]),
                variant(&["ai"], &tool_calls, &null, &[]),
                variant(&["tool"], &null, &serde_json::json!({"type": "string"}), &["tool_call_id"])
            ],
            "example": {"role": "human", "content": "Deploy billing to prod"}
        }))
    }
}

impl ToSchema for MessageInput {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        for (name, schema) in [
            ("Content", <Content as utoipa::PartialSchema>::schema()),
            (
                "ContentPart",
                <ContentPart as utoipa::PartialSchema>::schema(),
            ),
            ("ToolCall", <ToolCall as utoipa::PartialSchema>::schema()),
            (
                "ToolCallKind",
                <ToolCallKind as utoipa::PartialSchema>::schema(),
            ),
            (
                "AdditionalKwargs",
                json_schema(serde_json::json!({
                    "type": "object",
                    "description": "Provider-specific fields of a message, kept as given."
                })),
            ),
        ] {
            schemas.push((name.to_string(), schema));
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub role: Role,
    pub content: Content,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub additional_kwargs: Option<JsonObject>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Why a message or a state was refused (422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidState {
    #[error("messages[{index}]: {reason}")]
    Message { index: usize, reason: String },
    #[error("{count} messages in one request; agent_states.max_messages_per_append is {max}")]
    TooManyMessages { count: usize, max: usize },
}

impl MessageInput {
    /// Checks the rules serde cannot express and stamps the message.
    fn into_message(self, now: OffsetDateTime) -> Result<Message, String> {
        if let Content::Parts(parts) = &self.content {
            for (i, ContentPart(part)) in parts.iter().enumerate() {
                let ok = match part {
                    Value::String(_) => true,
                    Value::Object(block) => matches!(block.get("type"), Some(Value::String(_))),
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "content[{i}] must be a string or an object with a string \"type\""
                    ));
                }
            }
        }
        if self.tool_calls.is_some() && self.role != Role::Ai {
            return Err("only ai messages carry tool_calls".into());
        }
        match (self.role, &self.tool_call_id) {
            (Role::Tool, None) => return Err("a tool message needs tool_call_id".into()),
            (Role::Tool, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err("only tool messages carry tool_call_id".into()),
        }
        Ok(Message {
            role: self.role,
            content: self.content,
            name: self.name,
            id: self.id,
            tool_calls: self.tool_calls,
            tool_call_id: self.tool_call_id,
            additional_kwargs: self.additional_kwargs,
            created_at: self
                .created_at
                .map_or(now, |at| at.to_offset(time::UtcOffset::UTC)),
        })
    }
}

/// Validates and stamps the messages of one request: all are accepted or none.
pub fn accept_messages(
    inputs: Vec<MessageInput>,
    max_per_request: usize,
) -> Result<Vec<Message>, InvalidState> {
    if inputs.len() > max_per_request {
        return Err(InvalidState::TooManyMessages {
            count: inputs.len(),
            max: max_per_request,
        });
    }
    let now = from_ms(now_ms());
    inputs
        .into_iter()
        .enumerate()
        .map(|(index, m)| {
            m.into_message(now)
                .map_err(|reason| InvalidState::Message { index, reason })
        })
        .collect()
}

/// A whole state as written by create and replace.
#[derive(Debug, Clone)]
pub struct NewAgentState {
    pub thread_id: ThreadId,
    pub messages: Vec<Message>,
    pub context: JsonObject,
    pub metadata: JsonObject,
    pub is_relevant: bool,
    pub ttl_seconds: u64,
}

/// A thread's record apart from its messages, as both adapters keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub context: JsonObject,
    pub metadata: JsonObject,
    pub is_relevant: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub expires_ms: i64,
    pub version: u64,
    /// The thread's TTL, renewed by every write (a conversation in use does not expire).
    pub ttl_seconds: u64,
}

/// A conversation as the API returns it (and a backup holds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentState {
    #[schema(value_type = String, example = "thread-42")]
    pub thread_id: String,
    /// All messages, or the last `last_messages` of them; `message_count` is always the total.
    pub messages: Vec<Message>,
    #[schema(value_type = Object)]
    pub context: JsonObject,
    #[schema(value_type = Object)]
    pub metadata: JsonObject,
    pub is_relevant: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub version: u64,
    pub message_count: u64,
}

impl Record {
    /// The record of a thread restored as `state` shows it (from a backup), renewed by later
    /// writes with `ttl_seconds`.
    pub fn restored(state: &AgentState, ttl_seconds: u64) -> Self {
        let ms = crate::domain::ttl::unix_ms;
        Self {
            context: state.context.clone(),
            metadata: state.metadata.clone(),
            is_relevant: state.is_relevant,
            created_ms: ms(state.created_at),
            updated_ms: ms(state.updated_at),
            expires_ms: ms(state.expires_at),
            version: state.version,
            ttl_seconds,
        }
    }
}

impl AgentState {
    pub fn from_record(
        thread_id: &ThreadId,
        record: Record,
        messages: Vec<Message>,
        message_count: u64,
    ) -> Self {
        Self {
            thread_id: thread_id.to_string(),
            messages,
            context: record.context,
            metadata: record.metadata,
            is_relevant: record.is_relevant,
            created_at: from_ms(record.created_ms),
            updated_at: from_ms(record.updated_ms),
            expires_at: from_ms(record.expires_ms),
            version: record.version,
            message_count,
        }
    }
}

/// One line of `GET /v1/agent-states/recent`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecentState {
    pub thread_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub message_count: u64,
    pub is_relevant: bool,
}

impl RecentState {
    pub fn new(thread_id: &str, updated_ms: i64, message_count: u64, is_relevant: bool) -> Self {
        Self {
            thread_id: thread_id.to_string(),
            updated_at: from_ms(updated_ms),
            message_count,
            is_relevant,
        }
    }
}

/// RFC 7396 JSON merge patch of `target` by `patch`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The context after the merge patch `patch`. The patch is an object, so the result is one too
/// (a non-object patch would replace the whole context, and the HTTP layer refuses it).
pub fn patch_context(context: &JsonObject, patch: &JsonObject) -> JsonObject {
    let mut merged = Value::Object(context.clone());
    merge_patch(&mut merged, &Value::Object(patch.clone()));
    match merged {
        Value::Object(map) => map,
        _ => unreachable!("an object patch leaves an object"),
    }
}

/// The listing cursor: the last thread id of the previous page, as `t.{thread_id}`. Callers
/// treat it as opaque. Pages are in byte order of the id and resume strictly after it, which is
/// what makes every live thread appear exactly once. Its shape is simple enough for the OpenAPI
/// document to state exactly ([`ListCursor::PATTERN`]): every cursor the schema allows is one
/// the service accepts (any id is a place in byte order, live or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor(pub ThreadId);

impl ListCursor {
    /// Every cursor [`ListCursor::decode`] accepts; the empty cursor (the start) is handled by the
    /// route.
    pub const PATTERN: &'static str = r"^(|t\.[A-Za-z0-9._:@-]{1,256})$";

    pub fn encode(&self) -> String {
        format!("t.{}", self.0.as_str())
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let id = raw.strip_prefix("t.")?;
        valid_id(id).then(|| Self(ThreadId(id.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use crate::capabilities::agent_state::model::*;
    use serde_json::json;

    fn input(v: Value) -> Result<Vec<Message>, String> {
        let m: MessageInput = serde_json::from_value(v).map_err(|e| e.to_string())?;
        accept_messages(vec![m], 10).map_err(|e| e.to_string())
    }

    #[test]
    fn messages() {
        let m = input(json!({"type": "human", "content": "hi"})).unwrap();
        assert_eq!(m[0].role, Role::Human);
        let m =
            input(json!({"role": "ai", "content": "", "created_at": "2026-01-02T05:00:00+02:00"}))
                .unwrap();
        assert_eq!(
            serde_json::to_value(&m[0]).unwrap()["created_at"],
            "2026-01-02T03:00:00Z",
            "kept, in UTC"
        );
        assert!(
            input(
                json!({"role": "ai", "content": [{"type": "text", "text": "x"}, "y"],
            "tool_calls": [{"name": "f", "args": {}, "id": "c1", "type": "tool_call"}]})
            )
            .is_ok()
        );
        assert!(input(json!({"role": "tool", "content": "42", "tool_call_id": "c1"})).is_ok());
        for bad in [
            json!({"role": "user", "content": "x"}),
            json!({"role": "human"}),
            json!({"role": "human", "content": 3}),
            json!({"role": "human", "content": [3]}),
            json!({"role": "human", "content": [{"text": "no type"}]}),
            json!({"role": "human", "content": "x", "extra": 1}),
            json!({"role": "human", "type": "ai", "content": "x"}),
            json!({"role": "tool", "content": "x"}),
            json!({"role": "human", "content": "x", "tool_call_id": "c"}),
            json!({"role": "human", "content": "x", "tool_calls": []}),
            json!({"role": "ai", "content": "x", "tool_calls": [{"name": "f"}]}),
        ] {
            assert!(input(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "k": [1]});
        merge_patch(
            &mut target,
            &json!({"a": "z", "c": {"f": null}, "k": {"x": 1}, "n": null}),
        );
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "k": {"x": 1}}));
        let ctx = json!({"a": 1}).as_object().cloned().unwrap();
        let patch = json!({"a": null, "b": 2}).as_object().cloned().unwrap();
        assert_eq!(Value::Object(patch_context(&ctx, &patch)), json!({"b": 2}));
    }

    #[test]
    fn ids_and_cursors() {
        assert!(ThreadId::parse("recent").is_err());
        assert!(ThreadId::parse("cleanup-expired").is_err());
        assert!(ThreadId::parse("a/b").is_err());
        let c = ListCursor(ThreadId::parse("t:1@x").unwrap());
        assert_eq!(ListCursor::decode(&c.encode()), Some(c));
        assert_eq!(ListCursor::decode("!!"), None);
        assert_eq!(ListCursor::decode("t.a b"), None, "\"a b\" is no id");
        assert_eq!(ListCursor::decode("t."), None);
        assert_eq!(ListCursor::decode("thread-1"), None);
        assert_eq!(
            ListCursor::decode("t.recent").map(|c| c.encode()),
            Some("t.recent".to_string()),
            "a reserved word is still a place in byte order"
        );
    }
}
