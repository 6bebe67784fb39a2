//! The rooms' routes: listing them (`GET /api/rooms`, `GET
//! /api/rooms/{room}`), managed rooms (`POST /api/rooms`, `PATCH` and
//! `DELETE /api/rooms/{room}`), a room's members and history, and
//! server-side joins and leaves.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_protocol::{Message, RoomInfo};

use super::{ApiError, ApiJson, ErrorBody, Name, check_name, within_contract};
use crate::AppState;
use crate::engine::catalog::ManagedRoom;
use crate::hub::{RoomDetail, RoomSummary};
use crate::state::server_api::members_limit;
use crate::stream::StreamKey;

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
