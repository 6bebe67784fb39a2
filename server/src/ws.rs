//! `GET /ws`: everything that happens before a [`Session`] exists.
//!
//! The handler resolves the identity, reserves a connection slot, and only
//! then accepts the upgrade, so a refused client costs one HTTP answer and no
//! WebSocket state: 400 for a bad identity or room, 503 when the hub is full
//! or shutting down.

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use switchboard_protocol::{Position, validate_name};

use crate::AppState;
use crate::api::ApiError;
use crate::identity::{self, ConnectQuery};
use crate::session::{Session, Start};

/// Upgrades `GET /ws?user_id=…[&room=…]` to a WebSocket session.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    query: Result<Query<ConnectQuery>, QueryRejection>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return ApiError::BadRequest(rejection.body_text()).into_response(),
    };
    let identity = match identity::resolve(&query, &headers) {
        Ok(identity) => identity,
        Err(err) => return ApiError::Identity(err).into_response(),
    };
    if let Some(room) = &query.room {
        if let Err(err) = validate_name(room) {
            return ApiError::InvalidName { field: "room", reason: err }.into_response();
        }
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return ApiError::NotWebSocket(rejection.body_text()).into_response(),
    };
    if state.is_shutting_down() {
        return ApiError::ShuttingDown.into_response();
    }
    let Ok(slot) = state.slots().clone().try_acquire_owned() else {
        tracing::warn!(user = %identity.user, "connection refused: max_connections reached");
        return ApiError::TooManyConnections.into_response();
    };
    let limits = &state.config().limits;
    let tasks = state.tasks().clone();
    upgrade
        .read_buffer_size(limits.read_buffer_bytes)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_upgrade(move |socket| {
            tasks.track_future(async move {
                let inbox_since = match (query.inbox_epoch, query.inbox_offset) {
                    (Some(epoch), Some(offset)) => Some(Position { epoch, offset }),
                    _ => None,
                };
                let start = Start { room: query.room, inbox_since };
                Session::new(socket, state, identity).run(start).await;
                drop(slot);
            })
        })
}
