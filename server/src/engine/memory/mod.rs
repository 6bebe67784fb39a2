//! The memory engine: one node, the embedded default. Streams are kept by a
//! [`HistoryStore`] in this process (in memory, or on disk with
//! `history.store = "disk"`), presence is the hub's own membership, the
//! managed rooms a map. Nothing here leaves the process: a delivery goes
//! straight to this node's hub, in the caller's task.

pub(crate) mod broker;
pub(crate) mod catalog;
pub(crate) mod node;
pub(crate) mod presence;

use std::sync::Arc;
use std::time::Duration;

use super::catalog::Catalog;
use super::store::HistoryStore;
use super::{Engine, HistoryRules, Parts};
use crate::config::Config;

/// A single node's engine over `store`.
pub(crate) fn engine(config: &Config, store: Arc<dyn HistoryStore>, parts: Parts) -> Engine {
    let rules = HistoryRules::new(config.history.clone());
    let ids = super::ids::IdWindow::new(
        Duration::from_secs(config.delivery.id_window_secs),
        config.delivery.max_ids_per_user,
    );
    let broker = broker::MemoryBroker::new(store, rules.clone(), ids, parts.hub.clone());
    let presence = presence::MemoryPresence::new(parts.hub.clone(), parts.events);
    let catalog = Catalog::new(&config.rooms, Box::new(catalog::MemoryCatalog::default()));
    let node = node::MemoryNode::new(parts.hub);
    Engine::new(Box::new(broker), Box::new(presence), catalog, Box::new(node), rules)
}
