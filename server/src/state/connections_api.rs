//! Connection-level control through the in-process API: list connections
//! (a user's or everyone's) with what the hub knows of each, write to one
//! session, close one session. The HTTP handlers (`GET /api/connections`,
//! `POST /api/connections/{session}/send|disconnect`) wrap these.
//!
//! A listing is this node's connections (in multi-node mode each node
//! lists its own; the answer names the node). Writing to or closing a
//! session reaches it on whichever node holds it: a session that is not on
//! this node is handed to every node through Redis.

use serde_json::Value;
use switchboard_protocol::{CloseCode, ServerFrame, validate_name};

use super::AppState;
use super::server_api::ServerError;
use crate::hub::connections::ConnectionSummary;
use crate::transport::wire::{encode, now_ms};

/// One page of connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsPage {
    /// The connections, in session-id order.
    pub connections: Vec<ConnectionSummary>,
    /// The session the next page starts after, when there is one.
    pub cursor: Option<String>,
}

/// Where a session-addressed order went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionReach {
    /// The session is on this node and got it.
    Reached,
    /// No such session (on a single node: nowhere).
    NotFound,
    /// Not on this node: handed to every node (multi-node mode), the one
    /// holding the session carries it out.
    Forwarded,
}

impl SessionReach {
    /// `reached`, `not_found` or `forwarded`, as the HTTP API says it.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionReach::Reached => "reached",
            SessionReach::NotFound => "not_found",
            SessionReach::Forwarded => "forwarded",
        }
    }
}

fn session_id(session: &str) -> Result<uuid::Uuid, ServerError> {
    uuid::Uuid::try_parse(session).map_err(|_| ServerError::UnknownSession(session.to_owned()))
}

impl AppState {
    /// Up to `limit` of this node's connections (of `user`, or everyone's)
    /// after the session `cursor`, in session-id order.
    pub fn connections(
        &self,
        user: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ConnectionsPage, ServerError> {
        if let Some(user) = user {
            validate_name(user)
                .map_err(|reason| ServerError::InvalidName { field: "user", reason })?;
        }
        let (connections, cursor) = self.hub().connections(user, cursor, limit);
        Ok(ConnectionsPage { connections, cursor })
    }

    /// Writes a message from the server (`from` is `server_name`) to one
    /// session only: live, outside any stream (not kept, not replayed).
    pub async fn send_to_session(
        &self,
        session: &str,
        event: &str,
        data: Value,
    ) -> Result<SessionReach, ServerError> {
        let id = session_id(session)?;
        validate_name(event)
            .map_err(|reason| ServerError::InvalidName { field: "event", reason })?;
        let message = switchboard_protocol::Message {
            room: None,
            to: None,
            from: self.config().server_name.clone(),
            event: event.to_owned(),
            data,
            ts: now_ms(),
            offset: None,
        };
        let frame = encode(&ServerFrame::Message(message));
        if let Some(outbound) = self.hub().session(&id) {
            crate::hub::push_to(self.hub(), &outbound, frame);
            return Ok(SessionReach::Reached);
        }
        match self.cluster() {
            None => Ok(SessionReach::NotFound),
            Some(cluster) => {
                let order = crate::cluster::wire::encode_to_session(&id, &frame);
                cluster
                    .order(order)
                    .await
                    .map_err(|err| ServerError::Unavailable(err.to_string()))?;
                Ok(SessionReach::Forwarded)
            }
        }
    }

    /// Closes one session with `code` (1000 or 3000–4999; 4501 `kicked`
    /// tells the SDKs not to come back).
    pub async fn disconnect_session(
        &self,
        session: &str,
        code: CloseCode,
        reason: &str,
    ) -> Result<SessionReach, ServerError> {
        let id = session_id(session)?;
        if !(code == CloseCode::NORMAL || (3000..5000).contains(&code.0)) {
            return Err(ServerError::InvalidCloseCode(code.0));
        }
        if let Some(outbound) = self.hub().session(&id) {
            outbound.close(code, reason);
            return Ok(SessionReach::Reached);
        }
        match self.cluster() {
            None => Ok(SessionReach::NotFound),
            Some(cluster) => {
                let order = crate::cluster::wire::encode_close_session(&id, code, reason);
                cluster
                    .order(order)
                    .await
                    .map_err(|err| ServerError::Unavailable(err.to_string()))?;
                Ok(SessionReach::Forwarded)
            }
        }
    }
}
