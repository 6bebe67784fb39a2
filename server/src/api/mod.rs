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
pub(crate) mod rooms;
pub(crate) use gate::address_gate;
mod error;
mod metrics;
pub(crate) mod openapi;
pub(crate) use metrics::metrics;

pub use error::{ApiError, ApiJson};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_protocol::{CloseCode, Encoding, validate_name};

use crate::engine::EngineError;
use crate::engine::catalog::RoomError;
use crate::hub::stats::Stats;
use crate::{AppState, Payload, ServerError};

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
                "auth.insecure: connections choose their own user id; configure auth.jwt_secret, auth.jwt_public_key_pem or auth.jwks_url before exposing this hub",
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
    /// `base64` when `data` is the base64 text of bytes: clients that
    /// speak binary get the bytes in a binary message.
    encoding: Option<Encoding>,
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
    let data = payload(request.data, request.encoding)?;
    let sent = state.send(&request.to, &request.event, data).await?;
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
    /// `base64` when `data` is the base64 text of bytes: clients that
    /// speak binary get the bytes in a binary message.
    encoding: Option<Encoding>,
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
            let data = payload(request.data, request.encoding)?;
            let delivered = state.broadcast(&request.event, data).await?;
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
    let data = payload(request.data, request.encoding)?;
    let mut delivered = 0;
    for room in rooms {
        let except = request.except.as_deref();
        let published = state.publish_except(room, &request.event, data.clone(), except);
        delivered += published.await?.delivered;
    }
    Ok(Json(Delivered { delivered }))
}

/// A request's `data` as the payload its `encoding` says: bytes from
/// base64 text (422 `invalid_body` when it is not), or JSON.
pub(crate) fn payload(data: Value, encoding: Option<Encoding>) -> Result<Payload, ApiError> {
    match crate::binary::bytes_of(&data, encoding) {
        Ok(Some(bytes)) => Ok(Payload::Bytes(bytes)),
        Ok(None) => Ok(Payload::Json(data)),
        Err(why) => Err(ApiError::InvalidBody {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            message: why.to_string(),
        }),
    }
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
