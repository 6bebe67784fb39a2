//! The HTTP admin API: health, stats, who is online, rooms, and sending or
//! broadcasting as the server. Every error answers with
//! `{"error":{"code","message"}}` (see [`ApiError`]).
//!
//! Request bodies and query strings are strict: a field the endpoint does not
//! know is refused (422 for a body, 400 for a query), because a misspelled
//! optional field such as `roms` for `rooms` would otherwise widen a
//! broadcast to every connection.

pub(crate) mod admin;
pub(crate) mod connections;
mod gate;
pub(crate) use gate::address_gate;
mod error;
mod metrics;
pub(crate) mod openapi;
pub(crate) use metrics::metrics;

pub use error::{ApiError, ApiJson};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_protocol::{CloseCode, Message, RoomInfo, validate_name};

use crate::engine::EngineError;
use crate::engine::catalog::{ManagedRoom, RoomError};
use crate::hub::stats::Stats;
use crate::hub::{RoomDetail, RoomSummary};
use crate::state::server_api::members_limit;
use crate::stream::StreamKey;
use crate::{AppState, ServerError};

impl From<RoomError> for ApiError {
    fn from(err: RoomError) -> Self {
        let message = err.to_string();
        match err {
            RoomError::InvalidName(reason) => ApiError::InvalidName { field: "room", reason },
            RoomError::NotFound(_) => ApiError::NotFound(message),
            RoomError::Exists(_) => ApiError::Conflict { code: "room_exists", message },
            RoomError::Default(_) => ApiError::Conflict { code: "default_room", message },
            RoomError::Full(_) => ApiError::Conflict { code: "room_limit", message },
            RoomError::Unavailable(message) => ApiError::Unavailable(EngineError::Failed(message)),
        }
    }
}

impl From<ServerError> for ApiError {
    fn from(err: ServerError) -> Self {
        match err {
            ServerError::InvalidName { field, reason } => ApiError::InvalidName { field, reason },
            ServerError::InvalidCloseCode(_) => ApiError::BadRequest(err.to_string()),
            ServerError::UnknownSession(_) => ApiError::NotFound(err.to_string()),
            ServerError::Unavailable(message) => {
                ApiError::Unavailable(EngineError::Failed(message))
            }
        }
    }
}

/// The answer of `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok`, `degraded` (multi-node mode with Redis down) or `shutting_down`.
    status: &'static str,
    /// `token` or `insecure`.
    auth: &'static str,
    /// What an operator should fix (the insecure mode).
    warnings: Vec<&'static str>,
    /// The hub's version.
    version: &'static str,
    /// The protocol version.
    protocol: u32,
    /// Milliseconds since the hub started.
    uptime_ms: u64,
    /// In multi-node mode: Redis and this node's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<RedisHealth>,
}

/// Redis as `GET /health` reports it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RedisHealth {
    /// `up` or `down`.
    status: &'static str,
    /// This node's id in the cluster.
    node: String,
}

/// `GET /health`: whether this node serves, and in multi-node mode whether
/// it reaches Redis (`redis: {status: "up"|"down", node}`; `status` is then
/// `degraded` while Redis is down). Needs no key.
#[utoipa::path(get, path = "/health", tag = "hub",
    responses((status = 200, description = "The node's health", body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> Json<Health> {
    let insecure = state.auth().is_insecure();
    let status = match (state.is_shutting_down(), state.redis_up()) {
        (true, _) => "shutting_down",
        (false, Some(false)) => "degraded",
        _ => "ok",
    };
    Json(Health {
        status,
        auth: if insecure { "insecure" } else { "token" },
        warnings: if insecure {
            vec![
                "auth.insecure: connections choose their own user id; configure auth.jwt_secret or auth.jwt_public_key_pem before exposing this hub",
            ]
        } else {
            vec![]
        },
        version: env!("CARGO_PKG_VERSION"),
        protocol: switchboard_protocol::PROTOCOL_VERSION,
        uptime_ms: state.uptime().as_millis() as u64,
        redis: state.redis_up().map(|up| RedisHealth {
            status: if up { "up" } else { "down" },
            node: state.node_id().unwrap_or_default().to_owned(),
        }),
    })
}

/// `GET /api/stats`: this node's figures, and in multi-node mode the
/// cluster's under `cluster`.
#[utoipa::path(get, path = "/api/stats", tag = "hub", security(("api_key" = [])),
    responses((status = 200, description = "This node's figures (and the cluster's)", body = Stats), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(state.cluster_stats().await?))
}

/// The body of `GET /api/online`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Online {
    count: usize,
    users: Vec<String>,
    /// Each user's open connections.
    connections: std::collections::BTreeMap<String, usize>,
}

