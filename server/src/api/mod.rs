//! The HTTP admin API: health, stats, who is online, rooms, and sending or
//! broadcasting as the server. Every error answers with
//! `{"error":{"code","message"}}` (see [`ApiError`]).

mod error;

pub use error::{ApiError, ApiJson};

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_protocol::{CloseCode, Message, ServerFrame, validate_name};

use crate::AppState;
use crate::broker::{Delivery, DeliveryKind, Target};
use crate::hub::{RoomDetail, RoomSummary};
use crate::stats::Stats;
use crate::wire::{encode, now_ms};

/// `GET /health`.
pub(crate) async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": if state.is_shutting_down() { "shutting_down" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": switchboard_protocol::PROTOCOL_VERSION,
        "uptime_ms": state.uptime().as_millis() as u64,
    }))
}

/// `GET /api/stats`.
pub(crate) async fn stats(State(state): State<AppState>) -> Json<Stats> {
    Json(state.stats())
}

/// The body of `GET /api/online`.
#[derive(Debug, Serialize)]
pub(crate) struct Online {
    count: usize,
    users: Vec<String>,
}

/// `GET /api/online`.
pub(crate) async fn online(State(state): State<AppState>) -> Json<Online> {
    let users = state.hub().online_users();
    Json(Online { count: users.len(), users })
}

/// The body of `POST /api/send`.
#[derive(Debug, Deserialize)]
pub(crate) struct SendRequest {
    to: String,
    event: String,
    #[serde(default)]
    data: Value,
}

/// The answer of `POST /api/send` and `POST /api/broadcast`.
#[derive(Debug, Serialize)]
pub(crate) struct Delivered {
    /// How many connections the message was queued to.
    delivered: usize,
}

/// `POST /api/send`: a private message from the server to every connection of a user.
pub(crate) async fn send(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SendRequest>,
) -> Result<Json<Delivered>, ApiError> {
    check_name("to", &request.to)?;
    check_name("event", &request.event)?;
    let message = Message {
        room: None,
        to: Some(request.to.clone()),
        from: state.config().server_name.clone(),
        event: request.event,
        data: request.data,
        ts: now_ms(),
    };
    let delivered = deliver(&state, Target::User(request.to.into()), message).await?;
    Ok(Json(Delivered { delivered }))
}

/// The body of `POST /api/broadcast`.
#[derive(Debug, Deserialize)]
pub(crate) struct BroadcastRequest {
    event: String,
    #[serde(default)]
    data: Value,
    room: Option<String>,
}

/// `POST /api/broadcast`: a message from the server to one room, or to every connection.
pub(crate) async fn broadcast(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<BroadcastRequest>,
) -> Result<Json<Delivered>, ApiError> {
    check_name("event", &request.event)?;
    if let Some(room) = &request.room {
        check_name("room", room)?;
    }
    let target = match &request.room {
        Some(room) => Target::Room(room.as_str().into()),
        None => Target::All,
    };
    let message = Message {
        room: request.room,
        to: None,
        from: state.config().server_name.clone(),
        event: request.event,
        data: request.data,
        ts: now_ms(),
    };
    let delivered = deliver(&state, target, message).await?;
    Ok(Json(Delivered { delivered }))
}

/// The body of `GET /api/rooms`.
#[derive(Debug, Serialize)]
pub(crate) struct Rooms {
    rooms: Vec<RoomSummary>,
}

/// `GET /api/rooms`.
pub(crate) async fn rooms(State(state): State<AppState>) -> Json<Rooms> {
    Json(Rooms { rooms: state.hub().rooms() })
}

/// `GET /api/rooms/{room}`.
pub(crate) async fn room(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<RoomDetail>, ApiError> {
    state.hub().room(&room).map(Json).ok_or_else(|| ApiError::NotFound(format!("no room `{room}`")))
}

/// The body of `POST /api/disconnect`.
#[derive(Debug, Deserialize)]
pub(crate) struct DisconnectRequest {
    user: String,
    /// Close code; default 4501 (kicked: the SDK does not reconnect).
    code: Option<u16>,
    reason: Option<String>,
}

/// The answer of `POST /api/disconnect`.
#[derive(Debug, Serialize)]
pub(crate) struct Disconnected {
    /// How many connections were told to close.
    disconnected: usize,
}

/// `POST /api/disconnect`: closes every connection of a user with a close code.
pub(crate) async fn disconnect(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<DisconnectRequest>,
) -> Result<Json<Disconnected>, ApiError> {
    check_name("user", &request.user)?;
    let code = CloseCode(request.code.unwrap_or(CloseCode::KICKED.0));
    // 1000 and 3000–4999 are the codes an application may send (RFC 6455 7.4).
    if !(code == CloseCode::NORMAL || (3000..5000).contains(&code.0)) {
        return Err(ApiError::BadRequest(format!(
            "`code` must be 1000 or within 3000–4999, not {}",
            code.0
        )));
    }
    let reason = request.reason.unwrap_or_else(|| "disconnected by the server".to_owned());
    let disconnected = state.hub().close_user(&request.user, code, &reason);
    Ok(Json(Disconnected { disconnected }))
}

/// Any path the API does not know.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

/// A known path with the wrong method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn check_name(field: &'static str, name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|reason| ApiError::InvalidName { field, reason })
}

async fn deliver(state: &AppState, target: Target, message: Message) -> Result<usize, ApiError> {
    let frame = encode(&ServerFrame::Message(message));
    let reached =
        state.broker().publish(Delivery { target, frame, kind: DeliveryKind::Message }).await?;
    state.hub().counters.message_accepted();
    Ok(reached)
}
