//! The engine: everything that spans nodes, behind one interface chosen
//! once at start. Sessions, SSE feeds, the HTTP API and the in-process API
//! call the [`Engine`] and never ask which one runs.
//!
//! Four traits make an engine, each owning one thing:
//! - [`Broker`] (`broker.rs`) owns a stream's life: publishing (offsets,
//!   epochs, history, request ids, reaching every node's followers),
//!   reading and resuming, and which streams this node follows, so that a
//!   stream with followers is never swept or expired under them;
//! - [`Presence`] (`presence.rs`) owns who is online and in which room,
//!   across nodes: it decides and sends the `presence` and `occupancy`
//!   frames, and keeps a large room large until it empties;
//! - [`Catalog`] (`catalog.rs`) owns the managed rooms (their rules, once;
//!   an engine provides a [`CatalogStore`](catalog::CatalogStore));
//! - [`Node`] (`node.rs`) owns this node's place among the others: orders
//!   to connections wherever they are, surveys, figures, health, and the
//!   engine's background tasks.
//!
//! Two engines implement them: `memory/` for one node (the embedded
//! default, with the history in a [`HistoryStore`](store::HistoryStore) in
//! memory or on disk) and `redis/` for several nodes on Redis (one
//! server, several, or a Redis Cluster). Both
//! hand the deliveries a node must make to its [`Hub`](crate::Hub), which
//! does the local fan-out and nothing else. docs/ARCHITECTURE.md says what
//! a third engine must provide.
//!
//! [`Engine`] wraps the four with what is the same whatever the engine:
//! the history limits per stream and the store's latency figures.

pub(crate) mod broker;
pub(crate) mod catalog;
pub(crate) mod history;
pub(crate) mod ids;
pub(crate) mod memory;
pub(crate) mod node;
pub(crate) mod presence;
pub(crate) mod redis;
pub(crate) mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use switchboard_protocol::Position;

use crate::hub::latency::{Latency, STORE_OPS};
use crate::stream::{Stored, StreamKey};

pub(crate) use broker::{Broker, Publication, Published, Resumed};
pub(crate) use catalog::Catalog;
pub(crate) use history::HistoryRules;
pub(crate) use node::Node;
pub(crate) use presence::Presence;

/// Something the engine could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine's backend cannot be reached right now (Redis down or
    /// slower than `redis.timeout_ms`); nothing was acknowledged that was
    /// not done. Retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// The backend answered with an error, or with something unreadable
    /// (a history store's I/O error, a Redis error reply).
    #[error("{0}")]
    Failed(String),
}

impl From<store::StoreError> for EngineError {
    fn from(err: store::StoreError) -> Self {
        EngineError::Failed(err.to_string())
    }
}

/// The future an engine's method returns.
pub(crate) type EngineFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'a>>;

/// Indexes into [`STORE_OPS`].
const APPEND: usize = 0;
const READ: usize = 1;

/// This node's engine: the four parts, and the limits and figures that do
/// not depend on which engine runs.
pub(crate) struct Engine {
    broker: Box<dyn Broker>,
    presence: Box<dyn Presence>,
    catalog: Catalog,
    node: Box<dyn Node>,
    rules: HistoryRules,
    /// How long appends and reads take (`/metrics`).
    pub(crate) latency: Latency<{ STORE_OPS.len() }>,
}

impl Engine {
    /// An engine of these parts.
    pub(crate) fn new(
        broker: Box<dyn Broker>,
        presence: Box<dyn Presence>,
        catalog: Catalog,
        node: Box<dyn Node>,
        rules: HistoryRules,
    ) -> Engine {
        Engine { broker, presence, catalog, node, rules, latency: Latency::default() }
    }

    /// Streams and deliveries.
    pub(crate) fn broker(&self) -> &dyn Broker {
        &*self.broker
    }

    /// Presence across nodes.
    pub(crate) fn presence(&self) -> &dyn Presence {
        &*self.presence
    }

    /// The managed rooms.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// This node among the others.
    pub(crate) fn node(&self) -> &dyn Node {
        &*self.node
    }

    /// Each stream's history limits.
    pub(crate) fn rules(&self) -> &HistoryRules {
        &self.rules
    }

    /// [`Broker::publish`], timed.
    pub(crate) async fn publish(&self, publication: Publication) -> Result<Published, EngineError> {
        let started = tokio::time::Instant::now();
        let published = self.broker.publish(publication).await;
        self.latency.observe(APPEND, started.elapsed());
        published
    }

    /// Publishes one connection's publications in their order, in one
    /// step where the engine can ([`Broker::publish_all`]); one answer each.
    pub(crate) async fn publish_all(
        &self,
        publications: Vec<Publication>,
    ) -> Vec<Result<Published, EngineError>> {
        let count = publications.len();
        let started = tokio::time::Instant::now();
        let answers = match self.broker.publish_all(publications).await {
            Ok(answers) => answers,
            Err(err) => (0..count).map(|_| Err(err.clone())).collect(),
        };
        let elapsed = started.elapsed();
        for _ in 0..count {
            self.latency.observe(APPEND, elapsed);
        }
        answers
    }

    /// [`Broker::resume`], timed.
    pub(crate) async fn resume(
        &self,
        key: &StreamKey,
        since: Option<&Position>,
    ) -> Result<Resumed, EngineError> {
        let started = tokio::time::Instant::now();
        let resumed = self.broker.resume(key, since).await;
        self.latency.observe(READ, started.elapsed());
        resumed
    }

    /// [`Broker::page`], timed.
    pub(crate) async fn page(
        &self,
        key: &StreamKey,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<(Position, Vec<Stored>)>, EngineError> {
        let started = tokio::time::Instant::now();
        let page = self.broker.page(key, after, limit).await;
        self.latency.observe(READ, started.elapsed());
        page
    }

    /// When the stream's newest kept message was accepted (Unix ms); `None`
    /// when it keeps none. Two reads: where the stream stands, then its
    /// last message.
    pub(crate) async fn last_message_ts(
        &self,
        key: &StreamKey,
    ) -> Result<Option<u64>, EngineError> {
        let Some((position, _)) = self.page(key, Some(u64::MAX - 1), 1).await? else {
            return Ok(None);
        };
        if position.offset == 0 {
            return Ok(None);
        }
        let last = self.page(key, Some(position.offset - 1), 1).await?;
        Ok(last.and_then(|(_, entries)| entries.first().map(|entry| entry.ts)))
    }
}

/// What building an engine needs from the node around it.
pub(crate) struct Parts {
    /// This node's hub: where the engine hands the deliveries of this node.
    pub(crate) hub: Arc<crate::Hub>,
    /// Where events after the fact go (online and offline), if anywhere.
    pub(crate) events: Option<Arc<crate::policy::events::Events>>,
}
