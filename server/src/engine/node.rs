//! [`Node`]: this node among the others. Orders for connections wherever
//! they are (close a user's, write to or close one session), a survey of
//! every node's connections, the cluster's figures and health, and the
//! engine's background tasks from start to drain.
//!
//! On a single node there are no others: orders go to the hub, surveys
//! come back empty, figures are the node's own.

use serde::{Deserialize, Serialize};
use switchboard_protocol::CloseCode;
use tokio_util::sync::CancellationToken;
use tungstenite::Utf8Bytes;

use super::EngineFuture;
use crate::hub::connections::ConnectionSummary;
use crate::hub::stats::ClusterStats;

/// What a connections survey asks each node: a page of its connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConnectionsQuery {
    /// Only this user's connections.
    pub(crate) user: Option<String>,
    /// After this session.
    pub(crate) cursor: Option<String>,
    /// At most this many.
    pub(crate) limit: usize,
}

/// One node's page of connections.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct NodePage {
    /// In session-id order, each naming the node.
    pub(crate) connections: Vec<ConnectionSummary>,
    /// Set when the node has more after these.
    pub(crate) cursor: Option<String>,
}

/// What came back from the other nodes.
#[derive(Debug, Default)]
pub(crate) struct Surveyed {
    /// Each answering node's page.
    pub(crate) pages: Vec<NodePage>,
    /// Live nodes that did not answer in time, sorted.
    pub(crate) missing: Vec<String>,
}

/// This node's page for `query`, each connection naming `node` (in a
/// cluster).
pub(crate) fn local_page(
    hub: &crate::Hub,
    node: Option<&str>,
    query: &ConnectionsQuery,
) -> NodePage {
    let (mut connections, cursor) =
        hub.connections(query.user.as_deref(), query.cursor.as_deref(), query.limit);
    for connection in &mut connections {
        connection.node = node.map(str::to_owned);
    }
    NodePage { connections, cursor }
}

/// An order for one session that is not on this node.
#[derive(Debug, Clone)]
pub(crate) enum SessionOrder {
    /// Write this frame to it.
    Write(Utf8Bytes),
    /// Close it.
    Close(CloseCode, String),
}

/// This node among the others.
pub(crate) trait Node: Send + Sync + 'static {
    /// This node's id in its cluster; `None` on a single node.
    fn id(&self) -> Option<&str>;

    /// Whether the engine's backend answered its last request; `None` when
    /// there is none.
    fn healthy(&self) -> Option<bool>;

    /// Starts the engine's background tasks (a subscription, heartbeats),
    /// until `shutdown`.
    fn start(&self, shutdown: CancellationToken);

    /// Resolves once this node hears every delivery of the others (at once
    /// on a single node).
    fn ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;

    /// The node is leaving (its sessions have closed): what is left of it
    /// elsewhere goes now.
    fn drain(&self) -> EngineFuture<'_, ()>;

    /// Closes every connection of `user` on every node; resolves with how
    /// many connections the user had.
    fn close_user<'a>(
        &'a self,
        user: &'a str,
        code: CloseCode,
        reason: &'a str,
    ) -> EngineFuture<'a, usize>;

    /// Hands an order for a session that is not on this node to the node
    /// that holds it; false when no other node can hold it.
    fn forward<'a>(
        &'a self,
        session: &'a uuid::Uuid,
        order: SessionOrder,
    ) -> EngineFuture<'a, bool>;

    /// Asks every other node for a page of its connections.
    fn survey<'a>(&'a self, query: &'a ConnectionsQuery) -> EngineFuture<'a, Surveyed>;

    /// The cluster's figures; `None` on a single node.
    fn stats(&self) -> EngineFuture<'_, Option<ClusterStats>>;

    /// Adds the engine's own figures to `/metrics`.
    fn metrics(&self, registry: &mut prometheus_client::registry::Registry);
}
