//! `GET /events`: the lab's events ([`crate::events`]) as Server-Sent
//! Events. Each message's `id` is the event's id and its data the event
//! as JSON ([`alpy::lab::wire::Event`]). A client that reconnects with
//! `Last-Event-ID` gets what it missed from the bounded history; if the
//! history no longer holds it (or the server restarted), a `gap` message
//! comes first, telling it to read the state (`/queue`) afresh. A
//! follower too slow for the stream is cut off (it reconnects with its
//! last id); the server's stop ends every stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use alpy::lab::wire::{ErrorBody, Event};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as Message, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{ApiError, ApiResult, Shared};
use crate::auth::Caller;
use crate::events::Since;

/// The route.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(events))
}

/// The header a reconnecting follower sends.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // a description for the document only
struct LastEventId {
    /// The id of the last event it saw.
    #[param(rename = "Last-Event-ID")]
    last_event_id: Option<u64>,
}

/// Every change to sessions, labs and boards, as it happens.
#[utoipa::path(get, path = "/events", tag = "service", params(LastEventId), responses((status = 200, description = "a text/event-stream: each message's data is one event, its id the event's id; a `gap` message says events were missed", content_type = "text/event-stream", body = Event), (status = 400, description = "Last-Event-ID is not a number", body = ErrorBody)))]
async fn events(
    State(app): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Message, Infallible>>>> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad("Last-Event-ID must be the id (a number) of an event seen")
                })?,
        ),
    };
    let slot = app.stream_slot(&caller)?;
    let (since, rx) = app.db.events().follow(last);
    tracing::debug!(token = %caller.name, ?last, "following the events");
    let (gap, first) = match since {
        Since::Replay(v) => (None, v),
        Since::Gap(v) => (
            Some(Message::default().event("gap").data(
                "events were missed (the history is shorter, or the server restarted): read /queue afresh",
            )),
            v,
        ),
    };
    let head = stream::iter(
        gap.into_iter()
            .chain(first.into_iter().map(|e| message(&e)))
            .map(Ok),
    );
    let closing = app.closing.subscribe();
    // The slot goes with the stream: dropped when the client leaves.
    let live = stream::unfold((rx, slot), move |(mut rx, slot)| {
        let mut closing = closing.clone();
        async move {
            if *closing.borrow() {
                return None;
            }
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(e) => Some((Ok(message(&e)), (rx, slot))),
                    // Too slow: the client reconnects with its last id.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => None,
                },
                _ = closing.changed() => None,
            }
        }
    });
    Ok(Sse::new(head.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One event as an SSE message.
fn message(e: &Arc<Event>) -> Message {
    Message::default()
        .id(e.id.to_string())
        .data(serde_json::to_string(&**e).unwrap_or_default())
}
