//! Connection-level control through the in-process API: list connections
//! (a user's or everyone's) with what the hub knows of each, write to one
//! session, close one session. The HTTP handlers (`GET /api/connections`,
//! `POST /api/connections/{session}/send|disconnect`) wrap these.
//!
//! A listing covers the whole cluster: in multi-node mode every live node
//! is asked for its page after the cursor (`cluster/survey.rs`) and the
//! pages are merged in session-id order, each connection naming its node;
//! a node that does not answer within `redis.timeout_ms` is named in
//! `missing_nodes` instead of holding the answer up. Writing to or closing
//! a session reaches it on whichever node holds it: a session that is not
//! on this node is handed to every node through Redis.

use switchboard_protocol::{CloseCode, ServerFrame, validate_name};

use super::AppState;
use super::server_api::ServerError;
use crate::engine::node::{ConnectionsQuery, NodePage, SessionOrder, local_page};
use crate::hub::connections::ConnectionSummary;
use crate::wire::{encode, now_ms};

/// One page of connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsPage {
    /// The connections, in session-id order.
    pub connections: Vec<ConnectionSummary>,
    /// The session the next page starts after, when there is one.
    pub cursor: Option<String>,
    /// Live nodes that did not answer in time (multi-node mode): their
    /// connections are missing from this page.
    pub missing_nodes: Vec<String>,
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
    /// Up to `limit` connections (of `user`, or everyone's) after the
    /// session `cursor`, in session-id order, from every node of the
    /// cluster.
    pub async fn connections(
        &self,
        user: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ConnectionsPage, ServerError> {
        if let Some(user) = user {
            validate_name(user)
                .map_err(|reason| ServerError::InvalidName { field: "user", reason })?;
        }
        let query = ConnectionsQuery {
            user: user.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
            limit,
        };
        let node = self.engine().node();
        let local = local_page(self.hub(), node.id(), &query);
        let surveyed = node.survey(&query).await?;
        let mut page = merge(limit, std::iter::once(local).chain(surveyed.pages));
        page.missing_nodes = surveyed.missing;
        Ok(page)
    }

    /// Writes a message from the server (`from` is `server_name`) to one
    /// session only: live, outside any stream (not kept, not replayed).
    pub async fn send_to_session(
        &self,
        session: &str,
        event: &str,
        data: impl Into<crate::Payload>,
    ) -> Result<SessionReach, ServerError> {
        let id = session_id(session)?;
        validate_name(event)
            .map_err(|reason| ServerError::InvalidName { field: "event", reason })?;
        let (data, encoding) = data.into().into_fields();
        let message = switchboard_protocol::Message {
            encoding,
            room: None,
            to: None,
            from: self.config().server_name.clone(),
            event: event.to_owned(),
            data,
            ts: now_ms(),
            offset: None,
            binary: None,
        };
        let frame = encode(&ServerFrame::Message(message));
        if let Some(outbound) = self.hub().session(&id) {
            self.hub().push_to(&outbound, frame);
            return Ok(SessionReach::Reached);
        }
        self.forward(&id, SessionOrder::Write(frame)).await
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
        self.forward(&id, SessionOrder::Close(code, reason.to_owned())).await
    }

    /// Hands an order for a session that is not here to the other nodes.
    async fn forward(
        &self,
        session: &uuid::Uuid,
        order: SessionOrder,
    ) -> Result<SessionReach, ServerError> {
        let forwarded = self.engine().node().forward(session, order).await?;
        Ok(if forwarded { SessionReach::Forwarded } else { SessionReach::NotFound })
    }
}

/// The first `limit` connections of several nodes' pages (each in
/// session-id order, after the same cursor), and the cursor of the next
/// page: the last one taken, when any node has more.
fn merge(limit: usize, pages: impl Iterator<Item = NodePage>) -> ConnectionsPage {
    let mut more = false;
    let mut connections = Vec::new();
    for page in pages {
        more |= page.cursor.is_some();
        connections.extend(page.connections);
    }
    connections.sort_unstable_by(|a, b| a.session.cmp(&b.session));
    more |= connections.len() > limit;
    connections.truncate(limit);
    let cursor = more.then(|| connections.last().map(|c| c.session.clone())).flatten();
    ConnectionsPage { connections, cursor, missing_nodes: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::connections::Transport;

    fn on(node: &str, sessions: &[&str], more: bool) -> NodePage {
        let connections: Vec<ConnectionSummary> = sessions
            .iter()
            .map(|session| ConnectionSummary {
                session: (*session).to_owned(),
                user: "u".into(),
                transport: Transport::Websocket,
                address: "127.0.0.1".into(),
                user_agent: None,
                connected_at: 0,
                rooms: Vec::new(),
                node: Some(node.to_owned()),
            })
            .collect();
        let cursor = more.then(|| sessions.last().unwrap().to_string());
        NodePage { connections, cursor }
    }

    fn sessions(page: &ConnectionsPage) -> Vec<&str> {
        page.connections.iter().map(|c| c.session.as_str()).collect()
    }

    #[test]
    fn pages_of_several_nodes_merge_in_session_order() {
        let page =
            merge(3, [on("a", &["1", "4", "6"], true), on("b", &["2", "3"], false)].into_iter());
        assert_eq!(sessions(&page), ["1", "2", "3"]);
        assert_eq!(page.cursor.as_deref(), Some("3"), "more on both nodes after 3");
        // The last page: nobody has more, and everything fits.
        let page = merge(3, [on("a", &["7"], false), on("b", &["5"], false)].into_iter());
        assert_eq!(sessions(&page), ["5", "7"]);
        assert_eq!(page.cursor, None);
        // Exactly full, but a node said it has more.
        let page = merge(2, [on("a", &["1", "2"], true), on("b", &[], false)].into_iter());
        assert_eq!(page.cursor.as_deref(), Some("2"));
        // Exactly full and nobody has more.
        let page = merge(2, [on("a", &["1"], false), on("b", &["2"], false)].into_iter());
        assert_eq!(page.cursor, None);
    }
}
