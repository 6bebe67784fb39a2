//! [`MemoryBroker`]: the single-node broker, the default.

use std::sync::Arc;

use crate::Hub;
use crate::broker::{Broker, BrokerFuture, Delivery};

/// A broker for one node: it hands every delivery straight to the local hub,
/// in the caller's task, so it adds no hop and no copy.
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    hub: Arc<Hub>,
}

impl MemoryBroker {
    /// A broker that delivers to `hub`.
    pub fn new(hub: Arc<Hub>) -> MemoryBroker {
        MemoryBroker { hub }
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, delivery: Delivery) -> BrokerFuture<'_> {
        let reached = self.hub.deliver(&delivery);
        Box::pin(std::future::ready(Ok(reached)))
    }
}
