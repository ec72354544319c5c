//! `/v1/topics`: publish over REST, subscribe over Server-Sent Events, resume after a
//! disconnect without a gap.
//!
//! Decisions the contract leaves open:
//! - A stream without `Last-Event-ID` starts with messages published from then on. With one
//!   (the header, which `EventSource` sends when it reconnects, wins over `?last_event_id=`),
//!   it starts with every retained message after it. When that cannot be exact (see
//!   `topic::model::resume`), it starts with `event: reset` and then *every* retained
//!   message: at most `topics.max_len`, and never a silent gap.
//! - `event: reset` carries `{"reason", "earliest"}` and no `id:`, so a client's
//!   `Last-Event-ID` stays its last real message. Reasons: `unknown_id`, `history_trimmed`
//!   (then the stream goes on), `lagged` and `backend_switched` (then the stream ends, and the
//!   client reconnects with its `Last-Event-ID`: after a lag it resumes exactly while the
//!   messages are retained).
//! - `event` names are 1–64 of `[A-Za-z0-9._:-]`, and `reset` is reserved.
//! - Streams end cleanly (no reset) when the server shuts down.
//! - One topic per stream: `GET /v1/events?topic=a&topic=b` is not offered. `EventSource`
//!   keeps a single `Last-Event-ID`, so such a stream would need an id holding a position per
//!   topic, rewritten on every message; a client gets the same by opening one stream per topic.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{broadcast::error::RecvError, watch};
use utoipa::{IntoParams, ToSchema};

use crate::http::{
    AppState,
    budget::Held,
    extract::{AppJson, AppQuery, ReadAt, WriteAt, id_path},
};
use crate::{
    capabilities::topic::{
        model::{MAX_EVENT_NAME_CHARS, NewEvent, Order, ResetReason, Resume, Shared, TopicName},
        port::Subscription,
    },
    error::{ApiError, ApiResult},
    metrics::Tally,
};
/// This capability's part of the OpenAPI document (`http::openapi` merges every capability's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        publish,
        subscribe,
    ),
    components(schemas(
        ResetData,
    )),
    tags(
    (name = "topics", description = "Publish over REST, subscribe over Server-Sent Events; a reconnecting \
                                      subscriber resumes after its Last-Event-ID exactly, or is told with a reset"),
    )
)]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/topics/{topic}/messages", post(publish))
        .route("/v1/topics/{topic}/events", get(subscribe))
}

id_path!(TopicPath, topic => TopicName, "orders", "The topic: 1–256 bytes of `[A-Za-z0-9._:@-]`.");

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"data": {"order": 42, "status": "shipped"}, "event": "order.updated"}))]
pub struct PublishRequest {
    /// Any JSON (`topics.max_message_bytes`), delivered as the SSE `data:` exactly as sent.
    #[schema(value_type = serde_json::Value)]
    data: Box<RawValue>,
    /// The SSE event name (default `message`): 1–64 of `[A-Za-z0-9._:-]`, not `reset`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    event: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Published {
    /// The message's id: what a subscriber's `Last-Event-ID` will hold after it.
    #[schema(example = "1732600000000-0")]
    id: String,
}

/// One event of a topic stream as an SSE parser reads it (`event` is `message` where the
/// stream sends no `event:` line): a message or a reset. Documentation only: the stream itself
/// is written by axum's SSE encoder.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TopicEvent {
    Message(MessageEvent),
    Reset(ResetEvent),
}

/// A published message.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MessageEvent {
    /// The message's id, which `Last-Event-ID` holds after it.
    #[schema(example = "1732600000000-0")]
    id: String,
    /// The name it was published with, or `message`; never `reset`.
    #[schema(
        pattern = "^(?!reset$)[A-Za-z0-9._:-]{1,64}$",
        example = "order.updated"
    )]
    event: String,
    /// The message's JSON, exactly as published.
    #[schema(content_media_type = "application/json", example = "{\"order\":42}")]
    data: String,
    /// The reconnection delay in ms, when the stream sets one.
    retry: Option<u64>,
}

/// The stream could not go on exactly from where the client was (see the README).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ResetEvent {
    /// A reset carries no `id:` line: a parser repeats the last message's id, if any.
    id: Option<String>,
    #[schema(pattern = "^reset$", example = "reset")]
    event: String,
    /// `ResetData` as JSON.
    #[schema(
        content_media_type = "application/json",
        example = "{\"reason\":\"unknown_id\",\"earliest\":\"1732600000000-0\"}"
    )]
    data: String,
    retry: Option<u64>,
}

/// What a reset says: why, and the earliest retained message's id (the stream goes on from it
/// after `unknown_id` and `history_trimmed`; it ends after `lagged` and `backend_switched`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ResetData {
    #[schema(pattern = "^(unknown_id|history_trimmed|lagged|backend_switched)$")]
    reason: String,
    earliest: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this id, as the `Last-Event-ID` header does (the header wins).
    #[param(max_length = 64)]
    last_event_id: Option<String>,
}