/// `GET /api/online`: every user connected (to any node, in multi-node
/// mode), with their connection counts.
#[utoipa::path(get, path = "/api/online", tag = "users", security(("api_key" = [])),
    responses((status = 200, description = "Who is connected", body = Online), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn online(State(state): State<AppState>) -> Result<Json<Online>, ApiError> {
    let connections = state.engine().presence().online().await?;
    let users: Vec<String> = connections.iter().map(|(user, _)| user.clone()).collect();
    Ok(Json(Online { count: users.len(), users, connections: connections.into_iter().collect() }))
}

/// The body of `POST /api/send`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendRequest {
    #[schema(value_type = Name)]
    to: String,
    #[schema(value_type = Name)]
    event: String,
    #[serde(default)]
    data: Value,
}

/// The answer of `POST /api/broadcast`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Delivered {
    /// How many connections the message was queued to.
    delivered: usize,
}

/// The answer of `POST /api/send`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SendAnswer {
    /// How many connections got it now.
    delivered: usize,
    /// `live`, `queued` (kept in the inbox for the next connection) or
    /// `dropped` (nobody connected and the inbox keeps no history).
    status: &'static str,
    /// Its offset in the receiver's inbox.
    offset: u64,
}

/// `POST /api/send`: a private message from the server to every connection
/// of a user, kept in their inbox if none is connected.
#[utoipa::path(post, path = "/api/send", tag = "messages", security(("api_key" = [])), request_body = SendRequest,
    responses((status = 200, description = "Sent or queued", body = SendAnswer), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn send(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SendRequest>,
) -> Result<Json<SendAnswer>, ApiError> {
    let sent = state.send(&request.to, &request.event, request.data).await?;
    Ok(Json(SendAnswer {
        delivered: sent.delivered,
        status: sent.status.as_str(),
        offset: sent.offset,
    }))
}

/// The body of `POST /api/broadcast`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BroadcastRequest {
    #[schema(value_type = Name)]
    event: String,
    #[serde(default)]
    data: Value,
    #[schema(value_type = Option<Name>)]
    room: Option<String>,
    /// Several rooms at once (instead of `room`), at most 100: each gets
    /// the message as part of its own stream.
    #[schema(max_items = 100)]
    rooms: Option<Vec<String>>,
    /// With `room` or `rooms`: a session id (as its `welcome` named it) to
    /// leave out, such as the one whose request caused this broadcast.
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    except: Option<String>,
}

/// `POST /api/broadcast`: a message from the server to one room (part of
/// its stream, recoverable like any), or to every connection.
#[utoipa::path(post, path = "/api/broadcast", tag = "messages", security(("api_key" = [])), request_body = BroadcastRequest,
    responses((status = 200, description = "Queued to connections", body = Delivered), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn broadcast(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<BroadcastRequest>,
) -> Result<Json<Delivered>, ApiError> {
    let rooms: Vec<&String> = match (&request.room, &request.rooms) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("give `room` or `rooms`, not both".to_owned()));
        }
        (Some(room), None) => vec![room],
        (None, Some(rooms)) if rooms.is_empty() || rooms.len() > 100 => {
            return Err(ApiError::BadRequest("`rooms` must hold 1 to 100 rooms".to_owned()));
        }
        (None, Some(rooms)) => rooms.iter().collect(),
        (None, None) if request.except.is_some() => {
            return Err(ApiError::BadRequest("`except` needs `room` or `rooms`".to_owned()));
        }
        (None, None) => {
            let delivered = state.broadcast(&request.event, request.data).await?;
            return Ok(Json(Delivered { delivered }));
        }
    };
    // Every name is checked before anything is sent.
    for room in &rooms {
        check_name("rooms", room)?;
    }
    if request.except.as_deref().is_some_and(|session| uuid::Uuid::try_parse(session).is_err()) {
        return Err(ApiError::InvalidBody {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            message: "`except` is not a session id (32 hex digits, as `welcome` names it)".into(),
        });
    }
    let mut delivered = 0;
    for room in rooms {
        let except = request.except.as_deref();
        let published = state.publish_except(room, &request.event, request.data.clone(), except);
        delivered += published.await?.delivered;
    }
    Ok(Json(Delivered { delivered }))
}

/// The body of `GET /api/rooms`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rooms {
    rooms: Vec<RoomSummary>,
}

