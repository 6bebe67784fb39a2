//! [`MemoryNode`]: a node alone. Every connection is in its hub, so an
//! order for a user goes to the hub, one for a session that is not here
//! reaches nobody, and a survey of the other nodes comes back empty.

use std::sync::Arc;

use switchboard_protocol::CloseCode;
use tokio_util::sync::CancellationToken;

use crate::Hub;
use crate::engine::EngineFuture;
use crate::engine::node::{ConnectionsQuery, Node, SessionOrder, Surveyed};
use crate::hub::stats::ClusterStats;

/// A single node.
pub(crate) struct MemoryNode {
    hub: Arc<Hub>,
}

impl MemoryNode {
    pub(crate) fn new(hub: Arc<Hub>) -> MemoryNode {
        MemoryNode { hub }
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> EngineFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl Node for MemoryNode {
    fn id(&self) -> Option<&str> {
        None
    }

    fn healthy(&self) -> Option<bool> {
        None
    }

    fn start(&self, _shutdown: CancellationToken) {}

    fn ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }

    fn drain(&self) -> EngineFuture<'_, ()> {
        ready(())
    }

    fn close_user<'a>(
        &'a self,
        user: &'a str,
        code: CloseCode,
        reason: &'a str,
    ) -> EngineFuture<'a, usize> {
        ready(self.hub.close_user(user, code, reason))
    }

    fn forward<'a>(
        &'a self,
        _session: &'a uuid::Uuid,
        _order: SessionOrder,
    ) -> EngineFuture<'a, bool> {
        ready(false)
    }

    fn survey<'a>(&'a self, _query: &'a ConnectionsQuery) -> EngineFuture<'a, Surveyed> {
        ready(Surveyed::default())
    }

    fn stats(&self) -> EngineFuture<'_, Option<ClusterStats>> {
        ready(None)
    }

    fn metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
}