/// Publish a message to a topic: every subscriber on every instance gets it, and it is kept
/// for resuming subscribers (`topics.max_len`, `topics.retention_seconds`).
#[utoipa::path(
    post, path = "/v1/topics/{topic}/messages", tag = "topics", operation_id = "topic_publish",
    params(TopicPath),
    request_body = PublishRequest,
    responses(
        (status = 201, description = "Published", body = Published),
        (status = 400, description = "Invalid topic name or malformed JSON"),
        (status = 413, description = "`data` larger than `topics.max_message_bytes`"),
        (status = 422, description = "Invalid event name, or an unknown field"),
    ),
)]
pub async fn publish(
    State(state): State<AppState>,
    WriteAt(tenant, topic): WriteAt<TopicPath>,
    AppJson(request): AppJson<PublishRequest>,
) -> ApiResult<Response> {
    let settings = &state.settings.topics;
    if request.data.get().len() > settings.max_message_bytes {
        return Err(ApiError::payload_too_large(format!(
            "data is larger than topics.max_message_bytes ({})",
            settings.max_message_bytes
        )));
    }
    if let Some(name) = &request.event {
        let valid = (1..=MAX_EVENT_NAME_CHARS).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !valid || name == "reset" {
            return Err(ApiError::validation_failed(
                "event is 1-64 of [A-Za-z0-9._:-] and not \"reset\"",
            ));
        }
    }
    let event = NewEvent {
        name: request.event,
        data: request.data.get().to_string(),
    };
    let published = state
        .stores
        .topics
        .publish(&tenant, &topic, &event, settings.limits())
        .await?;
    state
        .metrics
        .outcomes
        .of(&super::MESSAGES)
        .count("published");
    let body = Published {
        id: published.id.clone(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Subscribe to a topic as Server-Sent Events (`text/event-stream`), resuming after
/// `Last-Event-ID`.
///
/// Each message: `id:`, `event:` (its name, or `message`), `data:` (its JSON). A comment line
/// every `topics.heartbeat_seconds` keeps an idle stream open. `event: reset` with
/// `{"reason", "earliest"}` says the stream could not continue exactly from where the client
/// was: see the README.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/events", tag = "topics", operation_id = "topic_events",
    params(
        TopicPath,
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last id this client received; sent by EventSource when it reconnects"),
    ),
    responses(
        (status = 200, description = "The stream of events, each a `TopicEvent`; it stays open (unless `topics.max_stream_ms` ends it)", body = TopicEvent, content_type = "text/event-stream"),
        (status = 400, description = "Invalid topic name, or a `last_event_id` query parameter longer than 64 characters"),
        (status = 503, description = "`over_capacity`: this instance has `topics.max_streams` open streams, or the tenant `topics.max_streams_per_tenant` (with `Retry-After`); `backend_unavailable`: the storage backend cannot be reached (mode `redis`); `timeout`: the request ran longer than `server.request_timeout_ms`"),
    ),
)]
pub async fn subscribe(
    State(state): State<AppState>,
    ReadAt(tenant, topic): ReadAt<TopicPath>,
    AppQuery(query): AppQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // A header that is not text is an id no backend made: it resumes with a reset.
    // The query parameter is bounded as documented (a header is any id: a reset).
    if query
        .last_event_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > 64)
    {
        return Err(ApiError::invalid_request(
            "last_event_id is at most 64 characters",
        ));
    }
    let after = match headers.get("last-event-id") {
        Some(raw) => Some(raw.to_str().unwrap_or("\u{fffd}").to_string()),
        None => query.last_event_id,
    };
    let settings = &state.settings.topics;
    // Taken before the store is asked, so a refused stream costs it nothing.
    let held = state.streams.take(&tenant)?;
    let subscription = state
        .stores
        .topics
        .subscribe(&tenant, &topic, after.as_deref(), settings.limits())
        .await?;
    let stream = events(&state, subscription, held);
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(settings.heartbeat_seconds));
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    // Proxies that buffer responses (nginx) would hold messages back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// What a stream still has to do.
struct Feed {
    /// A reset to send first, when the start is not exact.
    reset: Option<SseEvent>,
    /// Backlog messages still to send, shared with the log (each is encoded as it is sent, so
    /// a subscriber that does not read holds no copy).
    backlog: VecDeque<Shared>,
    subscription: Subscription,
    /// The last message sent; live messages not after it were in the backlog.
    last: Option<Order>,
    closing: watch::Receiver<bool>,
    ended: bool,
    counters: StreamCounters,
    /// This stream's place in `topics.max_streams`, given back when the stream ends.
    _held: Held,
    /// When `topics.max_stream_ms` ends it.
    ends_at: Option<tokio::time::Instant>,
}

/// The counters a stream moves, and its place in the subscriber gauge.
struct StreamCounters {
    messages: Tally,
    resets: Tally,
    subscribers: prometheus_client::metrics::gauge::Gauge,
    /// `InjectedBug::TopicDropsReset`: resets go out as comments (the checker's self-test).
    drop_resets: bool,
}