/// `GET /api/rooms`: every room with members (on any node, in multi-node
/// mode, with the cluster's figures).
#[utoipa::path(get, path = "/api/rooms", tag = "rooms", security(("api_key" = [])),
    responses((status = 200, description = "Rooms with members and managed rooms", body = Rooms), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn rooms(State(state): State<AppState>) -> Result<Json<Rooms>, ApiError> {
    let mut rooms = state.engine().presence().rooms().await?;
    // Managed rooms are listed whether or not anyone is in them.
    let mut managed: std::collections::BTreeMap<String, ManagedRoom> =
        state.managed_rooms().await?.into_iter().map(|room| (room.id.clone(), room)).collect();
    for room in &mut rooms {
        room.managed = managed.remove(&room.id).map(Into::into).unwrap_or_default();
    }
    rooms.extend(managed.into_values().map(|room| RoomSummary {
        id: room.id.clone(),
        members: 0,
        connections: 0,
        messages: 0,
        managed: room.into(),
    }));
    rooms.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    for room in &mut rooms {
        room.managed.last_activity = last_activity(&state, &room.id).await?;
    }
    Ok(Json(Rooms { rooms }))
}

/// The body of `POST /api/rooms`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRoom {
    #[schema(value_type = Name)]
    id: String,
    name: Option<String>,
    description: Option<String>,
    data: Option<Value>,
}

/// `POST /api/rooms`: creates a managed room (201 with it).
#[utoipa::path(post, path = "/api/rooms", tag = "rooms", security(("api_key" = [])), request_body = CreateRoom,
    responses((status = 201, description = "Created", body = RoomDetail), (status = 409, description = "room_exists or room_limit", body = ErrorBody), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn create_room(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateRoom>,
) -> Result<(axum::http::StatusCode, Json<RoomDetail>), ApiError> {
    let info =
        RoomInfo { name: request.name, description: request.description, data: request.data };
    let room = state.create_room(&request.id, info).await?;
    Ok((axum::http::StatusCode::CREATED, Json(RoomDetail::empty(room))))
}

/// `PATCH /api/rooms/{room}`: changes a managed room's `name`,
/// `description` or `data`; a field given as `null` is cleared, one left
/// out is kept.
#[utoipa::path(patch, path = "/api/rooms/{room}", tag = "rooms", security(("api_key" = [])), params(("room" = Name, Path, description = "The room")), request_body = RoomPatch,
    responses((status = 200, description = "Changed", body = RoomDetail), (status = 404, description = "Not a managed room", body = ErrorBody), (status = 409, description = "A default room", body = ErrorBody), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn update_room(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ApiJson(change): ApiJson<serde_json::Map<String, Value>>,
) -> Result<Json<RoomDetail>, ApiError> {
    let text = |value: &Value, field: &str| -> Result<Option<String>, ApiError> {
        match value {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text.clone())),
            _ => Err(ApiError::InvalidBody {
                status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("`{field}` must be a string or null"),
            }),
        }
    };
    let mut name = None;
    let mut description = None;
    let mut data = None;
    for (field, value) in &change {
        match field.as_str() {
            "name" => name = Some(text(value, field)?),
            "description" => description = Some(text(value, field)?),
            "data" => data = Some((!value.is_null()).then(|| value.clone())),
            other => {
                return Err(ApiError::InvalidBody {
                    status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    message: format!(
                        "unknown field `{other}`, expected `name`, `description` or `data`"
                    ),
                });
            }
        }
    }
    let updated = state
        .update_room(&room, |info| {
            if let Some(name) = name {
                info.name = name;
            }
            if let Some(description) = description {
                info.description = description;
            }
            if let Some(data) = data {
                info.data = data;
            }
        })
        .await?;
    let mut detail =
        room_detail(&state, &room).await?.unwrap_or_else(|| RoomDetail::empty(updated.clone()));
    detail.managed = updated.into();
    Ok(Json(detail))
}

/// The body of `PATCH /api/rooms/{room}` as the contract describes it
/// (read as a map, since `null` and a left-out field differ).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct RoomPatch {
    /// A new display name; `null` clears it.
    name: Option<String>,
    /// A new description; `null` clears it.
    description: Option<String>,
    /// New application data; `null` clears it.
    data: Option<Value>,
}

/// A name in the protocol's rules (`validate_name`), for the OpenAPI
/// document only: every room, user and event field refers to it, so the
/// rules are written once. 1 to 128 bytes of UTF-8 (the schema can only
/// bound characters), no control characters, not only whitespace.
pub(crate) struct Name;

impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(switchboard_protocol::name::MAX_NAME_BYTES))
            .pattern(Some(r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$"))
            .description(Some(
                "A name: 1 to 128 bytes of UTF-8, no control characters, not only whitespace",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Name {}

/// The error body of every failed request.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorDetail {
    /// A machine-readable name (`invalid_name`, `not_found`, …).
    code: String,
    /// A human-readable explanation.
    message: String,
}

/// The answer of `DELETE /api/rooms/{room}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Deleted {
    /// How many users were in the room (each taken out).
    members: usize,
}

/// `DELETE /api/rooms/{room}`: deletes a managed room and takes its users out.
#[utoipa::path(delete, path = "/api/rooms/{room}", tag = "rooms", security(("api_key" = [])), params(("room" = Name, Path, description = "The room")),
    responses((status = 200, description = "Deleted; its users taken out", body = Deleted), (status = 404, description = "Not a managed room", body = ErrorBody), (status = 409, description = "A default room", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn delete_room(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    Ok(Json(Deleted { members: state.delete_room(&room).await? }))
}

/// `GET /api/rooms/{room}`.
#[utoipa::path(get, path = "/api/rooms/{room}", tag = "rooms", security(("api_key" = [])), params(("room" = Name, Path, description = "The room")),
    responses((status = 200, description = "The room", body = RoomDetail), (status = 404, description = "No such room", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn room(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<RoomDetail>, ApiError> {
    let managed = state.managed_room(&room).await?;
    let mut detail = match (room_detail(&state, &room).await?, managed) {
        (Some(mut detail), managed) => {
            detail.managed = managed.map(Into::into).unwrap_or_default();
            detail
        }
        (None, Some(managed)) => RoomDetail::empty(managed),
        (None, None) => return Err(ApiError::NotFound(format!("no room `{room}`"))),
    };
    detail.managed.last_activity = last_activity(&state, &room).await?;
    Ok(Json(detail))
}

/// When a room's newest kept message was published.
async fn last_activity(state: &AppState, room: &str) -> Result<Option<u64>, ApiError> {
    let key = StreamKey::Room(room.into());
    Ok(state.engine().last_message_ts(&key).await?)
}

/// A room with members as `GET /api/rooms/{room}` shows it (without its
/// managed fields); `None` when nobody is in it.
async fn room_detail(state: &AppState, room: &str) -> Result<Option<RoomDetail>, ApiError> {
    Ok(state.engine().presence().room(room).await?)
}

/// The query of `GET /api/rooms/{room}/members`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MembersQuery {
    /// Where the page starts: the `cursor` of the previous page.
    cursor: Option<String>,
    /// At most this many users (default 100, at most 1000).
    #[param(maximum = 2147483647)]
    limit: Option<u32>,
}

/// The answer of `GET /api/rooms/{room}/members`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Members {
    room: String,
    members: Vec<String>,
    member_count: usize,
    /// Where the next page starts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// `GET /api/rooms/{room}/members?cursor=&limit=`: one page of the room's
/// users in byte order (default 100, at most 1000), and where the next
/// starts.
#[utoipa::path(get, path = "/api/rooms/{room}/members", tag = "rooms", security(("api_key" = [])), params(("room" = Name, Path, description = "The room"), MembersQuery),
    responses((status = 200, description = "One page of users", body = Members), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 404, description = "No such room", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn members(
    State(state): State<AppState>,
    Path(room): Path<String>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<Members>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    within_contract(None, query.limit)?;
    let limit = members_limit(query.limit);
    let page = state
        .room_members(&room, query.cursor.as_deref(), limit)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no room `{room}`")))?;
    Ok(Json(Members { room, members: page.users, member_count: page.count, cursor: page.cursor }))
}

/// The body of `POST /api/disconnect`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisconnectRequest {
    #[schema(value_type = Name)]
    user: String,
    /// Close code; default 4501 (kicked: the SDK does not reconnect).
    code: Option<u16>,
    reason: Option<String>,
}

/// The answer of `POST /api/disconnect`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Disconnected {
    /// How many connections were told to close.
    disconnected: usize,
}

/// `POST /api/disconnect`: closes every connection of a user (on every node,
/// in multi-node mode) with a close code.
#[utoipa::path(post, path = "/api/disconnect", tag = "users", security(("api_key" = [])), request_body = DisconnectRequest,
    responses((status = 200, description = "Told to close", body = Disconnected), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn disconnect(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<DisconnectRequest>,
) -> Result<Json<Disconnected>, ApiError> {
    let code = CloseCode(request.code.unwrap_or(CloseCode::KICKED.0));
    let reason = request.reason.unwrap_or_else(|| "disconnected by the server".to_owned());
    let disconnected = state.disconnect(&request.user, code, &reason).await?;
    Ok(Json(Disconnected { disconnected }))
}

/// The body of `POST /api/rooms/{room}/join` and `/leave`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembershipRequest {
    #[schema(value_type = Name)]
    user: String,
}

/// The answer of `POST /api/rooms/{room}/join` and `/leave`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ordered {
    /// How many of the user's connections were told (across the cluster
    /// in multi-node mode); 0 when the user is not connected.
    connections: usize,
}

/// `POST /api/rooms/{room}/join`: puts every connection of a user in the
/// room (a server-side join; see [`AppState::join`]).
#[utoipa::path(post, path = "/api/rooms/{room}/join", tag = "rooms", security(("api_key" = [])), params(("room" = Name, Path, description = "The room")), request_body = MembershipRequest,
    responses((status = 200, description = "Ordered", body = Ordered), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn join(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ApiJson(request): ApiJson<MembershipRequest>,
) -> Result<Json<Ordered>, ApiError> {
    Ok(Json(Ordered { connections: state.join(&request.user, &room).await? }))
}

/// `POST /api/rooms/{room}/leave`: takes every connection of a user out of
/// the room (see [`AppState::leave`]).
#[utoipa::path(post, path = "/api/rooms/{room}/leave", tag = "rooms", security(("api_key" = [])), params(("room" = Name, Path, description = "The room")), request_body = MembershipRequest,
    responses((status = 200, description = "Ordered", body = Ordered), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody), (status = 415, description = "Not application/json", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn leave(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ApiJson(request): ApiJson<MembershipRequest>,
) -> Result<Json<Ordered>, ApiError> {
    Ok(Json(Ordered { connections: state.leave(&request.user, &room).await? }))
}

/// The query of `GET /api/rooms/{room}/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// The offset after which messages are wanted (absent: the oldest kept).
    #[param(maximum = 9223372036854775807_i64)]
    since: Option<u64>,
    /// At most this many messages (default 100, capped by `history.max_page`).
    #[param(maximum = 2147483647)]
    limit: Option<u32>,
}

/// The answer of `GET /api/rooms/{room}/history`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct History {
    room: String,
    /// `null` for a room without a stream (never used, or swept when idle).
    epoch: Option<String>,
    offset: u64,
    messages: Vec<Message>,
}

/// `GET /api/rooms/{room}/history?since=&limit=`: the room's stored messages
/// after offset `since` (oldest kept when absent), oldest first.
#[utoipa::path(get, path = "/api/rooms/{room}/history", tag = "rooms", security(("api_key" = [])), params(("room" = Name, Path, description = "The room"), HistoryQuery),
    responses((status = 200, description = "Stored messages, oldest first", body = History), (status = 400, description = "Unreadable JSON or query", body = ErrorBody), (status = 401, description = "The API key is missing or wrong", body = ErrorBody), (status = 422, description = "A field is missing, unknown, of the wrong type, or a name breaks the naming rules", body = ErrorBody), (status = 503, description = "The history store, the broker or Redis failed", body = ErrorBody)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    check_name("room", &room)?;
    within_contract(query.since, query.limit)?;
    let page = state.read_history(&room, query.since, query.limit).await?;
    Ok(Json(History { room, epoch: page.epoch, offset: page.offset, messages: page.messages }))
}

/// Refuses query numbers past what the OpenAPI document promises (`since`
/// an int64, `limit` an int32), so that the contract and the handlers agree
/// on every input: 400 `bad_request`.
pub(crate) fn within_contract(since: Option<u64>, limit: Option<u32>) -> Result<(), ApiError> {
    if since.is_some_and(|since| since > i64::MAX as u64) {
        return Err(ApiError::BadRequest(format!("`since` must be at most {}", i64::MAX)));
    }
    if limit.is_some_and(|limit| limit > i32::MAX as u32) {
        return Err(ApiError::BadRequest(format!("`limit` must be at most {}", i32::MAX)));
    }
    Ok(())
}

/// Refuses `/api/…` requests without the configured API key.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    if let Some(key) = &state.config().api.key {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compare without an early exit, so timing does not reveal a prefix.
        let matches = given.is_some_and(|given| {
            given.len() == key.len()
                && given.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if !matches {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
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
