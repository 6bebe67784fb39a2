//! `GET /api/connections` and `POST /api/connections/{session}/send|disconnect`:
//! connection-level control over HTTP (see
//! [`AppState::connections`](crate::AppState::connections)).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_protocol::CloseCode;

use super::{ApiError, ApiJson, ErrorBody, Name};
use crate::AppState;
use crate::hub::connections::ConnectionSummary;

/// The query of `GET /api/connections`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConnectionsQuery {
    /// Only this user's connections.
    user: Option<String>,
    /// Where the page starts: the `cursor` of the previous page.
    cursor: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(maximum = 2147483647)]
    limit: Option<u32>,
}

/// The answer of `GET /api/connections`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Connections {
    /// The connections, in session-id order, from every node (in
    /// multi-node mode each names its `node`).
    connections: Vec<ConnectionSummary>,
    /// Where the next page starts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    /// Live nodes that did not answer within `redis.timeout_ms`: their
    /// connections are missing from this page. Absent when every node answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing_nodes: Vec<String>,
}

/// `GET /api/connections?user=&cursor=&limit=`: the cluster's connections.
#[utoipa::path(get, path = "/api/connections", tag = "users", security(("api_key" = [])), params(ConnectionsQuery),
    responses(
        (status = 200, description = "One page of connections", body = Connections),
        (status = 400, description = "Unreadable query", body = ErrorBody),
        (status = 401, description = "The API key is missing or wrong", body = ErrorBody),
        (status = 422, description = "`user` breaks the naming rules", body = ErrorBody),
        (status = 503, description = "Redis failed", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ConnectionsQuery>, QueryRejection>,
) -> Result<Json<Connections>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    super::within_contract(None, query.limit)?;
    let limit = crate::state::server_api::members_limit(query.limit);
    let page = state.connections(query.user.as_deref(), query.cursor.as_deref(), limit).await?;
    Ok(Json(Connections {
        connections: page.connections,
        cursor: page.cursor,
        missing_nodes: page.missing_nodes,
    }))
}

/// The body of `POST /api/connections/{session}/send`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionSend {
    /// The event name.
    #[schema(value_type = Name)]
    event: String,
    /// The payload.
    #[serde(default)]
    data: Value,
    /// `base64` when `data` is the base64 text of bytes.
    encoding: Option<switchboard_protocol::Encoding>,
}

/// The body of `POST /api/connections/{session}/disconnect`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionDisconnect {
    /// Close code; default 4501 (kicked: the SDK does not reconnect).
    code: Option<u16>,
    /// The close reason.
    reason: Option<String>,
}

/// Where a session-addressed request went.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Reached {
    /// `reached` (the session is on this node and got it) or `forwarded`
    /// (multi-node mode: handed to every node, the one holding it acts).
    status: &'static str,
}

fn reached(reach: crate::SessionReach, session: &str) -> Result<Json<Reached>, ApiError> {
    match reach {
        crate::SessionReach::NotFound => Err(ApiError::NotFound(format!("no session `{session}`"))),
        other => Ok(Json(Reached { status: other.as_str() })),
    }
}

/// `POST /api/connections/{session}/send`: a message from the server to one
/// session only, live (not kept in any stream).
#[utoipa::path(post, path = "/api/connections/{session}/send", tag = "users", security(("api_key" = [])),
    params(("session" = String, Path, description = "The session id, as its `welcome` says")),
    request_body = SessionSend,
    responses(
        (status = 200, description = "Written, or forwarded to the node that holds it", body = Reached),
        (status = 400, description = "Unreadable JSON", body = ErrorBody),
        (status = 401, description = "The API key is missing or wrong", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or wrong", body = ErrorBody),
        (status = 503, description = "Redis failed", body = ErrorBody),
    ))]
pub(crate) async fn send(
    State(state): State<AppState>,
    Path(session): Path<String>,
    ApiJson(request): ApiJson<SessionSend>,
) -> Result<Json<Reached>, ApiError> {
    let data = super::payload(request.data, request.encoding)?;
    let reach = state.send_to_session(&session, &request.event, data).await?;
    reached(reach, &session)
}

/// `POST /api/connections/{session}/disconnect`: closes one session.
#[utoipa::path(post, path = "/api/connections/{session}/disconnect", tag = "users", security(("api_key" = [])),
    params(("session" = String, Path, description = "The session id, as its `welcome` says")),
    request_body = SessionDisconnect,
    responses(
        (status = 200, description = "Told to close, or forwarded to the node that holds it", body = Reached),
        (status = 400, description = "Unreadable JSON, or a close code outside 1000 and 3000–4999", body = ErrorBody),
        (status = 401, description = "The API key is missing or wrong", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 413, description = "Body over limits.max_message_bytes", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A field is unknown or wrong", body = ErrorBody),
        (status = 503, description = "Redis failed", body = ErrorBody),
    ))]
pub(crate) async fn disconnect(
    State(state): State<AppState>,
    Path(session): Path<String>,
    ApiJson(request): ApiJson<SessionDisconnect>,
) -> Result<Json<Reached>, ApiError> {
    let code = CloseCode(request.code.unwrap_or(CloseCode::KICKED.0));
    let reason = request.reason.unwrap_or_else(|| "disconnected by the server".to_owned());
    let reach = state.disconnect_session(&session, code, &reason).await?;
    reached(reach, &session)
}