impl Drop for StreamCounters {
    fn drop(&mut self) {
        self.subscribers.dec();
    }
}

/// Resolves when the server begins to shut down (never, for a router served without one).
async fn shutdown(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn reset(reason: ResetReason, earliest: Option<&str>, counters: &StreamCounters) -> SseEvent {
    if counters.drop_resets {
        return SseEvent::default().comment("reset");
    }
    counters.resets.count(reason.as_str());
    let data = serde_json::json!({"reason": reason.as_str(), "earliest": earliest});
    SseEvent::default().event("reset").data(data.to_string())
}

fn message(event: &crate::capabilities::topic::model::Event) -> SseEvent {
    let sse = SseEvent::default().id(&event.id).data(&event.data);
    match &event.name {
        Some(name) => sse.event(name),
        None => sse,
    }
}

/// Resolves at `at` (never without one).
async fn ends(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending::<()>().await,
    }
}

/// Resolves when the backend serving topics switched (never, when nothing tells).
async fn switched(switches: &mut Option<watch::Receiver<u64>>) {
    let told = match switches {
        Some(switches) => switches.changed().await.is_ok(),
        None => false,
    };
    if !told {
        std::future::pending::<()>().await;
    }
}

/// The stream's events: a reset when the start is not exact, the backlog (read a page at a
/// time as the client takes it), then live messages until the log goes away, the backend
/// switches, the subscriber lags, or the server shuts down.
fn events(
    state: &AppState,
    mut subscription: Subscription,
    held: Held,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + use<> {
    let outcomes = &state.metrics.outcomes;
    let counters = StreamCounters {
        messages: outcomes.of(&super::MESSAGES).clone(),
        resets: outcomes.of(&super::RESETS).clone(),
        subscribers: outcomes.gauge(&super::SUBSCRIBERS).clone(),
        drop_resets: state.settings.inject_bug == Some(crate::config::InjectedBug::TopicDropsReset),
    };
    counters.subscribers.inc();
    let last = match subscription.start {
        Resume::After(order) => Some(order),
        _ => None,
    };
    let first = match subscription.start {
        Resume::Reset(reason) => {
            let earliest = subscription.earliest.as_deref();
            Some(reset(reason, earliest, &counters))
        }
        _ => None,
    };
    let feed = Feed {
        reset: first,
        backlog: std::mem::take(&mut subscription.backlog).into(),
        subscription,
        last,
        closing: state.closing.clone(),
        ended: false,
        counters,
        _held: held,
        ends_at: match state.settings.topics.max_stream_ms {
            0 => None,
            ms => Some(tokio::time::Instant::now() + Duration::from_millis(ms)),
        },
    };
    futures_util::stream::unfold(feed, |mut feed| async move {
        let over = feed
            .ends_at
            .is_some_and(|at| at <= tokio::time::Instant::now());
        if feed.ended || over {
            return None;
        }
        if let Some(event) = feed.reset.take() {
            return Some((Ok(event), feed));
        }
        loop {
            if let Some(event) = feed.backlog.pop_front() {
                feed.last = Some(event.order);
                feed.counters.messages.count("delivered");
                return Some((Ok(message(&event)), feed));
            }
            let (Some(more), Some(after)) = (&feed.subscription.more, feed.last) else {
                break;
            };
            let page = tokio::select! {
                biased;
                () = shutdown(&mut feed.closing) => return None,
                () = ends(feed.ends_at) => return None,
                page = more.next_page(after) => page,
            };
            match page {
                Ok(page) if page.is_empty() => feed.subscription.more = None,
                Ok(page) => feed.backlog.extend(page),
                Err(error) => {
                    // The rest cannot be read now: the client resumes from its last id.
                    tracing::warn!(%error, "topic backlog: the next page could not be read");
                    feed.ended = true;
                    let event = reset(ResetReason::BackendSwitched, None, &feed.counters);
                    return Some((Ok(event), feed));
                }
            }
        }
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown(&mut feed.closing) => return None,
                () = ends(feed.ends_at) => return None,
                () = switched(&mut feed.subscription.switches) => Err(RecvError::Closed),
                received = feed.subscription.live.recv() => received,
            };
            match received {
                Ok(event) => {
                    if feed.last.is_some_and(|last| event.order <= last) {
                        continue;
                    }
                    feed.last = Some(event.order);
                    feed.counters.messages.count("delivered");
                    return Some((Ok(message(&event)), feed));
                }
                Err(error) => {
                    let reason = match error {
                        RecvError::Lagged(_) => ResetReason::Lagged,
                        RecvError::Closed => ResetReason::BackendSwitched,
                    };
                    feed.ended = true;
                    let event = reset(reason, None, &feed.counters);
                    return Some((Ok(event), feed));
                }
            }
        }
    })
}
